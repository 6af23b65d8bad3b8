"""What a world version carries besides its state: window interiors and dynamics, for edited versions too.

A built version stores the interiors step's outputs (room colour + depth maps `interiors/<room>_*.png`
named by their path beside the .glb, and the `interiors_json` map: building -> room, windows) and the
dynamics step's (`dynamics_glb`, `dynamics_json`). An edit must give its new version the same, consistent
with the new geometry:

- interiors: buildings whose footprint is unchanged keep their entry; moved (or new) buildings are
  meshed again for their window count and get their room (`InteriorLibrary.for_building`, stable per
  id: the owner's captured room when the world was built with one and the capture still exists, and the
  edit's version then records `made_by.room_capture_id` so a rebuild keeps it); removed ones drop theirs;
  room maps still used are reused by key (content-addressed, no copy);
- dynamics: unchanged when no road, water or height on or beside a road changed (same objects);
  lifted onto the new road surface when only heights there changed (same routes); otherwise
  rerouted incrementally (`dynamics.versioning.reroute`) and checked like a build's.

`EditOutputs` holds new files (bytes to store), reused objects (refs of the base version) and the
checks; `WorldVersions.publish` stores them. `render_version` assembles a version's .glb with its
window interiors (the API does it on first request). Implements ENV-a3/ENV-a4 for the outputs of
ENV-c3 and ENV-d2 ("versioned like the rest of the world").
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gaiverse.world.world_state import STATE_OBJECTS, Building, WorldState

log = logging.getLogger(__name__)

INTERIORS_FORMAT = "gaiverse.interiors/1"
INTERIOR_PREFIX = "interiors/"
DYNAMICS_OBJECTS = ("dynamics_glb", "dynamics_json")
OUTPUT_OBJECTS = ("interiors_json", *DYNAMICS_OBJECTS)
"""The base version's objects an edit reads to make its new version's interiors and dynamics."""

GetBytes = Callable[[str], bytes]


class OutputsError(ValueError):
    """An edited version's interiors or dynamics fail their checks (nothing is published)."""


@dataclass
class EditOutputs:
    """Files to store, objects of the base version to reuse, and what was checked."""

    files: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)
    reused: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def add(self, other: EditOutputs) -> EditOutputs:
        self.files.update(other.files), self.reused.update(other.reused)
        self.checks.update(other.checks), self.summary.update(other.summary)
        return self


# ------------------------------------------------------------------------------------------ interiors

_LIBRARY: dict[str, Any] = {}


def interior_library():
    """The shipped room library (loaded once per process); None when none is installed."""
    if "library" not in _LIBRARY:
        from gaiverse.interiors.windows import load_library

        try:
            _LIBRARY["library"] = load_library()
        except FileNotFoundError as err:
            log.warning("no interior library: %s", err)
            _LIBRARY["library"] = None
    return _LIBRARY["library"]


def interiors_map(buildings: dict[str, dict[str, Any]], room_files: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {"format": INTERIORS_FORMAT, "buildings": dict(sorted(buildings.items())),
            "rooms": dict(sorted(room_files.items()))}


def interiors_of_parts(parts) -> dict[str, Any]:
    """The interiors map of furnished building parts (what the build's interiors step stores)."""
    buildings, rooms = {}, {}
    for part in parts:
        interior = part.extras.get("interior")
        if part.extras.get("part") != "windows" or not interior:
            continue
        buildings[str(part.extras["id"])] = {"room": interior["atlas"], "windows": len(part.vertices) // 4}
        rooms[interior["atlas"]] = _room_paths(interior["atlas"])
    return interiors_map(buildings, rooms)


def _room_paths(room: str) -> dict[str, str]:
    return {"colour": f"{INTERIOR_PREFIX}{room}_colour.png", "depth": f"{INTERIOR_PREFIX}{room}_depth.png"}


def interiors_from_glb(glb: bytes) -> dict[str, Any]:
    """The interiors map read from a furnished .glb (versions built before `interiors_json` existed)."""
    from gaiverse.interiors.windows import glb_document

    doc = glb_document(glb)
    buildings, rooms = {}, {}
    for node in doc.get("nodes", []):
        extras = node.get("extras", {})
        if extras.get("part") == "windows" and extras.get("interior") and "mesh" in node:
            primitive = doc["meshes"][node["mesh"]]["primitives"][0]
            count = doc["accessors"][primitive["attributes"]["POSITION"]]["count"]
            buildings[str(extras["id"])] = {"room": extras["interior"]["atlas"], "windows": count // 4}
            rooms[extras["interior"]["atlas"]] = _room_paths(extras["interior"]["atlas"])
    return interiors_map(buildings, rooms)


def window_count(building: Building, state: WorldState) -> int:
    """Windows of one building as the world's meshing makes them (0 without the building mesher)."""
    try:
        from gaiverse.world.buildings_mesh import building_parts
        from gaiverse.world.world_build import _placed
    except ImportError:
        return 0
    return int(building_parts(_placed(building, state), seed=state.seed).n_windows)


def base_interiors(get_bytes: GetBytes, objects: dict[str, dict]) -> dict[str, Any] | None:
    """The base version's interiors map: stored, else read from its .glb, else None (never furnished)."""
    if "interiors_json" in objects:
        return json.loads(get_bytes(objects["interiors_json"]["key"]))
    if "glb" in objects and any(name.startswith(INTERIOR_PREFIX) for name in objects):
        return interiors_from_glb(get_bytes(objects["glb"]["key"]))
    return None


def edited_interiors(get_bytes: GetBytes, objects: dict[str, dict], old: WorldState, new: WorldState,
                     room_library=None) -> EditOutputs:
    """Interiors of an edited version (module docstring). `room_library`: the owner's room a world built with it
    keeps for moved and new buildings (`owner_room`); the shipped rooms otherwise."""
    started = time.perf_counter()
    base = base_interiors(get_bytes, objects)
    library = room_library
    if base is None:
        library = library or interior_library()
        if library is None:
            return EditOutputs(summary={"interiors": "none (no room library installed)"})
        base = interiors_map({}, {})
    before = {b.id: b for b in old.buildings}
    entries, refurnished = {}, []
    for building in new.buildings:
        kept = base["buildings"].get(building.id)
        if kept is not None and before.get(building.id) is not None \
                and before[building.id].footprint == building.footprint:
            entries[building.id] = kept
            continue
        library = library or interior_library()
        windows = window_count(building, new)
        if windows and library is not None:
            entries[building.id] = {"room": library.for_building(building.id).name, "windows": windows}
        refurnished.append(building.id)
    rooms = {entry["room"] for entry in entries.values()}
    out = EditOutputs()
    views = {v.name: v for v in library.views} if library is not None else {}
    for room in sorted(rooms):
        for path in _room_paths(room).values():
            if path in objects:
                out.reused[path] = objects[path]
            elif room in views:
                out.files[path] = (views[room].files()[path], "world/interior", "png")
    mapping = interiors_map(entries, {room: _room_paths(room) for room in rooms})
    out.files["interiors_json"] = (json.dumps(mapping, sort_keys=True).encode(), "world/interiors", "json")
    out.checks["interiors"] = check_interiors(mapping, new, set(out.files) | set(out.reused))
    if out.checks["interiors"]["problems"]:
        raise OutputsError(f"window interiors of the edited version: {out.checks['interiors']['problems'][:3]}")
    out.summary["interiors"] = {"buildings": len(entries), "rooms": len(rooms), "refurnished": refurnished,
                                "removed": sorted(set(base["buildings"]) - set(entries)),
                                "seconds": round(time.perf_counter() - started, 3)}
    return out


def check_interiors(mapping: dict[str, Any], state: WorldState, names: set[str]) -> dict[str, Any]:
    """Every furnished building exists, has windows and a room whose colour and depth maps are objects of the
    version (so every window of the .glb gets its material and the viewer its maps)."""
    ids = {b.id for b in state.buildings}
    problems = []
    for bid, entry in mapping["buildings"].items():
        if bid not in ids:
            problems.append(f"building {bid} is furnished but not in the world")
        if entry["windows"] <= 0:
            problems.append(f"building {bid} is furnished without windows")
        for path in _room_paths(entry["room"]).values():
            if path not in names:
                problems.append(f"building {bid}: {path} is not stored with the version")
    windows = sum(entry["windows"] for entry in mapping["buildings"].values())
    return {"furnished_buildings": len(mapping["buildings"]), "windows": windows, "problems": problems[:20],
            "ok": not problems}


# ------------------------------------------------------------------------------------------- dynamics

def network_and_surface(state: WorldState):
    """The road graph and graded road surfaces of a state, as `assemble_world` makes them."""
    from gaiverse.world.assemble import WorldConfig
    from gaiverse.world.road_graph import build_road_network
    from gaiverse.world.road_mesh import grade_roads
    from gaiverse.world.terrain_mesh import ground_field, water_at

    cfg = WorldConfig()
    network = build_road_network(state.roads, state.cell_m, state.water, cfg.roads)
    ground = ground_field(state.heights, state.cell_m, state.water, state.water_level_m, cfg.terrain_cell_m,
                          cfg.water_depth_m)
    wet = lambda xy: water_at(state.water, state.cell_m, np.atleast_2d(xy))  # noqa: E731
    return network, grade_roads(network, ground, wet, state.water_level_m, cfg.road_mesh)


def dynamics_files(dyn, check) -> dict[str, tuple[bytes, str, str]]:
    """The objects of a version's dynamics: the animated .glb and the summary JSON with the checks."""
    from gaiverse.world.dynamics.export import dynamics_glb

    summary = {**dyn.summary(), "checks": check.counts, "check_metrics": check.metrics}
    return {"dynamics_glb": (dynamics_glb(dyn), "world/dynamics", "glb"),
            "dynamics_json": (json.dumps(summary, sort_keys=True, default=float).encode(), "world/dynamics", "json")}


def edited_dynamics(get_bytes: GetBytes, objects: dict[str, dict], old: WorldState, new: WorldState) -> EditOutputs:
    """Dynamics of an edited version: carried over, or rerouted and checked (module docstring)."""
    from gaiverse.world.dynamics.checks import DynamicsCheck, check_dynamics, check_frame
    from gaiverse.world.dynamics.streets import build_streets
    from gaiverse.world.dynamics.versioning import (
        cell_points, changed_cells, network_changes, relifted, reroute, stored_dynamics,
    )
    from gaiverse.world.road_graph import build_road_network

    if not all(name in objects for name in DYNAMICS_OBJECTS):
        return simulated_dynamics(new)
    changed = changed_cells(old, new)
    if not changed.any():
        return EditOutputs(reused={name: objects[name] for name in DYNAMICS_OBJECTS},
                           checks={"dynamics": {"carried_over": True}},
                           summary={"dynamics": {"carried_over": True}})
    started = time.perf_counter()
    summary = json.loads(get_bytes(objects["dynamics_json"]["key"]))
    network, graded = network_and_surface(new)
    same_rasters = np.array_equal(old.roads, new.roads) and np.array_equal(old.water, new.water)
    old_network = network if same_rasters else build_road_network(old.roads, old.cell_m, old.water)
    glb = get_bytes(objects["dynamics_glb"]["key"])
    if same_rasters or network_changes(old_network, network) == ([], []):
        # same road graph, same 2-D routes: only heights move. The checks measure 2-D routes against the road
        # graph, so the base version's results hold unchanged; they are carried with the new objects.
        dyn = relifted(stored_dynamics(glb, summary, None), network, graded)
        check = DynamicsCheck(summary.get("checks", {}), summary.get("check_metrics", {}))
        return EditOutputs(files=dynamics_files(dyn, check),
                           checks={"dynamics": {"carried_over": False, "routes_unchanged": True, **check.counts}},
                           summary={"dynamics": {"relifted": True, "vehicles": len(dyn.vehicles),
                                                 "pedestrians": len(dyn.pedestrians),
                                                 "seconds": round(time.perf_counter() - started, 3)}})
    streets = build_streets(network)
    base = stored_dynamics(glb, summary, streets)
    result = reroute(base, old_network, network, graded, cell_points(changed, new.cell_m), streets)
    check = check_dynamics(result.dynamics, contacts=False, overlaps=result.overlaps)
    frame = check_frame(result.dynamics, check)
    if not frame["ok"].all():
        failed = frame.loc[~frame["ok"], "check"].tolist()
        raise OutputsError(f"rerouted traffic fails {failed}: {check.failures[:3]}")
    return EditOutputs(files=dynamics_files(result.dynamics, check),
                       checks={"dynamics": {"carried_over": False, **check.counts}},
                       summary={"dynamics": {**result.summary, "seconds": round(time.perf_counter() - started, 3)}})


def simulated_dynamics(state: WorldState) -> EditOutputs:
    """Dynamics simulated afresh for the whole world (the base version had none: made before versions kept
    them); seconds for a 1 km² world, once: later edits start from these."""
    from gaiverse.world.dynamics.checks import check_dynamics, check_frame
    from gaiverse.world.dynamics.simulate import DynamicsConfig, road_surface, simulate_dynamics

    started = time.perf_counter()
    network, graded = network_and_surface(state)
    if not network.graph.number_of_edges():
        return EditOutputs(summary={"dynamics": "none (the world has no roads)"})
    dyn = simulate_dynamics(network, road_surface(network, graded), DynamicsConfig(seed=state.seed))
    check = check_dynamics(dyn, contacts=False)
    frame = check_frame(dyn, check)
    if not frame["ok"].all():
        raise OutputsError(f"simulated traffic fails {frame.loc[~frame['ok'], 'check'].tolist()}: {check.failures[:3]}")
    return EditOutputs(files=dynamics_files(dyn, check), checks={"dynamics": {"carried_over": False, **check.counts}},
                       summary={"dynamics": {"simulated": True, "vehicles": len(dyn.vehicles),
                                             "pedestrians": len(dyn.pedestrians),
                                             "seconds": round(time.perf_counter() - started, 3)}})


def edit_outputs(get_bytes: GetBytes, objects: dict[str, dict], old: WorldState, new: WorldState,
                 room_library=None) -> EditOutputs:
    """Interiors and dynamics of the version an edit makes from a version with `objects`."""
    return edited_interiors(get_bytes, objects, old, new, room_library).add(
        edited_dynamics(get_bytes, objects, old, new))


def owner_room(store, catalog, made_by: dict[str, Any], owner: str):
    """The room library of the capture a version was built with (`made_by.room_capture_id`), opened with the
    owner's key as the build opened it; None when it was built without one or the capture is deleted since
    (edits then furnish with the shipped rooms, as a rebuild does)."""
    capture_id = (made_by or {}).get("room_capture_id")
    if not capture_id:
        return None
    from gaiverse.config import get_settings
    from gaiverse.interiors.capture import CaptureError, room_library

    try:
        return room_library(store, catalog, get_settings(), capture_id, owner)
    except CaptureError as err:
        log.warning("edit without the owner's room: %s", err)
        return None


def scheduled_dynamics(get_bytes: GetBytes, objects: dict[str, dict], schedule) -> EditOutputs:
    """The version's dynamics under another weather schedule (trajectories kept); everything else reused."""
    from gaiverse.world.dynamics.versioning import with_schedule

    if not all(name in objects for name in DYNAMICS_OBJECTS):
        raise OutputsError("this version has no dynamics to schedule (build the world again to add them)")
    glb, summary = with_schedule(get_bytes(objects["dynamics_glb"]["key"]),
                                 json.loads(get_bytes(objects["dynamics_json"]["key"])), schedule)
    files = {"dynamics_glb": (glb, "world/dynamics", "glb"),
             "dynamics_json": (json.dumps(summary, sort_keys=True, default=float).encode(), "world/dynamics", "json")}
    return EditOutputs(files=files, reused={k: v for k, v in objects.items() if k not in files},
                       summary={"schedule": schedule.to_json()})


def version_schedule(get_bytes: GetBytes, objects: dict[str, dict]) -> dict[str, Any] | None:
    """The weather / time-of-day schedule stored with a version (None without dynamics)."""
    if "dynamics_json" not in objects:
        return None
    return json.loads(get_bytes(objects["dynamics_json"]["key"])).get("schedule")


# ------------------------------------------------------------------------------------------- render

def render_version(state: WorldState, objects: dict[str, dict]):
    """A version's assembled scene with its window interiors (the rooms its objects ship); checked so every
    window has an interior material whose maps are among the version's objects."""
    from gaiverse.interiors.windows import check_windows, furnish_scene
    from gaiverse.world.world_build import render

    scene = render(state)
    library = interior_library() if any(name.startswith(INTERIOR_PREFIX) for name in objects) else None
    if library is not None:
        furnish_scene(scene, library)
        check = check_windows(scene.glb_bytes(), {name: b"" for name in objects})
        if check["window_nodes"] and not check["ok"]:
            raise OutputsError(f"window interiors of the rendered version: {check['problems'][:3]}")
    return scene


# --------------------------------------------------------------------------------------------- diff

def _json_object(get_bytes: GetBytes, objects: dict[str, dict], name: str) -> dict[str, Any] | None:
    return json.loads(get_bytes(objects[name]["key"])) if name in objects else None


def diff_outputs(get_bytes: GetBytes, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What changed in the interiors and dynamics between two versions' manifests (as data)."""
    oa, ob = a["objects"], b["objects"]
    ia, ib = base_interiors(get_bytes, oa), base_interiors(get_bytes, ob)
    ba, bb = (ia or {}).get("buildings", {}), (ib or {}).get("buildings", {})
    rooms_a, rooms_b = set((ia or {}).get("rooms", {})), set((ib or {}).get("rooms", {}))
    interiors = {"present": [ia is not None, ib is not None],
                 "buildings_added": sorted(set(bb) - set(ba)), "buildings_removed": sorted(set(ba) - set(bb)),
                 "buildings_changed": sorted(k for k in set(ba) & set(bb) if ba[k] != bb[k]),
                 "rooms_added": sorted(rooms_b - rooms_a), "rooms_removed": sorted(rooms_a - rooms_b),
                 "windows": [sum(e["windows"] for e in ba.values()), sum(e["windows"] for e in bb.values())]}
    interiors["changed"] = bool(interiors["present"][0] != interiors["present"][1] or any(
        interiors[k] for k in ("buildings_added", "buildings_removed", "buildings_changed", "rooms_added",
                               "rooms_removed")))
    da, db = _json_object(get_bytes, oa, "dynamics_json"), _json_object(get_bytes, ob, "dynamics_json")
    key = lambda o: (o.get("dynamics_glb") or {}).get("key")  # noqa: E731
    dynamics = {"present": [da is not None, db is not None], "changed": key(oa) != key(ob),
                "counts": [(d or {}).get("counts") for d in (da, db)],
                "schedule_changed": (da or {}).get("schedule") != (db or {}).get("schedule"),
                "rerouted": ((db or {}).get("stats") or {}).get("rerouted") if key(oa) != key(ob) else None}
    return {"interiors": interiors, "dynamics": dynamics}


# ------------------------------------------------------------------------------------------ publish

def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _prefetched(pool: ThreadPoolExecutor, get_bytes: GetBytes, objects: dict[str, dict], names) -> GetBytes:
    """`get_bytes` answering the named objects from downloads started now in `pool` (others as asked)."""
    pending = {objects[name]["key"]: pool.submit(get_bytes, objects[name]["key"]) for name in names if name in objects}
    return lambda key: pending[key].result() if key in pending else get_bytes(key)


def publish_edit(repo, world_id: str, request, models=None):
    """Apply an `editing.EditRequest` to a version of a world and publish the result with its interiors and
    dynamics (what the API, the CLI and the benchmark call). Returns (WorldVersion, EditResult, EditOutputs).

    Raises editing.EditError (the edit does not fit), OutputsError (its outputs fail their checks),
    versions.WorldNotFound / VersionConflict."""
    from gaiverse.world.editing import apply_edit
    from gaiverse.world.world_build import version_files

    base = repo.version(world_id, request.base_version)
    manifest = json.loads(repo.store.get_bytes(base.manifest_key))
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="edit-io") as pool:
        # the base version's objects download side by side (its interiors and dynamics, and the owner's name,
        # while the edit runs); the new version's maps are encoded while its dynamics are made (I/O and zlib,
        # not the interpreter)
        get_bytes = _prefetched(pool, repo.store.get_bytes, manifest["objects"], STATE_OBJECTS + OUTPUT_OBJECTS)
        owner_of = pool.submit(repo.owner, world_id)
        state = repo.state_of(manifest, get_bytes)
        result = apply_edit(state, request.edit, models)
        maps = pool.submit(version_files, result.state)
        owner = owner_of.result()
        # a world built with the owner's room keeps it
        room = owner_room(repo.store, repo.catalog, manifest.get("made_by"), owner)
        outputs = edit_outputs(get_bytes, manifest["objects"], state, result.state, room)
        derived = {**maps.result(), **outputs.files}
    made = repo.publish(world_id, result.state, author=owner,
                        message=request.message or f"{request.edit.op} (edit of v{base.version})",
                        derived=derived, reused=outputs.reused,
                        base_version=base.version, extra={"checks": _jsonable(outputs.checks)},
                        made_by={"kind": "edit", "base_version": base.version, **_jsonable(result.summary),
                                 "outputs": _jsonable(outputs.summary),
                                 **({"room_capture_id": manifest["made_by"]["room_capture_id"]} if room else {})})
    return made, result, outputs


def publish_schedule(repo, world_id: str, schedule: dict[str, Any], base_version: int | None = None,
                     message: str | None = None):
    """Publish a version whose dynamics follow `schedule` (DynamicsSchedule JSON, validated: ValueError names
    the field); everything else is the base version's objects."""
    from gaiverse.world.dynamics.schedule import DynamicsSchedule

    plan = DynamicsSchedule.from_json(schedule)
    base = repo.version(world_id, base_version)
    manifest = repo.manifest(world_id, base.version)
    outputs = scheduled_dynamics(repo.store.get_bytes, manifest["objects"], plan)
    state = repo.load_state(world_id, base.version)
    return repo.publish(world_id, state, author=repo.owner(world_id),
                        message=message or f"weather schedule (of v{base.version})", derived=outputs.files,
                        reused=outputs.reused, base_version=base.version,
                        made_by={"kind": "schedule", "base_version": base.version, **outputs.summary,
                                 **{k: v for k, v in (manifest.get("made_by") or {}).items()
                                    if k == "room_capture_id"}})  # so a later rebuild keeps the owner's room
