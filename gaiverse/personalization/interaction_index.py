"""Every interaction of the database in memory: compact columns per user, plus the rows committed since.

Reads of a user's history (the history endpoint, and the first build of their preference profile)
must not open the DuckDB file: opening it costs ~10-20 ms and waits behind the writer's lock. So at
start-up one scan loads all interactions into numpy columns sorted by (user, time) — ids, times,
event, modality and item codes, rewards (~35 bytes a row: 2 million rows ~ 70 MB) — with the rare
free-text, feature, session and media columns kept sparse, still sealed, and opened only when a
row is read. Rows committed later by the single writer are appended to a per-user tail right after
their commit, before the request is answered, so a user always reads their own writes (the tail
is merged with the snapshot on read). ``reload`` rebuilds the snapshot when another process
changed the file (an import, the retention flow). Implements PER-a2 reads and PER-g1.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import numpy as np

from gaiverse.personalization.database import Database
from gaiverse.personalization.interaction_log import EVENTS, MODALITIES

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
BASE = "WITH base AS (SELECT row_number() OVER (ORDER BY user_id, ts, interaction_id) - 1 AS pos, * FROM interactions) "
DENSE_SQL = BASE + """
SELECT dense_rank() OVER (ORDER BY user_id) - 1 AS user_code, interaction_id, epoch_us(ts) AS ts,
       list_position(?, event) - 1 AS event, list_position(?, modality) - 1 AS modality,
       CASE WHEN item_id IS NULL THEN -1 ELSE dense_rank() OVER (PARTITION BY item_id IS NULL ORDER BY item_id) - 1
       END AS item, coalesce(reward, 'NaN'::DOUBLE) AS reward
FROM base ORDER BY pos"""
SPARSE_SQL = BASE + """
SELECT pos, NULLIF(text, '') AS text,
       CASE WHEN features IS NULL OR features::VARCHAR IN ('{}', '') THEN NULL ELSE features::VARCHAR END AS features,
       session_id, media_key
FROM base WHERE (text IS NOT NULL AND text <> '') OR (features IS NOT NULL AND features::VARCHAR NOT IN ('{}', ''))
      OR session_id IS NOT NULL OR media_key IS NOT NULL"""
SPARSE = ("text", "features", "session_id", "media_key")

Opener = Callable[[str, str | None], Any]
"""(user_id, stored value) -> opened value (text or features)."""


class InteractionIndex:
    """In-memory copy of the interactions table, per user. Implements PER-g1 (reads from memory)."""

    def __init__(self, db: Database, open_text: Opener, open_features: Opener, interaction_cls: type) -> None:
        self.db = db
        self._open_text = open_text
        self._open_features = open_features
        self._cls = interaction_cls
        self._lock = threading.RLock()
        self.reload()

    def reload(self) -> None:
        """Rebuild the snapshot from the database (start-up, or after another process wrote)."""
        with self.db.read() as con:
            dense = con.execute(DENSE_SQL, [list(EVENTS), list(MODALITIES)]).fetchnumpy()
            sparse_rows = con.execute(SPARSE_SQL).fetchall()
            user_names = [r[0] for r in con.execute("SELECT DISTINCT user_id FROM interactions ORDER BY user_id").fetchall()]
            item_names = [r[0] for r in con.execute(
                "SELECT DISTINCT item_id FROM interactions WHERE item_id IS NOT NULL ORDER BY item_id").fetchall()]
            users = {r[0] for r in con.execute("SELECT user_id FROM users").fetchall()}
        user_codes = np.asarray(dense["user_code"], dtype=np.int64)
        bounds = np.flatnonzero(np.diff(user_codes)) + 1
        starts = np.concatenate([[0], bounds]).astype(np.int64)
        ends = np.concatenate([bounds, [len(user_codes)]]).astype(np.int64)
        slices = ({user_names[user_codes[s]]: (int(s), int(e)) for s, e in zip(starts, ends)}
                  if len(user_codes) else {})
        sparse: dict[str, dict[int, str]] = {name: {} for name in SPARSE}
        for row in sparse_rows:
            for name, value in zip(SPARSE, row[1:]):
                if value is not None:
                    sparse[name][int(row[0])] = value
        ts = np.asarray(dense["ts"], dtype=np.int64)
        event, event_names = np.asarray(dense["event"], dtype=np.int8), list(EVENTS)
        modality, modality_names = np.asarray(dense["modality"], dtype=np.int8), list(MODALITIES)
        item = np.asarray(dense["item"], dtype=np.int32)
        with self._lock:
            self._slices = slices
            self._ids = np.asarray(dense["interaction_id"], dtype=np.int64)
            self._ts = ts
            self._event, self._event_names = event.astype(np.int8), event_names
            self._modality, self._modality_names = modality.astype(np.int8), modality_names
            self._item, self._item_names = item, item_names
            self._reward = np.asarray(dense["reward"], dtype=np.float64)
            self._sparse = sparse
            self._users = users | set(slices)
            self._tails: dict[str, list] = {}
        log.info("interaction index: %d interactions of %d users in memory (%.0f MB of columns)",
                 len(ts), len(self._users), self.nbytes / 2**20)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._ids, self._ts, self._event, self._modality, self._item, self._reward))

    # users --------------------------------------------------------------------------------
    def has_user(self, user_id: str) -> bool:
        return user_id in self._users

    def add_user(self, user_id: str) -> None:
        with self._lock:
            self._users.add(user_id)

    def drop_user(self, user_id: str) -> None:
        """Forget the user: snapshot rows become unreachable, the tail (plaintext) is dropped."""
        with self._lock:
            self._users.discard(user_id)
            self._slices.pop(user_id, None)
            self._tails.pop(user_id, None)

    # rows ---------------------------------------------------------------------------------
    def append(self, interaction) -> None:
        """A row the writer just committed (opened: the caller has the plaintext)."""
        with self._lock:
            self._tails.setdefault(interaction.user_id, []).append(interaction)

    def count(self, user_id: str) -> int:
        start, end = self._slices.get(user_id, (0, 0))
        return end - start + len(self._tails.get(user_id, ()))

    def _row(self, user_id: str, i: int):
        item = self._item[i]
        reward = self._reward[i]
        get = {name: self._sparse[name].get(i) for name in SPARSE}
        return self._cls(
            int(self._ids[i]), user_id, EPOCH + timedelta(microseconds=int(self._ts[i])),
            self._modality_names[self._modality[i]], self._event_names[self._event[i]],
            self._open_text(user_id, get["text"]), self._item_names[item] if item >= 0 else None,
            get["session_id"], None if np.isnan(reward) else float(reward),
            self._open_features(user_id, get["features"]), get["media_key"])

    def history(self, user_id: str, *, since: datetime | None = None, until: datetime | None = None,
                modality: str | None = None, events: Iterable[str] | None = None,
                limit: int | None = None) -> list:
        """The user's interactions, oldest first, filtered like ``InteractionStore.history``."""
        with self._lock:
            start, end = self._slices.get(user_id, (0, 0))
            tail = list(self._tails.get(user_id, ()))
            ts, mod, ev = self._ts, self._modality, self._event
            rows = np.arange(start, end)
            if since is not None:
                rows = rows[ts[rows] >= _micros(since)]
            if until is not None:
                rows = rows[ts[rows] < _micros(until)]
            if modality is not None:
                code = self._modality_names.index(modality) if modality in self._modality_names else -2
                rows = rows[mod[rows] == code]
            wanted = set(events) if events is not None else None
            if wanted is not None:
                codes = [i for i, name in enumerate(self._event_names) if name in wanted]
                rows = rows[np.isin(ev[rows], codes)]
            if limit is not None:
                rows = rows[-limit:] if limit > 0 else rows[:0]
            out = [self._row(user_id, int(i)) for i in rows]
        for it in tail:
            if ((since is None or it.ts >= since) and (until is None or it.ts < until)
                    and (modality is None or it.modality == modality) and (wanted is None or it.event in wanted)):
                out.append(it)
        if tail:
            out.sort(key=lambda it: (it.ts, it.interaction_id))
        return out[-limit:] if limit is not None and limit > 0 else (out if limit is None else [])


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"`since`/`until` must be timezone-aware, got {moment!r}")
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
