"""Task repository: metadata, provenance, persistence, engagement-based relevance, hybrid retrieval."""

from __future__ import annotations

import pytest

from gaiverse.personalization.embedding import Embedder, HashingEmbedder
from gaiverse.personalization.task_repository import TaskFilter, TaskRepository


@pytest.mark.clause("PER-b1")
def test_seeded_corpus_has_authored_and_srd_tasks_with_metadata(repo):
    kinds = {t.provenance.kind for t in repo.all()}
    assert kinds == {"authored", "imported"}
    assert len([t for t in repo.all() if t.provenance.kind == "authored"]) == 30
    hunt = repo.get("srd-monster-owlbear")
    assert "combat" in hunt.tags and hunt.monsters == ["owlbear"] and hunt.rewards["xp"] == 700
    assert "CC BY 4.0" in hunt.provenance.source and "srd monsters/owlbear" in hunt.provenance.source
    authored = repo.get("authored-star-chart")
    assert authored.tag_relevance["puzzle"] == 1.0 and authored.location == "ruined-observatory"


@pytest.mark.clause("PER-b1")
def test_repository_persists_and_refuses_a_different_embedder(repo):
    path = repo.path
    repo.record_engagement("authored-arena", "completed", via_tags=["combat"])
    repo.db.close()
    reopened = TaskRepository(path)
    assert len(reopened) == 940
    assert reopened.get("authored-arena").engagement.counts["completed"] == 1
    reopened.db.close()
    with pytest.raises(ValueError, match="`embedder`"):
        TaskRepository(path, embedder=HashingEmbedder(dim=64))


@pytest.mark.clause("PER-b1")
def test_observed_engagement_moves_relevance_overall_and_per_tag(repo):
    before = repo.get("authored-herb-walk")
    for _ in range(3):
        repo.record_engagement("authored-herb-walk", "completed", via_tags=["nature"])
    liked = repo.get("authored-herb-walk")
    assert liked.observed_relevance() > before.observed_relevance()
    assert liked.observed_tag_relevance("nature") > before.observed_tag_relevance("nature")
    for _ in range(3):
        repo.record_engagement("authored-arena", "abandoned")
    assert repo.get("authored-arena").observed_relevance() < repo.get("authored-arena").relevance


@pytest.mark.clause("PER-b2")
def test_hybrid_search_combines_text_tags_and_filters(repo):
    hits = repo.search("a dragon egg in the ash", k=3)
    assert hits[0].task.task_id == "authored-wyrmling-egg"
    assert hits[0].parts["vector"] > 0 and hits[0].parts["keyword"] > 0
    tagged = repo.search(tags=["puzzle"], filters=TaskFilter(max_difficulty=2, provenance=["authored"]), k=5)
    assert all(h.task.difficulty <= 2 and h.task.provenance.kind == "authored" for h in tagged)
    assert [("puzzle" in h.task.tags) for h in tagged] == [True, True, True, False, False]
    excluded = repo.search("a dragon egg in the ash", filters=TaskFilter(exclude_ids={"authored-wyrmling-egg"}), k=3)
    assert "authored-wyrmling-egg" not in [h.task.task_id for h in excluded]


def test_hashing_embedder_is_a_deterministic_embedder():
    emb = HashingEmbedder()
    assert isinstance(emb, Embedder)
    a, b = emb.embed(["Explore the drowned tower"]), emb.embed(["Explore the drowned tower"])
    assert (a == b).all() and abs(float((a[0] ** 2).sum()) - 1.0) < 1e-5
    far = emb.embed(["haggle over spices at the market"])[0]
    near = emb.embed(["explore the drowned towers"])[0]
    assert float(a[0] @ near) > float(a[0] @ far)
