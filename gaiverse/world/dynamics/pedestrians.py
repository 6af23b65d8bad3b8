"""Pedestrians on sidewalks, corners and crossings: seeded random walks with social-force avoidance.

Each pedestrian walks a route on the walking graph of `routes.StreetNetwork` (sidewalks on both
sides of every road, corners round junctions, crossings inside junction boxes). Along the route it
moves at its preferred speed; a social force (exponential repulsion from neighbours within 1.5 m)
slows it behind others and pushes it sideways, within the sidewalk's width, so people pass each
other. Before a crossing it asks for the junction box like a vehicle does (pedestrians share it with
pedestrians) and waits at the kerb until it holds it. Implements ENV-d2 (pedestrians).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from gaiverse.world.dynamics.segments import Route, RouteSet, Segment
from gaiverse.world.dynamics.streets import StreetNetwork
from gaiverse.world.dynamics.traffic import BoxReservations

log = logging.getLogger(__name__)

PERSON_RADIUS_M = 0.25
"""Radius of a person's footprint, metres."""


@dataclass
class PedestrianConfig:
    """How many people walk and how they avoid each other."""

    pedestrians: int = 500
    """People requested; fewer are placed when the sidewalks cannot hold them at `spacing_m`."""
    spacing_m: float = 4.0
    """Sidewalk length per person at most."""
    speed_mps: tuple[float, float] = (1.1, 1.5)
    """Preferred walking speed, uniform in this range."""
    repulsion: float = 2.0
    """Strength A of the social force, m/s^2."""
    reach_m: float = 0.3
    """Range B of the social force, metres."""
    avoid: bool = True
    """False walks everyone blindly along the middle of the path (the baseline the tests compare against)."""


@dataclass
class Walkers:
    """State of all pedestrians: routes, arc length s along them, lateral offset (left +), speeds."""

    ids: list[str]
    routes: list[Route]
    s: np.ndarray
    lateral: np.ndarray
    preferred: np.ndarray
    colours: np.ndarray
    """(n, 3) uint8 clothing colours."""


def _oriented(streets: StreetNetwork, key: tuple, reverse: bool) -> Segment:
    seg = streets.walks[key]
    if not reverse:
        return seg
    return Segment(seg.key, seg.kind, seg.points[::-1].copy(), seg.limit_mps, seg.junction, seg.road_class, seg.width_m)


def _walk_route(streets: StreetNetwork, ways: dict, key: tuple, reverse: bool, length_m: float, rng) -> Route:
    """A random walk on the walking graph from one segment, not turning straight back unless it must.

    ways : (segment key, reverse) -> (from node, to node, [(key, reverse) leaving the to node]).
    """
    segments = [_oriented(streets, key, reverse)]
    total = segments[0].length
    while total < length_m:
        leaving = ways[(key, reverse)][2]
        options = [o for o in leaving if o[0] != key] or leaving
        key, reverse = options[int(rng.integers(len(options)))]
        segments.append(_oriented(streets, key, reverse))
        total += segments[-1].length
    return Route(segments)


def _ways(streets: StreetNetwork) -> dict:
    graph = streets.walk_graph
    leaving: dict = {}
    for u, _, k, d in graph.edges(keys=True, data=True):
        leaving.setdefault(u, []).append((k, d["reverse"]))
    return {(k, d["reverse"]): (u, v, sorted(leaving.get(v, []))) for u, v, k, d in graph.edges(keys=True, data=True)}


def place_pedestrians(streets: StreetNetwork, config: PedestrianConfig, horizon_s: float, rng) -> Walkers:
    """People at random places on the sidewalks (at most one per `spacing_m`), each with a long enough route."""
    walks = sorted(k for k, seg in streets.walks.items() if seg.kind == "walk")
    if not walks:
        return Walkers([], [], np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 3), np.uint8))
    lengths = np.array([streets.walks[k].length for k in walks])
    wanted = min(config.pedestrians, int(lengths.sum() // config.spacing_m))
    routes, starts, ways = [], [], _ways(streets)
    preferred = rng.uniform(*config.speed_mps, size=wanted)
    for i in range(wanted):
        key = walks[int(rng.choice(len(walks), p=lengths / lengths.sum()))]
        reverse = bool(rng.integers(2))
        route = _walk_route(streets, ways, key, reverse, horizon_s * preferred[i] * 1.3 + 40.0, rng)
        routes.append(route)
        starts.append(float(rng.uniform(0.0, route.segments[0].length)))
    palette = np.array([[60, 70, 110], [150, 40, 40], [40, 110, 60], [200, 180, 60], [90, 90, 95], [220, 220, 215],
                        [120, 70, 140], [200, 110, 40]], np.uint8)
    if wanted < config.pedestrians:
        log.info("pedestrians: %d of %d placed (sidewalk capacity)", wanted, config.pedestrians)
    return Walkers([f"pedestrian_{i}" for i in range(wanted)], routes, np.array(starts),
                   rng.uniform(-0.2, 0.2, size=wanted), preferred, palette[rng.integers(len(palette), size=wanted)])


class Crowd:
    """Steps the pedestrians at a fixed time step, sharing junction boxes with the traffic."""

    def __init__(self, streets: StreetNetwork, walkers: Walkers, boxes: BoxReservations, config: PedestrianConfig):
        self.streets, self.walkers, self.boxes, self.config = streets, walkers, boxes, config
        self.holding: dict[int, tuple[int, tuple]] = {}
        """Pedestrian index -> (node, movement) of the box it holds."""
        self.paths = RouteSet(walkers.routes)
        # per segment of the stacked routes: a walk that leads onto a crossing, and where that crossing starts
        # (who may have to stop is found for everyone at once; `_crossing_stop` runs only for them)
        kinds, last = [seg.kind for seg in self.paths.segments], set((self.paths.first_segment[1:] - 1).tolist())
        self.to_crossing = np.array([g not in last and kinds[g] != "crossing" and kinds[g + 1] == "crossing"
                                     for g in range(len(kinds))], dtype=bool)
        self.next_start = np.concatenate([r.starts[1:] for r in walkers.routes]) if walkers.routes else np.zeros(0)

    def frames(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Path points (n, 2), unit tangents (n, 2), segment index within the route (n,) and half widths (n,)."""
        xy, tan, k = self.paths.at(self.walkers.s)
        return xy, tan, k - self.paths.first_segment[:-1], self.paths.width[k] / 2

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Where everyone stands (n, 2) and which way they face (n,) radians from east."""
        xy, tan, _, _ = self.frames()
        left = np.column_stack([-tan[:, 1], tan[:, 0]])
        return xy + left * self.walkers.lateral[:, None], np.arctan2(tan[:, 1], tan[:, 0])

    def _social(self, pos: np.ndarray) -> np.ndarray:
        """(n, 2) repulsion from neighbours within 1.5 m."""
        force = np.zeros_like(pos)
        if not self.config.avoid or len(pos) < 2:
            return force
        pairs = cKDTree(pos).query_pairs(1.5, output_type="ndarray")
        if not len(pairs):
            return force
        d = pos[pairs[:, 0]] - pos[pairs[:, 1]]
        dist = np.maximum(np.linalg.norm(d, axis=1), 1e-3)
        push = (self.config.repulsion * np.exp((2 * PERSON_RADIUS_M - dist) / self.config.reach_m) / dist)[:, None] * d
        np.add.at(force, pairs[:, 0], push)
        np.add.at(force, pairs[:, 1], -push)
        return force

    def may_stop(self, seg: np.ndarray) -> list[int]:
        """Walkers (ascending) for whom `_crossing_stop` may do something: those holding a crossing, and those
        within 1 m of a crossing they walk onto; for everyone else it returns inf and changes nothing."""
        at = seg + self.paths.first_segment[:-1]
        near = np.flatnonzero(self.to_crossing[at] & ~(self.next_start[at] - self.walkers.s > 1.0)).tolist()
        return sorted(set(near) | set(self.holding))

    def _crossing_stop(self, i: int, seg_index: int) -> float:
        """The arc length a walker must stop at before a crossing it does not hold (inf when free to go)."""
        route = self.walkers.routes[i]
        segs = route.segments
        current = segs[seg_index]
        if i in self.holding and current.kind != "crossing":
            self.boxes.release(self.holding.pop(i)[0], self.walkers.ids[i])
        if seg_index + 1 >= len(segs) or segs[seg_index + 1].kind != "crossing" or current.kind == "crossing":
            return np.inf
        start = route.starts[seg_index + 1]
        if start - self.walkers.s[i] > 1.0:
            return np.inf
        crossing = segs[seg_index + 1]
        node, movement = crossing.junction, ("ped", crossing.key)
        if self.boxes.ask(node, self.walkers.ids[i], movement):
            self.holding[i] = (node, movement)
            return np.inf
        return start - 0.3

    def step(self, dt: float) -> None:
        w = self.walkers
        if not len(w.ids):
            return
        xy, tan, seg, half = self.frames()
        left = np.column_stack([-tan[:, 1], tan[:, 0]])
        force = self._social(xy + left * w.lateral[:, None])
        along = np.einsum("ij,ij->i", force, tan)
        across = np.einsum("ij,ij->i", force, left)
        speed = np.clip(w.preferred + 0.5 * along, 0.0, 1.3 * w.preferred)
        bound = np.maximum(half - PERSON_RADIUS_M, 0.0) if self.config.avoid else np.zeros_like(half)
        w.lateral = np.clip(w.lateral + (0.6 * across - 0.4 * w.lateral) * dt, -bound, bound)
        stops = np.full(len(w.ids), np.inf)
        for i in self.may_stop(seg):  # everyone else walks on (inf), as _crossing_stop says
            stops[i] = self._crossing_stop(i, seg[i])
        w.s = np.minimum(np.minimum(w.s + speed * dt, np.maximum(stops, w.s)), self.paths.length)
