"""The user interaction database: users, sessions and every input with its derived features, in DuckDB.

The store keeps the current input and the full history of each user queryable (PER-a2) for all
four modalities of PER-a1 (text, audio, image, video). Raw media are not stored here: the caller
puts them in the object store and passes the key (``media_key``) together with the features it
derived (transcript, prosody, OCR text, colours; see ``media_features.py``). Bulk import of logs
in the documented CSV formats (``interaction_log.py``) runs in one transaction: a file that fails
validation stores nothing.

With a ``FieldCodec`` (``gaiverse.privacy.SubjectVault``) the free text and the derived features
are sealed per user before they reach DuckDB and opened when read (PER-f1); ``frame()`` returns the
stored (sealed) columns. The file is a ``Database`` shared with other processes (``database.py``).

For many users (PER-g1) ``attach`` gives the store the single batching writer (``write_behind.py``)
and the in-memory copy of the table (``interaction_index.py``): ``record`` then goes through the
writer (acknowledged after commit, idempotent per client key) and ``history`` is served from memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Protocol

import duckdb
import pandas as pd

from gaiverse.personalization.database import Database
from gaiverse.personalization.interaction_index import InteractionIndex
from gaiverse.personalization.interaction_log import (
    EVENTS,
    MODALITIES,
    InteractionLog,
    InteractionLogError,
    read_interaction_log,
)
from gaiverse.personalization.write_behind import InteractionWriter

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
ALTER TABLE interactions ADD COLUMN IF NOT EXISTS idempotency_key VARCHAR;
CREATE TABLE IF NOT EXISTS imports (
    sha256 VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    format VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    users BIGINT NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL
);
"""


class FieldCodec(Protocol):
    """Seals a user's text before storage and opens it after reading (identity when absent)."""

    def seal_text(self, user_id: str, text: str) -> str: ...

    def open_text(self, user_id: str, sealed: str) -> str: ...


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

    ``db`` shares one ``Database`` with the task repository and the privacy tables (one file);
    ``codec`` seals text and features per user. Safe to use from several threads and processes.
    """

    def __init__(self, path: str | Path = ":memory:", *, db: Database | None = None,
                 codec: FieldCodec | None = None) -> None:
        self.db = db or Database(path)
        self.path = self.db.path
        self.codec = codec
        self.writer: InteractionWriter | None = None
        self.index: InteractionIndex | None = None
        with self.db.write() as con:
            con.execute(SCHEMA)

    @classmethod
    def read_only(cls, db: Database, codec: FieldCodec | None = None) -> InteractionStore:
        """A store over an existing file that never writes: reads served from the in-memory index
        (recommendation replicas, ``snapshot.py``). PER-g1."""
        store = cls.__new__(cls)
        store.db, store.path, store.codec, store.writer = db, db.path, codec, None
        store.index = InteractionIndex(db, store._open, store._open_features, Interaction)
        return store

    def attach(self, writer: InteractionWriter | None = None, index: bool = False) -> None:
        """Route writes through ``writer`` and, with ``index``, serve reads from an in-memory copy. PER-g1."""
        self.writer = writer
        self.index = InteractionIndex(self.db, self._open, self._open_features, Interaction) if index else None

    def flush(self) -> None:
        """Wait until every acknowledged-or-pending write is in DuckDB (before export, erasure, counts)."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Release the database (file databases hold no connection between calls)."""
        self.db.close()

    def _seal(self, user_id: str, text: str) -> str:
        return self.codec.seal_text(user_id, text) if self.codec is not None and text else text

    def _open(self, user_id: str, text: str | None) -> str:
        return self.codec.open_text(user_id, text) if self.codec is not None and text else (text or "")

    def _seal_features(self, user_id: str, features: dict[str, Any]) -> str:
        blob = json.dumps(features)
        return json.dumps(self._seal(user_id, blob)) if self.codec is not None and features else blob

    def _open_features(self, user_id: str, stored: str | None) -> dict[str, Any]:
        value = json.loads(stored) if stored else {}
        if isinstance(value, str):
            value = json.loads(self._open(user_id, value))
        return value

    # users and sessions
    def add_user(self, user_id: str, attributes: dict[str, Any] | None = None) -> None:
        """Create a user (idempotent: an existing user keeps its attributes)."""
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError(f"`user_id` must be a non-empty string, got {user_id!r}")
        with self.db.write() as con:
            con.execute("INSERT OR IGNORE INTO users VALUES (?, ?, ?)",
                        [user_id, _now(), self._seal_features(user_id, attributes or {})])
        if self.index is not None:
            self.index.add_user(user_id)

    def has_user(self, user_id: str) -> bool:
        """Whether the store holds ``user_id`` (from memory when indexed; unknown ids are checked in DuckDB)."""
        if self.index is not None and self.index.has_user(user_id):
            return True
        with self.db.read() as con:
            found = con.execute("SELECT 1 FROM users WHERE user_id = ?", [user_id]).fetchone() is not None
        if found and self.index is not None:
            self.index.add_user(user_id)  # added by another process since the snapshot
        return found

    def users(self) -> list[str]:
        """Every user id, sorted."""
        with self.db.read() as con:
            return [r[0] for r in con.execute("SELECT user_id FROM users ORDER BY user_id").fetchall()]

    # single inputs
    def record(self, user_id: str, *, modality: str = "text", event: str = "message", text: str = "",
               item_id: str | None = None, session_id: str | None = None, ts: datetime | None = None,
               reward: float | None = None, features: dict[str, Any] | None = None,
               media_key: str | None = None, idempotency_key: str | None = None) -> Interaction:
        """Store one input (a message, an upload, a task event) and return it with its id.

        Implements PER-a1 and PER-a2: every modality goes through here, with the features derived
        from it; ``media_key`` points at the raw media in the object store.
        """
        return self.record_once(user_id, modality=modality, event=event, text=text, item_id=item_id,
                                session_id=session_id, ts=ts, reward=reward, features=features,
                                media_key=media_key, idempotency_key=idempotency_key)[0]

    def record_once(self, user_id: str, *, modality: str = "text", event: str = "message", text: str = "",
                    item_id: str | None = None, session_id: str | None = None, ts: datetime | None = None,
                    reward: float | None = None, features: dict[str, Any] | None = None,
                    media_key: str | None = None, idempotency_key: str | None = None) -> tuple[Interaction, bool]:
        """``record``, and whether the input was a retry: with an ``idempotency_key`` (per user) already
        stored, nothing new is stored and the first interaction is returned with True. PER-a2, PER-g1."""
        if idempotency_key is not None and not (isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 200):
            raise ValueError(f"`idempotency_key` must be 1-200 characters, got {idempotency_key!r}")
        if modality not in MODALITIES:
            raise ValueError(f"`modality` must be one of {MODALITIES}, got {modality!r}")
        if event not in EVENTS:
            raise ValueError(f"`event` must be one of {EVENTS}, got {event!r}")
        if event != "message" and not item_id:
            raise ValueError(f"`item_id` is required for event {event!r}")
        ts = ts or _now()
        if ts.tzinfo is None:
            raise ValueError(f"`ts` must be timezone-aware, got {ts!r}")
        if self.writer is not None:
            return self._record_batched(user_id, idempotency_key, modality=modality, event=event, text=text,
                                        item_id=item_id, session_id=session_id, ts=ts, reward=reward,
                                        features=dict(features or {}), media_key=media_key)
        sealed_text, sealed_features = self._seal(user_id, text), self._seal_features(user_id, features or {})
        with self.db.write() as con:
            if not self.has_user(user_id):
                raise UnknownUserError(f"`user_id` {user_id!r} is not a known user")
            if idempotency_key is not None:
                seen = con.execute("SELECT interaction_id FROM interactions WHERE user_id = ? AND idempotency_key = ?",
                                   [user_id, idempotency_key]).fetchone()
                if seen is not None:
                    return self.interaction(user_id, int(seen[0])), True  # type: ignore[return-value]
            if session_id:
                con.execute(
                    "INSERT INTO sessions VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE "
                    "SET last_seen = greatest(sessions.last_seen, excluded.last_seen)",
                    [session_id, user_id, ts, ts])
            row = con.execute(
                "INSERT INTO interactions (user_id, session_id, ts, modality, event, item_id, text, reward, "
                "features, media_key, source, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'live', ?) "
                "RETURNING interaction_id",
                [user_id, session_id, ts, modality, event, item_id, sealed_text, reward, sealed_features,
                 media_key, idempotency_key]).fetchone()
        return Interaction(int(row[0]), user_id, ts, modality, event, text, item_id, session_id, reward,
                           dict(features or {}), media_key), False

    def _record_batched(self, user_id: str, idempotency_key: str | None, **values: Any) -> tuple[Interaction, bool]:
        """Through the single writer: wait for the commit, then make the row visible in memory."""
        if not self.has_user(user_id):
            raise UnknownUserError(f"`user_id` {user_id!r} is not a known user")
        row = {**values, "user_id": user_id, "source": "live", "text": self._seal(user_id, values["text"]),
               "features": self._seal_features(user_id, values["features"])}
        result = self.writer.write(row, idempotency_key)  # type: ignore[union-attr]
        if result.duplicate:
            first = self.interaction(user_id, result.interaction_id)
            if first is None:
                raise UnknownUserError(f"interaction {result.interaction_id} of {user_id!r} no longer exists")
            return first, True
        stored = Interaction(result.interaction_id, user_id, values["ts"], values["modality"], values["event"],
                             values["text"], values["item_id"], values["session_id"], values["reward"],
                             values["features"], values["media_key"])
        if self.index is not None:
            self.index.append(stored)
        return stored, False

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
        if self.index is not None:
            if not self.has_user(user_id):
                raise UnknownUserError(f"`user_id` {user_id!r} is not a known user")
            return self.index.history(user_id, since=since, until=until, modality=modality, events=events,
                                      limit=limit)
        with self.db.read() as con:
            if not self.has_user(user_id):
                raise UnknownUserError(f"`user_id` {user_id!r} is not a known user")
            rows = con.execute(sql, params).fetchall()
        return [Interaction(int(r[0]), r[1], r[2], r[3], r[4], self._open(r[1], r[5]), r[6], r[7], r[8],
                            self._open_features(r[1], r[9]), r[10]) for r in reversed(rows)]

    def current_input(self, user_id: str) -> Interaction | None:
        """The user's most recent interaction (the "current input" of PER-a2), or None."""
        latest = self.history(user_id, limit=1)
        return latest[0] if latest else None

    def count(self, user_id: str | None = None) -> int:
        """Number of stored interactions, of one user or of all."""
        with self.db.read() as con:
            if user_id is None:
                return int(con.execute("SELECT count(*) FROM interactions").fetchone()[0])
            return int(con.execute("SELECT count(*) FROM interactions WHERE user_id = ?", [user_id]).fetchone()[0])

    def frame(self, sql_where: str = "TRUE", params: list[Any] | None = None) -> pd.DataFrame:
        """Interactions as stored (text and features sealed when a codec is set), for analytics and training."""
        with self.db.read() as con:
            return con.execute(f"SELECT * FROM interactions WHERE {sql_where} ORDER BY ts, interaction_id",
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
        n_users = int(frame["user_id"].nunique())
        try:
            with self.db.write() as con:
                seen = con.execute("SELECT rows, users FROM imports WHERE sha256 = ?", [digest]).fetchone()
                if seen is not None:
                    log.warning("%s was imported before (sha256 %s); nothing stored", parsed.source, digest[:12])
                    return ImportResult(parsed.source, parsed.format, int(seen[0]), int(seen[1]), digest, True)
                rows = self._import_rows(parsed, frame, ufeat)  # sealing may create user keys: same transaction
                con.register("import_rows", rows)
                try:
                    con.execute(
                        "INSERT OR IGNORE INTO users SELECT user_id, min(ts), '{}' FROM import_rows GROUP BY user_id")
                    con.execute(
                        # an all-empty session column reaches DuckDB typed INTEGER: cast, or the conflict
                        # check casts existing VARCHAR session ids to INTEGER and fails
                        "INSERT INTO sessions SELECT session_id::VARCHAR, any_value(user_id), min(ts), max(ts) "
                        "FROM import_rows WHERE session_id IS NOT NULL GROUP BY session_id::VARCHAR "
                        "ON CONFLICT (session_id) DO UPDATE "
                        "SET last_seen = greatest(sessions.last_seen, excluded.last_seen)")
                    con.execute(
                        "INSERT INTO interactions (user_id, session_id, ts, modality, event, item_id, text, reward, "
                        "propensity, position, features, media_key, source) SELECT user_id, session_id::VARCHAR, ts, modality, "
                        "event, item_id, text, reward, propensity, position, features, media_key, source "
                        "FROM import_rows")
                    con.execute("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?)",
                                [digest, parsed.source, parsed.format, len(rows), n_users, _now()])
                finally:
                    con.unregister("import_rows")
        except duckdb.Error as err:
            raise InteractionLogError(f"{parsed.source}: import failed, nothing stored ({err})") from err
        log.info("imported %d interactions of %d users from %s", len(rows), n_users, parsed.source)
        if self.index is not None:
            self.index.reload()
        return ImportResult(parsed.source, parsed.format, len(rows), n_users, digest)

    def _import_rows(self, parsed: InteractionLog, frame: pd.DataFrame, ufeat: pd.DataFrame) -> pd.DataFrame:
        users = frame["user_id"].tolist()
        features = []
        for i, extra in enumerate(frame["features"]):
            merged = dict(extra)
            if len(ufeat.columns):
                merged["user_features"] = {c: str(ufeat.iat[i, j]) for j, c in enumerate(ufeat.columns)}
            features.append(self._seal_features(users[i], merged))
        return pd.DataFrame({
            "user_id": frame["user_id"], "session_id": frame["session_id"], "ts": frame["ts"],
            "modality": frame["modality"], "event": frame["event"], "item_id": frame["item_id"],
            "text": [self._seal(u, t) for u, t in zip(users, frame["text"])], "reward": frame["reward"],
            "propensity": frame["propensity"], "position": frame["position"].astype("float").astype("Int32"),
            "features": features, "media_key": frame["media_key"], "source": parsed.source,
        })

    # privacy: one user's rows, erasure and retention (PER-f1)
    def interaction(self, user_id: str, interaction_id: int) -> Interaction | None:
        """One interaction of ``user_id`` by id; None when it does not exist or belongs to someone else."""
        with self.db.read() as con:
            row = con.execute(
                "SELECT interaction_id, user_id, ts, modality, event, text, item_id, session_id, reward, features, "
                "media_key FROM interactions WHERE interaction_id = ? AND user_id = ?",
                [int(interaction_id), user_id]).fetchone()
        if row is None:
            return None
        return Interaction(int(row[0]), row[1], row[2], row[3], row[4], self._open(row[1], row[5]), row[6], row[7],
                           row[8], self._open_features(row[1], row[9]), row[10])

    def sessions(self, user_id: str) -> list[dict[str, Any]]:
        """The user's sessions (id, started_at, last_seen), oldest first."""
        with self.db.read() as con:
            rows = con.execute("SELECT session_id, started_at, last_seen FROM sessions WHERE user_id = ? "
                               "ORDER BY started_at", [user_id]).fetchall()
        return [{"session_id": r[0], "started_at": r[1], "last_seen": r[2]} for r in rows]

    def attributes(self, user_id: str) -> dict[str, Any]:
        """The attributes stored with the user (opened)."""
        with self.db.read() as con:
            row = con.execute("SELECT attributes FROM users WHERE user_id = ?", [user_id]).fetchone()
        if row is None:
            raise UnknownUserError(f"`user_id` {user_id!r} is not a known user")
        return self._open_features(user_id, row[0])

    def media_keys(self, *, user_id: str | None = None, before: datetime | None = None) -> list[str]:
        """Object keys of stored media, of one user and/or recorded before an instant."""
        where, params = ["media_key IS NOT NULL"], []
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if before is not None:
            where.append("ts < ?")
            params.append(before)
        with self.db.read() as con:
            rows = con.execute(f"SELECT DISTINCT media_key FROM interactions WHERE {' AND '.join(where)} "
                               f"ORDER BY media_key", params).fetchall()
        return [r[0] for r in rows]

    def delete_user(self, user_id: str) -> list[str]:
        """Delete the user, their sessions and every interaction; returns the media keys they referenced."""
        with self.db.write() as con:
            keys = [r[0] for r in con.execute("SELECT DISTINCT media_key FROM interactions WHERE user_id = ? "
                                              "AND media_key IS NOT NULL", [user_id]).fetchall()]
            con.execute("DELETE FROM interactions WHERE user_id = ?", [user_id])
            con.execute("DELETE FROM sessions WHERE user_id = ?", [user_id])
            con.execute("DELETE FROM users WHERE user_id = ?", [user_id])
            still = {r[0] for r in con.execute("SELECT DISTINCT media_key FROM interactions "
                                               "WHERE media_key IS NOT NULL").fetchall()}
        if self.index is not None:
            self.index.drop_user(user_id)
        if self.writer is not None:
            self.writer.forget_user(user_id)
        return [k for k in keys if k not in still]

    def expire(self, before: datetime) -> tuple[int, list[str]]:
        """Delete every interaction older than ``before`` and sessions left empty; (rows, media keys)."""
        if before.tzinfo is None:
            raise ValueError(f"`before` must be timezone-aware, got {before!r}")
        with self.db.write() as con:
            keys = [r[0] for r in con.execute("SELECT DISTINCT media_key FROM interactions WHERE ts < ? "
                                              "AND media_key IS NOT NULL", [before]).fetchall()]
            n = int(con.execute("SELECT count(*) FROM interactions WHERE ts < ?", [before]).fetchone()[0])
            con.execute("DELETE FROM interactions WHERE ts < ?", [before])
            con.execute("DELETE FROM sessions WHERE session_id NOT IN "
                        "(SELECT session_id FROM interactions WHERE session_id IS NOT NULL)")
            still = {r[0] for r in con.execute("SELECT DISTINCT media_key FROM interactions "
                                               "WHERE media_key IS NOT NULL").fetchall()}
        if self.index is not None and n:
            self.index.reload()
        return n, [k for k in keys if k not in still]
