"""A parametric humanoid generator: skeleton, skinned body, blendshape face, gesture clips, .glb export.

Plain Python + numpy, shared by NPC generation (NPC-b1) and, later, the avatar pipeline:

- ``params``: ``BodyParams`` (proportions, build, colours, style) and their plausibility limits
- ``skeleton``: VRM humanoid joints from proportions, inverse bind matrices, weight packing
- ``body``: torso, limbs, hands and feet as smooth skinned tubes
- ``face``: head with the 52 ARKit blendshapes and the 15 viseme targets
- ``animation``: idle, walk and every gesture of ``gaiverse.npc.expression.GESTURES``
- ``gltf_writer``: the .glb (skin, morph targets, animations, materials, extras)
- ``preview``: PNG front/side views
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gaiverse.character.animation import Clip, build_clips, sample, skin
from gaiverse.character.body import build_body
from gaiverse.character.face import Head, apply_weights, build_head
from gaiverse.character.geometry import Part
from gaiverse.character.params import BodyParams, check
from gaiverse.character.skeleton import Skeleton, build_skeleton

__all__ = ["BodyParams", "Character", "build_character"]


@dataclass
class Character:
    """A built character: everything the .glb holds, as arrays."""

    params: BodyParams
    skeleton: Skeleton
    body: Part
    head: Head
    clips: list[Clip]

    def glb(self, name: str = "npc", extras: dict[str, Any] | None = None) -> bytes:
        """The rigged, animatable .glb (see ``gltf_writer.character_glb``)."""
        from gaiverse.character.gltf_writer import character_glb

        return character_glb(self, name, extras)

    def posed(self, gesture: str | None = None, t: float | None = None,
              morphs: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(positions, faces, materials) of the whole character, optionally mid-``gesture`` and with ``morphs``."""
        head_pos = apply_weights(self.head, morphs or {})
        positions = np.concatenate([self.body.positions, head_pos])
        weights = np.concatenate([self.body.weights, self.head.part.weights])
        if gesture is not None:
            clip = next((c for c in self.clips if c.name == gesture), None)
            if clip is None:
                raise ValueError(f"`gesture` must be one of {[c.name for c in self.clips]}, got {gesture!r}")
            positions = skin(self.skeleton, sample(clip, clip.duration / 2 if t is None else t), positions, weights)
        faces = np.concatenate([self.body.faces, self.head.part.faces + len(self.body.positions)])
        return positions, faces, self.body.materials + self.head.part.materials

    def preview_png(self, gestures: tuple[str | None, ...] = (None,), size_px: int = 384,
                    morphs: dict[str, float] | None = None) -> bytes:
        """Front and side views per gesture (rest pose for None), side by side, as PNG bytes."""
        from PIL import Image

        from gaiverse.character.gltf_writer import material_colours
        from gaiverse.character.preview import png_bytes, render_views

        colours = material_colours(self.params)
        panels = []
        for gesture in gestures:
            positions, faces, materials = self.posed(gesture, morphs=morphs)
            rgb = np.asarray([colours[m] for m in materials])
            panels.append(render_views(positions, faces, rgb, size_px, height_m=max(self.params.height_m, 1.9)))
        out = Image.new("RGB", (sum(p.width for p in panels), size_px))
        x = 0
        for panel in panels:
            out.paste(panel, (x, 0))
            x += panel.width
        return png_bytes(out)


def build_character(params: BodyParams | None = None) -> Character:
    """Build the character for ``params`` (checked for plausibility first). Implements NPC-b1 appearance."""
    params = check(params or BodyParams())
    skeleton = build_skeleton(params)
    return Character(params, skeleton, build_body(skeleton, params), build_head(skeleton, params),
                     build_clips(skeleton, params.arm_droop_deg))
