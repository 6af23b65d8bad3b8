"""``POST /uploads``: a multipart file, size-limited while it streams, type-checked, stored content-addressed.

Starlette's form parser spools a whole file before the route runs, so a 10 GB upload would
fill the disk before anyone could refuse it. This route feeds the request stream to
python-multipart itself and stops counting at ``max_upload_bytes``: the answer is 413 and
nothing reaches the object store. Only a complete, checked file is put (under its sha256,
kind ``upload/<type>``) and recorded as the caller's asset; if recording fails, an object
this upload created is deleted again, so a failure leaves neither an object nor a row.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import IO, AsyncIterator, Sequence

from fastapi import APIRouter, HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.filetypes import ALLOWED, FILE_TYPES, FileType, content_matches, type_for_filename
from gaiverse.api.keys import User
from gaiverse.api.schemas import AssetOut
from storage.objectstore import make_key

log = logging.getLogger(__name__)

router = APIRouter(tags=["uploads"], responses=AUTH_ERRORS)

FIELD = "file"
ENVELOPE_BYTES = 64 * 1024
"""Multipart overhead (boundaries, part headers, small fields) allowed beyond the file limit."""
DRAIN_BYTES = 16 * 1024 * 1024
"""After refusing an upload, read and drop up to this much more so the client can read the 413."""

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [FIELD],
            "properties": {FIELD: {
                "type": "string", "format": "binary",
                "description": f"The file; its extension and content must be one of: {ALLOWED}",
            }},
        }}},
    }
}


class _TooLarge(Exception):
    pass


class _Receiver:
    """python-multipart callbacks that write the `file` part to disk, counting bytes and hashing."""

    def __init__(self, directory: Path, limit: int):
        self.directory = directory
        self.limit = limit
        self.filename: str | None = None
        self.path: Path | None = None
        self.size = 0
        self.other_bytes = 0
        self.digest = hashlib.sha256()
        self._out: IO[bytes] | None = None
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._in_file = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._field, self._value, self._in_file = {}, b"", b"", False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name == FIELD and filename is not None and self.path is None:
            self.filename = filename.decode("utf-8", "replace")
            self.path = self.directory / "upload.bin"
            self._out = self.path.open("wb")
            self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.size += end - start
            if self.size > self.limit:
                raise _TooLarge()
            self.digest.update(data[start:end])
            self._out.write(data[start:end])
        else:
            self.other_bytes += end - start
            if self.other_bytes > ENVELOPE_BYTES:
                raise _TooLarge()

    def _part_end(self) -> None:
        if self._in_file and self._out is not None:
            self._out.close()
            self._out = None
        self._in_file = False

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


@router.post("/uploads", status_code=201, response_model=AssetOut, openapi_extra=UPLOAD_BODY,
             responses=error_responses(400, 413, 415, 503))
async def post_upload(request: Request, services: ServicesDep, user: CurrentUser) -> AssetOut:
    """Upload one file (multipart field `file`) as your asset; the same bytes always get the same key."""
    with tempfile.TemporaryDirectory(prefix="gaiverse-upload-") as tmp:
        receiver, ftype = await receive_upload(request, services.settings.max_upload_bytes, Path(tmp))
        row = await run_in_threadpool(_store, services, user, receiver, ftype)
    return AssetOut(**row)


async def receive_upload(request: Request, limit: int, directory: Path,
                         types: Sequence[FileType] = FILE_TYPES) -> tuple[_Receiver, FileType]:
    """Stream the multipart `file` field of ``request`` to ``directory`` (at most ``limit`` bytes) and check it.

    Raises the 4xx HTTPException for a wrong content type, an oversized, malformed, empty or
    mistyped file; shared by every route that takes an upload (here and in personalization).
    """
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise HTTPException(415, f"send multipart/form-data with a `{FIELD}` field, got content-type "
                                 f"{request.headers.get('content-type', '')[:100]!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + ENVELOPE_BYTES:
        await _drain(request.stream())
        raise HTTPException(413, f"upload of {declared} bytes exceeds the limit of {limit} bytes")
    receiver = _Receiver(directory, limit)
    stream = request.stream()
    try:
        parser = MultipartParser(boundary, receiver.callbacks())
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except _TooLarge:
        await _drain(stream)
        raise HTTPException(413, f"upload exceeds the limit of {limit} bytes") from None
    except (MultipartParseError, ValueError) as err:
        raise HTTPException(400, f"malformed multipart body: {type(err).__name__}") from None
    finally:
        receiver.close()
    return receiver, _check_file(receiver, types)


def _check_file(receiver: _Receiver, types: Sequence[FileType] = FILE_TYPES) -> FileType:
    if receiver.path is None or receiver.filename is None:
        raise HTTPException(422, f"multipart field `{FIELD}` with a filename is missing")
    ftype = type_for_filename(receiver.filename, types)
    if ftype is None:
        allowed = ALLOWED if types is FILE_TYPES else ", ".join(e for t in types for e in t.extensions)
        raise HTTPException(415, f"file type of {receiver.filename[:100]!r} is not allowed; "
                                 f"allowed: {allowed}")
    if receiver.size == 0:
        raise HTTPException(422, f"uploaded file {receiver.filename[:100]!r} is empty")
    if not content_matches(ftype, receiver.path):
        raise HTTPException(415, f"content of {receiver.filename[:100]!r} is not a valid {ftype.name} file")
    return ftype


def _store(services: Services, user: User, receiver: _Receiver, ftype: FileType) -> dict:
    """Put the checked file and record it as the user's asset; undo the put if recording fails."""
    kind = f"upload/{ftype.name}"
    key = make_key(kind, receiver.digest.hexdigest(), ftype.name)
    store = services.store
    existed = store.exists(key)
    ref = store.put_file(receiver.path, kind=kind, ext=ftype.name)
    if ref.key != key:
        raise RuntimeError(f"stored key {ref.key} differs from the streamed hash {key}")
    try:
        services.catalog.record_asset(replace(ref, content_type=ftype.content_type), owner=user.user_id)
    except Exception:
        if not existed:
            store.delete(key)
        log.exception("recording upload %s failed; object removed", key)
        raise HTTPException(503, "catalog unavailable, upload not stored") from None
    log.info("user %s uploaded %s (%d bytes)", user.name, key, ref.bytes)
    return services.catalog.asset(key) | {"inputs": []}


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Read and drop what the client is still sending (bounded), so it gets to read our answer."""
    drained = 0
    try:
        async for chunk in stream:
            drained += len(chunk)
            if drained > DRAIN_BYTES:
                break
    except Exception:  # noqa: BLE001 - the client went away or the stream was consumed; the answer stands
        pass
