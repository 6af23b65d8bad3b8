"""Tasks of the interior flow: thin wrappers over gaiverse.interiors (load + train, render previews, model card).

Training is deterministic for a seed, so it is not retried (a failure is a bug or bad input); reporting
touches the object store and the Prefect API, so it is. Implements ENV-c1 (training flow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gaiverse.interiors.model_card import write_model_card
from gaiverse.interiors.poses import load_scene
from gaiverse.interiors.render import render_view, to_uint8
from gaiverse.interiors.training import TrainConfig, load_checkpoint, save_checkpoint, train_nerf
from tasks.artifacts import png_artifact, table_artifact
from tasks.common import gaiverse_task


@gaiverse_task(cache="none", retries=0, timeout_seconds=7200)
def train_interior(scene_dir: str, checkpoint: str, long_side: int, steps: int, seed: int, device: str) -> dict[str, Any]:
    """Train on every view of the scene, write the checkpoint; returns the PSNR curve and timing."""
    scene = load_scene(scene_dir, long_side=long_side)
    result = train_nerf(scene, TrainConfig(steps=steps), seed=seed, device=device)
    save_checkpoint(result, scene, Path(checkpoint), extra={"seed": seed, "long_side": long_side,
                                                            "scene_dir": scene_dir})
    return {"curve": result.curve, "seconds": result.seconds, "images": len(scene),
            "points": int(len(scene.points)), "points_source": scene.points_source}


def preview_strip(checkpoint: Path, scene_dir: str, long_side: int) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Photo over NeRF colour over NeRF depth for every training view, and per-view PSNR (training fit)."""
    from gaiverse.interiors.evaluate import psnr

    model, meta = load_checkpoint(checkpoint)
    scene = load_scene(scene_dir, long_side=long_side)
    columns, rows = [], []
    for i in range(len(scene)):
        view = render_view(model, scene.K[i], scene.c2w[i], scene.hw)
        depth = view.depth / max(float(np.percentile(view.depth, 98)), 1e-6)
        depth_rgb = np.repeat(np.clip(depth, 0, 1)[..., None], 3, -1)
        columns.append(np.vstack([scene.images[i], view.rgb, depth_rgb]))
        rows.append({"image": scene.image_names[i], "psnr_train_view": round(psnr(view.rgb, scene.images[i],
                                                                                 scene.masks[i]), 2)})
    return np.hstack(columns), rows


@gaiverse_task(cache="none", retries=2)
def report_interior(checkpoint: str, scene_dir: str, long_side: int, trained: dict[str, Any],
                    parameters: dict[str, Any]) -> str:
    """PSNR curve and per-view fit as tables, photo/colour/depth strip as an image artifact, then the model card."""
    curve = trained["curve"]
    table_artifact("interior-psnr-curve", [{"step": s, "psnr_db": round(v, 3)} for s, v in curve],
                   title="NeRF training PSNR (training batches)")
    strip, rows = preview_strip(Path(checkpoint), scene_dir, long_side)
    table_artifact("interior-views", rows, title="Rendered training views (top: photo, middle: NeRF, bottom: depth)")
    ok, png = cv2.imencode(".png", cv2.cvtColor(to_uint8(strip), cv2.COLOR_RGB2BGR))
    png_artifact("interior-rendered-views", png.tobytes(), kind="training/samples",
                 description="photo / NeRF colour / NeRF depth per training view")
    return str(write_model_card(Path(checkpoint), parameters, {**trained, "views": rows}))
