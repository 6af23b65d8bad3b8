"""Training flow of the layout diffusion models: seeded training on the shipped real tiles, then a loss curve,
a sample grid, the held-out loss and a model card, each attached to the run as an artifact.

train (gaiverse.world.training.train_layout: tiles -> held-out split -> DDPM training ->
save_pretrained + samples.png) -> evaluate (denoising loss on held-out regions) -> report
(loss-curve PNG, sample grid PNG, metrics table) -> model card. Same parameters and seed give
the same weights on the same machine. Implements ENV-a1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from pydantic import Field

from gaiverse.world.training import DEFAULT_CHECKPOINT, PRESETS, PROJECT_ROOT, train_layout
from tasks.artifacts import png_artifact, table_artifact
from tasks.common import current_run_ids, flow_hooks, gaiverse_task

RUNS_DIR = PROJECT_ROOT / "checkpoints" / "layout-runs"
"""Where training runs write by default (the shipped checkpoint in checkpoints/layout is never overwritten implicitly)."""


@gaiverse_task(cache="none", retries=0, timeout_seconds=3600)
def train(preset: str, out_dir: str, steps: int, batch_size: int | None, seed: int, preview_steps: int) -> str:
    """Train the preset and write its checkpoint (deterministic: not retried, a failure is a bug or bad input)."""
    path = train_layout(preset, out_dir, steps=steps, batch_size=batch_size, seed=seed, threads=None,
                        preview_steps=preview_steps)
    return str(path)


@gaiverse_task(cache="none", retries=0)
def evaluate(preset: str, checkpoint: str, seed: int) -> dict[str, float]:
    """Training loss at the end and the denoising loss on tiles of the held-out regions."""
    from gaiverse.world.layout_model import LayoutDiffusion
    from gaiverse.world.train_report import heldout_loss

    _, data_cfg, _ = PRESETS[preset]
    model = LayoutDiffusion.from_pretrained(checkpoint)
    _, held = data_cfg.tiles().split(data_cfg.holdout_regions)
    curve = json.loads((Path(checkpoint) / "loss_curve.json").read_text())
    metrics = {"final_train_loss": float(curve[-1][1]), "first_train_loss": float(curve[0][1])}
    if len(held):
        metrics["heldout_loss"] = heldout_loss(model, held, seed=seed)
        metrics["heldout_tiles"] = float(len(held))
    return metrics


@gaiverse_task(cache="none", retries=2)
def report(preset: str, checkpoint: str, metrics: dict[str, float], parameters: dict[str, Any]) -> str:
    """Loss curve and sample grid as image artifacts, metrics as a table, and the run's model card."""
    from gaiverse.world.train_report import loss_curve_png, write_run_card

    out = Path(checkpoint)
    curve = [tuple(p) for p in json.loads((out / "loss_curve.json").read_text())]
    table_artifact("layout-loss-curve", [{"step": s, "loss": round(v, 6)} for s, v in curve],
                   title=f"{preset}: training loss")
    table_artifact("layout-metrics", [{"metric": k, "value": v} for k, v in metrics.items()],
                   title=f"{preset}: metrics (held-out regions: {', '.join(PRESETS[preset][1].holdout_regions)})")
    png_artifact("layout-loss-plot", loss_curve_png(curve, out / "loss_curve.png").read_bytes(),
                 kind="training/plot", description=f"{preset} loss curve")
    png_artifact("layout-samples", (out / "samples.png").read_bytes(), kind="training/samples",
                 description=f"{preset} samples at training-tile controls")
    return str(write_run_card(out, preset, parameters, metrics))


@flow(name="train-layout", description="Train a layout diffusion preset on the shipped real data (seeded).",
      **flow_hooks())
def train_layout_flow(
    preset: Literal["terrain", "roads"] = "terrain",
    steps: Annotated[int, Field(ge=1, le=20000)] = 300,
    batch_size: Annotated[int | None, Field(ge=1, le=256)] = None,
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
    preview_steps: Annotated[int, Field(ge=2, le=100)] = 10,
    out_dir: Annotated[str | None, Field(max_length=500)] = None,
) -> dict[str, Any]:
    """Train `preset` for `steps` optimiser steps and write checkpoint + model card to `out_dir`
    (default checkpoints/layout-runs/<preset>-seed<seed>; pass checkpoints/layout/<preset> to
    replace the shipped one, which the nightly world rebuild then picks up)."""
    out = Path(out_dir) if out_dir else RUNS_DIR / f"{preset}-seed{seed}"
    if out.resolve().is_relative_to(DEFAULT_CHECKPOINT.resolve()) and out.name != preset:
        raise ValueError(f"`out_dir` inside {DEFAULT_CHECKPOINT} must be {DEFAULT_CHECKPOINT / preset}, got {out}")
    parameters = {"preset": preset, "steps": steps, "batch_size": batch_size, "seed": seed,
                  "preview_steps": preview_steps, "out_dir": str(out)}
    checkpoint = train(preset, str(out), steps, batch_size, seed, preview_steps)
    metrics = evaluate(preset, checkpoint, seed)
    card = report(preset, checkpoint, metrics, parameters)
    get_run_logger().info("trained %s: %s", preset, metrics)
    flow_run_id, _ = current_run_ids()
    return {"checkpoint": checkpoint, "model_card": card, "metrics": metrics, "flow_run_id": flow_run_id}
