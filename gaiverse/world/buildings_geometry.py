"""Plain-numpy polygon geometry for building footprints (no shapely in the stack).

Footprints are small simple polygons, (n, 2) float64 metres, counter-clockwise, not closed
(first vertex not repeated). Used by buildings_data (measuring real footprints),
buildings_layout (collision tests) and buildings_mesh (triangulation). Supports ENV-b1..b3.
"""

from __future__ import annotations

import math

import numpy as np


def signed_area(poly: np.ndarray) -> float:
    """Shoelace area, positive for counter-clockwise rings."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def as_ccw(poly: np.ndarray) -> np.ndarray:
    """The ring without a repeated closing vertex, oriented counter-clockwise."""
    poly = np.asarray(poly, dtype=np.float64)
    if len(poly) > 1 and np.allclose(poly[0], poly[-1]):
        poly = poly[:-1]
    return poly if signed_area(poly) >= 0 else poly[::-1].copy()


def centroid(poly: np.ndarray) -> np.ndarray:
    """Area centroid of a simple polygon (vertex mean for degenerate rings)."""
    x, y = poly[:, 0], poly[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    a = cross.sum() / 2
    if abs(a) < 1e-9:
        return poly.mean(0)
    return np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * a)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull, counter-clockwise."""
    pts = np.unique(np.asarray(points, dtype=np.float64), axis=0)
    if len(pts) < 3:
        return pts

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def min_rotated_rect(poly: np.ndarray) -> tuple[float, float, float]:
    """(long side m, short side m, angle of the long side in radians, 0..pi) of the minimum-area rectangle.

    Rotating calipers over the convex hull edges: the minimum rectangle has a side on a hull edge.
    """
    hull = convex_hull(poly)
    if len(hull) < 3:
        return 0.0, 0.0, 0.0
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    best = (math.inf, 0.0, 0.0, 0.0)
    for a in angles:
        c, s = math.cos(a), math.sin(a)
        u = hull @ np.array([c, s])
        v = hull @ np.array([-s, c])
        du, dv = float(np.ptp(u)), float(np.ptp(v))
        if du * dv < best[0]:
            best = (du * dv, du, dv, a)
    _, du, dv, a = best
    if dv > du:
        du, dv, a = dv, du, a + math.pi / 2
    return du, dv, a % math.pi


def simplify(poly: np.ndarray, tol: float) -> np.ndarray:
    """Drop vertices closer than `tol` metres to the line through their neighbours (repeat until stable)."""
    pts = np.asarray(poly, dtype=np.float64)
    changed = True
    while changed and len(pts) > 3:
        changed = False
        for i in range(len(pts)):
            a, b, c = pts[i - 1], pts[i], pts[(i + 1) % len(pts)]
            base = np.linalg.norm(c - a)
            dist = abs(_cross(a, c, b)) / base if base > 1e-9 else np.linalg.norm(b - a)
            if dist < tol:
                pts = np.delete(pts, i, axis=0)
                changed = True
                break
    return pts


def concave_flags(poly: np.ndarray) -> np.ndarray:
    """(n,) bool: vertex i is a reflex (concave) corner of the counter-clockwise ring."""
    prev, nxt = np.roll(poly, 1, axis=0), np.roll(poly, -1, axis=0)
    cross = (poly[:, 0] - prev[:, 0]) * (nxt[:, 1] - poly[:, 1]) - (poly[:, 1] - prev[:, 1]) * (nxt[:, 0] - poly[:, 0])
    return cross < 0


def points_in_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """(m,) bool, even-odd rule (points exactly on an edge may go either way)."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (crosses & (x < xint)).sum(1) % 2 == 1


def point_segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(m, k) distances from m points to k segments a[k] -> b[k]."""
    ab = b - a
    denom = np.maximum((ab**2).sum(1), 1e-12)
    t = np.clip(((points[:, None, :] - a[None]) * ab[None]).sum(2) / denom[None], 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=2)


def convex_overlap(p: np.ndarray, q: np.ndarray, gap: float = 0.0) -> bool:
    """Separating-axis test for two convex polygons; True if they come closer than `gap` along every axis."""
    for poly in (p, q):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.column_stack([edges[:, 1], -edges[:, 0]])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        pp, qq = p @ normals.T, q @ normals.T
        if np.any((pp.max(0) + gap <= qq.min(0)) | (qq.max(0) + gap <= pp.min(0))):
            return False
    return True


def rect_corners(centre: np.ndarray, length: float, width: float, angle: float) -> np.ndarray:
    """(4, 2) counter-clockwise corners of a length x width rectangle whose long axis points at `angle`."""
    u = np.array([math.cos(angle), math.sin(angle)])
    v = np.array([-u[1], u[0]])
    hl, hw = length / 2, width / 2
    return np.array([centre - hl * u - hw * v, centre + hl * u - hw * v, centre + hl * u + hw * v, centre - hl * u + hw * v])


def triangulate(poly: np.ndarray) -> np.ndarray:
    """Ear-clipping triangulation of a simple counter-clockwise polygon -> (n - 2, 3) vertex indices."""
    idx = list(range(len(poly)))
    tris: list[tuple[int, int, int]] = []
    guard = 0
    while len(idx) > 3 and guard < 10 * len(poly) ** 2:
        guard += 1
        n = len(idx)
        for k in range(n):
            i, j, m = idx[k - 1], idx[k], idx[(k + 1) % n]
            a, b, c = poly[i], poly[j], poly[m]
            if _cross(a, b, c) <= 1e-12:
                continue  # reflex or degenerate corner: not an ear
            others = np.array([poly[t] for t in idx if t not in (i, j, m)])
            if len(others) and _in_triangle(others, a, b, c).any():
                continue
            tris.append((i, j, m))
            idx.pop(k)
            break
        else:  # no ear found (numerically degenerate ring): fan the rest
            break
    for k in range(1, len(idx) - 1):
        tris.append((idx[0], idx[k], idx[k + 1]))
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def _in_triangle(pts: np.ndarray, a, b, c) -> np.ndarray:
    def side(p, q):
        return (q[0] - p[0]) * (pts[:, 1] - p[1]) - (q[1] - p[1]) * (pts[:, 0] - p[0])

    return (side(a, b) >= -1e-12) & (side(b, c) >= -1e-12) & (side(c, a) >= -1e-12)
