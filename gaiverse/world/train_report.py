"""What a layout training run reports: held-out denoising loss, a loss-curve image, and the run's model card.

The training itself is `training.train_layout`; the training flow (flows/train_layout.py)
adds these so every run documents its data, its exact parameters and a metric on tiles of
regions it never saw. Implements ENV-a1 (reproducible, documented training on real data).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from gaiverse.world.layout_model import LayoutDiffusion, encode_tiles
from gaiverse.world.tiles import TileSet

log = logging.getLogger(__name__)


@torch.no_grad()
def heldout_loss(model: LayoutDiffusion, tiles: TileSet, n: int = 64, seed: int = 0) -> float:
    """Mean DDPM training loss (the model's prediction type) on up to n held-out tiles at seeded noise levels."""
    if len(tiles) == 0:
        raise ValueError("no held-out tiles to score")
    gen = torch.Generator("cpu").manual_seed(seed)
    idx = np.linspace(0, len(tiles) - 1, min(n, len(tiles))).round().astype(int)
    x0 = torch.from_numpy(encode_tiles(tiles.tiles[idx], model.config)).to(model.device)
    cond = torch.from_numpy(model.scaler(model.scaler.raw({k: v[idx] for k, v in tiles.attrs.items()}))).to(model.device)
    noise = torch.randn(x0.shape, generator=gen).to(model.device)
    t = torch.randint(0, model.config.num_train_timesteps, (len(idx),), generator=gen).to(model.device)
    emb = model.encoder(cond, torch.ones(len(idx), device=model.device))
    pred = model.unet(model.scheduler.add_noise(x0, noise, t), t, class_labels=emb).sample
    kind = model.config.prediction_type
    target = noise if kind == "epsilon" else x0 if kind == "sample" else model.scheduler.get_velocity(x0, noise, t)
    return float(torch.nn.functional.mse_loss(pred, target))


def loss_curve_png(curve: list[tuple[int, float]], path: Path, size: tuple[int, int] = (480, 240)) -> Path:
    """A plain line plot of (step, loss) with a log-scaled loss axis."""
    w, h = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    if curve:
        steps = np.array([s for s, _ in curve], dtype=float)
        loss = np.log10(np.maximum([l for _, l in curve], 1e-9))
        sx = (steps - steps.min()) / max(np.ptp(steps), 1) * (w - 60) + 50
        sy = h - 30 - (loss - loss.min()) / max(np.ptp(loss), 1e-9) * (h - 50)
        draw.line(list(zip(sx, sy)), fill=(30, 90, 200), width=2)
        draw.text((4, 4), f"loss {curve[0][1]:.3g} -> {curve[-1][1]:.3g} (log scale)", fill="black")
        draw.text((50, h - 18), f"step {int(steps.min())}..{int(steps.max())}", fill="black")
    image.save(path)
    return path


def write_run_card(out_dir: Path, preset: str, parameters: dict[str, Any], metrics: dict[str, float]) -> Path:
    """model_card.md of one training run: data files (sha256), held-out regions, parameters, metrics."""
    doc = json.loads((out_dir / "layout_config.json").read_text())
    meta = doc.get("meta", {})
    lines = [f"# Layout diffusion checkpoint: {preset}", "",
             "Implements ENV-a1. Trained by `flows/train_layout.py` (Prefect flow `train-layout`).", "",
             "## Data (real, shipped in data/)", ""]
    lines += [f"- `{f['path']}` (region {f['region']}, sha256 {f['sha256'][:16]}…)" for f in meta.get("training_files", [])]
    lines += ["", f"Held-out regions (never trained on): {', '.join(meta.get('holdout_regions', [])) or 'none'}",
              f"Training tiles: {meta.get('n_tiles')}", "", "## Exact parameters", "", "```json",
              json.dumps(parameters, indent=1, sort_keys=True), "```", "", "## Metrics", "",
              "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.5g} |" for k, v in metrics.items()]
    lines += ["", f"Training time {meta.get('train_seconds')} s on {meta.get('device')} "
              f"({meta.get('torch_threads')} threads).", ""]
    path = out_dir / "model_card.md"
    path.write_text("\n".join(lines))
    return path
