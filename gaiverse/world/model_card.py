"""Model card of the layout checkpoints, written from the checkpoints' metadata and eval JSON results.

Implements ENV-a1 (documented, reproducible training on real data).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _table(result: dict, metric_names: list[str], baseline: str, extra: dict[str, dict] | None = None) -> str:
    cols = {"model": result["metrics"], baseline: result["baseline"], "real vs real": result["reference"]}
    cols.update(extra or {})
    lines = ["| metric (lower is better) | " + " | ".join(cols) + " | model < " + baseline + " |",
             "|---" * (len(cols) + 2) + "|"]
    for name in metric_names:
        vals = [c.get(name) for c in cols.values()]
        cells = ["—" if v is None else f"{v:.4g}" for v in vals]
        better = vals[0] is not None and vals[1] is not None and vals[0] < vals[1]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if better else 'no'} |")
    return "\n".join(lines)


def _meta(directory: Path) -> dict:
    return json.loads((directory / "layout_config.json").read_text())


def write_model_card(checkpoint: str | Path, terrain_eval: dict, roads_eval: dict,
                     commands: dict[str, str], notes: str = "") -> Path:
    """Write <checkpoint>/model_card.md from both sub-checkpoints and their eval results."""
    checkpoint = Path(checkpoint)
    parts = ["# Layout diffusion checkpoints (terrain + roads)", "",
             "Implements ENV-a1 / ENV-a2. Two conditioned diffusers `UNet2DModel`s (DDPM training, DDIM "
             "sampling with classifier-free guidance on scalar controls), saved with `save_pretrained` "
             "(`unet/`, `control_encoder/`, `scheduler/`, `layout_config.json`).", ""]
    if notes:
        parts += [notes, ""]
    for kind, result in (("terrain", terrain_eval), ("roads", roads_eval)):
        parts += card_section(checkpoint, kind, result, commands)
    path = checkpoint / "model_card.md"
    path.write_text("\n".join(parts))
    log.info("wrote %s", path)
    return path


def card_section(checkpoint: str | Path, kind: str, result: dict, commands: dict[str, str]) -> list[str]:
    """Lines of one model's card section ("## terrain" / "## roads") from its metadata and eval result."""
    checkpoint, baseline = Path(checkpoint), {"terrain": "fbm", "roads": "grid"}[kind]
    parts: list[str] = []
    doc = _meta(checkpoint / kind)
    meta, cfg = doc["meta"], doc["config"]
    files = ", ".join(f"`{f['path']}` ({f['region']})" for f in meta["training_files"])
    parts += [f"## {kind}", "",
              f"- Training data: {meta['n_tiles']} tiles of {cfg['tile_px']} px from {files}; "
              f"held out: {', '.join(meta['holdout_regions'])}.",
              f"- Controls: {', '.join(doc['scaler']['names'])} (standardised; condition dropped with "
              f"p={cfg['cond_dropout']}); guidance scale {cfg['guidance_scale']}, {cfg['ddim_steps']} DDIM steps.",
              f"- Model: UNet widths {cfg['block_out_channels']}, prediction `{cfg['prediction_type']}`, "
              f"{cfg['train_steps']} steps x batch {cfg['batch_size']}, lr {cfg['learning_rate']}, seed {cfg['seed']}, "
              f"EMA {cfg['ema_decay']}" + (f", road encoding `{cfg['road_encoding']}`" if kind == "roads" else "") + ".",
              f"- Trained in {meta['train_seconds']:.0f} s on {meta['device']} ({meta['torch_threads']} torch threads, "
              f"shared 2-core machine); final loss {meta['loss_curve'][-1][1]:.4f} (curve in `{kind}/loss_curve.json`)"
              + (f"; fine-tuned from a `{meta['init']['preset']}` checkpoint trained in "
                 f"{meta['init']['train_seconds']:.0f} s" if meta.get("init") else "") + ".",
              f"- Reproduce: `{commands[kind]}`", f"- Evaluate: `{commands[kind + '_eval']}`", "",
              f"Held-out evaluation ({result['real_tiles']} real tiles from {', '.join(result['data'])}; "
              f"n={result['n']} samples; {result['seconds']:.0f} s). The model beats the {baseline} baseline on "
              f"{result['model_beats_baseline']['count']} of {result['model_beats_baseline']['of']} statistics.", ""]
    extra = {"random": result["baselines"]["random"]} if kind == "roads" else {"real raw": result["reference_raw"]}
    if kind == "terrain" and "fbm_steepness" in result.get("baselines", {}):
        extra = {"fbm + steepness": result["baselines"]["fbm_steepness"], **extra}
        wins = result["model_beats_fbm_steepness"]
        parts[-2] += (f" It beats fBm given each tile's steepness too (spectral exponent matched per tile) on "
                      f"{wins['count']} of {wins['of']}.")
    parts += [_table(result, list(result["lower_is_better"]), baseline, extra), ""]
    parts += [f"Diversity (mean pairwise RMS): {json.dumps(result['diversity'])}. "
              f"Memorisation: {json.dumps(result['memorisation'])}.", ""]
    return parts
