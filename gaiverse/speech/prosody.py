"""Prosody of a voice: pitch (WORLD F0), pitch range, loudness, voicing and speaking rate.

Used for the audio features of the interaction store (PER-a1) and to match an avatar's TTS voice to
its user's pitch (AVA). F0 comes from WORLD's Harvest by default: DIO is ~25x cheaper and agrees on
real recorded speech (LibriSpeech, JFK: within 1-10 %), but on Piper's synthetic voice it reads the
second harmonic as the pitch (~190 Hz for a ~100 Hz voice, checked against the cepstrum), and an
octave error is worse than 0.2 CPU-seconds per audio second. ``method="dio"`` stays available.
On the avatar captures (GRID, LibriSpeech, JFK) DIO+StoneMask medians also miss Harvest's by up to 9 %,
so the capture analysis keeps Harvest and saves time instead with ``speech_pitch_track``: Harvest on the
stretches of speech only, on two threads (pyworld releases the GIL), same medians within 1 %.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

F0_FLOOR_HZ = 60.0
"""Lowest pitch searched (deep male voices)."""
F0_CEIL_HZ = 500.0
"""Highest pitch searched (children, raised voices)."""
ANALYSIS_RATE = 16_000
"""Audio is resampled to this rate before F0 analysis."""
MAX_PITCH_S = 30.0
"""Pitch is measured on the first this many seconds (Harvest costs ~0.2 CPU-s per audio second)."""

F0Method = Literal["harvest", "dio"]


def world_f0(x: np.ndarray, fs: int, frame_period_ms: float, method: F0Method = "harvest",
             f0_floor: float = F0_FLOOR_HZ, f0_ceil: float = F0_CEIL_HZ) -> tuple[np.ndarray, np.ndarray]:
    """WORLD F0 (Hz, 0 = unvoiced) and frame times (s) of float64 mono ``x`` at ``fs`` Hz."""
    import pyworld

    x = np.ascontiguousarray(x, dtype=np.float64)
    if method == "harvest":
        f0, times = pyworld.harvest(x, fs, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
    elif method == "dio":
        f0, times = pyworld.dio(x, fs, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
        f0 = pyworld.stonemask(x, f0, times, fs)
    else:
        raise ValueError(f"`method` must be harvest or dio, got {method!r}")
    return fix_octave_jumps(f0, window=max(3, int(200 / frame_period_ms) | 1)), times


def fix_octave_jumps(f0: np.ndarray, window: int = 21, tolerance_semitones: float = 3.0) -> np.ndarray:
    """Fold frames lying an octave above or below the median of their voiced neighbours back to it.

    Trackers slip to the second harmonic (or half the pitch) for a few frames, where a voice is creaky
    or synthetic; a real voice does not leap an octave within ~0.2 s, so such frames are corrected.
    """
    out = f0.copy()
    voiced = np.flatnonzero(f0 > 0)
    if voiced.size < 3:
        return out
    half = window // 2
    log_f0 = np.log2(f0[voiced])
    for k, i in enumerate(voiced):
        lo, hi = np.searchsorted(voiced, [i - half, i + half + 1])
        local = np.median(log_f0[lo:hi])
        jump = 12 * (log_f0[k] - local)
        if abs(jump - 12) < tolerance_semitones:
            out[i] = f0[i] / 2
        elif abs(jump + 12) < tolerance_semitones:
            out[i] = f0[i] * 2
    return out


def speech_spans(active: np.ndarray, max_gap: int = 20, max_len: int = 400) -> list[tuple[int, int]]:
    """[start, end) frame ranges covering the True frames of ``active``: runs closer than ``max_gap``
    frames are joined, and a run longer than ``max_len`` frames is cut into pieces of that length."""
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap)
    spans = []
    for start, end in zip(idx[np.r_[0, breaks + 1]], idx[np.r_[breaks, idx.size - 1]] + 1):
        spans += [(int(a), int(min(a + max_len, end))) for a in range(int(start), int(end), max_len)]
    return spans


def _harvest_span(x: np.ndarray, fs: int, span: tuple[int, int], hop: int, margin: int) -> np.ndarray:
    """Harvest F0 of frames span[0]..span[1] (hop samples each), with ``margin`` frames of context."""
    import pyworld

    start, end = span
    lo = max(0, start - margin)
    piece = x[lo * hop:(end + margin) * hop + hop]
    f0, _ = pyworld.harvest(piece, fs, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=1000.0 * hop / fs)
    return f0[start - lo:end - lo]


def speech_pitch_track(x: np.ndarray, fs: int, active: np.ndarray, frame_period_ms: float = 10.0,
                       margin_frames: int = 10, workers: int | None = None) -> np.ndarray:
    """Harvest F0 per frame (0 = unvoiced or not speech) computed on the speech frames only.

    ``active``: one bool per frame of ``frame_period_ms`` (True = speech). Harvest costs ~0.2 CPU-s
    per audio second and grows faster than linearly with the length of what it is given, so it runs
    on each stretch of speech (at most 4 s, with 100 ms of context either side) instead of the whole
    recording: pauses cost nothing and the frames inside each stretch get the same F0 as a whole-clip
    Harvest (tests/speech/test_prosody.py checks the medians on the real clips). pyworld releases the
    GIL, so the stretches run on ``workers`` threads (default: up to 2, one per core).
    """
    from concurrent.futures import ThreadPoolExecutor

    active = np.asarray(active)
    if active.ndim != 1 or active.dtype != bool:
        raise ValueError(f"`active` must be a 1-D bool array (one per frame), got {active.dtype} {active.shape}")
    hop = int(round(fs * frame_period_ms / 1000))
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.zeros(active.size)
    spans = speech_spans(active, max_len=max(1, int(4000 / frame_period_ms)))
    workers = workers or min(2, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(spans)))) as pool:
        tracks = list(pool.map(lambda span: _harvest_span(x, fs, span, hop, margin_frames), spans))
    for (start, _), f0 in zip(spans, tracks):
        out[start:start + f0.size] = f0
    return fix_octave_jumps(out, window=max(3, int(200 / frame_period_ms) | 1))


def pitch_track(samples: np.ndarray, sr: int, frame_period_ms: float = 10.0,
                method: F0Method = "harvest") -> np.ndarray:
    """F0 per frame in Hz (0 where unvoiced) of float mono ``samples`` at ``sr`` Hz."""
    from gaiverse.speech.asr import resample

    x = resample(np.asarray(samples, dtype=np.float32), sr, ANALYSIS_RATE).astype(np.float64)
    return world_f0(x, ANALYSIS_RATE, frame_period_ms, method)[0]


def prosody(pcm_float: np.ndarray, sr: int, transcript: str | None = None,
            method: F0Method = "harvest") -> dict[str, Any]:
    """Pitch median (Hz) and range (semitones, 5th..95th percentile), RMS energy (dBFS) of the active part,
    speaking rate (words/s over the active part; only with a transcript), voiced fraction and duration.

    ``pcm_float``: (n,) float samples in [-1, 1]; ``sr``: their rate in Hz. Implements the prosody part of
    PER-a1.
    """
    samples = np.asarray(pcm_float)
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f"`pcm_float` must be a non-empty mono 1-D array, got shape {samples.shape}")
    if not 4000 <= sr <= 192_000:
        raise ValueError(f"`sr` must be 4000..192000 Hz, got {sr}")
    if not np.isfinite(samples).all():
        raise ValueError("`pcm_float` holds NaN or infinite samples")
    samples = samples.astype(np.float32)
    duration = samples.size / sr
    hop = max(1, sr // 100)
    n = samples.size // hop
    frames = samples[: n * hop].reshape(n, hop) if n else samples[None, :]
    frame_rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1))
    peak = frame_rms.max()
    active = frame_rms > peak * 10 ** (-35 / 20) if peak > 0 else np.zeros_like(frame_rms, dtype=bool)
    active_s = active.sum() * hop / sr
    energy = float(np.sqrt((frame_rms[active] ** 2).mean())) if active.any() else 0.0
    f0 = pitch_track(samples[: int(MAX_PITCH_S * sr)], sr, method=method) if duration >= 0.05 else np.zeros(0)
    voiced = f0[f0 > 0]
    result: dict[str, Any] = {
        "pitch_median_hz": float(np.median(voiced)) if voiced.size else None,
        "pitch_range_semitones": (float(12 * np.log2(np.percentile(voiced, 95) / np.percentile(voiced, 5)))
                                  if voiced.size >= 5 else None),
        "energy_rms_db": round(float(20 * np.log10(energy)), 2) if energy > 0 else -120.0,
        "speaking_rate_wps": None,
        "voiced_fraction": float(voiced.size / f0.size) if f0.size else 0.0,
        "duration_s": float(duration),
    }
    if transcript is not None and active_s > 0:
        result["speaking_rate_wps"] = float(len(transcript.split()) / active_s)
    return result
