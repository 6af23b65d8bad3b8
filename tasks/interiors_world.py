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
from tasks.artifacts import png_artifact, table_artifact
from tasks.common import gaiverse_task, get_catalog, get_store



# --------------------------------------------------------------------------------------------- world

@gaiverse_task(cache="none", retries=1)
def furnish_interiors(scene, library_dir: str | None = None) -> dict[str, Any]:
    """Windows of the assembled scene get NeRF rooms; {"skipped": reason} when no room library is installed."""
    from gaiverse.interiors.windows import check_windows, furnish_scene, load_library

    logger = get_run_logger()
    try:
        library = load_library(library_dir)
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
    return {**stats, "window_nodes": check["window_nodes"]}


# ------------------------------------------------------------------------------------- room capture

@gaiverse_task(name="room-fetch", cache="none", retries=2)
def fetch_capture(capture_id: str, workspace: str) -> dict[str, Any]:
    """The capture's media from the object store into workspace/media."""
    manifest, paths = capture.load_capture(get_store(), get_catalog(), capture_id, Path(workspace) / "media")
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
    """The NeRF on the COLMAP model (gaiverse.interiors.training), checkpoint in workspace/nerf.pt."""
    from gaiverse.interiors.poses import load_scene
    from gaiverse.interiors.training import TrainConfig, save_checkpoint, train_nerf

    scene = load_scene(Path(workspace), long_side=long_side)
    result = train_nerf(scene, TrainConfig(steps=steps), seed=seed)
    path = save_checkpoint(result, scene, Path(workspace) / "nerf.pt", extra={"source": "room capture"})
    curve = [{"step": s, "psnr": round(p, 2)} for s, p in result.curve]
    table_artifact("room-nerf-psnr", curve[-10:], title=f"NeRF training PSNR ({len(scene)} views)")
    return {"checkpoint": str(path), "views": len(scene), "seconds": round(result.seconds, 1),
            "final_psnr": curve[-1]["psnr"] if curve else None}


@gaiverse_task(name="room-render-views", cache="none", retries=1, timeout_seconds=1800)
def render_room_views(workspace: str, checkpoint: str, size: int, rooms: int) -> dict[str, Any]:
    """An interior atlas of the captured room (gaiverse.interiors.atlas): colour + depth maps from several
    viewpoints with colour variations, in workspace/views (what windows and the publish step use)."""
    from gaiverse.interiors.atlas import build_atlas
    from gaiverse.interiors.windows import atlas_rooms

    atlas_json = build_atlas(Path(checkpoint), Path(workspace) / "views", rooms=rooms, size=size)
    views = atlas_rooms(atlas_json)
    png_artifact("room-view", views[0].files()[views[0].extras()["colour"]], kind="preview",
                 description="a room rendered by the NeRF of the capture")
    return {"views": [{k: v for k, v in view.extras().items() if k != "source"} for view in views],
            "atlas": str(atlas_json)}


@gaiverse_task(name="room-publish", cache="none", retries=3)
def publish_room(capture_id: str, owner: str, workspace: str, report: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint, atlas (atlas.json + PNGs) and the run report as version `room/<capture_id>` (one catalog
    transaction)."""
    store, catalog = get_store(), get_catalog()
    refs = {"checkpoint": store.put_file(Path(workspace) / "nerf.pt", kind="room/nerf", ext="pt")}
    for path in sorted((Path(workspace) / "views").iterdir()):
        refs[path.name] = store.put_file(path, kind="room/atlas", ext=path.suffix.lstrip("."))
    manifest = {"capture_id": capture_id, "owner": owner, "objects": {k: r.key for k, r in refs.items()}, **report}
    manifest_ref = store.put_bytes(json.dumps(manifest, indent=1, sort_keys=True, default=str).encode(),
                                   kind="room/manifest", ext="json")
    version = catalog.publish_version(f"room/{capture_id}", manifest=manifest_ref, assets=list(refs.values()),
                                      message=f"room from capture {capture_id}", author=owner)
    return {"collection": f"room/{capture_id}", "version": version.version, "manifest_key": manifest_ref.key,
            "objects": manifest["objects"]}
