"""Expectations on the self-check's outputs: the stored objects and the metrics of the mesh and the fit.

The frames are built from what was read back from the object store (not from what was
written), so a passing suite says the stored assets are intact and usable.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from validation.catalog_suite import KEY_RE, SHA256_RE
from validation.metrics import expect

ASSETS_SUITE = "selfcheck.assets"
METRICS_SUITE = "selfcheck.metrics"
STORED_KINDS = ("selfcheck/mesh", "selfcheck/field", "selfcheck/preview")

ASSET_EXPECTATIONS = (
    expect("table_row_count_to_equal", value=len(STORED_KINDS)),
    expect("column_values_to_match_regex", column="key", regex=KEY_RE),
    expect("column_values_to_match_regex", column="sha256", regex=SHA256_RE),
    expect("column_values_to_be_between", column="bytes", min_value=1),
    expect("column_values_to_be_in_set", column="kind", value_set=list(STORED_KINDS)),
    expect("column_values_to_be_in_set", column="sha256_verified", value_set=[True]),
    expect("column_values_to_be_in_set", column="decodes", value_set=[True]),
)

METRIC_EXPECTATIONS = (
    expect("table_row_count_to_equal", value=1),
    expect("column_values_to_be_in_set", column="watertight", value_set=[True]),
    expect("column_values_to_be_between", column="vertices", min_value=12, max_value=200_000),
    expect("column_values_to_be_in_set", column="field_matches_mesh", value_set=[True]),
    expect("column_values_to_be_in_set", column="field_finite", value_set=[True]),
    expect("column_values_to_be_between", column="loss_ratio", min_value=0.0, max_value=0.5),
    expect("column_values_to_be_between", column="field_max_abs_m", min_value=0.0, max_value=0.1),
    expect("column_values_to_be_in_set", column="device", value_set=["cpu", "cuda"]),
)
"""The fit must at least halve its loss and put the surface within 10 cm of the zero level."""


def assets_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per stored object: key, kind, bytes, sha256, sha256_verified, decodes."""
    columns = ["key", "kind", "bytes", "sha256", "sha256_verified", "decodes"]
    return pd.DataFrame([{column: row[column] for column in columns} for row in rows], columns=columns)


def metrics_frame(*, field_key: str, vertices: int, faces: int, watertight: bool, field_values: Sequence[float],
                  initial_loss: float, final_loss: float, device: str) -> pd.DataFrame:
    """The one-row metrics frame of a self-check run (named by the stored field's key)."""
    values = [float(v) for v in field_values]
    finite = all(math.isfinite(v) for v in values)
    return pd.DataFrame([{
        "key": field_key,
        "vertices": int(vertices),
        "faces": int(faces),
        "watertight": bool(watertight),
        "field_matches_mesh": len(values) == int(vertices),
        "field_finite": finite,
        "field_max_abs_m": max((abs(v) for v in values), default=math.nan) if finite else math.inf,
        "initial_loss": float(initial_loss),
        "final_loss": float(final_loss),
        "loss_ratio": float(final_loss) / float(initial_loss) if initial_loss > 0 else math.inf,
        "device": str(device),
    }])
