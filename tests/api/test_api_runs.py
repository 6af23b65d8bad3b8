"""Triggering a real deployment through the API: validation, ownership, state, logs, catalog rows."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_for_state(http, run_id: str, timeout_s: float = 180) -> dict:
    """Poll GET /runs/{id} until the run reaches a final state (TimeoutError otherwise)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = http.get(f"/runs/{run_id}").json()
        if run["state"] in FINAL or time.monotonic() > deadline:
            break
        time.sleep(1)
    if run["state"] not in FINAL:
        raise TimeoutError(f"run {run_id} still {run['state']} after {timeout_s:.0f} s")
    return run


def test_deployments_list_the_served_flow_with_its_schema(alice, served_flow):
    deployments = {d["name"]: d for d in alice.get("/deployments").json()}
    assert served_flow in deployments
    schema = deployments[served_flow]["parameter_schema"]
    assert schema["required"] == ["n"] and schema["properties"]["n"]["type"] == "integer"


@pytest.mark.parametrize("body, status, named", [
    ({"flow": "no-such-flow"}, 404, "no-such-flow"),
    ({"flow": "api-tiny/no-such-deployment"}, 404, "no-such-deployment"),
    ({"flow": "a/b/c"}, 404, "a/b/c"),
    ({"flow": "api-twin"}, 422, "api-twin/a, api-twin/b"),
    ({"flow": "api-tiny/t", "parameters": {"n": "three"}}, 422, "`n`"),
    ({"flow": "api-tiny/t", "parameters": {}}, 422, "`n`"),
    ({"flow": "api-tiny/t", "parameters": {"n": 1, "colour": "red"}}, 422, "`colour`"),
    ({"flow": "api-tiny/t", "parameters": [1, 2]}, 422, "parameters"),
    ({"flow": ""}, 422, "flow"),
    ({"parameters": {"n": 1}}, 422, "flow"),
])
def test_bad_run_requests_are_refused_and_write_nothing(alice, served_flow, snapshot, detail,
                                                        body, status, named):
    before = snapshot()
    response = alice.post("/runs", json=body)
    assert response.status_code == status, response.text
    assert named in detail(response)
    assert snapshot() == before


@pytest.mark.clause("PER-f1")
def test_a_triggered_run_is_owned_visible_to_its_owner_only_and_completes(alice, bob, admin, served_flow,
                                                                          catalog, detail):
    response = alice.post("/runs", json={"flow": served_flow, "parameters": {"n": 21, "label": "from-test"}})
    assert response.status_code == 201, response.text
    run = response.json()
    run_id = run["id"]
    assert run["state"] in {"SCHEDULED", "PENDING"} and run["owner"] == alice.user["user_id"]
    assert run["ui_url"].endswith(f"/runs/flow-run/{run_id}")
    row = catalog.run(run_id)
    assert row["owner"] == alice.user["user_id"] and row["deployment"] == served_flow

    assert run_id in [r["id"] for r in alice.get("/runs").json()]
    assert run_id not in [r["id"] for r in bob.get("/runs").json()]
    assert run_id in [r["id"] for r in admin.get("/runs").json()]
    for path in (f"/runs/{run_id}", f"/runs/{run_id}/logs", f"/catalog/task_runs?run_id={run_id}"):
        theirs = bob.get(path)
        assert theirs.status_code == 404, path
        detail(theirs)

    final = wait_for_state(alice, run_id)
    assert final["state"] == "COMPLETED", final
    assert final["parameters"] == {"n": 21, "label": "from-test"}
    assert final["started_at"] and final["ended_at"]
    deadline = time.monotonic() + 30  # logs are shipped to the server in batches
    while True:
        logs = alice.get(f"/runs/{run_id}/logs").json()
        found = any("api-tiny got n=21 label=from-test" in line["message"] for line in logs)
        if found or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert any("api-tiny got n=21 label=from-test" in line["message"] for line in logs), logs
    assert alice.get(f"/catalog/task_runs?run_id={run_id}").status_code == 200


def test_flow_name_alone_resolves_its_single_deployment(alice, served_flow):
    response = alice.post("/runs", json={"flow": "api-tiny", "parameters": {"n": 1}})
    assert response.status_code == 201, response.text
    assert response.json()["deployment"] == served_flow
    assert wait_for_state(alice, response.json()["id"])["state"] == "COMPLETED"


def test_unknown_or_malformed_run_ids_are_404(alice, detail):
    for run_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        for suffix in ("", "/logs"):
            response = alice.get(f"/runs/{run_id}{suffix}")
            assert response.status_code == 404
            detail(response)
