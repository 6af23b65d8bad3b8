"""The sentence-embedding stage: one MiniLM loaded once per cluster, shared by every flow run.

Each Prefect flow run is a fresh process, so a run that embeds a few texts (an NPC's grounding
queries, a small document, a world's passages) used to spend most of its time importing
sentence-transformers and loading the weights (3-5 s on a quiet 2-core machine, 12-22 s under
load). The detached actor pays that once; a call then costs the encoding plus ~1 ms of Ray.
Vectors are identical to the in-process model's (same weights, same normalisation).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import ray

from gaiverse.config import Settings
from gaiverse.embedding import DIM, default_embedder
from ray_actors.base import StageActor, get_or_create

ACTOR_NAME = "sentence-embedder"


class EmbeddingActor(StageActor):
    """Holds all-MiniLM-L6-v2; ``embed`` is pure, so Ray may replay it after a restart."""

    def __init__(self) -> None:
        super().__init__()
        self.model = default_embedder()
        self.model.embed(["warm up"])

    def describe(self) -> dict:
        return {"name": self.model.name, "dim": self.model.dim}

    def embed(self, texts: list[str]) -> np.ndarray:
        with self.serving():
            return self.model.embed(texts)


class RayEmbedder:
    """The ``Embedder`` protocol over the shared actor (what flow tasks hand to the knowledge base)."""

    def __init__(self, handle) -> None:
        self.handle = handle
        info = ray.get(handle.describe.remote())
        self.name: str = info["name"]
        self.dim: int = int(info["dim"])
        if self.dim != DIM:
            raise ValueError(f"the embedding actor serves {self.dim}-dim vectors, not {DIM}")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("`texts` must be a sequence of strings, got a single str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(ray.get(self.handle.embed.remote(list(texts))), dtype=np.float32)


def shared_embedder(settings: Settings | None = None) -> RayEmbedder:
    """The cluster's embedder (the actor is created, and the model loaded, on first use)."""
    return RayEmbedder(get_or_create(EmbeddingActor, ACTOR_NAME, settings=settings))
