"""Checks of simulated dynamics against the road graph: what the world flow validates before publishing.

Measured from the sampled trajectories (what the .glb carries), not from the simulator's state:
- every vehicle position and every lane/turn point lies on the road graph: within `tol_m` of its
  lane (the centre line offset to the driving side) or, inside a junction box, on a carriageway;
- no two vehicle bodies (oriented rectangles) overlap at any sampled time;
- pedestrians stand on walkable areas: a sidewalk band (kerb to sidewalk edge) or a crossing;
- speeds (between samples) stay within the limit of the road class they are on.
People closer than two body radii and people inside a vehicle's body are counted and reported.
Implements ENV-d2 (outputs validated: routes on the road graph, no overlapping vehicles).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gaiverse.world.dynamics.pedestrians import PERSON_RADIUS_M
from gaiverse.world.dynamics.lanes import LANE_OFFSET_M, SPEED_LIMIT_MPS
from gaiverse.world.dynamics.polylines import cut
from gaiverse.world.dynamics.simulate import Dynamics
from gaiverse.world.road_graph import ROAD_WIDTH_M, SIDEWALK_M


PEDESTRIAN_OFF_WALKWAY_SHARE = 0.05
"""Share of pedestrian samples allowed off the walkways (sidewalk offsets at the raster roads' tightest kinks);
every other check allows no violation."""
CHORD_SLACK_M = 0.5
"""Extra tolerance for vehicle centres (between the axles, on the chord of the route) over route points."""


@dataclass
class DynamicsCheck:
    """Counts of each kind of violation (0 = passed), the worst values seen, and the first few messages."""

    counts: dict[str, int]
    metrics: dict[str, float]
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def frame(self) -> pd.DataFrame:
        """One row per check for the validation suite: check name, violations."""
        return pd.DataFrame([{"check": k, "violations": int(v)} for k, v in self.counts.items()])


class _Centrelines:
    """Road centre lines sampled every 0.5 m with their class geometry, for nearest-road queries."""

    def __init__(self, dyn: Dynamics):
        pts, cls = [], []
        for path, c in zip(dyn.streets.network.polylines, dyn.streets.network.classes):
            sampled = cut(path, 0.0, float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()), 0.5)
            pts.append(sampled)
            cls += [c] * len(sampled)
        self.points = np.vstack(pts) if pts else np.zeros((0, 2))
        self.half = np.array([ROAD_WIDTH_M[c] / 2 for c in cls] + [np.inf])
        self.outer = np.array([ROAD_WIDTH_M[c] / 2 + SIDEWALK_M[c] for c in cls] + [-np.inf])
        self.lane = np.array([LANE_OFFSET_M[c] for c in cls] + [np.inf])
        self.limit = np.array([SPEED_LIMIT_MPS[c] for c in cls] + [0.0])
        self.tree = cKDTree(self.points)
        g = dyn.streets.network.graph
        nodes = sorted(g.nodes)
        self.node_xy = np.array([g.nodes[n]["xy"] for n in nodes]).reshape(-1, 2)
        self.node_r = np.array([dyn.streets.box_radius[n] for n in nodes])

    def near(self, xy: np.ndarray, k: int = 24) -> tuple[np.ndarray, np.ndarray]:
        """Distances (n, k) and sample indices (n, k) of the nearest centre-line samples within 12 m (the checks'
        heaviest part: every sample of every agent; the points are independent, so on all cores)."""
        return self.tree.query(xy, k=k, distance_upper_bound=12.0, workers=-1)

    def in_box(self, xy: np.ndarray, tol: float) -> np.ndarray:
        d = np.linalg.norm(xy[:, None] - self.node_xy[None], axis=2)
        return (d <= self.node_r[None] + tol).any(1)


def _on_road(lines: _Centrelines, xy: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(n,) bool: within `tol` of the carriageway of some road; (n,) distance from the nearest road's lane line
    (the centre line offset to the driving side; 0 inside junction boxes, where turns run)."""
    d, i = lines.near(xy)
    found = np.isfinite(d[:, 0])
    with np.errstate(invalid="ignore"):  # inf - inf where no road is near: those are marked off the road anyway
        lane_error = np.where(lines.in_box(xy, tol), 0.0, np.where(found, np.abs(d[:, 0] - lines.lane[i[:, 0]]), np.inf))
    return (np.isfinite(d) & (d <= lines.half[i] + tol)).any(1), lane_error


def _corners(xy: np.ndarray, yaw: np.ndarray, size: np.ndarray) -> np.ndarray:
    """(n, 4, 2) corners of oriented rectangles (centre, heading, length x width)."""
    f = np.column_stack([np.cos(yaw), np.sin(yaw)])
    left = np.column_stack([-f[:, 1], f[:, 0]])
    hl, hw = size[:, :1] / 2, size[:, 1:] / 2
    return np.stack([xy + f * hl + left * hw, xy - f * hl + left * hw, xy - f * hl - left * hw,
                     xy + f * hl - left * hw], axis=1)


def rectangles_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) bool: do rectangles a[i] and b[i] (each (n, 4, 2) corners) overlap (separating axis test)?"""
    overlap = np.ones(len(a), dtype=bool)
    for rect in (a, b):
        for e in (rect[:, 1] - rect[:, 0], rect[:, 2] - rect[:, 1]):
            axis = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            pa, pb = np.einsum("nkj,nj->nk", a, axis), np.einsum("nkj,nj->nk", b, axis)
            overlap &= (pa.max(1) > pb.min(1)) & (pb.max(1) > pa.min(1))
    return overlap


def vehicle_overlaps(dyn: Dynamics) -> list[tuple[float, str, str]]:
    """(time, id, id) of every pair of vehicle bodies that overlap at a sampled time."""
    v = dyn.vehicles
    if len(v) < 2:
        return []
    size = v.size_m - 0.02  # touching is not overlapping
    reach = float(np.hypot(*v.size_m.max(0)))
    found = []
    for t, (xyz, yaw) in enumerate(zip(v.xyz, v.yaw)):
        pairs = cKDTree(xyz[:, :2]).query_pairs(reach, output_type="ndarray")
        if not len(pairs):
            continue
        rect = _corners(xyz[:, :2], yaw, size)
        hit = rectangles_overlap(rect[pairs[:, 0]], rect[pairs[:, 1]])
        found += [(float(dyn.times[t]), v.ids[a], v.ids[b]) for a, b in pairs[hit]]
    return found


def _walkable(dyn: Dynamics, lines: _Centrelines, xy: np.ndarray, tol: float) -> np.ndarray:
    """(n,) bool: on a sidewalk band (off every carriageway, within a sidewalk's outer edge) or on a crossing."""
    d, i = lines.near(xy)
    off_road = ~(d < lines.half[i] - tol).any(1)
    by_road = (d <= lines.outer[i] + tol).any(1)
    crossings = [seg.points for seg in dyn.streets.walks.values() if seg.kind == "crossing"]
    on_crossing = np.zeros(len(xy), dtype=bool)
    if crossings:
        pts = np.vstack([cut(c, 0.0, float(np.linalg.norm(c[1] - c[0])), 0.25) for c in crossings])
        on_crossing = cKDTree(pts).query(xy, distance_upper_bound=1.0 + tol)[0] <= 1.0 + tol
    return (off_road & by_road) | on_crossing


def _speeding(dyn: Dynamics, lines: _Centrelines, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Speeds between samples (T-1, n) and whether each exceeds the highest limit of the roads it is on."""
    xy = dyn.vehicles.xyz[..., :2]
    speed = np.linalg.norm(np.diff(xy, axis=0), axis=2) * dyn.config.sample_hz
    mid = ((xy[1:] + xy[:-1]) / 2).reshape(-1, 2)
    d, i = lines.near(mid)
    limit = np.where(d <= lines.half[i] + tol, lines.limit[i], 0.0).max(1).reshape(speed.shape)
    limit = np.where(limit > 0, limit, max(SPEED_LIMIT_MPS.values()))
    return speed, speed > limit * 1.05 + 0.2


def check_dynamics(dyn: Dynamics, tol_m: float = 0.6, contacts: bool = True,
                   overlaps: list[tuple[float, str, str]] | None = None) -> DynamicsCheck:
    """Run every check on sampled trajectories; counts of violations, worst values, first messages. Implements ENV-d2.

    contacts : also measure how close people come to each other and to vehicles (reported, never failed;
    the slowest part, so interactive edits leave it out).
    overlaps : `vehicle_overlaps(dyn)` when the caller has just measured it (a rerouted edit), else measured here."""
    lines = _Centrelines(dyn)
    v, p = dyn.vehicles, dyn.pedestrians
    counts, metrics, failures = {}, {}, []
    route_pts = np.vstack([seg.points for seg in [*dyn.streets.lanes.values(), *dyn.streets.turns.values()]] or
                          [np.zeros((0, 2))])
    on_road, lane_error = _on_road(lines, route_pts, tol_m)
    counts["route_points_off_road"] = int((~on_road).sum())
    metrics["route_lane_error_p95_m"] = round(float(np.percentile(lane_error, 95)), 3) if len(lane_error) else 0.0
    if len(v):
        # a body's centre is the midpoint between its axles: in a tight kink it lies inside the curve
        on = _on_road(lines, v.xyz[..., :2].reshape(-1, 2), tol_m + CHORD_SLACK_M)[0].reshape(v.xyz.shape[:2])
        counts["vehicle_samples_off_road"] = int((~on).sum())
        for t, a in zip(*np.nonzero(~on)):
            failures.append(f"{v.ids[a]} off the road at t={dyn.times[t]:.1f} s, {v.xyz[t, a, :2].round(1).tolist()}")
        speed, fast = _speeding(dyn, lines, tol_m)
        counts["vehicle_speeding"] = int(fast.sum())
        metrics["max_vehicle_speed_mps"] = round(float(speed.max(initial=0.0)), 3)
    overlaps = vehicle_overlaps(dyn) if overlaps is None else overlaps
    counts["vehicle_overlaps"] = len(overlaps)
    failures += [f"{a} and {b} overlap at t={t:.1f} s" for t, a, b in overlaps[:10]]
    if len(p):
        ok = _walkable(dyn, lines, p.xyz[..., :2].reshape(-1, 2), 0.3).reshape(p.xyz.shape[:2])
        counts["pedestrian_samples_off_walkways"] = int((~ok).sum())
        for t, a in list(zip(*np.nonzero(~ok)))[:10]:
            failures.append(f"{p.ids[a]} off the walkways at t={dyn.times[t]:.1f} s, {p.xyz[t, a, :2].round(1).tolist()}")
        if contacts:
            metrics.update(pedestrian_contacts(dyn))
    return DynamicsCheck(counts, metrics, failures[:20])


def pedestrian_contacts(dyn: Dynamics) -> dict[str, float]:
    """How close people come to each other and to vehicles (reported, not failed: bodies are not rigid)."""
    p, v = dyn.pedestrians, dyn.vehicles
    close, nearest, in_vehicle = 0, [], 0
    for t in range(len(dyn.times)):
        xy = p.xyz[t, :, :2]
        tree = cKDTree(xy)
        d, _ = tree.query(xy, k=2)
        nearest.append(d[:, 1])
        close += len(tree.query_pairs(2 * PERSON_RADIUS_M))
        if len(v):
            rect = _corners(v.xyz[t, :, :2], v.yaw[t], v.size_m + 2 * PERSON_RADIUS_M)
            hits = cKDTree(v.xyz[t, :, :2]).query_ball_point(xy, r=4.0)
            for i, cars in enumerate(hits):
                for c in cars:
                    pts = np.repeat(np.array([[xy[i]]]), 4, axis=1)
                    in_vehicle += bool(rectangles_overlap(rect[[c]], pts + np.array([[[0, 0], [1e-3, 0], [1e-3, 1e-3], [0, 1e-3]]]))[0])
    near = np.concatenate(nearest) if nearest else np.zeros(0)
    return {"pedestrian_pairs_closer_than_bodies": close, "pedestrian_in_vehicle_samples": in_vehicle,
            "pedestrian_nearest_median_m": round(float(np.median(near)), 3) if len(near) else 0.0,
            "pedestrian_close_share": round(float((near < 2 * PERSON_RADIUS_M).mean()), 4) if len(near) else 0.0}


def check_frame(dyn: Dynamics, check: DynamicsCheck, gltf_errors: int | None = None) -> pd.DataFrame:
    """One row per check: violations, what is allowed, ok (what the world flow's validation suite and the
    edits of a world hold dynamics to)."""
    frame = check.frame()
    if gltf_errors is not None:
        frame.loc[len(frame)] = {"check": "gltf_errors", "violations": gltf_errors}
    samples = dyn.pedestrians.xyz[..., 0].size
    frame["allowed"] = [int(PEDESTRIAN_OFF_WALKWAY_SHARE * samples) if c == "pedestrian_samples_off_walkways" else 0
                        for c in frame["check"]]
    frame["ok"] = frame["violations"] <= frame["allowed"]
    return frame
