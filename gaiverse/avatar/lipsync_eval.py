"""Lip-sync quality on real talking-face video: model vs energy baseline (the lip-sync part of AV-c2).

For a clip, the real mouth (``lipsync_targets``) is compared with what the model predicts from the
soundtrack alone, at the video's frame times:

* ``open_corr`` — Pearson correlation of predicted and real inner-lip gap (higher is better);
* ``open_mae``  — mean absolute error of the gap in inter-ocular units;
* ``blend_mae`` — mean absolute error of the 8 ARKit weights;
* ``av_offset_ms`` — the shift (10 ms steps, +-250 ms) that maximises the correlation of the predicted
  with the real gap. Positive means the predicted mouth moves after the real one, i.e. the sound would be
  heard before the picture ("sound advanced" in ITU-R BT.1359). ``in_bt1359`` is true inside the
  detectability window -125 ms (sound delayed) .. +45 ms (sound advanced). The input video is taken as
  the in-sync reference (its audio is placed by the container's stream start times): a video whose own
  sound is late by d ms reads as about +d (checked with ffmpeg ``-itsoffset 0.2``: +210 ms).

``evaluate_lipsync(paths)`` prints nothing and returns the ``../EVAL.md`` JSON object (per-clip items and
means); the baseline is the energy-driven mouth fitted when the shipped model was trained.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gaiverse.avatar.lipsync_model import DEFAULT_DIR, FRAME_MS, EnergyBaseline, LipsyncModel
from gaiverse.avatar.lipsync_targets import (LipsyncTargets, extract_targets, measures_to_blendshapes,
                                             mediapipe_available)

BT1359_EARLY_MS = 45.0
"""Sound may lead the picture by at most this much before it is detectable."""
BT1359_LATE_MS = 125.0
"""Sound may lag the picture by at most this much."""
MAX_LAG_MS = 250.0
LOWER_IS_BETTER = {"open_corr": False, "open_mae": True, "blend_mae": True, "abs_av_offset_ms": True,
                   "in_bt1359": False}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def at_frames(per_10ms: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Values every 10 ms (time 10 i ms) sampled at video frame times k / fps (linear interpolation)."""
    grid = np.arange(per_10ms.shape[0]) * FRAME_MS / 1000
    times = np.arange(n_frames) / fps
    if per_10ms.ndim == 1:
        return np.interp(times, grid, per_10ms)
    return np.stack([np.interp(times, grid, per_10ms[:, j]) for j in range(per_10ms.shape[1])], 1)


def to_10ms(per_frame: np.ndarray, fps: float, n: int) -> np.ndarray:
    """Per-video-frame values resampled to the 10 ms grid of n steps (edges held)."""
    times = np.arange(per_frame.shape[0]) / fps
    grid = np.arange(n) * FRAME_MS / 1000
    if per_frame.ndim == 1:
        return np.interp(grid, times, per_frame)
    return np.stack([np.interp(grid, times, per_frame[:, j]) for j in range(per_frame.shape[1])], 1)


def av_offset_ms(predicted_10ms: np.ndarray, real_10ms: np.ndarray, max_lag_ms: float = MAX_LAG_MS) -> float:
    """Shift of the predicted gap against the real one with the highest correlation (+ = prediction late)."""
    n = min(len(predicted_10ms), len(real_10ms))
    p, r = predicted_10ms[:n], real_10ms[:n]
    best, best_lag = -np.inf, 0
    max_lag = int(max_lag_ms / FRAME_MS)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            c = pearson(p[lag:], r[: n - lag]) if n - lag > 10 else -np.inf
        else:
            c = pearson(p[: n + lag], r[-lag:]) if n + lag > 10 else -np.inf
        if c > best:
            best, best_lag = c, lag
    return float(best_lag * FRAME_MS)


def score_clip(clip: LipsyncTargets, predicted_10ms: np.ndarray) -> dict:
    """Metrics of one prediction ((n, 3) measures every 10 ms) against the clip's real mouth."""
    pred_frames = at_frames(predicted_10ms, clip.n_frames, clip.fps)
    real_open = clip.open
    offset = av_offset_ms(predicted_10ms[:, 0], to_10ms(real_open, clip.fps, predicted_10ms.shape[0]))
    return {
        "open_corr": round(pearson(pred_frames[:, 0], real_open), 4),
        "open_mae": round(float(np.mean(np.abs(pred_frames[:, 0] - real_open))), 4),
        "blend_mae": round(float(np.mean(np.abs(measures_to_blendshapes(pred_frames) - clip.blendshapes()))),
                           4),
        "av_offset_ms": offset,
        "abs_av_offset_ms": abs(offset),
        "in_bt1359": bool(-BT1359_LATE_MS <= offset <= BT1359_EARLY_MS),
    }


def compare_clip(clip: LipsyncTargets, model: LipsyncModel, baseline: EnergyBaseline) -> dict:
    """Model and baseline metrics for one clip, side by side."""
    return {"clip": clip.name, "frames": clip.n_frames, "fps": clip.fps, "targets": clip.method,
            "model": score_clip(clip, model.predict(clip.audio)),
            "baseline": score_clip(clip, baseline.predict(clip.audio))}


def _mean(items: list[dict], who: str) -> dict:
    keys = list(items[0][who])
    return {k: round(float(np.mean([float(i[who][k]) for i in items])), 4) for k in keys}


def evaluate_lipsync(videos: str | Path | list[str | Path], checkpoint: str | Path | None = None,
                     method: str = "auto") -> dict:
    """EVAL.md JSON for talking-face videos with sound: shipped model vs energy-driven mouth.

    Raises ValueError (naming the file) when a video cannot be decoded, has no sound or no face.
    """
    start = time.perf_counter()
    paths = [Path(v) for v in ([videos] if isinstance(videos, (str, Path)) else videos)]
    if not paths:
        raise ValueError("`videos` is empty: give at least one talking-face video with sound")
    model = LipsyncModel.load(checkpoint)
    baseline = EnergyBaseline(**model.meta.get("baseline", {}))
    if method == "auto":  # measure the mouth the way the model's targets were measured, when possible
        trained = model.meta.get("targets_method", "auto")
        method = trained if trained != "mediapipe" or mediapipe_available() else "opencv"
    items = [compare_clip(extract_targets(p, method=method), model, baseline) for p in paths]
    card = Path(checkpoint) if checkpoint else DEFAULT_DIR
    card = card if card.is_dir() else card.parent
    return {
        "eval": "avatar-lipsync",
        "data": [str(p) for p in paths],
        "n": len(items),
        "metrics": _mean(items, "model"),
        "baseline": {"name": "energy-driven mouth (gap = a*RMS + b)", **_mean(items, "baseline")},
        "lower_is_better": LOWER_IS_BETTER,
        "bt1359_window_ms": [-BT1359_LATE_MS, BT1359_EARLY_MS],
        "model_delay_ms": model.config.delay_ms,
        "items": items,
        "seconds": round(time.perf_counter() - start, 2),
        "checkpoint": str(card / "MODEL_CARD.md"),
    }
