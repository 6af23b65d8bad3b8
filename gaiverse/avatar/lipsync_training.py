"""Training the audio-to-blendshape model on real talking-face clips, with leave-one-clip-out evaluation.

Data are few (three 3-s GRID clips, three talkers), so every fold trains on all clips but one and is
scored on the held-out talker against the energy baseline fitted on the same training clips. Each step
draws fresh augmentations of the training audio: gain (+-10 dB), white noise (15-40 dB SNR) and a small
resampling stretch (+-8 %, which changes tempo and pitch together and stretches the targets with it),
so the net sees more than two voices and levels. Loss: MSE of the normalised measures (gap weighted
most) plus (1 - Pearson) of the gap, because correlation with the real mouth is what is judged.

The shipped checkpoint is the model trained on every clip; the fold models are shipped too, so the
held-out claim can be re-checked from the cached targets (tests/avatar/test_lipsync.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gaiverse.avatar.lipsync_eval import compare_clip, to_10ms
from gaiverse.avatar.lipsync_model import (HOP, EnergyBaseline, LipsyncConfig, LipsyncModel, LipsyncNet,
                                           features, pad_features, save_meta)
from gaiverse.avatar.lipsync_targets import LipsyncTargets, load_targets

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TARGETS = REPO / "data" / "avatar" / "lipsync_grid_targets.npz"
MEASURE_WEIGHTS = (1.0, 0.5, 0.25)


@dataclass
class LipsyncTrainConfig:
    steps: int = 400
    batch: int = 8
    crop: int = 120
    """Output frames per training example (1.2 s)."""
    bank: int = 24
    """Augmented copies of each training clip, drawn once before training."""
    lr: float = 2e-3
    weight_decay: float = 1e-2
    gain_db: float = 10.0
    snr_db: tuple[float, float] = (15.0, 40.0)
    stretch: float = 0.08
    corr_weight: float = 1.5
    seed: int = 0
    model: LipsyncConfig = field(default_factory=LipsyncConfig)


def clip_arrays(clip: LipsyncTargets) -> tuple[np.ndarray, np.ndarray]:
    """Audio and its (len // 160, 3) targets on the 10 ms grid."""
    n = clip.audio.size // HOP
    return clip.audio.astype(np.float64), to_10ms(clip.measures().astype(np.float64), clip.fps, n)


def augment(audio: np.ndarray, targets: np.ndarray, cfg: LipsyncTrainConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stretched, re-levelled, noisy copy of a clip with its targets stretched alike."""
    s = rng.uniform(1 - cfg.stretch, 1 + cfg.stretch)
    src = np.arange(0, audio.size - 1, s)
    audio = np.interp(src, np.arange(audio.size), audio)
    n = audio.size // HOP
    grid = np.arange(n) * s
    index = np.arange(len(targets))
    targets = np.stack([np.interp(grid, index, targets[:, j]) for j in range(targets.shape[1])], 1)
    audio = audio * 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20)
    rms = np.sqrt(np.mean(audio ** 2)) + 1e-9
    audio = audio + rng.normal(0, rms / 10 ** (rng.uniform(*cfg.snr_db) / 20), audio.size)
    return audio, targets


def augmentation_bank(data: list[tuple[np.ndarray, np.ndarray]], cfg: LipsyncTrainConfig,
                      rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """``bank`` augmented copies per clip as (padded features, targets): features are computed once."""
    bank = []
    for audio, targets in data:
        for _ in range(cfg.bank):
            aug_audio, aug_targets = augment(audio, targets, cfg, rng)
            padded = pad_features(features(aug_audio), cfg.model)
            n = min(len(aug_targets), padded.shape[0] - cfg.model.receptive + 1)
            bank.append((padded[: n + cfg.model.receptive - 1], aug_targets[:n]))
    return bank


def _batch(bank: list[tuple[np.ndarray, np.ndarray]], cfg: LipsyncTrainConfig,
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    receptive = cfg.model.receptive
    length = min(cfg.crop, min(len(t) for _, t in bank))
    xs, ys = [], []
    for _ in range(cfg.batch):
        padded, targets = bank[rng.integers(len(bank))]
        start = int(rng.integers(0, len(targets) - length + 1))
        xs.append(padded[start: start + length + receptive - 1])
        ys.append(targets[start: start + length])
    x = torch.from_numpy(np.stack(xs).transpose(0, 2, 1).astype(np.float32))
    y = torch.from_numpy(np.stack(ys).transpose(0, 2, 1).astype(np.float32))
    return x, y


def _loss(pred: torch.Tensor, target: torch.Tensor, cfg: LipsyncTrainConfig) -> torch.Tensor:
    weights = torch.tensor(MEASURE_WEIGHTS)[None, :, None]
    mse = ((pred - target) ** 2 * weights).mean() / weights.mean()
    p = pred[:, 0] - pred[:, 0].mean(1, keepdim=True)
    t = target[:, 0] - target[:, 0].mean(1, keepdim=True)
    corr = (p * t).sum(1) / (p.norm(dim=1) * t.norm(dim=1) + 1e-6)
    return mse + cfg.corr_weight * (1 - corr).mean()


def train_model(clips: list[LipsyncTargets], cfg: LipsyncTrainConfig,
                progress: Callable[[int, float], None] | None = None) -> LipsyncModel:
    """Train one model on these clips (normalisation statistics from them too)."""
    if not clips:
        raise ValueError("`clips` is empty: training needs at least one clip")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = [clip_arrays(c) for c in clips]
    net = LipsyncNet(cfg.model)
    feats = np.concatenate([features(a) for a, _ in data])
    targets = np.concatenate([t for _, t in data])
    net.feat_mean.copy_(torch.from_numpy(feats.mean(0)))
    net.feat_std.copy_(torch.from_numpy(feats.std(0) + 1e-3))
    net.target_mean.copy_(torch.from_numpy(targets.mean(0).astype(np.float32)))
    net.target_std.copy_(torch.from_numpy(targets.std(0).astype(np.float32) + 1e-4))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, cfg.steps))
    bank = augmentation_bank(data, cfg, rng)
    net.train()
    for step in range(cfg.steps):
        x, y = _batch(bank, cfg, rng)
        norm_y = (y - net.target_mean[None, :, None]) / net.target_std[None, :, None]
        loss = _loss(net(x), norm_y, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress(step, float(loss.detach()))
    net.eval()
    return LipsyncModel(net=net, meta={"trained_on": [c.name for c in clips],
                                       "targets_method": clips[0].method})


def fit_baseline(clips: list[LipsyncTargets]) -> EnergyBaseline:
    data = [clip_arrays(c) for c in clips]
    return EnergyBaseline.fit([a for a, _ in data], [t[:, 0] for _, t in data])


def cross_validate(clips: list[LipsyncTargets], cfg: LipsyncTrainConfig,
                   progress: Callable[[str, int, float], None] | None = None
                   ) -> tuple[list[dict], list[LipsyncModel]]:
    """Leave-one-clip-out: model and energy baseline fitted on the other clips, scored on the held-out one."""
    folds, models = [], []
    for held in clips:
        train = [c for c in clips if c.name != held.name]
        report = (lambda s, loss, n=held.name: progress(n, s, loss)) if progress else None
        model = train_model(train, cfg, progress=report)
        baseline = fit_baseline(train)
        model.meta.update({"held_out": held.name, "baseline": baseline.to_json()})
        folds.append({"held_out": held.name, "trained_on": [c.name for c in train],
                      **compare_clip(held, model, baseline)})
        models.append(model)
    return folds, models


def run_training(targets: Path = DEFAULT_TARGETS, out: Path = REPO / "checkpoints" / "lipsync",
                 cfg: LipsyncTrainConfig | None = None,
                 progress: Callable[[str, int, float], None] | None = None) -> dict:
    """Cross-validate, train the shipped model on all clips, write checkpoints and metrics.json."""
    from threadpoolctl import threadpool_limits

    cfg = cfg or LipsyncTrainConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the net is tiny: more threads on a shared 2-core machine only add waiting
    try:
        with threadpool_limits(1):
            return _run(Path(targets), Path(out), cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _run(targets: Path, out: Path, cfg: LipsyncTrainConfig,
         progress: Callable[[str, int, float], None] | None) -> dict:
    start = time.perf_counter()
    clips = load_targets(targets)
    folds, models = cross_validate(clips, cfg, progress)
    out.mkdir(parents=True, exist_ok=True)
    for model in models:
        model.save(out / f"fold_{model.meta['held_out']}.pt")
    final = train_model(clips, cfg, progress=(lambda s, loss: progress("all", s, loss)) if progress else None)
    final.meta.update({"held_out": None, "baseline": fit_baseline(clips).to_json(),
                       "train_config": _jsonable(cfg), "cross_validation": folds})
    final.save(out / "lipsync.pt")
    summary = {
        "targets": str(targets), "clips": [c.name for c in clips], "targets_method": clips[0].method,
        "parameters": final.n_parameters(), "delay_ms": final.config.delay_ms,
        "folds": folds, "config": _jsonable(cfg), "seconds": round(time.perf_counter() - start, 1),
        "mean_model_corr": round(float(np.mean([f["model"]["open_corr"] for f in folds])), 4),
        "mean_baseline_corr": round(float(np.mean([f["baseline"]["open_corr"] for f in folds])), 4),
    }
    save_meta(out / "metrics.json", summary)
    return summary


def _jsonable(cfg: LipsyncTrainConfig) -> dict:
    d = asdict(cfg)
    d["model"]["dilations"] = list(d["model"]["dilations"])
    return d
