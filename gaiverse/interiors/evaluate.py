"""`gaiverse eval nerf`: train on all but K views of a real scene, score the held-out photos against image baselines.

Protocol: the scene is loaded in any supported pose format and resized (longer edge `long_side`); the K
held-out views are the cameras closest to the centroid of all camera centres (novel views between
training views, not extrapolation far outside them); the NeRF trains on the rest with the same seed.
Each held-out photo is compared, on its valid (undistorted) pixels, with

- the NeRF rendering from its pose (exposure: identity, since its photo is never seen),
- ``nearest-view``: the training photo whose camera is closest (centre distance + viewing angle),
- ``reprojected``: that photo forward-warped into the held-out camera with the depth the NeRF renders for
  the training camera (z-buffered splats, holes inpainted),

with PSNR (dB) and SSIM (Gaussian 11x11, sigma 1.5, mean over channels). The JSON follows EVAL.md;
`baseline` is the stronger of the two baselines by PSNR, both are under `baselines`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gaiverse.interiors.poses import Scene, SceneError, load_scene
from gaiverse.interiors.render import render_view, to_uint8
from gaiverse.interiors.training import TrainConfig, TrainResult, train_nerf

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ metrics

def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] over `mask` (h, w) pixels."""
    err = (pred.astype(np.float64) - target.astype(np.float64)) ** 2
    mse = float(err[mask].mean() if mask is not None else err.mean())
    return float(-10 * np.log10(max(mse, 1e-10)))


def ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Structural similarity (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03), mean over channels and `mask`."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x, y = pred.astype(np.float64), target.astype(np.float64)

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    if ssim_map.ndim == 3:
        ssim_map = ssim_map.mean(-1)
    if mask is not None:
        inner = cv2.erode(mask.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
        return float(ssim_map[inner if inner.any() else mask].mean())
    return float(ssim_map.mean())


# ----------------------------------------------------------------------------------------------- baselines

def holdout_indices(scene: Scene, k: int) -> list[int]:
    """The `k` cameras closest to the centroid of all camera centres (interpolated novel views)."""
    if not 1 <= k <= len(scene) - 2:
        raise SceneError(f"`holdout` must be between 1 and {len(scene) - 2} for {len(scene)} images "
                         f"(at least 2 stay for training), got {k}")
    distance = np.linalg.norm(scene.centres - scene.centres.mean(0), axis=1)
    return sorted(int(i) for i in np.argsort(distance, kind="stable")[:k])


def nearest_view(scene: Scene, target: int, candidates: list[int]) -> int:
    """The candidate camera closest to `target`: centre distance (in units of the camera spread) + angle in radians."""
    spread = max(float(np.linalg.norm(scene.centres - scene.centres.mean(0), axis=1).max()), 1e-9)

    def cost(j: int) -> float:
        cos = np.clip(np.dot(scene.c2w[j][:3, 2], scene.c2w[target][:3, 2]), -1, 1)
        return float(np.linalg.norm(scene.centres[j] - scene.centres[target]) / spread + np.arccos(cos))
    return min(candidates, key=cost)


def reproject(image: np.ndarray, depth: np.ndarray, K_src: np.ndarray, c2w_src: np.ndarray, K_dst: np.ndarray,
              c2w_dst: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Forward-warp `image` (source camera, z-depth map `depth`) into the destination camera; holes inpainted."""
    h, w = hw
    v, u = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    rays = np.stack([u.ravel() + 0.5, v.ravel() + 0.5, np.ones(u.size)], -1) @ np.linalg.inv(K_src).T
    world = (rays * depth.reshape(-1, 1)) @ c2w_src[:3, :3].T + c2w_src[:3, 3]
    w2c = np.linalg.inv(c2w_dst)
    cam = world @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    proj = cam @ K_dst.T
    with np.errstate(divide="ignore", invalid="ignore"):
        px = np.floor(proj[:, 0] / z).astype(np.int64, copy=False)
        py = np.floor(proj[:, 1] / z).astype(np.int64, copy=False)
    ok = (z > 1e-6) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
    out = np.zeros((h, w, 3), np.float32)
    zbuf = np.full((h, w), np.inf)
    colours = image.reshape(-1, 3)
    order = np.argsort(-z[ok])  # far first, near overwrite
    idx = np.nonzero(ok)[0][order]
    zbuf[py[idx], px[idx]] = z[idx]
    out[py[idx], px[idx]] = colours[idx]
    holes = np.isinf(zbuf).astype(np.uint8)
    if holes.all():
        return out
    return cv2.inpaint(to_uint8(out), holes, 3, cv2.INPAINT_TELEA).astype(np.float32) / 255.0


# ------------------------------------------------------------------------------------------------ the eval

def eval_nerf(scene_dir: Path, holdout: int = 1, long_side: int = 96, steps: int = 400, seed: int = 0,
              device: str = "auto", config: TrainConfig | None = None, out_dir: Path | None = None) -> dict[str, Any]:
    """Train on all but `holdout` views of `scene_dir`, score the held-out views (EVAL.md JSON as a dict)."""
    started = time.perf_counter()
    scene = load_scene(scene_dir, long_side=long_side)
    test = holdout_indices(scene, holdout)
    train = [i for i in range(len(scene)) if i not in test]
    config = config or TrainConfig(steps=steps)
    result = train_nerf(scene.subset(train), config, seed=seed, device=device)
    items = [_score_view(scene, result, i, train, out_dir) for i in test]
    metrics = {m: float(np.mean([it["nerf"][m] for it in items])) for m in ("psnr", "ssim")}
    baselines = {name: {m: float(np.mean([it[name][m] for it in items])) for m in ("psnr", "ssim")}
                 for name in ("nearest-view", "reprojected")}
    best = max(baselines, key=lambda name: baselines[name]["psnr"])
    return {
        "eval": "nerf",
        "data": [str(scene_dir)],
        "n": len(test),
        "metrics": metrics,
        "baseline": {"name": best, **baselines[best]},
        "baselines": baselines,
        "lower_is_better": {"psnr": False, "ssim": False},
        "beats_baseline": {m: metrics[m] > baselines[best][m] for m in metrics},
        "items": items,
        "scene": {"name": scene.name, "format": scene.source_format, "images": len(scene), "train": len(train),
                  "resolution": [scene.hw[1], scene.hw[0]], "points": int(len(scene.points)),
                  "points_source": scene.points_source},
        "train_seconds": round(result.seconds, 2),
        "train_psnr_curve": result.curve,
        "config": {"steps": config.steps, "seed": seed, "long_side": long_side, "train": asdict(config)},
        "seconds": round(time.perf_counter() - started, 2),
        "checkpoint": None,
    }


def _score_view(scene: Scene, result: TrainResult, i: int, train: list[int], out_dir: Path | None) -> dict[str, Any]:
    """Render held-out view `i`, build both baselines from its nearest training view, score all three."""
    model, hw, mask, target = result.model, scene.hw, scene.masks[i], scene.images[i]
    view = render_view(model, scene.K[i], scene.c2w[i], hw)
    j = nearest_view(scene, i, train)
    source_depth = render_view(model, scene.K[j], scene.c2w[j], hw).depth
    warped = reproject(scene.images[j], source_depth, scene.K[j], scene.c2w[j], scene.K[i], scene.c2w[i], hw)
    candidates = {"nerf": view.rgb, "nearest-view": scene.images[j], "reprojected": warped}
    item: dict[str, Any] = {"image": scene.image_names[i], "nearest_training_image": scene.image_names[j]}
    for name, image in candidates.items():
        item[name] = {"psnr": psnr(image, target, mask), "ssim": ssim(image, target, mask)}
    item["depth_median"] = float(np.median(view.depth))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(scene.image_names[i]).stem
        strip = np.hstack([target, view.rgb, scene.images[j], warped])
        cv2.imwrite(str(out_dir / f"{stem}_target_nerf_nearest_reprojected.png"),
                    cv2.cvtColor(to_uint8(strip), cv2.COLOR_RGB2BGR))
        np.save(out_dir / f"{stem}_depth.npy", view.depth.astype(np.float32))
    return item
