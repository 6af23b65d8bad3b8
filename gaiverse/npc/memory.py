"""Per-user dialogue memory of an NPC: what was said, what the user did, and how the NPC feels about them.

Implements the memory part of NPC-c2 (understand context): the NPC can answer "what did I ask
you before?", resolve "it" to the last subject, remember gifts, and warm to or cool towards a
user (relationship). Memory is per (user, NPC) pair and never shared across users. It lives in
memory by default; with a DuckDB path it survives restarts (one JSON row per pair).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

log = logging.getLogger(__name__)

RELATIONSHIP_DELTA = {"greet": 0.05, "thank": 0.1, "give_item": 0.2, "trade": 0.02, "follow": 0.03, "ask": 0.01}
"""How much each intent warms the NPC to the user (relationship is clipped to -1..1)."""
RUDE_DELTA = -0.2


@dataclass
class Turn:
    """One utterance or action in the dialogue."""

    role: Literal["user", "npc"]
    text: str
    intent: str = ""
    source: str = "text"
    at: float = field(default_factory=time.time)
    """Unix time."""


@dataclass
class UserMemory:
    """Everything one NPC remembers about one user."""

    user_id: str
    npc_id: str
    turns: list[Turn] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    """Non-verbal events in words: 'gave a healing potion', 'pointed at the well', 'asked to follow'."""
    items_received: list[str] = field(default_factory=list)
    relationship: float = 0.0
    """-1 hostile .. 0 stranger .. 1 close friend."""
    last_entity: str | None = None
    """The subject of the last question, for 'it' in a follow-up."""
    greeted: bool = False
    max_turns: int = 200
    """Oldest turns are forgotten beyond this."""

    def record(self, turn: Turn) -> None:
        self.turns.append(turn)
        del self.turns[:-self.max_turns]

    def questions(self) -> list[str]:
        """The user's questions, oldest first."""
        return [t.text for t in self.turns if t.role == "user" and t.intent == "ask"]

    def update_relationship(self, intent: str, rude: bool = False) -> float:
        delta = RUDE_DELTA if rude else RELATIONSHIP_DELTA.get(intent, 0.0)
        self.relationship = max(-1.0, min(1.0, self.relationship + delta))
        return self.relationship

    def summary(self, max_turns: int = 6) -> str:
        """A short text of recent turns and actions, for a language-model prompt."""
        lines = [f"{'User' if t.role == 'user' else 'You'}: {t.text}" for t in self.turns[-max_turns:]]
        if self.actions:
            lines.append("The user has: " + "; ".join(self.actions[-5:]) + ".")
        mood = "friendly" if self.relationship > 0.3 else "wary" if self.relationship < -0.2 else "neutral"
        lines.append(f"Your attitude to the user: {mood}.")
        return "\n".join(lines)


SCHEMA = ("CREATE TABLE IF NOT EXISTS {table} (user_id VARCHAR, npc_id VARCHAR, state JSON, "
          "updated_at TIMESTAMP DEFAULT now(), PRIMARY KEY (user_id, npc_id))")


class MemoryStore:
    """Memories keyed by (user_id, npc_id); persisted to a DuckDB file when ``path`` is given.

    One process owns the file (the dialogue actor); ``_lock`` serialises its writers.
    """

    def __init__(self, path: Path | str | None = None):
        self._mem: dict[tuple[str, str], UserMemory] = {}
        self._lock = threading.Lock()
        self.con = None
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._discard(Path(str(self.path) + ".erasing"))  # a rewrite interrupted by a crash
            self.con = duckdb.connect(str(self.path))
            self.con.execute(SCHEMA.format(table="npc_memory"))

    def get(self, user_id: str, npc_id: str) -> UserMemory:
        if not user_id or not npc_id:
            raise ValueError(f"`user_id` and `npc_id` must be non-empty, got {user_id!r}, {npc_id!r}")
        key = (user_id, npc_id)
        with self._lock:
            if key not in self._mem:
                self._mem[key] = self._load(user_id, npc_id) or UserMemory(user_id, npc_id)
            return self._mem[key]

    def _load(self, user_id: str, npc_id: str) -> UserMemory | None:
        if self.con is None:
            return None
        row = self.con.execute("SELECT state FROM npc_memory WHERE user_id = ? AND npc_id = ?",
                               [user_id, npc_id]).fetchone()
        if row is None:
            return None
        state = json.loads(row[0])
        state["turns"] = [Turn(**t) for t in state.get("turns", [])]
        return UserMemory(**state)

    def save(self, memory: UserMemory) -> None:
        """Persist one memory (no-op without a path)."""
        if self.con is None:
            return
        with self._lock:
            self.con.execute("INSERT OR REPLACE INTO npc_memory (user_id, npc_id, state, updated_at) "
                             "VALUES (?, ?, ?, now())", [memory.user_id, memory.npc_id, json.dumps(asdict(memory))])

    def forget(self, user_id: str) -> None:
        """Erase everything remembered about a user (privacy: right to erasure), leaving no trace in the file.

        DuckDB's DELETE only marks rows deleted: their bytes stay in the database file (and the
        inserts in its write-ahead log) until the blocks happen to be reused, even after a
        CHECKPOINT. So the remaining rows are copied into a fresh file that atomically replaces
        the old one, under the writer lock.
        """
        with self._lock:
            for key in [k for k in self._mem if k[0] == user_id]:
                del self._mem[key]
            if self.con is not None:
                self.con.execute("DELETE FROM npc_memory WHERE user_id = ?", [user_id])
                self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file by a fresh copy of its live rows (caller holds ``_lock``)."""
        assert self.con is not None and self.path is not None
        fresh = Path(str(self.path) + ".erasing")
        self._discard(fresh)
        self.con.execute(f"ATTACH '{_sql_path(fresh)}' AS fresh")
        try:
            self.con.execute(SCHEMA.format(table="fresh.npc_memory"))
            self.con.execute("INSERT INTO fresh.npc_memory SELECT * FROM npc_memory")
        finally:
            self.con.execute("DETACH fresh")
        self.con.close()  # checkpoints the old file and ends its write-ahead log
        self.con = None
        try:
            with open(fresh, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(fresh, self.path)
            self._discard(Path(str(self.path) + ".wal"))  # already checkpointed: it belongs to the old file
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            self.con = duckdb.connect(str(self.path))

    @staticmethod
    def _discard(path: Path) -> None:
        for p in (path, Path(str(path) + ".wal")):
            p.unlink(missing_ok=True)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()


def _sql_path(path: Path) -> str:
    """A file path as a SQL string literal body."""
    return str(path).replace("'", "''")
