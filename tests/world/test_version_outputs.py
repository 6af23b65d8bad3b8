"""Edited world versions keep window interiors and dynamics consistent with their geometry (real S3 + catalog).

A small world is built with the real pipeline (road graph, building meshes with windows, shipped NeRF room
library, traffic + pedestrian simulation, animated .glb) and published; edits then go through
`publish_edit` exactly as the API and CLI do.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from pydantic import TypeAdapter

from gaiverse.interiors.windows import check_windows, furnish_scene, glb_document
from gaiverse.world.dynamics.checks import check_dynamics, check_frame
from gaiverse.world.dynamics.pedestrians import PedestrianConfig
from gaiverse.world.dynamics.simulate import DynamicsConfig, road_surface, scene_dynamics
from gaiverse.world.dynamics.streets import build_streets
from gaiverse.world.dynamics.traffic import TrafficConfig
from gaiverse.world.dynamics.versioning import read_dynamics_glb, stored_dynamics
from gaiverse.world.editing import EditError, EditRequest
from gaiverse.world.road_graph import build_road_network
from gaiverse.world.version_outputs import (
    DYNAMICS_OBJECTS, network_and_surface, dynamics_files, interior_library, interiors_of_parts, publish_edit,
    publish_schedule, render_version,
)
from gaiverse.world.versions import WorldVersions, read_backup
from gaiverse.world.world_build import render, version_files
from storage.catalog import Catalog
from tests.world._world_fixtures import small_state

pytestmark = [pytest.mark.clause("ENV-a3"), pytest.mark.clause("ENV-d2"), pytest.mark.clause("ENV-c3")]

CONFIG = DynamicsConfig(seed=4, duration_s=8.0, warmup_s=4.0, traffic=TrafficConfig(vehicles=12),
                        pedestrians=PedestrianConfig(pedestrians=40))
EDIT = TypeAdapter(EditRequest)


def _state():
    """small_state with a second (north-south) road joining the first, so the graph has a junction."""
    state = small_state()
    state.roads[1, 8:32, 40] = True
    return state


@pytest.fixture(scope="module")
def built():
    """The files build_world publishes for the small world: .glb + maps, interiors, dynamics."""
    state = _state()
    scene = render(state)
    stats = furnish_scene(scene, interior_library())
    assert stats["windows"] > 0
    dyn = scene_dynamics(scene, CONFIG)
    files = {**version_files(state, scene), **dynamics_files(dyn, check_dynamics(dyn, contacts=False)),
             "interiors_json": (json.dumps(interiors_of_parts(scene.buildings)).encode(), "world/interiors", "json")}
    return state, files, dyn


@pytest.fixture()
def world(store, catalog, built):
    repo = WorldVersions(store, catalog)
    world_id = "t-" + uuid.uuid4().hex[:10]
    repo.publish(world_id, built[0], author="alice", message="built", new_world=True, derived=built[1])
    return repo, world_id


def _edit(repo, world_id, edit: dict):
    return publish_edit(repo, world_id, EDIT.validate_python({"edit": edit}))


def _objects(repo, world_id, version=None):
    return repo.manifest(world_id, version)["objects"]


def test_edit_away_from_roads_and_buildings_reuses_interiors_and_dynamics(world):
    repo, world_id = world
    made, _, outputs = _edit(repo, world_id, {"op": "raise", "amount_m": 3, "feather_m": 0,
                                              "region": {"x0_m": 400, "y0_m": 400, "x1_m": 480, "y1_m": 480}})
    before, after = _objects(repo, world_id, 1), _objects(repo, world_id, made.version)
    reused = [name for name in before if name in DYNAMICS_OBJECTS or name.startswith("interiors/")]
    assert len(reused) >= 4 and all(after[name]["key"] == before[name]["key"] for name in reused)
    assert outputs.summary["dynamics"] == {"carried_over": True}
    diff = repo.diff(world_id, 1, made.version)
    assert diff["dynamics"]["changed"] is False and diff["interiors"]["changed"] is False
    assert diff["heights"]["changed_cells"] > 0


def test_raising_a_road_lifts_its_traffic_on_the_same_routes(world):
    repo, world_id = world
    made, _, outputs = _edit(repo, world_id, {"op": "raise", "amount_m": 10, "feather_m": 0,
                                              "region": {"x0_m": 120, "y0_m": 200, "x1_m": 260, "y1_m": 300}})
    assert outputs.summary["dynamics"]["relifted"] is True
    before, after = _objects(repo, world_id, 1), _objects(repo, world_id, made.version)
    assert after["dynamics_glb"]["key"] != before["dynamics_glb"]["key"]
    old = read_dynamics_glb(repo.store.get_bytes(before["dynamics_glb"]["key"]))
    new = read_dynamics_glb(repo.store.get_bytes(after["dynamics_glb"]["key"]))
    assert old.vehicles.ids == new.vehicles.ids
    assert np.allclose(old.vehicles.xyz[..., :2], new.vehicles.xyz[..., :2], atol=1e-3)
    xy = new.vehicles.xyz[..., :2]
    inside = (xy[..., 0] > 150) & (xy[..., 0] < 230) & (xy[..., 1] > 200) & (xy[..., 1] < 300)
    lift = new.vehicles.xyz[..., 2] - old.vehicles.xyz[..., 2]
    assert inside.any() and np.median(lift[inside]) > 5.0  # the road surface there rose (graded, so not all 10 m)
    # every vehicle stands on the edited world's graded road surface, as a fresh simulation would place it
    network, graded = network_and_surface(repo.load_state(world_id, made.version))
    surface = road_surface(network, graded)(xy.reshape(-1, 2)).reshape(xy.shape[:2])
    assert np.allclose(new.vehicles.xyz[..., 2], surface, atol=1e-3)
    assert not np.allclose(old.vehicles.xyz[..., 2], surface, atol=1.0)


def test_drawn_road_reroutes_traffic_onto_the_new_graph(world):
    repo, world_id = world
    made, result, outputs = _edit(repo, world_id, {"op": "draw_road", "road_class": "minor", "width_m": 8,
                                                   "points": [[400, 256], [400, 40]]})
    before, after = _objects(repo, world_id, 1), _objects(repo, world_id, made.version)
    assert after["dynamics_glb"]["key"] != before["dynamics_glb"]["key"]
    summary = outputs.summary["dynamics"]
    assert summary["new_roads"] >= 1 and summary["vehicles_new"] + summary["pedestrians_new"] > 0
    # what is stored, read back, checked against the edited world's own road graph
    state = repo.load_state(world_id, made.version)
    network = build_road_network(state.roads, state.cell_m, state.water)
    dyn = stored_dynamics(repo.store.get_bytes(after["dynamics_glb"]["key"]),
                          json.loads(repo.store.get_bytes(after["dynamics_json"]["key"])), build_streets(network))
    check = check_dynamics(dyn, contacts=False)
    frame = check_frame(dyn, check)
    assert frame["ok"].all(), frame
    assert frame.set_index("check").loc["vehicle_overlaps", "violations"] == 0
    # the counts stored with the version (overlaps measured once, while rerouting) are what a fresh check finds
    assert json.loads(repo.store.get_bytes(after["dynamics_json"]["key"]))["checks"] == check.counts
    on_new_road = np.abs(dyn.vehicles.xyz[..., 0] - 400.0) < 4.0
    assert on_new_road.any(), "no vehicle drives on the drawn road"
    # the rerouted roads get their share of the world's traffic, not the whole load of the agents dropped
    old_summary = json.loads(repo.store.get_bytes(before["dynamics_json"]["key"]))
    world_density = len(read_dynamics_glb(repo.store.get_bytes(before["dynamics_glb"]["key"])).vehicles.ids) / \
        old_summary["stats"]["lane_km"]
    assert summary["vehicles_new"] <= 1.2 * world_density * summary["rerouted_lane_km"] + 1
    diff = repo.diff(world_id, 1, made.version)
    assert diff["dynamics"]["changed"] and diff["dynamics"]["rerouted"]["new_roads"] >= 1
    assert diff["identical"] is False


def test_moved_building_is_refurnished_and_its_version_renders_with_interiors(world):
    repo, world_id = world
    made, _, outputs = _edit(repo, world_id, {"op": "move_building", "building_id": "b2", "dx_m": 40, "dy_m": -8})
    assert outputs.summary["interiors"]["refurnished"] == ["b2"]
    assert outputs.summary["dynamics"] == {"carried_over": True}
    objects = _objects(repo, world_id, made.version)
    mapping = json.loads(repo.store.get_bytes(objects["interiors_json"]["key"]))
    assert set(mapping["buildings"]) == {"b1", "b2"} and mapping["buildings"]["b2"]["windows"] > 0
    scene = render_version(repo.load_state(world_id, made.version), objects)
    check = check_windows(scene.glb_bytes(), {name: b"" for name in objects})
    assert check["ok"] and check["window_nodes"] == 2
    rooms = {m["extras"]["interior"]["colour"] for m in glb_document(scene.glb_bytes())["materials"]
             if "interior" in m.get("extras", {})}
    assert rooms and rooms <= set(objects)


def test_removed_building_drops_its_interior_and_the_diff_says_so(world):
    repo, world_id = world
    made, result, _ = _edit(repo, world_id, {"op": "draw_road", "points": [[30, 480], [70, 480]], "width_m": 20})
    assert result.summary["buildings_removed"] == ["b1"]
    mapping = json.loads(repo.store.get_bytes(_objects(repo, world_id, made.version)["interiors_json"]["key"]))
    assert set(mapping["buildings"]) == {"b2"}
    assert repo.diff(world_id, 1, made.version)["interiors"]["buildings_removed"] == ["b1"]


def test_schedule_is_stored_with_a_version_and_validated(world):
    repo, world_id = world
    schedule = {"latitude_deg": 40.0, "day_of_year": 10, "entries": [
        {"hour": 0, "weather": "snow", "traffic": 0.2, "pedestrians": 0.1},
        {"hour": 12, "weather": "fog", "traffic": 1.0, "pedestrians": 0.9}]}
    made = publish_schedule(repo, world_id, schedule)
    before, after = _objects(repo, world_id, 1), _objects(repo, world_id, made.version)
    stored = json.loads(repo.store.get_bytes(after["dynamics_json"]["key"]))
    assert stored["schedule"]["entries"][1]["weather"] == "fog" and stored["schedule"]["day_of_year"] == 10
    old = read_dynamics_glb(repo.store.get_bytes(before["dynamics_glb"]["key"]))
    new = read_dynamics_glb(repo.store.get_bytes(after["dynamics_glb"]["key"]))
    assert np.allclose(old.vehicles.xyz, new.vehicles.xyz) and old.vehicles.ids == new.vehicles.ids
    assert new.extras["weather"]["schedule"] == stored["schedule"]
    assert after["interiors_json"]["key"] == before["interiors_json"]["key"]
    assert repo.diff(world_id, 1, made.version)["dynamics"]["schedule_changed"] is True
    with pytest.raises(ValueError, match="weather"):
        publish_schedule(repo, world_id, {"entries": [{"hour": 3, "weather": "hail", "traffic": 1,
                                                       "pedestrians": 1}]})
    with pytest.raises(ValueError, match="hour"):
        publish_schedule(repo, world_id, {"entries": [{"hour": 25, "weather": "rain", "traffic": 1,
                                                       "pedestrians": 1}]})


def test_backup_of_an_edited_version_restores_interiors_and_dynamics(world, store, tmp_path):
    repo, world_id = world
    made, _, _ = _edit(repo, world_id, {"op": "draw_road", "points": [[400, 256], [400, 40]]})
    files = read_backup(repo.export_backup(world_id, made.version))
    objects = _objects(repo, world_id, made.version)
    names = [n for n in objects if n in DYNAMICS_OBJECTS or n.startswith("interiors")]
    assert len(names) >= 5 and all(f"objects/{objects[n]['key']}" in files for n in names)
    from storage.objectstore import ObjectStore

    empty_store = ObjectStore(store.client, "restore-" + uuid.uuid4().hex[:8])
    empty_store.ensure_bucket()
    empty = WorldVersions(empty_store, Catalog(tmp_path / "empty.duckdb"))
    empty.restore_backup(repo.export_backup(world_id, made.version), author="carol")
    back = empty.manifest(world_id)["objects"]
    assert all(empty_store.get_bytes(back[n]["key"]) == repo.store.get_bytes(objects[n]["key"]) for n in names)


def test_edits_that_break_the_outputs_are_refused(world):
    repo, world_id = world
    with pytest.raises(EditError):
        _edit(repo, world_id, {"op": "move_building", "building_id": "nope", "dx_m": 1})
    assert len(repo.versions(world_id)) == 1


def test_schedule_at_the_command_line(world, tmp_path):
    from typer.testing import CliRunner

    from gaiverse.world.world_cli import world_app

    repo, world_id = world
    run = CliRunner()
    shown = run.invoke(world_app, ["schedule", world_id])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["entries"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"entries": [{"hour": 6, "weather": "rain", "traffic": 0.7, "pedestrians": 0.3}]}))
    made = run.invoke(world_app, ["schedule", world_id, f"@{plan}", "-m", "rainy mornings"])
    assert made.exit_code == 0, made.stderr
    assert json.loads(made.stdout)["message"] == "rainy mornings"
    assert json.loads(run.invoke(world_app, ["schedule", world_id]).stdout)["entries"][0]["weather"] == "rain"
    bad = run.invoke(world_app, ["schedule", world_id, '{"entries": [{"hour": 6, "weather": "rain", "traffic": 2, '
                                                       '"pedestrians": 0.3}]}'])
    assert bad.exit_code == 2 and "traffic" in bad.stderr


def test_an_edit_of_a_version_without_outputs_adds_them(store, catalog):
    repo = WorldVersions(store, catalog)
    world_id = "t-" + uuid.uuid4().hex[:10]
    repo.publish(world_id, _state(), author="alice", message="made before versions kept outputs", new_world=True)
    made, _, outputs = _edit(repo, world_id, {"op": "raise", "amount_m": 2,
                                              "region": {"x0_m": 400, "y0_m": 400, "x1_m": 480, "y1_m": 480}})
    objects = _objects(repo, world_id, made.version)
    assert outputs.summary["dynamics"]["simulated"] and set(DYNAMICS_OBJECTS) <= set(objects)
    assert outputs.checks["dynamics"]["vehicle_overlaps"] == 0 and outputs.checks["interiors"]["ok"]
    assert any(name.startswith("interiors/") for name in objects)


def test_rerouted_newcomers_that_drive_into_kept_vehicles_are_removed():
    """Newcomers are simulated on the affected roads alone; one that overlaps a kept vehicle goes, the kept stay."""
    from gaiverse.world.dynamics.checks import vehicle_overlaps
    from gaiverse.world.dynamics.simulate import AgentTracks, Dynamics
    from gaiverse.world.dynamics.versioning import _without_overlaps

    times = np.arange(3) * 0.5
    x = np.array([0.0, 10.0, 1.0, 50.0])  # vehicle_2 (a newcomer) sits on vehicle_0 (kept)
    xyz = np.zeros((len(times), 4, 3))
    xyz[:, :, 0] = x + times[:, None]
    vehicles = AgentTracks([f"vehicle_{k}" for k in range(4)], ["car"] * 4, np.tile([4.4, 1.8], (4, 1)),
                           np.zeros((4, 3), np.uint8), xyz, np.zeros((len(times), 4)))
    dyn = Dynamics(times, vehicles, None, None, None, None, {})
    assert vehicle_overlaps(dyn)
    kept, dropped, overlaps = _without_overlaps(dyn, kept=2)
    assert dropped == 1 and kept.ids == ["vehicle_0", "vehicle_1", "vehicle_3"]
    assert overlaps == [] == vehicle_overlaps(Dynamics(times, kept, None, None, None, None, {}))
    unchanged, none, left = _without_overlaps(dyn, kept=4)
    assert none == 0 and unchanged is vehicles  # kept vehicles are never removed
    assert left == vehicle_overlaps(dyn)  # what the version's check reports, measured once
