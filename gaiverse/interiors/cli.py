"""`gaiverse eval nerf` and `gaiverse interiors train|render|atlas`: NeRF interiors from posed photos (ENV-c1, ENV-c2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from gaiverse.cli_support import configure_logging, emit_json, fail

eval_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evaluate the NeRF on held-out real photos")
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="NeRF interiors: train on posed photos, render colour + depth, build window atlases")


THREADS_HELP = "torch CPU threads (1 is fastest on a loaded shared machine: no thread team waiting on a descheduled peer)"


def _threads(n: int = 1) -> None:
    import torch

    torch.set_num_threads(n)


@eval_app.command("nerf")
def eval_nerf_cmd(
    scene: Path = typer.Option(..., "--scene", help="Scene directory (kapture, COLMAP .txt/.bin or transforms.json)"),
    holdout: int = typer.Option(1, "--holdout", min=1,
                                help="Camera positions held out (closest to the camera centroid; every frame of a "
                                     "held-out position is scored, none of them trains)"),
    long_side: Optional[int] = typer.Option(None, "--long-side", min=16, max=2048,
                                            help="Longer image edge for training/scoring [default: evaluate.DEFAULT_LONG_SIDE]"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=100000,
                                        help="Training steps [default: evaluate.DEFAULT_STEPS]"),
    curve_every: int = typer.Option(0, "--curve-every", min=0, max=100000,
                                    help="Also render the held-out views every N steps: PSNR vs training time and "
                                         "the time to reach each baseline (0: off)"),
    seed: int = typer.Option(0, "--seed", min=0),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: int = typer.Option(1, "--threads", min=1, max=2, help=THREADS_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write target|nerf|nearest|reprojected PNGs + depth .npy"),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print the JSON result (always on)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train on all but --holdout camera positions of --scene; PSNR/SSIM of the held-out photos vs two image baselines."""
    from gaiverse.interiors.evaluate import DEFAULT_LONG_SIDE, DEFAULT_STEPS, eval_nerf
    from gaiverse.interiors.poses import SceneError

    configure_logging(verbose)
    if device not in ("auto", "cpu", "cuda"):
        fail(f"`--device` must be auto, cpu or cuda, got {device!r}")
    _threads(threads)
    try:
        result = eval_nerf(scene, holdout=holdout, long_side=long_side or DEFAULT_LONG_SIDE,
                           steps=steps or DEFAULT_STEPS, seed=seed, device=device, out_dir=out, curve_every=curve_every)
    except (SceneError, ValueError) as err:
        fail(err)
    emit_json(result)


@app.command("train")
def train_cmd(
    scene: Path = typer.Option(..., "--scene", help="Scene directory (any supported pose format)"),
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write (.pt)"),
    long_side: int = typer.Option(128, "--long-side", min=16, max=2048),
    steps: int = typer.Option(800, "--steps", min=1, max=100000),
    seed: int = typer.Option(0, "--seed", min=0),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: int = typer.Option(1, "--threads", min=1, max=2, help=THREADS_HELP),
    depth_weight: float = typer.Option(0.05, "--depth-weight", min=0.0, max=10.0,
                                       help="Weight of the sparse-point depth prior"),
    depth_rays: int = typer.Option(64, "--depth-rays", min=0, max=4096, help="Depth-prior rays per step (0: off)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a NeRF on every view of --scene and write the checkpoint; prints its path and final PSNR as JSON."""
    from gaiverse.interiors.poses import SceneError, load_scene
    from gaiverse.interiors.training import TrainConfig, save_checkpoint, train_nerf

    configure_logging(verbose)
    if out.suffix != ".pt":
        fail(f"`--out` must end in .pt, got {out}")
    _threads(threads)
    try:
        loaded = load_scene(scene, long_side=long_side)
        config = TrainConfig(steps=steps, depth_weight=depth_weight, depth_rays=depth_rays)
        result = train_nerf(loaded, config, seed=seed, device=device)
    except (SceneError, ValueError) as err:
        fail(err)
    save_checkpoint(result, loaded, out, extra={"seed": seed, "long_side": long_side})
    emit_json({"checkpoint": str(out), "final_train_psnr": result.curve[-1][1], "seconds": round(result.seconds, 2)})


@app.command("render")
def render_cmd(
    out: Path = typer.Option(..., "--out", help="Directory for colour.png, depth.png and depth.json"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="NeRF checkpoint (default: shipped)"),
    view: int = typer.Option(0, "--view", min=0, help="Training camera to start from"),
    size: int = typer.Option(256, "--size", min=16, max=2048, help="Square output edge in pixels"),
    yaw: float = typer.Option(0.0, "--yaw", min=-90, max=90, help="Turn the camera (degrees, + right)"),
    pitch: float = typer.Option(0.0, "--pitch", min=-60, max=60, help="Tilt the camera (degrees, + up)"),
    dolly: float = typer.Option(0.0, "--dolly", help="Move along the view axis (world units)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Render colour + metric depth from a viewpoint derived from a training camera."""
    from gaiverse.interiors.atlas import Viewpoint, render_maps, write_maps
    from gaiverse.interiors.training import DEFAULT_CHECKPOINT, load_checkpoint

    configure_logging(verbose)
    _threads()
    try:
        model, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
        if view >= len(meta["images"]):
            fail(f"`--view` must be < {len(meta['images'])} (cameras in the checkpoint), got {view}")
        maps = render_maps(model, meta, Viewpoint(view=view, yaw_deg=yaw, pitch_deg=pitch, dolly=dolly), size)
    except (FileNotFoundError, ValueError) as err:
        fail(err)
    emit_json({k: str(v) if isinstance(v, Path) else v for k, v in write_maps(maps, out, "view").items()})


@app.command("atlas")
def atlas_cmd(
    out: Path = typer.Option(..., "--out", help="Directory for the atlas PNGs and atlas.json"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="NeRF checkpoint (default: shipped)"),
    rooms: int = typer.Option(6, "--rooms", min=1, max=64, help="Room variants (viewpoints x colour variations)"),
    size: int = typer.Option(256, "--size", min=16, max=2048),
    seed: int = typer.Option(0, "--seed", min=0),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Build an interior-mapping atlas (colour + normalised depth per room, metric ranges in atlas.json)."""
    from gaiverse.interiors.atlas import build_atlas
    from gaiverse.interiors.training import DEFAULT_CHECKPOINT

    configure_logging(verbose)
    _threads()
    try:
        path = build_atlas(checkpoint or DEFAULT_CHECKPOINT, out, rooms=rooms, size=size, seed=seed)
    except (FileNotFoundError, ValueError) as err:
        fail(err)
    emit_json(json.loads(path.read_text()))
