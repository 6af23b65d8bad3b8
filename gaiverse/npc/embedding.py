"""The NPC knowledge base's embedding cache; the model itself is in ``gaiverse/embedding.py``.

Embedding the ~5,000 prior passages takes about a
minute on 2 cores, so the prior build reads a shipped cache of their vectors keyed by the
SHA-256 of each passage text and embeds only what the cache lacks. Implements NPC-a1.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from gaiverse.embedding import DIM, Embedder, MiniLMEmbedder, MiniLMEmbedderConfig, default_embedder  # noqa: F401

log = logging.getLogger(__name__)

def text_key(text: str) -> str:
    """Cache key of a passage: first 16 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class CachedEmbedder:
    """Wraps an embedder with a read-only table of precomputed vectors (float16 on disk).

    Texts found in the cache are not re-embedded; the rest go to the wrapped embedder. The cache
    records the embedder name so vectors of two models are never mixed.
    """

    inner: Embedder
    """The model used for texts the cache does not hold."""
    cache_path: Path | None = None
    """``.npz`` with ``keys`` (str) and ``vectors`` (n, dim) float16, or None for no cache."""
    _table: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    misses: int = field(default=0, init=False)
    """How many texts had to be embedded by the model (for logs and tests)."""

    def __post_init__(self):
        if self.cache_path is not None and Path(self.cache_path).is_file():
            with np.load(self.cache_path, allow_pickle=False) as data:
                model = str(data["model"]) if "model" in data else ""
                if model != self.inner.name:
                    log.warning("embedding cache %s is for %r, not %r: ignored", self.cache_path, model,
                                self.inner.name)
                    return
                keys, vecs = data["keys"], data["vectors"]
            self._table = dict(zip(keys.tolist(), vecs))
            log.info("embedding cache: %d vectors from %s", len(self._table), self.cache_path)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = []
        for i, text in enumerate(texts):
            vec = self._table.get(text_key(text))
            if vec is None:
                todo.append(i)
            else:
                out[i] = vec.astype(np.float32)
        if todo:
            self.misses += len(todo)
            out[todo] = self.inner.embed([texts[i] for i in todo])
        return out


def write_cache(path: Path, texts: Sequence[str], vectors: np.ndarray, model: str) -> None:
    """Store vectors for ``texts`` as float16 (keys = ``text_key``); rewrites the file."""
    if len(texts) != len(vectors):
        raise ValueError(f"`vectors` must have one row per text, got {len(vectors)} for {len(texts)} texts")
    keys = np.array([text_key(t) for t in texts])
    np.savez_compressed(path, keys=keys, vectors=vectors.astype(np.float16), model=np.array(model))
