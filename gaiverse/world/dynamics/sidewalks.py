"""The sidewalk graph of a road network: sidewalks along both sides of every road, crossings and corners.

Sidewalks run past the kerb on both sides of each road edge, between the crossings of its two end
nodes; a crossing joins the two sidewalks of a road across it inside the junction box; corners join
the facing sidewalks of angularly neighbouring roads around a junction (along the kerb lines, or
round the junction for straight and reflex corners). The walking graph's nodes are sidewalk ends;
its edges carry the segment key and the direction. Implements ENV-d2 (pedestrian routes on sidewalks).

Frame: x east, y north, metres (as the road graph).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from gaiverse.world.dynamics.polylines import cut, offset, polyline_length, unit
from gaiverse.world.dynamics.segments import Segment
from gaiverse.world.road_graph import ROAD_WIDTH_M, SIDEWALK_M, RoadNetwork


def walking_graph(network: RoadNetwork, arms: dict, box: dict,
                  arm_count: dict[int, int] | None = None) -> tuple[dict, nx.MultiDiGraph]:
    """Sidewalks along both sides of every road, crossings inside each box, corners between neighbouring roads.

    arm_count : roads meeting at each node (default: its arms here); a junction crosses inside its box."""
    walks: dict[tuple, Segment] = {}
    graph = nx.MultiDiGraph()

    def link(a, b, seg: Segment) -> None:
        walks[seg.key] = seg
        graph.add_node(a, xy=seg.points[0])
        graph.add_node(b, xy=seg.points[-1])
        graph.add_edge(a, b, key=seg.key, reverse=False, length=seg.length)
        graph.add_edge(b, a, key=seg.key, reverse=True, length=seg.length)

    count = arm_count or {n: len(a) for n, a in arms.items()}
    cross_at = {n: max(box[n] - 1.5, 1.0) if count[n] > 1 else 1.0 for n in arms}
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
            t = unit(line[1] - line[0])
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
            direction = unit(cut(path, 0.0, min(cross_at[node] + 2.0, 0.99 * polyline_length(path)), 1.0)[-1] - path[0])
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
