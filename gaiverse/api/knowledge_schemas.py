"""Request and response bodies of the ``/knowledge`` routes (NPC-a1, NPC-a2)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from gaiverse.npc.kb_ingest import DOMAINS, NPC_ID_PATTERN

DomainName = Literal[tuple(DOMAINS)]  # type: ignore[valid-type]
DOC_ID_PATTERN = r"^(doc|fact)_[0-9a-f]{16}$"


class FactIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000, examples=["The lighthouse keeper of Saltmere is Ona."])
    """One fact sentence (or a few)."""
    domain: DomainName = "general"
    """Knowledge domain it belongs to (GET /knowledge/domains)."""
    npc_id: str | None = Field(default=None, pattern=NPC_ID_PATTERN)
    """Scope it to one of your NPCs; None: every NPC you talk to."""
    entity: str = Field(default="", max_length=200)
    """What the fact is about (helps retrieval when a question names it)."""


class PassageEditIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    """The new text of the passage."""
    domain: DomainName | None = None
    """A new domain, or None to keep it."""


class PassageOut(BaseModel):
    id: int
    doc_id: str
    text: str
    domain: str
    entity: str
    source: str
    npc_id: str | None
    owner: Literal["you", "npc", "prior"]
    """Whose passage it is: your addition, an NPC's own knowledge, or the shared prior knowledge."""


class DocumentOut(BaseModel):
    doc_id: str
    name: str
    """File name of an uploaded document, or 'fact' for a single fact."""
    kind: Literal["document", "fact"]
    npc_id: str | None
    passages: int
    created_at: datetime | None


class DocumentDetailOut(DocumentOut):
    items: list[PassageOut]
    """The document's passages."""


class UploadOut(BaseModel):
    doc_id: str
    name: str
    domain: str
    npc_id: str | None
    status: Literal["stored", "ingesting"]
    """``stored``: searchable now (201); ``ingesting``: a large document handed to the ingestion flow (202)."""
    passages: int
    """Passages the document was cut into."""
    passage_ids: list[int]
    """Ids of the stored passages (empty while ingesting)."""
    run_id: str | None
    """The ingestion flow run (GET /runs/{run_id}) when ``status`` is ``ingesting``."""


class DeletedOut(BaseModel):
    deleted: int
    """Passages removed."""


class HitOut(BaseModel):
    passage: PassageOut
    score: float
    """Fused ranking score (vector + keyword + subject match)."""
    cosine: float
    keyword: float


class DomainOut(BaseModel):
    domain: str
    description: str
