"""`gaiverse eval nerf`: train on all but K camera positions of a real scene, score the held-out photos against two
image baselines computed in the same run.

Protocol: the scene is loaded in any supported pose format and resized (longer edge `long_side`).
Held-out views (`HoldoutRule`): views closer than 1 deg of parallax at the median scene depth and 2 deg of
rotation are one camera position (a static multi-frame rig gives one position per sensor); the K positions
closest to the centroid of all camera centres are held out with all their frames (novel views between the
training views, not extrapolation), so no near-copy of a scored photo ever trains. Per held-out view the
JSON gives the distance, parallax and rotation to the closest training camera. The NeRF trains on the rest
with the same seed. Each held-out photo is compared, on its valid (undistorted) pixels, with

- the NeRF rendering from its pose (exposure: identity, since its photo is never seen),
- ``nearest-view``: the training photo whose camera is closest (centre distance + viewing angle),
- ``reprojected``: the two closest training photos forward-warped into the held-out camera with the depth
  the NeRF renders for them (z-buffered splats at 2x density; the second photo fills what the first leaves
  empty; remaining holes inpainted). The formats' sparse points (hundreds) are too sparse to warp photos.

with PSNR (dB) and SSIM (Gaussian 11x11, sigma 1.5, mean over channels). Caveat shared with LLFF-style NeRF
evaluations: poses and sparse points come from SfM over all photos, held-out ones included (their pixels are
never used). The JSON follows EVAL.md; `baseline` is the stronger baseline by PSNR, both are under `baselines`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gaiverse.interiors.poses import Scene, SceneError, load_scene, point_depths
from gaiverse.interiors.render import render_view, to_uint8
from gaiverse.interiors.training import TrainConfig, TrainResult, train_nerf

log = logging.getLogger(__name__)

DEFAULT_LONG_SIDE = 96
"""Longer image edge of `gaiverse eval nerf` (training and scoring)."""
DEFAULT_STEPS = 600
"""Training steps of `gaiverse eval nerf`."""
REPROJECTION_SOURCES = 2
"""Training photos warped into a held-out camera by the `reprojected` baseline (the nearest ones)."""


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


def colour_corrected(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`pred` after the least-squares affine colour map (3x3 + offset) onto `target` over `mask`.

    mip-NeRF 360's "colour-corrected" protocol: removes the exposure/white-balance difference of a held-out
    photo, which no method can know; applied alike to the NeRF and both baselines, reported next to raw metrics.
    """
    x = np.c_[pred[mask].reshape(-1, 3), np.ones(int(mask.sum()))]
    fit, *_ = np.linalg.lstsq(x, target[mask].reshape(-1, 3), rcond=None)
    flat = np.c_[pred.reshape(-1, 3), np.ones(pred.shape[0] * pred.shape[1])] @ fit
    return np.clip(flat.reshape(pred.shape), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------- baselines

@dataclass(frozen=True)
class HoldoutRule:
    """Which views are scored and which may train: whole camera positions are held out, never single frames.

    Two views are near-duplicates (the same camera position) when their centres are closer than
    `duplicate_parallax_deg` of parallax at the scene's median depth (baseline / median depth, in degrees) and
    their orientations differ by less than `duplicate_rotation_deg`. Near-duplicates form one position (a static
    multi-frame rig gives one position per sensor); the `k` positions whose centre is closest to the centroid of
    all cameras are held out with every frame they hold (interpolated novel views, not extrapolation), so no
    training photo is a near-copy of a scored one.
    """

    duplicate_parallax_deg: float = 1.0
    duplicate_rotation_deg: float = 2.0

    def describe(self) -> str:
        return (f"hold out the K camera positions closest to the camera centroid with all their frames; views closer "
                f"than {self.duplicate_parallax_deg:g} deg of parallax at the median scene depth and "
                f"{self.duplicate_rotation_deg:g} deg of rotation are one position (never split between train and test)")


def median_scene_depth(scene: Scene) -> float:
    """Median z-depth of the sparse points over all views (world units); the camera spread when there are none."""
    depths = np.concatenate([point_depths(scene, i)[0] for i in range(len(scene))]) if len(scene.points) else []
    if len(depths) >= 8:
        return float(np.median(depths))
    spread = float(np.max(np.linalg.norm(scene.centres - scene.centres.mean(0), axis=1)))
    return spread if spread > 0 else 1.0


def view_offset(scene: Scene, i: int, j: int, depth: float) -> dict[str, float]:
    """Distance (world units), parallax at `depth` (degrees) and relative rotation (degrees) between views i and j."""
    distance = float(np.linalg.norm(scene.centres[i] - scene.centres[j]))
    relative = scene.c2w[i][:3, :3].T @ scene.c2w[j][:3, :3]
    rotation = float(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1))))
    return {"distance": distance, "parallax_deg": float(np.degrees(np.arctan2(distance, depth))), "rotation_deg": rotation}


def camera_positions(scene: Scene, rule: HoldoutRule = HoldoutRule()) -> list[list[int]]:
    """Views grouped into camera positions: connected components of the near-duplicate relation."""
    depth = median_scene_depth(scene)
    group = list(range(len(scene)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i
    for i in range(len(scene)):
        for j in range(i + 1, len(scene)):
            offset = view_offset(scene, i, j, depth)
            if offset["parallax_deg"] < rule.duplicate_parallax_deg and offset["rotation_deg"] < rule.duplicate_rotation_deg:
                group[root(j)] = root(i)
    positions: dict[int, list[int]] = {}
    for i in range(len(scene)):
        positions.setdefault(root(i), []).append(i)
    return list(positions.values())


def holdout_indices(scene: Scene, k: int, rule: HoldoutRule = HoldoutRule()) -> list[int]:
    """Every view of the `k` camera positions closest to the centroid of all camera centres (see HoldoutRule)."""
    positions = camera_positions(scene, rule)
    if not 1 <= k <= len(positions) - 1:
        raise SceneError(f"`holdout` must be between 1 and {len(positions) - 1}: {scene.name} has {len(scene)} images "
                         f"at {len(positions)} distinct camera positions (at least one stays for training), got {k}")
    centroid = scene.centres.mean(0)
    distance = [float(np.linalg.norm(scene.centres[p].mean(0) - centroid)) for p in positions]
    chosen = [positions[i] for i in np.argsort(distance, kind="stable")[:k]]
    test = sorted(i for p in chosen for i in p)
    if len(scene) - len(test) < 2:
        raise SceneError(f"`holdout` {k} leaves {len(scene) - len(test)} training image(s) in {scene.name}; "
                         "at least 2 are needed")
    return test


def nearest_view(scene: Scene, target: int, candidates: list[int]) -> int:
    """The candidate camera closest to `target`: centre distance (in units of the camera spread) + angle in radians."""
    return nearest_views(scene, target, candidates, 1)[0]


def nearest_views(scene: Scene, target: int, candidates: list[int], count: int) -> list[int]:
    """The `count` candidates closest to `target`, closest first (cost as in `nearest_view`)."""
    spread = max(float(np.linalg.norm(scene.centres - scene.centres.mean(0), axis=1).max()), 1e-9)

    def cost(j: int) -> float:
        cos = np.clip(np.dot(scene.c2w[j][:3, 2], scene.c2w[target][:3, 2]), -1, 1)
        return float(np.linalg.norm(scene.centres[j] - scene.centres[target]) / spread + np.arccos(cos))
    return sorted(candidates, key=cost)[:count]


def splat(image: np.ndarray, depth: np.ndarray, K_src: np.ndarray, c2w_src: np.ndarray, K_dst: np.ndarray,
          c2w_dst: np.ndarray, hw: tuple[int, int], mask: np.ndarray | None = None,
          supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Forward-warp the valid pixels of `image` (z-depth map `depth`) into the destination camera.

    Returns (h, w, 3) colour and (h, w) z-buffer (inf where nothing landed). `supersample` > 1 splats a denser
    grid of source samples (bilinear colour, nearest depth), so magnified regions do not break into holes.
    """
    h, w = hw
    valid = np.ones(depth.shape, bool) if mask is None else mask.astype(bool)
    if supersample > 1:
        size = (image.shape[1] * supersample, image.shape[0] * supersample)
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        depth = cv2.resize(depth.astype(np.float32), size, interpolation=cv2.INTER_NEAREST)
        valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        K_src = np.diag([supersample, supersample, 1.0]) @ K_src
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
    ok = valid.ravel() & (z > 1e-6) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
    out = np.zeros((h, w, 3), np.float32)
    zbuf = np.full((h, w), np.inf)
    colours = image.reshape(-1, 3)
    order = np.argsort(-z[ok])  # far first, near overwrite
    idx = np.nonzero(ok)[0][order]
    zbuf[py[idx], px[idx]] = z[idx]
    out[py[idx], px[idx]] = colours[idx]
    return out, zbuf


def fill_holes(colour: np.ndarray, zbuf: np.ndarray) -> np.ndarray:
    """Inpaint (Telea) the pixels where no splat landed."""
    holes = np.isinf(zbuf).astype(np.uint8)
    if holes.all() or not holes.any():
        return colour
    return cv2.inpaint(to_uint8(colour), holes, 3, cv2.INPAINT_TELEA).astype(np.float32) / 255.0


def reproject(image: np.ndarray, depth: np.ndarray, K_src: np.ndarray, c2w_src: np.ndarray, K_dst: np.ndarray,
              c2w_dst: np.ndarray, hw: tuple[int, int], mask: np.ndarray | None = None) -> np.ndarray:
    """Forward-warp `image` (source camera, z-depth map `depth`) into the destination camera; holes inpainted."""
    return fill_holes(*splat(image, depth, K_src, c2w_src, K_dst, c2w_dst, hw, mask))


def reproject_views(sources: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                    K_dst: np.ndarray, c2w_dst: np.ndarray, hw: tuple[int, int], supersample: int = 2) -> np.ndarray:
    """Several (image, depth, mask, K, c2w) sources, closest first, warped into one camera; holes inpainted.

    The closest source is kept wherever it lands; the next ones only fill what it leaves empty (its
    disocclusions and frame edges, e.g. a camera behind and one ahead in a corridor), so noisy depth in a
    farther photo cannot overwrite a good warp. A stronger baseline than warping the single nearest photo.
    """
    colour, zbuf = np.zeros((*hw, 3), np.float32), np.full(hw, np.inf)
    for image, depth, mask, K_src, c2w_src in sources:
        c, z = splat(image, depth, K_src, c2w_src, K_dst, c2w_dst, hw, mask, supersample)
        empty = np.isinf(zbuf) & np.isfinite(z)
        colour[empty], zbuf[empty] = c[empty], z[empty]
    return fill_holes(colour, zbuf)


# ------------------------------------------------------------------------------------------------ the eval

@dataclass
class HeldoutMonitor:
    """Held-out PSNR during training (mean over the held-out views), against training time with its own
    rendering time subtracted; `seconds_to_reach` reads off when a baseline's PSNR is first reached."""

    scene: Scene
    test: list[int]
    started: float = 0.0
    spent: float = 0.0
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    """(step, training seconds, held-out PSNR in dB)."""

    def __call__(self, step: int, _train_psnr: float, model: Any) -> None:
        before = time.perf_counter()
        values = [psnr(render_view(model, self.scene.K[i], self.scene.c2w[i], self.scene.hw).rgb, self.scene.images[i],
                       self.scene.masks[i]) for i in self.test]
        self.curve.append((step, round(before - self.started - self.spent, 2), round(float(np.mean(values)), 3)))
        self.spent += time.perf_counter() - before

    def seconds_to_reach(self, target_psnr: float) -> tuple[int, float] | None:
        """(step, training seconds) of the first check at or above `target_psnr`; None if never reached."""
        return next(((step, seconds) for step, seconds, value in self.curve if value >= target_psnr), None)


def eval_nerf(scene_dir: Path, holdout: int = 1, long_side: int = DEFAULT_LONG_SIDE, steps: int = DEFAULT_STEPS,
              seed: int = 0, device: str = "auto", config: TrainConfig | None = None, out_dir: Path | None = None,
              curve_every: int = 0) -> dict[str, Any]:
    """Train on all but `holdout` camera positions of `scene_dir`, score the held-out views (EVAL.md JSON as a dict).

    curve_every > 0 also renders the held-out views every that many steps (PSNR against training time, and the
    training time at which the NeRF first reaches each baseline's final PSNR).
    """
    return run_eval(scene_dir, holdout, long_side, steps, seed, device, config, out_dir, curve_every)[0]


def run_eval(scene_dir: Path, holdout: int = 1, long_side: int = DEFAULT_LONG_SIDE, steps: int = DEFAULT_STEPS,
             seed: int = 0, device: str = "auto", config: TrainConfig | None = None, out_dir: Path | None = None,
             curve_every: int = 0) -> tuple[dict[str, Any], TrainResult, Scene]:
    """`eval_nerf`, also returning the trained model and the loaded scene (benchmarks time renders with them)."""
    started = time.perf_counter()
    scene = load_scene(scene_dir, long_side=long_side)
    rule = HoldoutRule()
    test = holdout_indices(scene, holdout, rule)
    train = [i for i in range(len(scene)) if i not in test]
    depth = median_scene_depth(scene)
    config = config or TrainConfig(steps=steps)
    monitor = HeldoutMonitor(scene, test) if curve_every else None
    if monitor is not None:
        config = replace(config, log_every=curve_every)
        monitor.started = time.perf_counter()
    result = train_nerf(scene.subset(train), config, seed=seed, device=device, on_log=monitor)
    items = [_score_view(scene, result, i, train, depth, out_dir) for i in test]
    metrics = {m: float(np.mean([it["nerf"][m] for it in items])) for m in ("psnr", "ssim")}
    baselines = {name: {m: float(np.mean([it[name][m] for it in items])) for m in ("psnr", "ssim")}
                 for name in ("nearest-view", "reprojected")}
    corrected = {name: {m: float(np.mean([it[name][f"{m}_colour_corrected"] for it in items])) for m in ("psnr", "ssim")}
                 for name in ("nerf", "nearest-view", "reprojected")}
    best = max(baselines, key=lambda name: baselines[name]["psnr"])
    report: dict[str, Any] = {
        "eval": "nerf",
        "data": [str(scene_dir)],
        "n": len(test),
        "metrics": metrics,
        "baseline": {"name": best, **baselines[best]},
        "baselines": baselines,
        "lower_is_better": {"psnr": False, "ssim": False},
        "beats_both_baselines": {m: bool(all(metrics[m] > b[m] for b in baselines.values())) for m in metrics},
        "colour_corrected": corrected,
        "items": items,
        "holdout_rule": rule.describe(),
        "camera_positions": [[scene.image_names[i] for i in p] for p in camera_positions(scene, rule)],
        "median_scene_depth": round(depth, 4),
        "reprojection_depth": "z-depth rendered by the trained NeRF for each source photo (the formats' sparse "
                              "points are too sparse to warp whole photos)",
        "scene": {"name": scene.name, "format": scene.source_format, "images": len(scene), "train": len(train),
                  "resolution": [scene.hw[1], scene.hw[0]], "points": int(len(scene.points)),
                  "points_source": scene.points_source},
        "train_seconds": round(result.seconds - (monitor.spent if monitor else 0.0), 2),
        "train_psnr_curve": result.curve,
        "config": {"steps": config.steps, "seed": seed, "long_side": long_side, "train": asdict(config)},
        "checkpoint": None,
    }
    if monitor is not None:
        report["heldout_psnr_curve"] = monitor.curve
        report["seconds_to_baseline_psnr"] = {
            name: (None if (hit := monitor.seconds_to_reach(b["psnr"])) is None else {"step": hit[0], "seconds": hit[1]})
            for name, b in baselines.items()}
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report, result, scene


def _score_view(scene: Scene, result: TrainResult, i: int, train: list[int], depth: float,
                out_dir: Path | None) -> dict[str, Any]:
    """Render held-out view `i`, build both baselines from its nearest training view, score all three; the
    offsets to the closest training camera (and to the baselines' source view) let readers judge the gap."""
    model, hw, mask, target = result.model, scene.hw, scene.masks[i], scene.images[i]
    view = render_view(model, scene.K[i], scene.c2w[i], hw)
    neighbours = nearest_views(scene, i, train, REPROJECTION_SOURCES)
    j = neighbours[0]
    sources = [(scene.images[n], render_view(model, scene.K[n], scene.c2w[n], hw).depth, scene.masks[n], scene.K[n],
                scene.c2w[n]) for n in neighbours]
    warped = reproject_views(sources, scene.K[i], scene.c2w[i], hw)
    candidates = {"nerf": view.rgb, "nearest-view": scene.images[j], "reprojected": warped}
    closest = min(train, key=lambda t: float(np.linalg.norm(scene.centres[t] - scene.centres[i])))
    item: dict[str, Any] = {
        "image": scene.image_names[i], "nearest_training_image": scene.image_names[j],
        "reprojection_sources": [scene.image_names[n] for n in neighbours],
        "offset_to_nearest_training_image": view_offset(scene, i, j, depth),
        "closest_training_camera": {"image": scene.image_names[closest], **view_offset(scene, i, closest, depth)}}
    for name, image in candidates.items():
        corrected = colour_corrected(image, target, mask)
        item[name] = {"psnr": psnr(image, target, mask), "ssim": ssim(image, target, mask),
                      "psnr_colour_corrected": psnr(corrected, target, mask),
                      "ssim_colour_corrected": ssim(corrected, target, mask)}
    item["depth_median"] = float(np.median(view.depth))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(scene.image_names[i]).stem
        strip = np.hstack([target, view.rgb, scene.images[j], warped])
        cv2.imwrite(str(out_dir / f"{stem}_target_nerf_nearest_reprojected.png"),
                    cv2.cvtColor(to_uint8(strip), cv2.COLOR_RGB2BGR))
        np.save(out_dir / f"{stem}_depth.npy", view.depth.astype(np.float32))
    return item
