"""Right to erasure of NPC memory: after ``forget`` the DuckDB file holds no byte of the user's dialogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaiverse.npc.memory import MemoryStore, Turn

SECRET = "my grandmother's quince jam recipe uses seventeen cardamom pods"
OTHER = "the other user asked about the lighthouse keeper"


def _raw(path: Path) -> bytes:
    """The database file and its write-ahead log, as stored on disk."""
    wal = Path(str(path) + ".wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _remember(store: MemoryStore, user: str, npc: str, text: str) -> None:
    mem = store.get(user, npc)
    mem.record(Turn("user", text, "ask"))
    mem.record(Turn("npc", "I do not know that one.", "ask"))
    store.save(mem)


@pytest.mark.clause("NPC-c2")
def test_erasure_leaves_no_trace_in_the_memory_file(tmp_path):
    path = tmp_path / "memory.duckdb"
    store = MemoryStore(path)
    _remember(store, "alice", "sage", SECRET)
    _remember(store, "alice", "innkeeper", SECRET + " (told the innkeeper too)")
    _remember(store, "bob", "sage", OTHER)
    store.con.execute("CHECKPOINT")  # the rows now sit in the file's blocks, where a plain DELETE would leave them
    assert SECRET.encode() in _raw(path), "the phrase must be on disk before erasure for this test to mean anything"

    store.forget("alice")

    assert SECRET.encode() not in _raw(path)
    assert b"alice" not in _raw(path)
    assert not Path(str(path) + ".erasing").exists()
    # the other user's memory survives, in this store and after a restart
    assert store.get("bob", "sage").turns[0].text == OTHER
    assert store.get("alice", "sage").turns == []
    store.close()
    reopened = MemoryStore(path)
    assert reopened.get("bob", "sage").turns[0].text == OTHER
    assert reopened.get("alice", "sage").turns == []
    _remember(reopened, "carol", "sage", "a new turn after erasure")  # the replaced file is writable
    reopened.close()
    assert SECRET.encode() not in _raw(path)


def test_in_memory_store_forgets_too():
    store = MemoryStore()
    _remember(store, "alice", "sage", SECRET)
    store.forget("alice")
    assert store.get("alice", "sage").turns == []
