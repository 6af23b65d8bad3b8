"""MODEL_CARD.md next to a NeRF interior checkpoint: data (with licence), parameters, training fit, held-out figures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

LICENCE_NOTE = ("Trained on sample data from naver/kapture, Copyright (c) 2020, NAVER Corp. (BSD-3-Clause); "
                "see data/multiview/LICENSE.md and data/multiview/licenses/kapture-BSD-3-Clause.txt.")


def _field_summary(parameters: dict[str, Any]) -> str:
    field = parameters.get("train", {}).get("field", {})
    if not field:
        return "see the checkpoint's config"
    density = field.get("density_resolution") or field["resolution"]
    return (f"density {field['density_components']} + appearance {field['appearance_components']} components, "
            f"coarse-to-fine {field['start_resolution']}→{field['resolution']} (density ≤ {density})")


def heldout_table(evaluations: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: one row per `gaiverse eval nerf` result (NeRF and both baselines, PSNR/SSIM, view offsets)."""
    if not evaluations:
        return []
    first = evaluations[0]
    lines = ["## Held-out views (`gaiverse eval nerf --holdout 1`, its defaults: "
             f"{first['config']['long_side']} px, {first['config']['steps']} steps, seed {first['config']['seed']})", "",
             f"Holdout rule: {first['holdout_rule']}. The reprojection baseline warps the two closest training photos "
             "with the depth the trained NeRF renders for them.", "",
             "| scene | held-out views | closest training camera (distance / parallax / rotation) | NeRF PSNR / SSIM "
             "| nearest-view PSNR / SSIM | reprojected PSNR / SSIM | NeRF beats both (PSNR, SSIM) | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for result in evaluations:
        offsets = "; ".join(f"{it['closest_training_camera']['distance']:.3g} / "
                            f"{it['closest_training_camera']['parallax_deg']:.1f}° / "
                            f"{it['closest_training_camera']['rotation_deg']:.1f}°" for it in result["items"])
        base = result["baselines"]
        beats = result["beats_both_baselines"]
        lines.append(
            f"| {result['scene']['name']} ({result['scene']['resolution'][0]}x{result['scene']['resolution'][1]}) "
            f"| {', '.join(it['image'] for it in result['items'])} | {offsets} "
            f"| {result['metrics']['psnr']:.2f} / {result['metrics']['ssim']:.3f} "
            f"| {base['nearest-view']['psnr']:.2f} / {base['nearest-view']['ssim']:.3f} "
            f"| {base['reprojected']['psnr']:.2f} / {base['reprojected']['ssim']:.3f} "
            f"| {'yes' if beats['psnr'] else 'no'}, {'yes' if beats['ssim'] else 'no'} | {result['train_seconds']:.0f} |")
    return ["", *lines]


def write_model_card(checkpoint: Path, parameters: dict[str, Any], trained: dict[str, Any],
                     evaluations: Sequence[dict[str, Any]] = (), notes: Sequence[str] = ()) -> Path:
    """Write MODEL_CARD.md beside `checkpoint`; `evaluations` are `gaiverse eval nerf` results (one per scene),
    `notes` extra Markdown lines for the limits section."""
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    curve = trained.get("curve", [])
    lines = [
        "# NeRF interior checkpoint", "",
        "Implements ENV-c1 (model) and feeds ENV-c2 (colour + depth maps, window atlases). Trained by",
        "`flows/train_interior.py` (Prefect flow `train-interior`) or `gaiverse interiors train`.", "",
        f"- file: `{checkpoint.name}` ({checkpoint.stat().st_size / 1e6:.2f} MB, sha256 {digest}…)",
        f"- model: TensoRF-VM field ({_field_summary(parameters)}), linear colour head,",
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
    lines += heldout_table(evaluations)
    lines += _limits(notes)
    path = checkpoint.parent / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


def _limits(notes: Sequence[str]) -> list[str]:
    return ["", "## Limits", "",
            "- 3–6 photos per scene: new viewpoints far from the cameras are blurry; use viewpoints near the",
            "  training cameras (the atlas does). The office scene is grayscale (T265 fisheye), so colour in",
            "  the atlases comes from the seeded colour variations, not from the capture.", *notes, ""]


def update_heldout_section(card: Path, evaluations: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> Path:
    """Replace the held-out table and limits of an existing MODEL_CARD.md (new `gaiverse eval nerf` results for a
    checkpoint that was not retrained); the card's data, parameters and training fit stay as written."""
    text = card.read_text()
    cut = min(i for i in (text.find("\n## Held-out views"), text.find("\n## Limits"), len(text)) if i >= 0)
    card.write_text("\n".join([text[:cut].rstrip("\n"), *heldout_table(evaluations), *_limits(notes)]))
    return card
