"""``/knowledge``: extend the NPC knowledge base with your own documents and facts; edit, delete, search them.

A user's additions carry their account id as owner and are visible to nobody else: every route
takes the owner from the API key, lists and edits only rows owned by it, and answers 404 for
another user's passage or document exactly as for one that does not exist. Search sees the
shared prior knowledge, the NPC's own knowledge and the caller's additions (``Scope``), never
another user's. Small documents are ingested inline (chunk -> embed -> check -> store, one
transaction); large ones are stored as your upload and handed to the ingestion flow
(``flows/knowledge.py``), answered 202 with the run to follow. Implements NPC-a1 and NPC-a2.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, UpstreamError, error_responses
from gaiverse.api.filetypes import DOCUMENT_TYPES
from gaiverse.api.keys import User
from gaiverse.api.knowledge_schemas import (
    DOC_ID_PATTERN, DeletedOut, DocumentDetailOut, DocumentOut, DomainName, DomainOut, FactIn, HitOut,
    PassageEditIn, PassageOut, UploadOut,
)
from gaiverse.api.prefect_gateway import NotFound, check_parameters
from gaiverse.api.uploads import receive_upload
from gaiverse.config import Settings
from gaiverse.npc import kb_ingest
from gaiverse.npc.chunking import DocumentError, Passage
from gaiverse.npc.kb_ingest import DOMAINS, NPC_ID_PATTERN
from gaiverse.npc.kb_shared import SharedKnowledgeBase, kb_path_for
from gaiverse.npc.knowledge_base import Hit, PassageNotFound, PassageRecord, Scope
from gaiverse.npc.persona import PersonaRegistry
from storage.objectstore import make_key

log = logging.getLogger(__name__)

router = APIRouter(prefix="/knowledge", tags=["knowledge"], responses={**AUTH_ERRORS, **error_responses(503)})

INGEST_DEPLOYMENT = "knowledge-ingest/ingest"
INLINE_MAX_PASSAGES = 64
"""Documents cut into more passages than this are embedded by the ingestion flow, not in the request."""
UPLOAD_KIND = "upload/knowledge"
"""Object kind of a large document kept for the flow: an upload of its owner (erased with the account)."""

NpcQuery = Annotated[str | None, Query(pattern=NPC_ID_PATTERN, description="one of your NPC ids")]
DomainsQuery = Annotated[list[DomainName], Query(max_length=len(DOMAINS), description="only these domains")]
PassageId = Annotated[int, PathParam(ge=1, le=2**62, description="passage id")]
DocId = Annotated[str, PathParam(pattern=DOC_ID_PATTERN, description="document id (doc_... or fact_...)")]

UPLOAD_DOC_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "A UTF-8 document: " + ", ".join(
                                        e for t in DOCUMENT_TYPES for e in t.extensions)}},
        }}},
    }
}


def start_knowledge(settings: Settings) -> SharedKnowledgeBase | str:
    """The installation's knowledge base (``<data_dir>/npc/kb.duckdb``, shared with the CLI and the flows), its
    prior knowledge loaded and the embedder warmed in the background; or why it is unavailable."""
    try:
        kb = SharedKnowledgeBase(kb_path_for(settings.data_dir))
        kb.ensure(prior=False)
    except Exception as err:  # noqa: BLE001 - the API still starts; the routes report why
        log.exception("knowledge base unavailable")
        return f"knowledge base unavailable: {type(err).__name__}: {err}".splitlines()[0]

    def prepare() -> None:
        try:
            kb.ensure(prior=True)
            kb.warm_up()
        except Exception:  # noqa: BLE001 - user additions still work without the prior
            log.exception("loading the prior knowledge failed")

    threading.Thread(target=prepare, name="kb-prior", daemon=True).start()
    return kb


def export_knowledge(services: Services, user: User) -> list[dict]:
    """The user's knowledge additions, JSON-ready (part of ``GET /personalization/export``)."""
    kb = services.extras.get("knowledge")
    if not isinstance(kb, SharedKnowledgeBase):
        return []
    docs = {d.doc_id: {**d.model_dump(mode="json"), "items": []} for d in _documents(kb, user)}
    with kb.reading() as store:
        for r in store.list(_own(user), own_only=True, limit=1_000_000):
            docs.setdefault(r.doc_id, {"doc_id": r.doc_id, "items": []})["items"].append(
                {"id": r.id, "text": r.text, "domain": r.domain, "entity": r.entity, "source": r.source,
                 "npc_id": r.npc_id})
    return list(docs.values())


def erase_knowledge(services: Services, user: User) -> int:
    """Erase the user's knowledge additions (part of ``DELETE /personalization/data``); returns the passages."""
    kb = services.extras.get("knowledge")
    return kb.erase_user(user.user_id) if isinstance(kb, SharedKnowledgeBase) else 0


def knowledge_base(services: ServicesDep) -> SharedKnowledgeBase:
    """The installation's knowledge base (503 with the reason when it could not be opened)."""
    kb = services.extras.get("knowledge")
    if not isinstance(kb, SharedKnowledgeBase):
        raise HTTPException(503, kb or "the knowledge base is not configured in this API")
    return kb


KB = Annotated[SharedKnowledgeBase, Depends(knowledge_base)]


def _own(user: User) -> Scope:
    """Only the user's own additions (what they may list, edit and delete)."""
    return Scope(user_id=user.user_id, include_prior=False)


def _passage(r: PassageRecord, user: User) -> PassageOut:
    owner = "you" if r.user_id == user.user_id else "npc" if r.npc_id is not None else "prior"
    return PassageOut(id=r.id, doc_id=r.doc_id, text=r.text, domain=r.domain, entity=r.entity, source=r.source,
                      npc_id=r.npc_id, owner=owner)


def _documents(kb: SharedKnowledgeBase, user: User, doc_id: str | None = None,
               npc_id: str | None = None) -> list[DocumentOut]:
    sql = "SELECT doc_id, name, npc_id, n_chunks, created_at FROM kb_docs WHERE user_id = ?"
    params: list = [user.user_id]
    if doc_id is not None:
        sql, params = sql + " AND doc_id = ?", params + [doc_id]
    if npc_id is not None:
        sql, params = sql + " AND npc_id = ?", params + [npc_id]
    with kb.reading() as store:
        rows = store.con.execute(sql + " ORDER BY created_at, doc_id", params).fetchall()
    return [DocumentOut(doc_id=d, name=n, kind="fact" if d.startswith("fact_") else "document", npc_id=npc,
                        passages=c, created_at=t) for d, n, npc, c, t in rows]


def check_npc(services: Services, user: User, npc_id: str | None) -> None:
    """An NPC the user may scope knowledge to: a shipped persona or one they generated (``npc/<user>/<id>``)."""
    if npc_id is None or npc_id in PersonaRegistry.load().personas:
        return
    rows = services.catalog.query("SELECT 1 FROM versions WHERE collection = ? AND author = ? LIMIT 1",
                                  [f"npc/{user.user_id}/{npc_id}", user.user_id])
    if not rows:
        raise HTTPException(404, f"`npc_id` {npc_id!r} is not one of your NPCs")


# domains ---------------------------------------------------------------------------------
@router.get("/domains", response_model=list[DomainOut])
def get_domains(user: CurrentUser) -> list[DomainOut]:
    """The knowledge domains passages are filed under (the `domain` of uploads, facts and search)."""
    return [DomainOut(domain=d, description=text) for d, text in DOMAINS.items()]


# documents -------------------------------------------------------------------------------
@router.post("/documents", status_code=201, response_model=UploadOut, openapi_extra=UPLOAD_DOC_BODY,
             responses={202: {"model": UploadOut, "description": "Large document, handed to the ingestion flow"},
                        **error_responses(400, 404, 413, 415, 422, 502)})
async def post_document(
    request: Request, response: Response, services: ServicesDep, kb: KB, user: CurrentUser,
    domain: DomainName = "general", npc_id: NpcQuery = None,
) -> UploadOut:
    """Upload a document (multipart field `file`: .txt, .md, .json, .jsonl or .csv), yours alone, or only for
    one of your NPCs with `npc_id`. Uploading the same file name again replaces the earlier version."""
    await run_in_threadpool(check_npc, services, user, npc_id)
    limit = min(services.settings.max_upload_bytes, kb.config.chunking.max_bytes)
    with tempfile.TemporaryDirectory(prefix="gaiverse-kb-") as tmp:
        receiver, ftype = await receive_upload(request, limit, Path(tmp), DOCUMENT_TYPES)
        name = Path(receiver.filename).name[:200]
        data = receiver.path.read_bytes()
    try:
        passages = await run_in_threadpool(kb_ingest.chunk, name, data, domain, kb.config.chunking)
    except (DocumentError, ValueError) as err:
        raise HTTPException(422, str(err)) from None
    doc_id = kb_ingest.document_id(user.user_id, npc_id, name)
    if len(passages) > INLINE_MAX_PASSAGES:
        run_id = await _hand_to_flow(services, user, data, ftype.name, name, domain, npc_id)
        response.status_code = 202
        return UploadOut(doc_id=doc_id, name=name, domain=domain, npc_id=npc_id, status="ingesting",
                         passages=len(passages), passage_ids=[], run_id=run_id)
    ids = await run_in_threadpool(_ingest_inline, kb, name, passages, user.user_id, npc_id)
    log.info("user %s added %s (%d passages)", user.name, doc_id, len(ids))
    return UploadOut(doc_id=doc_id, name=name, domain=domain, npc_id=npc_id, status="stored",
                     passages=len(ids), passage_ids=ids, run_id=None)


def _ingest_inline(kb: SharedKnowledgeBase, name: str, passages: list[Passage], user_id: str,
                   npc_id: str | None) -> list[int]:
    """Embed and check outside the lock, then store in one transaction."""
    vectors = kb_ingest.embed(passages, kb.embedder)
    kb_ingest.check(passages, vectors, user_id)
    doc = kb_ingest.PreparedDocument(kb_ingest.document_id(user_id, npc_id, name), name, user_id, npc_id,
                                     passages, vectors)
    with kb.writing() as store:
        return kb_ingest.store(store, doc)


async def _hand_to_flow(services: Services, user: User, data: bytes, ext: str, name: str, domain: str,
                        npc_id: str | None) -> str:
    """Keep the document as the user's upload and start the ingestion flow on it; undo both on failure."""
    prefect = services.extras["prefect"]
    try:
        _, deployment = await prefect.resolve(INGEST_DEPLOYMENT)
    except NotFound:
        raise HTTPException(503, f"large documents need the ingestion flow {INGEST_DEPLOYMENT!r}, which is not "
                                 "deployed here (`gaiverse up` serves it)") from None
    parameters = {"key": None, "name": name, "owner": user.user_id, "domain": domain, "npc_id": npc_id}
    key, created = await run_in_threadpool(_keep_upload, services, user, data, ext)
    parameters["key"] = key
    try:
        check_parameters(deployment.parameter_openapi_schema, parameters)
        tags = [f"owner:{user.user_id}", "api", "knowledge"]
        flow_run = await prefect.create_run(deployment, parameters, tags=tags)
        await run_in_threadpool(services.catalog.upsert_run, str(flow_run.id), flow_name="knowledge-ingest",
                                state=flow_run.state_type.value if flow_run.state_type else "SCHEDULED",
                                parameters=parameters, deployment=INGEST_DEPLOYMENT, owner=user.user_id)
    except Exception as err:
        if created:
            await run_in_threadpool(_forget_upload, services, key)
        if isinstance(err, (HTTPException, UpstreamError)):
            raise
        log.exception("could not start the ingestion flow for %s", key)
        raise HTTPException(502, f"could not start the ingestion flow: {type(err).__name__}") from None
    log.info("user %s: %s handed to ingestion run %s", user.name, name, flow_run.id)
    return str(flow_run.id)


def _keep_upload(services: Services, user: User, data: bytes, ext: str) -> tuple[str, bool]:
    from hashlib import sha256

    key = make_key(UPLOAD_KIND, sha256(data).hexdigest(), ext)
    existed = services.store.exists(key)
    ref = services.store.put_bytes(data, kind=UPLOAD_KIND, ext=ext)
    services.catalog.record_asset(replace(ref, content_type="text/plain"), owner=user.user_id)
    return key, not existed


def _forget_upload(services: Services, key: str) -> None:
    services.store.delete(key)
    with services.catalog.write() as con:
        con.execute("DELETE FROM asset_owners WHERE key = ?", [key])
        con.execute("DELETE FROM assets WHERE key = ?", [key])


@router.post("/facts", status_code=201, response_model=PassageOut, responses=error_responses(404, 422))
def post_fact(body: FactIn, services: ServicesDep, kb: KB, user: CurrentUser) -> PassageOut:
    """Add one fact, yours alone (or only for one of your NPCs with `npc_id`)."""
    check_npc(services, user, body.npc_id)
    text = " ".join(body.text.split())
    if not text:
        raise HTTPException(422, "`text` must contain words, got only whitespace")
    passages = [Passage(text, body.domain, " ".join(body.entity.split()), "user")]
    vectors = kb_ingest.embed(passages, kb.embedder)
    kb_ingest.check(passages, vectors, user.user_id)
    doc = kb_ingest.PreparedDocument(kb_ingest.fact_id(user.user_id, body.npc_id, text), "fact", user.user_id,
                                     body.npc_id, passages, vectors)
    with kb.writing() as store:
        pid = kb_ingest.store(store, doc)[0]
        row = store.list(_own(user), ids=[pid], own_only=True)[0]
    return _passage(row, user)


@router.get("/documents", response_model=list[DocumentOut])
def get_documents(kb: KB, user: CurrentUser, npc_id: NpcQuery = None) -> list[DocumentOut]:
    """Your documents and facts (optionally only those scoped to one NPC), oldest first."""
    return _documents(kb, user, npc_id=npc_id)


@router.get("/documents/{doc_id}", response_model=DocumentDetailOut, responses=error_responses(404))
def get_document(doc_id: DocId, kb: KB, user: CurrentUser) -> DocumentDetailOut:
    """One of your documents with its passages."""
    found = _documents(kb, user, doc_id=doc_id)
    if not found:
        raise HTTPException(404, f"no document {doc_id!r} among your knowledge")
    with kb.reading() as store:
        rows = [r for r in store.list(_own(user), own_only=True, limit=10_000) if r.doc_id == doc_id]
    return DocumentDetailOut(**found[0].model_dump(), items=[_passage(r, user) for r in rows])


@router.delete("/documents/{doc_id}", response_model=DeletedOut, responses=error_responses(404))
def delete_document(doc_id: DocId, kb: KB, user: CurrentUser) -> DeletedOut:
    """Delete one of your documents (or facts) with all its passages."""
    try:
        with kb.writing() as store:
            return DeletedOut(deleted=store.delete_document(doc_id, user_id=user.user_id))
    except PassageNotFound:
        raise HTTPException(404, f"no document {doc_id!r} among your knowledge") from None


# passages --------------------------------------------------------------------------------
@router.get("/passages", response_model=list[PassageOut])
def get_passages(kb: KB, user: CurrentUser, domain: DomainName | None = None, npc_id: NpcQuery = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[PassageOut]:
    """Your own passages (from documents and facts), optionally of one domain or one NPC."""
    with kb.reading() as store:
        rows = store.list(_own(user), domain=domain, own_only=True, limit=limit if npc_id is None else 10_000)
    if npc_id is not None:
        rows = [r for r in rows if r.npc_id == npc_id][:limit]
    return [_passage(r, user) for r in rows]


def _visible(store, user: User, passage_id: int) -> PassageRecord | None:
    """A passage the user may read: their own, an NPC's own knowledge or the prior; None for anything else."""
    found = store.con.execute(
        "SELECT id, doc_id, text, domain, entity, source, user_id, npc_id FROM kb_chunks "
        "WHERE id = ? AND (user_id IS NULL OR user_id = ?)", [passage_id, user.user_id]).fetchall()
    return PassageRecord(*found[0]) if found else None


@router.get("/passages/{passage_id}", response_model=PassageOut, responses=error_responses(404))
def get_passage(passage_id: PassageId, kb: KB, user: CurrentUser) -> PassageOut:
    """One passage: yours, an NPC's own knowledge or the shared prior knowledge (never another user's)."""
    with kb.reading() as store:
        row = _visible(store, user, passage_id)
    if row is None:
        raise HTTPException(404, f"no passage {passage_id} visible to you")
    return _passage(row, user)


@router.patch("/passages/{passage_id}", response_model=PassageOut, responses=error_responses(404))
def edit_passage(passage_id: PassageId, body: PassageEditIn, kb: KB, user: CurrentUser) -> PassageOut:
    """Replace the text (and optionally the domain) of one of your passages; it is embedded again."""
    if not body.text.strip():
        raise HTTPException(422, "`text` must contain words, got only whitespace")
    try:
        with kb.writing() as store:
            store.edit(passage_id, body.text, user_id=user.user_id, domain=body.domain)
            row = store.list(_own(user), ids=[passage_id], own_only=True)[0]
    except PassageNotFound:
        raise HTTPException(404, f"no passage {passage_id} among your knowledge") from None
    return _passage(row, user)


@router.delete("/passages/{passage_id}", response_model=DeletedOut, responses=error_responses(404))
def delete_passage(passage_id: PassageId, kb: KB, user: CurrentUser) -> DeletedOut:
    """Delete one of your passages (the shared prior knowledge cannot be deleted)."""
    try:
        with kb.writing() as store:
            store.delete(passage_id, user_id=user.user_id)
    except PassageNotFound:
        raise HTTPException(404, f"no passage {passage_id} among your knowledge") from None
    return DeletedOut(deleted=1)


# search ----------------------------------------------------------------------------------
@router.get("/search", response_model=list[HitOut], responses=error_responses(404))
def search(
    services: ServicesDep, kb: KB, user: CurrentUser,
    query: Annotated[str, Query(min_length=1, max_length=500, description="a question or keywords")],
    domain: DomainsQuery = [],  # noqa: B006 - FastAPI copies defaults
    npc_id: NpcQuery = None,
    include_prior: bool = True,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> list[HitOut]:
    """Hybrid search (vector + BM25 + subject) over the prior knowledge, the NPC's and your own additions."""
    if not query.strip():
        raise HTTPException(422, "`query` must contain words, got only whitespace")
    check_npc(services, user, npc_id)
    scope = Scope(user_id=user.user_id, npc_id=npc_id, include_prior=include_prior)
    with kb.reading() as store:
        hits = store.search(query, scope, domains=domain or None, k=k)
        sql = "SELECT id, doc_id FROM kb_chunks WHERE id IN (SELECT unnest(?::BIGINT[]))"
        docs = dict(store.con.execute(sql, [[h.id for h in hits]]).fetchall()) if hits else {}
    return [_hit(h, docs.get(h.id, ""), user) for h in hits]


def _hit(h: Hit, doc_id: str, user: User) -> HitOut:
    record = PassageRecord(h.id, doc_id, h.text, h.domain, h.entity, h.source, h.user_id, h.npc_id)
    return HitOut(passage=_passage(record, user), score=round(h.score, 5), cosine=round(h.cosine, 5),
                  keyword=round(h.keyword, 5))


# worlds ----------------------------------------------------------------------------------
WorldIdParam = Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$", description="one of your worlds")]


class WorldKnowledgeOut(BaseModel):
    """What one ingestion of a world stored."""

    world_id: str
    version: int
    """The version whose knowledge is stored now."""
    name: str
    """The settlement's made-up name (the subject of the overview passage)."""
    source: str
    """``world/<id>@v<N>``: the source of every passage of this version."""
    doc_id: str
    """Your knowledge document holding the world (list, read or delete it under /knowledge/documents)."""
    stored: bool
    """False when a newer version's knowledge was already stored (it is kept)."""
    passages: int
    """Passages stored by this call."""
    replaced: int = 0
    """Passages of the previously stored version that were replaced."""
    replaced_version: int | None = None
    places: int
    """Named places (districts, roads, landmarks, homes, water, green space)."""
    roads: int
    buildings: int
    npcs: int


@router.post("/worlds/{world_id}", response_model=WorldKnowledgeOut, responses=error_responses(404, 422))
def post_world_knowledge(world_id: WorldIdParam, services: ServicesDep, kb: KB, user: CurrentUser,
                         version: Annotated[int | None, Query(ge=1, le=1_000_000,
                                                              description="default: the latest")] = None,
                         ) -> WorldKnowledgeOut:
    """(Re)ingest what NPCs know of one of your worlds: its places, roads, buildings, water and NPCs.

    The passages are yours alone (domain `world`, source `world/<id>@v<N>`) and replace those of the
    version ingested before, in one transaction. Worlds are ingested after every build and rebuild;
    call this after edits or to ingest an older version again.
    """
    from gaiverse.npc.world_knowledge import WorldKnowledgeError, ingest_world
    from gaiverse.world.versions import WorldNotFound

    try:
        return WorldKnowledgeOut(**ingest_world(kb, services.store, services.catalog, world_id, version,
                                                user_id=user.user_id, admin=user.is_admin))
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from None
    except (WorldKnowledgeError, kb_ingest.IngestError) as err:
        raise HTTPException(422, f"world {world_id!r} cannot be ingested: {err}") from None


def refresh_world_knowledge(services: Services, world_id: str, version: int) -> threading.Thread | None:
    """Ingest a version an edit or rollback just published, in the background (the edit answers at once).

    Failures are logged; the owner can ingest again with ``POST /knowledge/worlds/{id}``.
    """
    kb = services.extras.get("knowledge")
    if not isinstance(kb, SharedKnowledgeBase):
        return None

    def run() -> None:
        from gaiverse.npc.world_knowledge import ingest_world

        try:
            ingest_world(kb, services.store, services.catalog, world_id, version, admin=True)
        except Exception:  # noqa: BLE001 - the version is published either way
            log.exception("knowledge of world %s v%d not ingested", world_id, version)

    thread = threading.Thread(target=run, name=f"world-knowledge-{world_id}", daemon=True)
    thread.start()
    return thread
