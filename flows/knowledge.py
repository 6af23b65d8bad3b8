"""Knowledge ingestion: a user's document -> passages -> embeddings -> validation -> the NPC knowledge base.

read (an upload of the owner, or a file for operators) -> chunk -> embed -> Great Expectations
suite -> store in one transaction -> summary artifact. A failure at any step stores nothing; a
document uploaded again under the same name replaces the earlier one. The API hands large
documents to this flow; operators run it from the Prefect UI. Implements NPC-a2.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from gaiverse.npc import kb_ingest
from gaiverse.npc.kb_ingest import NPC_ID_PATTERN
from tasks.artifacts import table_artifact
from tasks.common import flow_hooks
from tasks.knowledge import chunk_document, embed_passages, read_document, store_document, validate_document


@flow(name="knowledge-ingest", description="Chunk, embed, validate and store a user's document (NPC-a2).",
      **flow_hooks())
def ingest_knowledge(
    owner: Annotated[str, Field(min_length=1, max_length=200)],
    key: Annotated[str | None, Field(max_length=300)] = None,
    path: Annotated[str | None, Field(max_length=1000)] = None,
    name: Annotated[str | None, Field(max_length=200)] = None,
    domain: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = "general",
    npc_id: Annotated[str | None, Field(pattern=NPC_ID_PATTERN)] = None,
) -> dict[str, Any]:
    """Ingest one document for ``owner`` (a user id), optionally only for one NPC.

    key : object key of the owner's uploaded document (what the API passes); path : a file on
    this host instead (operators). name : file name to store it under (its suffix gives the type).
    """
    kb_ingest.check_domain_known(domain)
    file_name, data = read_document(key, path, owner)
    name = name or file_name
    passages = chunk_document(name, data, domain)
    vectors = embed_passages(passages)
    doc = kb_ingest.PreparedDocument(kb_ingest.document_id(owner, npc_id, name), name, owner, npc_id,
                                     passages, vectors)
    validation = validate_document(doc)
    ids = store_document(doc)
    summary = {"doc_id": doc.doc_id, "name": name, "domain": domain, "npc_id": npc_id, "passages": len(ids),
               "validation": validation["validation_id"]}
    table_artifact("knowledge-ingest", [summary], title="Ingested document",
                   columns=["doc_id", "name", "domain", "npc_id", "passages", "validation"])
    get_run_logger().info("stored %s as %s: %d passages", name, doc.doc_id, len(ids))
    return {**summary, "passage_ids": ids}
