"""Training flow of the NeRF interiors: seeded training on a posed photo set, PSNR curve and rendered views as
artifacts, checkpoint + model card.

train (gaiverse.interiors: load any pose format -> undistort/resize -> TensoRF-VM NeRF) -> report (PSNR curve
table, photo/colour/depth strip, per-view fit) -> model card next to the checkpoint. Same parameters and seed
give the same weights on the same machine and device. Implements ENV-c1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from pydantic import Field

from gaiverse.interiors.training import DEFAULT_CHECKPOINT, PROJECT_ROOT
from tasks.common import current_run_ids, flow_hooks
from tasks.interiors import report_interior, train_interior

DEFAULT_SCENE = PROJECT_ROOT / "data" / "multiview" / "kapture_indoor_t265_fisheye"
RUNS_DIR = PROJECT_ROOT / "checkpoints" / "interior-runs"
"""Where runs write by default (the shipped checkpoints/interior/nerf.pt is only replaced when asked)."""


@flow(name="train-interior", description="Train the NeRF interior model on posed photos (seeded).", **flow_hooks())
def train_interior_flow(
    scene_dir: Annotated[str, Field(max_length=500)] = str(DEFAULT_SCENE),
    steps: Annotated[int, Field(ge=1, le=100000)] = 800,
    long_side: Annotated[int, Field(ge=16, le=2048)] = 128,
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    checkpoint: Annotated[str | None, Field(max_length=500)] = None,
) -> dict[str, Any]:
    """Train on every view of `scene_dir` (kapture, COLMAP or transforms.json) and write `checkpoint`
    (default checkpoints/interior-runs/<scene>-seed<seed>/nerf.pt; pass checkpoints/interior/nerf.pt to
    replace the shipped one)."""
    if not Path(scene_dir).exists():
        raise ValueError(f"`scene_dir` {scene_dir} does not exist")
    out = Path(checkpoint) if checkpoint else RUNS_DIR / f"{Path(scene_dir).name}-seed{seed}" / DEFAULT_CHECKPOINT.name
    if out.suffix != ".pt":
        raise ValueError(f"`checkpoint` must end in .pt, got {out}")
    parameters = {"scene_dir": scene_dir, "steps": steps, "long_side": long_side, "seed": seed, "device": device,
                  "checkpoint": str(out)}
    trained = train_interior(scene_dir, str(out), long_side, steps, seed, device)
    card = report_interior(str(out), scene_dir, long_side, trained, parameters)
    get_run_logger().info("trained interior NeRF on %s: final PSNR %.2f dB", scene_dir, trained["curve"][-1][1])
    flow_run_id, _ = current_run_ids()
    return {"checkpoint": str(out), "model_card": card, "final_psnr": trained["curve"][-1][1],
            "seconds": trained["seconds"], "flow_run_id": flow_run_id}
