"""Training entry point for the layout models: shipped real data -> tiles -> held-out split -> checkpoint.

Implements ENV-a1. Flows wrap `train_layout`; the CLI `gaiverse layout train` calls it directly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from gaiverse.world.layout_model import LayoutDiffusion, LayoutModelConfig, decode_roads, train_layout_model
from gaiverse.world.osm import ROAD_CLASSES, road_mask_to_png
from gaiverse.world.tiles import TileSet, file_sha256, region_of, road_tiles, terrain_tiles

log = logging.getLogger(__name__)

#: Repository root: shipped data and checkpoints are addressed relative to it.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = PROJECT_ROOT / "checkpoints" / "layout"


@dataclass
class LayoutDataConfig:
    """Which real files a layout model trains on and how they are tiled."""

    kind: Literal["terrain", "roads"] = "terrain"
    """Terrain DEMs or OSM road networks."""
    data_dir: Path = PROJECT_ROOT / "data"
    """Folder holding terrain/ and osm/."""
    holdout_regions: tuple[str, ...] = ("west_bijou",)
    """Regions never used for training (kept for evaluation)."""
    tile_px: int = 32
    """Tile edge in pixels."""
    stride: int = 8
    """Step between training windows, pixels (overlapping windows are more training data)."""
    road_cell_m: float = 8.0
    """Road raster resolution, metres per pixel."""

    def files(self) -> list[Path]:
        if self.kind == "terrain":
            folder, suffixes = self.data_dir / "terrain", (".asc", ".tif", ".tiff")
        else:
            folder, suffixes = self.data_dir / "osm", (".pbf", ".osm", ".bz2")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"no {self.kind} data files in {folder}")
        return files

    def tiles(self) -> TileSet:
        if self.kind == "terrain":
            return terrain_tiles(self.files(), self.tile_px, self.stride)
        return road_tiles(self.files(), self.tile_px, self.road_cell_m, self.stride)


#: Named presets, each with its description (the shipped checkpoints were trained with these).
PRESETS: dict[str, tuple[str, LayoutDataConfig, LayoutModelConfig]] = {
    "terrain-base": ("terrain heights conditioned on relief, cell size and roughness (the first shipped model), "
                     "West Bijou held out",
                     LayoutDataConfig("terrain", holdout_regions=("west_bijou",)),
                     LayoutModelConfig(kind="terrain", channels=1, train_steps=900, prediction_type="v_prediction",
                                       guidance_scale=1.0, controls=("relief_m", "cell_m", "roughness"))),
    "terrain": ("terrain heights conditioned on relief, cell size, roughness and steepness, 32 px tiles at native "
                "resolution (1-234 m cells), West Bijou held out (the shipped model; or fine-tune a terrain-base "
                "checkpoint with --init-from and fewer --steps)",
                LayoutDataConfig("terrain", holdout_regions=("west_bijou",)),
                LayoutModelConfig(kind="terrain", channels=1, train_steps=1500, prediction_type="v_prediction",
                                  learning_rate=1e-3, guidance_scale=2.0)),
    "roads": ("major/minor road classes as distance ramps, 32 px tiles at 8 m, Kotka held out",
              LayoutDataConfig("roads", holdout_regions=("kotka",)),
              LayoutModelConfig(kind="roads", channels=len(ROAD_CLASSES), train_steps=2000, guidance_scale=1.5,
                                road_encoding="distance")),
}


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def train_layout(preset: str, out_dir: str | Path | None = None, steps: int | None = None,
                 batch_size: int | None = None, seed: int | None = None, threads: int | None = None,
                 preview_steps: int | None = None, init_from: str | Path | None = None,
                 guidance_scales: tuple[float, ...] = ()) -> Path:
    """Train the named preset on the shipped real data and write a save_pretrained checkpoint.

    Writes <out_dir>/{unet,control_encoder,scheduler}/, layout_config.json (config, control
    scaler, loss curve, training files with sha256, held-out regions) and samples.png (a grid of
    16 samples at training-tile controls, `preview_steps` DDIM steps). `init_from`: a checkpoint
    of the same architecture to fine-tune from (new controls start at zero weight).
    `guidance_scales`: terrain only, choose the guidance scale among these on training tiles.
    Implements ENV-a1.
    """
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)}, got {preset!r}")
    _, data_cfg, model_cfg = PRESETS[preset]
    overrides = {k: v for k, v in {"train_steps": steps, "batch_size": batch_size, "seed": seed}.items() if v is not None}
    model_cfg = replace(model_cfg, **overrides)
    if threads:
        torch.set_num_threads(threads)
    out = Path(out_dir) if out_dir else DEFAULT_CHECKPOINT / preset
    all_tiles = data_cfg.tiles()
    train, held = all_tiles.split(data_cfg.holdout_regions)
    if len(train) == 0:
        raise ValueError(f"holding out {data_cfg.holdout_regions} leaves no training tile")
    log.info("%s: %d training tiles, %d held out (%s)", preset, len(train), len(held), data_cfg.holdout_regions)
    init = LayoutDiffusion.from_pretrained(init_from) if init_from else None
    model, curve = train_layout_model(train, model_cfg, init=init)
    files = [f for f in data_cfg.files() if region_of(f) not in data_cfg.holdout_regions]
    model.meta.update({
        "preset": preset,
        "training_files": [{"path": _relative(f), "sha256": file_sha256(f), "region": region_of(f)} for f in files],
        "holdout_regions": list(data_cfg.holdout_regions),
        "tiling": {"tile_px": data_cfg.tile_px, "stride": data_cfg.stride, "road_cell_m": data_cfg.road_cell_m},
        "control_ranges": {k: [float(np.min(v)), float(np.max(v))] for k, v in train.attrs.items()},
    })
    if init is not None:
        model.meta["init"] = {"from": _relative(Path(init_from)), "preset": init.meta.get("preset"),
                              "config": asdict(init.config), "train_seconds": init.meta.get("train_seconds")}
    if guidance_scales:
        select_guidance(model, train, tuple(guidance_scales), seed=model_cfg.seed + 100, steps=preview_steps)
    if model_cfg.kind == "roads" and model_cfg.road_encoding == "distance":
        calibrate_road_threshold(model, train, seed=model_cfg.seed, steps=preview_steps)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_preview(model, train, out / "samples.png", steps=preview_steps)
    (out / "loss_curve.json").write_text(json.dumps(curve))
    log.info("saved %s checkpoint to %s", preset, out)
    return out


def save_preview(model: LayoutDiffusion, train: TileSet, path: Path, steps: int | None = None) -> Path:
    """samples.png: 16 samples at the controls of 16 training tiles (terrain steered to their steepness)."""
    pick = np.linspace(0, len(train) - 1, 16).astype(int)
    steepness = train.attrs["steepness"][pick] if model.config.kind == "terrain" else None
    samples = model.sample(model.scaler.raw(train.attrs)[pick], seed=0, steps=steps, steepness=steepness)
    return save_grid(samples, path, model.config)


def select_guidance(model: LayoutDiffusion, train: TileSet, scales: tuple[float, ...] = (1.0, 1.5, 2.0),
                    n: int = 48, seed: int = 100, steps: int | None = None) -> float:
    """Pick the terrain guidance scale whose samples at training-tile controls, rescaled to those
    tiles' relief, best match the tiles' slope and roughness (sum of W1 relative to the tiles' means);
    sets it on the model. `steps`: DDIM steps (default: the model's, what evaluation and builds use;
    the best scale at 20 steps was not the best at 40).

    Uses training tiles only, never evaluation data. Implements ENV-a1.
    """
    from gaiverse.world import terrain_metrics as tm

    if model.config.kind != "terrain" or not scales:
        raise ValueError(f"select_guidance needs a terrain model and scales, got {model.config.kind!r}, {scales}")
    steps = steps or model.config.ddim_steps
    idx = np.linspace(0, len(train) - 1, n).round().astype(int)
    controls, relief, cells = model.scaler.raw(train.attrs)[idx], train.attrs["relief_m"][idx], train.attrs["cell_m"][idx]
    real = tm.terrain_stats(list(train.heights_m()[idx]), cells)
    scores = {}
    for g in scales:
        tiles = np.concatenate([model.sample(controls[i:i + 32], seed=seed + i, steps=steps, guidance_scale=g,
                                             steepness=train.attrs["steepness"][idx][i:i + 32])
                                for i in range(0, n, 32)])[:, 0]
        d = tm.compare_terrain(tm.terrain_stats(tm.to_metres(tiles, relief), cells), real)
        scores[g] = d["slope_w1"] / real.slope.mean() + d["roughness_w1"] / real.roughness.mean()
        log.info("guidance %.1f: slope W1 %.3f deg, roughness W1 %.3f m, score %.3f", g, d["slope_w1"],
                 d["roughness_w1"], scores[g])
    best = min(scores, key=scores.get)
    model.config.guidance_scale = float(best)
    model.meta["guidance_selection"] = {
        "chosen": float(best), "scores": {str(k): round(v, 4) for k, v in scores.items()},
        "how": f"lowest slope + roughness W1 (relative) against {n} training tiles at their own controls and steepness "
               f"(seed {seed}, {steps} DDIM steps); held-out data not used"}
    return float(best)


def calibrate_road_threshold(model: LayoutDiffusion, train: TileSet, n: int = 64, seed: int = 0,
                             steps: int | None = None) -> float:
    """Pick the decoding distance threshold (0.3-1.2 px) whose samples at training-tile controls
    best match those tiles' mean road density, junction density and dead-end share (sum of
    relative errors); sets it on the model.

    Uses training tiles only, never evaluation data. Implements ENV-a1.
    """
    from gaiverse.world.road_metrics import road_stats

    idx = np.linspace(0, len(train) - 1, n).round().astype(int)
    controls = model.scaler.raw(train.attrs)[idx]
    cell = float(train.attrs["cell_m"][0])
    samples = np.concatenate([model.sample(controls[i:i + 32], seed=seed + i, steps=steps) for i in range(0, n, 32)])
    def summary(masks: np.ndarray) -> np.ndarray:
        st = road_stats(masks, cell)
        return np.array([st.road_density.mean(), st.intersection_density.mean(), np.nanmean(st.dead_end_share)])

    target = summary((train.tiles[idx] > 0).any(axis=1))
    best, best_err = model.config.road_threshold_px, float("inf")
    for threshold in np.arange(0.3, 1.21, 0.1):
        model.config.road_threshold_px = float(round(threshold, 2))
        got = summary(decode_roads(samples, model.config).any(axis=1))
        err = float(np.abs(got - target)[:2].dot(1 / np.maximum(target[:2], 1e-6)) + abs(got[2] - target[2]))
        log.info("road threshold %.1f px: density/junctions/dead ends %s (training %s) error %.3f",
                 threshold, np.round(got, 2), np.round(target, 2), err)
        if err < best_err:
            best, best_err = float(round(threshold, 2)), err
    model.config.road_threshold_px = best
    model.meta["road_calibration"] = {"threshold_px": best, "target": target.tolist(), "error": best_err}
    return best


def save_grid(samples: np.ndarray, path: Path, model_cfg: LayoutModelConfig, cols: int = 4) -> Path:
    """A PNG grid of samples (n, C, px, px): terrain as grey levels, roads as class labels."""
    n, _, px, _ = samples.shape
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * (px + 2), cols * (px + 2)), dtype=np.uint8)
    for i, s in enumerate(samples):
        if model_cfg.kind == "terrain":
            img = ((s[0] - s[0].min()) / max(float(np.ptp(s[0])), 1e-6) * 255).astype(np.uint8)
        else:
            img = road_mask_to_png(decode_roads(s, model_cfg)) * 120
        r, c = divmod(i, cols)
        grid[r * (px + 2):r * (px + 2) + px, c * (px + 2):c * (px + 2) + px] = img
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(path)
    return path
