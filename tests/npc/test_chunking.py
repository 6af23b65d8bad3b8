"""Documents -> passages for each supported type, and bad documents refused before anything is stored."""

from __future__ import annotations

import json

import pytest

from gaiverse.npc.chunking import ChunkingConfig, DocumentError, chunk_document
from gaiverse.npc.knowledge_base import Scope


@pytest.mark.clause("NPC-a2")
def test_text_paragraphs_become_passages_under_the_size_limit():
    text = "\n\n".join(f"Paragraph {i}. " + "The river floods every spring. " * 12 for i in range(4))
    passages = chunk_document("notes.txt", text.encode(), domain="general", config=ChunkingConfig(max_chars=300))
    assert len(passages) >= 4 and all(len(p.text) <= 300 for p in passages)
    assert {p.source for p in passages} == {"notes.txt"} and {p.domain for p in passages} == {"general"}


@pytest.mark.clause("NPC-a2")
def test_markdown_sections_keep_their_heading_as_subject():
    md = "# Village of Oakvale\n\nOakvale has 300 people.\n\n## The Mill\n\n- Built by the miller Hask.\n- Burned last winter.\n"
    passages = chunk_document("oakvale.md", md, domain="geography")
    assert [(p.entity, p.text) for p in passages] == [
        ("Village of Oakvale", "Oakvale has 300 people."),
        ("The Mill", "Built by the miller Hask. Burned last winter."),
    ]


@pytest.mark.clause("NPC-a2")
def test_json_records_and_fact_lists():
    records = {"Hask": {"role": "miller", "age": 54}, "Ilse": {"role": "smith", "age": 31}}
    passages = chunk_document("people.json", json.dumps(records))
    assert [p.entity for p in passages] == ["Hask", "Ilse"]
    assert passages[0].text == "The role of Hask is miller. The age of Hask is 54."
    facts = chunk_document("facts.json", json.dumps({"facts": ["The bridge is closed.", "Tolls are 2 silver."]}))
    assert [p.text for p in facts] == ["The bridge is closed.", "Tolls are 2 silver."]


@pytest.mark.clause("NPC-a2")
def test_csv_rows_become_passages_about_their_first_column():
    csv_text = "name,price_gp,stock\nRope,1,20\nLantern,5,3\n"
    passages = chunk_document("shop.csv", csv_text, domain="items")
    assert [(p.entity, p.text) for p in passages] == [
        ("Rope", "The price gp of Rope is 1. The stock of Rope is 20."),
        ("Lantern", "The price gp of Lantern is 5. The stock of Lantern is 3."),
    ]


@pytest.mark.clause("NPC-a2")
@pytest.mark.parametrize("name, data, message", [
    ("notes.pdf", b"%PDF-1.7", "unsupported document type '.pdf'"),
    ("facts.json", b'{"facts": [', "invalid JSON"),
    ("shop.csv", b"name,price\nRope,1,extra\n", "row 2 has 3 fields"),
    ("empty.md", b"   \n", "the document is empty"),
    ("latin1.txt", "caf\u00e9".encode("latin-1"), "not UTF-8 text"),
    ("shop.csv", b"name,price\n", "header row and at least one data row"),
])
def test_bad_documents_raise_a_clear_error(name, data, message):
    with pytest.raises(DocumentError, match=message.replace("(", r"\(").replace(".", r"\.")) as err:
        chunk_document(name, data)
    assert name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.clause("NPC-a2")
def test_a_bad_document_stores_nothing(kb, user):
    before = kb.count(Scope(user_id=user))
    with pytest.raises(DocumentError):
        kb.add_document("broken.json", b'[{"name": "Hask"', user_id=user)
    assert kb.count(Scope(user_id=user)) == before
    assert kb.list(Scope(user_id=user), own_only=True) == []


@pytest.mark.clause("NPC-a2")
def test_uploading_a_document_again_replaces_it(kb, user):
    kb.add_document("rumours.md", "# Rumours\n\nThe baron owes the guild 500 gold.", user_id=user)
    doc_id = kb.add_document("rumours.md", "# Rumours\n\nThe baron owes the guild 800 gold.", user_id=user)
    rows = kb.list(Scope(user_id=user), own_only=True)
    assert [(r.doc_id, r.text) for r in rows] == [(doc_id, "The baron owes the guild 800 gold.")]
    assert kb.delete_document(doc_id, user_id=user) == 1
