"""File types the API accepts as uploads, checked by extension AND by content (magic bytes).

The extension alone is the client's claim; the content check stops a renamed executable or a
truncated file before it reaches the object store. JSON and text are checked in full
(JSON must parse, text must be UTF-8 without NUL bytes) because they have no magic bytes.
"""

from __future__ import annotations

import codecs
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

HEAD_BYTES = 64


def _png(head: bytes, path: Path) -> bool:
    return head.startswith(b"\x89PNG\r\n\x1a\n")


def _jpg(head: bytes, path: Path) -> bool:
    return head.startswith(b"\xff\xd8\xff")


def _wav(head: bytes, path: Path) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def _glb(head: bytes, path: Path) -> bool:
    """glTF 2.0 binary: magic 'glTF', version 2, and a total length equal to the file size."""
    if len(head) < 12 or head[:4] != b"glTF":
        return False
    version, length = struct.unpack("<II", head[4:12])
    return version == 2 and length == path.stat().st_size


def _mp4(head: bytes, path: Path) -> bool:
    return head[4:8] == b"ftyp"


def _webm(head: bytes, path: Path) -> bool:
    return head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head


def _json(head: bytes, path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            json.load(handle)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return True


def _txt(head: bytes, path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                if b"\x00" in chunk:
                    return False
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True)
class FileType:
    name: str
    """Canonical extension; also the object kind suffix (upload/<name>)."""
    extensions: tuple[str, ...]
    content_type: str
    check: Callable[[bytes, Path], bool]


FILE_TYPES: tuple[FileType, ...] = (
    FileType("png", ("png",), "image/png", _png),
    FileType("jpg", ("jpg", "jpeg"), "image/jpeg", _jpg),
    FileType("wav", ("wav",), "audio/wav", _wav),
    FileType("glb", ("glb",), "model/gltf-binary", _glb),
    FileType("json", ("json",), "application/json", _json),
    FileType("txt", ("txt",), "text/plain", _txt),
    FileType("mp4", ("mp4",), "video/mp4", _mp4),
    FileType("webm", ("webm",), "video/webm", _webm),
)
ALLOWED = ", ".join(ext for ftype in FILE_TYPES for ext in ftype.extensions)


DOCUMENT_TYPES: tuple[FileType, ...] = (
    FileType("txt", ("txt", "text"), "text/plain", _txt),
    FileType("md", ("md", "markdown"), "text/markdown", _txt),
    FileType("json", ("json",), "application/json", _json),
    FileType("jsonl", ("jsonl",), "application/jsonl", _txt),
    FileType("csv", ("csv",), "text/csv", _txt),
)
"""Knowledge documents (``POST /knowledge/documents``): UTF-8 text, Markdown, JSON (lines) and CSV."""


def type_for_filename(filename: str, types: Sequence[FileType] = FILE_TYPES) -> FileType | None:
    suffix = Path(filename).suffix.lower().lstrip(".")
    return next((ftype for ftype in types if suffix in ftype.extensions), None)


def content_matches(ftype: FileType, path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    return ftype.check(head, path)
