"""Low-poly mesh building blocks for the character: lofted tubes with domed caps, ellipsoids, merging.

A tube is a sequence of elliptical rings along a centre line; each ring carries dense joint
weights, so a limb bends smoothly at its joints when the rings near a joint blend the two
bones. Faces are wound counter-clockwise seen from outside (glTF front faces).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Part:
    """Triangles with per-vertex joint weights and one material name per face."""

    positions: np.ndarray
    """(V, 3) float64, metres."""
    faces: np.ndarray
    """(F, 3) int64 vertex indices."""
    weights: np.ndarray
    """(V, J) dense joint weights (rows need not be normalised)."""
    materials: list[str] = field(default_factory=list)
    """Material name per face."""
    labels: np.ndarray | None = None
    """(V,) int label per vertex for morph-target authoring (face parts); None for the body."""


def merge(parts: list[Part]) -> Part:
    """One part holding every vertex and face of ``parts`` (indices offset)."""
    offset, faces = 0, []
    for part in parts:
        faces.append(part.faces + offset)
        offset += len(part.positions)
    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.concatenate([p.labels for p in parts])  # type: ignore[misc]
    return Part(np.concatenate([p.positions for p in parts]), np.concatenate(faces),
                np.concatenate([p.weights for p in parts]), [m for p in parts for m in p.materials], labels)


def frames(centers: np.ndarray, reference) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent t, and ring axes u = ref x t, v = t x u along a centre line (each (M, 3), unit)."""
    centers = np.asarray(centers, dtype=np.float64)
    t = np.gradient(centers, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    u = np.cross(np.broadcast_to(np.asarray(reference, dtype=np.float64), t.shape), t)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(t, u)
    return t, u, v


def tube(centers: np.ndarray, ru: np.ndarray, rv: np.ndarray, ring_weights: np.ndarray, material: str,
         reference=(0.0, 0.0, 1.0), segments: int = 12, cap_start: bool = True, cap_end: bool = True) -> Part:
    """A lofted tube of elliptical rings (radii ``ru`` along u, ``rv`` along v) with domed end caps.

    centers : (M, 3) ring centres; ring_weights : (M, J) joint weights per ring (caps copy the
    end ring's). Returns a closed surface when both caps are on.
    """
    centers = np.asarray(centers, dtype=np.float64)
    ru, rv = np.asarray(ru, dtype=np.float64), np.asarray(rv, dtype=np.float64)
    t, u, v = frames(centers, reference)
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    cos, sin = np.cos(theta), np.sin(theta)

    rings_c, rings_ru, rings_rv, rings_t, rings_u, rings_v, rings_w = [], [], [], [], [], [], []
    poles: list[tuple[np.ndarray, np.ndarray]] = []

    def dome(i: int, sign: float) -> list[int]:
        """Extra shrinking rings beyond end ring ``i`` (sign -1 before the start, +1 after the end)."""
        r = min(ru[i], rv[i])
        out = []
        for phi in (np.radians(40.0), np.radians(70.0)):
            rings_c.append(centers[i] + sign * t[i] * r * np.sin(phi) * 0.9)
            rings_ru.append(ru[i] * np.cos(phi))
            rings_rv.append(rv[i] * np.cos(phi))
            rings_t.append(t[i]), rings_u.append(u[i]), rings_v.append(v[i])
            rings_w.append(ring_weights[i])
            out.append(len(rings_c) - 1)
        poles.append((centers[i] + sign * t[i] * r * 0.9, ring_weights[i]))
        return out

    order: list[int] = []
    if cap_start:
        order += dome(0, -1.0)[::-1]
    for i in range(len(centers)):
        rings_c.append(centers[i]), rings_ru.append(ru[i]), rings_rv.append(rv[i])
        rings_t.append(t[i]), rings_u.append(u[i]), rings_v.append(v[i]), rings_w.append(ring_weights[i])
        order.append(len(rings_c) - 1)
    if cap_end:
        order += dome(len(centers) - 1, 1.0)

    c = np.asarray(rings_c)[order]
    cu = np.asarray(rings_u)[order] * np.asarray(rings_ru)[order][:, None]
    cv = np.asarray(rings_v)[order] * np.asarray(rings_rv)[order][:, None]
    w = np.asarray(rings_w)[order]
    m = len(order)
    positions = (c[:, None, :] + cos[None, :, None] * cu[:, None, :] + sin[None, :, None] * cv[:, None, :])
    positions = positions.reshape(-1, 3)
    weights = np.repeat(w, segments, axis=0)
    faces = []
    for i in range(m - 1):
        for j in range(segments):
            a, b = i * segments + j, i * segments + (j + 1) % segments
            c0, d0 = a + segments, b + segments
            faces += [(a, b, d0), (a, d0, c0)]
    extra_pos, extra_w = [], []
    n = len(positions)
    if cap_start:
        extra_pos.append(poles[0][0]), extra_w.append(poles[0][1])
        for j in range(segments):
            faces.append((n, (j + 1) % segments, j))
    if cap_end:
        pole = poles[-1]
        extra_pos.append(pole[0]), extra_w.append(pole[1])
        k, base = n + len(extra_pos) - 1, (m - 1) * segments
        for j in range(segments):
            faces.append((k, base + j, base + (j + 1) % segments))
    if extra_pos:
        positions = np.concatenate([positions, np.asarray(extra_pos)])
        weights = np.concatenate([weights, np.asarray(extra_w)])
    faces_arr = np.asarray(faces, dtype=np.int64)
    axis_points = np.repeat(c, segments, axis=0)
    if extra_pos:
        axis_points = np.concatenate([axis_points, c[[0]] if cap_start else np.empty((0, 3)),
                                      c[[-1]] if cap_end else np.empty((0, 3))])
    faces_arr = orient_outward(positions, faces_arr, axis_points)
    return Part(positions, faces_arr, weights, [material] * len(faces_arr))


def orient_outward(positions: np.ndarray, faces: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Flip faces whose normal points towards ``inner`` (a point inside per vertex, averaged per face)."""
    tri = positions[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = tri.mean(axis=1) - inner[faces].mean(axis=1)
    flip = np.einsum("ij,ij->i", normal, outward) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def ellipsoid(center, radii, weights_row: np.ndarray, material: str, rings: int = 10, segments: int = 14,
              label: int = 0) -> Part:
    """A UV ellipsoid (poles along Y) with one weight row for every vertex."""
    center = np.asarray(center, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    positions = [center + radii * [0.0, 1.0, 0.0]]
    for i in range(1, rings):
        phi = np.pi * i / rings
        for j in range(segments):
            th = 2 * np.pi * j / segments
            positions.append(center + radii * [np.sin(phi) * np.sin(th), np.cos(phi), np.sin(phi) * np.cos(th)])
    positions.append(center + radii * [0.0, -1.0, 0.0])
    positions = np.asarray(positions)
    faces = []
    for j in range(segments):
        faces.append((0, 1 + j, 1 + (j + 1) % segments))
    for i in range(rings - 2):
        for j in range(segments):
            a = 1 + i * segments + j
            b = 1 + i * segments + (j + 1) % segments
            faces += [(a, a + segments, b + segments), (a, b + segments, b)]
    last = len(positions) - 1
    base = 1 + (rings - 2) * segments
    for j in range(segments):
        faces.append((last, base + (j + 1) % segments, base + j))
    faces_arr = orient_outward(positions, np.asarray(faces, dtype=np.int64), np.tile(center, (len(positions), 1)))
    weights = np.tile(weights_row, (len(positions), 1))
    return Part(positions, faces_arr, weights, [material] * len(faces_arr),
                np.full(len(positions), label, dtype=np.int64))


def vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) float32."""
    tri = positions[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(positions)
    for k in range(3):
        np.add.at(normals, faces[:, k], fn)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 1e-12, normals / np.maximum(length, 1e-12), [0.0, 1.0, 0.0])
    return normals.astype(np.float32)
