"""NeRF interiors benchmark (issue 5, ENV-c1/c2): training time until the held-out PSNR reaches the nearest-view
baseline's, render time of a 256x256 colour + depth map (vs the reprojection baseline's warp), asset sizes.

Time to baseline: the scene minus its held-out view (same protocol as `gaiverse eval nerf`) is trained and the
held-out view rendered every `--check-every` steps; the clock (training only, the checks excluded) stops at
the first check where the NeRF's PSNR reaches the nearest-view baseline's. Usage:
    nice -n 10 python benchmarks/interiors.py [--quick] [--threads 2] [--max-steps 600]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks.report import Report  # noqa: E402

ROOT = _HERE.parent
SCENES = ["kapture_maupertuis_facade", "kapture_indoor_t265_fisheye", "kapture_maupertuis_aerial"]


def bench_time_to_baseline(report: Report, scene_name: str, long_side: int, max_steps: int, check_every: int) -> None:
    from gaiverse.interiors.evaluate import holdout_indices, nearest_view, psnr
    from gaiverse.interiors.poses import load_scene
    from gaiverse.interiors.render import render_view
    from gaiverse.interiors.training import TrainConfig, train_nerf

    scene = load_scene(ROOT / "data" / "multiview" / scene_name, long_side=long_side)
    test = holdout_indices(scene, 1)[0]
    train = [i for i in range(len(scene)) if i != test]
    nearest = nearest_view(scene, test, train)
    target = psnr(scene.images[nearest], scene.images[test], scene.masks[test])
    state = {"check_s": 0.0, "reached": None, "best": -1.0}

    def check(step: int, _train_psnr: float, model) -> bool:
        started = time.perf_counter()
        view = render_view(model, scene.K[test], scene.c2w[test], scene.hw)
        value = psnr(view.rgb, scene.images[test], scene.masks[test])
        state["best"] = max(state["best"], value)
        state["check_s"] += time.perf_counter() - started
        if value >= target and state["reached"] is None:
            state["reached"] = step
        return state["reached"] is not None

    started = time.perf_counter()
    result = train_nerf(scene.subset(train), TrainConfig(steps=max_steps, log_every=check_every), seed=0,
                        on_log=check)
    seconds = time.perf_counter() - started - state["check_s"]
    reached = state["reached"]
    report.add(f"{scene_name}: training time to the nearest-view PSNR ({target:.2f} dB)"
               + ("" if reached else f" — not reached in {max_steps} steps, best {state['best']:.2f} dB"),
               [seconds], unit="s", scale=1, steps=reached or max_steps, reached=bool(reached),
               baseline_psnr=round(target, 3), best_psnr=round(state["best"], 3), long_side=long_side,
               train_seconds_total=round(result.seconds, 2))


def bench_render(report: Report, repeats: int) -> None:
    from gaiverse.interiors.atlas import Viewpoint, render_maps, viewpoint_camera
    from gaiverse.interiors.evaluate import reproject
    from gaiverse.interiors.training import DEFAULT_CHECKPOINT, load_checkpoint

    model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    render_maps(model, meta, Viewpoint(view=0), 64)  # warm-up
    samples, warp = [], []
    for i in range(repeats):
        viewpoint = Viewpoint(view=i % len(meta["images"]), yaw_deg=3.0 * i)
        started = time.perf_counter()
        maps = render_maps(model, meta, viewpoint, 256)
        samples.append(time.perf_counter() - started)
        K, c2w, _ = viewpoint_camera(meta, viewpoint, 256)
        K2, c2w2, _ = viewpoint_camera(meta, Viewpoint(view=viewpoint.view, yaw_deg=viewpoint.yaw_deg + 5), 256)
        started = time.perf_counter()
        reproject(maps.colour, maps.depth, K, c2w, K2, c2w2, (256, 256))
        warp.append(time.perf_counter() - started)
    report.add("render 256x256 colour + depth map (shipped checkpoint)", samples, unit="ms",
               baseline=warp, baseline_name="reprojection warp 256²", device=str(next(model.parameters()).device))


def bench_sizes(report: Report) -> None:
    def size(path: Path) -> float:
        return float(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else
                     path.stat().st_size if path.exists() else 0)

    for label, path in [("checkpoint checkpoints/interior/", ROOT / "checkpoints" / "interior"),
                        ("atlases data/interiors/", ROOT / "data" / "interiors"),
                        ("photos data/multiview/", ROOT / "data" / "multiview")]:
        report.add(f"asset size: {label}", [size(path)], unit="MB", scale=1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scene, fewer steps and repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded machine)")
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--long-side", type=int, default=96)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report = Report("interiors", "torch", "numpy", "opencv-contrib-python-headless")
    report.meta.update({"torch_threads": args.threads, "long_side": args.long_side})
    for scene in SCENES[:1] if args.quick else SCENES:
        bench_time_to_baseline(report, scene, args.long_side, 100 if args.quick else args.max_steps,
                               25 if args.quick else 50)
    bench_render(report, 2 if args.quick else 5)
    bench_sizes(report)
    report.finish()


if __name__ == "__main__":
    main()
