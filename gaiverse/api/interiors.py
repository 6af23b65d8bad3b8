"""``/interiors/captures``: photos or a video of the user's room become a NeRF room (ENV-c1 capture path).

POST checks the capture before anything is stored — declared size (Content-Length, 413 before the
body is read), type by extension and content (415), count (422), decodable (422) — then stores the
files, records the capture as version 1 of ``room-capture/<id>`` and starts the ``room-capture``
deployment; if the run cannot be started the capture is removed again. GET returns the capture's
checks and the run's progress per step (from the task runs the catalog records). Captures are visible
to their owner only.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.runs import start_run
from gaiverse.interiors.capture import (
    CAPTURE_COLLECTION, ROOM_STEPS, UploadLimits, UploadRejected, check_upload, store_capture,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/interiors", tags=["interiors"], responses={**AUTH_ERRORS, **error_responses(404)})

DEPLOYMENT = "room-capture/room-capture"
CaptureId = Annotated[str, PathParam(pattern=r"^room-[0-9a-f]{12}$", description="id from POST /interiors/captures")]
STATUS = {"type": 415, "size": 413}
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
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
             responses=error_responses(411, 413, 415, 422, 502, 503))
async def post_capture(request: Request, services: ServicesDep, user: CurrentUser) -> RoomCaptureStarted:
    """Check a room capture, store it and start the room-capture flow (frames, COLMAP, NeRF, views).

    Multipart: one `video`, or 3-60 `images`. Follow `capture_url` for the progress per step.
    """
    limits = UploadLimits(max_bytes=services.settings.max_upload_bytes)
    files = await _files(request, limits)
    try:
        checks = await run_in_threadpool(check_upload, files, limits)
    except UploadRejected as err:
        raise HTTPException(STATUS.get(err.check, 422), f"{err.check}: {err}") from None
    capture_id = await run_in_threadpool(store_capture, services.store, services.catalog, user.user_id, files, checks)
    try:
        _, flow_run = await start_run(services, user, DEPLOYMENT, {"capture_id": capture_id}, tags=("interiors",),
                                      not_deployed=f"room capture needs the deployment {DEPLOYMENT!r}, which is not "
                                                   "served here (`gaiverse up` serves it)")
    except BaseException:
        await run_in_threadpool(_remove, services, capture_id)
        raise
    log.info("user %s: room capture %s (%s) -> run %s", user.name, capture_id, checks["mode"], flow_run.id)
    return RoomCaptureStarted(capture_id=capture_id, run_id=str(flow_run.id), run_url=f"/runs/{flow_run.id}",
                              capture_url=f"/interiors/captures/{capture_id}", checks=checks)


def _remove(services: Services, capture_id: str) -> None:
    """Undo store_capture (the run could not be started): version row, asset rows, objects."""
    collection = f"{CAPTURE_COLLECTION}/{capture_id}"
    versions = services.catalog.versions(collection)
    keys = [m["key"] for v in versions for m in json.loads(services.store.get_bytes(v.manifest_key))["media"]]
    keys += [v.manifest_key for v in versions]
    marks = ",".join("?" * len(keys))
    statements = [("DELETE FROM versions WHERE collection = ?", [collection]),
                  (f"DELETE FROM lineage WHERE output_key IN ({marks}) OR input_key IN ({marks})", keys + keys),
                  (f"DELETE FROM asset_owners WHERE key IN ({marks})", keys),
                  (f"DELETE FROM assets WHERE key IN ({marks})", keys)]
    with services.catalog.write() as con:
        for sql, args in statements:
            con.execute(sql, args)
    for key in keys:
        services.store.delete(key)


@router.get("/captures/{capture_id}")
def get_capture(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> dict[str, Any]:
    """Your capture's checks, the run's state and each step's state, and the room once published."""
    versions = services.catalog.versions(f"{CAPTURE_COLLECTION}/{capture_id}")
    if not versions or versions[0].author != user.user_id:
        raise HTTPException(404, f"no room capture {capture_id!r} among your captures")
    manifest = json.loads(services.store.get_bytes(versions[0].manifest_key))
    runs = services.catalog.query(
        "SELECT flow_run_id, state FROM runs WHERE owner = ? AND deployment = ? AND "
        "json_extract_string(parameters, '$.capture_id') = ? ORDER BY started_at DESC NULLS FIRST LIMIT 1",
        [user.user_id, DEPLOYMENT, capture_id])
    run = runs[0] if runs else {"flow_run_id": None, "state": "UNKNOWN"}
    states = {r["task_name"]: r["state"] for r in services.catalog.query(
        "SELECT task_name, state FROM task_runs WHERE flow_run_id = ?", [run["flow_run_id"]])} if runs else {}
    steps = [{"task": task, "step": label, "state": states.get(task, "PENDING")} for task, label in ROOM_STEPS]
    room = services.catalog.versions(f"room/{capture_id}")
    return {"capture_id": capture_id, "mode": manifest["mode"], "checks": manifest["checks"],
            "run_id": run["flow_run_id"], "state": run["state"], "done": run["state"] in FINAL, "steps": steps,
            "steps_done": sum(1 for s in steps if s["state"] == "COMPLETED"),
            "room": json.loads(services.store.get_bytes(room[-1].manifest_key)) if room else None}
