"""NeRF interiors benchmark (issue 5, ENV-c1/c2), per real scene: training time until the held-out PSNR reaches the
best baseline's, render time of a 256x256 colour + depth map (vs the reprojection baseline's warp), asset sizes.

Time to baseline: `gaiverse eval nerf`'s protocol (same holdout rule, defaults and seed) with the held-out views
rendered every `--check-every` steps; the clock counts training only (the checks are subtracted) and stops at the
first check where the NeRF's held-out PSNR reaches the final PSNR of the stronger baseline (nearest view or the
two-photo reprojection, computed in the same run). Render: the trained model of that run, 256x256 from the
held-out camera. Sizes: the scene's photos + pose files, and the trained model saved as a checkpoint. Usage:
    nice -n 10 python benchmarks/interiors.py [--quick] [--threads 1] [--steps N] [--long-side PX]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks.report import Report  # noqa: E402

ROOT = _HERE.parent
DATA = ROOT / "data" / "multiview"
SCENES = ["kapture_maupertuis_facade", "kapture_maupertuis_aerial", "kapture_indoor_t265_fisheye",
          "kapture_indoor_floor2/colmap_estimated"]
RENDER_SIZE = (256, 256)


def folder_size(path: Path) -> float:
    return float(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else
                 path.stat().st_size if path.exists() else 0)


def bench_scene(report: Report, name: str, long_side: int, steps: int, check_every: int, repeats: int) -> None:
    from gaiverse.interiors.evaluate import reproject, run_eval
    from gaiverse.interiors.render import render_view, scaled_intrinsics
    from gaiverse.interiors.training import save_checkpoint

    result, trained, scene = run_eval(DATA / name, holdout=1, long_side=long_side, steps=steps,
                                      curve_every=check_every)
    best = max(result["baselines"], key=lambda b: result["baselines"][b]["psnr"])
    target = result["baselines"][best]["psnr"]
    hit = result["seconds_to_baseline_psnr"][best]
    final = result["metrics"]
    label = f"{name}: training time to the {best} PSNR ({target:.2f} dB)"
    if hit is None:
        label += f" — not reached in {steps} steps (final {final['psnr']:.2f} dB)"
    report.add(label, [hit["seconds"] if hit else result["train_seconds"]], unit="s", scale=1,
               reached=hit is not None, step=hit["step"] if hit else None, baseline_psnr=round(target, 3),
               nerf_psnr=round(final["psnr"], 3), nerf_ssim=round(final["ssim"], 4),
               baselines=result["baselines"], heldout_psnr_curve=result["heldout_psnr_curve"],
               long_side=long_side, steps=steps, train_seconds_total=result["train_seconds"])

    test = scene.image_names.index(result["items"][0]["image"])
    K = scaled_intrinsics(scene.K[test], scene.hw, RENDER_SIZE)
    c2w = scene.c2w[test]
    render_view(trained.model, K, c2w, (32, 32))  # warm-up
    renders, warps = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        view = render_view(trained.model, K, c2w, RENDER_SIZE)
        renders.append(time.perf_counter() - started)
        started = time.perf_counter()
        reproject(view.rgb, view.depth, K, c2w, K, scene.c2w[(test + 1) % len(scene)], RENDER_SIZE)
        warps.append(time.perf_counter() - started)
    report.add(f"{name}: render 256x256 colour + depth map", renders, unit="ms", baseline=warps,
               baseline_name="reprojection warp 256²", device=str(next(trained.model.parameters()).device))

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_checkpoint(trained, scene, Path(tmp) / "nerf.pt")
        report.add(f"{name}: trained model checkpoint", [checkpoint.stat().st_size], unit="MB", scale=1e-6)
    report.add(f"{name}: photos + poses ({len(scene)} images)", [folder_size(DATA / name.split('/')[0])],
               unit="MB", scale=1e-6)


def bench_sizes(report: Report) -> None:
    for label, path in [("shipped checkpoint + card checkpoints/interior/", ROOT / "checkpoints" / "interior"),
                        ("window atlases data/interiors/", ROOT / "data" / "interiors"),
                        ("all photos data/multiview/", DATA)]:
        report.add(f"asset size: {label}", [folder_size(path)], unit="MB", scale=1e-6)


def main() -> None:
    from gaiverse.interiors.evaluate import DEFAULT_LONG_SIDE, DEFAULT_STEPS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scene, 60 steps at 48 px, 2 render repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded machine)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--long-side", type=int, default=DEFAULT_LONG_SIDE)
    parser.add_argument("--check-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report = Report("interiors", "torch", "numpy", "opencv-contrib-python-headless")
    report.meta.update({"torch_threads": args.threads, "long_side": args.long_side, "steps": args.steps})
    if args.quick:
        bench_scene(report, SCENES[0], 48, 60, 20, 2)
    else:
        for scene in SCENES:
            bench_scene(report, scene, args.long_side, args.steps, args.check_every, args.repeats)
    bench_sizes(report)
    report.finish()


if __name__ == "__main__":
    main()
