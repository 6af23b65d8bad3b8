"""The dynamics of a world: traffic and pedestrians simulated at a fixed step, sampled as trajectories.

`simulate_dynamics(network, ...)` cuts the street network from the road graph, places the
vehicles and pedestrians (seeded), runs a warm-up, then steps both at `dt_s` for `duration_s`
seconds and samples every agent's position (x east, y north, z up) and heading at `sample_hz`.
The result is what the world stores (`summary()` JSON + the animated .glb of `export.py`) and what
`checks.py` verifies. Deterministic given the seed. Implements ENV-d2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from gaiverse.world.dynamics.pedestrians import PERSON_RADIUS_M, Crowd, PedestrianConfig, place_pedestrians
from gaiverse.world.dynamics.lanes import StreetConfig
from gaiverse.world.dynamics.streets import StreetNetwork, build_streets
from gaiverse.world.dynamics.schedule import DynamicsSchedule, default_schedule
from gaiverse.world.dynamics.traffic import BoxReservations, Traffic, TrafficConfig, place_vehicles
from gaiverse.world.dynamics.weather import presets_json
from gaiverse.world.road_graph import RoadNetwork

log = logging.getLogger(__name__)

PEDESTRIAN_LIFT_M = 0.15
"""People's feet above the road surface samples (sidewalks stand above the carriageway)."""
HeightAt = Callable[[np.ndarray], np.ndarray]
"""(n, 2) metres -> (n,) surface heights, metres."""


@dataclass
class DynamicsConfig:
    """What is simulated, for how long and how finely."""

    seed: int = 0
    duration_s: float = 60.0
    """Recorded time (the engine loops it)."""
    warmup_s: float = 20.0
    """Simulated before recording, so queues and spacing settle."""
    dt_s: float = 0.1
    """Fixed simulation step."""
    sample_hz: float = 2.0
    """Trajectory samples per second (the glTF keyframes)."""
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    pedestrians: PedestrianConfig = field(default_factory=PedestrianConfig)
    streets: StreetConfig = field(default_factory=StreetConfig)

    def __post_init__(self) -> None:
        for name in ("duration_s", "dt_s", "sample_hz"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}")
        if self.warmup_s < 0:
            raise ValueError(f"`warmup_s` must be >= 0, got {self.warmup_s}")
        if round(1.0 / (self.sample_hz * self.dt_s)) * self.sample_hz * self.dt_s - 1.0 > 1e-6:
            raise ValueError(f"`sample_hz` {self.sample_hz} must divide the step rate 1/`dt_s` = {1 / self.dt_s:g}")
        if not 0 <= self.traffic.vehicles <= 5000 or not 0 <= self.pedestrians.pedestrians <= 20000:
            raise ValueError(f"vehicles must be within 0..5000 and pedestrians 0..20000, got "
                             f"{self.traffic.vehicles} and {self.pedestrians.pedestrians}")


@dataclass
class AgentTracks:
    """Sampled trajectories of one kind of agent."""

    ids: list[str]
    kinds: list[str]
    """"car" | "van" | "person" per agent."""
    size_m: np.ndarray
    """(n, 2) length and width of the footprint, metres."""
    colours: np.ndarray
    """(n, 3) uint8 RGB."""
    xyz: np.ndarray
    """(T, n, 3) positions (x east, y north, z up), metres: the footprint's centre on the ground."""
    yaw: np.ndarray
    """(T, n) heading, radians counter-clockwise from east."""

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Dynamics:
    """A world's simulated traffic and pedestrians, its weather schedule and the streets they used."""

    times: np.ndarray
    """(T,) seconds from the start of the recording."""
    vehicles: AgentTracks
    pedestrians: AgentTracks
    streets: StreetNetwork
    schedule: DynamicsSchedule
    config: DynamicsConfig
    stats: dict

    def summary(self) -> dict:
        """The stored JSON: config, counts, schedule, weather presets, statistics (trajectories are in the .glb)."""
        config = asdict(self.config)
        return {"format": "gaiverse.dynamics/1", "seed": self.config.seed, "config": config,
                "duration_s": float(self.times[-1]) if len(self.times) else 0.0, "sample_hz": self.config.sample_hz,
                "counts": {"vehicles": len(self.vehicles), "pedestrians": len(self.pedestrians),
                           "vehicles_requested": self.config.traffic.vehicles,
                           "pedestrians_requested": self.config.pedestrians.pedestrians},
                "driving_side": self.config.streets.driving_side, "schedule": self.schedule.to_json(),
                "weather_presets": presets_json(), "stats": self.stats}


def road_surface(network: RoadNetwork, graded=None, ground=None, lift_m: float = 0.12) -> HeightAt:
    """Heights of the road surface: the nearest graded road sample (bridges included), else the ground, else 0."""
    if graded:
        xy = np.vstack([r.xy for r in graded])
        z = np.concatenate([r.z for r in graded]) + lift_m
        tree = cKDTree(xy)
        return lambda p: z[tree.query(np.atleast_2d(p))[1]]
    if ground is not None:
        return lambda p: ground.height_at(np.atleast_2d(p)) + lift_m
    return lambda p: np.zeros(len(np.atleast_2d(p)))


def simulate_dynamics(network: RoadNetwork, height_at: HeightAt | None = None, config: DynamicsConfig | None = None,
                      schedule: DynamicsSchedule | None = None, streets: StreetNetwork | None = None) -> Dynamics:
    """Simulate traffic and pedestrians on a road network and sample their trajectories. Implements ENV-d2.

    streets : the network's streets when already cut (e.g. part of a world, `build_streets(..., within=)`)."""
    cfg = config or DynamicsConfig()
    height_at = height_at or road_surface(network)
    started = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    streets = streets or build_streets(network, cfg.streets)
    horizon = cfg.warmup_s + cfg.duration_s
    boxes = BoxReservations(streets.compatible)
    traffic = Traffic(streets, place_vehicles(streets, cfg.traffic, horizon, rng), boxes, cfg.traffic)
    crowd = Crowd(streets, place_pedestrians(streets, cfg.pedestrians, horizon, rng), boxes, cfg.pedestrians)
    per_sample = int(round(1.0 / (cfg.sample_hz * cfg.dt_s)))
    warm_steps, steps = int(round(cfg.warmup_s / cfg.dt_s)), int(round(cfg.duration_s / cfg.dt_s))
    v_xy, v_yaw, p_xy, p_yaw = [], [], [], []
    for k in range(warm_steps + steps + 1):
        if k >= warm_steps and (k - warm_steps) % per_sample == 0:
            xy, yaw = traffic.pose()
            v_xy.append(xy), v_yaw.append(yaw)
            xy, yaw = crowd.positions()
            p_xy.append(xy), p_yaw.append(yaw)
        if k < warm_steps + steps:
            traffic.step(cfg.dt_s)
            if k % 2 == 0:  # people move slowly: half the rate is enough
                crowd.step(2 * cfg.dt_s)
    times = np.arange(len(v_xy)) / cfg.sample_hz
    sim_s = time.perf_counter() - started
    vehicles = _tracks([c.id for c in traffic.vehicles], [c.kind.name for c in traffic.vehicles],
                       np.array([[c.kind.length_m, c.kind.width_m] for c in traffic.vehicles]).reshape(-1, 2),
                       np.array([c.colour for c in traffic.vehicles], np.uint8).reshape(-1, 3), v_xy, v_yaw, height_at, 0.0)
    walkers = crowd.walkers
    pedestrians = _tracks(walkers.ids, ["person"] * len(walkers.ids),
                          np.full((len(walkers.ids), 2), 2 * PERSON_RADIUS_M), walkers.colours, p_xy, p_yaw,
                          height_at, PEDESTRIAN_LIFT_M)
    moved = np.linalg.norm(np.diff(vehicles.xyz[..., :2], axis=0), axis=2) * cfg.sample_hz if len(vehicles) else np.zeros((0, 0))
    stats = {"simulation_s": round(sim_s, 3), "steps": warm_steps + steps, "samples": len(times),
             "lane_km": round(streets.lane_length_m() / 1000, 3), "lanes": len(streets.lanes),
             "junction_boxes": len(streets.box_radius), "box_grants": boxes.grants,
             "mean_vehicle_speed_mps": round(float(moved.mean()), 3) if moved.size else 0.0,
             "stopped_share": round(float((moved < 0.1).mean()), 3) if moved.size else 0.0}
    log.info("dynamics: %d vehicles, %d pedestrians, %d samples in %.1f s", len(vehicles), len(pedestrians),
             len(times), sim_s)
    return Dynamics(times, vehicles, pedestrians, streets, schedule or default_schedule(cfg.seed), cfg, stats)


def _tracks(ids, kinds, size, colours, xy: list, yaw: list, height_at: HeightAt, dz: float) -> AgentTracks:
    n = len(ids)
    xy_arr = np.asarray(xy, dtype=np.float64).reshape(len(xy), n, 2)
    z = height_at(xy_arr.reshape(-1, 2)).reshape(len(xy), n) + dz if n else np.zeros((len(xy), 0))
    return AgentTracks(list(ids), list(kinds), size, colours, np.concatenate([xy_arr, z[..., None]], axis=2),
                       np.asarray(yaw, dtype=np.float64).reshape(len(yaw), n))


def scene_dynamics(scene, config: DynamicsConfig | None = None, schedule: DynamicsSchedule | None = None) -> Dynamics:
    """Dynamics of an assembled world (`assemble.WorldScene`): its road graph, on its graded road surfaces."""
    return simulate_dynamics(scene.network, road_surface(scene.network, scene.graded), config, schedule)
