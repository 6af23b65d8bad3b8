"""Rendering a trained NeRF from any pinhole camera: colour, metric z-depth and opacity images, and PNG helpers.

Depth is the expected ray parameter (z-depth, because rays have unit z in the camera) times the scene
scale, i.e. in the world units of the source poses (metres for metric captures). Implements ENV-c2 (maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gaiverse.interiors.nerf import camera_rays
from gaiverse.interiors.training import NerfModel


@dataclass
class RenderedView:
    rgb: np.ndarray
    """(h, w, 3) float32 in [0, 1]."""
    depth: np.ndarray
    """(h, w) float32 z-depth in world units of the scene."""
    opacity: np.ndarray
    """(h, w) float32 accumulated opacity (1 = fully inside the reconstructed scene)."""


@torch.no_grad()
def render_view(model: NerfModel, K: np.ndarray, c2w: np.ndarray, hw: tuple[int, int], chunk: int = 8192) -> RenderedView:
    """Render the (h, w) image of pinhole camera (K, c2w in OpenCV axes, world units)."""
    h, w = hw
    if h < 1 or w < 1:
        raise ValueError(f"`hw` must be positive, got {hw}")
    origins, dirs = camera_rays(K, c2w, hw, model.norm)
    device = next(model.parameters()).device
    o = torch.from_numpy(np.ascontiguousarray(origins)).to(device)
    d = torch.from_numpy(dirs).to(device)
    rgb, depth, opacity = [], [], []
    for start in range(0, o.shape[0], chunk):
        out = model.render(o[start:start + chunk], d[start:start + chunk])
        rgb.append(out.rgb.clamp(0, 1).cpu())
        depth.append(out.depth.cpu())
        opacity.append(out.opacity.cpu())
    return RenderedView(rgb=torch.cat(rgb).reshape(h, w, 3).numpy(),
                        depth=(torch.cat(depth) * model.norm.scale).reshape(h, w).numpy(),
                        opacity=torch.cat(opacity).reshape(h, w).numpy())


def scaled_intrinsics(K: np.ndarray, source_hw: tuple[int, int], target_hw: tuple[int, int]) -> np.ndarray:
    """K of the same camera resampled from `source_hw` to `target_hw` pixels."""
    out = np.array(K, dtype=np.float64, copy=True)
    out[0] *= target_hw[1] / source_hw[1]
    out[1] *= target_hw[0] / source_hw[0]
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
