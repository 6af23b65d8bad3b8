"""The knowledge ingestion flow against the real services (Prefect server, S3, catalog, the session's knowledge
base): a document from a file and from an owner's upload is chunked, embedded, validated and stored; a bad
document, someone else's upload or a failed expectation stores nothing."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from gaiverse.embedding import DIM
from gaiverse.npc.chunking import Passage
from gaiverse.npc.kb_ingest import PreparedDocument
from gaiverse.npc.kb_shared import SharedKnowledgeBase, kb_path_for
from gaiverse.npc.knowledge_base import Scope
from validation.knowledge import KNOWLEDGE_EXPECTATIONS, KNOWLEDGE_SUITE, knowledge_frame
from validation.metrics import ValidationFailed, validate_frame

pytestmark = pytest.mark.slow

NOTES = """# Saltmere harbour

The harbourmaster of Saltmere is Dunn Aldous. He collects two silver coins from every boat that moors overnight.

## The {tag} lighthouse

The {tag} lighthouse has one hundred and twelve steps. Its lamp burns whale oil and is lit at dusk.
"""


@pytest.fixture(scope="module")
def kb(settings) -> SharedKnowledgeBase:
    """The installation's knowledge base, as the flow opens it."""
    return SharedKnowledgeBase(kb_path_for(settings.data_dir))


def _own_rows(kb: SharedKnowledgeBase, owner: str) -> list:
    with kb.reading() as store:
        return store.list(Scope(user_id=owner, include_prior=False), own_only=True)


@pytest.mark.clause("NPC-a2")
def test_ingest_from_a_file_is_validated_stored_and_searchable(prefect_api, kb, catalog, tmp_path):
    from flows.knowledge import ingest_knowledge

    owner, tag = f"user-{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:6]}"
    path = tmp_path / "saltmere.md"
    path.write_text(NOTES.format(tag=tag))
    result = ingest_knowledge(owner=owner, path=str(path), domain="world", npc_id="innkeeper")
    assert result["passages"] == 2 and result["doc_id"].startswith("doc_")
    rows = _own_rows(kb, owner)
    assert [r.id for r in rows] == result["passage_ids"]
    assert {r.domain for r in rows} == {"world"} and {r.npc_id for r in rows} == {"innkeeper"}
    with kb.reading() as store:
        hit = store.search(f"How many steps does the {tag} lighthouse have?",
                           Scope(user_id=owner, npc_id="innkeeper", include_prior=False))[0]
        assert "one hundred and twelve steps" in hit.text
        assert not store.search(f"{tag} lighthouse steps", Scope(user_id="someone-else", npc_id="innkeeper",
                                                                 include_prior=False))
    validation = catalog.query("SELECT success, asset_key FROM validations WHERE suite = ? AND asset_key = ?",
                               [KNOWLEDGE_SUITE, f"knowledge:{result['doc_id']}"])
    assert validation and validation[0]["success"]
    # the same name again replaces the document (one version, no duplicates)
    path.write_text(f"# Saltmere\n\nThe {tag} lighthouse was rebuilt in stone.")
    again = ingest_knowledge(owner=owner, path=str(path), domain="world", npc_id="innkeeper")
    assert again["doc_id"] == result["doc_id"] and [r.text for r in _own_rows(kb, owner)] == [
        f"The {tag} lighthouse was rebuilt in stone."]


@pytest.mark.clause("NPC-a2")
def test_ingest_from_an_upload_checks_its_owner(prefect_api, kb, store, catalog):
    from flows.knowledge import ingest_knowledge

    owner, thief = f"user-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
    data = b"name,sells\nMarta,dried fish\nOlek,rope\n"
    ref = store.put_bytes(data, kind="upload/knowledge", ext="csv")
    catalog.record_asset(ref, owner=owner)
    with pytest.raises(ValueError, match="not an upload of owner"):
        ingest_knowledge(owner=thief, key=ref.key, name="market.csv", domain="commerce")
    assert _own_rows(kb, thief) == []
    result = ingest_knowledge(owner=owner, key=ref.key, name="market.csv", domain="commerce")
    assert result["passages"] == 2
    assert sorted(r.entity for r in _own_rows(kb, owner)) == ["Marta", "Olek"]


@pytest.mark.clause("NPC-a2")
def test_a_bad_document_or_parameter_stores_nothing(prefect_api, kb, tmp_path):
    from flows.knowledge import ingest_knowledge

    owner = f"user-{uuid.uuid4().hex[:8]}"
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("name,height\ntower,30,extra\n")
    with pytest.raises(ValueError, match="row 2 has 3 fields"):
        ingest_knowledge(owner=owner, path=str(ragged))
    good = tmp_path / "good.md"
    good.write_text("# A\n\nA perfectly good passage about the old mill.")
    with pytest.raises(ValueError, match="`domain` must be one of"):
        ingest_knowledge(owner=owner, path=str(good), domain="astrology")
    with pytest.raises(ValueError, match="exactly one of"):
        ingest_knowledge(owner=owner)
    assert _own_rows(kb, owner) == []


@pytest.mark.clause("NPC-a2")
def test_the_expectation_suite_names_what_is_wrong():
    passages = [Passage("The well is deep.", "general", "", "a.md"), Passage("Cold water.", "astrology", "", "a.md")]
    vectors = np.ones((2, DIM), dtype=np.float32) / np.sqrt(DIM)
    vectors[1, 5] = np.nan
    doc = PreparedDocument("doc_0123456789abcdef", "a.md", "", None, passages, vectors)
    with pytest.raises(ValidationFailed) as failed:
        validate_frame(KNOWLEDGE_SUITE, knowledge_frame(doc), KNOWLEDGE_EXPECTATIONS, asset_column="passage")
    message = str(failed.value)
    assert "domain" in message and "astrology" in message
    assert "embedding_finite" in message and "doc_0123456789abcdef#1" in message
    assert "owner" in message
    short = PreparedDocument("doc_0123456789abcdef", "a.md", "u1", None, passages[:1], np.ones((1, 128)))
    with pytest.raises(ValidationFailed, match="embedding_dims"):
        validate_frame(KNOWLEDGE_SUITE, knowledge_frame(short), KNOWLEDGE_EXPECTATIONS, asset_column="passage")
