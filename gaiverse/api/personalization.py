"""``/personalization``: talk and show (text, image, voice, video), see your history, profile and recommendations,
generate quests, take on tasks, manage consent, export and erase your data.

Every route acts on the caller's own data only: the account id is turned into the user's
pseudonym inside ``PersonalizationService`` and no route takes a user id, so there is nothing to
ask for someone else's data with; ids of other users' interactions or tasks made for them answer
404 like ids that do not exist. Admins get no wider view here. Missing consent answers 403 naming
the purpose. Implements PER-a1, PER-a2, PER-b2, PER-c1, PER-d1, PER-d2, PER-e1 and PER-f1 over HTTP.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Iterator

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from gaiverse.api.avatars import export_avatars
from gaiverse.api.deps import CurrentUser, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.knowledge import erase_knowledge, export_knowledge
from gaiverse.api.npc_live import forget_npc_memory
from gaiverse.api.personal_data import catalog_export, erase_catalog, export_rooms, record_media
from gaiverse.api.personalization_schemas import (
    SESSION_PATTERN, TASK_ID_PATTERN, ConsentOut, ErasureOut, InteractionOut, ModalityName, ProfileOut,
    PurposeName, QuestOut, RecommendationOut, SearchHitOut, TaskEventName, TaskEventOut, TaskOut,
    TextInteractionIn,
)
from gaiverse.api.uploads import UPLOAD_BODY, receive_upload
from gaiverse.personalization.interaction_store import Interaction
from gaiverse.personalization.service import PersonalizationService, profile_summary
from gaiverse.personalization.task_repository import Task
from gaiverse.privacy import POLICY_VERSION, PURPOSES, ConsentRequired

log = logging.getLogger(__name__)

router = APIRouter(prefix="/personalization", tags=["personalization"],
                   responses={**AUTH_ERRORS, **error_responses(403, 503)})

MEDIA_MODALITY = {"png": "image", "jpg": "image", "wav": "audio", "mp4": "video", "webm": "video"}
MEDIA_TYPES = ("image/png", "image/jpeg", "audio/wav", "video/mp4", "video/webm")
TaskIdPath = Annotated[str, PathParam(pattern=TASK_ID_PATTERN, description="task id")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                              description="a retry with the same key is stored once (PER-g1)")]


async def personalization(services: ServicesDep) -> PersonalizationService:
    """The service of this API process (503 with the reason when it could not start).

    Async on purpose: a sync dependency costs every request a worker-thread hop; the check whether
    another process changed the data reads one small file, and only a real reload goes to a thread.
    """
    service = services.extras.get("personalization")
    if not isinstance(service, PersonalizationService):
        raise HTTPException(503, service or "personalization is not configured in this API")
    if service.needs_refresh():
        await run_in_threadpool(service.refresh)
    return service


Personalization = Annotated[PersonalizationService, Depends(personalization)]


@contextmanager
def _answers() -> Iterator[None]:
    """Domain errors as 4xx with their one-line reason."""
    try:
        yield
    except ConsentRequired as err:
        raise HTTPException(403, str(err)) from None
    except KeyError as err:
        raise HTTPException(404, str(err.args[0]) if err.args else "not found") from None
    except ValueError as err:
        raise HTTPException(422, str(err)) from None


def _interaction(it: Interaction) -> InteractionOut:
    return InteractionOut(interaction_id=it.interaction_id, ts=it.ts, modality=it.modality, event=it.event,
                          text=it.text, item_id=it.item_id, session_id=it.session_id, features=it.features,
                          has_media=it.media_key is not None)


def _task(task: Task, subject: str) -> TaskOut:
    return TaskOut(**{k: getattr(task, k) for k in (
        "task_id", "title", "description", "tags", "kind", "difficulty", "length_minutes", "social", "relevance",
        "rewards", "requirements", "location", "npcs", "items", "monsters")},
        observed_relevance=round(task.observed_relevance(), 4), provenance=task.provenance.kind,
        provenance_source=task.provenance.source, made_for_you=task.provenance.for_user == subject,
        from_tasks=list(task.provenance.from_tasks))


def _consent(state: dict[str, Any]) -> ConsentOut:
    return ConsentOut(current=state["current"], history=state["history"], purposes=PURPOSES,
                      policy_version=POLICY_VERSION)


# consent ---------------------------------------------------------------------------------
@router.get("/consent", response_model=ConsentOut)
def get_consent(service: Personalization, user: CurrentUser) -> ConsentOut:
    """Your consent per purpose now, and every grant and withdrawal you made."""
    return _consent(service.consent(user.user_id))


@router.put("/consent/{purpose}", response_model=ConsentOut)
def grant_consent(purpose: PurposeName, service: Personalization, user: CurrentUser) -> ConsentOut:
    """Grant one purpose (see `purposes` in the answer)."""
    service.set_consent(user.user_id, purpose, True)
    return _consent(service.consent(user.user_id))


@router.delete("/consent/{purpose}", response_model=ConsentOut)
def withdraw_consent(purpose: PurposeName, service: Personalization, user: CurrentUser) -> ConsentOut:
    """Withdraw one purpose: collection for it stops at once (erase removes what is held)."""
    service.set_consent(user.user_id, purpose, False)
    return _consent(service.consent(user.user_id))


# interactions ----------------------------------------------------------------------------
@router.post("/interactions", status_code=201, response_model=InteractionOut, responses=error_responses(403))
def post_text(body: TextInteractionIn, service: Personalization, user: CurrentUser,
              idempotency_key: IdempotencyKey = None) -> InteractionOut:
    """Say something (natural language); it is stored encrypted and reflected in your profile at once."""
    with _answers():
        return _interaction(service.observe_text(user.user_id, body.text, body.session_id, idempotency_key))


@router.post("/interactions/media", status_code=201, response_model=InteractionOut, openapi_extra=UPLOAD_BODY,
             responses=error_responses(400, 403, 413, 415))
async def post_media(
    request: Request, services: ServicesDep, service: Personalization, user: CurrentUser,
    text: Annotated[str, Query(max_length=4000, description="caption, or transcript of a voice note")] = "",
    session_id: Annotated[str | None, Query(pattern=SESSION_PATTERN)] = None,
    idempotency_key: IdempotencyKey = None,
) -> InteractionOut:
    """Show something: an image (png, jpg), a voice note (wav) or a video (mp4, webm), multipart field `file`.

    Stored encrypted with your key; its derived features (colours, brightness, duration, pitch,
    energy) are stored with the interaction. A retry with the same `Idempotency-Key` header returns the
    first interaction and stores nothing new.
    """
    subject = service.subject(user.user_id)
    with _answers():  # refuse before reading the body
        await run_in_threadpool(service.consents.require, subject, "interactions", "media")
    with tempfile.TemporaryDirectory(prefix="gaiverse-media-") as tmp:
        receiver, ftype = await receive_upload(request, services.settings.max_upload_bytes, Path(tmp))
        modality = MEDIA_MODALITY.get(ftype.name)
        if modality is None:
            raise HTTPException(415, f"file type {ftype.name!r} is not an interaction medium; "
                                     f"send one of {', '.join(MEDIA_MODALITY)}")
        data = receiver.path.read_bytes()
    with _answers():
        it = await run_in_threadpool(
            service.observe_media, user.user_id, modality, data, ftype.name, ftype.content_type, text, session_id,
            lambda ref: record_media(services.catalog, ref), idempotency_key)
    return _interaction(it)


@router.get("/interactions", response_model=list[InteractionOut])
def get_history(
    service: Personalization, user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    modality: ModalityName | None = None,
) -> list[InteractionOut]:
    """Your most recent interactions (oldest first), decrypted for you."""
    return [_interaction(it) for it in service.history(user.user_id, limit=limit, modality=modality)]


@router.get("/interactions/{interaction_id}/media", response_class=Response, responses={
    200: {"description": "the decrypted media", "content": {t: {} for t in MEDIA_TYPES}}, **error_responses(404)})
def get_media(interaction_id: Annotated[int, PathParam(ge=1, le=2**62)], service: Personalization,
              user: CurrentUser) -> Response:
    """The media of one of your interactions, decrypted."""
    opened = service.media(user.user_id, interaction_id)
    if opened is None:
        raise HTTPException(404, f"no media for interaction {interaction_id} among your interactions")
    data, meta = opened
    return Response(data, media_type=meta.get("content_type", "application/octet-stream"))


# profile, recommendations, quests, tasks ---------------------------------------------------
@router.get("/profile", response_model=ProfileOut)
def get_profile(service: Personalization, user: CurrentUser) -> ProfileOut:
    """Your interests, needs and preferences, and the short description made from them (PER-c1)."""
    with _answers():
        return ProfileOut(**profile_summary(service.profile(user.user_id)))


@router.get("/recommendations", response_model=list[RecommendationOut])
async def get_recommendations(service: Personalization, user: CurrentUser,
                              k: Annotated[int, Query(ge=1, le=50)] = 10) -> list[RecommendationOut]:
    """Tasks for you now, each with the reason; they follow your latest input (PER-b2, PER-e1, PER-e2).

    Answered on the event loop (the in-memory index scores all tasks in ~1-3 ms, less than a thread
    hop under load); only when the same user's write holds their lock does it wait in a thread (PER-g1).
    """
    subject = service.subject(user.user_id)
    recs = service.try_recommend(user.user_id, k)
    if recs is None:
        recs = await run_in_threadpool(service.recommend, user.user_id, k)
    return [RecommendationOut(task=_task(r.task, subject), score=r.score, reason=r.reason, parts=r.parts,
                              adjustments=r.adjustments, original_task_id=r.original_task_id)
            for r in recs]


@router.post("/quests", status_code=201, response_model=list[QuestOut])
def post_quests(service: Personalization, user: CurrentUser,
                n: Annotated[int, Query(ge=1, le=5)] = 1) -> list[QuestOut]:
    """Generate new quests from your preferences; they are stored in the task repository (PER-d1, PER-d2)."""
    subject = service.subject(user.user_id)
    with _answers():
        quests = service.generate(user.user_id, n)
    return [QuestOut(task=_task(q.task, subject), motivation=q.motivation, strategy=q.strategy,
                     steps=[asdict(s) for s in q.steps]) for q in quests]


@router.get("/tasks", response_model=list[SearchHitOut])
def search_tasks(
    service: Personalization, user: CurrentUser,
    query: Annotated[str | None, Query(max_length=500)] = None,
    tag: Annotated[list[str], Query(max_length=10)] = [],  # noqa: B006 - FastAPI copies defaults
    provenance: Annotated[list[str], Query(max_length=3)] = [],  # noqa: B006
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[SearchHitOut]:
    """Search the task repository (text + tags + provenance); tasks made for other users never show."""
    bad = [p for p in provenance if p not in ("authored", "imported", "generated")]
    if bad:
        raise HTTPException(422, f"`provenance` must be authored, imported or generated, got {bad[0][:40]!r}")
    subject = service.subject(user.user_id)
    hits = service.search(user.user_id, query, [t[:60] for t in tag], k, provenance or None)
    return [SearchHitOut(score=h.score, task=_task(h.task, subject)) for h in hits]


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=error_responses(404))
def get_task(task_id: TaskIdPath, service: Personalization, user: CurrentUser) -> TaskOut:
    """One task of the repository (or one recommended to you)."""
    task = service.visible_task(user.user_id, task_id)
    if task is None:
        raise HTTPException(404, f"`task_id` {task_id!r} is not a task you can see")
    return _task(task, service.subject(user.user_id))


@router.post("/tasks/{task_id}/{event}", response_model=TaskEventOut, responses=error_responses(404))
def post_task_event(task_id: TaskIdPath, event: TaskEventName, service: Personalization,
                    user: CurrentUser, idempotency_key: IdempotencyKey = None) -> TaskEventOut:
    """Accept, complete or abandon a task; your next recommendations reflect it at once (PER-e1)."""
    with _answers():
        it, task = service.task_event(user.user_id, task_id, event, idempotency_key)
    return TaskEventOut(interaction_id=it.interaction_id, event=it.event,
                        task=_task(task, service.subject(user.user_id)))


# export and erasure --------------------------------------------------------------------
@router.get("/export", response_model=dict[str, Any])
def get_export(services: ServicesDep, service: Personalization, user: CurrentUser) -> dict[str, Any]:
    """Everything held about you, machine-readable: account, consents, interactions (with media as base64),
    sessions, profile, tasks made for you, your assets and runs, your additions to the NPC knowledge base,
    your avatar and room captures (opened with your key)."""
    return {**service.export(user.user_id), "catalog": catalog_export(services.catalog, user),
            "knowledge": export_knowledge(services, user), "avatars": export_avatars(services, user),
            "rooms": export_rooms(services.catalog, services.store, service, user.user_id)}


@router.delete("/data", response_model=ErasureOut, responses=error_responses(404))
def erase_data(
    services: ServicesDep, service: Personalization, user: CurrentUser,
    confirm: Annotated[str, Query(max_length=64, description="your user name, to confirm")],
) -> ErasureOut:
    """Erase everything held about you, including your account: afterwards your key no longer works."""
    if user.is_admin:
        raise HTTPException(403, "the admin account cannot be erased; create a user for personal data")
    if confirm != user.name:
        raise HTTPException(422, f"`confirm` must be your user name {user.name!r}, got {confirm[:64]!r}")
    erased = service.erase(user.user_id)
    knowledge = erase_knowledge(services, user)
    npc_memory = forget_npc_memory(user.user_id)
    catalog = erase_catalog(services.catalog, services.store, user, erased["media_keys"])
    return ErasureOut(erased=True, interactions=erased["interactions"], media_objects=erased["media_objects"],
                      uploads=catalog["uploads"], consents=erased["consents"], tasks=erased["tasks"],
                      catalog_rows=catalog["catalog_rows"], knowledge_passages=knowledge,
                      npc_memory_forgotten=npc_memory, account_deleted=True)
