"""Worlds: build through the Prefect deployment, list, versions, diff, edits, schedule, rollback, backup, delete.

A world belongs to the user who built it; another user's world answers 404 exactly like one
that does not exist. Edits run in the API process and publish a new version with the state,
2-D previews, window interiors and dynamics (carried over, or rerouted where the edit changed
the streets: `gaiverse.world.version_outputs`); its .glb is assembled with its interiors on
first request (`/glb`) and kept as an asset derived from the version's manifest. PUT
/schedule publishes a version whose dynamics follow another weather / time-of-day schedule.
Implements ENV-a3 (versions, backup), ENV-a4 (user adjustments) and ENV-d2 (dynamics scheduled
per world) over HTTP.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.keys import User
from gaiverse.api.knowledge import refresh_world_knowledge
from gaiverse.api.runs import _run_out, start_run
from gaiverse.api.schemas import RunOut
from gaiverse.interiors.capture import CAPTURE_ID_PATTERN, CaptureError, room_owner
from gaiverse.world.dynamics.schedule import DynamicsSchedule
from gaiverse.world.editing import EditError, EditRequest, LayoutModels
from gaiverse.world.version_outputs import OutputsError, publish_edit, publish_schedule, version_schedule
from gaiverse.world.versions import (
    VersionConflict, WorldBusy, WorldIdTaken, WorldNotFound, WorldVersions,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/worlds", tags=["worlds"], responses={**AUTH_ERRORS, **error_responses(404)})

BUILD_DEPLOYMENT = "build-world/world-build"
WorldIdPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$", description="world id")]
VersionQuery = Annotated[int, Query(ge=1, le=1_000_000)]
_MODELS_LOCK = threading.Lock()
_RENDER_LOCK = threading.Lock()


class WorldCreate(BaseModel):
    """What POST /worlds builds (parameters of the build-world flow)."""

    prompt: str = Field(min_length=1, max_length=500, examples=["a hilly coastal town with a river, 1 km x 1 km"])
    size_m: float | None = Field(default=None, ge=128, le=4000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    world_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{2,62}$")
    ddim_steps: int | None = Field(default=None, ge=2, le=100)
    schedule: dict[str, Any] | None = Field(default=None, description="weather / time-of-day schedule "
                                            "(DynamicsSchedule JSON); default drawn from the seed")
    room_capture_id: str | None = Field(default=None, pattern=CAPTURE_ID_PATTERN, description=(
        "one of your room captures (POST /interiors/captures) with a finished room: every window shows your room; "
        "the world then contains renderings of your room (it is yours, like every world you build)"))

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else DynamicsSchedule.from_json(value).to_json()


class ScheduleIn(BaseModel):
    """A world's weather / time-of-day schedule: hourly weather, traffic and pedestrian shares."""

    schedule: dict[str, Any] = Field(examples=[{"latitude_deg": 50.0, "day_of_year": 172, "entries": [
        {"hour": 0, "weather": "clear", "traffic": 0.1, "pedestrians": 0.05},
        {"hour": 7, "weather": "fog", "traffic": 0.9, "pedestrians": 0.6}]}])
    base_version: int | None = Field(default=None, ge=1)
    message: str | None = Field(default=None, max_length=500)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: dict[str, Any]) -> dict[str, Any]:
        return DynamicsSchedule.from_json(value).to_json()


class WorldOut(BaseModel):
    world_id: str
    owner: str
    latest_version: int
    versions: int
    message: str
    manifest_key: str


class VersionOut(BaseModel):
    world_id: str
    version: int
    parent_version: int | None
    manifest_key: str
    message: str
    author: str
    created_at: Any
    objects: dict[str, str] = Field(default_factory=dict)
    """name -> object key (heights, roads, map_png, heightmap_png, glb...)."""
    stats: dict[str, Any] = Field(default_factory=dict)
    size_m: list[float] = Field(default_factory=list)
    """(width east, height north) of the world, metres: maps show x east, y north, north up."""
    edit: dict[str, Any] | None = None
    """The edit that made this version (None for builds)."""


class RollbackIn(BaseModel):
    to_version: int = Field(ge=1)
    message: str | None = Field(default=None, max_length=500)


def versions_of(services: Services) -> WorldVersions:
    return WorldVersions(services.store, services.catalog)


def _layout_models(services: Services) -> LayoutModels:
    with _MODELS_LOCK:
        if "world_models" not in services.extras:
            services.extras["world_models"] = LayoutModels.from_checkpoint()
        return services.extras["world_models"]


def _visible(services: Services, user: User, world_id: str) -> WorldVersions:
    repo = versions_of(services)
    try:
        repo.check_access(world_id, user.user_id, admin=user.is_admin)
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    return repo


def _version_out(repo: WorldVersions, world_id: str, version: int | None) -> VersionOut:
    try:
        row = repo.version(world_id, version)
        manifest = repo.manifest(world_id, row.version)
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    made_by = manifest.get("made_by") or {}
    return VersionOut(**row.to_dict(), objects={k: v["key"] for k, v in manifest["objects"].items()},
                      stats=manifest["state"].get("stats", {}), size_m=list(manifest["state"].get("size_m", [])),
                      edit=made_by if made_by.get("kind") == "edit" else None)


@router.post("", status_code=201, response_model=RunOut, responses=error_responses(404, 409, 422, 502, 503))
async def post_world(body: WorldCreate, services: ServicesDep, user: CurrentUser) -> RunOut:
    """Start a world build (the `build-world/world-build` deployment); follow it under /runs/{id}."""
    if body.world_id:
        owner = await run_in_threadpool(versions_of(services).owner, body.world_id)
        if owner is not None and owner != user.user_id:
            raise HTTPException(409, f"world id {body.world_id!r} is taken: choose another")
    if body.room_capture_id:  # the flow checks again; refusing here spares a run that would fail
        try:
            await run_in_threadpool(room_owner, services.catalog, body.room_capture_id, user.user_id)
        except CaptureError as err:
            raise HTTPException(422, f"`room_capture_id`: {err}") from None
    parameters = {k: v for k, v in body.model_dump().items() if v is not None}
    parameters["owner"] = user.user_id
    row, flow_run = await start_run(services, user, BUILD_DEPLOYMENT, parameters, tags=("world",),
                                    not_deployed=f"world builds need the deployment {BUILD_DEPLOYMENT!r}, "
                                                 "which is not served here (`gaiverse up` serves it)")
    return _run_out(services, row, flow_run)


@router.get("", response_model=list[WorldOut])
def get_worlds(services: ServicesDep, user: CurrentUser) -> list[WorldOut]:
    """Your worlds, most recently changed first (admins see every world)."""
    rows = versions_of(services).worlds(None if user.is_admin else user.user_id)
    return [WorldOut(**{k: r[k] for k in WorldOut.model_fields}) for r in rows]


@router.delete("/{world_id}", responses=error_responses(409))
def delete_world(world_id: WorldIdPath, services: ServicesDep, user: CurrentUser) -> dict[str, Any]:
    """Delete one of your worlds: every version, and the objects (renderings of your room too) no other world
    shares. 409 while a build of it is running."""
    repo = _visible(services, user, world_id)
    try:
        return repo.delete(world_id)
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    except WorldBusy as err:
        raise HTTPException(409, str(err)) from err


@router.get("/{world_id}/versions", response_model=list[VersionOut])
def get_versions(world_id: WorldIdPath, services: ServicesDep, user: CurrentUser) -> list[VersionOut]:
    """Every version of one of your worlds, oldest first."""
    repo = _visible(services, user, world_id)
    return [VersionOut(**v.to_dict()) for v in repo.versions(world_id)]


@router.get("/{world_id}/versions/{version}", response_model=VersionOut)
def get_version(world_id: WorldIdPath, version: Annotated[int, Path(ge=1)], services: ServicesDep,
                user: CurrentUser) -> VersionOut:
    """One version with its object keys (read them under /assets/{key}/content)."""
    return _version_out(_visible(services, user, world_id), world_id, version)


@router.get("/{world_id}/versions/{version}/glb", response_class=Response,
            responses={200: {"content": {"model/gltf-binary": {}}}})
def get_glb(world_id: WorldIdPath, version: Annotated[int, Path(ge=1)], services: ServicesDep,
            user: CurrentUser) -> Response:
    """The version's .glb; versions made by edits are assembled on first request and the result kept."""
    repo = _visible(services, user, world_id)
    try:
        row = repo.version(world_id, version)
        manifest = repo.manifest(world_id, version)
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    key = (manifest["objects"].get("glb") or {}).get("key") or _derived_glb(services, row.manifest_key)
    if key is None:
        with _RENDER_LOCK:  # one assembly at a time: it is CPU-heavy
            key = _derived_glb(services, row.manifest_key) or _render_glb(services, repo, world_id, version, row)
    return Response(services.store.get_bytes(key), media_type="model/gltf-binary",
                    headers={"Cache-Control": "private, max-age=86400, immutable"})


def _derived_glb(services: Services, manifest_key: str) -> str | None:
    rows = services.catalog.query("SELECT output_key FROM lineage WHERE input_key = ? AND checkpoint = 'world-render'",
                                  [manifest_key])
    return rows[0]["output_key"] if rows else None


def _render_glb(services: Services, repo: WorldVersions, world_id: str, version: int, row) -> str:
    """Assemble the version with its window interiors (the rooms its objects ship), checked."""
    from gaiverse.world.version_outputs import render_version

    scene = render_version(repo.load_state(world_id, version), repo.manifest(world_id, version)["objects"])
    ref = services.store.put_bytes(scene.glb_bytes(), kind="world/glb", ext="glb")
    services.catalog.record_asset(ref, owner=row.author, inputs=[row.manifest_key], checkpoint="world-render")
    return ref.key


@router.get("/{world_id}/diff", responses=error_responses(422))
def get_diff(world_id: WorldIdPath, services: ServicesDep, user: CurrentUser,
             from_version: Annotated[int, Query(alias="from", ge=1)],
             to_version: Annotated[int, Query(alias="to", ge=1)]) -> dict[str, Any]:
    """What changed between two versions: height deltas per region, roads, water, buildings."""
    repo = _visible(services, user, world_id)
    try:
        return repo.diff(world_id, from_version, to_version)
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err


@router.get("/{world_id}/diff.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_diff_png(world_id: WorldIdPath, services: ServicesDep, user: CurrentUser,
                 from_version: Annotated[int, Query(alias="from", ge=1)],
                 to_version: Annotated[int, Query(alias="to", ge=1)]) -> Response:
    """The diff as an image: raised red, lowered blue, roads added green / removed magenta, buildings orange."""
    repo = _visible(services, user, world_id)
    try:
        return Response(repo.diff_png(world_id, from_version, to_version), media_type="image/png")
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err


@router.post("/{world_id}/edits", status_code=201, response_model=VersionOut, responses=error_responses(409, 422))
def post_edit(world_id: WorldIdPath, body: EditRequest, services: ServicesDep, user: CurrentUser) -> VersionOut:
    """Apply one edit to a version (default the latest) and publish the result as the next version."""
    repo = _visible(services, user, world_id)
    try:
        models = _layout_models(services) if body.edit.op == "regenerate" else None
        made, _, _ = publish_edit(repo, world_id, body, models)  # with its interiors and (rerouted) dynamics
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    except (EditError, OutputsError) as err:
        raise HTTPException(422, str(err)) from err
    except (VersionConflict, WorldIdTaken) as err:
        raise HTTPException(409, str(err)) from err
    refresh_world_knowledge(services, world_id, made.version)  # NPCs learn the new version (background)
    return _version_out(repo, world_id, made.version)


@router.post("/{world_id}/rollback", status_code=201, response_model=VersionOut, responses=error_responses(409))
def post_rollback(world_id: WorldIdPath, body: RollbackIn, services: ServicesDep, user: CurrentUser) -> VersionOut:
    """A new version with the content of `to_version` (history is kept)."""
    repo = _visible(services, user, world_id)
    try:
        made = repo.rollback(world_id, body.to_version, author=repo.owner(world_id), message=body.message)
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    except (VersionConflict, WorldIdTaken) as err:
        raise HTTPException(409, str(err)) from err
    refresh_world_knowledge(services, world_id, made.version)  # NPCs learn the new version (background)
    return _version_out(repo, world_id, made.version)


@router.get("/{world_id}/backup", response_class=Response, responses={200: {"content": {"application/gzip": {}}}})
def get_backup(world_id: WorldIdPath, services: ServicesDep, user: CurrentUser,
               version: VersionQuery | None = None) -> Response:
    """A self-contained backup archive (tar.gz: manifest, every object, catalog rows, SHA256SUMS)."""
    repo = _visible(services, user, world_id)
    try:
        archive = repo.export_backup(world_id, version)
        number = repo.version(world_id, version).version
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    return Response(archive, media_type="application/gzip",
                    headers={"Content-Disposition": f'attachment; filename="{world_id}-v{number}.tar.gz"'})


@router.get("/{world_id}/versions/{version}/schedule", responses=error_responses(404))
def get_schedule(world_id: WorldIdPath, version: Annotated[int, Path(ge=1)], services: ServicesDep,
                 user: CurrentUser) -> dict[str, Any]:
    """The weather / time-of-day schedule stored with a version's dynamics."""
    repo = _visible(services, user, world_id)
    try:
        schedule = version_schedule(services.store.get_bytes, repo.manifest(world_id, version)["objects"])
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    if schedule is None:
        raise HTTPException(404, f"version {version} of {world_id!r} has no dynamics, so no schedule")
    return schedule


@router.put("/{world_id}/schedule", status_code=201, response_model=VersionOut, responses=error_responses(409, 422))
def put_schedule(world_id: WorldIdPath, body: ScheduleIn, services: ServicesDep, user: CurrentUser) -> VersionOut:
    """Schedule the world's weather, time of day and traffic: a new version whose dynamics follow `schedule`
    (trajectories and everything else are the base version's objects)."""
    repo = _visible(services, user, world_id)
    try:
        made = publish_schedule(repo, world_id, body.schedule, body.base_version, body.message)
    except WorldNotFound as err:
        raise HTTPException(404, str(err)) from err
    except (OutputsError, ValueError) as err:
        raise HTTPException(422, str(err)) from err
    except (VersionConflict, WorldIdTaken) as err:
        raise HTTPException(409, str(err)) from err
    return _version_out(repo, world_id, made.version)
