"""DuckDB catalog: assets, versions, runs, task runs, validations, lineage and users, with migrations.

DuckDB allows one read-write process *or* several read-only processes on a file at a time.
Flow runs execute in their own processes (Prefect runners spawn them) and the API writes
too, so a single long-lived writer would lock everyone else out. Instead every access is a
short connection under an fcntl lock on ``<db>.lock``: writers take it exclusively and run
one transaction, readers take it shared and open read-only. Writes are therefore
serialised across processes and threads, and a failed transaction leaves no rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import pandas as pd

from gaiverse.proc import file_lock, locked_write
from storage.objectstore import AssetRef

log = logging.getLogger(__name__)

TASK_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "RUNNING", "PENDING", "RETRYING")

MIGRATIONS: list[str] = [
    # 1: the storage model of ARCHITECTURE.md
    """
    CREATE TABLE users (
        user_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, key_hash VARCHAR NOT NULL UNIQUE,
        key_prefix VARCHAR NOT NULL, is_admin BOOLEAN NOT NULL DEFAULT FALSE, created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE assets (
        key VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, bytes BIGINT NOT NULL, sha256 VARCHAR NOT NULL,
        content_type VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, producer_task_run VARCHAR);
    CREATE TABLE asset_owners (key VARCHAR NOT NULL, owner VARCHAR NOT NULL, PRIMARY KEY (key, owner));
    CREATE TABLE versions (
        collection VARCHAR NOT NULL, version INTEGER NOT NULL, parent_version INTEGER,
        manifest_key VARCHAR NOT NULL, message VARCHAR NOT NULL, author VARCHAR NOT NULL,
        flow_run_id VARCHAR, created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (collection, version));
    CREATE TABLE runs (
        flow_run_id VARCHAR PRIMARY KEY, flow_name VARCHAR NOT NULL, deployment VARCHAR,
        parameters_hash VARCHAR NOT NULL, parameters JSON, state VARCHAR NOT NULL, owner VARCHAR,
        started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, duration_s DOUBLE, host VARCHAR, message VARCHAR);
    CREATE TABLE task_runs (
        task_run_id VARCHAR PRIMARY KEY, flow_run_id VARCHAR, task_name VARCHAR NOT NULL,
        parameters_hash VARCHAR NOT NULL, state VARCHAR NOT NULL, retries INTEGER NOT NULL,
        started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, duration_s DOUBLE, host VARCHAR, message VARCHAR);
    CREATE TABLE validations (
        validation_id VARCHAR PRIMARY KEY, suite VARCHAR NOT NULL, asset_key VARCHAR, flow_run_id VARCHAR,
        success BOOLEAN NOT NULL, details JSON, created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE lineage (
        output_key VARCHAR NOT NULL, input_key VARCHAR NOT NULL, checkpoint VARCHAR,
        task_run_id VARCHAR, PRIMARY KEY (output_key, input_key));
    """,
]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parameters_hash(parameters: Any) -> str:
    """Stable sha256 of JSON-serialisable parameters (keys sorted)."""
    blob = json.dumps(parameters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Version:
    collection: str
    version: int
    parent_version: int | None
    manifest_key: str
    message: str
    author: str
    created_at: datetime


class Catalog:
    """The catalog file; cheap to construct, every call opens a short locked connection."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.migrate()

    # connections ---------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction: committed when the block ends, rolled back (no rows) when it raises."""
        with locked_write(self.path, self.lock_path) as con:
            yield con

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with file_lock(self.lock_path, exclusive=False):
            con = duckdb.connect(str(self.path), read_only=True)
            try:
                yield con
            finally:
                con.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts (read-only connection)."""
        with self.read() as con:
            cursor = con.execute(sql, list(params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def frame(self, sql: str, params: Sequence[Any] = ()):
        """A pandas DataFrame of a query (for Great Expectations suites)."""
        with self.read() as con:
            return con.execute(sql, list(params)).df()

    def migrate(self) -> int:
        """Apply pending migrations; returns the schema version."""
        with file_lock(self.lock_path, exclusive=True):
            con = duckdb.connect(str(self.path))
            try:
                con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
                current = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
                for number, sql in enumerate(MIGRATIONS[current:], start=current + 1):
                    con.execute("BEGIN TRANSACTION")
                    con.execute(sql)
                    con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [number, utcnow()])
                    con.execute("COMMIT")
                    log.info("catalog %s migrated to version %d", self.path.name, number)
                return len(MIGRATIONS)
            finally:
                con.close()

    # assets ------------------------------------------------------------------------------
    def record_asset(
        self, ref: AssetRef, *, owner: str | None = None, task_run_id: str | None = None,
        inputs: Sequence[str] = (), checkpoint: str | None = None,
    ) -> None:
        """Register a stored object (idempotent), its owner and its lineage in one transaction."""
        with self.write() as con:
            _insert_asset(con, ref, owner, task_run_id, inputs, checkpoint)

    def asset(self, key: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM assets WHERE key = ?", [key])
        return rows[0] if rows else None

    def can_read_asset(self, key: str, user_id: str) -> bool:
        rows = self.query("SELECT 1 FROM asset_owners WHERE key = ? AND owner = ?", [key, user_id])
        return bool(rows)

    # versions ----------------------------------------------------------------------------
    def publish_version(
        self, collection: str, *, manifest: AssetRef, assets: Sequence[AssetRef], message: str, author: str,
        flow_run_id: str | None = None, parent_version: int | None = None,
    ) -> Version:
        """Publish a new version of ``collection``: its assets, manifest and version row in one transaction."""
        if not collection or len(collection) > 200:
            raise ValueError(f"`collection` must be 1-200 characters, got {collection!r}")
        if not message.strip():
            raise ValueError("`message` must not be empty")
        with self.write() as con:
            latest = con.execute(
                "SELECT max(version) FROM versions WHERE collection = ?", [collection]
            ).fetchone()[0]
            number = (latest or 0) + 1
            parent = latest if parent_version is None else parent_version
            if parent is not None and parent != latest:
                exists = con.execute(
                    "SELECT 1 FROM versions WHERE collection = ? AND version = ?", [collection, parent]
                ).fetchone()
                if not exists:
                    raise ValueError(f"`parent_version` {parent} does not exist in {collection!r}")
            for ref in [*assets, manifest]:
                _insert_asset(con, ref, author, None, (), None)
            for ref in assets:
                con.execute("INSERT OR IGNORE INTO lineage VALUES (?, ?, NULL, NULL)", [manifest.key, ref.key])
            created = utcnow()
            con.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [collection, number, parent, manifest.key, message, author, flow_run_id, created],
            )
        log.info("published %s v%d (%d assets)", collection, number, len(assets))
        return Version(collection, number, parent, manifest.key, message, author, created)

    def versions(self, collection: str) -> list[Version]:
        rows = self.query(
            "SELECT collection, version, parent_version, manifest_key, message, author, created_at "
            "FROM versions WHERE collection = ? ORDER BY version", [collection],
        )
        return [Version(**row) for row in rows]

    # runs and task runs ------------------------------------------------------------------
    def upsert_run(
        self, flow_run_id: str, *, flow_name: str, state: str, parameters: dict | None = None,
        deployment: str | None = None, owner: str | None = None, started_at: datetime | None = None,
        ended_at: datetime | None = None, message: str | None = None,
    ) -> None:
        """Insert or update a flow run's row (owner and start are kept from the first write)."""
        params = parameters or {}
        duration = (ended_at - started_at).total_seconds() if ended_at and started_at else None
        with self.write() as con:
            con.execute(
                """INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (flow_run_id) DO UPDATE SET state = excluded.state,
                     ended_at = coalesce(excluded.ended_at, runs.ended_at),
                     duration_s = coalesce(excluded.duration_s, runs.duration_s),
                     owner = coalesce(runs.owner, excluded.owner),
                     deployment = coalesce(runs.deployment, excluded.deployment),
                     started_at = coalesce(runs.started_at, excluded.started_at),
                     message = coalesce(excluded.message, runs.message)""",
                [flow_run_id, flow_name, deployment, parameters_hash(params), json.dumps(params, default=str),
                 state, owner, started_at, ended_at, duration, socket.gethostname(), message],
            )

    def run(self, flow_run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE flow_run_id = ?", [flow_run_id])
        return rows[0] if rows else None

    def record_task_runs(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or update task-run rows in one transaction (dict keys = task_runs columns)."""
        columns = ("task_run_id", "flow_run_id", "task_name", "parameters_hash", "state", "retries",
                   "started_at", "ended_at", "duration_s", "host", "message")
        host = socket.gethostname()
        frame = pd.DataFrame([[row.get(c, host if c == "host" else None) for c in columns] for row in rows],
                             columns=list(columns))
        with self.write() as con:  # one bulk insert: executemany costs ~4 ms a row in DuckDB
            con.register("incoming_task_runs", frame)
            con.execute("INSERT OR REPLACE INTO task_runs SELECT * FROM incoming_task_runs")
            con.unregister("incoming_task_runs")

    # validations -------------------------------------------------------------------------
    def record_validation(self, suite: str, success: bool, details: Any, *,
                          asset_key: str | None = None, flow_run_id: str | None = None) -> str:
        validation_id = str(uuid.uuid4())
        with self.write() as con:
            con.execute(
                "INSERT INTO validations VALUES (?, ?, ?, ?, ?, ?, ?)",
                [validation_id, suite, asset_key, flow_run_id, success, json.dumps(details, default=str), utcnow()],
            )
        return validation_id


def _insert_asset(con, ref: AssetRef, owner, task_run_id, inputs, checkpoint) -> None:
    con.execute(
        "INSERT OR IGNORE INTO assets VALUES (?, ?, ?, ?, ?, ?, ?)",
        [ref.key, ref.kind, ref.bytes, ref.sha256, ref.content_type, utcnow(), task_run_id],
    )
    if owner:
        con.execute("INSERT OR IGNORE INTO asset_owners VALUES (?, ?)", [ref.key, owner])
    for source in inputs:
        con.execute("INSERT OR IGNORE INTO lineage VALUES (?, ?, ?, ?)", [ref.key, source, checkpoint, task_run_id])



def drop_collections(con, collections: Sequence[str], owners: Sequence[str]) -> tuple[int, list[str]]:
    """Inside a write transaction: delete every version row of ``collections``, the lineage of the manifests no
    other version points at (what they list and what was derived from them), the ``owners``' rows on those objects
    (unless another version of theirs lists one), and the asset rows nothing references any more. Returns (rows
    deleted, keys to delete from the object store after the commit). Objects are content-addressed, so one may be
    shared: an object still named by another version, lineage row or owner keeps its row and its bytes."""
    if not collections:
        return 0, []
    collections, owners = list(collections), list(owners)
    manifests = [r[0] for r in con.execute(
        "SELECT DISTINCT manifest_key FROM versions WHERE list_contains(?, collection)", [collections]).fetchall()]
    deleted = counted_delete(con, "versions WHERE list_contains(?, collection)", [collections])
    gone = [r[0] for r in con.execute("SELECT k FROM unnest(?::VARCHAR[]) t(k) WHERE NOT EXISTS "
                                      "(SELECT 1 FROM versions WHERE manifest_key = k)", [manifests]).fetchall()]
    keys = set(gone) | {r[0] for r in con.execute(
        "SELECT input_key FROM lineage WHERE list_contains($m, output_key) UNION "
        "SELECT output_key FROM lineage WHERE list_contains($m, input_key)", {"m": gone}).fetchall()}
    deleted += counted_delete(con, "lineage WHERE list_contains($m, output_key) OR list_contains($m, input_key)",
                               {"m": gone})
    deleted += counted_delete(  # an owner keeps their row on an object a version of theirs still lists
        con, "asset_owners o WHERE list_contains(?, o.key) AND list_contains(?, o.owner) AND NOT EXISTS (SELECT 1 "
        "FROM versions v WHERE v.author = o.owner AND (v.manifest_key = o.key OR EXISTS (SELECT 1 FROM lineage l "
        "WHERE l.output_key = v.manifest_key AND l.input_key = o.key)))", [sorted(keys), owners])
    orphans = sorted(r[0] for r in con.execute(
        "SELECT k FROM unnest(?::VARCHAR[]) t(k) WHERE NOT EXISTS (SELECT 1 FROM versions WHERE manifest_key = k) "
        "AND NOT EXISTS (SELECT 1 FROM lineage WHERE input_key = k OR output_key = k) "
        "AND NOT EXISTS (SELECT 1 FROM asset_owners WHERE key = k)", [sorted(keys)]).fetchall())
    deleted += counted_delete(con, "assets WHERE list_contains(?, key)", [orphans])
    return deleted, orphans


def counted_delete(con, target: str, params: Any) -> int:
    """``DELETE FROM <target>``, returning how many rows it removed."""
    count = int(con.execute("SELECT count(*) FROM " + target, params).fetchone()[0])
    if count:
        con.execute("DELETE FROM " + target, params)
    return count
