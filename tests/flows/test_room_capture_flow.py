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