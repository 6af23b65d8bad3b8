"""Content-addressed, immutable object store on any S3 server (embedded nanio or MinIO), via the minio SDK.

Every object lives at ``<kind>/<sha256>.<ext>``. A put hashes first and uploads once, so a
retried task writes the same key again (a no-op) and can never leave a half-written asset:
S3 makes an object visible only when its upload completed. Reads verify the hash.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Iterator

import urllib3
from minio import Minio
from minio.error import S3Error

from gaiverse.config import Settings, get_settings

log = logging.getLogger(__name__)

KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}(/[a-z0-9][a-z0-9_-]{0,62}){0,3}$")
EXT_RE = re.compile(r"^[a-z0-9]{1,10}$")
KEY_RE = re.compile(r"^(?P<kind>[a-z][a-z0-9_/-]*)/(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]{1,10})$")
PART_SIZE = 16 * 1024 * 1024
CHUNK = 1024 * 1024

CONTENT_TYPES = {
    "glb": "model/gltf-binary",
    "gltf": "model/gltf+json",
    "png": "image/png",
    "jpg": "image/jpeg",
    "json": "application/json",
    "wav": "audio/wav",
    "npy": "application/octet-stream",
    "txt": "text/plain",
    "md": "text/markdown",
    "pt": "application/octet-stream",
    "bin": "application/octet-stream",
}


class IntegrityError(RuntimeError):
    """An object's bytes do not hash to the sha256 in its key."""


class ObjectNotFound(KeyError):
    """No object at that key."""


@dataclass(frozen=True)
class AssetRef:
    """A stored object: its key and what the catalog records about it."""

    key: str
    kind: str
    sha256: str
    bytes: int
    content_type: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_kind(kind: str) -> str:
    if not KIND_RE.match(kind):
        raise ValueError(f"`kind` must be lowercase path segments like 'world/layout', got {kind!r}")
    return kind


def check_ext(ext: str) -> str:
    ext = ext.lstrip(".").lower()
    if not EXT_RE.match(ext):
        raise ValueError(f"`ext` must be 1-10 lowercase letters or digits, got {ext!r}")
    return ext


def parse_key(key: str) -> tuple[str, str, str]:
    """(kind, sha256, ext) of a content-addressed key; ValueError for anything else."""
    match = KEY_RE.match(key)
    if not match:
        raise ValueError(f"not a content-addressed key (<kind>/<sha256>.<ext>): {key!r}")
    return match["kind"], match["sha"], match["ext"]


def make_key(kind: str, sha256: str, ext: str) -> str:
    return f"{check_kind(kind)}/{sha256}.{check_ext(ext)}"


class ObjectStore:
    """Immutable puts, verified gets, presigned URLs and listing by kind on one bucket."""

    def __init__(self, client: Minio, bucket: str):
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, retries: int = 0, timeout_s: float = 30.0) -> "ObjectStore":
        """A store on the configured endpoint. retries=0: failures surface at once so the Prefect task retries."""
        settings = settings or get_settings()
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s),
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            maxsize=32,
        )
        client = Minio(
            settings.s3_address,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=settings.s3_secure,
            region="us-east-1",
            http_client=http,
        )
        return cls(client, settings.s3_bucket)

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)
            log.info("created bucket %s", self.bucket)

    # writes --------------------------------------------------------------------------------
    def put_bytes(self, data: bytes, *, kind: str, ext: str) -> AssetRef:
        """Store ``data`` under its sha256; storing the same bytes again is a no-op."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"`data` must be bytes, got {type(data).__name__}")
        sha = hashlib.sha256(data).hexdigest()
        ref = self._ref(kind, sha, ext, len(data))
        if not self.exists(ref.key):
            self.client.put_object(self.bucket, ref.key, io.BytesIO(data), len(data), content_type=ref.content_type)
            log.info("put %s (%d bytes)", ref.key, ref.bytes)
        return ref

    def put_file(self, path: str | Path, *, kind: str, ext: str | None = None) -> AssetRef:
        """Stream a file (multipart above 16 MB) under its sha256, hashing it once before upload."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"`path` is not a file: {path}")
        sha, size = _hash_file(path)
        ref = self._ref(kind, sha, ext or path.suffix or "bin", size)
        if not self.exists(ref.key):
            self.client.fput_object(self.bucket, ref.key, str(path), content_type=ref.content_type, part_size=PART_SIZE)
            log.info("put %s (%d bytes, from %s)", ref.key, ref.bytes, path.name)
        return ref

    def put_stream(self, stream: BinaryIO, *, kind: str, ext: str, max_bytes: int | None = None) -> AssetRef:
        """Spool a stream to a temp file (bounded by ``max_bytes``), then store it like a file."""
        with tempfile.NamedTemporaryFile(suffix="." + check_ext(ext)) as tmp:
            total = 0
            while chunk := stream.read(CHUNK):
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise ValueError(f"upload exceeds the limit of {max_bytes} bytes")
                tmp.write(chunk)
            tmp.flush()
            return self.put_file(tmp.name, kind=kind, ext=ext)

    def _ref(self, kind: str, sha: str, ext: str, size: int) -> AssetRef:
        ext = check_ext(ext)
        return AssetRef(make_key(kind, sha, ext), kind, sha, size, CONTENT_TYPES.get(ext, "application/octet-stream"))

    # reads ---------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"):
                return False
            raise

    def stat(self, key: str) -> AssetRef:
        kind, sha, ext = parse_key(key)
        try:
            info = self.client.stat_object(self.bucket, key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"):
                raise ObjectNotFound(key) from err
            raise
        return AssetRef(key, kind, sha, int(info.size or 0), info.content_type or "application/octet-stream")

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes, verified against the sha256 in its key."""
        _, sha, _ = parse_key(key)
        data = self._read(key)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise IntegrityError(f"object {key} hashes to {actual}")
        return data

    def get_file(self, key: str, dest: str | Path) -> Path:
        """Stream an object to ``dest`` (written via a temp file, verified, then renamed)."""
        _, sha, _ = parse_key(key)
        dest = Path(dest)
        tmp = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        try:
            response = self._open(key)
            try:
                with tmp.open("wb") as out:
                    for chunk in response.stream(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            finally:
                response.close()
                response.release_conn()
            if digest.hexdigest() != sha:
                raise IntegrityError(f"object {key} hashes to {digest.hexdigest()}")
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Part of an object (not verifiable on its own: use for previews and seeking)."""
        if offset < 0 or length <= 0:
            raise ValueError(f"`offset` must be >= 0 and `length` > 0, got {offset}, {length}")
        response = self.client.get_object(self.bucket, key, offset=offset, length=length)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _open(self, key: str):
        try:
            return self.client.get_object(self.bucket, key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                raise ObjectNotFound(key) from err
            raise

    def _read(self, key: str) -> bytes:
        response = self._open(key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def presigned_get(self, key: str, expires_s: int = 3600, filename: str | None = None) -> str:
        """A time-limited download URL that needs no credentials."""
        if not 1 <= expires_s <= 7 * 24 * 3600:
            raise ValueError(f"`expires_s` must be between 1 s and 7 days, got {expires_s}")
        headers = {"response-content-disposition": f'attachment; filename="{filename}"'} if filename else None
        return self.client.presigned_get_object(
            self.bucket, key, expires=timedelta(seconds=expires_s), response_headers=headers
        )

    def list(self, kind: str | None = None) -> Iterator[AssetRef]:
        """Every object under ``kind`` (recursively), or all objects."""
        prefix = check_kind(kind) + "/" if kind else None
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            try:
                obj_kind, sha, ext = parse_key(obj.object_name)
            except ValueError:
                continue
            yield AssetRef(obj.object_name, obj_kind, sha, int(obj.size or 0), CONTENT_TYPES.get(ext, "application/octet-stream"))

    def delete(self, key: str) -> None:
        """Remove an object: only for erasure and garbage collection of unpublished assets."""
        parse_key(key)
        self.client.remove_object(self.bucket, key)
        log.info("deleted %s", key)


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size

