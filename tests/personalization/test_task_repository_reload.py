"""TaskRepository.reload (column-wise fetch) rebuilds exactly what the writes produced (PER-b1, PER-g1)."""

from __future__ import annotations

from datetime import timezone

import numpy as np
import pytest

from gaiverse.personalization.task_repository import Provenance, Task, TaskRepository


@pytest.mark.clause("PER-b1")
def test_reload_sees_another_writer_and_keeps_every_field(repo):
    other = TaskRepository(db=repo.db)  # a second process's view of the same database
    made = Task("gen-1", "The Lantern Test", "Carry the lantern through the fen", ["Exploration", "mystery "],
                difficulty=3, rewards={"gold": 40, "xp": 12}, npcs=["npc-a"], tag_relevance={"mystery": 0.9},
                provenance=Provenance("generated", "quest_generator", "alice", ["authored-arena"]))
    other.add(made)
    other.record_engagement("gen-1", "completed", via_tags=["mystery"])
    first = repo.all()[0].task_id
    other.record_engagement(first, "abandoned")
    assert "gen-1" not in repo
    repo.reload()
    assert repo.all() == other.all()
    assert [t.task_id for t in repo.all()] == [t.task_id for t in other.all()]
    np.testing.assert_array_equal(repo._matrix, other._matrix)
    got = repo.get("gen-1")
    assert got.tags == ["exploration", "mystery"] and got.provenance.for_user == "alice"
    assert got.engagement.counts["completed"] == 1 and got.engagement.per_tag["mystery"] == [1.0, 1.0]
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timezone.utc.utcoffset(None)
    assert got.created_at == made.created_at
    assert repo.get(first).engagement.counts["abandoned"] == 1
    np.testing.assert_allclose(repo.embedding("gen-1"), repo.embedder.embed([made.text])[0], rtol=1e-6)
    hits = repo.search("lantern fen", k=1)
    assert hits and hits[0].task.task_id == "gen-1"


def test_reload_of_an_empty_repository(tmp_path):
    repo = TaskRepository(tmp_path / "empty.duckdb")
    repo.reload()
    assert len(repo) == 0 and repo._matrix.shape == (0, repo.embedder.dim)
    repo.add(Task("t1", "One", "The only task", ["puzzle"]))
    repo.reload()
    assert [t.task_id for t in repo.all()] == ["t1"] and repo._matrix.shape == (1, repo.embedder.dim)
