"""Room capture flow: a user's photos or video of their room -> selected frames -> COLMAP camera poses ->
NeRF -> colour + depth room views, published as `room/<capture_id>`. Implements the capture path of ENV-c1
(and ENV-c2 views of the captured room).

One retryable task per step (tasks/interiors_world.py ROOM_STEPS), so the API reports progress per step
from the run's task runs; the NeRF trains in a Ray actor (ray_actors/interior_training.py) whose step and
PSNR the train task forwards to a progress artifact while it runs; a step table is attached at the end.
The capture is opened with its owner's key and everything published is sealed with it (docs/PRIVACY.md).
The work happens in a temporary workspace (media/, images/, database.db, sparse/0/, nerf.pt, views/)
removed when the run ends.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Annotated, Any, Literal

from prefect import flow
from pydantic import Field

from flows.world import Steps, run_owner
from tasks.common import current_run_ids, flow_hooks
from tasks.interiors_world import (
    colmap_features, colmap_mapping, colmap_matching, fetch_capture, publish_room, render_room_views,
    select_capture_frames, train_room_nerf,
)

CaptureId = Annotated[str, Field(pattern=r"^room-[0-9a-f]{12}$")]


@flow(name="room-capture", description="Photos or a video of a room -> COLMAP poses -> NeRF -> room views.",
      **flow_hooks())
def room_capture(
    capture_id: CaptureId,
    owner: Annotated[str | None, Field(max_length=100)] = None,
    max_frames: Annotated[int, Field(ge=3, le=100)] = 30,
    matcher: Literal["exhaustive", "sequential"] = "exhaustive",
    train_steps: Annotated[int, Field(ge=10, le=20000)] = 1500,
    long_side: Annotated[int, Field(ge=32, le=1600)] = 160,
    view_size: Annotated[int, Field(ge=32, le=1024)] = 256,
    rooms: Annotated[int, Field(ge=1, le=32)] = 6,
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    """Reconstruct the room of capture `capture_id` (stored by POST /interiors/captures).

    max_frames : frames kept for COLMAP; matcher : exhaustive (photos, short clips) or sequential (long
    videos); train_steps / long_side : NeRF optimiser steps and training image size; view_size / rooms :
    edge and number of the colour + depth rooms of the atlas (gaiverse/interiors/atlas.py).
    """
    steps = Steps()
    who = run_owner(owner)
    workspace = tempfile.mkdtemp(prefix=f"gaiverse-{capture_id}-")
    try:
        fetched = steps.run("fetch", lambda: fetch_capture(capture_id, who, workspace),
                            lambda r: f"{r['manifest']['mode']}, {len(r['paths'])} files")
        frames = steps.run("frames", lambda: select_capture_frames(fetched["paths"], workspace, max_frames),
                           lambda r: f"{r['selected']} of {r['candidates']} frames")
        steps.run("features", lambda: colmap_features(workspace), lambda s: f"{s} s")
        steps.run("matching", lambda: colmap_matching(workspace, matcher), lambda s: f"{s} s")
        poses = steps.run("poses", lambda: colmap_mapping(workspace, frames["selected"]),
                          lambda r: f"{r['registered']} of {r['images']} registered, {r['points']} points")
        nerf = steps.run("train", lambda: train_room_nerf(workspace, train_steps, long_side, seed),
                         lambda r: f"PSNR {r['final_psnr']} after {train_steps} steps on {r['views']} views "
                                   f"({r['device']})")
        views = steps.run("views", lambda: render_room_views(workspace, nerf["checkpoint"], view_size, rooms),
                          lambda r: f"{len(r['views'])} colour + depth rooms")
        report = {"frames": frames, "poses": poses, "nerf": {k: v for k, v in nerf.items() if k != "checkpoint"},
                  "views": views["views"]}
        published = steps.run("publish", lambda: publish_room(capture_id, who, workspace, report),
                              lambda r: f"{r['collection']} v{r['version']}")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    steps.report("room-capture-steps", f"Room capture {capture_id}")
    flow_run_id, _ = current_run_ids()
    return {**published, "capture_id": capture_id, "owner": who, "flow_run_id": flow_run_id, "steps": steps.rows,
            **report}
