"""``/avatars/captures``: a capture from the terminal (video with sound, or images + audio) becomes an avatar.

POST checks the capture before anything is stored — type sniffed from the bytes, size (while the
body streams), decodable with PyAV, duration, a face in the sampled frames, speech in the audio —
and answers 4xx naming what was wrong. A good capture is sealed with the user's own key (the
personalization vault of docs/PRIVACY.md; needs the ``media`` consent), stored, recorded as the one
version of ``avatar-capture/<id>`` in one catalog transaction, and the ``avatar-create/avatar``
deployment is started for it; if the run cannot be started the capture is removed again. GET
returns the checks, the run's progress per step and, once published, the analysis and the decided
parameters (the flow stores them sealed with the same key; they are opened here for the owner, and
``/preview`` serves the opened preview image); ``/events`` streams the progress (server-sent events)
while the flow runs. Captures are visible to their owner only: anyone else, admins included, gets
404. ``export_avatars`` adds captures and avatars to the data export; erasure is in
``gaiverse/api/personal_data.py``. Implements AV-a1 and AV-a3
on the server side.

``/avatars/{capture_id}/...`` is the avatar itself (``gaiverse.avatar.versions``, owner only, 404 for
everyone else): ``versions`` lists them, ``customise`` applies a preset and/or slider values as a new
version (the engines run here, see ``gaiverse.avatar.customisation``; 422 names a bad field and its
range), ``rollback`` makes a new version with the content of an older one, and ``download``
(.glb / VRM), ``voice.wav``, ``turntable.png`` / ``.mp4`` serve a version's objects opened with the
owner's key. Implements AV-c3 and the delivery of AV-c1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import threading
import time
from typing import Annotated, Any, AsyncIterator, Literal
from uuid import UUID

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response, StreamingResponse
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, UpstreamError, error_responses
from gaiverse.api.keys import User
from gaiverse.api.prefect_gateway import NotFound
from gaiverse.api.runs import gateway, start_run
from gaiverse.api.uploads import ENVELOPE_BYTES, _drain
from gaiverse.avatar.capture import (
    DERIVED_CONTEXT, FLOW_STEPS, MEDIA_KIND, SEAL_CONTEXT, CaptureLimits, CaptureRejected, MediaFile, check_capture,
    check_text, sniff,
)
from gaiverse.avatar.customisation import (
    CustomisationError, CustomiseRequest, NotCustomisable, customise, parse_request, presets_json,
)
from gaiverse.avatar.versions import MEDIA_TYPES, AvatarNotFound, AvatarVersions
from gaiverse.privacy import BLOB_MAGIC, ConsentRequired
from storage.catalog import utcnow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/avatars", tags=["avatars"], responses={**AUTH_ERRORS, **error_responses(404)})

DEPLOYMENT = "avatar-create/avatar"
CAPTURE_ID = r"^cap-[0-9a-f]{12}$"
CaptureId = Annotated[str, PathParam(pattern=CAPTURE_ID, description="capture id (from POST /avatars/captures)")]
STATUS = {"type": 415, "size": 413}
"""HTTP status of a failed check (the others answer 422)."""
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
FIELDS = {"video": "video", "images": "image", "audio": "audio"}
TEXT_FIELD = "preferences"
EVENTS_MAX_S = 900.0

CAPTURE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {
        "video": {"type": "string", "format": "binary",
                  "description": "a video with sound (webm, mp4, mpeg, ...)"},
        "images": {"type": "array", "items": {"type": "string", "format": "binary"},
                   "description": "instead of a video: 1-8 images (png, jpg, webp) with your face"},
        "audio": {"type": "string", "format": "binary", "description": "with images: your voice (wav, ogg, ...)"},
        TEXT_FIELD: {"type": "string", "description": "how you want your avatar to look and sound"},
    }}}}}}


class CaptureStarted(BaseModel):
    capture_id: str
    run_id: str
    run_url: str
    capture_url: str
    events_url: str
    checks: dict[str, Any]
    """What the server measured: duration, frames with a face, seconds of speech, levels."""
    wishes: list[str]
    """Phrases of the typed preferences the parser understood (what was said is parsed by the flow)."""


class CaptureOut(BaseModel):
    capture_id: str
    created_at: Any
    mode: str
    checks: dict[str, Any]
    media: list[dict[str, Any]]
    progress: dict[str, Any]
    avatar: dict[str, Any] | None = None
    """Once published: version, asset keys, analysis, decided parameters and the baseline's."""


class _Parts:
    """python-multipart callbacks that keep the capture's files and text in memory, counting bytes."""

    def __init__(self, limit: int):
        self.limit, self.size, self.other = limit, 0, 0
        self.files: list[MediaFile] = []
        self.text: str | None = None
        self.ignored: list[str] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self._name: str | None = None
        self._filename = ""
        self._is_file = False
        self._buf = bytearray()

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._hfield, "on_header_value": self._hvalue,
                "on_header_end": self._hend, "on_headers_finished": self._hdone, "on_part_data": self._data,
                "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._field, self._value, self._buf = {}, b"", b"", bytearray()

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _hdone(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._filename = options.get(b"filename", b"").decode("utf-8", "replace")
        self._is_file = b"filename" in options
        if self._name not in FIELDS and self._name != TEXT_FIELD:
            raise _UnknownField(self._name)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file and self._name in FIELDS:
            self.size += end - start
            if self.size > self.limit:
                raise _TooLarge()
        else:
            self.other += end - start
            if self.other > ENVELOPE_BYTES:
                raise _TooLarge()
        self._buf += data[start:end]

    def _end(self) -> None:
        if self._is_file and self._name in FIELDS:
            self.files.append(MediaFile(FIELDS[self._name], bytes(self._buf), self._filename))
        elif self._name == TEXT_FIELD and not self._is_file:
            self.text = self._buf.decode("utf-8", "replace")
        else:
            self.ignored.append(self._name or "?")


class _TooLarge(Exception):
    pass


class _UnknownField(Exception):
    pass


async def _receive(request: Request, limit: int) -> _Parts:
    """The multipart body, refused (413) as soon as the files pass ``limit`` bytes."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise HTTPException(415, "send multipart/form-data with a `video` file, or `images` + an `audio` file, "
                                 f"got content-type {request.headers.get('content-type', '')[:100]!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + ENVELOPE_BYTES:
        await _drain(request.stream())
        raise HTTPException(413, f"the capture of {declared} bytes exceeds the limit of {limit} bytes")
    parts, stream = _Parts(limit), request.stream()
    try:
        parser = MultipartParser(options[b"boundary"], parts.callbacks())
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except _TooLarge:
        await _drain(stream)
        raise HTTPException(413, f"the capture exceeds the limit of {limit} bytes") from None
    except _UnknownField as err:
        await _drain(stream)
        parts.ignored.append(str(err))
    except (MultipartParseError, ValueError) as err:
        raise HTTPException(400, f"malformed multipart body: {type(err).__name__}") from None
    if parts.ignored:
        raise HTTPException(422, f"unknown or misplaced field `{parts.ignored[0][:40]}`: send the files `video`, "
                                 f"or `images` + `audio`, and optionally the text `{TEXT_FIELD}`")
    return parts


def _personal(services: Services):
    service = services.extras.get("personalization")
    if service is None or isinstance(service, str):
        raise HTTPException(503, service or "personalization (whose key vault seals media) is unavailable")
    return service


@router.post("/captures", status_code=202, response_model=CaptureStarted, openapi_extra=CAPTURE_BODY,
             responses=error_responses(400, 403, 413, 415, 422, 502, 503))
async def post_capture(request: Request, services: ServicesDep, user: CurrentUser) -> CaptureStarted:
    """Check a capture, store it sealed with your key and start the avatar flow; follow `events_url`.

    Multipart: `video` (with sound), or `images` (1-8) + `audio`; optional `preferences` text.
    Needs your consent to the `media` purpose (PUT /personalization/consent/media).
    """
    service = _personal(services)
    subject = service.subject(user.user_id)
    try:  # refuse before reading the body
        await run_in_threadpool(service.consents.require, subject, "media")
    except ConsentRequired as err:
        raise HTTPException(403, str(err)) from None
    limits = CaptureLimits(max_bytes=services.settings.max_upload_bytes)
    parts = await _receive(request, limits.max_bytes)
    try:
        text = check_text(parts.text, limits)
        checked = await run_in_threadpool(check_capture, parts.files, limits)
    except CaptureRejected as err:
        raise HTTPException(STATUS.get(err.check, 422), str(err)) from None
    try:  # an unserved deployment answers 404 before anything is stored
        await gateway(services).resolve(DEPLOYMENT)
    except NotFound:
        raise HTTPException(404, _not_deployed()) from None
    capture_id = "cap-" + secrets.token_hex(6)
    stored = await run_in_threadpool(_store_capture, services, service, user, capture_id, parts.files, text,
                                     checked)
    try:
        parameters = {"capture_id": capture_id, "user_id": user.user_id}
        _, flow_run = await start_run(services, user, DEPLOYMENT, parameters, tags=("avatar",),
                                      not_deployed=_not_deployed())
    except BaseException:
        await run_in_threadpool(_remove_capture, services, capture_id, stored)
        raise
    from gaiverse.avatar.preferences import parse_preferences

    log.info("user %s: capture %s (%s, %.1f s) -> run %s", user.name, capture_id, checked.mode,
             checked.duration_s, flow_run.id)
    return CaptureStarted(capture_id=capture_id, run_id=str(flow_run.id), run_url=f"/runs/{flow_run.id}",
                          capture_url=f"/avatars/captures/{capture_id}",
                          events_url=f"/avatars/captures/{capture_id}/events", checks=checked.summary(),
                          wishes=parse_preferences(text).matched if text else [])


def _not_deployed() -> str:
    return (f"avatar creation needs the deployment {DEPLOYMENT!r}, which is not served here "
            "(`gaiverse up` serves it)")


def _store_capture(services: Services, service, user: User, capture_id: str, files: list[MediaFile], text: str,
                   checked) -> list[str]:
    """Seal and put the media (and the typed wishes), then publish the capture's manifest in one transaction.

    Returns the object keys written; on any failure they are deleted again and 503 is raised.
    """
    subject = service.subject(user.user_id)
    store, refs = services.store, []
    try:
        media = []
        for f in files:
            ref = store.put_bytes(service.vault.seal(subject, f.data, SEAL_CONTEXT), kind=MEDIA_KIND, ext="bin")
            refs.append(ref)
            found = sniff(f.data)
            media.append({"role": f.role, "key": ref.key, "bytes": len(f.data), "format": found.name,
                          "content_type": found.content_type})
        text_key = None
        if text:
            refs.append(store.put_bytes(service.vault.seal(subject, text.encode("utf-8"), SEAL_CONTEXT),
                                        kind=MEDIA_KIND, ext="bin"))
            text_key = refs[-1].key
        manifest = {"capture_id": capture_id, "owner": user.user_id, "mode": checked.mode,
                    "created_at": utcnow().isoformat(), "media": media, "preferences_key": text_key,
                    "checks": checked.summary(), "sealed": "per-user AES-256-GCM (docs/PRIVACY.md)"}
        manifest_ref = store.put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode(),
                                       kind="avatar/capture", ext="json")
        refs.append(manifest_ref)
        services.catalog.publish_version(f"avatar-capture/{capture_id}", manifest=manifest_ref, assets=refs[:-1],
                                         message=f"capture ({checked.mode}, {checked.duration_s:.1f} s)",
                                         author=user.user_id)
    except Exception as err:
        for ref in refs:
            store.delete(ref.key)
        log.exception("storing capture %s failed; %d objects removed", capture_id, len(refs))
        raise HTTPException(503, f"capture not stored: {type(err).__name__}") from err
    return [ref.key for ref in refs]


def _remove_capture(services: Services, capture_id: str, keys: list[str]) -> None:
    """Undo ``_store_capture`` (the run could not be started): version row, asset rows, objects."""
    with services.catalog.write() as con:
        con.execute("DELETE FROM versions WHERE collection = ?", [f"avatar-capture/{capture_id}"])
        for key in keys:
            con.execute("DELETE FROM lineage WHERE output_key = ? OR input_key = ?", [key, key])
            con.execute("DELETE FROM asset_owners WHERE key = ?", [key])
            con.execute("DELETE FROM assets WHERE key = ?", [key])
    for key in keys:
        services.store.delete(key)
    log.info("capture %s removed: its run could not be started", capture_id)


@router.get("/captures", response_model=list[dict[str, Any]])
def list_captures(services: ServicesDep, user: CurrentUser) -> list[dict[str, Any]]:
    """Your captures, newest first (id, when, message)."""
    rows = services.catalog.query(
        "SELECT collection, message, created_at FROM versions WHERE starts_with(collection, 'avatar-capture/') "
        "AND author = ? ORDER BY created_at DESC", [user.user_id])
    return [{"capture_id": r["collection"].split("/", 1)[1], "message": r["message"],
             "created_at": r["created_at"]} for r in rows]


def _manifest(services: Services, user: User, capture_id: str) -> tuple[dict[str, Any], Any]:
    versions = services.catalog.versions(f"avatar-capture/{capture_id}")
    if not versions or versions[0].author != user.user_id:
        raise HTTPException(404, f"no capture {capture_id!r} among your captures")
    return json.loads(services.store.get_bytes(versions[0].manifest_key)), versions[0].created_at


def _run_id(services: Services, user: User, capture_id: str) -> str | None:
    rows = services.catalog.query(
        "SELECT flow_run_id FROM runs WHERE owner = ? AND deployment = ? "
        "AND json_extract_string(parameters, '$.capture_id') = ? ORDER BY started_at DESC NULLS FIRST LIMIT 1",
        [user.user_id, DEPLOYMENT, capture_id])
    return rows[0]["flow_run_id"] if rows else None


async def _progress(services: Services, user: User, capture_id: str) -> dict[str, Any]:
    """The run's state and each step's state (from Prefect; the catalog's records when it is unreachable)."""
    run_id = await run_in_threadpool(_run_id, services, user, capture_id)
    steps = {task: "PENDING" for task, _ in FLOW_STEPS}
    out: dict[str, Any] = {"run_id": run_id, "state": "UNKNOWN", "message": None}
    if run_id is not None:
        try:
            async with gateway(services).client() as client:
                flow_run = await client.read_flow_run(UUID(run_id))
                task_runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])))
            out["state"] = flow_run.state.type.value if flow_run.state else "SCHEDULED"
            out["message"] = flow_run.state.message if flow_run.state and out["state"] in FINAL[1:] else None
            for task_run in sorted(task_runs, key=lambda t: t.expected_start_time or t.created):
                for task, _ in FLOW_STEPS:
                    if task_run.name == task or task_run.name.startswith(task + "-"):
                        steps[task] = task_run.state.type.value if task_run.state else "PENDING"
        except (UpstreamError, Exception) as err:  # noqa: BLE001 - fall back to what the catalog recorded
            log.warning("progress of %s from the catalog: %s", run_id, err)
            row = await run_in_threadpool(services.catalog.run, run_id)
            out["state"] = (row or {}).get("state") or "UNKNOWN"
            rows = await run_in_threadpool(services.catalog.query,
                                           "SELECT task_name, state FROM task_runs WHERE flow_run_id = ?", [run_id])
            for r in rows:
                steps[r["task_name"]] = r["state"]
    out["steps"] = [{"task": task, "step": label, "state": steps[task]} for task, label in FLOW_STEPS]
    out["done"] = out["state"] in FINAL
    out["steps_done"] = sum(1 for s in out["steps"] if s["state"] == "COMPLETED")
    return out


def _open_derived(services: Services, user: User, key: str) -> bytes:
    """An object the flow derived from the user's capture, opened with their key (one stored before
    derived data were sealed is returned as it is)."""
    blob = services.store.get_bytes(key)
    if blob[:4] != BLOB_MAGIC:
        return blob
    service = _personal(services)
    return service.vault.open(service.subject(user.user_id), blob, DERIVED_CONTEXT)


def _repo(services: Services, user: User) -> AvatarVersions:
    """The user's avatars, opened with their key."""
    service = _personal(services)
    return AvatarVersions(services.store, services.catalog, service.vault, service.subject(user.user_id),
                          user.user_id)


def _avatar(services: Services, user: User, capture_id: str) -> dict[str, Any] | None:
    """The latest version of the avatar made from a capture (None before it is published)."""
    if not services.catalog.versions(f"avatar/{capture_id}"):
        return None
    repo = _repo(services, user)
    version = repo.version(capture_id)
    manifest = repo.manifest(version)
    result = repo.result(manifest)
    base = f"/avatars/{capture_id}"
    downloads = {name: url for name, url in (
        ("glb", f"{base}/download?format=glb&version={version.version}"),
        ("vrm", f"{base}/download?format=vrm&version={version.version}"),
        ("voice", f"{base}/voice.wav?version={version.version}"),
        ("turntable_png", f"{base}/turntable.png?version={version.version}"),
        ("turntable_mp4", f"{base}/turntable.mp4?version={version.version}"))
        if name in manifest["assets"] or (name == "turntable_mp4" and "glb" in manifest["assets"])}
    return {"version": version.version, "assets": {n: r["key"] for n, r in manifest["assets"].items()},
            "analysis": result["analysis"], "params": result["params"], "baseline": result.get("baseline"),
            "decider": result.get("decider"), "customisation": result.get("customisation"),
            "engines": result.get("engines"), "preview_url": f"/avatars/captures/{capture_id}/preview",
            "downloads": downloads, "versions_url": f"{base}/versions"}


def export_avatars(services: Services, user: User) -> list[dict[str, Any]]:
    """The user's captures (media and typed wishes opened, base64) with every version of the avatars made from
    them (analysis opened, preview, .glb, VRM, voice, turntables and creation source base64), for the data
    export (PER-f1)."""
    rows = services.catalog.query(
        "SELECT collection, manifest_key, message, created_at FROM versions "
        "WHERE starts_with(collection, 'avatar-capture/') AND author = ? ORDER BY created_at", [user.user_id])
    if not rows:
        return []
    service, store = _personal(services), services.store
    subject = service.subject(user.user_id)

    def opened(key: str, context: bytes) -> bytes:
        return service.vault.open(subject, store.get_bytes(key), context)

    out = []
    for row in rows:
        capture_id = row["collection"].split("/", 1)[1]
        manifest = json.loads(store.get_bytes(row["manifest_key"]))
        media = [{**{k: m.get(k) for k in ("role", "format", "content_type", "bytes", "key")},
                  "data_base64": base64.b64encode(opened(m["key"], SEAL_CONTEXT)).decode()}
                 for m in manifest["media"]]
        wishes = manifest.get("preferences_key")
        avatars = []
        for version in services.catalog.versions(f"avatar/{capture_id}"):
            assets = {n: r["key"] for n, r in json.loads(store.get_bytes(version.manifest_key))["assets"].items()}
            avatars.append({"version": version.version, "parent_version": version.parent_version,
                            "created_at": version.created_at, "message": version.message,
                            "result": json.loads(_open_derived(services, user, assets["avatar"])),
                            "preview_png_base64": base64.b64encode(
                                _open_derived(services, user, assets["preview"])).decode(),
                            "objects_base64": {  # model, voice, turntables and the creation source
                                name: base64.b64encode(_open_derived(services, user, key)).decode()
                                for name, key in assets.items() if name not in ("avatar", "preview")}})
        out.append({"capture_id": capture_id, "created_at": row["created_at"], "message": row["message"],
                    "mode": manifest["mode"], "checks": manifest["checks"], "media": media,
                    "preferences_text": opened(wishes, SEAL_CONTEXT).decode("utf-8") if wishes else None,
                    "avatars": avatars})
    return out


@router.get("/captures/{capture_id}", response_model=CaptureOut)
async def get_capture(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> CaptureOut:
    """One of your captures: the checks, the run's progress and, once published, the analysis and parameters."""
    manifest, created = await run_in_threadpool(_manifest, services, user, capture_id)
    progress = await _progress(services, user, capture_id)
    avatar = await run_in_threadpool(_avatar, services, user, capture_id)
    return CaptureOut(capture_id=capture_id, created_at=created, mode=manifest["mode"], checks=manifest["checks"],
                      media=[{k: m[k] for k in ("role", "bytes", "format")} for m in manifest["media"]],
                      progress=progress, avatar=avatar)


@router.get("/captures/{capture_id}/preview", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **error_responses(503)})
async def get_preview(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> Response:
    """The preview of your avatar (best frame of your capture with the face box), opened with your key."""
    await run_in_threadpool(_manifest, services, user, capture_id)
    png, _ = await run_in_threadpool(_download, services, user, capture_id, "preview", None)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.get("/captures/{capture_id}/progress")
async def get_progress(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> dict[str, Any]:
    """The avatar run's state and the state of each step (decode, analyse, decide, store, report)."""
    await run_in_threadpool(_manifest, services, user, capture_id)
    return await _progress(services, user, capture_id)


@router.get("/captures/{capture_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_progress(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> StreamingResponse:
    """Server-sent events: `progress` whenever a step changes, then `done` with the avatar (or the failure)."""
    await run_in_threadpool(_manifest, services, user, capture_id)

    async def events() -> AsyncIterator[str]:
        last, waited = None, 0.0
        while waited < EVENTS_MAX_S:
            progress = await _progress(services, user, capture_id)
            if progress != last:
                yield f"event: progress\ndata: {json.dumps(progress)}\n\n"
                last = progress
            else:
                yield ": waiting\n\n"
            if progress["done"]:
                avatar = await run_in_threadpool(_avatar, services, user, capture_id)
                done = json.dumps({"progress": progress, "avatar": avatar}, default=str)
                yield f"event: done\ndata: {done}\n\n"
                return
            await asyncio.sleep(1.0)
            waited += 1.0
        yield "event: timeout\ndata: {}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


# ---- the avatar: versions, customisation (AV-c3), rollback, downloads -----------------------------------------

_CREATE_LOCK = threading.Lock()
"""One customisation at a time per API process: the engines use both cores for a few seconds."""
VersionQuery = Annotated[int | None, Query(ge=1, description="a version number (default: the latest)")]
DOWNLOADS = {"glb": ("glb", "glb"), "vrm": ("vrm", "vrm"), "voice": ("voice", "wav"),
             "turntable_png": ("turntable", "png"), "turntable_mp4": ("turntable", "mp4"), "preview": ("preview", "png")}
"""Object name -> (file name stem, extension) of a download."""


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its ``$defs`` references replaced by the definitions (for ``openapi_extra``)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)


class AvatarVersionOut(BaseModel):
    version: int
    parent: int | None
    author: str
    message: str
    created: Any
    params: dict[str, Any]
    """Style, hair, height, build, voice settings and colours of this version."""
    customisation: dict[str, Any] | None = None
    """The preset and slider values that made it (None for the captured version and rollbacks of it)."""
    downloads: list[str] = []


class CustomisedOut(BaseModel):
    version: AvatarVersionOut
    timings_ms: dict[str, float]
    """Wall time of each engine for this customisation."""
    avatar: dict[str, Any]
    """The new latest version as ``GET /avatars/captures/{id}`` shows it (params, download links)."""


class AvatarRollbackIn(BaseModel):
    to_version: int = Field(ge=1)
    message: str | None = Field(default=None, max_length=300)


def _listing(services: Services, user: User, capture_id: str) -> list[AvatarVersionOut]:
    try:
        return [AvatarVersionOut(**row) for row in _repo(services, user).listing(capture_id)]
    except AvatarNotFound as err:
        raise HTTPException(404, str(err)) from None


def _download(services: Services, user: User, capture_id: str, name: str, version: int | None) -> tuple[bytes, int]:
    """(opened bytes, version number) of one object of a version; 404 when it or the version is missing."""
    repo = _repo(services, user)
    try:
        row = repo.version(capture_id, version)
        return repo.open(repo.manifest(row), name), row.version
    except AvatarNotFound as err:
        raise HTTPException(404, str(err)) from None


def _file_response(services: Services, user: User, capture_id: str, name: str, version: int | None) -> Response:
    data, number = _download(services, user, capture_id, name, version)
    stem, ext = DOWNLOADS[name]
    return Response(data, media_type=MEDIA_TYPES[name], headers={
        "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="avatar-{capture_id}-v{number}-{stem}.{ext}"'})


@router.get("/presets")
def get_presets(user: CurrentUser) -> dict[str, Any]:
    """The customisation presets and the sliders with their ranges (what POST /avatars/{id}/customise takes)."""
    return presets_json()


@router.get("/{capture_id}/versions", response_model=list[AvatarVersionOut])
def get_avatar_versions(capture_id: CaptureId, services: ServicesDep, user: CurrentUser) -> list[AvatarVersionOut]:
    """Versions of your avatar, newest first: number, parent, author, message, time, parameters."""
    return _listing(services, user, capture_id)


@router.post("/{capture_id}/customise", status_code=201, response_model=CustomisedOut,
             responses=error_responses(409, 503),
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": _inlined(CustomiseRequest.model_json_schema())}}}})
def post_customise(capture_id: CaptureId, services: ServicesDep, user: CurrentUser,
                   body: Annotated[Any, Body()] = None) -> CustomisedOut:
    """A new version with a preset and/or slider values applied to `base_version` (default: the latest).

    Runs the creation engines here, synchronously (a few seconds): see ``gaiverse.avatar.customisation``.
    Unknown fields and out-of-range values answer 422 naming the field and its allowed range.
    """
    repo = _repo(services, user)
    try:
        repo.versions(capture_id)  # 404 before validation: nobody learns which avatars exist
        request = parse_request(body)
        started = time.perf_counter()
        with _CREATE_LOCK:
            version, made = customise(repo, capture_id, request)
    except AvatarNotFound as err:
        raise HTTPException(404, str(err)) from None
    except CustomisationError as err:
        raise HTTPException(422, str(err)) from None
    except NotCustomisable as err:
        raise HTTPException(409, str(err)) from None
    log.info("user %s: avatar %s customised as v%d in %.1f s", user.name, capture_id, version.version,
             time.perf_counter() - started)
    listed = next(v for v in _listing(services, user, capture_id) if v.version == version.version)
    return CustomisedOut(version=listed, timings_ms=made.timings_ms, avatar=_avatar(services, user, capture_id))


@router.post("/{capture_id}/rollback", status_code=201, response_model=AvatarVersionOut)
def post_avatar_rollback(capture_id: CaptureId, body: AvatarRollbackIn, services: ServicesDep,
                         user: CurrentUser) -> AvatarVersionOut:
    """A new version with the content of `to_version` (history is kept), as for worlds."""
    try:
        version = _repo(services, user).rollback(capture_id, body.to_version, body.message)
    except AvatarNotFound as err:
        raise HTTPException(404, str(err)) from None
    return next(v for v in _listing(services, user, capture_id) if v.version == version.version)


@router.get("/{capture_id}/download", response_class=Response,
            responses={200: {"content": {"model/gltf-binary": {}}}})
def get_download(capture_id: CaptureId, services: ServicesDep, user: CurrentUser,
                 format: Annotated[Literal["glb", "vrm"], Query(description="glb (glTF 2.0) or vrm (VRM 1.0)")] = "glb",
                 version: VersionQuery = None) -> Response:
    """Your avatar as .glb or VRM (opened with your key)."""
    return _file_response(services, user, capture_id, format, version)


@router.get("/{capture_id}/voice.wav", response_class=Response, responses={200: {"content": {"audio/wav": {}}}})
def get_voice(capture_id: CaptureId, services: ServicesDep, user: CurrentUser,
              version: VersionQuery = None) -> Response:
    """Your avatar's voice sample (the sentence its talk clip animates)."""
    return _file_response(services, user, capture_id, "voice", version)


@router.get("/{capture_id}/turntable.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_turntable_png(capture_id: CaptureId, services: ServicesDep, user: CurrentUser,
                      version: VersionQuery = None) -> Response:
    """The turntable contact sheet rendered by the flow (8 views around the avatar)."""
    return _file_response(services, user, capture_id, "turntable_png", version)


@router.get("/{capture_id}/turntable.mp4", response_class=Response,
            responses={200: {"content": {"video/mp4": {}}}, **error_responses(503)})
def get_turntable_mp4(capture_id: CaptureId, services: ServicesDep, user: CurrentUser,
                      version: VersionQuery = None) -> Response:
    """The turntable video (one turn): rendered by the flow for the captured version, on request (not
    stored) for customised versions, whose creation leaves it out to answer in seconds."""
    repo = _repo(services, user)
    try:
        row = repo.version(capture_id, version)
        manifest = repo.manifest(row)
        if "turntable_mp4" in manifest["assets"]:
            return _file_response(services, user, capture_id, "turntable_mp4", row.version)
        glb = repo.open(manifest, "glb")
    except AvatarNotFound as err:
        raise HTTPException(404, str(err)) from None
    from gaiverse.avatar.creation import TURNTABLE_SECONDS
    from gaiverse.avatar.render import RenderUnavailable, turntable_mp4

    try:
        with _CREATE_LOCK:
            video = turntable_mp4(glb, TURNTABLE_SECONDS)
    except RenderUnavailable as err:
        raise HTTPException(503, f"no offscreen rendering here: {err}") from None
    return Response(video, media_type="video/mp4", headers={
        "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="avatar-{capture_id}-v{row.version}-turntable.mp4"'})
