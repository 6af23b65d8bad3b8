"""Validate a pandas frame with Great Expectations, record the result, fail loudly: the helper every flow uses.

GX 1.x runs in an ephemeral (in-memory) context over pandas frames: its SQL datasource on
DuckDB fails on every expectation (STACK.md), so callers read DuckDB with ``.df()`` and
pass the frame. GX is imported on first use only (it costs seconds).

A failed expectation raises ``ValidationFailed`` whose message names the expectation, the
asset (or catalog row) and the observed value; the report is stored in the catalog first.
Flows validate before they publish, so a failure leaves nothing published.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import pandas as pd

from storage.catalog import Catalog

log = logging.getLogger(__name__)

MAX_LISTED = 5
"""Unexpected values / asset names quoted in a message before it says "and N more"."""

_GX_LOCK = threading.Lock()
_GX: dict[str, Any] = {}


@dataclass(frozen=True)
class Expect:
    """One expectation: its GX name (``expect_...``) and keyword arguments, without importing GX."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.kwargs.items())
        return f"{self.name}({args})"


def expect(name: str, **kwargs: Any) -> Expect:
    """``expect("column_values_to_be_between", column="bytes", min_value=1)``; the ``expect_`` prefix is optional."""
    name = name if name.startswith("expect_") else f"expect_{name}"
    if not re.fullmatch(r"expect_[a-z0-9_]+", name):
        raise ValueError(f"`name` must be a snake_case GX expectation name, got {name!r}")
    return Expect(name, dict(kwargs))


@dataclass
class Outcome:
    """What one expectation found."""

    expectation: str
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    element_count: int | None = None
    assets: list[str] = field(default_factory=list)
    error: str | None = None

    def describe(self, suite: str, asset_key: str | None) -> str:
        where = _listed(self.assets) if self.assets else (asset_key or "(no asset)")
        if self.error:
            observed = f"error {self.error}"
        elif self.unexpected_count is not None:
            observed = f"{_listed(self.observed)} ({self.unexpected_count} of {self.element_count} values unexpected)"
        else:
            observed = repr(self.observed)
        return f"expectation {self.expectation} failed for asset {where} (suite {suite}): observed {observed}"


@dataclass
class ValidationReport:
    """One suite run over one frame."""

    suite: str
    success: bool
    rows: int
    asset_key: str | None
    outcomes: list[Outcome]
    validation_id: str | None = None

    @property
    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.success]

    def message(self) -> str:
        if self.success:
            return f"suite {self.suite}: {len(self.outcomes)} expectations passed on {self.rows} rows"
        return "; ".join(outcome.describe(self.suite, self.asset_key) for outcome in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """A table for the Prefect artifact: one row per expectation."""
        lines = [
            f"### Validation `{self.suite}`: {'passed' if self.success else 'FAILED'}",
            f"asset: `{self.asset_key or '-'}` · rows: {self.rows}",
            "",
            "| expectation | result | observed |",
            "|---|---|---|",
        ]
        for outcome in self.outcomes:
            observed = outcome.error or ("" if outcome.observed is None else _listed(outcome.observed))
            lines.append(f"| `{outcome.expectation}` | {'ok' if outcome.success else '**failed**'} | {observed} |")
        return "\n".join(lines)


class ValidationFailed(Exception):
    """A suite found a failed expectation; the message names expectation, asset and observed value."""

    retryable = False
    """Deterministic: tasks/common.retry_transient does not retry it."""

    def __init__(self, report: ValidationReport):
        super().__init__(report.message())
        self.report = report

    def __reduce__(self):
        return (type(self), (self.report,))


def _gx():
    """The GX module and one ephemeral context per process (imported on first use)."""
    with _GX_LOCK:
        if not _GX:
            with warnings.catch_warnings():  # GX imports deprecated sre_* modules
                warnings.simplefilter("ignore", DeprecationWarning)
                import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig,
            )

            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            )
            _GX["gx"] = gx
            _GX["context"] = gx.get_context(mode="ephemeral", project_config=config)
            _GX["count"] = 0
        return _GX["gx"], _GX["context"]


def _gx_expectation(gx, spec: Expect, index: int):
    class_name = "".join(part.capitalize() for part in spec.name.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ValueError(f"unknown Great Expectations expectation {spec.name!r} (no gx.expectations.{class_name})")
    return cls(**spec.kwargs, meta={"gaiverse_index": index})


def run_suite(suite: str, frame: pd.DataFrame, expectations: Sequence[Expect], *,
              asset_column: str | None = "key", asset_key: str | None = None) -> ValidationReport:
    """Run ``expectations`` on ``frame`` and describe each outcome (no recording, no raising).

    asset_column : column naming the asset of each row; failing rows are reported by it.
    """
    if not suite:
        raise ValueError("`suite` must be a non-empty name")
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"`frame` must be a pandas DataFrame, got {type(frame).__name__}")
    if not expectations:
        raise ValueError(f"suite {suite!r} has no expectations")
    frame = frame.reset_index(drop=True)
    gx, context = _gx()
    with _GX_LOCK:
        _GX["count"] += 1
        source = context.data_sources.add_pandas(f"{suite}-{_GX['count']}")
    batch = (source.add_dataframe_asset(name="frame").add_batch_definition_whole_dataframe("whole")
             .get_batch(batch_parameters={"dataframe": frame}))
    gx_suite = gx.ExpectationSuite(name=suite)
    for index, spec in enumerate(expectations):
        gx_suite.add_expectation(_gx_expectation(gx, spec, index))
    result = batch.validate(gx_suite, result_format="COMPLETE")
    # GX reorders results: match them back to the specs by the index stored in meta
    by_index = {int(item.expectation_config.meta["gaiverse_index"]): item for item in result.results}
    outcomes = [_outcome(spec, by_index[i], frame, asset_column) for i, spec in enumerate(expectations)]
    with _GX_LOCK:
        context.data_sources.delete(source.name)
    return ValidationReport(suite, all(o.success for o in outcomes), len(frame), asset_key, outcomes)


def _outcome(spec: Expect, item, frame: pd.DataFrame, asset_column: str | None) -> Outcome:
    outcome = Outcome(expectation=str(spec), success=bool(item.success))
    error = _raised_message(item.exception_info or {})
    if error:
        outcome.error = error[:500]
        outcome.success = False
        return outcome
    result = item.result or {}
    if "observed_value" in result:
        outcome.observed = _plain(result["observed_value"])
    elif "unexpected_count" in result:
        outcome.unexpected_count = int(result["unexpected_count"])
        outcome.element_count = int(result.get("element_count") or 0)
        outcome.observed = [_plain(v) for v in (result.get("unexpected_list") or result.get("partial_unexpected_list") or [])]
        indices = result.get("unexpected_index_list") or []
        if asset_column and asset_column in frame.columns and indices:
            rows = [index for index in indices if isinstance(index, (int,)) and 0 <= index < len(frame)]
            outcome.assets = [str(frame[asset_column].iloc[i]) for i in rows]
    return outcome


def _raised_message(info: dict) -> str | None:
    """GX reports exceptions flat ({raised_exception, exception_message}) or per metric id."""
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return str(nested.get("exception_message") or "exception")
    return None


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            return str(value)
    return value


def _listed(values: Any) -> str:
    if not isinstance(values, (list, tuple)):
        return repr(values)
    shown = ", ".join(repr(v) for v in values[:MAX_LISTED])
    more = f" and {len(values) - MAX_LISTED} more" if len(values) > MAX_LISTED else ""
    return f"[{shown}{more}]"


def validate_frame(
    suite: str, frame: pd.DataFrame, expectations: Sequence[Expect], *, asset_key: str | None = None,
    asset_column: str | None = "key", catalog: Catalog | None = None, flow_run_id: str | None = None,
    raise_on_failure: bool = True,
) -> ValidationReport:
    """Validate ``frame``, store the report in the catalog, raise ValidationFailed on any failed expectation.

    asset_key : the asset the frame describes (named in the message when rows carry no
    ``asset_column``). The report is recorded (``validations``) before anything is raised.
    """
    report = run_suite(suite, frame, expectations, asset_column=asset_column, asset_key=asset_key)
    if catalog is not None:
        report.validation_id = catalog.record_validation(
            suite, report.success, report.to_dict(), asset_key=asset_key, flow_run_id=flow_run_id,
        )
    if report.success:
        log.info("validation %s passed (%d expectations, %d rows)", suite, len(report.outcomes), report.rows)
    else:
        log.warning("validation %s failed: %s", suite, report.message())
        if raise_on_failure:
            raise ValidationFailed(report)
    return report
