"""PNG previews of building layouts: a top-down map and a shaded 3D view (software painter's algorithm,
no GPU or display needed). Used for flow artifacts and for looking at what the generator did (ENV-b2, ENV-b3).
"""

from __future__ import annotations

import math

import numpy as np
import trimesh
from PIL import Image, ImageDraw

from gaiverse.world.buildings_layout import ROAD_HALF_WIDTH_M, BuildingLayout, SceneInput


def render_top_down(scene: SceneInput, layout: BuildingLayout, px_per_m: float = 1.0,
                    parcels: bool = True) -> Image.Image:
    """Terrain (shaded by height), water, roads by class width, parcels and footprints in roof colours."""
    w_m, h_m = scene.size_m
    w, h = max(1, int(w_m * px_per_m)), max(1, int(h_m * px_per_m))
    z = scene.heights
    zn = (z - z.min()) / max(float(np.ptp(z)), 1e-9)
    base = np.stack([150 + 40 * zn, 170 + 30 * zn, 120 + 20 * zn], -1).astype(np.uint8)
    if scene.water is not None:
        base[np.asarray(scene.water, bool)] = (90, 140, 200)
    img = Image.fromarray(base).resize((w, h), Image.NEAREST)
    draw = ImageDraw.Draw(img)

    def px(pts: np.ndarray) -> list[tuple[float, float]]:
        return [(float(x * px_per_m), float((h_m - y) * px_per_m)) for x, y in pts]

    for line, cls in zip(scene.roads, scene.road_classes):
        width = max(1, int(2 * ROAD_HALF_WIDTH_M[cls] * px_per_m))
        draw.line(px(line), fill=(70, 70, 75) if cls == "major" else (110, 110, 115), width=width, joint="curve")
    for b in layout.buildings:
        if parcels:
            draw.polygon(px(b.parcel), outline=(200, 200, 160))
    for b in layout.buildings:
        draw.polygon(px(b.footprint), fill=tuple(b.roof_colour), outline=(20, 20, 20))
    return img


def _triangles(scene: trimesh.Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(triangles (n, 3, 3), rgb (n, 3), is_detail (n,)) of every mesh in the scene, world coordinates.

    Details (windows, balconies: meshes whose metadata part is not 'walls') are drawn after the wall
    behind them."""
    tris, cols, detail = [], [], []
    for mesh in scene.dump(concatenate=False):
        t = mesh.vertices[mesh.faces]
        if isinstance(mesh.visual, trimesh.visual.ColorVisuals):
            c = mesh.visual.face_colors[:, :3]
        else:
            factor = getattr(getattr(mesh.visual, "material", None), "baseColorFactor", None)
            c = np.tile(np.asarray(factor if factor is not None else (60, 70, 80, 255))[:3], (len(t), 1))
        tris.append(t)
        cols.append(np.asarray(c, dtype=np.float64))
        detail.append(np.full(len(t), mesh.metadata.get("part", "walls") != "walls"))
    if not tris:
        return np.zeros((0, 3, 3)), np.zeros((0, 3)), np.zeros(0, bool)
    return np.concatenate(tris), np.concatenate(cols), np.concatenate(detail)


def render_3d(scene: trimesh.Scene, size: tuple[int, int] = (960, 720), azimuth_deg: float = 35.0,
              elevation_deg: float = 35.0, ground: tuple[int, int, int] = (150, 165, 130),
              ground_z: float | None = None) -> Image.Image:
    """Orthographic shaded view from (azimuth, elevation): triangles sorted far to near and filled.

    Lambert shading against a sun from the south-west plus ambient light, so walls facing different
    ways read apart. z is up.
    """
    tris, cols, detail = _triangles(scene)
    img = Image.new("RGB", size, (200, 215, 230))
    if not len(tris):
        return img
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    view = np.array([math.cos(el) * math.sin(az), -math.cos(el) * math.cos(az), math.sin(el)])  # towards camera
    right = np.array([math.cos(az), math.sin(az), 0.0])
    up = np.cross(view, right)
    lo, hi = tris.reshape(-1, 3).min(0), tris.reshape(-1, 3).max(0)
    gz = lo[2] if ground_z is None else ground_z
    ground_quad = np.array([[lo[0], lo[1], gz], [hi[0], lo[1], gz], [hi[0], hi[1], gz], [lo[0], hi[1], gz]])
    pts = tris.reshape(-1, 3)
    u, v = pts @ right, pts @ up
    gu, gv = ground_quad @ right, ground_quad @ up
    umin, umax = min(u.min(), gu.min()), max(u.max(), gu.max())
    vmin, vmax = min(v.min(), gv.min()), max(v.max(), gv.max())
    scale = 0.95 * min(size[0] / max(umax - umin, 1e-6), size[1] / max(vmax - vmin, 1e-6))
    cx, cy = size[0] / 2 - scale * (umin + umax) / 2, size[1] / 2 + scale * (vmin + vmax) / 2

    def project(p: np.ndarray) -> list[tuple[float, float]]:
        return [(float(cx + scale * (q @ right)), float(cy - scale * (q @ up))) for q in p]

    draw = ImageDraw.Draw(img)
    draw.polygon(project(ground_quad), fill=ground)
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    sun = np.array([-0.5, -0.6, 0.62])
    sun /= np.linalg.norm(sun)
    light = 0.45 + 0.55 * np.abs(normals @ sun)
    facing = (normals @ view) > -1e-6
    depth = tris.mean(1) @ view + 4.0 * detail  # a detail is painted after the wall it sits on
    for i in np.argsort(depth):
        if not facing[i]:
            continue
        rgb = tuple(int(c) for c in np.clip(cols[i] * light[i], 0, 255))
        draw.polygon(project(tris[i]), fill=rgb)
    return img
