"""Road-network statistics of raster road masks, distances, and random/grid baselines.

Every network (real OSM, generated, baseline) goes through the same raster pipeline: road mask
-> Zhang-Suen skeleton -> graph of junctions, dead ends and segments -> statistics, so the
comparison measures the networks and not the differences between vector and raster data.
Implements ENV-a2 (measuring that generated road layouts are realistic).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, stats

log = logging.getLogger(__name__)

_N8 = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]  # clockwise from NW
#: Orientation histogram bins over 360 degrees (as OSMnx's orientation entropy).
ORIENTATION_BINS = 36


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen (1984) thinning of a boolean mask to a one-pixel-wide skeleton: (h, w) bool."""
    img = np.pad(np.asarray(mask, dtype=bool), 1).astype(np.uint8)
    if img.ndim != 2:
        raise ValueError(f"`mask` must be 2-D, got shape {np.asarray(mask).shape}")
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(img, -dy, 0), -dx, 1) for dy, dx in
                 [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]]  # P2..P9
            b = sum(p)
            a = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8))
            if step == 0:
                c1, c2 = p[0] * p[2] * p[4], p[2] * p[4] * p[6]
            else:
                c1, c2 = p[0] * p[2] * p[6], p[0] * p[4] * p[6]
            remove = (img == 1) & (b >= 2) & (b <= 6) & (a == 1) & (c1 == 0) & (c2 == 0)
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def thin_many(masks: np.ndarray) -> np.ndarray:
    """Thin a stack of masks (k, h, w) at once: (k, h, w) bool skeletons, each as `thin` gives it.

    Thinning is local (3x3), so the masks are laid out in one image separated by empty rows and
    thinned together: one numpy pass instead of k (density matching thins dozens of candidates).
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"`masks` must have shape (k, h, w), got {masks.shape}")
    k, h, w = masks.shape
    if k == 0:
        return masks.copy()
    mosaic = np.pad(masks, ((0, 0), (1, 1), (0, 0))).reshape(k * (h + 2), w)
    return thin(mosaic).reshape(k, h + 2, w)[:, 1:-1]


@dataclass
class RoadGraph:
    """Graph of a skeleton: nodes are junction clusters and line ends, edges are pixel paths."""

    node_degree: list[int] = field(default_factory=list)
    """Degree of each node (number of segment ends touching it)."""
    node_on_border: list[bool] = field(default_factory=list)
    """True when the node lies on the tile border (a road leaving the tile, not a dead end)."""
    segment_length_px: list[float] = field(default_factory=list)
    """Length of each segment along its pixels (1 per step, sqrt 2 per diagonal step)."""
    segment_bearing_deg: list[float] = field(default_factory=list)
    """Bearing of each segment's chord, degrees in [0, 360) measured from north, both directions."""


def skeleton_graph(skeleton: np.ndarray, min_spur_px: float = 3.0) -> RoadGraph:
    """Trace a skeleton into a RoadGraph; dead-end spurs shorter than `min_spur_px` are dropped."""
    sk = np.asarray(skeleton, dtype=bool)
    h, w = sk.shape
    padded = np.pad(sk, 1)
    nbr = sum(np.roll(np.roll(padded, -dy, 0), -dx, 1).astype(np.int8) for dy, dx in _N8)[1:-1, 1:-1]
    node_px = sk & (nbr != 2)
    labels, n_nodes = ndimage.label(node_px, structure=np.ones((3, 3)))
    degree = np.zeros(n_nodes + 1, dtype=int)
    graph = RoadGraph()
    segments: list[tuple[int, int, float, float]] = []  # (node a, node b, length, bearing)
    visited = np.zeros_like(sk)

    def walk(start_node: int, r: int, c: int, pr: int, pc: int) -> None:
        length = math.hypot(r - pr, c - pc)
        r0, c0 = pr, pc
        while True:
            if labels[r, c]:
                segments.append((start_node, int(labels[r, c]), length, _bearing(r0, c0, r, c)))
                return
            visited[r, c] = True
            nxt = [(r + dy, c + dx) for dy, dx in _N8 if 0 <= r + dy < h and 0 <= c + dx < w
                   and sk[r + dy, c + dx] and (r + dy, c + dx) != (pr, pc)
                   and (labels[r + dy, c + dx] != start_node or length > 1.5)
                   and not visited[r + dy, c + dx]]
            if not nxt:  # closed loop back into visited pixels
                return
            # prefer a node neighbour so a path ends at the first junction it touches
            nxt.sort(key=lambda p: (labels[p] == 0, abs(p[0] - r) + abs(p[1] - c)))
            pr, pc, (r, c) = r, c, nxt[0]
            length += math.hypot(r - pr, c - pc)

    for r, c in zip(*np.nonzero(node_px)):
        for dy, dx in _N8:
            rr, cc = r + dy, c + dx
            if 0 <= rr < h and 0 <= cc < w and sk[rr, cc] and not labels[rr, cc] and not visited[rr, cc]:
                walk(int(labels[r, c]), rr, cc, r, c)
    for a, b, length, bearing in segments:
        degree[a] += 1
        degree[b] += 1
    border = np.zeros(n_nodes + 1, dtype=bool)
    edge = np.zeros_like(sk)  # thinning erodes a line end by ~1 px: a 2-px band counts as border
    edge[[0, 1, -2, -1], :] = True
    edge[:, [0, 1, -2, -1]] = True
    np.logical_or.at(border, labels[edge & node_px], True)
    # drop short dead-end spurs (thinning artefacts of wide roads); their junction loses a degree
    for a, b, length, bearing in segments:
        spur = length < min_spur_px and (
            (degree[a] == 1 and not border[a] and degree[b] >= 3) or
            (degree[b] == 1 and not border[b] and degree[a] >= 3))
        if spur:
            degree[a] -= 1
            degree[b] -= 1
            continue
        graph.segment_length_px.append(length)
        graph.segment_bearing_deg.append(bearing)
    for node in range(1, n_nodes + 1):
        if degree[node] > 0 and degree[node] != 2:
            graph.node_degree.append(int(degree[node]))
            graph.node_on_border.append(bool(border[node]))
    return graph


def _bearing(r0: int, c0: int, r1: int, c1: int) -> float:
    return float(math.degrees(math.atan2(c1 - c0, r0 - r1)) % 360.0)


@dataclass
class RoadStats:
    """Per-tile road-network statistics of a set of road masks."""

    intersection_density: np.ndarray
    """(n,) junctions (degree >= 3) per km2."""
    dead_end_share: np.ndarray
    """(n,) dead ends / (dead ends + junctions), border ends excluded; NaN when no node."""
    road_density: np.ndarray
    """(n,) skeleton length in km per km2."""
    orientation_entropy: np.ndarray
    """(n,) Shannon entropy (nats) of length-weighted bearings in 36 bins; NaN with no road."""
    segment_length_m: np.ndarray
    """Pooled segment lengths, metres."""
    degree_hist: np.ndarray
    """(3,) share of non-border nodes with degree 1, 3, >= 4."""


def road_stats(masks: np.ndarray, cell_m: float) -> RoadStats:
    """Statistics of road masks (n, h, w) bool (any road class) at `cell_m` metres per pixel."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"`masks` must have shape (n, h, w), got {masks.shape}")
    if cell_m <= 0:
        raise ValueError(f"`cell_m` must be positive, got {cell_m}")
    area_km2 = masks.shape[1] * masks.shape[2] * (cell_m / 1000.0) ** 2
    inter, dead, dens, ent, seg, degrees = [], [], [], [], [], []
    for mask in masks:
        skeleton = thin(mask)
        g = skeleton_graph(skeleton)
        deg = np.array(g.node_degree, dtype=int)
        inner = ~np.array(g.node_on_border, dtype=bool)
        n_junction = int((deg >= 3).sum())
        n_dead = int(((deg == 1) & inner).sum())
        inter.append(n_junction / area_km2)
        dead.append(n_dead / (n_dead + n_junction) if n_dead + n_junction else np.nan)
        dens.append(skeleton.sum() * cell_m / 1000.0 / area_km2)
        ent.append(orientation_entropy(np.array(g.segment_bearing_deg), np.array(g.segment_length_px)))
        seg.extend(np.array(g.segment_length_px) * cell_m)
        degrees.extend(deg[inner].tolist())
    degrees_a = np.array(degrees, dtype=int)
    hist = np.array([(degrees_a == 1).sum(), (degrees_a == 3).sum(), (degrees_a >= 4).sum()], dtype=float)
    return RoadStats(np.array(inter), np.array(dead), np.array(dens), np.array(ent),
                     np.array(seg, dtype=float), hist / max(hist.sum(), 1.0))


def orientation_entropy(bearings_deg: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Entropy (nats) of bearings counted in both directions, 36 bins; ln(36) = 3.58 is uniform,
    a perfect grid gives ln(4) = 1.39. NaN when there is no bearing."""
    bearings_deg = np.asarray(bearings_deg, dtype=float)
    if bearings_deg.size == 0:
        return float("nan")
    weights = np.ones_like(bearings_deg) if weights is None else np.asarray(weights, dtype=float)
    both = np.concatenate([bearings_deg, (bearings_deg + 180.0) % 360.0])
    # offset by half a bin so north-south / east-west bearings fall in the middle of bins
    hist, _ = np.histogram((both + 180.0 / ORIENTATION_BINS) % 360.0, bins=ORIENTATION_BINS,
                           range=(0.0, 360.0), weights=np.concatenate([weights, weights]))
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log(p)).sum())


#: Distances reported by compare_roads, all lower-is-better.
ROAD_METRICS = ("intersection_density_w1", "dead_end_share_w1", "road_density_w1",
                "orientation_entropy_w1", "segment_length_w1", "segment_length_ks", "node_degree_tv")


def compare_roads(gen: RoadStats, real: RoadStats) -> dict[str, float]:
    """Distances between generated and real road statistics: W1 of per-tile values (in their
    units), W1 / KS of pooled segment lengths (m / -), total variation of node-degree shares."""
    def w1(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        return float(stats.wasserstein_distance(a, b)) if a.size and b.size else float("nan")

    has_seg = gen.segment_length_m.size and real.segment_length_m.size
    return {
        "intersection_density_w1": w1(gen.intersection_density, real.intersection_density),
        "dead_end_share_w1": w1(gen.dead_end_share, real.dead_end_share),
        "road_density_w1": w1(gen.road_density, real.road_density),
        "orientation_entropy_w1": w1(gen.orientation_entropy, real.orientation_entropy),
        "segment_length_w1": w1(gen.segment_length_m, real.segment_length_m),
        "segment_length_ks": float(stats.ks_2samp(gen.segment_length_m, real.segment_length_m).statistic)
        if has_seg else float("nan"),
        "node_degree_tv": float(0.5 * np.abs(gen.degree_hist - real.degree_hist).sum()),
    }


def grid_baseline(shape: tuple[int, int], density_km_km2: float, cell_m: float,
                  rng: np.random.Generator | int | None = None, keep: float = 0.85) -> np.ndarray:
    """A jittered, randomly rotated Manhattan grid with the given road density: (h, w) bool.

    Spacing s gives density 2 / s (km/km2 with s in km); each grid edge is kept with
    probability `keep`, so dead ends and T-junctions appear as in real grids.
    """
    rng = np.random.default_rng(rng)
    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    if density_km_km2 <= 0:
        return mask
    spacing_px = max(2.0, 2.0 / density_km_km2 * 1000.0 / cell_m)
    theta = rng.uniform(0, np.pi / 2)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    span = int(math.ceil(max(h, w) * 1.5 / spacing_px)) + 1
    off = rng.uniform(0, spacing_px, 2)
    centre = np.array([h / 2, w / 2])
    for i in range(-span, span):
        for j in range(-span, span):
            p = np.array([i * spacing_px + off[0], j * spacing_px + off[1]])
            for q in (p + [spacing_px, 0], p + [0, spacing_px]):
                if rng.random() < keep:
                    _segment(mask, rot @ p + centre, rot @ q + centre)
    return mask


def random_baseline(shape: tuple[int, int], density_km_km2: float, cell_m: float,
                    rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Random straight segments (uniform position, direction, length 5-30 % of the tile edge)
    until the road density is reached: (h, w) bool."""
    rng = np.random.default_rng(rng)
    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    target_px = density_km_km2 * (h * w * cell_m**2 / 1e6) * 1000.0 / cell_m
    drawn = 0.0
    while drawn < target_px:
        a = rng.uniform([0, 0], [h, w])
        length = rng.uniform(0.05, 0.3) * max(h, w)
        angle = rng.uniform(0, 2 * np.pi)
        _segment(mask, a, a + length * np.array([np.sin(angle), np.cos(angle)]))
        drawn += length
    return mask


def _segment(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Draw the segment a -> b ((row, col) floats) into mask, clipped to the grid."""
    n = int(math.ceil(np.abs(b - a).max() * 2)) + 1
    t = np.linspace(0, 1, n)[:, None]
    pts = np.floor(a + (b - a) * t).astype(int)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < mask.shape[0]) & (pts[:, 1] >= 0) & (pts[:, 1] < mask.shape[1])
    mask[pts[ok, 0], pts[ok, 1]] = True
