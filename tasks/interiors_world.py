"""Tasks of window interiors (ENV-c3) and of the room-capture flow (ENV-c1 capture path).

World: `furnish_interiors` gives every window of an assembled world its building's NeRF room (baked
texture in the .glb, colour + depth maps beside it) and checks every window got a material.
Room capture: one task per step the user sees progress for (fetch, frames, COLMAP features / matching /
mapping, NeRF training, room views, publish); the workspace is a local directory the tasks share
within one flow run, so a retried step re-reads what the previous step wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from gaiverse.interiors import capture
from tasks.artifacts import check_artifact_key, table_artifact
from tasks.common import gaiverse_task, get_catalog, get_settings, get_store



# --------------------------------------------------------------------------------------------- world

@gaiverse_task(cache="none", retries=1)
def furnish_interiors(scene, library_dir: str | None = None, room_capture_id: str | None = None,
                      owner: str | None = None) -> dict[str, Any]:
    """Windows of the assembled scene get NeRF rooms; {"skipped": reason} when no room library is installed.
    With `room_capture_id` every building shows `owner`'s captured room (its viewpoints and colour variations,
    not mixed with the shipped library: a user who picks their room expects to see it in every window).
    Returns the stats and `files` for the version: `interiors_json` (building -> room, windows)."""
    from gaiverse.interiors.windows import check_windows, furnish_scene, load_library
    from gaiverse.world.version_outputs import interiors_of_parts

    logger = get_run_logger()
    try:
        library = (capture.room_library(get_store(), get_catalog(), get_settings(), room_capture_id, owner)
                   if room_capture_id else load_library(library_dir))
    except FileNotFoundError as err:
        logger.warning("interiors skipped: %s", err)
        return {"skipped": str(err)}
    stats = furnish_scene(scene, library)
    check = check_windows(scene.glb_bytes(), scene.assets)
    if stats["windows"] and not check["ok"]:
        raise ValueError(f"window interiors invalid: {check['problems'][:3]}")
    table_artifact("world-interiors", [{**{k: v for k, v in stats.items()}, "window_nodes": check["window_nodes"]}],
                   title="Window interiors")
    logger.info("interiors: %d windows, %d room views, %d asset bytes", stats["windows"], stats["room_views_used"],
                stats["asset_bytes"])
    mapping = interiors_of_parts(scene.buildings)  # what edits of the version start from (version_outputs)
    return {**stats, "window_nodes": check["window_nodes"], "room_capture_id": room_capture_id,
            "files": {"interiors_json": (json.dumps(mapping, sort_keys=True).encode(), "world/interiors", "json")}}


# ------------------------------------------------------------------------------------- room capture

def _owner_key(owner: str) -> capture.OwnerKey:
    return capture.owner_key(get_settings(), owner)


@gaiverse_task(name="room-fetch", cache="none", retries=2)
def fetch_capture(capture_id: str, owner: str, workspace: str) -> dict[str, Any]:
    """The capture's media, opened with its owner's key, into workspace/media (refused for another user)."""
    versions = get_catalog().versions(f"{capture.CAPTURE_COLLECTION}/{capture_id}")
    if not versions or versions[0].author != owner:
        raise capture.CaptureError(f"no room capture {capture_id!r} of user {owner!r}")
    manifest, paths = capture.load_capture(get_store(), get_catalog(), capture_id, Path(workspace) / "media",
                                           _owner_key(owner))
    return {"manifest": manifest, "paths": [str(p) for p in paths]}


@gaiverse_task(name="room-select-frames", cache="none", retries=0)
def select_capture_frames(paths: list[str], workspace: str, max_frames: int) -> dict[str, Any]:
    """Sharp, distinct frames -> workspace/images (what COLMAP and the NeRF read)."""
    config = capture.FrameSelectionConfig(max_frames=max_frames)
    selection = capture.select_frames(capture.frames_of([Path(p) for p in paths], config), config)
    capture.write_frames(selection, Path(workspace) / "images", config.long_side_px)
    summary = selection.summary()
    table_artifact("room-frames", [{k: v for k, v in summary.items() if k != "sources"}],
                   title="Frames selected from the capture")
    return summary


@gaiverse_task(name="room-colmap-features", cache="none", retries=1, timeout_seconds=1800)
def colmap_features(workspace: str) -> float:
    return capture.extract_features(Path(workspace))


@gaiverse_task(name="room-colmap-matching", cache="none", retries=1, timeout_seconds=1800)
def colmap_matching(workspace: str, matcher: str) -> float:
    return capture.match_features(Path(workspace), capture.ColmapConfig(matcher=matcher))


@gaiverse_task(name="room-colmap-mapping", cache="none", retries=1, timeout_seconds=1800)
def colmap_mapping(workspace: str, n_images: int) -> dict[str, Any]:
    seconds = capture.map_sparse(Path(workspace))
    result = capture.result_of(Path(workspace), n_images, {"mapping": seconds}, min_registered=3)
    table_artifact("room-poses", [{"images": result.images, "registered": result.registered,
                                   "points": result.points}], title="COLMAP camera poses")
    return result.summary()


@gaiverse_task(name="room-train-nerf", cache="none", retries=0, timeout_seconds=3600)
def train_room_nerf(workspace: str, steps: int, long_side: int, seed: int) -> dict[str, Any]:
    """The NeRF on the COLMAP model, trained in the training actor (ray_actors/interior_training.py); its
    progress (step, PSNR) goes to the run's progress artifact while it trains; checkpoint in workspace/nerf.pt."""
    import uuid

    import ray
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    from ray_actors.interior_training import interior_trainer, pack_workspace

    actor, job = interior_trainer(), uuid.uuid4().hex
    log_every = max(1, min(25, steps // 10))
    pending = actor.train.remote(job, pack_workspace(workspace), steps, long_side, seed, log_every)
    artifact = create_progress_artifact(0.0, key=check_artifact_key("room-nerf-training"),
                                        description="NeRF training: starting")
    shown = None
    while not ray.wait([pending], timeout=1.0)[0]:
        state = ray.get(actor.progress.remote(job), timeout=60)
        if state and state != shown and state["psnr"] is not None:
            update_progress_artifact(artifact, 100.0 * state["step"] / steps, description=_training_text(state))
            shown = state
    result = ray.get(pending)
    curve = [{"step": s, "psnr": p} for s, p in result["curve"]]
    update_progress_artifact(artifact, 100.0, description=_training_text(
        {"step": curve[-1]["step"], "steps": steps, "psnr": curve[-1]["psnr"], "views": result["views"]}))
    path = Path(workspace) / "nerf.pt"
    path.write_bytes(result["checkpoint"])
    table_artifact("room-nerf-psnr", curve[-10:], title=f"NeRF training PSNR ({result['views']} views)")
    get_run_logger().info("NeRF: %d steps in %.1f s on %s (node %s), PSNR %.2f dB", steps, result["seconds"],
                          result["device"], result["node_id"][:12], curve[-1]["psnr"])
    return {"checkpoint": str(path), "views": result["views"], "seconds": result["seconds"],
            "final_psnr": curve[-1]["psnr"], "curve": [[c["step"], c["psnr"]] for c in curve],
            "device": result["device"]}


def _training_text(state: dict[str, Any]) -> str:
    """What the progress artifact (and so the web terminal) shows; the API parses it back (PROGRESS_RE)."""
    return f"NeRF step {state['step']}/{state['steps']} · PSNR {state['psnr']:.2f} dB · {state['views']} views"


@gaiverse_task(name="room-render-views", cache="none", retries=1, timeout_seconds=1800)
def render_room_views(workspace: str, checkpoint: str, size: int, rooms: int) -> dict[str, Any]:
    """An interior atlas of the captured room (gaiverse.interiors.atlas): colour + depth maps from several
    viewpoints with colour variations, in workspace/views (what windows and the publish step use). No image
    artifact: the views show the owner's home, so they are only stored sealed (publish_room)."""
    from gaiverse.interiors.atlas import build_atlas
    from gaiverse.interiors.windows import atlas_rooms

    atlas_json = build_atlas(Path(checkpoint), Path(workspace) / "views", rooms=rooms, size=size)
    views = atlas_rooms(atlas_json)
    table_artifact("room-views", [{"room": v.name, "depth_min": v.extras()["depth_min"],
                                   "depth_max": v.extras()["depth_max"]} for v in views], title="Room views")
    return {"views": [{k: v for k, v in view.extras().items() if k != "source"} for view in views],
            "atlas": str(atlas_json)}


@gaiverse_task(name="room-publish", cache="none", retries=3)
def publish_room(capture_id: str, owner: str, workspace: str, report: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint, atlas (atlas.json + PNGs) and the run report as version `room/<capture_id>` (one catalog
    transaction). The objects show the owner's room: each is sealed with their key (the manifest names the
    objects and carries the numbers of the report, no picture)."""
    store, catalog, key = get_store(), get_catalog(), _owner_key(owner)

    def sealed(path: Path):
        return store.put_bytes(key.seal(path.read_bytes(), capture.DERIVED_CONTEXT), kind=capture.DERIVED_KIND,
                               ext="bin")

    refs = {"checkpoint": sealed(Path(workspace) / "nerf.pt")}
    for path in sorted((Path(workspace) / "views").iterdir()):
        refs[path.name] = sealed(path)
    manifest = {"capture_id": capture_id, "owner": owner, "objects": {k: r.key for k, r in refs.items()},
                "sealed": "per-user AES-256-GCM (docs/PRIVACY.md)", **report}
    manifest_ref = store.put_bytes(json.dumps(manifest, indent=1, sort_keys=True, default=str).encode(),
                                   kind="room/manifest", ext="json")
    version = catalog.publish_version(f"{capture.ROOM_COLLECTION}/{capture_id}", manifest=manifest_ref,
                                      assets=list(refs.values()), message=f"room from capture {capture_id}",
                                      author=owner)
    return {"collection": f"{capture.ROOM_COLLECTION}/{capture_id}", "version": version.version,
            "manifest_key": manifest_ref.key, "objects": manifest["objects"]}
