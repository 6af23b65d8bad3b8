"""gaiverse_task conventions on the real Prefect server: retries, the stored-object cache, run records."""

from __future__ import annotations

import numpy as np
import pytest
from prefect import flow

from tasks.common import gaiverse_task, stable_hash

pytestmark = pytest.mark.slow

ATTEMPTS: dict[str, int] = {}


@gaiverse_task(cache="none", retries=3, backoff_s=0.1)
def flaky_io(name: str) -> str:
    """Fails with a transient error on its first attempt."""
    ATTEMPTS[name] = ATTEMPTS.get(name, 0) + 1
    if ATTEMPTS[name] == 1:
        raise ConnectionError(f"{name}: connection reset")
    return name


@gaiverse_task(cache="none", retries=3, backoff_s=0.1)
def bad_input(value: int) -> int:
    """A deterministic failure: retrying cannot help."""
    ATTEMPTS["bad"] = ATTEMPTS.get("bad", 0) + 1
    raise ValueError(f"`value` must be positive, got {value}")


def test_transient_errors_retry_and_deterministic_ones_do_not(stack, catalog):
    from prefect.context import get_run_context

    @flow(name="conventions-retries")
    def retries_flow():
        first = flaky_io("s3-put", return_state=True)
        second = bad_input(-1, return_state=True)
        return str(get_run_context().flow_run.id), first.type.value, second.type.value

    run_id, first_state, second_state = retries_flow()

    assert (first_state, second_state) == ("COMPLETED", "FAILED")
    assert ATTEMPTS == {"s3-put": 2, "bad": 1}
    rows = {r["task_name"]: r for r in catalog.query("SELECT * FROM task_runs WHERE flow_run_id = ?", [run_id])}
    assert rows["flaky-io"]["state"] == "COMPLETED" and rows["flaky-io"]["retries"] == 1
    assert rows["bad-input"]["state"] == "FAILED" and rows["bad-input"]["retries"] == 0
    assert "`value` must be positive, got -1" in rows["bad-input"]["message"]
    assert rows["flaky-io"]["parameters_hash"] == stable_hash({"name": "s3-put"})


def test_stored_cache_is_reused_only_while_the_objects_exist(stack, store, catalog):
    from gaiverse.selfcheck import build_mesh, mesh_to_glb, preview_png
    from tasks.selfcheck import store_outputs

    mesh = build_mesh(1, seed=202)
    glb, values, png = mesh_to_glb(mesh), np.arange(len(mesh.vertices), dtype=np.float32), preview_png(mesh)

    @flow(name="conventions-cache")
    def cache_flow():
        first = store_outputs(glb, values, png, return_state=True)
        second = store_outputs(glb, values, png, return_state=True)
        store.delete(first.result()["mesh"].key)
        third = store_outputs(glb, values, png, return_state=True)
        return [(s.name, s.result()) for s in (first, second, third)]

    (first, refs1), (second, refs2), (third, refs3) = cache_flow()

    assert (first, second) == ("Completed", "Cached")
    assert third == "Completed"  # the cached result pointed at a deleted object: recomputed
    assert refs1 == refs2 == refs3
    for ref in refs3.values():
        assert store.exists(ref.key) and catalog.asset(ref.key) is not None


def test_flow_parameters_are_validated(stack):
    from flows.selfcheck import selfcheck

    with pytest.raises(Exception, match="seed"):
        selfcheck(seed=-1)


def test_actor_options_follow_the_cluster_and_the_settings(ray_local, settings):
    from ray_actors.cluster import actor_options, stage_remote_options

    assert stage_remote_options(settings) == {}  # no GPU here, no stage resources configured
    pinned = settings.model_copy(update={"ray_stage_resources": {"gpu_stage": 1.0}})
    options = actor_options("stage-x", settings=pinned)
    assert options["resources"] == {"gpu_stage": 1.0} and "num_gpus" not in options
    assert options["lifetime"] == "detached" and options["get_if_exists"] is True
    assert options["max_restarts"] > 0 and options["max_task_retries"] > 0
    with pytest.raises(ValueError, match="`name` must be 1-100 characters"):
        actor_options("", settings=settings)


@gaiverse_task(cache="none", retries=1)
def where_am_i(x: int) -> dict:
    """A stateless task: reports the process it ran in."""
    import os

    return {"pid": os.getpid(), "square": x * x}


def test_stateless_tasks_run_in_ray_workers_through_the_ray_task_runner(stack, catalog):
    import os

    from prefect_ray.context import remote_options

    from ray_actors.cluster import ray_task_runner, stage_remote_options

    @flow(name="conventions-ray-task-runner", task_runner=ray_task_runner())
    def fan_out():
        from prefect.context import get_run_context

        with remote_options(num_cpus=0.5, **stage_remote_options()):
            futures = where_am_i.map([1, 2, 3])
        return str(get_run_context().flow_run.id), [future.result() for future in futures]

    run_id, results = fan_out()

    assert [r["square"] for r in results] == [1, 4, 9]
    assert all(r["pid"] != os.getpid() for r in results)  # ran in Ray worker processes
    rows = catalog.query("SELECT state FROM task_runs WHERE flow_run_id = ? AND task_name = 'where-am-i'", [run_id])
    assert [r["state"] for r in rows] == ["COMPLETED"] * 3  # the hooks ran in the workers too
