"""Worlds over HTTP: build through the deployment, versions, edits, diff, rollback, backup, and isolation."""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
from PIL import Image

from gaiverse.config import REPO_ROOT, prefect_env
from gaiverse.proc import spawn, stop_pid, wait_until
from gaiverse.world.versions import WorldVersions, read_backup
from tests.world._world_fixtures import small_state

pytestmark = pytest.mark.slow

RAISE = {"op": "raise", "amount_m": 6, "region": {"x0_m": 32, "y0_m": 32, "x1_m": 128, "y1_m": 128}}


@pytest.fixture(scope="module")
def world(alice, store, catalog) -> str:
    """A 256 m world of alice's, published directly (version 1)."""
    world_id = "api-" + alice.user["user_id"][:8]
    WorldVersions(store, catalog).publish(world_id, small_state(size=32), author=alice.user["user_id"],
                                          message="seeded", new_world=True)
    return world_id


def test_lists_and_versions_are_per_user(world, alice, bob, admin, detail):
    assert world in [w["world_id"] for w in alice.get("/worlds").json()]
    assert world not in [w["world_id"] for w in bob.get("/worlds").json()]
    assert world in [w["world_id"] for w in admin.get("/worlds").json()]
    versions = alice.get(f"/worlds/{world}/versions").json()
    assert versions[0]["version"] == 1 and versions[0]["author"] == alice.user["user_id"]
    one = alice.get(f"/worlds/{world}/versions/1").json()
    assert {"heights", "roads", "water", "buildings"} <= set(one["objects"])
    content = alice.get(f"/assets/{one['objects']['heights']}/content")
    assert content.status_code == 200 and content.content[:6] == b"\x93NUMPY"
    for method, path, body in [("GET", f"/worlds/{world}/versions", None), ("GET", f"/worlds/{world}/versions/1", None),
                               ("GET", f"/worlds/{world}/diff?from=1&to=1", None),
                               ("POST", f"/worlds/{world}/edits", {"edit": RAISE}),
                               ("POST", f"/worlds/{world}/rollback", {"to_version": 1}),
                               ("GET", f"/worlds/{world}/backup", None),
                               ("GET", f"/worlds/{world}/versions/1/glb", None)]:
        response = bob.request(method, path, json=body)
        assert response.status_code == 404, (path, response.text)
        assert "no world" in detail(response)
    assert alice.get("/worlds/nope-nope/versions").status_code == 404
    assert alice.get("/worlds/Bad_Id/versions").status_code == 422


def test_edits_diff_rollback_and_backup(world, alice, snapshot, detail, artifacts_dir):
    made = alice.post(f"/worlds/{world}/edits", json={"edit": RAISE, "base_version": 1, "message": "a hill"})
    assert made.status_code == 201, made.text
    v2 = made.json()
    assert v2["version"] == 2 and v2["parent_version"] == 1 and v2["message"] == "a hill"
    assert v2["edit"]["op"] == "raise" and {"map_png", "heightmap_png"} <= set(v2["objects"])
    # a stale base version, an impossible edit and a malformed one change nothing
    before = snapshot()
    stale = alice.post(f"/worlds/{world}/edits", json={"edit": RAISE, "base_version": 1})
    assert stale.status_code == 409 and "at version 2, not 1" in detail(stale)
    outside = alice.post(f"/worlds/{world}/edits", json={"edit": {**RAISE, "region": {
        "x0_m": 900, "y0_m": 0, "x1_m": 950, "y1_m": 10}}})
    assert outside.status_code == 422 and "outside" in detail(outside)
    bad = alice.post(f"/worlds/{world}/edits", json={"edit": {"op": "explode"}})
    assert bad.status_code == 422
    ghost = alice.post(f"/worlds/{world}/edits", json={"edit": {"op": "move_building", "building_id": "zz",
                                                                 "dx_m": 3}})
    assert ghost.status_code == 422 and "no building 'zz'" in detail(ghost)
    assert snapshot() == before

    regen = alice.post(f"/worlds/{world}/edits", json={"edit": {
        "op": "regenerate", "region": {"x0_m": 128, "y0_m": 128, "x1_m": 224, "y1_m": 224},
        "controls": {"relief_m": 60}, "steps": 4}})
    assert regen.status_code == 201, regen.text
    assert regen.json()["version"] == 3 and regen.json()["edit"]["terrain_tiles"] >= 1

    diff = alice.get(f"/worlds/{world}/diff", params={"from": 1, "to": 2}).json()
    assert diff["heights"]["changed_cells"] == 12 * 12 and diff["heights"]["max_abs_delta_m"] == pytest.approx(6)
    png = alice.get(f"/worlds/{world}/diff.png", params={"from": 1, "to": 3})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    (artifacts_dir / "api_world_diff.png").write_bytes(png.content)
    assert Image.open(io.BytesIO(png.content)).size == (128, 128)
    assert alice.get(f"/worlds/{world}/diff", params={"from": 1, "to": 99}).status_code == 404

    rolled = alice.post(f"/worlds/{world}/rollback", json={"to_version": 1})
    assert rolled.status_code == 201
    assert rolled.json()["manifest_key"] == alice.get(f"/worlds/{world}/versions/1").json()["manifest_key"]
    assert alice.get(f"/worlds/{world}/diff", params={"from": 1, "to": 4}).json()["identical"] is True

    backup = alice.get(f"/worlds/{world}/backup", params={"version": 2})
    assert backup.status_code == 200 and backup.headers["content-type"] == "application/gzip"
    assert f"{world}-v2.tar.gz" in backup.headers["content-disposition"]
    files = read_backup(backup.content)
    # state (4) + maps (2) + window interiors (map + room colour/depth PNGs) + the manifest
    objects = alice.get(f"/worlds/{world}/versions/2").json()["objects"]
    assert "interiors_json" in objects and any(name.startswith("interiors/") for name in objects)
    assert "backup.json" in files and sum(name.startswith("objects/") for name in files) == len(objects) + 1


def test_glb_of_an_edited_version_is_assembled_once(world, alice):
    from validation.gltf import validate_glb

    first = alice.get(f"/worlds/{world}/versions/2/glb", timeout=900)
    assert first.status_code == 200, first.text
    assert first.content[:4] == b"glTF" and validate_glb(first.content).errors == []
    again = alice.get(f"/worlds/{world}/versions/2/glb", timeout=60)
    assert again.content == first.content


def test_schedule_is_validated_and_needs_dynamics(world, alice, bob, detail):
    bad = alice.put(f"/worlds/{world}/schedule", json={"schedule": {"entries": [
        {"hour": 30, "weather": "rain", "traffic": 1, "pedestrians": 1}]}})
    assert bad.status_code == 422 and "hour" in bad.text
    good = {"schedule": {"entries": [{"hour": 0, "weather": "fog", "traffic": 0.5, "pedestrians": 0.5}]}}
    missing = alice.put(f"/worlds/{world}/schedule", json=good)  # the seeded world was never simulated
    assert missing.status_code == 422 and "no dynamics" in detail(missing)
    assert alice.get(f"/worlds/{world}/versions/1/schedule").status_code == 404
    assert bob.put(f"/worlds/{world}/schedule", json=good).status_code == 404


@pytest.fixture(scope="module")
def world_deployment(settings, prefect_server):
    env = {**prefect_env(settings), "PREFECT_RUNNER_POLL_FREQUENCY": "1", "RAY_AUTH_MODE": "disabled"}
    service = spawn("api-world-runner", [sys.executable, str(REPO_ROOT / "tests" / "api" / "world_runner.py")],
                    settings.run_dir, env=env, cwd=REPO_ROOT)
    import httpx

    def exists() -> bool:
        try:
            return httpx.get(f"{settings.prefect_url}/deployments/name/build-world/world-build",
                             timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(exists, 120, f"build-world deployment (log: {service.log_path})", interval_s=0.5)
        yield "build-world/world-build"
    finally:
        stop_pid(service.pid, "api-world-runner")


def test_build_a_world_through_the_deployment(world_deployment, world, alice, bob, detail):
    taken = bob.post("/worlds", json={"prompt": "a village", "world_id": world})
    assert taken.status_code == 409 and "taken" in detail(taken)
    assert alice.post("/worlds", json={"prompt": ""}).status_code == 422
    assert alice.post("/worlds", json={"prompt": "a village", "size_m": 10}).status_code == 422
    started = alice.post("/worlds", json={"prompt": "a flat village", "size_m": 256, "seed": 2, "ddim_steps": 3})
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["deployment"] == "build-world/world-build" and run["owner"] == alice.user["user_id"]
    deadline = time.monotonic() + 900
    while (state := alice.get(f"/runs/{run['id']}").json()["state"]) not in {"COMPLETED", "FAILED", "CRASHED"}:
        assert time.monotonic() < deadline, "world build did not finish"
        time.sleep(2)
    assert state == "COMPLETED"
    mine = [w for w in alice.get("/worlds").json() if w["message"].startswith("built from 'a flat village'")]
    assert mine and all(w["owner"] == alice.user["user_id"] for w in mine)
    built = alice.get(f"/worlds/{mine[0]['world_id']}/versions/1").json()
    glb = alice.get(f"/assets/{built['objects']['glb']}/content")
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
    assert bob.get(f"/worlds/{mine[0]['world_id']}/versions").status_code == 404
    assert np.isfinite(built["stats"]["relief_m"])


def _keys_of(store, manifest_key: str) -> set[str]:
    import json

    return {manifest_key, *(ref["key"] for ref in json.loads(store.get_bytes(manifest_key))["objects"].values())}


def test_delete_world_removes_its_rows_and_only_its_objects(alice, bob, store, catalog, detail, snapshot):
    """Two versions and a derived .glb of alice's world are deleted; bob's world, sharing most objects
    (content addressing), keeps them; bob gets 404; a running build of the world refuses the delete (409)."""
    repo = WorldVersions(store, catalog)
    mine, theirs = "del-" + alice.user["user_id"][:8], "kept-" + bob.user["user_id"][:8]
    land = small_state(size=32, seed=11)  # no other test's world shares these objects
    v1 = repo.publish(mine, land, author=alice.user["user_id"], message="one", new_world=True)
    v2 = repo.publish(mine, small_state(size=32, seed=12), author=alice.user["user_id"], message="two", base_version=1)
    kept = repo.publish(theirs, land, author=bob.user["user_id"], message="same land",
                        new_world=True)
    glb = store.put_bytes(b"glTF derived from v2 " + mine.encode(), kind="world/glb", ext="glb")
    catalog.record_asset(glb, owner=alice.user["user_id"], inputs=[v2.manifest_key], checkpoint="world-render")
    shared = _keys_of(store, kept.manifest_key)
    own = (_keys_of(store, v1.manifest_key) | _keys_of(store, v2.manifest_key) | {glb.key}) - shared
    assert shared & _keys_of(store, v1.manifest_key) == shared - {kept.manifest_key}  # v1's state is bob's too
    assert len(own) == 4  # v1's manifest, v2's manifest and new heights, the .glb

    before = snapshot()
    other = bob.delete(f"/worlds/{mine}")
    assert other.status_code == 404 and "no world" in detail(other)
    run_id = f"delete-test-{mine}"
    catalog.upsert_run(run_id, flow_name="rebuild-world", state="RUNNING", parameters={"world_id": mine})
    busy = alice.delete(f"/worlds/{mine}")
    assert busy.status_code == 409 and "being built" in detail(busy)
    catalog.upsert_run(run_id, flow_name="rebuild-world", state="COMPLETED")
    assert {k: v for k, v in snapshot().items() if k != "runs"} == {k: v for k, v in before.items() if k != "runs"}

    deleted = alice.delete(f"/worlds/{mine}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["versions"] == 2 and deleted.json()["objects"] == len(own)
    assert alice.get(f"/worlds/{mine}/versions").status_code == 404
    assert alice.delete(f"/worlds/{mine}").status_code == 404
    assert not catalog.versions(f"world/{mine}")
    marks = ",".join("?" * len(own))
    for table, column in [("assets", "key"), ("asset_owners", "key"), ("lineage", "output_key"),
                          ("lineage", "input_key")]:
        assert catalog.query(f"SELECT count(*) AS n FROM {table} WHERE {column} IN ({marks})", list(own))[0]["n"] == 0
    assert not any(store.exists(key) for key in own)
    assert all(store.exists(key) and catalog.asset(key) for key in shared)  # bob's world is intact
    assert repo.load_state(theirs).heights.shape == (32, 32)
    assert bob.get(f"/worlds/{theirs}/versions/1").status_code == 200
    assert repo.delete(theirs)["objects"] >= 2  # its manifest and heights at least: no other world has them
    rest = set().union(*(_keys_of(store, r["manifest_key"]) for r in catalog.query(
        "SELECT manifest_key FROM versions WHERE starts_with(collection, 'world/')")))
    assert all(store.exists(key) == (key in rest) for key in shared)  # roads, water... other worlds still use


def test_erasure_deletes_the_worlds_built_with_my_room(api_server, admin, store, catalog, settings):
    """Erasing an account deletes its room capture and the world whose windows show that room (every version,
    its interior renderings), and nothing of another user's world that shares objects with it."""
    import uuid

    import httpx

    from gaiverse.avatar.capture import open_vault
    from gaiverse.interiors.capture import OwnerKey, check_upload, store_capture

    name = f"room-eraser-{uuid.uuid4().hex[:8]}"
    made = admin.post("/users", json={"name": name})
    assert made.status_code == 201, made.text
    user_id = made.json()["user_id"]
    photos = sorted((REPO_ROOT / "data" / "multiview" / "kapture_maupertuis_facade" / "images").glob("*.jpg"))[:3]
    files = [(p.name, p.read_bytes()) for p in photos]
    keyring, vault = open_vault(settings)
    capture_id = store_capture(store, catalog, user_id, files, check_upload(files),
                               OwnerKey(vault, keyring.pseudonym(user_id)))
    repo = WorldVersions(store, catalog)
    room_png = photos[0].read_bytes()  # stands for a rendering of the room: bytes that are the user's only
    world = repo.publish("room-world-" + user_id[:8], small_state(size=32, seed=9), author=user_id,
                         message="built with my room", new_world=True,
                         derived={f"interiors/{capture_id}_room_00_colour.png": (room_png, "world/interior", "jpg")},
                         made_by={"kind": "build", "room_capture_id": capture_id})
    neighbour = repo.publish("neighbour-" + user_id[:8], small_state(size=32, seed=9), author="someone-else",
                             message="same land, no room", new_world=True)
    own = _keys_of(store, world.manifest_key) - _keys_of(store, neighbour.manifest_key)
    assert len(own) == 2  # the manifest and the room rendering

    with httpx.Client(base_url=api_server, timeout=120, headers={"X-API-Key": made.json()["key"]}) as user:
        erased = user.delete("/personalization/data", params={"confirm": name})
    assert erased.status_code == 200 and erased.json()["account_deleted"], erased.text
    assert repo.owner(world.world_id) is None and not catalog.versions(f"room-capture/{capture_id}")
    assert not any(store.exists(key) for key in own)
    assert all(store.exists(key) for key in _keys_of(store, neighbour.manifest_key))
    repo.delete(neighbour.world_id)
