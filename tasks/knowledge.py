"""Tasks of the knowledge ingestion flow: thin wrappers over ``gaiverse.npc.kb_ingest``.

Passages and vectors pass between tasks in memory (``cache="none"``: a user's document is not
copied into Prefect's result storage). Reading checks that the owner named in the parameters
may use the document: an uploaded object must be the owner's asset, and a run started through
the API (tagged ``owner:<id>``) may only ingest for that same owner.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger

from gaiverse.config import REPO_ROOT, get_settings
from gaiverse.npc import kb_ingest
from gaiverse.npc.chunking import Passage
from gaiverse.npc.kb_ingest import PreparedDocument
from gaiverse.npc.kb_shared import SharedKnowledgeBase, kb_path_for
from tasks.artifacts import validate_in_run
from tasks.common import gaiverse_task, get_catalog, get_store
from validation.knowledge import KNOWLEDGE_EXPECTATIONS, KNOWLEDGE_SUITE, knowledge_frame


@lru_cache(maxsize=2)
def _kb_at(path: Path) -> SharedKnowledgeBase:
    """The knowledge base embedding through the cluster's shared model (``ray_actors/embedding.py``):
    a flow run then does not load MiniLM into its own process."""
    from ray_actors.embedding import shared_embedder

    return SharedKnowledgeBase(path, embedder=shared_embedder())


def get_knowledge_base() -> SharedKnowledgeBase:
    """The installation's knowledge base (``<data_dir>/npc/kb.duckdb``), shared with the API and the CLI."""
    return _kb_at(kb_path_for(get_settings().data_dir))


def run_owner() -> str | None:
    """The ``owner:<user_id>`` tag of the current flow run (runs the API starts carry it), else None."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    tags = (context.flow_run.tags or []) if context and context.flow_run else []
    return next((tag.split(":", 1)[1] for tag in tags if tag.startswith("owner:")), None)


@gaiverse_task(cache="none", retries=2, backoff_s=1.0)
def read_document(key: str | None, path: str | None, owner: str) -> tuple[str, bytes]:
    """The document's file name and bytes, from the object store (an upload of ``owner``) or a local path."""
    tagged = run_owner()
    if tagged is not None and tagged != owner:
        raise ValueError(f"`owner` {owner!r} differs from the user who started this run")
    if (key is None) == (path is None):
        raise ValueError("give exactly one of `key` (an uploaded document) or `path` (a file on this host)")
    if key is not None:
        owners = get_catalog().query("SELECT owner FROM asset_owners WHERE key = ?", [key])
        if owner not in {row["owner"] for row in owners}:
            raise ValueError(f"`key` {key!r} is not an upload of owner {owner!r}")
        return Path(key).name, get_store().get_bytes(key)
    if tagged is not None:
        raise ValueError("`path` is for operators (Prefect UI, CLI); runs started through the API pass `key`")
    resolved = Path(path).expanduser()
    resolved = resolved if resolved.is_absolute() else REPO_ROOT / resolved
    if not resolved.is_file():
        raise ValueError(f"`path` {path!r} is not a file")
    return resolved.name, resolved.read_bytes()


@gaiverse_task(cache="none", retries=0)
def chunk_document(name: str, data: bytes, domain: str) -> list[Passage]:
    """Cut the document into passages (a bad document fails here, before anything is stored)."""
    passages = kb_ingest.chunk(name, data, domain)
    get_run_logger().info("%s: %d passages", name, len(passages))
    return passages


@gaiverse_task(cache="none", retries=1)
def embed_passages(passages: list[Passage]) -> np.ndarray:
    """One all-MiniLM-L6-v2 vector per passage."""
    return kb_ingest.embed(passages, get_knowledge_base().embedder)


@gaiverse_task(cache="none", retries=0)
def validate_document(doc: PreparedDocument) -> dict[str, Any]:
    """The Great Expectations suite over what will be stored; recorded in the catalog and as an artifact."""
    report = validate_in_run(KNOWLEDGE_SUITE, knowledge_frame(doc), KNOWLEDGE_EXPECTATIONS,
                             asset_key=f"knowledge:{doc.doc_id}", asset_column="passage")
    return {"suite": report.suite, "rows": report.rows, "success": report.success,
            "validation_id": report.validation_id}


@gaiverse_task(cache="none", retries=2, backoff_s=1.0)
def store_document(doc: PreparedDocument) -> list[int]:
    """Store the validated passages in one transaction (replacing an earlier upload of the same name)."""
    with get_knowledge_base().writing() as kb:
        return kb_ingest.store(kb, doc)
