"""MODEL_CARD.md next to a NeRF interior checkpoint: data (with licence), parameters, training fit, held-out figures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

LICENCE_NOTE = ("Trained on sample data from naver/kapture, Copyright (c) 2020, NAVER Corp. (BSD-3-Clause); "
                "see data/multiview/LICENSE.md and data/multiview/licenses/kapture-BSD-3-Clause.txt.")


def write_model_card(checkpoint: Path, parameters: dict[str, Any], trained: dict[str, Any],
                     heldout: dict[str, Any] | None = None) -> Path:
    """Write MODEL_CARD.md beside `checkpoint`; `heldout` is a `gaiverse eval nerf` result for the same scene."""
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    curve = trained.get("curve", [])
    lines = [
        "# NeRF interior checkpoint", "",
        "Implements ENV-c1 (model) and feeds ENV-c2 (colour + depth maps, window atlases). Trained by",
        "`flows/train_interior.py` (Prefect flow `train-interior`) or `gaiverse interiors train`.", "",
        f"- file: `{checkpoint.name}` ({checkpoint.stat().st_size / 1e6:.2f} MB, sha256 {digest}…)",
        "- model: TensoRF-VM field (density 8 + appearance 12 components, coarse-to-fine 32→96), linear colour head,",
        "  contracted space (mip-NeRF 360), occupancy grid 64³, per-image exposure, sparse-depth prior",
        f"- data: `{parameters.get('scene_dir', '')}` ({trained.get('images', '?')} images, "
        f"{trained.get('points', '?')} sparse points, {trained.get('points_source', '?')})",
        f"- licence of the data: {LICENCE_NOTE}", "",
        "## Parameters", "", "```json", json.dumps(parameters, indent=1), "```", "",
        "## Training fit", "",
        f"- {len(curve)} log points; PSNR of training batches {curve[0][1]:.2f} → {curve[-1][1]:.2f} dB"
        if curve else "- no curve",
        f"- training time {trained.get('seconds', 0):.0f} s on this machine (shared 2-core CPU)", "",
    ]
    for row in trained.get("views", []):
        lines.append(f"- {row['image']}: PSNR {row['psnr_train_view']} dB (seen in training)")
    if heldout:
        lines += ["", "## Held-out views (`gaiverse eval nerf --holdout 1`: same model, its default settings, trained on",
                  f"the other views at {heldout['config']['long_side']} px for {heldout['config']['steps']} steps)", "",
                  f"- NeRF PSNR {heldout['metrics']['psnr']:.2f} dB, SSIM {heldout['metrics']['ssim']:.3f}",
                  *[f"- {name}: PSNR {b['psnr']:.2f} dB, SSIM {b['ssim']:.3f}" for name, b in heldout['baselines'].items()]]
    lines += ["", "## Limits", "",
              "- 3–6 photos per scene: new viewpoints far from the cameras are blurry; use viewpoints near the",
              "  training cameras (the atlas does). The office scene is grayscale (T265 fisheye), so colour in",
              "  the atlases comes from the seeded colour variations, not from the capture.", ""]
    path = checkpoint.parent / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
