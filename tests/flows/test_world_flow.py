"""The world flows against the real services (S3, catalog, Prefect server, Ray): a small world built,
validated, published, then rebuilt as its next version."""

from __future__ import annotations

import json

import pytest

from _flowhelpers import task_runs_of

pytestmark = pytest.mark.slow

BUILD_TASKS = {"parse-suggestions", "generate-layout", "extract-roads", "place-buildings", "assemble",
               "furnish-interiors", "simulate-dynamics", "validate-world", "publish-world"}


def test_build_then_rebuild_a_small_world(stack, catalog, store, artifacts_dir):
    from flows.world import build_world, rebuild_world
    from gaiverse.world.versions import WorldVersions
    from validation.gltf import validate_glb

    result = build_world(prompt="a hilly town with a dense centre", size_m=256, seed=3, ddim_steps=4,
                         owner="flow-tester")
    world = result["world_id"]
    assert result["version"] == 1 and result["owner"] == "flow-tester"
    assert [s["step"] for s in result["steps"]] == ["parse", "layout", "roads", "buildings", "assemble",
                                                    "interiors", "dynamics", "validate", "publish"]
    assert result["checks"]["gltf_errors"] == 0

    repo = WorldVersions(store, catalog)
    manifest = repo.manifest(world, 1)
    assert {"heights", "roads", "water", "buildings", "glb", "heightmap_png", "map_png", "scene_json"} <= set(
        manifest["objects"])
    assert manifest["state"]["size_m"] == [256.0, 256.0] and manifest["made_by"]["kind"] == "build"
    assert {"dynamics_glb", "dynamics_json"} <= set(manifest["objects"])  # ENV-d2: traffic, people, weather
    if manifest["scene"]["counts"]["buildings"]:  # ENV-c3: the windows' NeRF rooms ship beside the .glb
        assert any(name.startswith("interiors/") and name.endswith("_depth.png") for name in manifest["objects"])
    glb = store.get_bytes(manifest["objects"]["glb"]["key"])
    assert validate_glb(glb).errors == []
    (artifacts_dir / "world_flow.glb").write_bytes(glb)
    (artifacts_dir / "world_flow_map.png").write_bytes(store.get_bytes(manifest["objects"]["map_png"]["key"]))

    rows = task_runs_of(catalog, result["flow_run_id"])
    assert BUILD_TASKS <= set(rows) and all(r["state"] == "COMPLETED" for r in rows.values())
    suites = {v["suite"]: v["success"] for v in catalog.query(
        "SELECT suite, success FROM validations WHERE flow_run_id = ?", [result["flow_run_id"]])}
    assert suites.get("world.summary") is True and all(suites.values())
    assert catalog.run(result["flow_run_id"])["state"] == "COMPLETED"

    rebuilt = rebuild_world(world_id=world, ddim_steps=4)
    assert rebuilt["version"] == 2
    versions = repo.versions(world)
    assert versions[1].parent_version == 1 and versions[1].message.startswith("rebuild of v1 with checkpoint")
    assert versions[1].author == "flow-tester"
    again = repo.manifest(world, 2)
    assert again["made_by"] == {"kind": "rebuild", "from_version": 1, "seed": 3}
    assert json.loads(store.get_bytes(again["objects"]["buildings"]["key"])) == json.loads(
        store.get_bytes(manifest["objects"]["buildings"]["key"]))  # same suggestion, seed and checkpoint

    skipped = rebuild_world(world_id="no-such-world", if_missing="skip")
    assert skipped == {"world_id": "no-such-world", "skipped": True}


def test_bad_parameters_are_refused_before_anything_runs(stack, catalog):
    from prefect.exceptions import ParameterTypeError

    from flows.world import build_world

    before = catalog.query("SELECT count(*) AS n FROM versions")[0]["n"]
    with pytest.raises(ParameterTypeError, match="prompt"):
        build_world(prompt="", size_m=256)
    with pytest.raises(ParameterTypeError, match="size_m"):
        build_world(prompt="a village", size_m=50)
    assert catalog.query("SELECT count(*) AS n FROM versions")[0]["n"] == before
