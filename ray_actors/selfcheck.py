"""The self-check's model stage: an actor holding the surface-field MLP, fitting it to meshes it is sent.

It is the smallest real instance of the model-stage pattern (``ray_actors/base.py``): the
network is built once in ``__init__`` (a real stage would load its checkpoint there),
moved to the device chosen by ``gaiverse.selfcheck.pick_device``, and each call trains a
copy of it with autograd + Adam and reports the node it ran on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gaiverse.config import Settings
from gaiverse.selfcheck import build_field_model, fit_surface_field, pick_device
from ray_actors.base import StageActor, get_or_create

ACTOR_NAME = "selfcheck-model"


class SelfcheckModel(StageActor):
    """Holds one ``SurfaceField`` network; ``fit`` is idempotent (it never changes the held weights)."""

    def __init__(self, seed: int = 0, hidden: int = 64):
        super().__init__()
        self.device = pick_device()
        self.model = build_field_model(seed, hidden).to(self.device)

    def fit(self, vertices: np.ndarray, normals: np.ndarray, steps: int = 300) -> dict[str, Any]:
        """Fit a copy of the held network to the mesh; returns the field and where it was computed.

        vertices, normals : (n, 3) float32. Returns ``values`` (n,) and ``slice`` (64, 64)
        float32 numpy arrays, the losses, and ``info()`` of this actor.
        """
        with self.serving():
            result = fit_surface_field(self.model, vertices, normals, steps=steps, device=self.device)
        return {
            "values": result.values,
            "slice": result.slice,
            "initial_loss": result.initial_loss,
            "final_loss": result.final_loss,
            "steps": result.steps,
            **self.info(),
        }


def selfcheck_model(settings: Settings | None = None):
    """Handle of the named self-check actor on the configured cluster (created on first use)."""
    return get_or_create(SelfcheckModel, ACTOR_NAME, settings=settings)
