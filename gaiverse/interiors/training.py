"""Training the compact NeRF on a `Scene`: seeded, coarse-to-fine, per-image exposure, sparse-depth prior; checkpoints.

One loop (`train_nerf`): sample a batch of pixels of the training photos -> render their rays -> per-image
affine colour (exposure/white balance differ between phone photos; their mean is tied to the identity, which
held-out views use) -> photometric loss + total variation + an occlusion prior (no weight in the first samples
in front of a camera) + a depth loss on rays through the scene's sparse points (the SfM points that came with
the poses, or triangulated ones) -> Adam; optionally photo patches with an SSIM term. The grid doubles its
resolution at fixed fractions of training and the occupancy grid is refreshed every `occupancy_every` steps.
Same seed, same data and same device give the same weights. Implements ENV-c1 (model).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from gaiverse.interiors.nerf import (
    FieldConfig, Normalisation, OccupancyGrid, RenderOutput, SamplerConfig, TensoRFField, camera_rays, pick_device,
    render_rays,
)
from gaiverse.interiors.poses import Scene, point_depths

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = PROJECT_ROOT / "checkpoints" / "interior" / "nerf.pt"


@dataclass
class TrainConfig:
    steps: int = 600
    """Optimiser steps."""
    batch_rays: int = 512
    """Photo pixels per step."""
    depth_rays: int = 64
    """Rays through sparse points per step (depth prior); 0 disables it."""
    depth_weight: float = 0.05
    """Weight of the relative depth error on those rays (the shipped office checkpoint uses 0.3: with a 6 cm
    stereo baseline the photos alone let the field hide the room in floaters just in front of the cameras)."""
    lr_grid: float = 0.02
    """Adam learning rate of the plane/line factors (decays x0.1 over training)."""
    lr_net: float = 2e-3
    """Adam learning rate of the colour MLP, background and exposure."""
    tv_density: float = 0.05
    """Total-variation weight on the density factors."""
    tv_appearance: float = 0.01
    """Total-variation weight on the appearance planes and lines."""
    l1_density: float = 0.0
    """L1 weight on the density factors (TensoRF's sparsity prior; off: the occlusion prior below is what removed
    the floaters in our few-view scenes)."""
    occlusion_weight: float = 1.0
    """Weight of the compositing weight in each ray's first `occlusion_samples` samples (FreeNeRF's occlusion
    prior: with few views the field likes to explain a photo by floaters right in front of its camera). Measured on
    the façade's held-out view (96 px, 700 steps): weight 0 → 21.56 dB / SSIM 0.649 (400 steps), 0.1 → 21.82 / 0.685
    (400 steps), 0.3 → 22.40 / 0.753, 1.0 → 22.66 / 0.770."""
    occlusion_samples: int = 4
    """How many of the nearest samples of a ray the occlusion prior covers."""
    patch_size: int = 1
    """Edge of the square photo patches a batch is made of (needed by the SSIM term); 1 = single pixels."""
    ssim_weight: float = 0.0
    """Weight of 1 - SSIM (3x3 windows) on those patches. Off by default: measured on the façade (128 px, 1000
    steps, 8x8 patches, weight 0.1) it lowered held-out SSIM from 0.612 to 0.568 (fewer distinct pixels a step)."""
    upsample_at: tuple[float, ...] = (0.15, 0.3, 0.45)
    """Fractions of `steps` where the grid resolution doubles (capped at the field's `resolution`)."""
    occupancy_size: int = 64
    """Edge of the occupancy grid."""
    occupancy_every: int = 50
    """Steps between occupancy refreshes (from step `occupancy_every` * 2 on)."""
    exposure: bool = True
    """Learn a per-image affine colour transform (identity for unseen views)."""
    log_every: int = 25
    """Steps between PSNR log points."""
    field: FieldConfig = dataclass_field(default_factory=FieldConfig)
    sampler: SamplerConfig = dataclass_field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"`steps` must be >= 1, got {self.steps}")
        if self.batch_rays < 16:
            raise ValueError(f"`batch_rays` must be >= 16, got {self.batch_rays}")
        if not 1 <= self.patch_size ** 2 <= self.batch_rays:
            raise ValueError(f"`patch_size` must be >= 1 with patch_size² <= batch_rays, got {self.patch_size}")


class NerfModel(nn.Module):
    """Field + background colour + per-training-image exposure + the scene normalisation and bounds."""

    def __init__(self, config: TrainConfig, norm: Normalisation, near: float, far: float, n_images: int):
        super().__init__()
        self.config = config
        self.norm = norm
        self.near, self.far = near, far
        self.field = TensoRFField(config.field)
        self.background = nn.Parameter(torch.zeros(3))
        self.exposure = nn.Parameter(torch.eye(3, 4).repeat(n_images, 1, 1))
        self.grid: OccupancyGrid | None = None

    def render(self, origins: torch.Tensor, dirs: torch.Tensor, perturb: bool = False,
               generator: torch.Generator | None = None) -> RenderOutput:
        return render_rays(self.field, self.grid, origins, dirs, self.near, self.far, torch.sigmoid(self.background),
                           self.config.sampler, perturb, generator)

    def expose(self, rgb: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        m = self.exposure[image_index]
        return torch.einsum("nij,nj->ni", m[:, :, :3], rgb) + m[:, :, 3]


@dataclass
class TrainResult:
    model: NerfModel
    curve: list[tuple[int, float]]
    """(step, PSNR of the training batch in dB)."""
    seconds: float
    train_names: list[str]
    scene_name: str


def training_rays(scene: Scene, norm: Normalisation) -> dict[str, torch.Tensor]:
    """Every pixel of every image as a ray (image-major, row-major), with its colour, image index and validity."""
    origins, dirs = [], []
    for i in range(len(scene)):
        o, d = camera_rays(scene.K[i], scene.c2w[i], scene.hw, norm)
        origins.append(o)
        dirs.append(d)
    n, (h, w) = len(scene), scene.hw
    return {"origins": torch.from_numpy(np.concatenate(origins)), "dirs": torch.from_numpy(np.concatenate(dirs)),
            "rgb": torch.from_numpy(scene.images.reshape(-1, 3)).float(),
            "index": torch.arange(n).repeat_interleave(h * w), "valid": torch.from_numpy(scene.masks.reshape(-1)),
            "valid_ids": torch.from_numpy(np.flatnonzero(scene.masks.reshape(-1)))}


def sample_batch(rays: dict[str, torch.Tensor], hw: tuple[int, int], config: TrainConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """Ray ids of one batch: (patches, p, p) square photo patches, or (batch,) valid pixels when patch_size is 1."""
    p = config.patch_size
    count = config.batch_rays // (p * p)
    pick = torch.randint(0, rays["valid_ids"].shape[0], (count if p > 1 else config.batch_rays,), generator=generator)
    centres = rays["valid_ids"][pick.to(rays["valid_ids"].device)].cpu()
    if p == 1:
        return centres
    h, w = hw
    if h < p or w < p:
        raise ValueError(f"`patch_size` {p} is larger than the {w}x{h} training images")
    image, pixel = centres // (h * w), centres % (h * w)
    top = (pixel // w - p // 2).clamp(0, h - p)  # patches around valid pixels, shifted inside the image
    left = (pixel % w - p // 2).clamp(0, w - p)
    offsets = torch.arange(p)
    rows = (top[:, None] + offsets)[:, :, None]
    cols = (left[:, None] + offsets)[:, None, :]
    return image[:, None, None] * h * w + rows * w + cols


def patch_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over (n, p, p, 3) patches with 3x3 box windows (the patch is too small for an 11x11 Gaussian)."""
    x, y = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    pool = torch.nn.functional.avg_pool2d
    mx, my = pool(x, 3, 1), pool(y, 3, 1)
    vx, vy = pool(x * x, 3, 1) - mx * mx, pool(y * y, 3, 1) - my * my
    cxy = pool(x * y, 3, 1) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean()


def _depth_rays(scene: Scene, norm: Normalisation) -> dict[str, torch.Tensor] | None:
    """Rays through the projections of the sparse points, with the point's z-depth in normalised units."""
    origins, dirs, depths = [], [], []
    for i in range(len(scene)):
        z, uv = point_depths(scene, i)
        keep = z > 2 * scene.near  # below the near margin: mismatches, not surfaces
        z, uv = z[keep], uv[keep]
        if not len(z):
            continue
        o, d = camera_rays(scene.K[i], scene.c2w[i], scene.hw, norm, uv - 0.5)
        origins.append(o)
        dirs.append(d)
        depths.append(z / norm.scale)
    if not origins:
        return None
    return {"origins": torch.from_numpy(np.concatenate(origins)), "dirs": torch.from_numpy(np.concatenate(dirs)),
            "depth": torch.from_numpy(np.concatenate(depths)).float()}


def _optimiser(model: NerfModel, config: TrainConfig) -> torch.optim.Optimizer:
    grid_params = [model.field.density_planes, model.field.density_lines, model.field.app_planes,
                   model.field.app_lines]
    net_params = [*model.field.basis.parameters(), *model.field.mlp.parameters(), model.background]
    groups = [{"params": grid_params, "lr": config.lr_grid}, {"params": net_params, "lr": config.lr_net}]
    if config.exposure:
        groups.append({"params": [model.exposure], "lr": config.lr_net * 0.5})
    return torch.optim.Adam(groups, betas=(0.9, 0.99))


def psnr(mse: float) -> float:
    return -10 * math.log10(max(mse, 1e-10))


def train_nerf(scene: Scene, config: TrainConfig | None = None, seed: int = 0, device: str = "auto",
               on_log: Callable[[int, float, NerfModel], bool | None] | None = None) -> TrainResult:
    """Fit a NerfModel to every image of `scene`; returns the model (eval mode) and its PSNR curve.

    on_log(step, train_psnr, model) is called at every log point; returning True stops training there.
    """
    config = config or TrainConfig()
    dev = pick_device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    norm = Normalisation.from_points(scene.points, scene.centres)
    model = NerfModel(config, norm, scene.near / norm.scale, scene.far / norm.scale, len(scene)).to(dev)
    model.grid = OccupancyGrid(config.occupancy_size, dev)
    rays = {k: v.to(dev) for k, v in training_rays(scene, norm).items()}
    depth = _depth_rays(scene, norm) if config.depth_rays else None
    depth = {k: v.to(dev) for k, v in depth.items()} if depth else None
    optimiser = _optimiser(model, config)
    upsample_steps = {int(f * config.steps): None for f in config.upsample_at}
    resolution = config.field.start_resolution
    curve: list[tuple[int, float]] = []
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        if step in upsample_steps and resolution < config.field.resolution:
            resolution = min(resolution * 2, config.field.resolution)
            model.field.upsample(resolution)
            optimiser = _optimiser(model, config)
        decay = 0.1 ** (step / config.steps)
        for group in optimiser.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * decay
        ids = sample_batch(rays, scene.hw, config, generator).to(dev)
        batch = ids.reshape(-1)
        out = model.render(rays["origins"][batch], rays["dirs"][batch], perturb=True, generator=generator)
        rgb = model.expose(out.rgb, rays["index"][batch]) if config.exposure else out.rgb
        valid = rays["valid"][batch]
        mse = (rgb - rays["rgb"][batch])[valid].pow(2).mean()
        tv_density, tv_app = model.field.total_variation()
        loss = (mse + config.tv_density * tv_density + config.tv_appearance * tv_app
                + config.l1_density * model.field.density_l1())
        if config.occlusion_weight:
            loss = loss + config.occlusion_weight * out.weights[:, :config.occlusion_samples].sum(-1).mean()
        if config.ssim_weight and ids.ndim == 3:
            patch_valid = valid.reshape(ids.shape).all(-1).all(-1)  # undistortion borders: whole patches only
            if patch_valid.any():
                pred, target = rgb.reshape(*ids.shape, 3), rays["rgb"][batch].reshape(*ids.shape, 3)
                loss = loss + config.ssim_weight * (1 - patch_ssim(pred[patch_valid], target[patch_valid]))
        if depth is not None:
            pick = torch.randint(0, depth["depth"].shape[0], (config.depth_rays,), generator=generator).to(dev)
            d_out = model.render(depth["origins"][pick], depth["dirs"][pick], perturb=True, generator=generator)
            target = depth["depth"][pick]
            loss = loss + config.depth_weight * ((d_out.depth - target).abs() / target).mean()
        if config.exposure:
            # each photo may differ, but their mean is the identity: an unseen view (rendered with the identity)
            # then gets the average exposure of the training photos instead of a drifted one
            offset = model.exposure - torch.eye(3, 4, device=dev)
            loss = loss + 1e-3 * offset.pow(2).mean() + offset.mean(0).pow(2).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % config.occupancy_every == 0 and step >= 2 * config.occupancy_every:
            model.grid.update(model.field, generator=generator)
        if step % config.log_every == 0 or step == config.steps:
            value = psnr(float(mse.detach()))
            curve.append((step, value))
            if on_log and on_log(step, value, model):
                log.info("stopped at step %d on request", step)
                break
            log.info("step %d psnr %.2f res %d", step, value, resolution)
    model.eval()
    return TrainResult(model=model, curve=curve, seconds=time.perf_counter() - started,
                       train_names=list(scene.image_names), scene_name=scene.name)


# ------------------------------------------------------------------------------------------ checkpoints

def save_checkpoint(result: TrainResult, scene: Scene, path: Path, extra: dict | None = None) -> Path:
    """One .pt file: config, weights (float16 factors), occupancy bits, normalisation and the training cameras."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = result.model
    state = {k: (v.half() if v.dtype == torch.float32 and v.ndim == 4 else v).cpu()
             for k, v in model.state_dict().items()}
    torch.save({
        "format": "gaiverse-nerf-1",
        "config": asdict(model.config),
        "state": state,
        "occupancy": np.packbits(model.grid.occupied.cpu().numpy()) if model.grid is not None else None,
        "occupancy_size": model.grid.size if model.grid is not None else 0,
        "normalisation": model.norm.to_dict(),
        "near": model.near, "far": model.far,
        "scene": result.scene_name, "images": result.train_names,
        "K": scene.K, "c2w": scene.c2w, "hw": scene.hw,
        "curve": result.curve, "seconds": result.seconds, **(extra or {}),
    }, path)
    return path


def _config_from_dict(raw: dict) -> TrainConfig:
    raw = dict(raw)
    raw["field"] = FieldConfig(**raw["field"])
    raw["sampler"] = SamplerConfig(**raw["sampler"])
    raw["upsample_at"] = tuple(raw["upsample_at"])
    return TrainConfig(**raw)


def load_checkpoint(path: str | Path = DEFAULT_CHECKPOINT, device: str = "auto") -> tuple[NerfModel, dict]:
    """The model (eval mode, on the picked device) and the checkpoint's metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NeRF checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != "gaiverse-nerf-1":
        raise ValueError(f"{path} is not a gaiverse NeRF checkpoint")
    dev = pick_device(device)
    config = _config_from_dict(payload["config"])
    state = payload["state"]
    model = NerfModel(config, Normalisation(**payload["normalisation"]), payload["near"], payload["far"],
                      state["exposure"].shape[0])
    model.field.upsample(state["field.app_planes"].shape[-1])
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.to(dev).eval()
    size = payload["occupancy_size"]
    if size:
        model.grid = OccupancyGrid(size, dev)
        bits = np.unpackbits(payload["occupancy"])[: size ** 3].astype(bool).reshape((size,) * 3)
        model.grid.occupied = torch.from_numpy(bits).to(dev)
    return model, payload
