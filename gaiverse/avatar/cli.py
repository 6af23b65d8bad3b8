"""Typer sub-apps for avatars: ``eval avatar | avatar-policy | avatar-lipsync`` and ``avatar train-policy | decide |
train-lipsync | lipsync-targets`` (mounted by gaiverse.cli)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from gaiverse.cli_support import configure_logging, fail

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Personalized avatars")
eval_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evaluate avatar models")


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@eval_app.command("avatar-policy")
def eval_avatar_policy_cmd(
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy directory (default checkpoints/avatar_policy)"),
    users: int = typer.Option(1000, "--users", min=10, help="Held-out simulated users"),
    seed: int = typer.Option(900_001, "--seed", help="Seed of the held-out population"),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print the JSON result (always on)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Satisfaction of the PPO decision policy vs the heuristic baseline on held-out users (AV-b3)."""
    from gaiverse.avatar.evaluate import evaluate_avatar_policy

    configure_logging(verbose)
    try:
        _emit(evaluate_avatar_policy(policy, users=users, seed=seed))
    except FileNotFoundError as err:
        fail(str(err))


@app.command("train-policy")
def train_policy_cmd(
    out: Path = typer.Option(Path("checkpoints/avatar_policy"), "--out", help="Directory for policy.pt + policy.json"),
    iterations: int = typer.Option(250, "--iterations", min=1),
    batch_users: int = typer.Option(1024, "--batch-users", min=8),
    seed: int = typer.Option(0, "--seed"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the avatar decision policy with PPO in the satisfaction environment (progress bar)."""
    from rich.progress import Progress

    from gaiverse.avatar.policy_training import PolicyTrainConfig, train_policy

    configure_logging(verbose)
    with Progress(transient=True) as bar:
        task = bar.add_task("PPO", total=iterations)
        policy, curve = train_policy(PolicyTrainConfig(iterations=iterations, batch_users=batch_users, seed=seed),
                                     progress=lambda i, r: bar.update(task, advance=1, description=f"PPO reward {r:.3f}"))
    policy.meta["curve"] = [round(c, 4) for c in curve]
    path = policy.save(out)
    _emit({"policy": str(path), "reward_first": curve[0], "reward_last": curve[-1]})


@app.command("decide")
def decide_cmd(
    wishes: str = typer.Argument(..., help='What the user said, e.g. "blue hair and a deeper voice"'),
    skin: str = typer.Option("#c68c6a", "--skin", help="Measured skin colour (hex)"),
    f0: float = typer.Option(150.0, "--f0", min=50.0, max=500.0, help="Measured median F0 in Hz"),
    height: Optional[float] = typer.Option(None, "--height", min=1.0, max=2.5, help="Measured height in m"),
    policy: Optional[Path] = typer.Option(None, "--policy"),
) -> None:
    """Show the avatar parameters the policy and the heuristic choose for one capture + wishes."""
    import numpy as np

    from gaiverse.avatar.colour import srgb_to_lab
    from gaiverse.avatar.decision import DEFAULT_POLICY_DIR, CaptureAnalysis, HeuristicDecider, PolicyDecider
    from gaiverse.avatar.preferences import parse_preferences

    if len(skin) != 7 or not skin.startswith("#"):
        fail(f"--skin must be a hex colour like #c68c6a, got {skin!r}")
    try:
        rgb = np.array([int(skin[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    except ValueError:
        fail(f"--skin must be a hex colour like #c68c6a, got {skin!r}")
    analysis = CaptureAnalysis(skin_lab=tuple(srgb_to_lab(rgb)), f0_median_hz=f0, height_m=height)
    prefs = parse_preferences(wishes)
    try:
        chosen = PolicyDecider.load(policy or DEFAULT_POLICY_DIR).decide(analysis, prefs)
    except FileNotFoundError as err:
        fail(str(err))
    _emit({"parsed": prefs.matched, "policy": chosen.to_json(),
           "heuristic": HeuristicDecider().decide(analysis, prefs).to_json()})


@app.command("train-lipsync")
def train_lipsync_cmd(
    targets: Path = typer.Option(Path("data/avatar/lipsync_grid_targets.npz"), "--targets",
                                 help="Cached mouth targets + audio (.npz from `avatar lipsync-targets`)"),
    out: Path = typer.Option(Path("checkpoints/lipsync"), "--out", help="Directory for lipsync.pt, fold_*.pt, metrics.json"),
    steps: int = typer.Option(400, "--steps", min=1, help="Optimiser steps per model (3 folds + the final model)"),
    seed: int = typer.Option(0, "--seed"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the audio-to-blendshape lip-sync model with leave-one-clip-out evaluation vs the energy baseline."""
    from rich.console import Console
    from rich.progress import Progress

    from gaiverse.avatar.lipsync_training import LipsyncTrainConfig, run_training

    configure_logging(verbose)
    if not targets.is_file():
        fail(f"--targets {targets} does not exist (make it with `gaiverse avatar lipsync-targets`)")
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("lip-sync", total=4 * steps)
        summary = run_training(targets, out, LipsyncTrainConfig(steps=steps, seed=seed),
                               progress=lambda fold, s, loss: bar.update(
                                   task, advance=1, description=f"{fold} loss {loss:.3f}"))
    _emit(summary)


@app.command("lipsync-targets")
def lipsync_targets_cmd(
    videos: list[Path] = typer.Argument(..., help="Talking-face videos with sound"),
    out: Path = typer.Option(Path("data/avatar/lipsync_grid_targets.npz"), "--out", help="Where to cache the targets"),
    method: str = typer.Option("auto", "--method", help="auto (MediaPipe if installed) | mediapipe | opencv"),
) -> None:
    """Measure the mouth in every frame of the videos and cache targets + 16 kHz audio as one .npz."""
    from gaiverse.avatar.lipsync_targets import extract_targets, save_targets

    try:
        clips = [extract_targets(v, method=method) for v in videos]
    except ValueError as err:
        fail(str(err))
    save_targets(out, clips)
    _emit({"out": str(out), "clips": [{"name": c.name, "frames": c.n_frames, "method": c.method} for c in clips]})


@eval_app.command("avatar")
def eval_avatar_cmd(
    video: list[Path] = typer.Option(..., "--video", help="Talking-face video with sound (repeatable)"),
    build_fraction: float = typer.Option(0.5, "--build-fraction", min=0.2, max=0.8,
                                         help="Share of each video the avatar is built from; the rest is scored"),
    decider: str = typer.Option("policy", "--decider", help="policy | heuristic (who sets the avatar parameters)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write both avatars' .glb, voice .wav and mouth .npy here"),
    json_out: bool = typer.Option(False, "--json/--no-json", help="Print the EVAL.md JSON instead of the table"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Match of the avatar built from a video with the person in it (face, colours, voice, lip-sync) vs a
    generic avatar."""
    from gaiverse.avatar.match_eval import MatchConfig, evaluate_avatar_match, print_table

    configure_logging(verbose)
    if decider not in ("policy", "heuristic"):
        fail(f"--decider must be policy or heuristic, got {decider!r}")
    try:
        result = evaluate_avatar_match(video, MatchConfig(build_fraction=build_fraction, decider=decider), out)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    if json_out:
        _emit(result)
    else:
        print_table(result)


@eval_app.command("avatar-lipsync")
def eval_avatar_lipsync_cmd(
    video: list[Path] = typer.Option(..., "--video", help="Talking-face video with sound (repeatable)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="lipsync.pt or its directory"),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print the JSON result (always on)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Lip-sync of the shipped model vs the energy-driven mouth on real video (correlation, MAE, A/V offset)."""
    from gaiverse.avatar.lipsync_eval import evaluate_lipsync

    configure_logging(verbose)
    try:
        _emit(evaluate_lipsync(video, checkpoint))
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
