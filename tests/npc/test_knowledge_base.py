"""The NPC knowledge base on the shipped prior data: build, retrieval, owner scoping, edit and delete."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.npc.embedding import CachedEmbedder, default_embedder
from gaiverse.npc.knowledge_base import KnowledgeBase, KnowledgeBaseConfig, PassageNotFound, Scope
from gaiverse.npc.prior import EMBEDDING_CACHE, embedding_text, prior_passages


@pytest.mark.clause("NPC-a1")
def test_prior_has_professional_domains_and_general_knowledge(kb):
    assert kb.count() > 5000
    assert {"monsters", "spells", "items", "conditions", "species", "geography"} <= set(kb.domains())


@pytest.mark.clause("NPC-a1")
def test_prior_build_is_idempotent(kb):
    before = kb.count()
    kb.build_prior()
    assert kb.count() == before


@pytest.mark.clause("NPC-a1")
def test_shipped_embedding_cache_covers_every_prior_passage_and_matches_the_model():
    passages = prior_passages()
    cached = CachedEmbedder(default_embedder(), EMBEDDING_CACHE)
    texts = [embedding_text(p) for p in passages]
    cached.embed(texts)
    assert cached.misses == 0, "prior.py changed: run gaiverse.npc.prior.refresh_embedding_cache"
    sample = texts[:: len(texts) // 3][:3]
    fresh = default_embedder().embed(sample)
    stored = CachedEmbedder(default_embedder(), EMBEDDING_CACHE).embed(sample)
    assert np.all(np.sum(fresh * stored, axis=1) > 0.99)


@pytest.mark.clause("NPC-a1")
@pytest.mark.parametrize("question, source", [
    ("What is the armor class of an aboleth?", "srd:monsters/aboleth"),
    ("What is the capital of Kenya?", "geonames:KE"),
    ("What level is the spell fireball?", "srd:spells/fireball"),
    ("How much does a longsword cost?", "srd:items/longsword"),
    ("What does the blinded condition do?", "srd:conditions/blinded"),
    ("How many people live in Lagos?", "geonames:2332459"),
])
def test_hybrid_retrieval_finds_the_right_passage(kb, question, source):
    hits = kb.search(question, k=3)
    assert hits[0].source == source, [h.source for h in hits]


@pytest.mark.clause("NPC-a1")
def test_domain_filter_keeps_only_that_domain(kb):
    hits = kb.search("fire damage", domains=["spells"], k=8)
    assert hits and {h.domain for h in hits} == {"spells"}


@pytest.mark.clause("NPC-a2")
def test_a_users_fact_is_invisible_to_other_users(kb, user):
    fact = "The password of the Gilded Gate is mellon."
    kb.add_fact(fact, user_id=user, domain="general")
    mine = kb.search("What is the password of the Gilded Gate?", Scope(user_id=user), k=3)
    assert mine[0].text == fact
    for other in (Scope(user_id=user + "-other"), Scope()):
        assert fact not in [h.text for h in kb.search("password of the Gilded Gate", other, k=20)]
    assert kb.list(Scope(user_id=user + "-other"), own_only=True) == []


@pytest.mark.clause("NPC-a2")
def test_npc_scoped_addition_is_visible_only_with_that_npc(kb, user):
    fact = "Brom keeps a spare key under the third barrel."
    kb.add_fact(fact, user_id=user, npc_id="innkeeper")
    with_npc = kb.search("Where does Brom keep the spare key?", Scope(user_id=user, npc_id="innkeeper"), k=3)
    other_npc = kb.search("Where is the spare key?", Scope(user_id=user, npc_id="sage"), k=20)
    assert with_npc[0].text == fact
    assert fact not in [h.text for h in other_npc]


@pytest.mark.clause("NPC-a2")
def test_edit_and_delete_own_passage(kb, user):
    pid = kb.add_fact("The ferry to Ravenmoor leaves at dawn.", user_id=user)
    kb.edit(pid, "The ferry to Ravenmoor leaves at dusk.", user_id=user)
    hit = kb.search("When does the ferry to Ravenmoor leave?", Scope(user_id=user), k=1)[0]
    assert (hit.id, hit.text) == (pid, "The ferry to Ravenmoor leaves at dusk.")
    with pytest.raises(PassageNotFound):
        kb.delete(pid, user_id=user + "-other")
    kb.delete(pid, user_id=user)
    assert kb.list(Scope(user_id=user), own_only=True) == []


@pytest.mark.clause("NPC-a2")
def test_users_cannot_edit_or_delete_prior_knowledge(kb, user):
    prior_id = kb.search("What is the capital of Kenya?", k=1)[0].id
    with pytest.raises(PassageNotFound):
        kb.edit(prior_id, "The capital of Kenya is Atlantis.", user_id=user)
    with pytest.raises(PassageNotFound):
        kb.delete(prior_id, user_id=user)
    assert "Nairobi" in kb.search("What is the capital of Kenya?", k=1)[0].text


@pytest.mark.clause("NPC-a2")
def test_hnsw_index_retrieval(tmp_path, user):
    store = KnowledgeBase(tmp_path / "hnsw.duckdb", config=KnowledgeBaseConfig(index="hnsw"))
    try:
        for fact in ("The lighthouse keeper is named Odo.", "The mill burned down last winter.",
                     "Wolves were seen near the northern pass."):
            store.add_fact(fact, user_id=user)
        hits = store.search("Who keeps the lighthouse?", Scope(user_id=user, include_prior=False), k=2)
        assert hits[0].text == "The lighthouse keeper is named Odo."
        assert store.search("lighthouse", Scope(user_id="stranger", include_prior=False), k=3) == []
    finally:
        store.close()
