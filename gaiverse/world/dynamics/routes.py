"""Routes on a world's road graph: driving lanes by driving side, junction boxes, turns, sidewalks and crossings.

A road edge of `road_graph.RoadNetwork` gives two driving lanes (one per direction, offset from
the centre line to the driving side) and two sidewalks (offset past the kerb). Around every node
a junction box is cut out: its radius is where the carriageways of the meeting roads stop
touching, so vehicles waiting at different stop lines never touch each other, and only agents
that hold the box (`traffic.BoxReservations`) may be inside it. Turns join an incoming lane's
stop line to an outgoing lane's start inside the box; crossings join the two sidewalks of a road
across it, also inside the box; corners join the sidewalks of neighbouring roads around it.
Implements ENV-d2 (routes of traffic and pedestrians on the road graph).

Frame: x east, y north, metres (as the road graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import networkx as nx
import numpy as np

from gaiverse.world.road_graph import ROAD_WIDTH_M, SIDEWALK_M, RoadNetwork

#: Speed limit per road class, m/s (50 and 30 km/h).
SPEED_LIMIT_MPS: dict[str, float] = {"major": 50 / 3.6, "minor": 30 / 3.6}
#: Speed limit through a turn (a straight crossing keeps the road's limit), and a U-turn at a dead end, m/s.
TURN_LIMIT_MPS, UTURN_LIMIT_MPS = 5.0, 3.0
#: Distance of a lane's centre from the road's centre line, per class (a quarter of the carriageway), metres.
LANE_OFFSET_M: dict[str, float] = {c: w / 4 for c, w in ROAD_WIDTH_M.items()}

#: Least distance between the paths of two vehicle movements sharing a box (widest body 1.8 m + margin), and
#: between a vehicle's path and a crossing in use (half a body + a person off the crossing's middle + margin).
CAR_CLEARANCE_M, PERSON_CLEARANCE_M = 2.5, 2.4

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

    @property
    def length(self) -> float:
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

    @property
    def length(self) -> float:
        return float(self.s[-1])

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


# ---------------------------------------------------------------- polyline helpers

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


def _bezier(p0, d0, p3, d3, bend: float, n: int = 10) -> np.ndarray:
    """A cubic Bezier leaving p0 along d0 and arriving at p3 along d3."""
    p1, p2 = p0 + d0 * bend, p3 - d3 * bend
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


# ---------------------------------------------------------------- the street network

@dataclass
class StreetConfig:
    """How lanes, boxes and sidewalks are cut from the road graph (metres)."""

    driving_side: Literal["right", "left"] = "right"
    """Side of the road vehicles drive on."""
    box_margin_m: float = 0.75
    """Added to the distance at which the meeting carriageways separate."""
    dead_end_box_m: float = 3.0
    """Box radius at a dead end (where vehicles turn round)."""
    min_lane_m: float = 12.0
    """Lanes shorter than this between two boxes are not driven (no room to queue a car)."""
    narrow_radius_m: dict[str, float] = field(default_factory=lambda: {"major": 3.0, "minor": 9.0})
    """A road with a tighter curve (its smoothed centre line) is one-way at a time: in a curve that tight,
    bodies in opposite lanes would touch (a 4.9 m van 0.3 m from the other lane needs ~9 m of radius)."""


@dataclass
class StreetNetwork:
    """Lanes, turns, sidewalks, crossings and corners of one road network."""

    network: RoadNetwork
    config: StreetConfig
    box_radius: dict[int, float]
    """Junction box radius per node, metres."""
    lanes: dict[tuple, Segment]
    lane_end: dict[tuple, int]
    """Lane key -> the node it drives into."""
    turns: dict[tuple, Segment]
    """(in lane key, out lane key) -> the turn inside the node's box."""
    walks: dict[tuple, Segment]
    """Pedestrian segments (walks, crossings, corners) by key; the walking graph is `walk_graph`."""
    walk_graph: nx.MultiDiGraph
    """Nodes: corner points ("p", node, edge_id, end, side); edges carry `key` of a walk segment and `reverse`."""
    narrow: set[int] = field(default_factory=set)
    """Edges driven one direction at a time (curves too tight for two bodies side by side)."""
    _compatible: dict = field(default_factory=dict, repr=False)

    def next_lanes(self, lane: tuple) -> list[tuple]:
        """Lanes a vehicle may take after `lane` (U-turns only at dead ends)."""
        return [out for (a, out) in self.turns if a == lane]

    def lane_length_m(self) -> float:
        return float(sum(seg.length for seg in self.lanes.values()))

    def swept(self, movement: tuple) -> np.ndarray:
        """Points every 0.5 m where a body making `movement` through a box can be: a vehicle's turn with a car
        length of its lanes either side (("car", in lane, out lane)), or a crossing (("ped", crossing key))."""
        if movement[0] == "car":
            lane_in, lane_out = self.lanes[movement[1]].points, self.lanes[movement[2]].points
            n_in, n_out = _len(lane_in), _len(lane_out)
            pts = np.vstack([cut(lane_in, max(n_in - 6.0, 0.0), n_in, 0.5), self.turns[movement[1:]].points,
                             cut(lane_out, 0.0, min(6.0, n_out), 0.5)])
        else:
            pts = self.walks[movement[1]].points
        return cut(pts, 0.0, _len(pts), 0.5)

    def compatible(self, a: tuple, b: tuple) -> bool:
        """May two movements share a box? The same vehicle movement (one follows the other), people with people,
        else only when their swept paths stay clear of each other (vehicle width + margin)."""
        if a == b or (a[0] == "ped" and b[0] == "ped"):
            return True
        pair = (a, b) if repr(a) < repr(b) else (b, a)
        if pair not in self._compatible:
            clearance = CAR_CLEARANCE_M if a[0] == b[0] == "car" else PERSON_CLEARANCE_M
            gap = float(np.min(np.linalg.norm(self.swept(a)[:, None] - self.swept(b)[None], axis=2)))
            self._compatible[pair] = gap >= clearance
        return self._compatible[pair]


def _arms(network: RoadNetwork) -> dict[int, list[tuple[int, str, np.ndarray, str]]]:
    """Per node, its incident road ends: (edge id, "start" | "end", centre line from the node outward, class)."""
    arms: dict[int, list] = {n: [] for n in network.graph.nodes}
    for u, v, d in network.edges():
        path = d["path"] if d["start"] == u else d["path"][::-1]
        arms[u].append((d["id"], "start", path, d["cls"]))
        arms[v].append((d["id"], "end", path[::-1], d["cls"]))
    return arms


def _box_radius(arms: list, config: StreetConfig) -> float:
    """Distance from the node beyond which the carriageways of the meeting roads do not touch."""
    if len(arms) <= 1:
        return config.dead_end_box_m
    base = max(ROAD_WIDTH_M[c] / 2 + SIDEWALK_M[c] for *_, c in arms)
    samples = []
    for _, _, path, cls in arms:
        length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        pts = cut(path, 0.0, min(length, 40.0), 0.5)
        samples.append((pts, np.linalg.norm(pts - path[0], axis=1), ROAD_WIDTH_M[cls] / 2))
    far = 0.0
    for i in range(len(samples)):
        for j in range(i + 1, len(samples)):
            (pa, da, ha), (pb, db, hb) = samples[i], samples[j]
            close = np.linalg.norm(pa[:, None] - pb[None], axis=2) < ha + hb + 0.3
            if close.any():
                ia, ib = np.nonzero(close)
                far = max(far, float(np.maximum(da[ia], db[ib]).max()))
    return max(base, far + config.box_margin_m)


def build_streets(network: RoadNetwork, config: StreetConfig | None = None) -> StreetNetwork:
    """Cut lanes, turns, sidewalks, crossings and corners from a road network. Implements ENV-d2."""
    cfg = config or StreetConfig()
    arms = _arms(network)
    box = {n: _box_radius(a, cfg) for n, a in arms.items()}
    side = -1.0 if cfg.driving_side == "right" else 1.0
    lanes, lane_end, narrow = {}, {}, set()
    for u, v, d in network.edges():
        path = d["path"] if d["start"] == u else d["path"][::-1]
        length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        if length - box[u] - box[v] < cfg.min_lane_m:
            continue
        centre = cut(path, box[u], length - box[v])
        if min_radius(cut(smooth(path), box[u], length - box[v])) < cfg.narrow_radius_m[d["cls"]]:
            narrow.add(d["id"])
        for a, b, line in ((u, v, centre), (v, u, centre[::-1])):
            key = ("lane", d["id"], a)
            lanes[key] = Segment(key, "lane", offset(line, side * LANE_OFFSET_M[d["cls"]]), SPEED_LIMIT_MPS[d["cls"]],
                                 road_class=d["cls"])
            lane_end[key] = b
    turns = _turns(network, lanes, lane_end)
    walks, walk_graph = _walking(network, arms, box)
    return StreetNetwork(network, cfg, box, lanes, lane_end, turns, walks, walk_graph, narrow)


def _turns(network: RoadNetwork, lanes: dict, lane_end: dict) -> dict[tuple, Segment]:
    """Every movement through a box: from each lane into the node to each lane out of it (U-turn at dead ends)."""
    out_of: dict[int, list[tuple]] = {}
    for key in lanes:
        out_of.setdefault(key[2], []).append(key)
    turns = {}
    for key, seg in lanes.items():
        node = lane_end[key]
        options = [o for o in out_of.get(node, []) if o[1] != key[1]] or out_of.get(node, [])
        for out in options:
            p0, p3 = seg.points[-1], lanes[out].points[0]
            d0, d3 = _unit(seg.points[-1] - seg.points[-2]), _unit(lanes[out].points[1] - lanes[out].points[0])
            angle = abs(math.atan2(d0[0] * d3[1] - d0[1] * d3[0], float(d0 @ d3)))
            bend = max(0.4 * float(np.linalg.norm(p3 - p0)), 1.5)
            limit = (UTURN_LIMIT_MPS if out[1] == key[1] else
                     min(seg.limit_mps, lanes[out].limit_mps) if angle < 0.35 else TURN_LIMIT_MPS)
            points = _bezier(p0, d0, p3, d3, bend)
            if not _on_carriageway(network, points, (key[1], out[1])):
                continue  # a sharp turn whose curve would leave the road is not driven
            tkey = ("turn", node, key, out)
            turns[(key, out)] = Segment(tkey, "turn", points, limit, junction=node,
                                        road_class=seg.road_class)
    return turns


def _on_carriageway(network: RoadNetwork, points: np.ndarray, edge_ids: tuple[int, ...], margin: float = 0.4) -> bool:
    """Do all points lie on the carriageway of one of the given roads (centre line + half width + margin)?"""
    near = np.full(len(points), np.inf)
    for _, _, d in network.edges():
        if d["id"] in edge_ids:
            near = np.minimum(near, distance_to_polyline(points, d["path"]) - ROAD_WIDTH_M[d["cls"]] / 2)
    return bool((near <= margin).all())


def _walking(network: RoadNetwork, arms: dict, box: dict) -> tuple[dict, nx.MultiDiGraph]:
    """Sidewalks along both sides of every road, crossings inside each box, corners between neighbouring roads."""
    walks: dict[tuple, Segment] = {}
    graph = nx.MultiDiGraph()

    def link(a, b, seg: Segment) -> None:
        walks[seg.key] = seg
        graph.add_node(a, xy=seg.points[0])
        graph.add_node(b, xy=seg.points[-1])
        graph.add_edge(a, b, key=seg.key, reverse=False, length=seg.length)
        graph.add_edge(b, a, key=seg.key, reverse=True, length=seg.length)

    cross_at = {n: max(box[n] - 1.5, 1.0) if len(arms[n]) > 1 else 1.0 for n in arms}
    for u, v, d in network.edges():
        path = d["path"] if d["start"] == u else d["path"][::-1]
        length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        s0, s1 = cross_at[u], length - cross_at[v]
        if s1 - s0 < 2.0:
            continue
        centre, cls = cut(path, s0, s1), d["cls"]
        off = ROAD_WIDTH_M[cls] / 2 + SIDEWALK_M[cls] / 2
        for sign, name in ((1.0, "left"), (-1.0, "right")):
            key = ("walk", d["id"], name)
            link(("p", u, d["id"], "start", name), ("p", v, d["id"], "end", name),
                 Segment(key, "walk", offset(centre, sign * off), 1.6, road_class=cls, width_m=SIDEWALK_M[cls]))
        for node, end, line in ((u, "start", centre), (v, "end", centre[::-1])):
            t = _unit(line[1] - line[0])
            left = np.array([-t[1], t[0]])
            names = ("left", "right") if end == "start" else ("right", "left")  # sides seen from the road's start
            key = ("crossing", node, d["id"], end)
            link(("p", node, d["id"], end, names[0]), ("p", node, d["id"], end, names[1]),
                 Segment(key, "crossing", np.array([line[0] + left * off, line[0] - left * off]), 1.6, junction=node,
                         road_class=cls, width_m=2.0))
    _corners(network, arms, cross_at, graph, link)
    return walks, graph


def _corners(network: RoadNetwork, arms: dict, cross_at: dict, graph: nx.MultiDiGraph, link) -> None:
    """Join the facing sidewalks of angularly neighbouring roads around each junction (along the kerb lines)."""
    for node, items in arms.items():
        ends = []
        for eid, end, path, cls in items:
            p = ("p", node, eid, end, "left" if end == "start" else "right")
            if p not in graph:
                continue
            direction = _unit(cut(path, 0.0, min(cross_at[node] + 2.0, 0.99 * _len(path)), 1.0)[-1] - path[0])
            ends.append((math.atan2(direction[1], direction[0]), eid, end, direction, cls))
        ends.sort()
        if len(ends) < 2:
            continue
        centre = network.graph.nodes[node]["xy"]
        for k, (a_ang, a_id, a_end, a_dir, a_cls) in enumerate(ends):
            b_ang, b_id, b_end, b_dir, b_cls = ends[(k + 1) % len(ends)]
            # counter-clockwise from road a to road b: a's left sidewalk (seen outward) faces b's right one
            pa = ("p", node, a_id, a_end, "left" if a_end == "start" else "right")
            pb = ("p", node, b_id, b_end, "right" if b_end == "start" else "left")
            if pa not in graph or pb not in graph or pa == pb:
                continue
            sector = (b_ang - a_ang) % (2 * math.pi)
            pts = _corner_path(centre, graph.nodes[pa]["xy"], graph.nodes[pb]["xy"], a_dir, b_dir,
                               ROAD_WIDTH_M[a_cls] / 2 + SIDEWALK_M[a_cls] / 2,
                               ROAD_WIDTH_M[b_cls] / 2 + SIDEWALK_M[b_cls] / 2, sector or 2 * math.pi)
            link(pa, pb, Segment(("corner", node, pa, pb), "corner", pts, 1.6, junction=None,
                                 road_class=a_cls, width_m=min(SIDEWALK_M[a_cls], SIDEWALK_M[b_cls])))


def _len(path: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


def _corner_path(centre, xa, xb, a_dir, b_dir, off_a: float, off_b: float, sector: float) -> np.ndarray:
    """From sidewalk end xa round the corner to xb: via the point where the two kerb lines meet for a convex
    corner, along an arc round the junction for a straight or reflex one (which a chord would cut across)."""
    if sector >= math.pi - 0.25:  # along a's sidewalk to the node, round it at the sidewalk's offset, out along b's
        na, nb = np.array([-a_dir[1], a_dir[0]]), np.array([b_dir[1], -b_dir[0]])
        a0 = math.atan2(na[1], na[0])
        sweep = (math.atan2(nb[1], nb[0]) - a0) % (2 * math.pi)
        t = np.linspace(0.0, 1.0, 9)
        radius = off_a + (off_b - off_a) * t
        arc = centre + np.column_stack([np.cos(a0 + sweep * t), np.sin(a0 + sweep * t)]) * radius[:, None]
        return np.vstack([xa, arc, xb])
    corner = _kerb_corner(centre, a_dir, b_dir, off_a, off_b)
    return np.array([xa, xb]) if corner is None else np.array([xa, corner, xb])


def _kerb_corner(centre, a_dir, b_dir, off_a: float, off_b: float) -> np.ndarray | None:
    """Where road a's left sidewalk line meets road b's right one (None when they are parallel)."""
    na, nb = np.array([-a_dir[1], a_dir[0]]), np.array([b_dir[1], -b_dir[0]])
    pa, pb = centre + na * off_a, centre + nb * off_b
    m = np.column_stack([a_dir, -b_dir])
    if abs(np.linalg.det(m)) < 1e-6:
        return None
    t = np.linalg.solve(m, pb - pa)
    return pa + a_dir * t[0]
