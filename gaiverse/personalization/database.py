"""The personalization DuckDB file, shared by the API and flow processes: short connections under a file lock.

DuckDB lets one process open a file read-write *or* several open it read-only, so a long-lived
connection in the API would lock the import and retention flows (their own processes) out. As in
``storage/catalog.py``, every access is a short connection under an ``fcntl`` lock on
``<db>.lock``: writers take it exclusively and run one transaction, readers take it shared and
open read-only. A nested ``write()``/``read()`` in the same thread joins the outer connection, so
methods can call each other inside one transaction.

Writers also leave a fresh token in ``<db>.gen``; a process compares it with the last token it
wrote or saw (``changed_elsewhere``) to know when another process changed the data behind its
in-memory indexes (task index, profiles) and reload them. ``":memory:"`` keeps one private
connection (tests, throwaway stores). Implements the storage side of PER-a2 and PER-g1.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import duckdb

from gaiverse.proc import file_lock, transaction

log = logging.getLogger(__name__)


class Database:
    """One DuckDB database at ``path`` (``":memory:"`` for a private in-memory one)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self._local = threading.local()
        self._mem_lock = threading.RLock()
        self._mem_con = duckdb.connect(":memory:") if self.memory else None
        self._seen: str | None = None
        self._missed = False
        self._gen_lock = threading.Lock()
        """Orders ``_bump`` (writer thread) and ``changed_elsewhere`` (request threads): without it a
        request reading the token between the writer's write and its ``_seen`` update saw a foreign
        change and reloaded every index."""
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.lock_path = self.path + ".lock"
            self.gen_path = Path(self.path + ".gen")
            self._seen = self.generation()

    # connections --------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction: committed when the outermost block ends, rolled back (no rows) when it raises."""
        outer = getattr(self._local, "con", None)
        if outer is not None:
            if getattr(self._local, "read_only", False):
                raise RuntimeError("a write cannot start inside a read of the same thread")
            yield outer
            return
        if self.memory:
            with self._mem_lock:
                yield from self._transaction(self._mem_con)
            return
        with file_lock(self.lock_path, exclusive=True):
            con = duckdb.connect(self.path)
            try:
                yield from self._transaction(con)
                self._bump()
            finally:
                con.close()

    @contextmanager
    def held(self) -> Iterator[Callable[[], ContextManager[duckdb.DuckDBPyConnection]]]:
        """One write connection kept for several transactions: yields a factory of ``write()``-like blocks.

        Opening the file costs ~30 ms and closing it (a checkpoint) ~100-200 ms, more than the commit of
        a batch, so the single interaction writer keeps one connection while rows keep coming (bounded
        by its hold time, so other processes and threads get the lock in between). Each block is still
        its own transaction, committed (durable) when it ends. PER-g1.
        """
        if self.memory:
            yield self.write
            return
        if getattr(self._local, "con", None) is not None:
            raise RuntimeError("`held` cannot start inside a read or write of the same thread")
        with file_lock(self.lock_path, exclusive=True):
            con = duckdb.connect(self.path)
            try:
                @contextmanager
                def transaction() -> Iterator[duckdb.DuckDBPyConnection]:
                    yield from self._transaction(con)
                    self._bump()

                yield transaction
            finally:
                con.close()

    def _transaction(self, con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
        self._local.con, self._local.read_only = con, False
        try:
            with transaction(con):
                yield con
        finally:
            self._local.con = None

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only view (or the outer connection of this thread)."""
        outer = getattr(self._local, "con", None)
        if outer is not None:
            yield outer
            return
        if self.memory:
            with self._mem_lock:
                yield self._mem_con
            return
        if not Path(self.path).exists():  # a read-only open cannot create the file
            with self.write():
                pass
        with file_lock(self.lock_path, exclusive=False):
            con = duckdb.connect(self.path, read_only=True)
            self._local.con, self._local.read_only = con, True
            try:
                yield con
            finally:
                self._local.con, self._local.read_only = None, False
                con.close()

    def writing(self) -> bool:
        """Whether the calling thread is inside a ``write()`` block (its changes are not committed yet)."""
        return getattr(self._local, "con", None) is not None and not getattr(self._local, "read_only", False)

    def compact(self) -> None:
        """Rewrite the file without free blocks, so deleted rows leave no bytes behind (erasure, PER-f1)."""
        if self.memory:
            return
        if getattr(self._local, "con", None) is not None:
            raise RuntimeError("`compact` cannot run inside a read or write of the same thread")
        with file_lock(self.lock_path, exclusive=True):
            compact_file(Path(self.path))
            self._bump()

    def close(self) -> None:
        """Close the in-memory connection (file databases hold none between calls)."""
        if self._mem_con is not None:
            self._mem_con.close()

    # change detection ---------------------------------------------------------------------
    def generation(self) -> str | None:
        """The token of the last committed write (None for an in-memory or never-written database)."""
        if self.memory:
            return None
        try:
            return self.gen_path.read_text()
        except OSError:
            return None

    def _bump(self) -> None:
        with self._gen_lock:
            if self.generation() != self._seen:  # someone else wrote since we last looked: report it later
                self._missed = True
            token = uuid.uuid4().hex
            self.gen_path.write_text(token)
            self._seen = token

    def changed_elsewhere(self) -> bool:
        """Whether another process (or another ``Database`` object) wrote since this one last wrote or looked.

        Calling it marks the current generation as seen.
        """
        with self._gen_lock:
            current = self.generation()
            changed = current != self._seen or self._missed
            self._seen, self._missed = current, False
        return changed


def compact_file(path: Path) -> None:
    """Copy a DuckDB file into a fresh one (schema, data, sequences, indexes) and swap it in.

    DuckDB marks deleted rows and freed blocks but does not overwrite them, so bytes of erased
    rows stay in the file until it is rewritten. The caller must hold the file's exclusive lock.
    """
    path = Path(path)
    fresh = path.with_name(path.name + ".compact")
    fresh.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        name = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH '{fresh.as_posix().replace(chr(39), chr(39) * 2)}' AS gaiverse_compact")
        con.execute(f'COPY FROM DATABASE "{name}" TO gaiverse_compact')
        con.execute("DETACH gaiverse_compact")
    finally:
        con.close()
    if path.with_name(path.name + ".wal").exists():
        fresh.unlink(missing_ok=True)
        raise RuntimeError(f"{path} still has a write-ahead log after closing; not compacted")
    os.replace(fresh, path)
    log.info("compacted %s (%d bytes)", path.name, path.stat().st_size)
