"""Cleaning steps of a traced road graph: prune spurs, merge nodes, drop pieces, join dead ends, link components.

Each step edits a networkx graph in place (nodes carry `xy`, edges a `path` from node `start`)
and returns how many objects it changed, so `road_graph.build_road_network` can report what
cleaning did. Coordinates: metres, x east, y north. Implements ENV-d1 (cleaned road networks).
"""

from __future__ import annotations

import math
from typing import Callable

import networkx as nx
import numpy as np
from scipy.spatial import cKDTree

#: Closed loops (a road that comes back to its own node) shorter than this are skeleton artefacts.
MIN_LOOP_M = 40.0


def rc_to_xy(rc: np.ndarray, shape: tuple[int, int], cell_m: float) -> np.ndarray:
    """Pixel (row, col) -> metres (x east, y north) of the pixel centre."""
    rc = np.asarray(rc, dtype=np.float64)
    return np.column_stack([(rc[:, 1] + 0.5) * cell_m, (shape[0] - rc[:, 0] - 0.5) * cell_m])


def xy_to_rc(xy: np.ndarray, shape: tuple[int, int], cell_m: float) -> np.ndarray:
    """Metres (x east, y north) -> fractional pixel (row, col), inverse of rc_to_xy."""
    xy = np.asarray(xy, dtype=np.float64)
    return np.column_stack([shape[0] - xy[:, 1] / cell_m - 0.5, xy[:, 0] / cell_m - 0.5])


def path_length(path: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()) if len(path) > 1 else 0.0


def add_edge(graph: nx.Graph, u: int, v: int, path: np.ndarray, **attrs) -> None:
    """Add u-v with `path` (from u to v); of two parallel edges the shorter is kept; tiny self-loops dropped."""
    if u == v and path_length(path) < MIN_LOOP_M:
        return
    if graph.has_edge(u, v) and path_length(graph.edges[u, v]["path"]) <= path_length(path):
        return
    graph.add_edge(u, v, path=np.asarray(path, dtype=np.float64), start=u, kind=attrs.get("kind", "traced"))


def _edge_length(u: int, v: int, d: dict) -> float:
    return path_length(d["path"])


def oriented_path(graph: nx.Graph, u: int, v: int) -> np.ndarray:
    """Path of edge u-v oriented from u to v."""
    d = graph.edges[u, v]
    return d["path"] if d["start"] == u else d["path"][::-1]


def prune_spurs(graph: nx.Graph, spur_m: float, keep: Callable[[np.ndarray], bool] | None = None) -> int:
    """Remove dead-end edges shorter than spur_m that hang off a junction (repeat until none). Returns removed.

    keep : optional test on a dead end's `xy`; ends it accepts stay (e.g. roads leaving a tile's edge,
    which are not dead ends of the real network).
    """
    removed = 0
    changed = True
    while changed:
        changed = False
        for n in [n for n in graph.nodes if graph.degree(n) == 1]:
            if n not in graph or graph.degree(n) != 1 or (keep is not None and keep(graph.nodes[n]["xy"])):
                continue
            (m,) = graph.neighbors(n)
            if path_length(graph.edges[n, m]["path"]) < spur_m and graph.degree(m) >= 3:
                graph.remove_node(n)
                removed += 1
                changed = True
        merge_degree_two(graph)
    return removed


def merge_degree_two(graph: nx.Graph) -> int:
    """Join the two edges at every node of degree 2 into one edge (nodes only at ends and junctions)."""
    merged = 0
    for n in list(graph.nodes):
        if n not in graph or graph.degree(n) != 2 or graph.has_edge(n, n):
            continue
        a, b = graph.neighbors(n)
        if a == b:
            continue
        path = np.vstack([oriented_path(graph, a, n), oriented_path(graph, n, b)[1:]])
        kinds = {graph.edges[a, n]["kind"], graph.edges[n, b]["kind"]}
        if len(kinds) > 1:  # keep links apart from traced roads: they are classed and meshed differently
            continue
        graph.remove_node(n)
        add_edge(graph, a, b, path, kind=kinds.pop())
        merged += 1
    return merged


def merge_near_nodes(graph: nx.Graph, merge_m: float) -> int:
    """Contract edges shorter than merge_m between two nodes into one node at their mean position."""
    merged = 0
    while True:
        short = [(u, v) for u, v, d in graph.edges(data=True) if u != v and path_length(d["path"]) < merge_m
                 and graph.degree(u) > 1 and graph.degree(v) > 1]
        if not short:
            return merged
        u, v = min(short, key=lambda e: path_length(graph.edges[e]["path"]))
        centre = (graph.nodes[u]["xy"] + graph.nodes[v]["xy"]) / 2
        for w in list(graph.neighbors(v)):
            if w in (u, v):
                continue
            path = oriented_path(graph, v, w).copy()
            graph.remove_edge(v, w)
            add_edge(graph, u, w, path, kind="traced")
        graph.remove_node(v)
        graph.nodes[u]["xy"] = centre
        for w in list(graph.neighbors(u)):  # move the path ends onto the merged node
            if w == u:
                continue
            d = graph.edges[u, w]
            d["path"][0 if d["start"] == u else -1] = centre
        merged += 1


def drop_small_components(graph: nx.Graph, min_m: float) -> int:
    """Remove connected pieces whose total road length is below min_m. Returns nodes removed."""
    removed = 0
    for comp in list(nx.connected_components(graph)):
        total = sum(path_length(d["path"]) for _, _, d in graph.subgraph(comp).edges(data=True))
        if total < min_m:
            graph.remove_nodes_from(comp)
            removed += len(comp)
    return removed


def _split_at(graph: nx.Graph, u: int, v: int, index: int, point: np.ndarray) -> int:
    """Insert a node at path vertex `index` of edge u-v (oriented u -> v); returns the node (or an end)."""
    path = oriented_path(graph, u, v)
    if index <= 0:
        return u
    if index >= len(path) - 1:
        return v
    kind = graph.edges[u, v]["kind"]
    new = max(graph.nodes) + 1
    graph.add_node(new, xy=np.asarray(point, dtype=np.float64))
    graph.remove_edge(u, v)
    add_edge(graph, u, new, path[: index + 1], kind=kind)
    add_edge(graph, new, v, path[index:], kind=kind)
    return new


def _attach(graph: nx.Graph, point: np.ndarray) -> int:
    """The node at `point` on the current graph: an existing node, or a new one splitting the edge there."""
    pts, refs = _densified(graph)
    k = int(np.argmin(np.linalg.norm(pts - point, axis=1)))
    u, v, i = refs[k]
    return _split_at(graph, u, v, i, pts[k])


def _densified(graph: nx.Graph) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """All path vertices of all edges (traced paths have one every pixel) with their (u, v, vertex index)."""
    pts, refs = [], []
    for u, v, d in graph.edges(data=True):
        path = oriented_path(graph, u, v)
        for i, p in enumerate(path):
            pts.append(p)
            refs.append((u, v, i))
    return np.array(pts).reshape(-1, 2), refs


def _water_cost(a: np.ndarray, b: np.ndarray, water: np.ndarray | None, cell_m: float, factor: float) -> tuple[float, bool]:
    """Length of a straight link, with its part over water weighted by `factor`; and whether it crosses water."""
    length = float(np.linalg.norm(b - a))
    if water is None or length == 0:
        return length, False
    n = max(2, int(length / (cell_m / 2)))
    rc = np.round(xy_to_rc(a + (b - a) * np.linspace(0, 1, n)[:, None], water.shape, cell_m)).astype(int)
    rc = np.clip(rc, 0, np.array(water.shape) - 1)
    wet = float(water[rc[:, 0], rc[:, 1]].mean())
    return length * (1 + (factor - 1) * wet), wet > 0


def join_dead_ends(graph: nx.Graph, join_m: float, water: np.ndarray | None, cell_m: float,
                   max_turn_deg: float = 60.0) -> int:
    """Extend dead ends onto the road they point at: the best road point within join_m whose
    direction turns at most max_turn_deg from the dead end's heading, over land, and not
    already close through the network (no tiny triangles). Returns links added."""
    joined = 0
    if join_m <= 0:
        return joined
    cos_max = math.cos(math.radians(max_turn_deg))
    for n in [n for n in graph.nodes if graph.degree(n) == 1]:
        if n not in graph or graph.degree(n) != 1:
            continue
        (own,) = graph.neighbors(n)
        path = oriented_path(graph, own, n)
        tail = path[-min(len(path), 6):]
        heading = tail[-1] - tail[0]
        if np.linalg.norm(heading) < 1e-6:
            continue
        heading = heading / np.linalg.norm(heading)
        pts, refs = _densified(graph)
        keep = np.array([{u, v} != {n, own} for u, v, _ in refs])
        if not keep.any():
            continue
        here = graph.nodes[n]["xy"]
        vec = pts - here
        dist = np.linalg.norm(vec, axis=1)
        cos = (vec @ heading) / np.maximum(dist, 1e-9)
        ok = keep & (dist <= join_m) & (dist > 1e-6) & (cos >= cos_max)
        if not ok.any():
            continue
        score = np.where(ok, dist * (2.0 - cos), np.inf)  # prefer straight-ahead over merely near
        k = int(np.argmin(score))
        if _water_cost(here, pts[k], water, cell_m, 1.0)[1]:
            continue
        u, v, i = refs[k]
        target = _split_at(graph, u, v, i, pts[k])
        around = nx.single_source_dijkstra_path_length(graph, n, cutoff=3 * dist[k], weight=_edge_length)
        if target != n and target not in around:
            add_edge(graph, n, target, np.vstack([here, graph.nodes[target]["xy"]]), kind="link")
            joined += 1
    return joined


def link_components(graph: nx.Graph, max_link_m: float, water_link_factor: float, water: np.ndarray | None,
                    cell_m: float) -> int:
    """Connect all components with the cheapest straight links (a minimum spanning tree over components).

    Link cost is its length, with the stretch over water weighted by `water_link_factor`;
    components farther than `max_link_m` from every other one are dropped. Returns links added.
    """
    comps = [list(c) for c in nx.connected_components(graph)]
    if len(comps) < 2:
        return 0
    pts_of = []
    for comp in comps:
        sub = graph.subgraph(comp)
        pts, refs = _densified(sub)
        pts_of.append((pts, refs, cKDTree(pts)))
    cg = nx.Graph()
    cg.add_nodes_from(range(len(comps)))
    for i in range(len(comps)):
        for j in range(i + 1, len(comps)):
            dist, k = pts_of[j][2].query(pts_of[i][0])
            a = int(np.argmin(dist))
            if dist[a] > max_link_m:
                continue
            pa, pb = pts_of[i][0][a], pts_of[j][0][k[a]]
            cost, _ = _water_cost(pa, pb, water, cell_m, water_link_factor)
            cg.add_edge(i, j, weight=cost, ends=((i, a), (j, int(k[a]))))
    largest = max(range(len(comps)), key=lambda i: len(comps[i]))
    keep = nx.node_connected_component(cg, largest)
    for i in set(range(len(comps))) - keep:
        graph.remove_nodes_from(comps[i])
    links = 0
    for i, j, d in nx.minimum_spanning_tree(cg.subgraph(keep)).edges(data=True):
        a, b = (_attach(graph, pts_of[c][0][idx]) for c, idx in d["ends"])
        add_edge(graph, a, b, np.vstack([graph.nodes[a]["xy"], graph.nodes[b]["xy"]]), kind="link")
        links += 1
    return links


def simplify_path(path: np.ndarray, tol: float) -> np.ndarray:
    """Douglas-Peucker simplification of an (n, 2) polyline; ends are kept."""
    if len(path) < 3 or tol <= 0:
        return path
    keep = np.zeros(len(path), dtype=bool)
    keep[[0, -1]] = True
    stack = [(0, len(path) - 1)]
    while stack:
        i, j = stack.pop()
        a, b = path[i], path[j]
        seg = b - a
        inner = path[i + 1:j]
        if not len(inner):
            continue
        norm = np.linalg.norm(seg)
        d = (np.abs(seg[0] * (inner[:, 1] - a[1]) - seg[1] * (inner[:, 0] - a[0])) / norm if norm > 1e-9
             else np.linalg.norm(inner - a, axis=1))
        k = int(np.argmax(d))
        if d[k] > tol:
            keep[i + 1 + k] = True
            stack += [(i, i + 1 + k), (i + 1 + k, j)]
    return path[keep]
