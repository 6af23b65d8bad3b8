"""Traffic, pedestrians and weather on a real built world (ENV-d2): checks, determinism, avoidance, glTF export."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from gaiverse.world.assemble import WorldConfig, assemble_world
from gaiverse.world.dynamics.checks import check_dynamics, pedestrian_contacts
from gaiverse.world.dynamics.export import dynamics_glb
from gaiverse.world.dynamics.pedestrians import PedestrianConfig
from gaiverse.world.dynamics.schedule import DynamicsSchedule, default_schedule
from gaiverse.world.dynamics.simulate import DynamicsConfig, scene_dynamics
from gaiverse.world.dynamics.traffic import TrafficConfig
from gaiverse.world.dynamics.weather import lighting
from gaiverse.world.layout import LayoutGenerator, LayoutGeneratorConfig
from gaiverse.world.suggestions import LayoutControls
from validation.gltf import validate_glb

pytestmark = pytest.mark.clause("ENV-d2")

CONTROLS = LayoutControls(size_m=(512.0, 512.0), relief_m=40.0, water_level=0.12, road_density=12.0,
                          settlement_radius_m=200.0)
FULL = DynamicsConfig(seed=3, duration_s=12.0, warmup_s=6.0, traffic=TrafficConfig(vehicles=200),
                      pedestrians=PedestrianConfig(pedestrians=500))


@pytest.fixture(scope="module")
def scene(terrain_model, roads_model):
    """A real 512 m world: layout sampled by the shipped checkpoints, roads cleaned, ground carved."""
    layout = LayoutGenerator(terrain_model, roads_model, LayoutGeneratorConfig(ddim_steps=6)).generate(CONTROLS, seed=2)
    return assemble_world(layout, buildings=[], config=WorldConfig(
        vegetation=replace(WorldConfig().vegetation, max_instances=50)))


@pytest.fixture(scope="module")
def dynamics(scene):
    return scene_dynamics(scene, FULL)


@pytest.mark.slow
def test_full_load_stays_on_roads_without_overlaps(dynamics):
    result = check_dynamics(dynamics)
    capacity = int(dynamics.streets.lane_length_m() // FULL.traffic.spacing_m)
    # random placement at free spots: near lane capacity a few short lanes cannot take one more vehicle
    assert 0.9 * min(200, capacity) <= len(dynamics.vehicles) <= min(200, capacity), (len(dynamics.vehicles), capacity)
    assert len(dynamics.vehicles) >= 100
    assert len(dynamics.pedestrians) == 500
    for name in ("route_points_off_road", "vehicle_samples_off_road", "vehicle_speeding", "vehicle_overlaps"):
        assert result.counts[name] == 0, (name, result.failures)
    off_walkways = result.counts["pedestrian_samples_off_walkways"] / dynamics.pedestrians.xyz[..., 0].size
    assert off_walkways < 0.02, (off_walkways, result.failures)
    assert result.metrics["route_lane_error_p95_m"] < 0.3
    assert dynamics.stats["mean_vehicle_speed_mps"] > 0.3  # traffic flows, it is not one jam
    assert dynamics.stats["box_grants"] > len(dynamics.vehicles)


@pytest.mark.slow
def test_overlap_and_off_road_are_caught(dynamics):
    broken = replace(dynamics, vehicles=replace(dynamics.vehicles, xyz=dynamics.vehicles.xyz.copy()))
    broken.vehicles.xyz[5, 1] = broken.vehicles.xyz[5, 0] + [0.5, 0.3, 0.0]
    broken.vehicles.xyz[7, 2, :2] = [-50.0, -50.0]
    result = check_dynamics(broken)
    assert result.counts["vehicle_overlaps"] >= 1 and result.counts["vehicle_samples_off_road"] >= 1
    assert any("vehicle_0" in m and "overlap" in m for m in result.failures), result.failures


@pytest.mark.slow
def test_same_seed_same_trajectories_and_people_avoid_each_other(scene):
    small = DynamicsConfig(seed=5, duration_s=6.0, warmup_s=2.0, traffic=TrafficConfig(vehicles=30),
                           pedestrians=PedestrianConfig(pedestrians=300))
    a, b = scene_dynamics(scene, small), scene_dynamics(scene, small)
    assert np.array_equal(a.vehicles.xyz, b.vehicles.xyz) and np.array_equal(a.pedestrians.xyz, b.pedestrians.xyz)
    blind = scene_dynamics(scene, replace(small, pedestrians=replace(small.pedestrians, avoid=False)))
    assert pedestrian_contacts(a)["pedestrian_close_share"] < pedestrian_contacts(blind)["pedestrian_close_share"]


@pytest.mark.slow
def test_glb_animates_every_agent_and_carries_the_weather(dynamics):
    glb = dynamics_glb(dynamics)
    report = validate_glb(glb)
    assert report.ok, report.summary()
    doc = json.loads(glb[20:20 + int.from_bytes(glb[12:16], "little")])
    agents = [n for n in doc["nodes"] if n.get("extras", {}).get("type") in ("vehicle", "pedestrian")]
    assert len(agents) == len(dynamics.vehicles) + len(dynamics.pedestrians)
    (anim,) = doc["animations"]
    assert len(anim["channels"]) == 2 * len(agents)
    extras = doc["nodes"][0]["extras"]
    assert set(extras["weather"]["presets"]) == {"clear", "rain", "snow", "fog"}
    assert len(extras["weather"]["lighting"]) == 24 and extras["loop"] is True
    times = doc["accessors"][anim["samplers"][0]["input"]]
    assert times["max"][0] == pytest.approx(FULL.duration_s)


def test_lighting_follows_the_time_of_day_and_weather():
    noon, night = lighting("clear", 12.0), lighting("clear", 0.0)
    assert noon["daylight"] == 1.0 and night["daylight"] == 0.0
    assert noon["sun_direction"][2] > 0.8 and night["sun_direction"][2] < 0
    assert night["street_lights"] and not noon["street_lights"]
    assert lighting("fog", 12)["fog_density"] > lighting("rain", 12)["fog_density"] > noon["fog_density"]
    assert lighting("rain", 12)["sun_intensity"] < noon["sun_intensity"]
    assert lighting("snow", 9)["precipitation"] == "snow"
    with pytest.raises(ValueError, match="`weather` must be one of"):
        lighting("hail", 12)


def test_schedule_round_trip_and_refusals():
    schedule = default_schedule(seed=4)
    again = DynamicsSchedule.from_json(json.dumps(schedule.to_json()))
    assert again.to_json() == schedule.to_json() and len(again.entries) == 24
    assert schedule.at(8.5)["traffic"] == 1.0 and schedule.at(3.0)["traffic"] < 0.1
    custom = DynamicsSchedule.from_json({"entries": [{"hour": 6, "weather": "fog", "traffic": 0.5, "pedestrians": 0.2},
                                                     {"hour": 18, "weather": "rain", "traffic": 1, "pedestrians": 1}]})
    assert custom.at(2.0)["weather"] == "rain" and custom.at(7.0)["weather"] == "fog"
    with pytest.raises(ValueError, match="hour"):
        DynamicsSchedule.from_json({"entries": [{"hour": 24, "weather": "fog", "traffic": 0, "pedestrians": 0}]})
    with pytest.raises(ValueError, match="weather"):
        DynamicsSchedule.from_json({"entries": [{"hour": 1, "weather": "hail", "traffic": 0, "pedestrians": 0}]})
    with pytest.raises(ValueError, match="traffic"):
        DynamicsSchedule.from_json({"entries": [{"hour": 1, "weather": "fog", "traffic": 2, "pedestrians": 0}]})


@pytest.mark.slow
def test_fast_paths_give_what_the_per_agent_rules_give(scene):
    """The simulators' batched steps (every vehicle's pose at once; crossing rules asked only of walkers next to a
    crossing or on one) give exactly what the per-agent rules give, step after step, in heavy traffic."""
    import math

    from gaiverse.world.dynamics.pedestrians import Crowd, place_pedestrians
    from gaiverse.world.dynamics.streets import build_streets
    from gaiverse.world.dynamics.traffic import BoxReservations, Traffic, place_vehicles

    streets = build_streets(scene.network)
    rng = np.random.default_rng(11)
    boxes = BoxReservations(streets.compatible)
    traffic = Traffic(streets, place_vehicles(streets, FULL.traffic, 30.0, rng), boxes, FULL.traffic)
    crowd = Crowd(streets, place_pedestrians(streets, FULL.pedestrians, 30.0, rng), boxes, FULL.pedestrians)
    asked = 0
    for k in range(120):
        if k % 20 == 0:
            xy, yaw = traffic.pose()
            for i, car in enumerate(traffic.vehicles):  # Route.at at the front and rear axle line, one by one
                ends, tangent = car.route.at(np.array([car.s, car.s - car.kind.length_m]))
                d = ends[0] - ends[1]
                assert np.array_equal(xy[i], ends.mean(0))
                assert yaw[i] == (math.atan2(d[1], d[0]) if np.linalg.norm(d) > 1e-6 else
                                  math.atan2(tangent[0, 1], tangent[0, 0]))
        seg = crowd.frames()[2]
        may = set(crowd.may_stop(seg))
        asked += len(may)
        held, queues = dict(crowd.holding), {n: list(q) for n, q in boxes.queue.items()}
        for i in set(range(len(crowd.walkers.ids))) - may:  # everyone skipped walks on and asks nothing
            assert crowd._crossing_stop(i, seg[i]) == np.inf
        assert crowd.holding == held and {n: list(q) for n, q in boxes.queue.items()} == queues
        traffic.step(FULL.dt_s)
        if k % 2 == 0:
            crowd.step(2 * FULL.dt_s)
    assert asked > 0 and len(traffic.vehicles) >= 100  # people did reach crossings; the traffic is heavy
