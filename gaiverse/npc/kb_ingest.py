"""Ingestion of a user's knowledge: document -> passages -> embeddings -> checks -> one stored document.

The steps are plain functions so the API (small documents, inline), the ingestion flow (large
documents, ``flows/knowledge.py``) and tests run the same code. Storing is one transaction in
``KnowledgeBase.add_passages`` with vectors computed beforehand, so a failure in any step leaves
no rows. Implements NPC-a2 (users extend the knowledge base with documents and facts, scoped to
themselves or to one NPC).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gaiverse.embedding import DIM, Embedder
from gaiverse.npc.chunking import ChunkingConfig, Passage, chunk_document
from gaiverse.npc.prior import embedding_text

log = logging.getLogger(__name__)

DOMAINS: dict[str, str] = {
    "general": "general knowledge and anything not filed elsewhere",
    "geography": "countries, cities, regions and travel",
    "history": "past events, people and eras",
    "science": "natural sciences and engineering",
    "medicine": "health, anatomy, remedies",
    "law": "laws, rules and customs",
    "commerce": "trade, prices, crafts and guilds",
    "world": "places, buildings, roads and people of the current world",
    "lore": "stories, legends and backstories",
    "monsters": "creatures and their statistics (SRD 5e)",
    "spells": "magic and spells (SRD 5e)",
    "items": "weapons, armour, gear and magic items (SRD 5e)",
    "conditions": "game conditions (SRD 5e)",
    "species": "playable species (SRD 5e)",
    "backgrounds": "character backgrounds (SRD 5e)",
}
"""The knowledge domains a passage may be filed under: the prior's domains plus general professional ones."""

NPC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""NPC ids as the personas and the NPC generation flow write them."""


class IngestError(ValueError):
    """A document or passage that must not be stored; one line naming what was wrong."""


@dataclass
class PreparedDocument:
    """A document cut and embedded, ready to store (nothing is stored yet)."""

    doc_id: str
    name: str
    user_id: str
    npc_id: str | None
    passages: list[Passage]
    vectors: np.ndarray
    """(n, 384) float32 unit vectors, one per passage."""


def document_id(user_id: str, npc_id: str | None, name: str) -> str:
    """Same id as ``KnowledgeBase.add_document``: uploading the same file name again replaces it."""
    return "doc_" + hashlib.sha256(f"{user_id}\x00{npc_id}\x00{name}".encode()).hexdigest()[:16]


def fact_id(user_id: str, npc_id: str | None, text: str) -> str:
    """Same id as ``KnowledgeBase.add_fact``."""
    return "fact_" + hashlib.sha256(f"{user_id}\x00{npc_id}\x00{text}".encode()).hexdigest()[:16]


def check_domain_known(domain: str) -> str:
    if domain not in DOMAINS:
        raise IngestError(f"`domain` must be one of {', '.join(DOMAINS)}, got {str(domain)[:40]!r}")
    return domain


def check_npc_id(npc_id: str | None) -> str | None:
    if npc_id is not None and not re.match(NPC_ID_PATTERN, npc_id):
        raise IngestError(f"`npc_id` must match {NPC_ID_PATTERN}, got {npc_id[:70]!r}")
    return npc_id


def chunk(name: str, data: bytes | str, domain: str, config: ChunkingConfig | None = None) -> list[Passage]:
    """Step 1: the document's passages (``DocumentError`` names the file and the problem)."""
    check_domain_known(domain)
    return chunk_document(name, data, domain=domain, config=config)


def embed(passages: Sequence[Passage], embedder: Embedder) -> np.ndarray:
    """Step 2: one all-MiniLM-L6-v2 vector per passage (its subject prefixed as the prior does)."""
    if not passages:
        raise IngestError("nothing to embed: the document has no passages")
    return embedder.embed([embedding_text(p) for p in passages])


def check(passages: Sequence[Passage], vectors: np.ndarray, user_id: str) -> None:
    """Step 3 (plain form of the flow's Great Expectations suite): what storing relies on.

    Non-empty text, known domain, an owner, one finite 384-dim vector per passage.
    """
    if not isinstance(user_id, str) or not user_id.strip():
        raise IngestError(f"the owner (`user_id`) must be set, got {user_id!r}")
    if vectors.ndim != 2 or vectors.shape != (len(passages), DIM):
        raise IngestError(f"embeddings must be ({len(passages)}, {DIM}), got {tuple(vectors.shape)}")
    if not np.isfinite(vectors).all():
        raise IngestError(f"{int((~np.isfinite(vectors)).any(axis=1).sum())} embeddings are not finite")
    for i, p in enumerate(passages):
        if not p.text.strip():
            raise IngestError(f"passage {i} has no text")
        check_domain_known(p.domain)


class FixedVectors:
    """An embedder answering with vectors computed beforehand, so storing does not embed again."""

    def __init__(self, texts: Sequence[str], vectors: np.ndarray, name: str):
        self._table = dict(zip(texts, vectors))
        self.name, self.dim = name, DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        try:
            return np.stack([self._table[t] for t in texts]).astype(np.float32)
        except KeyError as err:
            raise IngestError(f"no precomputed vector for passage {str(err)[:60]}") from None


def prepare(name: str, data: bytes | str, domain: str, user_id: str, npc_id: str | None,
            embedder: Embedder, config: ChunkingConfig | None = None) -> PreparedDocument:
    """Chunk, embed and check a document (steps 1-3) without storing it."""
    check_npc_id(npc_id)
    passages = chunk(name, data, domain, config)
    vectors = embed(passages, embedder)
    check(passages, vectors, user_id)
    return PreparedDocument(document_id(user_id, npc_id, name), name, user_id, npc_id, passages, vectors)


def store(kb, doc: PreparedDocument) -> list[int]:
    """Step 4: store the prepared document in ``kb`` (a ``KnowledgeBase`` opened for writing) in one
    transaction, replacing an earlier upload of the same name; returns the passage ids."""
    fixed = FixedVectors([embedding_text(p) for p in doc.passages], doc.vectors, kb.embedder.name)
    return kb.add_passages(doc.passages, doc.doc_id, user_id=doc.user_id, npc_id=doc.npc_id, name=doc.name,
                           embedder=fixed)
