"""Vehicles on the lanes of a street network: IDM car following, speed limits by class, junction boxes.

Each vehicle drives a route of lanes and turns (a seeded random walk; U-turns only at dead ends).
Its speed follows the Intelligent Driver Model towards the lane's limit, slows ahead of slower
segments (turns), keeps a gap to the vehicle ahead and stops at the stop line until it holds the
junction box. A box is reserved first-come first-served (`BoxReservations`): vehicles share it
only when they make the same movement, pedestrians only with pedestrians, and a vehicle enters only
when its exit lane has room for it (no blocking the box). Positions are clamped behind the leader
and the stop line, so no two vehicles ever overlap. Implements ENV-d2 (traffic).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import networkx as nx
import numpy as np

from gaiverse.world.dynamics.segments import Route, Segment
from gaiverse.world.dynamics.streets import StreetNetwork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VehicleKind:
    """A vehicle body: length and width (metres) and the colours it comes in (RGB)."""

    name: str
    length_m: float
    width_m: float
    share: float
    colours: tuple[tuple[int, int, int], ...]


#: The vehicle kinds, each with its share of the fleet (bodies fit a 2 m lane of a minor road).
VEHICLE_KINDS: tuple[VehicleKind, ...] = (
    VehicleKind("car", 4.4, 1.65, 0.8, ((200, 40, 40), (40, 80, 180), (230, 230, 225), (40, 40, 44), (210, 170, 40))),
    VehicleKind("van", 4.9, 1.7, 0.2, ((235, 235, 235), (70, 120, 70), (150, 150, 160))),
)


@dataclass
class TrafficConfig:
    """How many vehicles and how they drive (IDM parameters, SI units)."""

    vehicles: int = 200
    """Vehicles requested; fewer are placed when the lanes cannot hold them at `spacing_m`."""
    spacing_m: float = 20.0
    """Lane length per vehicle at most (the network's capacity for this simulation)."""
    max_accel: float = 1.5
    """IDM maximum acceleration a, m/s^2."""
    comfort_decel: float = 2.0
    """IDM comfortable deceleration b, m/s^2 (also used to slow ahead of turns)."""
    min_gap_m: float = 2.0
    """IDM jam distance s0."""
    headway_s: float = 1.2
    """IDM time headway T."""
    desired: tuple[float, float] = (0.85, 1.0)
    """Each driver's desired speed as a share of the limit, uniform in this range."""
    request_m: float = 40.0
    """Distance to the stop line at which a vehicle asks for the junction box."""


class BoxReservations:
    """First-come first-served reservations of junction boxes by movement.

    An agent asks for a node's box with its movement (("car", in lane, out lane) or ("ped", crossing));
    it is granted when every holder and every agent that asked before it make movements `compatible`
    with its own (`StreetNetwork.compatible`: paths that keep clear of each other) and `room` is true.
    """

    def __init__(self, compatible: Callable[[tuple, tuple], bool]) -> None:
        self.compatible = compatible
        self.holders: dict[int, dict[object, tuple]] = defaultdict(dict)
        self.queue: dict[int, list[tuple[object, tuple]]] = defaultdict(list)
        self.grants = 0
        self.waiting_for_room: set = set()
        """Agents whose last ask failed only for lack of room: they do not hold back those queued after them."""

    def holds(self, node: int, agent) -> bool:
        return agent in self.holders[node]

    def ask(self, node: int, agent, movement: tuple, room: bool = True) -> bool:
        """Queue `agent` (once) and grant the box when it may enter now; True when it holds the box."""
        if agent in self.holders[node]:
            return True
        queue = self.queue[node]
        if all(a != agent for a, _ in queue):
            queue.append((agent, movement))
        for other, move in queue:
            if other == agent:
                break
            if other not in self.waiting_for_room and not self.compatible(move, movement):
                return False
        if not all(self.compatible(m, movement) for m in self.holders[node].values()):
            return False
        if not room:
            self.waiting_for_room.add(agent)
            return False
        self.waiting_for_room.discard(agent)
        queue[:] = [(a, m) for a, m in queue if a != agent]
        self.holders[node][agent] = movement
        self.grants += 1
        return True

    def release(self, node: int, agent) -> None:
        self.holders[node].pop(agent, None)

    def movements_into(self, node: int, lane: tuple) -> list[object]:
        """Vehicles holding `node`'s box that are heading into `lane`."""
        return [a for a, m in self.holders[node].items() if m[0] == "car" and m[2] == lane]


@dataclass
class Vehicle:
    """One vehicle's body, route and state (s: front bumper along the route, metres)."""

    id: str
    kind: VehicleKind
    colour: tuple[int, int, int]
    route: Route
    s: float
    v: float
    desired: float
    boxes: dict[int, int] = field(default_factory=dict)
    """Boxes the vehicle holds: index of the turn segment in its route -> node."""
    segment: int = 0
    """Index of the route segment the front bumper is on (kept up to date by `Traffic.step`)."""

    def advance(self, distance: float) -> None:
        self.s += distance
        starts = self.route.starts_list
        while self.segment + 1 < len(self.route.segments) and self.s >= starts[self.segment + 1]:
            self.segment += 1


def drivable_lanes(streets: StreetNetwork) -> set[tuple]:
    """Lanes of the largest strongly connected part of the lane graph (a vehicle there can always go on)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(streets.lanes)
    graph.add_edges_from(streets.turns)
    parts = sorted(nx.strongly_connected_components(graph), key=lambda c: -sum(streets.lanes[k].length for k in c))
    return set(parts[0]) if parts else set()


def _route(streets: StreetNetwork, lane: tuple, length_m: float, lanes: set[tuple], rng) -> Route:
    """A random walk from `lane` at least `length_m` long (no U-turn unless the road ends)."""
    segments: list[Segment] = [streets.lanes[lane]]
    total = segments[0].length
    while total < length_m:
        options = sorted(o for o in streets.next_lanes(lane) if o in lanes)
        lane_next = options[int(rng.integers(len(options)))]
        turn = streets.turns[(lane, lane_next)]
        segments += [turn, streets.lanes[lane_next]]
        total += turn.length + streets.lanes[lane_next].length
        lane = lane_next
    return Route(segments)


def place_vehicles(streets: StreetNetwork, config: TrafficConfig, horizon_s: float, rng) -> list[Vehicle]:
    """Vehicles at random free places on the drivable lanes (at most one per `spacing_m` of lane)."""
    lanes = drivable_lanes(streets)
    keys = sorted(lanes)
    if not keys:
        return []
    lengths = np.array([streets.lanes[k].length for k in keys])
    capacity = int(lengths.sum() // config.spacing_m)
    wanted = min(config.vehicles, capacity)
    kinds = [VEHICLE_KINDS[i] for i in rng.choice(len(VEHICLE_KINDS), size=wanted,
                                                  p=[k.share for k in VEHICLE_KINDS])]
    taken: dict[tuple, list[float]] = defaultdict(list)
    longest = max(k.length_m for k in VEHICLE_KINDS)
    vehicles: list[Vehicle] = []
    for attempt in range(wanted * 50):
        if len(vehicles) == wanted:
            break
        kind = kinds[len(vehicles)]
        lane = keys[int(rng.choice(len(keys), p=lengths / lengths.sum()))]
        length = streets.lanes[lane].length
        if length < kind.length_m + 1.0:
            continue
        s = float(rng.uniform(kind.length_m + 0.5, length - 0.5))
        if any(abs(s - o) < longest + config.min_gap_m + 1.0 for o in taken[lane]):
            continue
        if lane[1] in streets.narrow and taken[("lane", lane[1], streets.lane_end[lane])]:
            continue  # a narrow road is driven one way at a time: from the start too
        taken[lane].append(s)
        limit = streets.lanes[lane].limit_mps
        route = _route(streets, lane, s + horizon_s * limit * 1.05 + 60.0, lanes, rng)
        colour = kind.colours[int(rng.integers(len(kind.colours)))]
        vehicles.append(Vehicle(f"vehicle_{len(vehicles)}", kind, colour, route, s, 0.0,
                                float(rng.uniform(*config.desired))))
    if len(vehicles) < config.vehicles:
        log.info("traffic: %d of %d vehicles placed (lane capacity %d at %.0f m each)", len(vehicles),
                 config.vehicles, capacity, config.spacing_m)
    return vehicles


class Traffic:
    """Steps a fleet of vehicles at a fixed time step; reads and writes the shared box reservations."""

    def __init__(self, streets: StreetNetwork, vehicles: list[Vehicle], boxes: BoxReservations,
                 config: TrafficConfig):
        self.streets, self.vehicles, self.boxes, self.config = streets, vehicles, boxes, config
        self.stopped_at_line = 0
        self._points: np.ndarray | None = None
        """Every vehicle's route points stacked (with `_arc`, `_first`), for `pose`: routes never change."""

    def _fronts(self) -> dict[tuple, list[tuple[float, int]]]:
        """Per segment key, (front position within the segment, vehicle index) of the vehicles on it; also
        refreshes `occupied`: the lanes any part of a body is on."""
        out: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
        self.occupied: set[tuple] = set()
        for i, car in enumerate(self.vehicles):
            k = car.segment
            starts = car.route.starts_list
            out[car.route.segments[k].key].append((car.s - starts[k], i))
            j = k
            while j >= 0 and starts[j + 1] > car.s - car.kind.length_m:
                self.occupied.add(car.route.segments[j].key)
                j -= 1
        return out

    def _oncoming(self, lane: tuple) -> bool:
        """Is anyone on, or cleared into, the opposite lane of a narrow road (driven one way at a time)?"""
        edge, start = lane[1], lane[2]
        if edge not in self.streets.narrow:
            return False
        end = self.streets.lane_end[lane]
        opposite = ("lane", edge, end)
        return opposite in self.occupied or bool(self.boxes.movements_into(end, opposite))

    def _leader_gap(self, i: int, fronts, lookahead: float) -> tuple[float, float]:
        """(gap to the rear of the vehicle ahead along my route, its speed); (inf, 0) when none is near."""
        car = self.vehicles[i]
        k = car.segment
        route = car.route
        for j in range(k, len(route.segments)):
            base = route.starts_list[j]
            if base - car.s > lookahead:
                break
            ahead = [(pos, o) for pos, o in fronts.get(route.segments[j].key, ()) if o != i and
                     (j > k or pos > car.s - base)]
            if ahead:
                pos, o = min(ahead)
                other = self.vehicles[o]
                return base + pos - other.kind.length_m - car.s, other.v
        return math.inf, 0.0

    def _box_rules(self, car: Vehicle, fronts) -> float:
        """Release a box the car has left, ask for the next one; the stop line's position (inf when free to go)."""
        route, k = car.route, car.segment
        starts = route.starts_list
        for turn_index, node in list(car.boxes.items()) if car.boxes else ():  # left the box: rear on the exit lane
            if k > turn_index + 1 or (k == turn_index + 1 and car.s - car.kind.length_m >= starts[k]):
                self.boxes.release(node, car.id)
                del car.boxes[turn_index]
        seg = route.segments[k]
        if seg.kind != "lane" or k + 2 >= len(route.segments):
            return math.inf
        turn, exit_lane = route.segments[k + 1], route.segments[k + 2]
        line = starts[k + 1]
        if line - car.s > self.config.request_m:
            return line - 0.2
        node = turn.junction
        if k + 1 in car.boxes:
            return math.inf
        if any(pos > car.s - starts[k] for pos, o in fronts.get(seg.key, ()) if self.vehicles[o] is not car):
            return line - 0.2  # only the first vehicle of a lane asks (a car behind must not queue ahead of it)
        movement = ("car", seg.key, exit_lane.key)
        rears = [pos - self.vehicles[o].kind.length_m for pos, o in fronts.get(exit_lane.key, ())]
        queued = sum(self.vehicles[int(a.split("_")[1])].kind.length_m + self.config.min_gap_m
                     for a in self.boxes.movements_into(node, exit_lane.key))
        room = (min(rears, default=exit_lane.length) - queued >= car.kind.length_m + self.config.min_gap_m
                and not self._oncoming(exit_lane.key))
        if self.boxes.ask(node, car.id, movement, room):
            car.boxes[k + 1] = node
            return math.inf
        self.stopped_at_line += 1
        return line - 0.2

    def _allowed_speed(self, car: Vehicle) -> float:
        """The current segment's limit, or less where a slower segment ahead needs braking for."""
        route, k = car.route, car.segment
        allowed = route.segments[k].limit_mps
        for j in range(k + 1, min(k + 3, len(route.segments))):
            dist = max(route.starts_list[j] - car.s, 0.0)
            allowed = min(allowed, math.sqrt(route.segments[j].limit_mps**2 + 2 * self.config.comfort_decel * dist))
        return allowed

    def step(self, dt: float) -> None:
        """Advance every vehicle by dt seconds (leaders and stop lines read at the start of the step)."""
        cfg = self.config
        fronts = self._fronts()
        updates = []
        braking = 2 * math.sqrt(cfg.max_accel * cfg.comfort_decel)
        for i, car in enumerate(self.vehicles):
            stop = self._box_rules(car, fronts)
            gap, v_lead = self._leader_gap(i, fronts, lookahead=max(60.0, car.v * 6))
            if stop - car.s < gap:
                gap, v_lead = stop - car.s, 0.0
            limit = car.route.segments[car.segment].limit_mps
            v0 = max(car.desired * limit, 0.5)
            s_star = cfg.min_gap_m + max(0.0, car.v * cfg.headway_s + car.v * (car.v - v_lead) / braking)
            acc = cfg.max_accel * (1 - (car.v / v0) ** 4 - (s_star / max(gap, 0.05)) ** 2)
            v = min(max(car.v + acc * dt, 0.0), self._allowed_speed(car))
            move = min(v * dt, max(gap - 0.5, 0.0), max(car.route.length - car.s, 0.0))
            updates.append((move, move / dt))
        for car, (move, v) in zip(self.vehicles, updates):
            car.advance(move)
            car.v = v

    def pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (n, 2) and headings (n,) radians (counter-clockwise from east) of all vehicles: the midpoint
        of the front and rear axle line (`Route.at` at s and s - length), for every vehicle at once."""
        n = len(self.vehicles)
        if not n:
            return np.zeros((0, 2)), np.zeros(0)
        if self._points is None:
            routes = [car.route for car in self.vehicles]
            self._points, self._arc = np.vstack([r.points for r in routes]), np.concatenate([r.s for r in routes])
            self._first = np.cumsum([0] + [len(r.s) for r in routes[:-1]])
        s, index = np.empty(2 * n), np.empty(2 * n, dtype=np.int64)
        for i, car in enumerate(self.vehicles):  # as Route.at: clamp to the route, segment by bisection
            arc, length = car.route.s_list, car.route.length
            for j, at in enumerate((car.s, car.s - car.kind.length_m)):
                at = min(max(at, 0.0), length)
                s[2 * i + j] = at
                index[2 * i + j] = min(max(bisect.bisect_right(arc, at) - 1, 0), len(arc) - 2)
        index += np.repeat(self._first, 2)
        seg = self._points[index + 1] - self._points[index]
        span = np.maximum(self._arc[index + 1] - self._arc[index], 1e-9)
        ends = (self._points[index] + seg * ((s - self._arc[index]) / span)[:, None]).reshape(n, 2, 2)
        tangent = (seg / np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9)).reshape(n, 2, 2)
        d = (ends[:, 0] - ends[:, 1]).tolist()
        yaw = np.array([math.atan2(dy, dx) if math.hypot(dx, dy) > 1e-6 else math.atan2(t[0, 1], t[0, 0])
                        for (dx, dy), t in zip(d, tangent)])
        return (ends[:, 0] + ends[:, 1]) / 2, yaw
