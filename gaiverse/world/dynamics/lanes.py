"""The lane graph of a road network: driving lanes by driving side, junction boxes and turns through them.

A road edge of `road_graph.RoadNetwork` gives two driving lanes (one per direction, offset from
the centre line to the driving side). Around every node a junction box is cut out: its radius is
where the carriageways of the meeting roads stop touching, so vehicles waiting at different stop
lines never touch each other, and only agents that hold the box (`traffic.BoxReservations`) may be
inside it. Turns join an incoming lane's stop line to an outgoing lane's start inside the box
(U-turns only at dead ends). Implements ENV-d2 (vehicle routes on the road graph).

Frame: x east, y north, metres (as the road graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gaiverse.world.dynamics.polylines import bezier, cut, distance_to_polyline, min_radius, offset, smooth, unit
from gaiverse.world.dynamics.segments import Segment
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


def road_arms(network: RoadNetwork) -> dict[int, list[tuple[int, str, np.ndarray, str]]]:
    """Per node, its incident road ends: (edge id, "start" | "end", centre line from the node outward, class)."""
    arms: dict[int, list] = {n: [] for n in network.graph.nodes}
    for u, v, d in network.edges():
        path = d["path"] if d["start"] == u else d["path"][::-1]
        arms[u].append((d["id"], "start", path, d["cls"]))
        arms[v].append((d["id"], "end", path[::-1], d["cls"]))
    return arms


def box_radius(arms: list, config: StreetConfig) -> float:
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


def cut_lanes(network: RoadNetwork, box: dict[int, float], cfg: StreetConfig) -> tuple[dict, dict, set[int]]:
    """Two lanes per road edge between its end boxes: (lanes by key, node each lane drives into, narrow edges)."""
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
    return lanes, lane_end, narrow


def cut_turns(network: RoadNetwork, lanes: dict, lane_end: dict) -> dict[tuple, Segment]:
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
            d0, d3 = unit(seg.points[-1] - seg.points[-2]), unit(lanes[out].points[1] - lanes[out].points[0])
            angle = abs(math.atan2(d0[0] * d3[1] - d0[1] * d3[0], float(d0 @ d3)))
            bend = max(0.4 * float(np.linalg.norm(p3 - p0)), 1.5)
            limit = (UTURN_LIMIT_MPS if out[1] == key[1] else
                     min(seg.limit_mps, lanes[out].limit_mps) if angle < 0.35 else TURN_LIMIT_MPS)
            points = bezier(p0, d0, p3, d3, bend)
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

