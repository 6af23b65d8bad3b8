"""Tasks of the world flows: thin, retryable wrappers over gaiverse.world (parse, layout, roads, buildings,
assemble, validate, publish) and the layout actor.

Objects travel between tasks in memory (cache="none": layouts and scenes are large, and each
build is a fresh run); publishing is idempotent per flow run, so a retried publish never
creates a second version. Implements the world service flow of 8.2 (ENV-a1..a4, ENV-d1).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import ray
from prefect import get_run_logger

from gaiverse.world import world_build
from gaiverse.world.layout import Layout
from gaiverse.world.suggestions import MAX_SIZE_M, MIN_SIZE_M, LayoutControls, parse_suggestion
from gaiverse.world.versions import WorldVersions
from gaiverse.world.world_state import Building, WorldState
from tasks.artifacts import png_artifact, table_artifact, validate_in_run
from tasks.common import current_run_ids, gaiverse_task, get_catalog, get_store
from validation import world as world_suite
from validation.metrics import expect

LAYOUT_TIMEOUT_S = 1800

GLTF_SUITE = "world.gltf"
GLTF_EXPECTATIONS = (expect("column_values_to_be_between", column="errors", min_value=0, max_value=0),)
"""The Khronos glTF validator reports no error for the version's .glb."""


def repo() -> WorldVersions:
    return WorldVersions(get_store(), get_catalog())


@gaiverse_task(cache="none", retries=0)
def parse_suggestions(prompt: str, size_m: float | None) -> LayoutControls:
    """The user's suggestion -> explicit controls; `size_m` (square side) overrides a size in the prompt."""
    controls = parse_suggestion(prompt)
    if size_m is not None:
        if not MIN_SIZE_M <= size_m <= MAX_SIZE_M:
            raise ValueError(f"`size_m` must be within {MIN_SIZE_M:.0f}..{MAX_SIZE_M:.0f} m, got {size_m}")
        controls.size_m = (float(size_m), float(size_m))
    table_artifact("world-controls", [{"control": k, "value": v} for k, v in asdict(controls).items()],
                   title=f"Controls parsed from {prompt!r}")
    get_run_logger().info("controls: %s", controls)
    return controls


@gaiverse_task(cache="none", retries=2, backoff_s=2.0, timeout_seconds=LAYOUT_TIMEOUT_S)
def generate_layout(controls: LayoutControls, seed: int, ddim_steps: int | None, checkpoint: str | None) -> Layout:
    """Sample the layout in the layout actor (terrain + roads diffusion, stitched tiles)."""
    from ray_actors.world_layout import world_layout_model

    actor = world_layout_model(checkpoint)
    result = ray.get(actor.generate.remote(controls, seed, ddim_steps), timeout=LAYOUT_TIMEOUT_S)
    layout: Layout = result["layout"]
    get_run_logger().info("layout %s on node %s (%s, pid %d)", layout.heights.shape, result["node_id"][:12],
                          result["device"], result["pid"])
    return layout


@gaiverse_task(cache="none", retries=1)
def extract_roads(layout: Layout):
    """Road rasters -> cleaned, connected road graph (metrics before and after cleaning as an artifact)."""
    network = world_build.road_network(layout)
    rows = [{"metric": k, "before": network.metrics_before.get(k), "after": network.metrics_after.get(k)}
            for k in network.metrics_after if k != "config"]
    table_artifact("world-roads", rows, title=f"Road network: {len(network.polylines)} roads")
    return network


@gaiverse_task(cache="none", retries=1)
def place_buildings(layout: Layout, network, prompt: str, seed: int) -> list[Building]:
    """Buildings from the learned building model along the road network."""
    buildings = world_build.place_buildings(layout, network, prompt, seed)
    levels = [b.attrs.get("levels", 0) for b in buildings]
    table_artifact("world-buildings", [{"buildings": len(buildings), "max_levels": max(levels, default=0),
                                        "mean_height_m": round(float(np.mean([b.height_m for b in buildings])), 2)
                                        if buildings else 0.0}], title="Buildings")
    return buildings


@gaiverse_task(cache="none", retries=1, timeout_seconds=1800)
def assemble(state: WorldState, checkpoints: dict[str, str]):
    """Terrain, road meshes, buildings and vegetation -> one scene and its .glb."""
    scene = world_build.render(state, checkpoints)
    manifest = scene.manifest()
    table_artifact("world-scene", [{"triangles": manifest["triangles"], **manifest["counts"],
                                    "plants": len(scene.vegetation)}], title="Assembled world (vegetation included)")
    return scene


@gaiverse_task(cache="none", retries=0)
def validate_world(scene) -> dict[str, Any]:
    """World suites (GX, validation/world.py): no building on roads/water/each other, roads connected, triangle
    budget, relief within the controls, semantic extras; plus the Khronos glTF validator with no error."""
    from validation.gltf import validate_glb

    buildings, roads, summary = scene.check_frames()
    gltf = validate_glb(scene.glb_bytes())
    validate_in_run(world_suite.SUMMARY_SUITE, summary, world_suite.SUMMARY_EXPECTATIONS, asset_column="id")
    validate_in_run(world_suite.ROADS_SUITE, roads, world_suite.ROAD_EXPECTATIONS, asset_column="id")
    if len(buildings):
        validate_in_run(world_suite.BUILDINGS_SUITE, buildings, world_suite.BUILDING_EXPECTATIONS, asset_column="id")
    validate_in_run(GLTF_SUITE, pd.DataFrame([{"id": "world.glb", "errors": len(gltf.errors),
                                               "warnings": len(gltf.warnings)}]), GLTF_EXPECTATIONS, asset_column="id")
    return {"buildings": len(buildings), "roads": len(roads), "triangles": int(summary["triangles"].iloc[0]),
            "gltf_errors": len(gltf.errors), "gltf_warnings": len(gltf.warnings)}


@gaiverse_task(cache="none", retries=3)
def publish_world(world_id: str, state: WorldState, scene, *, owner: str, message: str, made_by: dict[str, Any],
                  checkpoints: dict[str, str], new_world: bool,
                  extra_files: dict[str, tuple[bytes, str, str]] | None = None) -> dict[str, Any]:
    """Store every file and publish the version in one catalog transaction (once per flow run).

    extra_files : name -> (bytes, kind, ext) made by other steps (the dynamics step's .glb and JSON)."""
    flow_run_id, _ = current_run_ids()
    catalog = get_catalog()
    if flow_run_id:  # a retry after a publish that did commit must not publish twice
        done = catalog.query("SELECT version, manifest_key FROM versions WHERE collection = ? AND flow_run_id = ?",
                             [f"world/{world_id}", flow_run_id])
        if done:
            return {"world_id": world_id, **done[0]}
    files = {**world_build.version_files(state, scene), **(extra_files or {})}
    version = repo().publish(world_id, state, author=owner, message=message, derived=files, made_by=made_by,
                             new_world=new_world, flow_run_id=flow_run_id,
                             extra={"checkpoints": checkpoints, "scene": scene.manifest() if scene else None})
    png_artifact("world-map", files["map_png"][0], kind="world/map", description=f"{world_id} v{version.version} map")
    get_run_logger().info("published world %s v%d (%s)", world_id, version.version, version.manifest_key)
    return {"world_id": world_id, "version": version.version, "manifest_key": version.manifest_key}


@gaiverse_task(cache="none", retries=2)
def load_world(world_id: str) -> dict[str, Any]:
    """The latest state and owner of a world (what a rebuild starts from)."""
    versions = repo()
    owner = versions.owner(world_id)
    if owner is None:
        raise ValueError(f"`world_id` {world_id!r} does not exist")
    return {"owner": owner, "state": versions.load_state(world_id), "version": versions.version(world_id).version}

