"""The self-check flow against the real services: S3 (nanio), DuckDB catalog, Prefect server, Ray."""

from __future__ import annotations

import json

import pytest

from _flowhelpers import task_runs_of

pytestmark = pytest.mark.slow

TASKS = ("generate-asset", "fit-model-stage", "render-preview", "store-outputs", "validate-outputs",
         "check-catalog", "publish-selfcheck", "attach-report")


def test_selfcheck_publishes_a_version(stack, catalog, store, artifacts_dir):
    from flows.selfcheck import STEPS, selfcheck
    from tasks.common import stable_hash
    from validation.catalog_suite import validate_catalog

    summary = selfcheck(seed=101)

    assert summary["ok"], summary
    assert [step["name"] for step in summary["steps"]] == list(STEPS)
    assert all(step["ok"] for step in summary["steps"]), summary["steps"]
    run_id = summary["flow_run_id"]
    versions = catalog.query("SELECT * FROM versions WHERE flow_run_id = ?", [run_id])
    assert len(versions) == 1 and versions[0]["collection"] == "selfcheck"
    assert versions[0]["version"] == summary["version"]
    manifest = store.get_bytes(versions[0]["manifest_key"])
    assert b'"flow_run_id": "' + run_id.encode() in manifest

    rows = task_runs_of(catalog, run_id)
    assert set(rows) == set(TASKS)
    for row in rows.values():
        assert row["state"] == "COMPLETED", row
        assert row["retries"] == 0
        assert row["duration_s"] is not None and row["duration_s"] >= 0
        assert row["started_at"] <= row["ended_at"]
        assert len(row["parameters_hash"]) == 64
    assert rows["generate-asset"]["parameters_hash"] == stable_hash({"subdivisions": 2, "seed": 101})
    run = catalog.run(run_id)
    assert run["state"] == "COMPLETED" and run["flow_name"] == "selfcheck"
    assert run["duration_s"] >= max(row["duration_s"] for row in rows.values())
    validations = catalog.query("SELECT suite, success FROM validations WHERE flow_run_id = ?", [run_id])
    assert {v["suite"] for v in validations} >= {"selfcheck.assets", "selfcheck.metrics", "catalog.assets"}
    assert all(v["success"] for v in validations)

    reports = validate_catalog(catalog, store=store)
    assert all(report.success for report in reports)
    preview_key = next(k for k in json.loads(manifest)["assets"].values() if k["kind"].endswith("preview"))
    (artifacts_dir / "selfcheck-preview.png").write_bytes(store.get_bytes(preview_key["key"]))
