"""One knowledge-base file shared by the API, the CLI and the ingestion flow: short opens under a file lock.

``KnowledgeBase`` keeps one DuckDB connection open, and DuckDB lets a single process hold a file
read-write (or several read-only). The API serves many requests, the ingestion flow runs in its
own Prefect process and the CLI in a third, so none of them may keep the file open. As for the
catalog (``storage/catalog.py``) each access opens the file for one operation under an ``fcntl``
lock on ``<kb>.lock``: writers exclusively, readers shared and read-only. Opening costs ~10 ms;
the sentence embedder (the expensive part) is loaded once per process and reused.
Implements the storage side of NPC-a1 and NPC-a2 for several processes.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gaiverse.embedding import Embedder, default_embedder
from gaiverse.npc.knowledge_base import KnowledgeBase, KnowledgeBaseConfig
from gaiverse.proc import file_lock

log = logging.getLogger(__name__)


def kb_path_for(data_dir: Path) -> Path:
    """``<data_dir>/npc/kb.duckdb``: the installation's knowledge base (the CLI's default too)."""
    return Path(data_dir) / "npc" / "kb.duckdb"


class SharedKnowledgeBase:
    """Opens the knowledge base at ``path`` for one operation at a time; safe across threads and processes."""

    def __init__(self, path: Path | str, embedder: Embedder | None = None,
                 config: KnowledgeBaseConfig | None = None):
        self.path = Path(path)
        self.lock_path = Path(str(self.path) + ".lock")
        self.embedder = embedder or default_embedder()
        self.config = config or KnowledgeBaseConfig()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def writing(self) -> Iterator[KnowledgeBase]:
        """The knowledge base opened read-write, others locked out until the block ends."""
        with file_lock(self.lock_path, exclusive=True):
            kb = KnowledgeBase(self.path, embedder=self.embedder, config=self.config)
            try:
                yield kb
            finally:
                kb.close()

    @contextmanager
    def reading(self) -> Iterator[KnowledgeBase]:
        """The knowledge base opened read-only; other readers may read at the same time."""
        if not self.path.exists():
            self.ensure(prior=False)
        with file_lock(self.lock_path, exclusive=False):
            kb = KnowledgeBase(self.path, embedder=self.embedder, config=self.config, read_only=True)
            try:
                yield kb
            finally:
                kb.close()

    def ensure(self, prior: bool = True) -> int:
        """Create the file and its tables; with ``prior`` also load the shipped prior knowledge (a no-op
        when it is current). Returns the number of passages stored."""
        with self.writing() as kb:
            if prior:
                kb.build_prior()
            return kb.count()

    def open_exclusive(self) -> "LockedKnowledgeBase":
        """The knowledge base opened read-write, holding the lock until its ``close()`` (one CLI command)."""
        return LockedKnowledgeBase(self)

    def erase_user(self, user_id: str) -> int:
        """Delete every addition of ``user_id`` and rewrite the file so no bytes of them remain (PER-f1 erasure).

        Returns the number of passages removed; the file is only rewritten when there were any.
        """
        from gaiverse.personalization.database import compact_file

        if not self.path.exists():
            return 0
        with file_lock(self.lock_path, exclusive=True):
            kb = KnowledgeBase(self.path, embedder=self.embedder, config=self.config)
            try:
                con = kb.con
                n = con.execute("SELECT count(*) FROM kb_chunks WHERE user_id = ?", [user_id]).fetchone()[0]
                if n or con.execute("SELECT count(*) FROM kb_docs WHERE user_id = ?", [user_id]).fetchone()[0]:
                    con.execute("BEGIN TRANSACTION")
                    con.execute("DELETE FROM kb_terms WHERE chunk_id IN "
                                "(SELECT id FROM kb_chunks WHERE user_id = ?)", [user_id])
                    con.execute("DELETE FROM kb_chunks WHERE user_id = ?", [user_id])
                    con.execute("DELETE FROM kb_docs WHERE user_id = ?", [user_id])
                    con.execute("COMMIT")
                    con.execute("CHECKPOINT")
                else:
                    return 0
            finally:
                kb.close()
            compact_file(self.path)
        log.info("erased %d knowledge passages of one user", n)
        return int(n)

    def warm_up(self) -> None:
        """Load the sentence embedder now, so the first search does not pay seconds for it."""
        self.embedder.embed(["warm up"])


class LockedKnowledgeBase(KnowledgeBase):
    """A ``KnowledgeBase`` that holds the shared file's exclusive lock from opening until ``close()``."""

    def __init__(self, shared: SharedKnowledgeBase):
        self._held = file_lock(shared.lock_path, exclusive=True)
        self._held.__enter__()
        try:
            super().__init__(shared.path, embedder=shared.embedder, config=shared.config)
        except BaseException:
            self._held.__exit__(None, None, None)
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            held, self._held = self._held, None
            if held is not None:
                held.__exit__(None, None, None)
