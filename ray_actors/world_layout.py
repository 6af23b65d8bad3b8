"""The world layout stage: an actor holding the terrain and roads diffusion models, serving layouts and region inpainting.

Loaded once per actor (`LayoutGenerator.from_checkpoint`); calls are idempotent (same
controls and seed -> same layout), so Ray may replay one after a crash. The checkpoint path
is part of the actor's name together with a digest of its files, so a retrained checkpoint gets its own warm actor.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from gaiverse.config import Settings
from gaiverse.world.layout import Layout, LayoutGenerator, LayoutGeneratorConfig
from gaiverse.world.layout_model import default_device
from gaiverse.world.suggestions import LayoutControls
from ray_actors.base import StageActor, get_or_create


class WorldLayoutModel(StageActor):
    """Holds the layout diffusion models of one checkpoint folder (terrain/ and roads/)."""

    def __init__(self, checkpoint: str | None = None):
        super().__init__()
        self.device = str(default_device())
        self.checkpoint = checkpoint
        self.generator = LayoutGenerator.from_checkpoint(checkpoint)

    def generate(self, controls: LayoutControls, seed: int, ddim_steps: int | None = None) -> dict[str, Any]:
        """The layout for `controls` and `seed` (DDIM steps default to the generator's), plus where it ran."""
        with self.serving():
            config = LayoutGeneratorConfig(ddim_steps=ddim_steps) if ddim_steps else self.generator.config
            generator = LayoutGenerator(self.generator.terrain, self.generator.roads, config)
            layout: Layout = generator.generate(controls, seed=seed)
        return {"layout": layout, **self.info()}


def world_layout_model(checkpoint: str | Path | None = None, settings: Settings | None = None):
    """Handle of the named layout actor for `checkpoint` (created on first use)."""
    from gaiverse.world.world_build import checkpoint_id

    ident = checkpoint_id(checkpoint)
    name = "world-layout-" + hashlib.sha256(f"{ident['path']}:{ident['sha256']}".encode()).hexdigest()[:12]
    return get_or_create(WorldLayoutModel, name, ident["path"], settings=settings)
