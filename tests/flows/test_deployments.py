"""prefect.yaml drives both runtimes: listed without imports, served by flows.serve, applied by `prefect deploy`,
and its cron schedules really get runs from the Prefect server's scheduler (the SQLAlchemy 2.1 trap)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from _flowhelpers import wait_for
from flows.serve import PREFECT_YAML, declared_deployments, flow_name_of

SERVE_TIMEOUT_S = 600


def test_declared_deployments_are_listed_without_importing_flows():
    specs = {spec.full_name: spec for spec in declared_deployments()}

    assert set(specs) >= {"selfcheck/selfcheck", "selfcheck/nightly"}
    nightly = specs["selfcheck/nightly"]
    assert nightly.entrypoint == "flows/selfcheck.py:selfcheck"
    assert nightly.schedule == "0 3 * * * UTC"
    assert nightly.work_pool == "gaiverse-process"
    assert specs["selfcheck/selfcheck"].schedule == "manual"
    with pytest.raises(ValueError, match="no function 'missing'"):
        flow_name_of("flows/selfcheck.py:missing")


def test_listing_deployments_imports_neither_prefect_nor_the_flows():
    code = ("import sys; from flows.serve import declared_deployments; declared_deployments(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'ray', 'torch', 'tasks')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_declared_entrypoint_loads_the_flow_it_names():
    from flows.serve import load_flow

    for spec in declared_deployments():
        assert load_flow(spec.entrypoint).name == spec.flow_name


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _auto_scheduled_runs(deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with _client() as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return [run for run in runs if run.auto_scheduled and run.state_type.value == "SCHEDULED"]


@pytest.mark.slow
def test_cron_deployment_gets_runs_from_the_scheduler(stack):
    from flows.selfcheck import selfcheck

    name = f"cron-{uuid.uuid4().hex[:8]}"
    deployment_id = selfcheck.to_deployment(name=name, cron="* * * * *", tags=["test"]).apply()
    try:
        runs: list = []
        wait_for(lambda: bool(runs.extend(_auto_scheduled_runs(deployment_id)) or runs),
                 "the scheduler to create runs for an every-minute cron", timeout_s=180, interval_s=1)
        assert all(run.auto_scheduled for run in runs)
        times = sorted(run.expected_start_time for run in runs)
        assert all(t.second == 0 for t in times)  # on the minute, as the cron says
    finally:
        with _client() as client:
            client.delete_deployment(deployment_id)


@pytest.mark.slow
def test_prefect_deploy_applies_prefect_yaml_to_a_process_pool(stack, settings):
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    from gaiverse.config import REPO_ROOT, prefect_env

    with _client() as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="gaiverse-process", type="process"))
        except ObjectAlreadyExists:
            pass
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)],
        cwd=REPO_ROOT, env={**os.environ, **prefect_env(settings)},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with _client() as client:
        for spec in declared_deployments():
            deployment = client.read_deployment_by_name(spec.full_name)
            assert deployment.work_pool_name == "gaiverse-process"
            assert deployment.entrypoint == spec.entrypoint
            assert [s.schedule.cron for s in deployment.schedules] == [s["cron"] for s in spec.schedules]
        nightly = client.read_deployment_by_name("selfcheck/nightly")
    runs: list = []
    wait_for(lambda: bool(runs.extend(_auto_scheduled_runs(nightly.id)) or runs),
             "the scheduler to create runs for the nightly deployment", timeout_s=180, interval_s=1)
    assert all(run.expected_start_time.hour == 3 and run.expected_start_time.minute == 0 for run in runs)
    with _client() as client:
        for spec in declared_deployments():
            client.delete_deployment(client.read_deployment_by_name(spec.full_name).id)


@pytest.mark.slow
def test_serve_runs_the_declared_deployments(stack, settings, catalog):
    from prefect.deployments import run_deployment

    from gaiverse.config import REPO_ROOT, prefect_env
    from gaiverse.proc import spawn, stop_pid

    service = spawn("flows-serve", [sys.executable, "-m", "flows.serve"], settings.run_dir,
                    env=prefect_env(settings), cwd=REPO_ROOT)
    try:
        def registered() -> bool:
            try:
                with _client() as client:
                    return all(client.read_deployment_by_name(s.full_name) for s in declared_deployments())
            except Exception:  # noqa: BLE001 - not there yet
                return False

        wait_for(registered, "flows.serve to register the deployments", timeout_s=180, interval_s=1)
        flow_run = run_deployment("selfcheck/selfcheck", parameters={"seed": 505}, timeout=SERVE_TIMEOUT_S)
        assert flow_run.state.is_completed(), (flow_run.state, service.log_path.read_text()[-4000:])
        assert catalog.query("SELECT version FROM versions WHERE flow_run_id = ?", [str(flow_run.id)])
        assert catalog.run(str(flow_run.id))["deployment"] == "selfcheck"
    finally:
        stop_pid(service.pid, "flows-serve")
