"""The room-capture flow against the real services (Prefect server, S3, catalog): the four real Maupertuis photos,
stored as POST /interiors/captures stores them, become COLMAP poses, a (short-trained) NeRF and colour + depth
views published as `room/<capture_id>`, with one completed task run per step."""

from __future__ import annotations

import json

import pytest

from _flowhelpers import task_runs_of
from gaiverse.config import REPO_ROOT
from gaiverse.interiors.capture import ROOM_STEPS, check_upload, store_capture

pytestmark = [pytest.mark.slow, pytest.mark.clause("ENV-c1")]

PHOTOS = sorted((REPO_ROOT / "data" / "multiview" / "kapture_maupertuis_facade" / "images").glob("*.jpg"))


def test_photos_become_a_posed_nerf_room(stack, store, catalog):
    from flows.room_capture import room_capture

    files = [(p.name, p.read_bytes()) for p in PHOTOS]
    capture_id = store_capture(store, catalog, "room-tester", files, check_upload(files))
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
