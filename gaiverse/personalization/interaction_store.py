"""The user interaction database: users, sessions and every input with its derived features, in DuckDB.

The store keeps the current input and the full history of each user queryable (PER-a2) for all
four modalities of PER-a1 (text, audio, image, video). Raw media are not stored here: the caller
puts them in the object store and passes the key (``media_key``) together with the features it
derived (transcript, prosody, OCR text, colours; see ``media_features.py``). Bulk import of logs
in the documented CSV formats (``interaction_log.py``) runs in one transaction: a file that fails
validation stores nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import duckdb
import pandas as pd

from gaiverse.personalization.interaction_log import (
    EVENTS,
    MODALITIES,
    InteractionLog,
    InteractionLogError,
    read_interaction_log,
)

log = logging.getLogger(__name__)

SCHEMA = f"""
CREATE SEQUENCE IF NOT EXISTS interaction_seq START 1;
CREATE TABLE IF NOT EXISTS users (
    user_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    attributes JSON
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id VARCHAR PRIMARY KEY,
    user_id VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS interactions (
    interaction_id BIGINT PRIMARY KEY DEFAULT nextval('interaction_seq'),
    user_id VARCHAR NOT NULL,
    session_id VARCHAR,
    ts TIMESTAMPTZ NOT NULL,
    modality VARCHAR NOT NULL CHECK (modality IN ({", ".join(repr(m) for m in MODALITIES)})),
    event VARCHAR NOT NULL CHECK (event IN ({", ".join(repr(e) for e in EVENTS)})),
    item_id VARCHAR,
    text VARCHAR,
    reward DOUBLE,
    propensity DOUBLE,
    position INTEGER,
    features JSON,
    media_key VARCHAR,
    source VARCHAR
);
CREATE INDEX IF NOT EXISTS interactions_user_ts ON interactions (user_id, ts);
CREATE TABLE IF NOT EXISTS imports (
    sha256 VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    format VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    users BIGINT NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL
);
"""


class UnknownUserError(KeyError):
    """An operation named a user the store does not hold."""


@dataclass(frozen=True)
class Interaction:
    """One stored input or event of a user. Implements PER-a1 (any modality) and PER-a2."""

    interaction_id: int
    user_id: str
    ts: datetime
    modality: str
    event: str
    text: str = ""
    item_id: str | None = None
    session_id: str | None = None
    reward: float | None = None
    features: dict[str, Any] = field(default_factory=dict)
    media_key: str | None = None


@dataclass(frozen=True)
class ImportResult:
    """What a bulk import stored: rows, users, and whether the same file had been imported before."""

    source: str
    format: str
    rows: int
    users: int
    sha256: str
    already_imported: bool = False


def _now() -> datetime:
    return datetime.now(timezone.utc)


class InteractionStore:
    """DuckDB-backed interaction database at ``path`` (``":memory:"`` for a throwaway store).

    One connection, guarded by a lock, so the same store object can serve several threads.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(self.path)
        self._lock = threading.RLock()
        self._con.execute(SCHEMA)

    def close(self) -> None:
        """Close the DuckDB connection."""
        with self._lock:
            self._con.close()

    # users and sessions
    def add_user(self, user_id: str, attributes: dict[str, Any] | None = None) -> None:
        """Create a user (idempotent: an existing user keeps its attributes)."""
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError(f"`user_id` must be a non-empty string, got {user_id!r}")
        with self._lock:
            self._con.execute("INSERT OR IGNORE INTO users VALUES (?, ?, ?)",
                              [user_id, _now(), json.dumps(attributes or {})])

    def has_user(self, user_id: str) -> bool:
        """Whether the store holds ``user_id``."""
        with self._lock:
            return self._con.execute("SELECT 1 FROM users WHERE user_id = ?", [user_id]).fetchone() is not None

    def users(self) -> list[str]:
        """Every user id, sorted."""
        with self._lock:
            return [r[0] for r in self._con.execute("SELECT user_id FROM users ORDER BY user_id").fetchall()]

    # single inputs
    def record(self, user_id: str, *, modality: str = "text", event: str = "message", text: str = "",
               item_id: str | None = None, session_id: str | None = None, ts: datetime | None = None,
               reward: float | None = None, features: dict[str, Any] | None = None,
               media_key: str | None = None) -> Interaction:
        """Store one input (a message, an upload, a task event) and return it with its id.

        Implements PER-a1 and PER-a2: every modality goes through here, with the features derived
        from it; ``media_key`` points at the raw media in the object store.
        """
        if modality not in MODALITIES:
            raise ValueError(f"`modality` must be one of {MODALITIES}, got {modality!r}")
        if event not in EVENTS:
            raise ValueError(f"`event` must be one of {EVENTS}, got {event!r}")
        if event != "message" and not item_id:
            raise ValueError(f"`item_id` is required for event {event!r}")
        ts = ts or _now()
        if ts.tzinfo is None:
            raise ValueError(f"`ts` must be timezone-aware, got {ts!r}")
        with self._lock:
            if not self.has_user(user_id):
                raise UnknownUserError(f"`user_id` {user_id!r} is not a known user")
            if session_id:
                self._con.execute(
                    "INSERT INTO sessions VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE "
                    "SET last_seen = greatest(sessions.last_seen, excluded.last_seen)",
                    [session_id, user_id, ts, ts])
            row = self._con.execute(
                "INSERT INTO interactions (user_id, session_id, ts, modality, event, item_id, text, reward, "
                "features, media_key, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'live') RETURNING interaction_id",
                [user_id, session_id, ts, modality, event, item_id, text, reward, json.dumps(features or {}),
                 media_key]).fetchone()
        return Interaction(int(row[0]), user_id, ts, modality, event, text, item_id, session_id, reward,
                           dict(features or {}), media_key)

    # queries
    def history(self, user_id: str, *, since: datetime | None = None, until: datetime | None = None,
                modality: str | None = None, events: Iterable[str] | None = None,
                limit: int | None = None) -> list[Interaction]:
        """The user's interactions, oldest first, optionally filtered. Implements PER-a2.

        With ``limit`` the most recent ``limit`` matching interactions are returned (still oldest first).
        """
        where, params = ["user_id = ?"], [user_id]
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if until is not None:
            where.append("ts < ?")
            params.append(until)
        if modality is not None:
            where.append("modality = ?")
            params.append(modality)
        if events is not None:
            events = list(events)
            where.append(f"event IN ({', '.join('?' for _ in events)})")
            params.extend(events)
        sql = (f"SELECT interaction_id, user_id, ts, modality, event, text, item_id, session_id, reward, "
               f"features, media_key FROM interactions WHERE {' AND '.join(where)} "
               f"ORDER BY ts DESC, interaction_id DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            if not self.has_user(user_id):
                raise UnknownUserError(f"`user_id` {user_id!r} is not a known user")
            rows = self._con.execute(sql, params).fetchall()
        return [Interaction(int(r[0]), r[1], r[2], r[3], r[4], r[5] or "", r[6], r[7], r[8],
                            json.loads(r[9]) if r[9] else {}, r[10]) for r in reversed(rows)]

    def current_input(self, user_id: str) -> Interaction | None:
        """The user's most recent interaction (the "current input" of PER-a2), or None."""
        latest = self.history(user_id, limit=1)
        return latest[0] if latest else None

    def count(self, user_id: str | None = None) -> int:
        """Number of stored interactions, of one user or of all."""
        with self._lock:
            if user_id is None:
                return int(self._con.execute("SELECT count(*) FROM interactions").fetchone()[0])
            return int(self._con.execute("SELECT count(*) FROM interactions WHERE user_id = ?",
                                         [user_id]).fetchone()[0])

    def frame(self, sql_where: str = "TRUE", params: list[Any] | None = None) -> pd.DataFrame:
        """Interactions as a DataFrame (for analytics and model training)."""
        with self._lock:
            return self._con.execute(f"SELECT * FROM interactions WHERE {sql_where} ORDER BY ts, interaction_id",
                                     params or []).df()

    # bulk import
    def import_csv(self, path: str | Path, item_context: str | Path | None = None) -> ImportResult:
        """Validate and import an interaction log (gaiverse or OBD CSV) in one transaction.

        A file that fails validation raises :class:`InteractionLogError` and stores nothing; a file
        whose exact bytes were imported before is not imported twice (``already_imported``).
        Implements PER-a2 (bulk import).
        """
        path = Path(path)
        parsed = read_interaction_log(path, item_context)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return self.import_log(parsed, digest)

    def import_log(self, parsed: InteractionLog, digest: str) -> ImportResult:
        """Import an already validated log; ``digest`` identifies its content for de-duplication."""
        frame = parsed.frame
        ufeat = parsed.user_features
        features = []
        for i, extra in enumerate(frame["features"]):
            merged = dict(extra)
            if len(ufeat.columns):
                merged["user_features"] = {c: str(ufeat.iat[i, j]) for j, c in enumerate(ufeat.columns)}
            features.append(json.dumps(merged))
        rows = pd.DataFrame({
            "user_id": frame["user_id"], "session_id": frame["session_id"], "ts": frame["ts"],
            "modality": frame["modality"], "event": frame["event"], "item_id": frame["item_id"],
            "text": frame["text"], "reward": frame["reward"], "propensity": frame["propensity"],
            "position": frame["position"].astype("float").astype("Int32"), "features": features,
            "media_key": frame["media_key"], "source": parsed.source,
        })
        n_users = int(frame["user_id"].nunique())
        with self._lock:
            seen = self._con.execute("SELECT rows, users FROM imports WHERE sha256 = ?", [digest]).fetchone()
            if seen is not None:
                log.warning("%s was imported before (sha256 %s); nothing stored", parsed.source, digest[:12])
                return ImportResult(parsed.source, parsed.format, int(seen[0]), int(seen[1]), digest, True)
            self._con.execute("BEGIN TRANSACTION")
            try:
                self._con.register("import_rows", rows)
                self._con.execute(
                    "INSERT OR IGNORE INTO users SELECT user_id, min(ts), '{}' FROM import_rows GROUP BY user_id")
                self._con.execute(
                    "INSERT INTO sessions SELECT session_id, any_value(user_id), min(ts), max(ts) FROM import_rows "
                    "WHERE session_id IS NOT NULL GROUP BY session_id ON CONFLICT (session_id) DO UPDATE "
                    "SET last_seen = greatest(sessions.last_seen, excluded.last_seen)")
                self._con.execute(
                    "INSERT INTO interactions (user_id, session_id, ts, modality, event, item_id, text, reward, "
                    "propensity, position, features, media_key, source) SELECT user_id, session_id, ts, modality, "
                    "event, item_id, text, reward, propensity, position, features, media_key, source FROM import_rows")
                self._con.execute("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?)",
                                  [digest, parsed.source, parsed.format, len(rows), n_users, _now()])
                self._con.execute("COMMIT")
            except duckdb.Error as err:
                self._con.execute("ROLLBACK")
                raise InteractionLogError(f"{parsed.source}: import failed, nothing stored ({err})") from err
            finally:
                self._con.unregister("import_rows")
        log.info("imported %d interactions of %d users from %s", len(rows), n_users, parsed.source)
        return ImportResult(parsed.source, parsed.format, len(rows), n_users, digest)
