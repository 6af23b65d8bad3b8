"""Reading and validating interaction logs in the documented CSV formats (one parser for import and eval).

Two formats are accepted; ``read_interaction_log`` detects which one from the header.

**gaiverse interactions CSV** (one row per interaction; UTF-8, comma separated, header row):

=============== ======== ==================================================================
column          required meaning
=============== ======== ==================================================================
timestamp       yes      ISO 8601; without an offset it is read as UTC
user_id         yes      non-empty string (a pseudonymous id)
event           yes      message, view, impression, click, accept, complete, abandon, rate
item_id         see note task / item id; required for every event except ``message``
session_id      no       groups interactions of one sitting
modality        no       text (default), audio, image, video
text            no       the message, transcript or OCR text
reward          no       number; default 1 for click/accept/complete, 0.5 for rate, else 0
propensity      no       probability the logging policy showed item_id, in (0, 1]
position        no       slot the item was shown in, integer >= 1
features        no       JSON object of derived features
media_key       no       object-store key of the raw media
user_feature_*  no       categorical context features of the user (strings)
=============== ======== ==================================================================

**Open Bandit Dataset CSV** (detected by ``propensity_score`` and ``user_feature_0``): the leading
unnamed row-index column, ``timestamp, item_id, position, click, propensity_score,
user_feature_0..3, user-item_affinity_<item>``. Each row becomes an ``impression`` whose reward is the
click; the user id is a pseudonymous hash of the four user features (OBD has no user id), and the
affinity columns are kept as a dense matrix for the learned model. An ``item_context.csv`` beside the
log (or given explicitly) provides item features.

Validation collects up to ``max_errors`` problems, each naming the file, the 1-based data row and
the column, and raises one :class:`InteractionLogError`; nothing is returned for a bad file.
Implements PER-a2 (bulk import of interaction logs).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MODALITIES = ("text", "audio", "image", "video")
EVENTS = ("message", "view", "impression", "click", "accept", "complete", "abandon", "rate")
DEFAULT_REWARD = {"click": 1.0, "accept": 1.0, "complete": 1.0, "rate": 0.5}
REQUIRED = ("timestamp", "user_id", "event")
OPTIONAL = ("item_id", "session_id", "modality", "text", "reward", "propensity", "position", "features",
            "media_key")
OBD_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")

LogFormat = Literal["gaiverse", "obd"]


class InteractionLogError(ValueError):
    """A log file that cannot be read or fails validation; the message names file, row and column."""


@dataclass
class InteractionLog:
    """A validated interaction log, normalised to one frame whatever the source format.

    ``frame`` columns: ts (datetime64[ns, UTC]), user_id, session_id, event, modality, item_id, text,
    reward (float), propensity (float, NaN when unknown), position (Int64), features (dict),
    media_key, row (0-based row in the source file); sorted by ts, then row.
    """

    frame: pd.DataFrame
    source: str
    format: LogFormat
    user_features: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Categorical user/context features, one row per frame row (same index), strings."""
    affinity: np.ndarray | None = None
    """(n_rows, n_affinity_items) float32 user-item affinities (OBD), columns = ``affinity_items``."""
    affinity_items: list[str] = field(default_factory=list)
    """Item id of each affinity column."""
    item_context: pd.DataFrame | None = None
    """Item features indexed by item_id (str): numeric and categorical columns."""

    @property
    def has_propensity(self) -> bool:
        """True when every row carries the logging policy's propensity (bandit log)."""
        return bool(len(self.frame)) and bool(self.frame["propensity"].notna().all())

    def subset(self, mask: np.ndarray) -> InteractionLog:
        """The rows where ``mask`` is true, keeping features and item context aligned."""
        mask = np.asarray(mask, dtype=bool)
        return InteractionLog(
            frame=self.frame[mask].reset_index(drop=True),
            source=self.source,
            format=self.format,
            user_features=self.user_features[mask].reset_index(drop=True),
            affinity=None if self.affinity is None else self.affinity[mask],
            affinity_items=self.affinity_items,
            item_context=self.item_context,
        )


def _fail(path: Path, problems: list[str]) -> None:
    if problems:
        more = f" (and more; first {len(problems)} shown)" if len(problems) >= 10 else ""
        raise InteractionLogError(f"{path}: " + "; ".join(problems) + more)


def _read_raw(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InteractionLogError(f"`path` does not exist: {path}")
    if path.is_dir():
        raise InteractionLogError(f"`path` is a directory, expected a CSV file: {path}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InteractionLogError(f"{path}: not a readable CSV file ({err})".splitlines()[0]) from err


def _parse_ts(path: Path, raw: pd.Series, problems: list[str]) -> pd.Series:
    ts = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    for idx in np.flatnonzero(ts.isna().to_numpy())[:5]:
        problems.append(f"row {idx + 1} column `timestamp`: cannot parse {raw.iloc[idx]!r} as ISO 8601")
    return ts


def _parse_float(path: Path, raw: pd.Series, column: str, problems: list[str], default: float = np.nan,
                 low: float | None = None, high: float | None = None, low_open: bool = False) -> pd.Series:
    values = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
    bad = values.isna() & (raw != "")
    for idx in np.flatnonzero(bad.to_numpy())[:5]:
        problems.append(f"row {idx + 1} column `{column}`: {raw.iloc[idx]!r} is not a number")
    out_of_range = pd.Series(False, index=values.index)
    if low is not None:
        out_of_range |= (values <= low) if low_open else (values < low)
    if high is not None:
        out_of_range |= values > high
    for idx in np.flatnonzero(out_of_range.fillna(False).to_numpy())[:5]:
        bounds = f"{'(' if low_open else '['}{low}, {high}]"
        problems.append(f"row {idx + 1} column `{column}`: {raw.iloc[idx]!r} is outside {bounds}")
    return values.fillna(default).astype(float)


def _context_id(features: pd.DataFrame) -> pd.Series:
    """Pseudonymous id of a context: a short hash of its feature values (no user id exists in OBD)."""
    joined = features.astype(str).agg("|".join, axis=1)
    return joined.map(lambda s: "ctx-" + hashlib.sha256(s.encode()).hexdigest()[:12])


def _read_obd(path: Path, raw: pd.DataFrame) -> InteractionLog:
    problems: list[str] = []
    missing = [c for c in (*OBD_COLUMNS, "user_feature_0") if c not in raw.columns]
    _fail(path, [f"missing column `{c}`" for c in missing])
    ts = _parse_ts(path, raw["timestamp"], problems)
    click = _parse_float(path, raw["click"], "click", problems)
    for idx in np.flatnonzero(~click.isin([0.0, 1.0]).to_numpy())[:5]:
        problems.append(f"row {idx + 1} column `click`: {raw['click'].iloc[idx]!r} is not 0 or 1")
    pscore = _parse_float(path, raw["propensity_score"], "propensity_score", problems, low=0.0, high=1.0,
                          low_open=True)
    position = _parse_float(path, raw["position"], "position", problems, low=1.0)
    item = raw["item_id"].str.strip()
    for idx in np.flatnonzero((item == "").to_numpy())[:5]:
        problems.append(f"row {idx + 1} column `item_id`: empty")
    _fail(path, problems)
    ufeat_cols = sorted((c for c in raw.columns if c.startswith("user_feature_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    aff_cols = [c for c in raw.columns if c.startswith("user-item_affinity_")]
    affinity = None
    if aff_cols:
        affinity = raw[aff_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float32)
        if np.isnan(affinity).any():
            r, c = np.argwhere(np.isnan(affinity))[0]
            _fail(path, [f"row {r + 1} column `{aff_cols[c]}`: not a number"])
    row = pd.to_numeric(raw.iloc[:, 0], errors="coerce") if raw.columns[0].startswith("Unnamed") or raw.columns[0] == "" \
        else pd.Series(np.arange(len(raw)))
    frame = pd.DataFrame({
        "ts": ts, "user_id": _context_id(raw[ufeat_cols]), "session_id": None, "event": "impression",
        "modality": "text", "item_id": item, "text": "", "reward": click, "propensity": pscore,
        "position": position.astype("Int64"), "features": [{} for _ in range(len(raw))],
        "media_key": None, "row": row.fillna(pd.Series(np.arange(len(raw)))).astype(int),
    })
    return _finish(path, frame, "obd", raw[ufeat_cols], affinity, [c.rsplit("_", 1)[1] for c in aff_cols])


def _read_gaiverse(path: Path, raw: pd.DataFrame) -> InteractionLog:
    problems = [f"missing column `{c}`" for c in REQUIRED if c not in raw.columns]
    unknown = [c for c in raw.columns if c not in (*REQUIRED, *OPTIONAL) and not c.startswith("user_feature_")]
    problems += [f"unknown column `{c}` (allowed: {', '.join((*REQUIRED, *OPTIONAL))}, user_feature_*)"
                 for c in unknown]
    _fail(path, problems)
    for col in OPTIONAL:
        if col not in raw.columns:
            raw[col] = ""
    ts = _parse_ts(path, raw["timestamp"], problems)
    user = raw["user_id"].str.strip()
    for idx in np.flatnonzero((user == "").to_numpy())[:5]:
        problems.append(f"row {idx + 1} column `user_id`: empty")
    event = raw["event"].str.strip().str.lower()
    for idx in np.flatnonzero(~event.isin(EVENTS).to_numpy())[:5]:
        problems.append(f"row {idx + 1} column `event`: {raw['event'].iloc[idx]!r} is not one of {', '.join(EVENTS)}")
    item = raw["item_id"].str.strip()
    for idx in np.flatnonzero(((item == "") & (event != "message")).to_numpy())[:5]:
        problems.append(f"row {idx + 1} column `item_id`: required for event {event.iloc[idx]!r}")
    modality = raw["modality"].str.strip().str.lower().replace("", "text")
    for idx in np.flatnonzero(~modality.isin(MODALITIES).to_numpy())[:5]:
        problems.append(f"row {idx + 1} column `modality`: {raw['modality'].iloc[idx]!r} is not one of "
                        f"{', '.join(MODALITIES)}")
    reward = _parse_float(path, raw["reward"], "reward", problems)
    reward = reward.where(raw["reward"] != "", event.map(DEFAULT_REWARD).fillna(0.0))
    propensity = _parse_float(path, raw["propensity"], "propensity", problems, low=0.0, high=1.0, low_open=True)
    position = _parse_float(path, raw["position"], "position", problems, low=1.0)
    features: list[dict] = []
    for idx, text in enumerate(raw["features"]):
        try:
            value = json.loads(text) if text else {}
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            problems.append(f"row {idx + 1} column `features`: {text[:40]!r} is not a JSON object")
            value = {}
        features.append(value)
    _fail(path, problems[:10])
    ufeat_cols = [c for c in raw.columns if c.startswith("user_feature_")]
    frame = pd.DataFrame({
        "ts": ts, "user_id": user, "session_id": raw["session_id"].replace("", None), "event": event,
        "modality": modality, "item_id": item.replace("", None), "text": raw["text"], "reward": reward,
        "propensity": propensity, "position": position.astype("Int64"), "features": features,
        "media_key": raw["media_key"].replace("", None), "row": np.arange(len(raw)),
    })
    return _finish(path, frame, "gaiverse", raw[ufeat_cols], None, [])


def _finish(path: Path, frame: pd.DataFrame, fmt: LogFormat, ufeat: pd.DataFrame, affinity: np.ndarray | None,
            affinity_items: list[str]) -> InteractionLog:
    if frame.empty:
        raise InteractionLogError(f"{path}: no data rows")
    order = np.lexsort((frame["row"].to_numpy(), frame["ts"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    ufeat = ufeat.iloc[order].reset_index(drop=True)
    affinity = None if affinity is None else affinity[order]
    item_context = _read_item_context(path.parent / "item_context.csv") if fmt == "obd" else None
    log.info("read %d %s interactions from %s", len(frame), fmt, path)
    return InteractionLog(frame, str(path), fmt, ufeat, affinity, affinity_items, item_context)


def _read_item_context(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    raw = _read_raw(path)
    if "item_id" not in raw.columns:
        raise InteractionLogError(f"{path}: missing column `item_id`")
    ctx = raw.drop(columns=[c for c in raw.columns if c.startswith("Unnamed") or c == ""]).set_index("item_id")
    ctx.index = ctx.index.str.strip()
    for col in ctx.columns:
        numeric = pd.to_numeric(ctx[col], errors="coerce")
        if numeric.notna().all():
            ctx[col] = numeric.astype(float)
    return ctx


def read_interaction_log(path: str | Path, item_context: str | Path | None = None) -> InteractionLog:
    """Read, validate and normalise one interaction log file (format detected from the header).

    ``item_context``: an item-feature CSV (``item_id`` + feature columns); for OBD logs the
    ``item_context.csv`` beside the log is used when this is None. Implements PER-a2.
    """
    path = Path(path)
    raw = _read_raw(path)
    fmt: LogFormat = "obd" if {"propensity_score", "user_feature_0"} <= set(raw.columns) else "gaiverse"
    result = _read_obd(path, raw) if fmt == "obd" else _read_gaiverse(path, raw)
    if item_context is not None:
        result.item_context = _read_item_context(Path(item_context))
        if result.item_context is None:
            raise InteractionLogError(f"`item_context` does not exist: {item_context}")
    return result


def split_by_time(log_: InteractionLog, train_fraction: float = 0.7) -> tuple[InteractionLog, InteractionLog]:
    """Earlier rows for training, later rows for testing, cut at the ``train_fraction`` quantile of time.

    Rows sharing the cut timestamp all go to the test part so no instant is split.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"`train_fraction` must be in (0, 1), got {train_fraction}")
    ts = log_.frame["ts"]
    cut = ts.iloc[min(int(len(ts) * train_fraction), len(ts) - 1)]
    mask = (ts < cut).to_numpy()
    if mask.all() or not mask.any():
        raise InteractionLogError(f"{log_.source}: cannot split {len(ts)} rows by time at {train_fraction}")
    log.info("time split at %s: %d train / %d test rows", cut, mask.sum(), (~mask).sum())
    return log_.subset(mask), log_.subset(~mask)
