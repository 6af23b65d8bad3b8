"""PNG previews of a character: front and side views, flat-shaded with the painter's algorithm (PIL only).

Good enough to eyeball proportions, colours and expressions in a Prefect artifact or a test
artifact without a GPU or an OpenGL context.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

LIGHT = np.array([0.35, 0.55, 0.75]) / np.linalg.norm([0.35, 0.55, 0.75])


def render_views(positions: np.ndarray, faces: np.ndarray, colours: np.ndarray, size_px: int = 384,
                 views: tuple[float, ...] = (0.0, 90.0), height_m: float | None = None) -> Image.Image:
    """Panels side by side, one per yaw angle in ``views`` (degrees; 0 looks at the face).

    positions : (V, 3) metres; faces : (F, 3); colours : (F, 3) floats 0..1.
    height_m : scale reference (the same for several characters keeps their sizes comparable).
    """
    if size_px < 64:
        raise ValueError(f"`size_px` must be >= 64, got {size_px}")
    span = height_m or float(positions[:, 1].max() - positions[:, 1].min())
    image = Image.new("RGB", (size_px * len(views), size_px), (236, 238, 242))
    for k, yaw in enumerate(views):
        a = np.radians(yaw)
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        v = positions @ rot.T
        scale = 0.92 * size_px / max(span, 1e-6)
        cx = size_px * (k + 0.5)
        screen = np.stack([cx + v[:, 0] * scale, size_px * 0.96 - v[:, 1] * scale], 1)
        tri = v[faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        shade = 0.35 + 0.65 * np.clip(normal @ LIGHT, 0.0, 1.0)
        depth = tri[:, :, 2].mean(axis=1)
        draw = ImageDraw.Draw(image)
        for f in np.argsort(depth):
            if normal[f, 2] <= 0:
                continue
            colour = tuple(int(255 * min(1.0, c * shade[f])) for c in colours[f])
            draw.polygon([tuple(p) for p in screen[faces[f]]], fill=colour)
    return image


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
