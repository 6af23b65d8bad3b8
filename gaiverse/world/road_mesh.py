"""Road network -> graded road profiles, a ground carved to them, and road meshes that follow the terrain.

Each road is resampled along its centre line and given a height profile: the smoothed ground,
held to a maximum grade, lifted over water. Where the profile leaves the ground by more than
`bridge_min_m` (or crosses water) the road is a bridge on pillars; elsewhere the ground is
flattened to the profile in a corridor (cuts into hills, embankments over hollows), so the
road surface and the terrain agree. Carriageways and sidewalks get widths by class, junctions
get round patches. Implements ENV-d1 (roads meshed to follow the terrain; bridges or cuts).

Frame: x east, y north, z up, metres.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from gaiverse.world.glb import MeshPart
from gaiverse.world.road_graph import ROAD_HALF_WIDTH_M, ROAD_WIDTH_M, SIDEWALK_M, RoadNetwork
from gaiverse.world.terrain_mesh import HeightField

log = logging.getLogger(__name__)

ASPHALT = {"major": (58, 58, 62, 255), "minor": (74, 74, 78, 255)}
SIDEWALK = (176, 172, 164, 255)
MARKING = (236, 226, 160, 255)
CONCRETE = (150, 146, 140, 255)


@dataclass
class RoadMeshConfig:
    """How roads are graded and meshed (metres)."""

    step_m: float = 4.0
    """Spacing of centre-line samples."""
    max_grade: float = 0.10
    """Steepest road grade (rise / run)."""
    smooth_m: float = 24.0
    """Window of the moving average that smooths the ground under a road."""
    bridge_min_m: float = 6.0
    """A road more than this above the ground becomes a bridge (no embankment)."""
    clearance_m: float = 2.5
    """Height of a bridge deck above the water surface."""
    lift_m: float = 0.12
    """Road surface above the carved ground (avoids z-fighting)."""
    kerb_m: float = 0.15
    """Sidewalk height above the carriageway."""
    shoulder_m: float = 6.0
    """Width beyond the road edge over which a cut or embankment blends back into the ground."""
    pillar_every_m: float = 24.0
    """Spacing of bridge pillars."""


@dataclass
class GradedRoad:
    """One road edge resampled and graded."""

    id: int
    cls: str
    kind: str
    xy: np.ndarray
    """(k, 2) centre-line samples, metres."""
    z: np.ndarray
    """(k,) road surface heights (before `lift_m`), metres."""
    ground: np.ndarray
    """(k,) ground heights under the samples before carving, metres."""
    bridge: np.ndarray
    """(k,) bool: the sample is on a bridge deck."""
    u: int
    v: int

    @property
    def cut_m(self) -> float:
        """Deepest cut (ground above the road), metres."""
        return float(np.max(self.ground - self.z, initial=0.0))

    @property
    def fill_m(self) -> float:
        """Highest embankment or bridge (road above the ground), metres."""
        return float(np.max(self.z - self.ground, initial=0.0))


def _resample(path: np.ndarray, step: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(math.ceil(s[-1] / step)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(t, s, path[:, 0]), np.interp(t, s, path[:, 1])])


def _clamp_grade(z: np.ndarray, ds: np.ndarray, grade: float) -> np.ndarray:
    """Hold |dz/ds| <= grade with both ends pinned: a forward pass, then a backward pass."""
    z = z.copy()
    for i in range(1, len(z)):
        z[i] = np.clip(z[i], z[i - 1] - grade * ds[i - 1], z[i - 1] + grade * ds[i - 1])
    for i in range(len(z) - 2, -1, -1):
        z[i] = np.clip(z[i], z[i + 1] - grade * ds[i], z[i + 1] + grade * ds[i])
    return z


def grade_roads(network: RoadNetwork, ground: HeightField, water_at, water_level_m: float,
                config: RoadMeshConfig | None = None) -> list[GradedRoad]:
    """Height profiles of all roads; junctions share one height so roads meet. Implements ENV-d1.

    water_at : callable (n, 2) metres -> (n,) bool, True over water.
    """
    cfg = config or RoadMeshConfig()
    deck = water_level_m + cfg.clearance_m if water_level_m >= 0 else -np.inf
    node_z = {}
    for n, d in network.graph.nodes(data=True):
        z = float(ground.height_at(d["xy"][None])[0])
        node_z[n] = max(z, deck) if bool(water_at(d["xy"][None])[0]) else z
    graded = []
    for u, v, d in network.edges():
        path = d["path"] if d["start"] == u else d["path"][::-1]
        xy = _resample(path, cfg.step_m)
        xy[0], xy[-1] = network.graph.nodes[u]["xy"], network.graph.nodes[v]["xy"]
        g = ground.height_at(xy)
        wet = water_at(xy)
        ds = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        k = max(1, int(round(cfg.smooth_m / cfg.step_m)))
        z = np.convolve(np.pad(g, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
        z = np.where(wet, np.maximum(z, deck), z)
        z[0], z[-1] = node_z[u], node_z[v]
        z = _clamp_grade(z, ds, cfg.max_grade)
        z = np.where(wet, np.maximum(z, deck), z)
        bridge = wet | (z - g > cfg.bridge_min_m)
        graded.append(GradedRoad(d["id"], d["cls"], d["kind"], xy, z, g, bridge, u, v))
    return graded


def carve_ground(ground: HeightField, roads: list[GradedRoad], config: RoadMeshConfig | None = None) -> HeightField:
    """The ground flattened to the road profiles in a corridor (cuts and embankments, not under bridges).

    Corners within a road's half width (+ sidewalks + one grid spacing, so grid triangles cannot
    poke through the road) take the road's height; the next `shoulder_m` blend back to the ground.
    Returns a new HeightField. Implements ENV-d1 (cuts where slopes demand).
    """
    cfg = config or RoadMeshConfig()
    pts, z, core = [], [], []
    spacing = max(ground.spacing_m)
    for road in roads:
        keep = ~road.bridge
        pts.append(road.xy[keep])
        z.append(road.z[keep])
        core.append(np.full(int(keep.sum()), ROAD_HALF_WIDTH_M[road.cls] + spacing))
    if not pts or not sum(len(p) for p in pts):
        return ground
    pts, z, core = np.concatenate(pts), np.concatenate(z), np.concatenate(core)
    xs, ys = ground.grid_xy()
    grid = np.column_stack([xs.ravel(), ys.ravel()])
    dist, idx = cKDTree(pts).query(grid, distance_upper_bound=float(core.max() + cfg.shoulder_m))
    near = np.isfinite(dist)
    out = ground.corners.ravel().copy()
    i = idx[near]
    w = np.clip((dist[near] - core[i]) / cfg.shoulder_m, 0.0, 1.0)
    out[near] = z[i] * (1 - w) + out[near] * w
    return replace(ground, corners=out.reshape(ground.corners.shape))


# ---------------------------------------------------------------- meshing

class _Builder:
    """Accumulates vertex-coloured triangles."""

    def __init__(self):
        self.v: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.n = 0

    def add(self, vertices: np.ndarray, faces: np.ndarray, colour) -> None:
        self.v.append(np.asarray(vertices, float))
        self.f.append(np.asarray(faces, np.int64) + self.n)
        self.c.append(np.tile(np.asarray(colour, np.uint8), (len(vertices), 1)))
        self.n += len(vertices)

    def ribbon(self, left: np.ndarray, right: np.ndarray, colour) -> None:
        """Quads between two (k, 3) polylines, counter-clockwise seen from above when `left` is on the left."""
        k = len(left)
        if k < 2:
            return
        i = np.arange(k - 1)
        faces = np.concatenate([np.column_stack([i, k + i, k + i + 1]), np.column_stack([i, k + i + 1, i + 1])])
        self.add(np.vstack([left, right]), faces, colour)

    def part(self, name: str, extras: dict) -> MeshPart | None:
        if not self.f:
            return None
        return MeshPart(name, np.vstack(self.v), np.vstack(self.f).astype(np.uint32), np.vstack(self.c), extras)


def _trim(xy: np.ndarray, z: np.ndarray, bridge: np.ndarray, start: float, end: float):
    """Cut `start` metres off the first end and `end` off the last (at junction patches)."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    if s[-1] - start - end < 1.0:
        return None
    t = np.concatenate([[start], s[(s > start) & (s < s[-1] - end)], [s[-1] - end]])
    return (np.column_stack([np.interp(t, s, xy[:, 0]), np.interp(t, s, xy[:, 1])]), np.interp(t, s, z),
            np.interp(t, s, bridge.astype(float)) > 0.5)


def _normals(xy: np.ndarray) -> np.ndarray:
    """(k, 2) unit left normals of a polyline (central differences)."""
    t = np.gradient(xy, axis=0)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    return np.column_stack([-t[:, 1], t[:, 0]])


def road_part(road: GradedRoad, trim_start: float, trim_end: float, ground: HeightField,
              config: RoadMeshConfig) -> MeshPart | None:
    """Carriageway, kerbs, sidewalks, centre marking (major roads), bridge sides and pillars of one road."""
    cut = _trim(road.xy, road.z, road.bridge, trim_start, trim_end)
    if cut is None:
        return None
    xy, z, bridge = cut
    z = z + config.lift_m
    nrm = _normals(xy)
    half, side = ROAD_WIDTH_M[road.cls] / 2, SIDEWALK_M[road.cls]

    def at(offset: float, dz: float = 0.0) -> np.ndarray:
        p = xy + nrm * offset
        return np.column_stack([p, z + dz])

    b = _Builder()
    b.ribbon(at(half), at(-half), ASPHALT[road.cls])
    if road.cls == "major":
        b.ribbon(at(0.12, 0.01), at(-0.12, 0.01), MARKING)
    k = config.kerb_m
    for sign in (1, -1):  # left then right sidewalk: kerb face, then the walking surface
        inner, outer = sign * half, sign * (half + side)
        first, second = (at(inner, k), at(inner)) if sign > 0 else (at(inner), at(inner, k))  # faces the road
        b.ribbon(first, second, CONCRETE)
        b.ribbon(at(outer, k), at(inner, k), SIDEWALK) if sign > 0 else b.ribbon(at(inner, k), at(outer, k), SIDEWALK)
    if bridge.any():
        _bridge(b, xy, z, nrm, bridge, half + side, ground, config)
    extras = {"type": "road", "id": f"road_{road.id}", "class": road.cls, "kind": road.kind,
              "width_m": ROAD_WIDTH_M[road.cls], "sidewalk_m": side, "bridge": bool(road.bridge.any()),
              "length_m": round(float(np.linalg.norm(np.diff(road.xy, axis=0), axis=1).sum()), 2),
              "max_cut_m": round(road.cut_m, 2), "max_fill_m": round(road.fill_m, 2)}
    return b.part(f"road_{road.id}", extras)


def _bridge(b: _Builder, xy, z, nrm, bridge, half_out: float, ground: HeightField, config: RoadMeshConfig) -> None:
    """Deck sides (1 m slab) along bridge stretches and square pillars down to the ground."""
    idx = np.nonzero(bridge)[0]
    lo, hi = max(idx.min() - 1, 0), min(idx.max() + 1, len(xy) - 1)
    for sign in (1, -1):
        top = np.column_stack([xy[lo:hi + 1] + sign * nrm[lo:hi + 1] * half_out, z[lo:hi + 1]])
        bottom = top - [0, 0, 1.0]
        b.ribbon(bottom, top, CONCRETE) if sign > 0 else b.ribbon(top, bottom, CONCRETE)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    for at_s in np.arange(s[lo] + config.pillar_every_m / 2, s[hi], config.pillar_every_m):
        i = int(np.searchsorted(s, at_s).clip(0, len(xy) - 1))
        if not bridge[i]:
            continue
        top = z[i] - 1.0
        foot = float(ground.height_at(xy[i][None])[0]) - 1.0
        if top - foot > 0.5:
            b.add(*_box(xy[i], foot, top, 0.8), CONCRETE)


def _box(centre: np.ndarray, z0: float, z1: float, half: float) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned square column from z0 to z1 (sides only)."""
    x, y = centre
    ring = np.array([[x - half, y - half], [x + half, y - half], [x + half, y + half], [x - half, y + half]])
    v = np.vstack([np.column_stack([ring, np.full(4, z0)]), np.column_stack([ring, np.full(4, z1)])])
    faces = []
    for i in range(4):
        j = (i + 1) % 4
        faces += [[i, j, 4 + j], [i, 4 + j, 4 + i]]
    return v, np.array(faces)


def junction_part(node: int, xy: np.ndarray, z: float, radius: float, degree: int, config: RoadMeshConfig,
                  segments: int = 16) -> MeshPart:
    """A flat disc of asphalt covering the meeting roads at a junction."""
    a = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.column_stack([xy[0] + radius * np.cos(a), xy[1] + radius * np.sin(a), np.full(segments, z + config.lift_m + 0.02)])
    v = np.vstack([[xy[0], xy[1], z + config.lift_m + 0.02], ring])
    faces = np.array([[0, 1 + i, 1 + (i + 1) % segments] for i in range(segments)], np.uint32)
    colours = np.tile(np.array(ASPHALT["minor"], np.uint8), (len(v), 1))
    return MeshPart(f"junction_{node}", v, faces, colours, {"type": "junction", "id": f"junction_{node}",
                                                              "degree": int(degree), "radius_m": round(radius, 2)})


def road_meshes(network: RoadNetwork, roads: list[GradedRoad], ground: HeightField,
                config: RoadMeshConfig | None = None) -> list[MeshPart]:
    """One part per road and per junction (degree >= 3), on the carved ground. Implements ENV-d1."""
    cfg = config or RoadMeshConfig()
    g = network.graph
    radius = {n: max(ROAD_HALF_WIDTH_M[g.edges[e]["cls"]] for e in g.edges(n)) for n in g.nodes if g.degree(n) >= 3}
    node_z = {}
    for road in roads:
        node_z.setdefault(road.u, float(road.z[0]))
        node_z.setdefault(road.v, float(road.z[-1]))
    parts = [p for road in roads
             if (p := road_part(road, radius.get(road.u, 0.0) * 0.9, radius.get(road.v, 0.0) * 0.9, ground, cfg))]
    parts += [junction_part(n, g.nodes[n]["xy"], node_z[n], r, g.degree(n), cfg) for n, r in sorted(radius.items())]
    log.info("road meshes: %d roads, %d junctions, %d triangles", len(roads), len(radius),
             sum(p.n_triangles for p in parts))
    return parts
