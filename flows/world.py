"""World flows: build a world from a suggestion, and rebuild a named world with the newest checkpoint.

build_world: parse suggestions -> layout (diffusion, Ray actor) -> roads -> buildings ->
assemble (terrain, road meshes, vegetation, .glb) -> validate (world suite + glTF validator)
-> publish (one catalog transaction) -> report (artifacts). Each step is a retryable task;
nothing is published unless validation passed. rebuild_world re-reads a world's stored
suggestion (prompt, size, seed), regenerates it with the checkpoint installed now and
publishes the result as the world's next version. Implements the 8.2 world service flow
(ENV-a1, ENV-a2, ENV-b2, ENV-d1) and ENV-a3 (versions).
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any, Callable, Literal

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from pydantic import Field

from gaiverse.interiors.capture import CAPTURE_ID_PATTERN, CaptureError, room_owner
from gaiverse.world.dynamics.schedule import DynamicsSchedule
from gaiverse.world.suggestions import parse_suggestion
from gaiverse.world.world_build import checkpoint_id
from gaiverse.world.world_state import WorldState
from tasks.artifacts import table_artifact
from tasks.common import current_run_ids, flow_hooks, get_catalog
from tasks.dynamics import simulate_dynamics
from tasks.interiors_world import furnish_interiors
from tasks.world import (
    assemble, extract_roads, generate_layout, load_world, parse_suggestions, place_buildings, publish_world,
    validate_world,
)
from tasks.world_knowledge import ingest_world_knowledge

WorldId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$")]


class Steps:
    """Times each step of a flow run and attaches the table at the end."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.logger = get_run_logger()

    def run(self, name: str, call: Callable[[], Any], detail: Callable[[Any], str] = lambda r: "") -> Any:
        started = time.perf_counter()
        result = call()
        self.rows.append({"step": name, "seconds": round(time.perf_counter() - started, 2), "detail": detail(result)})
        self.logger.info("step %s done in %.1f s %s", name, self.rows[-1]["seconds"], self.rows[-1]["detail"])
        return result

    def knowledge(self, world_id: str, version: int) -> dict[str, Any]:
        """NPC knowledge of the published version (NPC-a1). The version stands even if this fails: the
        failure is logged and reported, and `POST /knowledge/worlds/{id}` ingests it again."""
        try:  # not a row of the step table: the table lists the world's own build steps
            result = ingest_world_knowledge(world_id, version)
            self.logger.info("knowledge of %s v%d: %d passages, %d places", world_id, version, result["passages"],
                             result["places"])
            return result
        except Exception as err:  # noqa: BLE001 - the world is published; knowledge can be re-ingested
            self.logger.warning("world knowledge of %s v%d not ingested: %s", world_id, version, err)
            return {"error": f"{type(err).__name__}: {err}"[:300]}

    def report(self, key: str, title: str) -> None:
        table_artifact(key, self.rows, title=title, columns=["step", "seconds", "detail"])


def run_owner(owner: str | None) -> str:
    """Who a run builds for: the `owner:<id>` tag the API puts on its runs, else `owner`, else the admin."""
    context = FlowRunContext.get()
    tags = context.flow_run.tags if context and context.flow_run else []
    tagged = next((t.split(":", 1)[1] for t in tags or [] if t.startswith("owner:")), None)
    if tagged:
        return tagged
    if owner:
        return owner
    rows = get_catalog().query("SELECT user_id FROM users WHERE is_admin ORDER BY created_at LIMIT 1")
    return rows[0]["user_id"] if rows else "admin"


def _world_id(prompt: str, seed: int) -> str:
    flow_run_id, _ = current_run_ids()
    digest = hashlib.sha256(f"{prompt}|{seed}|{flow_run_id}".encode()).hexdigest()[:10]
    return f"w-{digest}"


def _build(steps: Steps, controls, prompt: str, seed: int, ddim_steps: int | None, checkpoint: str | None,
           schedule: dict[str, Any] | None = None, room: tuple[str, str] | None = None):
    """layout -> roads -> buildings -> assemble -> interiors -> dynamics -> validate; returns (state, scene,
    checkpoints, checks, files of the dynamics step). room: (capture id, owner) whose room fills the windows."""
    checkpoints = checkpoint_id(checkpoint)
    layout = steps.run("layout", lambda: generate_layout(controls, seed, ddim_steps, checkpoint),
                       lambda r: f"{r.heights.shape[1]}x{r.heights.shape[0]} cells at {r.cell_m} m")
    network = steps.run("roads", lambda: extract_roads(layout), lambda r: f"{len(r.polylines)} roads")
    buildings = steps.run("buildings", lambda: place_buildings(layout, network, prompt, seed),
                          lambda r: f"{len(r)} buildings")
    state = WorldState.from_layout(layout, prompt, buildings)
    scene = steps.run("assemble", lambda: assemble(state, {"layout": checkpoints["sha256"]}),
                      lambda r: f"{r.triangles} triangles, {len(r.vegetation)} plants")
    room_id, room_user = room or (None, None)
    interiors = steps.run("interiors", lambda: furnish_interiors(scene, room_capture_id=room_id, owner=room_user),
                          lambda r: r.get("skipped") or f"{r['windows']} windows, {r['room_views_used']} NeRF room "
                          f"views{f' of room {room_id}' if room_id else ''}")
    dynamics = steps.run("dynamics", lambda: simulate_dynamics(scene, seed, schedule),
                         lambda r: f"{r['vehicles']} vehicles, {r['pedestrians']} people")
    checks = steps.run("validate", lambda: validate_world(scene),
                       lambda r: f"{r['gltf_errors']} glTF errors, {r['buildings']} buildings, {r['roads']} roads")
    return state, scene, checkpoints, {**checks, "dynamics": dynamics["checks"]}, {**dynamics["files"],
                                                                                  **interiors.get("files", {})}


@flow(name="build-world", description="A validated, versioned 3D world (.glb + maps) from a text suggestion.",
      **flow_hooks())
def build_world(
    prompt: Annotated[str, Field(min_length=1, max_length=500)],
    size_m: Annotated[float | None, Field(ge=128, le=4000)] = None,
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
    world_id: WorldId | None = None,
    ddim_steps: Annotated[int | None, Field(ge=2, le=100)] = None,
    owner: Annotated[str | None, Field(max_length=100)] = None,
    checkpoint: Annotated[str | None, Field(max_length=500)] = None,
    schedule: dict[str, Any] | None = None,
    room_capture_id: Annotated[str | None, Field(pattern=CAPTURE_ID_PATTERN)] = None,
) -> dict[str, Any]:
    """Build a world and publish it as a new world (version 1) or the next version of `world_id`.

    size_m : side of the square world in metres (default: the size in the prompt, else 1 km).
    ddim_steps : DDIM steps per layout tile (default: the generator's). owner : who the world is
    for when the run is not started through the API (default: the admin). schedule : the world's weather /
    time-of-day schedule (`gaiverse.world.dynamics.schedule.DynamicsSchedule` JSON; default from the seed).
    room_capture_id : the owner's room capture (`POST /interiors/captures`) whose finished NeRF room every window
    shows instead of the shipped rooms; refused unless it is the owner's and its room is published. The world
    then holds renderings of their room and, like every world, is theirs (docs/PRIVACY.md).
    """
    if schedule is not None:  # refuse a malformed schedule before building anything
        DynamicsSchedule.from_json(schedule)
    who = run_owner(owner)
    if room_capture_id is not None:  # refuse another user's or an unfinished room before building anything
        try:
            room_owner(get_catalog(), room_capture_id, who)
        except CaptureError as err:
            raise ValueError(f"`room_capture_id`: {err}") from None
    steps = Steps()
    controls = steps.run("parse", lambda: parse_suggestions(prompt, size_m),
                         lambda r: f"{r.size_m[0]:.0f} m x {r.size_m[1]:.0f} m, relief {r.relief_m:.0f} m")
    state, scene, checkpoints, checks, files = _build(steps, controls, prompt, seed, ddim_steps, checkpoint, schedule,
                                                      (room_capture_id, who) if room_capture_id else None)
    target = world_id or _world_id(prompt, seed)
    published = steps.run("publish", lambda: publish_world(
        target, state, scene, owner=who, message=f"built from {prompt!r} (seed {seed})",
        made_by={"kind": "build", "prompt": prompt, "seed": seed, "ddim_steps": ddim_steps,
                 **({"room_capture_id": room_capture_id} if room_capture_id else {})},
        checkpoints=checkpoints, new_world=world_id is None, extra_files=files),
        lambda r: f"{r['world_id']} v{r['version']}")
    knowledge = steps.knowledge(published["world_id"], published["version"])
    steps.report("world-build-steps", f"World {published['world_id']} v{published['version']}")
    flow_run_id, _ = current_run_ids()
    return {**published, "flow_run_id": flow_run_id, "owner": who, "checks": checks, "steps": steps.rows,
            "knowledge": knowledge}


def _kept_room(capture_id: str | None, owner: str) -> tuple[str, str] | None:
    """The owner's room a rebuilt version keeps in its windows; None (shipped rooms) once the capture is deleted."""
    if not capture_id:
        return None
    try:
        room_owner(get_catalog(), capture_id, owner)
    except CaptureError as err:
        get_run_logger().warning("rebuild without the owner's room: %s", err)
        return None
    return capture_id, owner


@flow(name="rebuild-world", description="Rebuild a named world from its stored suggestion with the newest checkpoint.",
      **flow_hooks())
def rebuild_world(
    world_id: WorldId,
    ddim_steps: Annotated[int | None, Field(ge=2, le=100)] = None,
    if_missing: Literal["fail", "skip"] = "fail",
    checkpoint: Annotated[str | None, Field(max_length=500)] = None,
) -> dict[str, Any]:
    """Publish a new version of `world_id` regenerated from its prompt, size and seed.

    if_missing : "skip" lets a schedule name a world that does not exist yet (the run then
    completes without publishing); "fail" fails the run. A version built with the owner's room keeps it in its
    windows while the room capture exists (the shipped rooms after it is deleted).
    """
    steps = Steps()
    from gaiverse.world.version_outputs import version_schedule
    from gaiverse.world.versions import WorldVersions
    from tasks.common import get_store

    if WorldVersions(get_store(), get_catalog()).owner(world_id) is None:
        if if_missing == "skip":
            get_run_logger().warning("world %s does not exist; nothing to rebuild", world_id)
            return {"world_id": world_id, "skipped": True}
        raise ValueError(f"`world_id` {world_id!r} does not exist")
    current = steps.run("load", lambda: load_world(world_id), lambda r: f"v{r['version']} of {r['owner']}")
    old: WorldState = current["state"]
    controls = parse_suggestion(old.prompt)
    controls.size_m = tuple(float(s) for s in old.size_m)
    manifest = WorldVersions(get_store(), get_catalog()).manifest(world_id, current["version"])
    schedule = version_schedule(get_store().get_bytes, manifest["objects"])  # the world keeps its weather schedule
    room = _kept_room((manifest.get("made_by") or {}).get("room_capture_id"), current["owner"])
    state, scene, checkpoints, checks, files = _build(steps, controls, old.prompt, old.seed, ddim_steps, checkpoint,
                                                      schedule, room)
    published = steps.run("publish", lambda: publish_world(
        world_id, state, scene, owner=current["owner"],
        message=f"rebuild of v{current['version']} with checkpoint {checkpoints['sha256']}",
        made_by={"kind": "rebuild", "from_version": current["version"], "seed": old.seed,
                 **({"room_capture_id": room[0]} if room else {})},
        checkpoints=checkpoints, new_world=False, extra_files=files), lambda r: f"v{r['version']}")
    knowledge = steps.knowledge(world_id, published["version"])
    steps.report("world-rebuild-steps", f"World {world_id} rebuilt as v{published['version']}")
    flow_run_id, _ = current_run_ids()
    return {**published, "flow_run_id": flow_run_id, "checks": checks, "steps": steps.rows, "knowledge": knowledge}
