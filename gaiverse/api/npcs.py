"""``/npcs``: generate NPCs from your settings, list them, read one; keep your own NPC templates.

Generation always runs as the ``npc-generate/generate`` flow (Prefect deployment, like POST /runs):
retrieval, the .glb and the Khronos validation take seconds and belong in a retryable, recorded
run, not in a request. POST /npcs answers 202 with the run to follow and the NPC id it will be
published under; GET /npcs/{npc_id} answers 404 until the run has published it. NPCs live in the
catalog as versions of ``npc/<your user id>/<npc_id>``, so nobody else can list or read yours (404
exactly as for an NPC that does not exist). Templates (NPC-b2) are your predefined NPC settings
in the character repository; POST /npcs with ``template`` starts from one. Implements NPC-b1/b2.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Annotated, Any, get_args

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.keys import User
from gaiverse.api.runs import start_run
from gaiverse.npc.character_repository import CharacterRepository, TemplateNotFound, repository_path, srd_species
from gaiverse.npc.generation import NpcSettings, Sex
from gaiverse.speech.tts import VOICE_PACKAGES

log = logging.getLogger(__name__)

router = APIRouter(prefix="/npcs", tags=["npcs"], responses={**AUTH_ERRORS, **error_responses(503)})

DEPLOYMENT = "npc-generate/generate"
NPC_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
NpcId = Annotated[str, PathParam(pattern=NPC_ID, description="NPC id (from POST /npcs or GET /npcs)")]
TemplateId = Annotated[str, PathParam(pattern=r"^user:[0-9a-f]{16}$", description="one of your template ids")]


class NpcCreate(NpcSettings):
    """Your settings for the NPC (all optional) and, optionally, the id to publish it under."""

    npc_id: str | None = Field(None, pattern=NPC_ID)


class NpcStarted(BaseModel):
    npc_id: str
    run_id: str
    run_url: str
    npc_url: str


class NpcSummary(BaseModel):
    npc_id: str
    name: str
    role: str
    version: int
    created_at: Any
    assets: dict[str, str]


class NpcDetail(NpcSummary):
    profile: dict[str, Any]
    validation: dict[str, Any]
    manifest_key: str


class TemplateIn(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    settings: NpcSettings


def repository(services: Services) -> CharacterRepository:
    repo = services.extras.get("characters")
    if repo is None:
        repo = services.extras["characters"] = CharacterRepository(repository_path(services.settings.data_dir))
    return repo


def _new_id(body: NpcCreate) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", (body.name or body.role or "npc").lower()).strip("-")[:40] or "npc"
    return f"{base}-{secrets.token_hex(3)}"


@router.post("", status_code=202, response_model=NpcStarted, responses=error_responses(404, 422, 502))
async def create_npc(body: NpcCreate, services: ServicesDep, user: CurrentUser) -> NpcStarted:
    """Start generating an NPC from your settings (and template); follow the run, then GET /npcs/{npc_id}."""
    if body.template:
        try:
            await run_in_threadpool(repository(services).get, body.template, user.user_id)
        except TemplateNotFound as err:
            raise HTTPException(404, str(err).strip("'\"")) from None
    npc_id = body.npc_id or _new_id(body)
    settings = body.model_dump(mode="json", exclude_none=True, exclude={"npc_id"})
    parameters = {"settings": settings, "npc_id": npc_id, "user_id": user.user_id}
    _, flow_run = await start_run(services, user, DEPLOYMENT, parameters, tags=("npc",),
                                  not_deployed=f"NPC generation needs the flow {DEPLOYMENT!r}, which is not "
                                               "deployed here (`gaiverse up` serves it)")
    log.info("user %s: generating NPC %s in run %s", user.name, npc_id, flow_run.id)
    return NpcStarted(npc_id=npc_id, run_id=str(flow_run.id), run_url=f"/runs/{flow_run.id}", npc_url=f"/npcs/{npc_id}")


@router.get("", response_model=list[NpcSummary])
def list_npcs(services: ServicesDep, user: CurrentUser) -> list[NpcSummary]:
    """Your NPCs (latest version of each), newest first."""
    rows = services.catalog.query(
        "SELECT collection, max(version) AS version FROM versions WHERE starts_with(collection, ?) "
        "GROUP BY collection", [_prefix(user)])
    out = [_summary(services, user, r["collection"][len(_prefix(user)):]) for r in rows]
    return sorted(out, key=lambda n: str(n.created_at), reverse=True)


@router.get("/templates", response_model=list[dict[str, Any]])
def list_templates(services: ServicesDep, user: CurrentUser) -> list[dict[str, Any]]:
    """The SRD templates and your own predefined NPC settings."""
    return [t.to_dict() for t in repository(services).list(user.user_id)]


class NpcOptions(BaseModel):
    """Choices for the settings that only take listed values (species, sex, voice)."""

    species: dict[str, dict[str, Any]]
    sexes: list[str]
    voices: list[str]


@router.get("/options", response_model=NpcOptions)
def get_options(user: CurrentUser) -> NpcOptions:
    """What `species`, `sex` and `voice.voice` accept (forms offer these; anything else answers 422)."""
    return NpcOptions(species=srd_species(), sexes=list(get_args(Sex)), voices=sorted(VOICE_PACKAGES))


@router.post("/templates", status_code=201, response_model=dict[str, Any], responses=error_responses(422))
def add_template(body: TemplateIn, services: ServicesDep, user: CurrentUser) -> dict[str, Any]:
    """Store your predefined NPC settings as a template (same name again replaces it). NPC-b2."""
    settings = body.settings.model_dump(mode="json", exclude_none=True)
    try:
        return repository(services).add(user.user_id, body.name, settings).to_dict()
    except ValueError as err:
        raise HTTPException(422, str(err).splitlines()[0]) from None


@router.delete("/templates/{template_id}", status_code=204, responses=error_responses(404))
def delete_template(template_id: TemplateId, services: ServicesDep, user: CurrentUser) -> None:
    try:
        repository(services).delete(template_id, user.user_id)
    except TemplateNotFound as err:
        raise HTTPException(404, str(err).strip("'\"")) from None


@router.get("/{npc_id}", response_model=NpcDetail, responses=error_responses(404))
def get_npc(npc_id: NpcId, services: ServicesDep, user: CurrentUser) -> NpcDetail:
    """One of your NPCs: its profile (backstory, voice, behaviour, appearance) and asset keys."""
    summary, manifest = _latest(services, user, npc_id)
    profile = json.loads(services.store.get_bytes(manifest["assets"]["profile"]["key"]))
    return NpcDetail(**summary.model_dump(), profile=profile, validation=manifest.get("validation") or {},
                     manifest_key=manifest["_key"])


def _prefix(user: User) -> str:
    return f"npc/{user.user_id}/"


def _latest(services: Services, user: User, npc_id: str) -> tuple[NpcSummary, dict[str, Any]]:
    versions = services.catalog.versions(_prefix(user) + npc_id)
    if not versions:
        raise HTTPException(404, f"no NPC {npc_id!r} among your NPCs")
    latest = versions[-1]
    manifest = json.loads(services.store.get_bytes(latest.manifest_key))
    manifest["_key"] = latest.manifest_key
    return NpcSummary(npc_id=npc_id, name=manifest["name"], role=manifest["role"], version=latest.version,
                      created_at=latest.created_at,
                      assets={name: ref["key"] for name, ref in manifest["assets"].items()}), manifest


def _summary(services: Services, user: User, npc_id: str) -> NpcSummary:
    return _latest(services, user, npc_id)[0]
