"""Great Expectations suites over the catalog's own tables: the metadata every other check relies on.

Each table is read from DuckDB into pandas (with derived boolean columns computed in SQL,
e.g. "the sha256 in the key equals the sha256 column") and validated by ``validate_frame``;
a failure names the table, the offending row (key or run id) and the observed value.
Given an object store, the assets suite also checks that every row's object exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from storage.catalog import TASK_STATES, Catalog
from validation.metrics import Expect, ValidationFailed, ValidationReport, expect, validate_frame

log = logging.getLogger(__name__)

SHA256_RE = r"^[0-9a-f]{64}$"
KEY_RE = r"^[a-z][a-z0-9_/-]*/[0-9a-f]{64}\.[a-z0-9]{1,10}$"
RUN_STATES = ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "CANCELLING", "CRASHED", "PAUSED")
"""Prefect state types a flow run row may hold."""


@dataclass(frozen=True)
class TableSuite:
    """One catalog table: the query that reads it, the column naming a row, its expectations."""

    table: str
    sql: str
    row_column: str
    expectations: tuple[Expect, ...]

    @property
    def suite(self) -> str:
        return f"catalog.{self.table}"


def _true(column: str) -> Expect:
    return expect("column_values_to_be_in_set", column=column, value_set=[True])


SUITES: tuple[TableSuite, ...] = (
    TableSuite(
        "assets",
        """SELECT key, kind, bytes, sha256, content_type,
                  regexp_extract(key, '/([0-9a-f]{64})\\.[a-z0-9]+$', 1) = sha256 AS sha256_in_key,
                  starts_with(key, kind || '/') AS kind_is_key_prefix
           FROM assets""",
        "key",
        (
            expect("column_values_to_match_regex", column="sha256", regex=SHA256_RE),
            expect("column_values_to_match_regex", column="key", regex=KEY_RE),
            expect("column_values_to_be_unique", column="key"),
            expect("column_values_to_be_between", column="bytes", min_value=1),
            _true("sha256_in_key"),
            _true("kind_is_key_prefix"),
            expect("column_values_to_not_be_null", column="content_type"),
        ),
    ),
    TableSuite(
        "task_runs",
        """SELECT task_run_id, task_name, parameters_hash, state, retries, duration_s,
                  ended_at >= started_at AS ends_after_start
           FROM task_runs""",
        "task_run_id",
        (
            expect("column_values_to_be_unique", column="task_run_id"),
            expect("column_values_to_be_in_set", column="state", value_set=list(TASK_STATES)),
            expect("column_values_to_match_regex", column="parameters_hash", regex=SHA256_RE),
            expect("column_values_to_be_between", column="retries", min_value=0),
            expect("column_values_to_be_between", column="duration_s", min_value=0),
            _true("ends_after_start"),
            expect("column_values_to_not_be_null", column="task_name"),
        ),
    ),
    TableSuite(
        "runs",
        """SELECT flow_run_id, flow_name, parameters_hash, state, duration_s,
                  ended_at >= started_at AS ends_after_start
           FROM runs""",
        "flow_run_id",
        (
            expect("column_values_to_be_unique", column="flow_run_id"),
            expect("column_values_to_be_in_set", column="state", value_set=list(RUN_STATES)),
            expect("column_values_to_match_regex", column="parameters_hash", regex=SHA256_RE),
            expect("column_values_to_be_between", column="duration_s", min_value=0),
            _true("ends_after_start"),
        ),
    ),
    TableSuite(
        "versions",
        """SELECT v.collection || ' v' || v.version AS version_id, v.version, v.manifest_key,
                  a.key IS NOT NULL AS manifest_in_assets,
                  coalesce(v.parent_version < v.version, TRUE) AS parent_is_older
           FROM versions v LEFT JOIN assets a ON a.key = v.manifest_key""",
        "version_id",
        (
            expect("column_values_to_be_unique", column="version_id"),
            expect("column_values_to_be_between", column="version", min_value=1),
            expect("column_values_to_match_regex", column="manifest_key", regex=KEY_RE),
            _true("manifest_in_assets"),
            _true("parent_is_older"),
        ),
    ),
    TableSuite(
        "lineage",
        """SELECT l.output_key || ' <- ' || l.input_key AS edge,
                  o.key IS NOT NULL AS output_in_assets, i.key IS NOT NULL AS input_in_assets
           FROM lineage l LEFT JOIN assets o ON o.key = l.output_key LEFT JOIN assets i ON i.key = l.input_key""",
        "edge",
        (_true("output_in_assets"), _true("input_in_assets")),
    ),
)


def catalog_frame(catalog: Catalog, suite: TableSuite, store=None) -> pd.DataFrame:
    """The table as the suite sees it; with a store, assets get an ``object_exists`` column."""
    frame = catalog.frame(suite.sql)
    if store is not None and suite.table == "assets":
        frame["object_exists"] = [store.exists(key) for key in frame["key"]]
    return frame


def validate_catalog(
    catalog: Catalog, *, store=None, flow_run_id: str | None = None, tables: Sequence[str] | None = None,
    raise_on_failure: bool = True,
) -> list[ValidationReport]:
    """Run every table suite (or those in ``tables``); record each report; raise on the first failed table.

    All suites run before anything is raised, so the catalog records the full picture.
    """
    known = {suite.table for suite in SUITES}
    unknown = set(tables or ()) - known
    if unknown:
        raise ValueError(f"`tables` must be among {sorted(known)}, got {sorted(unknown)}")
    reports = []
    for suite in SUITES:
        if tables is not None and suite.table not in tables:
            continue
        expectations = list(suite.expectations)
        if store is not None and suite.table == "assets":
            expectations.append(_true("object_exists"))
        reports.append(validate_frame(
            suite.suite, catalog_frame(catalog, suite, store), expectations, asset_key=f"catalog:{suite.table}",
            asset_column=suite.row_column, catalog=catalog, flow_run_id=flow_run_id, raise_on_failure=False,
        ))
    failed = [report for report in reports if not report.success]
    if failed and raise_on_failure:
        raise ValidationFailed(failed[0])
    return reports
