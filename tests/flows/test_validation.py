"""Failure paths of validation: the message names expectation, asset and observed value; nothing is published."""

from __future__ import annotations

import hashlib

import pytest

from validation.metrics import ValidationFailed, validate_frame


def test_failed_expectation_names_expectation_asset_and_observed_value(catalog):
    from validation.selfcheck import METRIC_EXPECTATIONS, METRICS_SUITE, metrics_frame

    field_key = "selfcheck/field/" + hashlib.sha256(b"diverged fit").hexdigest() + ".npy"
    versions_before = catalog.query("SELECT count(*) AS n FROM versions")[0]["n"]
    frame = metrics_frame(field_key=field_key, vertices=162, faces=320, watertight=True,
                          field_values=[0.01] * 162, initial_loss=0.004, final_loss=0.008, device="cpu")

    with pytest.raises(ValidationFailed) as failure:
        validate_frame(METRICS_SUITE, frame, METRIC_EXPECTATIONS, asset_key=field_key,
                       catalog=catalog, flow_run_id="test-diverged-fit")

    message = str(failure.value)
    assert "expect_column_values_to_be_between(column='loss_ratio', min_value=0.0, max_value=0.5)" in message
    assert field_key in message
    assert "observed [2.0]" in message
    assert len(failure.value.report.failures) == 1
    recorded = catalog.query("SELECT success, suite, asset_key FROM validations WHERE flow_run_id = ?",
                             ["test-diverged-fit"])
    assert recorded == [{"success": False, "suite": METRICS_SUITE, "asset_key": field_key}]
    assert catalog.query("SELECT count(*) AS n FROM versions")[0]["n"] == versions_before


def test_missing_column_is_a_failure_not_a_pass(catalog):
    import pandas as pd

    from validation.metrics import expect

    with pytest.raises(ValidationFailed, match="column \"bytes\" in BatchData does not exist"):
        validate_frame("check.columns", pd.DataFrame({"key": ["a"]}), [expect("column_values_to_be_between",
                       column="bytes", min_value=1)], asset_key="a")


@pytest.mark.slow
def test_corrupt_catalog_row_fails_the_selfcheck_and_publishes_nothing(stack, catalog):
    from flows.selfcheck import SelfcheckFailed, selfcheck

    bad_key = "selfcheck/mesh/" + hashlib.sha256(b"half-written").hexdigest() + ".glb"
    with catalog.write() as con:
        con.execute("INSERT INTO assets VALUES (?, 'selfcheck/mesh', 0, ?, 'model/gltf-binary', now(), NULL)",
                    [bad_key, bad_key.split("/")[-1].split(".")[0]])
    versions_before = catalog.query("SELECT count(*) AS n FROM versions")[0]["n"]
    try:
        with pytest.raises(SelfcheckFailed) as failure:
            selfcheck(seed=606)
    finally:
        with catalog.write() as con:
            con.execute("DELETE FROM assets WHERE key = ?", [bad_key])

    summary = failure.value.summary
    steps = {step["name"]: step for step in summary["steps"]}
    assert [s["name"] for s in summary["steps"] if not s["ok"]] == ["catalog", "publish"]
    assert "expect_column_values_to_be_between(column='bytes', min_value=1)" in steps["catalog"]["detail"]
    assert bad_key in steps["catalog"]["detail"] and "observed [0]" in steps["catalog"]["detail"]
    assert steps["publish"]["detail"] == "skipped after an earlier failure"
    assert steps["report"]["ok"]
    assert catalog.query("SELECT count(*) AS n FROM versions")[0]["n"] == versions_before
    assert not catalog.query("SELECT 1 FROM versions WHERE flow_run_id = ?", [summary["flow_run_id"]])
    assert catalog.run(summary["flow_run_id"])["state"] == "FAILED"


@pytest.mark.slow
def test_catalog_suite_finds_a_row_without_its_object(stack, catalog, store):
    from validation.catalog_suite import validate_catalog

    sha = hashlib.sha256(b"never uploaded").hexdigest()
    key = f"selfcheck/field/{sha}.npy"
    with catalog.write() as con:
        con.execute("INSERT INTO assets VALUES (?, 'selfcheck/field', 14, ?, 'application/octet-stream', now(), NULL)",
                    [key, sha])
    try:
        with pytest.raises(ValidationFailed) as failure:
            validate_catalog(catalog, store=store)
    finally:
        with catalog.write() as con:
            con.execute("DELETE FROM assets WHERE key = ?", [key])
    assert "expect_column_values_to_be_in_set(column='object_exists', value_set=[True])" in str(failure.value)
    assert key in str(failure.value) and "observed [False]" in str(failure.value)
