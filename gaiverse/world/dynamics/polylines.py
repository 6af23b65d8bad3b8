"""Polyline helpers of the street network: cut, offset, distance, smoothing, curvature, Bezier curves.

Plain geometry on (k, 2) arrays in metres (x east, y north), shared by the lane graph
(`lanes.py`), the sidewalk graph (`sidewalks.py`), route sampling and the checks. Implements ENV-d2.
"""

from __future__ import annotations

import math

import numpy as np


def cut(path: np.ndarray, s0: float, s1: float, step: float = 2.0) -> np.ndarray:
    """The part of a polyline between arc lengths s0 < s1, resampled every `step` metres (corners kept)."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    n = max(2, int(math.ceil((s1 - s0) / step)) + 1)
    t = np.unique(np.concatenate([np.linspace(s0, s1, n), s[(s > s0) & (s < s1)]]))
    return np.column_stack([np.interp(t, s, path[:, 0]), np.interp(t, s, path[:, 1])])


def offset(path: np.ndarray, distance: float) -> np.ndarray:
    """A polyline moved `distance` metres to its left (negative: right), mitred at corners."""
    d = np.diff(path, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    left = np.column_stack([-d[:, 1], d[:, 0]])
    normal = np.vstack([left[:1], left[:-1] + left[1:], left[-1:]])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    cos_half = np.einsum("ij,ij->i", normal, np.vstack([left[:1], left]))
    moved = path + normal * (distance / np.clip(cos_half, 0.5, 1.0))[:, None]
    keep = distance_to_polyline(moved, path) >= abs(distance) - 0.25  # inner corners of tight zig-zags loop back
    keep[[0, -1]] = True
    return moved[keep]


def distance_to_polyline(points: np.ndarray, path: np.ndarray) -> np.ndarray:
    """(n,) distance of each point to a polyline (k, 2)."""
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(np.einsum("nkj,kj->nk", points[:, None] - a[None], ab) / np.maximum((ab**2).sum(1), 1e-12), 0, 1)
    nearest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None] - nearest, axis=2).min(1)


def smooth(path: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Chaikin corner cutting (ends kept): the polyline corners of simplified roads become drivable curves."""
    for _ in range(iterations):
        if len(path) < 3:
            return path
        q = 0.75 * path[:-1] + 0.25 * path[1:]
        r = 0.25 * path[:-1] + 0.75 * path[1:]
        path = np.vstack([path[:1], np.column_stack([q, r]).reshape(-1, 2)[1:-1], path[-1:]])
    return path


def min_radius(path: np.ndarray) -> float:
    """Tightest curve radius of a polyline, metres (segment length over turning angle at each vertex)."""
    d = np.diff(path, axis=0)
    length = np.linalg.norm(d, axis=1)
    keep = length > 1e-6
    d, length = d[keep], length[keep]
    if len(d) < 2:
        return math.inf
    turn = np.abs(np.arctan2(d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0], np.einsum("ij,ij->i", d[:-1], d[1:])))
    radius = (0.5 * (length[:-1] + length[1:])) / np.maximum(turn, 1e-9)
    return float(radius.min())


def bezier(p0, d0, p3, d3, bend: float, n: int = 10) -> np.ndarray:
    """A cubic Bezier leaving p0 along d0 and arriving at p3 along d3."""
    p1, p2 = p0 + d0 * bend, p3 - d3 * bend
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def polyline_length(path: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
