"""The street network of a world: the lane graph and the sidewalk graph cut from one road network.

`build_streets` cuts junction boxes, lanes and turns (`lanes.py`) and sidewalks, crossings and
corners (`sidewalks.py`) from a `road_graph.RoadNetwork`; `StreetNetwork` holds them and answers
which movements may share a junction box (what `traffic.BoxReservations` asks). Route sampling
over it is in `traffic.py` (vehicles) and `pedestrians.py` (people). Implements ENV-d2.

Frame: x east, y north, metres (as the road graph).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from gaiverse.world.dynamics.lanes import (
    CAR_CLEARANCE_M, PERSON_CLEARANCE_M, StreetConfig, box_radius, cut_lanes, cut_turns, road_arms,
)
from gaiverse.world.dynamics.polylines import cut, polyline_length
from gaiverse.world.dynamics.segments import Segment
from gaiverse.world.dynamics.sidewalks import walking_graph
from gaiverse.world.road_graph import RoadNetwork


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

    def walk_length_m(self) -> float:
        """Sidewalk length people are placed on (walks, not crossings)."""
        return float(sum(seg.length for seg in self.walks.values() if seg.kind == "walk"))

    def swept(self, movement: tuple) -> np.ndarray:
        """Points every 0.5 m where a body making `movement` through a box can be: a vehicle's turn with a car
        length of its lanes either side (("car", in lane, out lane)), or a crossing (("ped", crossing key))."""
        if movement[0] == "car":
            lane_in, lane_out = self.lanes[movement[1]].points, self.lanes[movement[2]].points
            n_in, n_out = polyline_length(lane_in), polyline_length(lane_out)
            pts = np.vstack([cut(lane_in, max(n_in - 6.0, 0.0), n_in, 0.5), self.turns[movement[1:]].points,
                             cut(lane_out, 0.0, min(6.0, n_out), 0.5)])
        else:
            pts = self.walks[movement[1]].points
        return cut(pts, 0.0, polyline_length(pts), 0.5)

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


def build_streets(network: RoadNetwork, config: StreetConfig | None = None,
                  within: RoadNetwork | None = None) -> StreetNetwork:
    """Cut lanes, turns, sidewalks, crossings and corners from a road network. Implements ENV-d2.

    within : a larger network `network` is part of (same node ids): junction boxes and crossings are
    cut as in it, so a rerouted part of a world stops where the whole world's junctions begin.
    """
    cfg = config or StreetConfig()
    arms = road_arms(network)
    outer = road_arms(within) if within is not None else arms
    box = {n: box_radius(outer[n], cfg) for n in arms}
    lanes, lane_end, narrow = cut_lanes(network, box, cfg)
    turns = cut_turns(network, lanes, lane_end)
    walks, walk_graph = walking_graph(network, arms, box, {n: len(outer[n]) for n in arms})
    return StreetNetwork(network, cfg, box, lanes, lane_end, turns, walks, walk_graph, narrow)
