"""Faults during a real flow run: the S3 server goes away, the Ray actor dies mid-call."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from _flowhelpers import task_runs_of, wait_for

pytestmark = pytest.mark.slow

FIT_STEPS = 1500
"""Long enough (seconds on 2 cores) for the test thread to see the model call in flight."""


def _selfcheck_actor():
    import ray

    from ray_actors.cluster import NAMESPACE
    from ray_actors.selfcheck import ACTOR_NAME

    handle = {}

    def found() -> bool:
        try:
            handle["actor"] = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
            return True
        except ValueError:
            return False

    wait_for(found, "the self-check actor to exist", interval_s=0.05)
    return handle["actor"]


def _info(actor) -> dict:
    import ray

    return ray.get(actor.info.remote(), timeout=60)


def test_s3_outage_during_a_flow_is_retried_and_leaves_nothing_partial(stack, s3_server, store, catalog, background):
    from flows.selfcheck import selfcheck
    from validation.catalog_suite import validate_catalog

    if s3_server is None:
        pytest.skip("an external S3 endpoint is configured; the embedded server cannot be killed")
    seen: dict = {}

    def outage() -> None:
        actor = _selfcheck_actor()
        wait_for(lambda: _info(actor)["in_flight"] > 0, "the model call to start")
        calls = _info(actor)["calls"]
        s3_server.stop()  # the store step comes right after the model call: it will find no server
        seen["stopped"] = time.time()
        wait_for(lambda: _info(actor)["calls"] > calls, "the model call to finish")
        time.sleep(4.0)  # the store task fails and backs off meanwhile
        s3_server.start()
        seen["restarted"] = time.time()

    background(outage)
    summary = selfcheck(seed=303, fit_steps=FIT_STEPS)

    assert summary["ok"], summary["steps"]
    assert "restarted" in seen
    rows = task_runs_of(catalog, summary["flow_run_id"])
    assert rows["store-outputs"]["state"] == "COMPLETED"
    assert rows["store-outputs"]["retries"] >= 1, rows["store-outputs"]
    # no partial object, no orphan row: every assets row has its object (object_exists)...
    reports = validate_catalog(catalog, store=store)
    assert all(report.success for report in reports), [r.message() for r in reports]
    # ...and every stored self-check object has its row, with bytes matching its key
    keys = {row["key"] for row in catalog.query("SELECT key FROM assets")}
    stored = [ref for kind in ("selfcheck/mesh", "selfcheck/field", "selfcheck/preview") for ref in store.list(kind)]
    assert stored and all(ref.key in keys for ref in stored)
    manifest_key = catalog.query("SELECT manifest_key FROM versions WHERE flow_run_id = ?",
                                 [summary["flow_run_id"]])[0]["manifest_key"]
    for name, ref in json.loads(store.get_bytes(manifest_key))["assets"].items():
        assert len(store.get_bytes(ref["key"])) == ref["bytes"], name  # get_bytes verifies the sha256


def test_actor_killed_during_a_call_is_restarted_and_the_flow_completes(stack, catalog, background):
    from flows.selfcheck import selfcheck

    killed: dict = {}

    def kill() -> None:
        actor = _selfcheck_actor()
        wait_for(lambda: _info(actor)["in_flight"] > 0, "the model call to start")
        killed["pid"] = _info(actor)["pid"]
        os.kill(killed["pid"], signal.SIGKILL)  # the actor's worker process, started by this session's Ray
        killed["at"] = time.time()

    background(kill)
    summary = selfcheck(seed=404, fit_steps=FIT_STEPS)

    assert summary["ok"], summary["steps"]
    assert "pid" in killed
    after = _info(_selfcheck_actor())
    assert after["pid"] != killed["pid"]  # Ray restarted the actor in a new worker...
    assert after["loaded_at"] > killed["at"]  # ...which loaded the model again in __init__
    rows = task_runs_of(catalog, summary["flow_run_id"])
    assert rows["fit-model-stage"]["state"] == "COMPLETED"
