"""The one writer of live interactions: a queue and a thread that commits them to DuckDB in batches (PER-g1).

Why one writer: every DuckDB write is a transaction under the file's exclusive lock, and opening the
file costs ~10-20 ms (``database.py``), so one transaction per request caps writes at a few dozen a
second and makes every reader wait behind them. Requests instead put their row on a queue and wait;
the writer thread takes everything queued (up to ``max_rows``, lingering at most ``max_delay`` for
more) and commits it in one transaction. This is group commit: under load a batch holds whatever
arrived while the previous commit ran, so batches grow with the load and an idle system adds
almost no latency. While rows keep coming the writer keeps the file open (``Database.held``: one
transaction per batch on one connection, released after ``idle_release`` without rows or at most
``max_hold``), because opening and closing the file costs far more than committing a batch.

Durability — acknowledge after commit. ``submit`` returns a future that resolves only once the
transaction holding the row has committed, and the API answers only then. So a crash can lose
only rows that were never acknowledged; their clients see an error or a timeout and retry with the
same idempotency key. We chose this over a write-ahead append file: the file would acknowledge a
little sooner, but it is a second durable copy of personal data to fsync, replay after a crash and
scrub on erasure (PER-f1), while with group commit the cost of a commit is shared by the batch.

Idempotency: a row may carry a client key, scoped to its user. A second row with the same
(user, key) — the retry of a request whose answer was lost — resolves to the first row's id and
inserts nothing, whether the first is still queued, in the same batch or committed. Keys are
remembered for ``key_window`` (loaded from DuckDB at start-up, so a restart does not forget them);
this assumes one writer process per database file, which is the deployment rule (docs/DEPLOY.md).
Ids come from the table's sequence inside the writer's transaction: unique, increasing in commit order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from gaiverse.personalization.database import Database

log = logging.getLogger(__name__)

COLUMNS = ("user_id", "session_id", "ts", "modality", "event", "item_id", "text", "reward", "features",
           "media_key", "source", "idempotency_key")
"""Columns of a live interaction row, as stored (text and features already sealed)."""
CASTS = {"user_id": "VARCHAR", "session_id": "VARCHAR", "ts": "TIMESTAMPTZ", "modality": "VARCHAR",
         "event": "VARCHAR", "item_id": "VARCHAR", "text": "VARCHAR", "reward": "DOUBLE", "features": "JSON",
         "media_key": "VARCHAR", "source": "VARCHAR", "idempotency_key": "VARCHAR"}


@dataclass
class WriterConfig:
    """How the writer batches."""

    max_rows: int = 500
    """Most rows in one transaction."""
    max_delay: float = 0.05
    """Longest time (s) the writer lingers after the first queued row waiting for the batch to fill; it
    stops lingering as soon as the queue runs dry, so an idle system commits at once."""
    key_window: timedelta = timedelta(hours=24)
    """How long an idempotency key is remembered (a retry later than this inserts again)."""
    max_hold: float = 3.0
    """Longest time (s) the writer keeps the file open for consecutive batches before releasing its lock."""
    idle_release: float = 1.0
    """The writer closes the file when no row arrived for this long (s). Closing checkpoints the file
    (~100-400 ms of CPU on a 2-million-row file, the largest cost of the API under write load, profiled
    with py-spy), so with rows every few hundred ms it must stay open between them. (Skipping that
    checkpoint with ``PRAGMA disable_checkpoint_on_shutdown`` was tried and rejected: after DuckDB 1.5.5
    replays such a WAL, deleting the rows fails with "Failed to delete all rows from index", a FATAL
    error, which erasure would hit.)"""
    commit_timeout: float = 60.0
    """How long ``write`` waits for its commit before giving up (the row may still commit later)."""
    duckdb_threads: int = 1
    """DuckDB worker threads of the writer's connection (its batches are small; the API needs the CPU)."""


@dataclass(frozen=True)
class WriteResult:
    """The committed row's id, and whether this submission was a retry of an earlier one."""

    interaction_id: int
    duplicate: bool = False


@dataclass
class _Pending:
    row: dict[str, Any]
    key: tuple[str, str] | None
    future: Future = field(default_factory=Future)


class InteractionWriter:
    """Queue + single writer thread committing interaction rows in batches. Implements PER-g1 (writes)."""

    def __init__(self, db: Database, config: WriterConfig | None = None) -> None:
        self.db = db
        self.config = config or WriterConfig()
        self._cv = threading.Condition()
        self._queue: list[_Pending] = []
        self._deferred: dict[Any, tuple[str, list[Any]]] = {}
        self._keys: OrderedDict[tuple[str, str], tuple[int | Future, float]] = OrderedDict()
        self._submitted = 0
        self._done = 0
        self._deferred_seq = 0
        self._deferred_done = 0
        self._closed = False
        self.batches = 0
        """Transactions committed so far (for tests and the benchmark)."""
        self._tuned: Any = None
        self._load_keys()
        self._thread = threading.Thread(target=self._run, name="interaction-writer", daemon=True)
        self._thread.start()

    # submission ---------------------------------------------------------------------------
    def submit(self, row: dict[str, Any], idempotency_key: str | None = None) -> Future:
        """Queue one row (columns of ``COLUMNS``); the future gives a ``WriteResult`` once committed."""
        missing = [c for c in ("user_id", "ts", "modality", "event") if row.get(c) is None]
        if missing:
            raise ValueError(f"interaction row lacks {missing}")
        key = (row["user_id"], idempotency_key) if idempotency_key else None
        with self._cv:
            if self._closed:
                raise RuntimeError("the interaction writer is closed: no more writes are accepted")
            if key is not None and key in self._keys:
                return self._duplicate(self._keys[key][0])
            pending = _Pending(dict(row, idempotency_key=idempotency_key), key)
            if key is not None:
                self._keys[key] = (pending.future, time.monotonic())
            self._queue.append(pending)
            self._submitted += 1
            self._cv.notify_all()
        return pending.future

    def known(self, user_id: str, idempotency_key: str) -> Future | None:
        """The (future) result of the row already submitted with this key, or None when the key is new.

        For callers with side effects before the row (media: the sealed object is stored first) that
        must skip them on a retry rather than leave an orphan object behind."""
        with self._cv:
            entry = self._keys.get((user_id, idempotency_key))
            return None if entry is None else self._duplicate(entry[0])

    def write(self, row: dict[str, Any], idempotency_key: str | None = None) -> WriteResult:
        """Submit and wait for the commit (what the API acknowledges)."""
        return self.submit(row, idempotency_key).result(self.config.commit_timeout)

    def defer(self, key: Any, sql: str, params: list[Any]) -> None:
        """Run ``sql`` in the next batch's transaction; a later ``defer`` with the same key replaces it
        (e.g. the latest engagement counts of one task: only the last state needs writing)."""
        with self._cv:
            if self._closed:
                raise RuntimeError("the interaction writer is closed: no more writes are accepted")
            self._deferred[key] = (sql, params)
            self._deferred_seq += 1
            self._cv.notify_all()

    @staticmethod
    def _duplicate(known: int | Future) -> Future:
        out: Future = Future()
        if isinstance(known, Future):
            def chain(first: Future) -> None:
                if first.exception() is not None:
                    out.set_exception(first.exception())
                else:
                    out.set_result(WriteResult(first.result().interaction_id, True))
            known.add_done_callback(chain)
        else:
            out.set_result(WriteResult(known, True))
        return out

    # flushing and shutdown ----------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Wait until every row and deferred write submitted before this call is committed (or failed)."""
        with self._cv:
            rows, deferred = self._submitted, self._deferred_seq
            ok = self._cv.wait_for(lambda: self._done >= rows and self._deferred_done >= deferred, timeout)
        if not ok:
            raise TimeoutError(f"interaction writer did not flush within {timeout} s")

    def close(self, timeout: float | None = 60.0) -> None:
        """Refuse new rows, commit everything queued, stop the thread (the shutdown hook calls this)."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"interaction writer did not finish within {timeout} s")
        log.info("interaction writer closed after %d batches", self.batches)

    @property
    def pending(self) -> int:
        with self._cv:
            return self._submitted - self._done

    # the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        """Open the file when rows arrive, commit batch after batch while they keep coming, release it."""
        while True:
            with self._cv:
                self._cv.wait_for(self._has_work)
                if self._closed and not self._queue and not self._deferred:
                    return
            try:
                with self.db.held() as transaction:
                    self._drain(transaction)
            except Exception:  # noqa: BLE001 - the file could not be opened: rows stay queued, try again
                log.exception("interaction writer could not open %s; retrying", self.db.path)
                time.sleep(0.5)

    def _has_work(self) -> bool:
        return bool(self._queue or self._deferred or self._closed)

    def _drain(self, transaction) -> None:
        """Batches on one held connection until the queue stays empty for ``idle_release`` or ``max_hold``
        is over (then the lock is released so other writers of the file get their turn)."""
        until = time.monotonic() + self.config.max_hold
        while True:
            batch, deferred, taken = self._take()
            try:
                self._commit(batch, deferred, transaction)
            finally:
                with self._cv:
                    self._done += len(batch)
                    self._deferred_done = taken
                    self._prune_keys()
                    self._cv.notify_all()
            if time.monotonic() >= until:
                return
            with self._cv:
                if not self._cv.wait_for(lambda: self._queue or self._deferred, self.config.idle_release):
                    return

    def _take(self) -> tuple[list[_Pending], dict[Any, tuple[str, list[Any]]], int]:
        """The next batch: what is queued, lingering up to ``max_delay`` while more keeps arriving."""
        with self._cv:
            deadline = time.monotonic() + self.config.max_delay
            while len(self._queue) < self.config.max_rows and not self._closed:
                before = len(self._queue)
                if not self._cv.wait(min(0.002, max(0.0, deadline - time.monotonic()))):
                    if len(self._queue) == before or time.monotonic() >= deadline:
                        break  # the queue ran dry (or the linger is over): commit now
            batch, self._queue = self._queue[:self.config.max_rows], self._queue[self.config.max_rows:]
            deferred, self._deferred = self._deferred, {}
            return batch, deferred, self._deferred_seq

    def _commit(self, batch: list[_Pending], deferred: dict[Any, tuple[str, list[Any]]], transaction) -> None:
        if not batch and not deferred:
            return
        try:
            ids = self._transaction(batch, deferred.values(), transaction)
        except Exception as err:  # noqa: BLE001 - one bad row must not fail the others: retry one by one
            if len(batch) <= 1 and not deferred:
                self._fail(batch, err)
                return
            log.warning("batch of %d rows failed (%s); committing them one by one", len(batch), err)
            for sql, params in deferred.values():
                try:
                    self._transaction([], [(sql, params)], transaction)
                except Exception as side_err:  # noqa: BLE001
                    log.error("deferred write failed: %s", side_err)
            for pending in batch:
                self._commit([pending], {}, transaction)
            return
        self.batches += 1
        for pending, interaction_id in zip(batch, ids):
            if pending.key is not None:
                with self._cv:
                    self._keys[pending.key] = (interaction_id, time.monotonic())
            pending.future.set_result(WriteResult(interaction_id))

    def _fail(self, batch: list[_Pending], err: Exception) -> None:
        for pending in batch:
            if pending.key is not None:
                with self._cv:
                    self._keys.pop(pending.key, None)  # the retry may try again
            pending.future.set_exception(err)

    def _transaction(self, batch: list[_Pending], deferred, transaction) -> list[int]:
        """One transaction: ids from the sequence, rows inserted in one statement, sessions, deferred writes."""
        with transaction() as con:
            if con is not self._tuned:
                # one DuckDB thread for these small batches: the serving threads of this process keep the
                # other core (with the default, a commit or checkpoint takes both, PER-g1)
                con.execute(f"SET threads = {self.config.duckdb_threads}")
                self._tuned = con
            ids: list[int] = []
            if batch:
                ids = [int(r[0]) for r in con.execute(
                    "SELECT nextval('interaction_seq') FROM range(?) ORDER BY 1", [len(batch)]).fetchall()]
                frame = pd.DataFrame([p.row for p in batch], columns=list(COLUMNS))
                frame.insert(0, "interaction_id", ids)
                con.register("writer_batch", frame)
                try:
                    select = ", ".join(f"{c}::{CASTS[c]}" for c in COLUMNS)
                    con.execute(f"INSERT INTO interactions (interaction_id, {', '.join(COLUMNS)}) "
                                f"SELECT interaction_id, {select} FROM writer_batch")
                    con.execute(
                        "INSERT INTO sessions SELECT session_id::VARCHAR, any_value(user_id), min(ts), max(ts) "
                        "FROM writer_batch WHERE session_id IS NOT NULL GROUP BY session_id::VARCHAR "
                        "ON CONFLICT (session_id) DO UPDATE "
                        "SET last_seen = greatest(sessions.last_seen, excluded.last_seen)")
                finally:
                    con.unregister("writer_batch")
            for sql, params in deferred:
                con.execute(sql, params)
        return ids

    # idempotency keys ---------------------------------------------------------------------
    def _load_keys(self) -> None:
        """Keys of the window from DuckDB, so a retry after a restart is still recognised."""
        since = datetime.now(timezone.utc) - self.config.key_window
        with self.db.read() as con:
            cols = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'interactions'").fetchall()}
            if "idempotency_key" not in cols:
                return
            rows = con.execute("SELECT user_id, idempotency_key, interaction_id FROM interactions "
                               "WHERE idempotency_key IS NOT NULL AND ts >= ? ORDER BY ts", [since]).fetchall()
        now = time.monotonic()
        for user_id, key, interaction_id in rows:
            self._keys[(user_id, key)] = (int(interaction_id), now)
        if rows:
            log.info("interaction writer: %d idempotency keys of the last %s loaded", len(rows), self.config.key_window)

    def forget_user(self, user_id: str) -> None:
        """Drop a user's remembered keys (erasure: no trace of them may stay, even in memory)."""
        with self._cv:
            for key in [k for k in self._keys if k[0] == user_id]:
                del self._keys[key]

    def _prune_keys(self) -> None:
        horizon = time.monotonic() - self.config.key_window.total_seconds()
        while self._keys:
            key, (value, at) = next(iter(self._keys.items()))
            if at >= horizon or isinstance(value, Future):
                break
            self._keys.popitem(last=False)
