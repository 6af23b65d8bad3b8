"""Segments and routes: the pieces agents move along, and routes as arc-length parametrised polylines.

A `Segment` is one lane, turn, sidewalk, crossing or corner of the street network; a `Route` joins
segments end to start and gives positions and headings by arc length; a `RouteSet` evaluates many
routes at once (what the traffic and crowd simulations step). Implements ENV-d2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

SegmentKind = Literal["lane", "turn", "walk", "crossing", "corner"]


@dataclass
class Segment:
    """A piece of a route: a polyline with a speed limit, maybe inside one junction box."""

    key: tuple
    """("lane", edge_id, from_node) | ("turn", node, in_key, out_key) | ("walk", edge_id, side) |
    ("crossing", node, edge_id, end) | ("corner", node, a, b)."""
    kind: SegmentKind
    points: np.ndarray
    """(k, 2) metres."""
    limit_mps: float
    junction: int | None = None
    """The node whose box the segment lies in (turns, crossings, corners), else None."""
    road_class: str = "minor"
    width_m: float = 0.0
    """Usable width across the segment (sidewalk or crossing width), metres; 0 for vehicle segments."""

    @cached_property
    def length(self) -> float:
        """Measured once (points are never changed in place): routes and the traffic read it every step."""
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


@dataclass
class Route:
    """Consecutive segments joined end to start: positions and headings by arc length."""

    segments: list[Segment]
    points: np.ndarray = field(init=False)
    s: np.ndarray = field(init=False)
    starts: np.ndarray = field(init=False)
    """(n_segments + 1,) arc length where each segment starts (last: total length)."""

    def __post_init__(self) -> None:
        pts, starts, total = [], [0.0], 0.0
        for seg in self.segments:
            pts.append(seg.points if not pts else seg.points[1:])
            total += seg.length
            starts.append(total)
        self.points = np.vstack(pts)
        self.s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.points, axis=0), axis=1))])
        self.starts = np.asarray(starts) * (self.s[-1] / max(total, 1e-9))
        # the same values as Python floats: the simulators read them per agent and step, where numpy scalars
        # cost several times more (identical arithmetic: both are IEEE doubles)
        self.starts_list: list[float] = self.starts.tolist()
        self.s_list: list[float] = self.s.tolist()
        self._length = float(self.s[-1])

    @property
    def length(self) -> float:
        return self._length

    def segment_at(self, s: float) -> int:
        return int(min(np.searchsorted(self.starts, s, side="right") - 1, len(self.segments) - 1))

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions (n, 2) and unit tangents (n, 2) at arc lengths s (n,), clamped to the route."""
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length)
        i = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.s) - 2)
        seg = self.points[i + 1] - self.points[i]
        span = np.maximum(self.s[i + 1] - self.s[i], 1e-9)
        xy = self.points[i] + seg * ((s - self.s[i]) / span)[:, None]
        return xy, seg / np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9)


class RouteSet:
    """Many routes at once: vectorised positions, tangents and segments for arc lengths s (n,), one per route."""

    SPAN = 1e7
    """Arc lengths of route i are shifted by i * SPAN so one sorted array holds all routes."""

    def __init__(self, routes: list[Route]):
        self.routes = routes
        n = len(routes)
        self.length = np.array([r.length for r in routes])
        self.points = np.vstack([r.points for r in routes]) if n else np.zeros((0, 2))
        self.s = np.concatenate([r.s + i * self.SPAN for i, r in enumerate(routes)]) if n else np.zeros(0)
        self.point_end = np.cumsum([len(r.s) for r in routes], dtype=int) - 1
        self.starts = np.concatenate([r.starts[:-1] + i * self.SPAN for i, r in enumerate(routes)]) if n else np.zeros(0)
        self.first_segment = np.concatenate([[0], np.cumsum([len(r.segments) for r in routes], dtype=int)])
        self.segments = [seg for r in routes for seg in r.segments]
        self.width = np.array([seg.width_m for seg in self.segments])

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (n, 2), unit tangents (n, 2) and global segment indices (n,) at arc lengths s (n,)."""
        if not self.routes:
            return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, int)
        offset = np.arange(len(self.routes)) * self.SPAN
        g = np.clip(s, 0.0, self.length) + offset
        i = np.clip(np.searchsorted(self.s, g, side="right") - 1, 0, None)
        i = np.minimum(i, self.point_end - 1)
        seg = self.points[i + 1] - self.points[i]
        span = np.maximum(self.s[i + 1] - self.s[i], 1e-9)
        xy = self.points[i] + seg * ((g - self.s[i]) / span)[:, None]
        k = np.searchsorted(self.starts, g, side="right") - 1
        k = np.clip(k, self.first_segment[:-1], self.first_segment[1:] - 1)
        return xy, seg / np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9), k

