"""The room-capture flow against the real services (Prefect server, S3, catalog, local Ray): the four real
Maupertuis photos, stored sealed as POST /interiors/captures stores them, become COLMAP poses, a (short-trained)
NeRF trained in the Ray actor and colour + depth views published sealed as `room/<capture_id>`, with one
completed task run per step; deleting the capture removes every object and row of it and of the room."""

from __future__ import annotations

import json

import pytest

from _flowhelpers import task_runs_of
from gaiverse.config import REPO_ROOT
from gaiverse.interiors.capture import (
    DERIVED_CONTEXT, ROOM_STEPS, SEAL_CONTEXT, OwnerKey, check_upload, delete_capture, store_capture, write_room_atlas,
)
from gaiverse.interiors.windows import load_library

pytestmark = [pytest.mark.slow, pytest.mark.clause("ENV-c1")]

PHOTOS = sorted((REPO_ROOT / "data" / "multiview" / "kapture_maupertuis_facade" / "images").glob("*.jpg"))


def test_photos_become_a_posed_nerf_room(stack, store, catalog, settings, tmp_path):
    from flows.room_capture import room_capture
    from gaiverse.avatar.capture import open_vault

    keyring, vault = open_vault(settings)
    key = OwnerKey(vault, keyring.pseudonym("room-tester"))
    files = [(p.name, p.read_bytes()) for p in PHOTOS]
    capture_id = store_capture(store, catalog, "room-tester", files, check_upload(files), key)
    media = json.loads(store.get_bytes(catalog.versions(f"room-capture/{capture_id}")[0].manifest_key))["media"]
    raw = store.get_bytes(media[0]["key"])
    assert raw[:4] == b"GVE1" and raw[:3] != b"\xff\xd8\xff" and files[0][1][1000:1064] not in raw  # sealed
    assert key.open(raw, SEAL_CONTEXT) == files[0][1]
    assert not any(p.name in json.dumps(media) for p in PHOTOS)  # the user's file names are not stored
    result = room_capture(capture_id=capture_id, owner="room-tester", train_steps=60, long_side=64, view_size=48,
                          rooms=3)
    assert [s["step"] for s in result["steps"]] == [label for _, label in ROOM_STEPS]
    assert result["poses"]["registered"] == len(PHOTOS) and result["poses"]["points"] > 100
    assert len(result["views"]) == 3 and all(v["depth_max"] > v["depth_min"] > 0 for v in result["views"])
    manifest = json.loads(store.get_bytes(catalog.versions(f"room/{capture_id}")[0].manifest_key))
    assert {"checkpoint", "atlas.json", "room_00_colour.png", "room_00_depth.png"} <= set(manifest["objects"])
    rows = task_runs_of(catalog, result["flow_run_id"])
    assert {task for task, _ in ROOM_STEPS} <= set(rows), rows
    assert all(rows[task]["state"] == "COMPLETED" for task, _ in ROOM_STEPS)
    assert result["nerf"]["curve"][-1][0] == 60 and result["nerf"]["final_psnr"] > 10

    colour = store.get_bytes(manifest["objects"]["room_00_colour.png"])  # derived views are sealed too
    assert colour[:4] == b"GVE1" and key.open(colour, DERIVED_CONTEXT)[:8] == b"\x89PNG\r\n\x1a\n"
    atlas_json = write_room_atlas(store, catalog, capture_id, key, tmp_path)  # what a world's windows can use
    assert len(load_library(atlas_json.parent).views) == 3
    keys = [m["key"] for m in media] + list(manifest["objects"].values())
    assert delete_capture(store, catalog, capture_id) == {"versions": 2, "objects": len(keys) + 2}
    assert not catalog.versions(f"room/{capture_id}") and not catalog.versions(f"room-capture/{capture_id}")
    assert not any(store.exists(k) for k in keys)
    marks = ",".join("?" * len(keys))
    assert catalog.query(f"SELECT count(*) AS n FROM assets WHERE key IN ({marks})", keys)[0]["n"] == 0

def _published_room(store, catalog, settings, owner: str, tmp_path) -> str:
    """A capture of `owner` (the real photos, sealed) whose room is published by the flow's own publish task from
    the shipped NeRF atlas and checkpoint: the state a finished room-capture run leaves, without training again."""
    import shutil

    from gaiverse.avatar.capture import open_vault
    from gaiverse.interiors.windows import default_library_dir
    from gaiverse.world.training import PROJECT_ROOT
    from tasks.interiors_world import publish_room

    keyring, vault = open_vault(settings)
    files = [(p.name, p.read_bytes()) for p in PHOTOS]
    capture_id = store_capture(store, catalog, owner, files, check_upload(files),
                               OwnerKey(vault, keyring.pseudonym(owner)))
    shutil.copytree(default_library_dir() / "t265_office", tmp_path / "views")
    shutil.copy(PROJECT_ROOT / "checkpoints" / "interior" / "nerf.pt", tmp_path / "nerf.pt")
    publish_room(capture_id, owner, str(tmp_path), {"views": []})
    return capture_id


def test_a_world_built_with_my_room_shows_it_in_every_window(stack, store, catalog, settings, tmp_path):
    from flows.world import build_world, rebuild_world
    from gaiverse.world.versions import WorldVersions

    capture_id = _published_room(store, catalog, settings, "room-builder", tmp_path)
    try:
        with pytest.raises(ValueError, match="room_capture_id"):  # another user's room is refused before building
            build_world(prompt="a dense town", size_m=256, seed=3, ddim_steps=4, owner="someone-else",
                        room_capture_id=capture_id)
        result = build_world(prompt="a hilly town with a dense centre", size_m=256, seed=3, ddim_steps=4,
                             owner="room-builder", room_capture_id=capture_id)
        assert result["owner"] == "room-builder"
        manifest = WorldVersions(store, catalog).manifest(result["world_id"], result["version"])
        assert manifest["made_by"]["room_capture_id"] == capture_id
        assert manifest["scene"]["counts"]["buildings"] > 0
        rooms = [n for n in manifest["objects"] if n.startswith("interiors/") and n.endswith("_colour.png")]
        assert rooms and all(n.startswith(f"interiors/{capture_id}_room_") for n in rooms), rooms
        interiors = json.loads(store.get_bytes(manifest["objects"]["interiors_json"]["key"]))
        assert interiors["buildings"] and all(b["room"].startswith(f"{capture_id}_room_")
                                             for b in interiors["buildings"].values())
        rebuilt = rebuild_world(world_id=result["world_id"], ddim_steps=4)  # the next version keeps the room
        assert WorldVersions(store, catalog).manifest(result["world_id"], rebuilt["version"])["made_by"][
            "room_capture_id"] == capture_id
    finally:
        delete_capture(store, catalog, capture_id)


def test_my_room_capture_and_room_are_in_my_data_export(stack, store, catalog, settings, tmp_path):
    import base64

    from gaiverse.api.personal_data import export_rooms
    from gaiverse.personalization.service import PersonalizationService

    capture_id = _published_room(store, catalog, settings, "room-exporter", tmp_path)
    service = PersonalizationService.from_settings(settings)
    try:
        exported = export_rooms(catalog, store, service, "room-exporter")
        assert [c["capture_id"] for c in exported] == [capture_id]
        media = exported[0]["media"]
        assert [base64.b64decode(m["data_base64"]) for m in media] == [p.read_bytes() for p in PHOTOS]  # opened
        files = exported[0]["room"]["files_base64"]
        shipped = tmp_path / "views"
        assert set(files) == {p.name for p in shipped.iterdir()} and "checkpoint" not in files
        assert base64.b64decode(files["atlas.json"]) == (shipped / "atlas.json").read_bytes()
        assert export_rooms(catalog, store, service, "someone-else") == []
    finally:
        service.close()
        delete_capture(store, catalog, capture_id)


def test_edits_of_a_world_built_with_my_room_keep_it_while_the_capture_exists(stack, store, catalog, settings,
                                                                              tmp_path):
    from gaiverse.world.editing import EditRequest
    from gaiverse.world.version_outputs import publish_edit
    from gaiverse.world.versions import WorldVersions
    from tests.world._world_fixtures import small_state

    capture_id = _published_room(store, catalog, settings, "room-editor", tmp_path)
    repo, world_id = WorldVersions(store, catalog), "room-edited-world"
    repo.publish(world_id, small_state(), author="room-editor", message="built with my room", new_world=True,
                 made_by={"kind": "build", "room_capture_id": capture_id})
    move = EditRequest.model_validate({"edit": {"op": "move_building", "building_id": "b1", "dx_m": 4}})

    def rooms(version: int) -> tuple[dict, dict[str, str]]:
        manifest = repo.manifest(world_id, version)
        interiors = json.loads(store.get_bytes(manifest["objects"]["interiors_json"]["key"]))
        return manifest["made_by"], {bid: entry["room"] for bid, entry in interiors["buildings"].items()}

    try:
        made_by, furnished = rooms(publish_edit(repo, world_id, move)[0].version)
        assert made_by["room_capture_id"] == capture_id  # a rebuild of this version keeps the room
        assert "b1" in furnished and all(room.startswith(f"{capture_id}_room_") for room in furnished.values())
        delete_capture(store, catalog, capture_id)  # then moved buildings get the shipped rooms
        made_by, furnished = rooms(publish_edit(repo, world_id, move)[0].version)
        assert "room_capture_id" not in made_by and not furnished["b1"].startswith(capture_id)
    finally:
        delete_capture(store, catalog, capture_id)
        repo.delete(world_id)
