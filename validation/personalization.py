"""Expectations on an interaction log before it is imported into the personalization database (PER-a2, PER-f1).

The frame is the log as it will be stored: parsed, validated row by row by ``interaction_log``,
and pseudonymised. The suite checks what the import relies on: every user id is a pseudonym (no
raw account or customer id gets in), events and modalities are known, timestamps parse, task
events name their item, propensities are probabilities and rewards are finite.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gaiverse.personalization.interaction_log import EVENTS, MODALITIES, InteractionLog
from validation.metrics import expect

IMPORT_SUITE = "personalization.import"
PSEUDONYM_RE = r"^u-[0-9a-f]{32}$"

IMPORT_EXPECTATIONS = (
    expect("table_row_count_to_be_between", min_value=1),
    expect("column_values_to_match_regex", column="user_id", regex=PSEUDONYM_RE),
    expect("column_values_to_not_be_null", column="ts"),
    expect("column_values_to_be_in_set", column="event", value_set=list(EVENTS)),
    expect("column_values_to_be_in_set", column="modality", value_set=list(MODALITIES)),
    expect("column_values_to_be_in_set", column="item_given_when_needed", value_set=[True]),
    expect("column_values_to_be_between", column="propensity", min_value=0.0, max_value=1.0),
    expect("column_values_to_be_in_set", column="reward_finite", value_set=[True]),
    expect("column_values_to_be_unique", column="row"),
)


def import_frame(parsed: InteractionLog) -> pd.DataFrame:
    """One row per interaction to import, with the derived columns the suite checks."""
    frame = parsed.frame
    return pd.DataFrame({
        "row": frame["row"].astype(int),
        "user_id": frame["user_id"],
        "ts": frame["ts"],
        "event": frame["event"],
        "modality": frame["modality"],
        "item_given_when_needed": (frame["event"] == "message") | frame["item_id"].notna(),
        "propensity": frame["propensity"],
        "reward_finite": np.isfinite(frame["reward"].astype(float)),
    })
