"""``/interiors/captures``: photos or a video of the user's room become a NeRF room (ENV-c1 capture path).

POST checks the capture before anything is stored — consent to the ``media`` purpose (403), declared
size (Content-Length, 413 before the body is read), type by extension and content (415), count (422),
decodable (422) — then seals the files with the user's own key (the personalization vault of
docs/PRIVACY.md, as avatar captures are: the photos show the inside of a home), records the capture as
version 1 of ``room-capture/<id>`` and starts the ``room-capture`` deployment; if the run cannot be
started the capture is removed again. GET returns the capture's checks, the run's progress per step
(Prefect's task runs, the catalog's records when Prefect is unreachable), the NeRF training's step and
PSNR while it trains (the run's progress artifact) and, once published, the room: its numbers and URLs
of its files, opened with the owner's key (``/files/<name>``, ``/atlas.zip`` — an interior atlas
directory windows of worlds can use). DELETE removes the capture, the room and their objects and rows.
Captures are visible to their owner only.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi import Path as PathParam
from prefect.client.schemas.filters import (
    ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType, FlowRunFilter, FlowRunFilterId,
)
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.keys import User
from gaiverse.api.prefect_gateway import NotFound
from gaiverse.api.runs import gateway, start_run
from gaiverse.interiors.capture import (
    CAPTURE_COLLECTION, DERIVED_CONTEXT, ROOM_COLLECTION, ROOM_STEPS, CaptureError, OwnerKey, UploadLimits,
    UploadRejected, check_upload, delete_capture, room_files, store_capture,
)
from gaiverse.privacy import ConsentRequired

log = logging.getLogger(__name__)

router = APIRouter(prefix="/interiors", tags=["interiors"], responses={**AUTH_ERRORS, **error_responses(404)})

DEPLOYMENT = "room-capture/room-capture"
CaptureId = Annotated[str, PathParam(pattern=r"^room-[0-9a-f]{12}$", description="id from POST /interiors/captures")]
FileName = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.-]{1,80}$", description="a name of the room's `files`")]
STATUS = {"type": 415, "size": 413}
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
PROGRESS_RE = re.compile(r"step (\d+)/(\d+) · PSNR ([\d.]+) dB · (\d+) views")
"""The train task's progress text (tasks/interiors_world.py `_training_text`)."""
MEDIA_TYPES = {".png": "image/png", ".json": "application/json"}
CAPTURE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {
        "video": {"type": "string", "format": "binary", "description": "a video walking through the room (mp4, mov, webm)"},
        "images": {"type": "array", "items": {"type": "string", "format": "binary"},
                   "description": "instead of a video: 3-60 overlapping photos of the room (jpg, png, webp)"},
    }}}}}}


class RoomCaptureStarted(BaseModel):
    capture_id: str
    run_id: str
    run_url: str
    capture_url: str
    checks: dict[str, Any]


def _owner_key(services: Services, user: User) -> OwnerKey:
    """The user's sealing key (personalization vault); 503 when personalization is not running here."""
    service = services.extras.get("personalization")
    if service is None or isinstance(service, str):
        raise HTTPException(503, service or "personalization (whose key vault seals room captures) is unavailable")
    return OwnerKey(service.vault, service.subject(user.user_id))


def _require_consent(services: Services, user: User) -> None:
    service = services.extras["personalization"]
    try:
        service.consents.require(service.subject(user.user_id), "media")
    except ConsentRequired as err:
        raise HTTPException(403, str(err)) from None


async def _files(request: Request, limits: UploadLimits) -> list[tuple[str, bytes]]:
    """The `video` / `images` files of the multipart body; the size is refused before reading it."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send multipart/form-data with one `video` file or 3+ `images` files, got "
                                 f"content-type {request.headers.get('content-type', '')[:100]!r}")
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise HTTPException(411, "send the capture with a Content-Length header")
    if int(declared) > limits.max_bytes + 64 * 1024:
        raise HTTPException(413, f"the capture of {declared} bytes exceeds the limit of {limits.max_bytes} bytes")
    form = await request.form(max_files=limits.max_images + 1, max_fields=4)
    unknown = [k for k in form.keys() if k not in ("video", "images")]
    if unknown:
        raise HTTPException(422, f"unknown field `{unknown[0][:40]}`: send `video` or `images` files")
    files = []
    for field in ("video", "images"):
        for item in form.getlist(field):
            if not isinstance(item, UploadFile):
                raise HTTPException(422, f"field `{field}` must be a file, got text")
            files.append((item.filename or field, await item.read()))
    await form.close()
    return files


@router.post("/captures", status_code=202, response_model=RoomCaptureStarted, openapi_extra=CAPTURE_BODY,
             responses=error_responses(403, 411, 413, 415, 422, 502, 503))
async def post_capture(request: Request, services: ServicesDep, user: CurrentUser) -> RoomCaptureStarted:
    """Check a room capture, store it sealed with your key and start the room-capture flow (frames, COLMAP,
    NeRF, views).

    Multipart: one `video`, or 3-60 `images`. Needs your consent to the `media` purpose
    (PUT /personalization/consent/media). Follow `capture_url` for the progress per step.
    """
    key = _owner_key(services, user)
    await run_in_threadpool(_require_consent, services, user)
    limits = UploadLimits(max_bytes=services.settings.max_upload_bytes)
    files = await _files(request, limits)
    try:
        checks = await run_in_threadpool(check_upload, files, limits)
    except UploadRejected as err:
        raise HTTPException(STATUS.get(err.check, 422), f"{err.check}: {err}") from None
    not_deployed = (f"room capture needs the deployment {DEPLOYMENT!r}, which is not served here "
                    "(`gaiverse up` serves it)")
    try:  # an unserved deployment answers 404 before anything is stored
        await gateway(services).resolve(DEPLOYMENT)
    except NotFound:
        raise HTTPException(404, not_deployed) from None
    capture_id = await run_in_threadpool(store_capture, services.store, services.catalog, user.user_id, files, checks,
                                         key)
    try:
        _, flow_run = await start_run(services, user, DEPLOYMENT, {"capture_id": capture_id}, tags=("interiors",),
                                      not_deployed=not_deployed)
    except BaseException:
        await run_in_threadpool(delete_capture, services.store, services.catalog, capture_id)
        raise
    log.info("user %s: room capture %s (%s) -> run %s", user.name, capture_id, checks["mode"], flow_run.id)
    return RoomCaptureStarted(capture_id=capture_id, run_id=str(flow_run.id), run_url=f"/runs/{flow_run.id}",
                              capture_url=f"/interiors/captures/{capture_id}", checks=checks)


@router.get("/captures")
def list_captures(services: ServicesDep, user: CurrentUser) -> list[dict[str, Any]]:
    """Your room captures, newest first (id, when, message)."""
    rows = services.catalog.query(
        "SELECT collection, message, created_at FROM versions WHERE starts_with(collection, ?) AND author = ? "
        "ORDER BY created_at DESC", [CAPTURE_COLLECTION + "/", user.user_id])
    return [{"capture_id": r["collection"].split("/", 1)[1], "message": r["message"], "created_at": r["created_at"]}
            for r in rows]


def _manifest(services: Services, user: User, capture_id: str) -> dict[str, Any]:
    versions = services.catalog.versions(f"{CAPTURE_COLLECTION}/{capture_id}")
    if not versions or versions[0].author != user.user_id:
        raise HTTPException(404, f"no room capture {capture_id!r} among your captures")
    return json.loads(services.store.get_bytes(versions[0].manifest_key))


def _run_row(services: Services, user: User, capture_id: str) -> dict[str, Any] | None:
    rows = services.catalog.query(
        "SELECT flow_run_id, state FROM runs WHERE owner = ? AND deployment = ? AND "
        "json_extract_string(parameters, '$.capture_id') = ? ORDER BY started_at DESC NULLS FIRST LIMIT 1",
        [user.user_id, DEPLOYMENT, capture_id])
    return rows[0] if rows else None


def _training(artifacts) -> dict[str, Any] | None:
    """The NeRF step and PSNR from the run's progress artifact (None before training reports)."""
    for artifact in artifacts:
        found = PROGRESS_RE.search(artifact.description or "")
        if found:
            step, steps, value, views = found.groups()
            return {"step": int(step), "steps": int(steps), "psnr": float(value), "views": int(views),
                    "percent": round(float(artifact.data or 0.0), 1), "text": artifact.description}
    return None


async def _progress(services: Services, run: dict[str, Any] | None) -> dict[str, Any]:
    """The run's state, each step's state and the training readout (Prefect; the catalog when unreachable)."""
    states: dict[str, str] = {}
    out: dict[str, Any] = {"run_id": run["flow_run_id"] if run else None, "state": "UNKNOWN", "message": None,
                           "training": None}
    if run is not None:
        run_id = UUID(run["flow_run_id"])
        try:
            async with gateway(services).client() as client:
                flow_run = await client.read_flow_run(run_id)
                task_runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
                artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), type=ArtifactFilterType(any_=["progress"])))
            out["state"] = flow_run.state.type.value if flow_run.state else "SCHEDULED"
            if flow_run.state and out["state"] in FINAL[1:]:  # the reason, without Prefect's preamble
                out["message"] = (flow_run.state.message or "").removeprefix("Flow run encountered an exception: ")
            for task_run in sorted(task_runs, key=lambda t: t.expected_start_time or t.created):
                task = next((t for t, _ in ROOM_STEPS if task_run.name == t or task_run.name.startswith(t + "-")),
                            None)
                if task:  # a retried step ends in the state of its last run
                    states[task] = task_run.state.type.value if task_run.state else "PENDING"
            out["training"] = _training(artifacts)
        except Exception as err:  # noqa: BLE001 - fall back to what the catalog recorded
            log.warning("progress of run %s from the catalog: %s", run_id, err)
            out["state"] = run["state"] or "UNKNOWN"
            rows = await run_in_threadpool(services.catalog.query, "SELECT task_name, state FROM task_runs "
                                           "WHERE flow_run_id = ?", [str(run_id)])
            states = {r["task_name"]: r["state"] for r in rows}
    out["steps"] = [{"task": task, "step": label, "state": states.get(task, "PENDING")} for task, label in ROOM_STEPS]
    out["steps_done"] = sum(1 for s in out["steps"] if s["state"] == "COMPLETED")
    out["done"] = out["state"] in FINAL
    return out


def _room(services: Services, capture_id: str) -> dict[str, Any] | None:
    """The published room's report and the URLs of its files (None before it is published)."""
    versions = services.catalog.versions(f"{ROOM_COLLECTION}/{capture_id}")
    if not versions:
        return None
    manifest = json.loads(services.store.get_bytes(versions[-1].manifest_key))
    base = f"/interiors/captures/{capture_id}"
    views = []
    for view in manifest.get("views") or []:  # atlas room "<dir>_room_07" -> its files room_07_colour/depth.png
        room_id = view["atlas"].rsplit("_", 1)[1]
        views.append({**view, "colour_url": f"{base}/files/room_{room_id}_colour.png",
                      "depth_url": f"{base}/files/room_{room_id}_depth.png"})
    return {"version": versions[-1].version, "frames": manifest.get("frames"), "poses": manifest.get("poses"),
            "nerf": manifest.get("nerf"), "views": views,
            "files": {name: f"{base}/files/{name}" for name in manifest["objects"] if name != "checkpoint"},
            "atlas_zip": f"{base}/atlas.zip"}


@router.get("/captures/{capture_id}")
async def get_capture(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> dict[str, Any]:
    """Your capture's checks, the run's state, each step's state, the NeRF's step and PSNR while it trains, and
    the room once published."""
    manifest = await run_in_threadpool(_manifest, services, user, capture_id)
    run = await run_in_threadpool(_run_row, services, user, capture_id)
    progress = await _progress(services, run)
    room = await run_in_threadpool(_room, services, capture_id)
    return {"capture_id": capture_id, "mode": manifest["mode"], "checks": manifest["checks"], **progress,
            "room": room}


def _opened(services: Services, user: User, capture_id: str, name: str) -> bytes:
    """One object of the published room, opened with the owner's key."""
    _manifest(services, user, capture_id)
    versions = services.catalog.versions(f"{ROOM_COLLECTION}/{capture_id}")
    objects = json.loads(services.store.get_bytes(versions[-1].manifest_key))["objects"] if versions else {}
    if name not in objects or name == "checkpoint":
        raise HTTPException(404, f"room {capture_id!r} has no file {name!r}" + ("" if versions else " (not built yet)"))
    return _owner_key(services, user).open(services.store.get_bytes(objects[name]), DERIVED_CONTEXT)


@router.get("/captures/{capture_id}/files/{name}", response_class=Response,
            responses={200: {"content": {"image/png": {}, "application/json": {}}}, **error_responses(503)})
def get_file(capture_id: CaptureId, name: FileName, services: ServicesDep, user: CurrentUser) -> Response:
    """A file of your room (a colour or depth map, the atlas sheets, atlas.json), opened with your key."""
    data = _opened(services, user, capture_id, name)
    media_type = MEDIA_TYPES.get(name[name.rfind("."):], "application/octet-stream")
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, no-store"})


@router.get("/captures/{capture_id}/atlas.zip", response_class=Response,
            responses={200: {"content": {"application/zip": {}}}, **error_responses(503)})
def get_atlas_zip(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> Response:
    """Your room as an interior atlas directory (atlas.json + colour/depth PNGs, gaiverse/interiors/atlas.py
    format): unzip it into data/interiors/<name>/ and the windows of the worlds built there show your room."""
    _manifest(services, user, capture_id)
    try:
        files = room_files(services.store, services.catalog, capture_id, _owner_key(services, user))
    except CaptureError as err:
        raise HTTPException(404, str(err)) from None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(f"{capture_id}/{name}", data)
    return Response(buffer.getvalue(), media_type="application/zip", headers={
        "Cache-Control": "private, no-store", "Content-Disposition": f'attachment; filename="{capture_id}-atlas.zip"'})


@router.delete("/captures/{capture_id}", responses=error_responses(409))
async def remove_capture(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> dict[str, Any]:
    """Delete your capture and the room made from it: their objects and catalog rows (refused while its run
    is still working, which would publish the room again)."""
    await run_in_threadpool(_manifest, services, user, capture_id)
    progress = await _progress(services, await run_in_threadpool(_run_row, services, user, capture_id))
    if progress["run_id"] is not None and not progress["done"] and progress["state"] != "UNKNOWN":
        raise HTTPException(409, f"room capture {capture_id!r} is still being processed (run {progress['state']}); "
                                 "delete it when the run has ended")
    removed = await run_in_threadpool(delete_capture, services.store, services.catalog, capture_id)
    log.info("user %s deleted room capture %s", user.name, capture_id)
    return {"capture_id": capture_id, "deleted": True, **removed}
