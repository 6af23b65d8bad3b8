"""The NPC appearance stage: an actor that builds the rigged .glb and its preview from a profile.

Mesh, face rig and clips are pure numpy (~0.2 s), so the actor holds no model; it exists so the
appearance step runs where the cluster puts model stages (and, once the avatar pipeline's learned
face/body models exist, holds them loaded). ``build`` is idempotent: the same profile gives the
same bytes, and the outputs are content-addressed when stored.
"""

from __future__ import annotations

from typing import Any

from gaiverse.config import Settings
from gaiverse.npc.generation import NpcProfile, appearance_glb
from ray_actors.base import StageActor, get_or_create

ACTOR_NAME = "npc-appearance"
PREVIEW_GESTURES = (None, "wave", "explain")


class NpcAppearance(StageActor):
    """Builds NPC appearances (NPC-b1): .glb bytes and a PNG preview (rest pose and two gestures)."""

    def build(self, profile: dict[str, Any]) -> dict[str, Any]:
        """{"glb": bytes, "preview": PNG bytes, **info()} for one ``NpcProfile.to_dict()``."""
        from gaiverse.character import build_character

        with self.serving():
            npc = NpcProfile.from_dict(profile)
            glb = appearance_glb(npc)
            preview = build_character(npc.body_params()).preview_png(PREVIEW_GESTURES, size_px=320)
        return {"glb": glb, "preview": preview, **self.info()}


def npc_appearance(settings: Settings | None = None):
    """Handle of the named appearance actor on the configured cluster (created on first use)."""
    return get_or_create(NpcAppearance, ACTOR_NAME, settings=settings)
