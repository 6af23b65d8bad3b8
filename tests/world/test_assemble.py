"""A small world from the shipped layout checkpoint -> .glb (Khronos-valid), PNGs, manifest, world checks (ENV-d1)."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from gaiverse.world.assemble import WorldConfig, assemble_world
from gaiverse.world.layout import LayoutGenerator, LayoutGeneratorConfig
from gaiverse.world.suggestions import LayoutControls
from validation.gltf import validate_glb
from validation.metrics import ValidationFailed
from validation.world import validate_world

CONTROLS = LayoutControls(size_m=(256.0, 256.0), relief_m=40.0, water_level=0.12, road_density=12.0,
                          settlement_radius_m=200.0)


@pytest.fixture(scope="module")
def layout(terrain_model, roads_model):
    return LayoutGenerator(terrain_model, roads_model, LayoutGeneratorConfig(ddim_steps=6)).generate(CONTROLS, seed=2)


@pytest.fixture(scope="module")
def scene(layout):
    return assemble_world(layout, config=WorldConfig(vegetation=replace(WorldConfig().vegetation, max_instances=600)),
                          prompt="a town by a lake", checkpoints={"layout": "checkpoints/layout"})


def _nodes(glb: bytes) -> list[dict]:
    n = int.from_bytes(glb[12:16], "little")
    return json.loads(glb[20:20 + n])["nodes"]


@pytest.mark.slow
@pytest.mark.clause("ENV-d1")
def test_world_glb_is_valid_with_semantic_extras(scene):
    glb = scene.glb_bytes()
    report = validate_glb(glb)
    assert report.ok, report.summary()
    nodes = _nodes(glb)
    meshes = [n for n in nodes if "mesh" in n]
    assert meshes and all({"type", "id"} <= set(n.get("extras", {})) for n in meshes)
    types = {n["extras"]["type"] for n in meshes}
    assert {"terrain", "road", "vegetation"} <= types, types
    assert scene.network.is_connected() and len(scene.graded) >= 2
    veg = [n for n in meshes if n["extras"]["type"] == "vegetation"]
    assert all("EXT_mesh_gpu_instancing" in n.get("extensions", {}) for n in veg)
    # the same world with one node per plant (one shared mesh per species) is valid too
    per_node = replace(scene, config=replace(scene.config, instancing="nodes"), _glb=None)
    glb2 = per_node.glb_bytes()
    assert validate_glb(glb2).ok
    plant_nodes = [n for n in _nodes(glb2) if n.get("extras", {}).get("type") == "vegetation"]
    assert len(plant_nodes) == len(scene.vegetation)
    assert len({n["mesh"] for n in plant_nodes}) <= 4
    assert per_node.triangles == scene.triangles


@pytest.mark.slow
@pytest.mark.clause("ENV-d1")
def test_world_files_and_checks_pass(scene, tmp_path):
    files = scene.write(tmp_path)
    manifest = json.loads(files["manifest"].read_text())
    assert manifest["triangles"] == scene.triangles <= manifest["max_triangles"]
    assert manifest["counts"]["roads"] == len(scene.graded) and manifest["counts"]["plants"] == len(scene.vegetation)
    assert manifest["roads"]["after_cleaning"]["components"] == 1
    assert manifest["checkpoints"] == {"layout": "checkpoints/layout"} and manifest["seed"] == 2
    assert set(manifest["bbox"]) >= {"min", "max"}
    height = Image.open(files["heightmap"])
    assert height.mode.startswith("I") and np.asarray(height).max() == 65535
    top = Image.open(io.BytesIO(files["topdown"].read_bytes()))
    assert top.size == (256, 256)
    result = scene.check()
    assert result.ok, result.failures
    reports = validate_world(scene)
    assert all(r.success for r in reports)


@pytest.mark.slow
@pytest.mark.clause("ENV-d1")
def test_building_on_a_road_fails_the_checks_with_a_clear_message(scene, layout):
    x, y = scene.network.polylines[0][len(scene.network.polylines[0]) // 2]
    on_road = SimpleNamespace(id="b_on_road", footprint=[[x - 4, y - 4], [x + 4, y - 4], [x + 4, y + 4], [x - 4, y + 4]],
                              height_m=6.0)
    free = [p for p in scene.buildings[:3]]
    bad = assemble_world(layout, buildings=free + [on_road], config=scene.config)
    result = bad.check()
    assert not result.ok
    assert any(m.startswith("building b_on_road intersects a road (road_") for m in result.failures), result.failures
    with pytest.raises(ValidationFailed, match="b_on_road"):
        validate_world(bad)
