"""Derived features of a user's input, stored beside it in the interaction database.

What is computed here needs no model: text statistics; for images the size, brightness, colourfulness
and dominant colours (PIL + numpy); for WAV audio the duration, loudness (RMS energy) and a pitch
estimate (autocorrelation per frame, median over voiced frames). Transcripts (ASR), OCR text, faces
and video frames come from the speech/vision stages and are merged in by the caller as
``transcript``, ``ocr_text``, ``faces`` ... keys, which preference analysis reads.
Implements the derived-feature part of PER-a1.
"""

from __future__ import annotations

import io
import logging
import wave
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

HUE_EDGES = ((15, "red"), (45, "orange"), (70, "yellow"), (165, "green"), (195, "cyan"), (255, "blue"),
             (290, "purple"), (345, "pink"), (361, "red"))
"""Upper edge in degrees of each named hue range."""


def text_features(text: str) -> dict[str, Any]:
    """Length statistics of a message."""
    words = text.split()
    return {"chars": len(text), "words": len(words), "questions": text.count("?")}


def image_features(data: bytes, n_colours: int = 3) -> dict[str, Any]:
    """Size, brightness (0..1), colourfulness, dominant colours (hex) and the dominant hue name."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except UnidentifiedImageError as err:
        raise ValueError(f"`data` is not an image PIL can read ({len(data)} bytes)") from err
    width, height = image.size
    small = np.asarray(image.resize((64, 64)), dtype=np.float32) / 255.0
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    quantised = image.resize((64, 64)).quantize(colors=n_colours, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette()[: 3 * n_colours]
    counts = sorted(quantised.getcolors(), reverse=True)
    dominant = ["#%02x%02x%02x" % tuple(palette[3 * idx: 3 * idx + 3]) for _, idx in counts]
    hsv = np.asarray(image.resize((64, 64)).convert("HSV"), dtype=np.float32) / 255.0
    saturated = hsv[..., 1] > 0.25
    hue = None
    if saturated.mean() > 0.1:
        degrees = hsv[..., 0][saturated] * 360.0
        names = [next(name for edge, name in HUE_EDGES if d < edge) for d in degrees]
        hue = max(set(names), key=names.count)
    return {"width": width, "height": height, "brightness": float((0.299 * r + 0.587 * g + 0.114 * b).mean()),
            "colourfulness": colourfulness, "dominant_colours": dominant, "dominant_hue": hue}


def audio_features(data: bytes, frame_ms: float = 40.0) -> dict[str, Any]:
    """Duration (s), RMS energy (dBFS) and median pitch (Hz) of a PCM WAV file; prosody for PER-a1."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        raise ValueError(f"`data` is not a PCM WAV file ({err})") from err
    if width not in (1, 2, 4):
        raise ValueError(f"`data` has {8 * width}-bit samples; 8, 16 or 32-bit PCM expected")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    if width == 1:
        samples -= 128.0
    samples = samples.reshape(-1, channels).mean(1) / float(2 ** (8 * width - 1))
    duration = len(samples) / rate
    rms = float(np.sqrt(np.mean(samples ** 2))) if len(samples) else 0.0
    frame = int(rate * frame_ms / 1000)
    pitches = []
    for start in range(0, len(samples) - frame, frame):
        x = samples[start:start + frame]
        if np.sqrt(np.mean(x ** 2)) < max(0.02, 0.3 * rms):
            continue
        x = x - x.mean()
        ac = np.correlate(x, x, mode="full")[frame - 1:]
        lo, hi = int(rate / 400), int(rate / 60)  # 60..400 Hz: speaking voices
        if hi >= len(ac) or ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] / ac[0] > 0.3:
            pitches.append(rate / lag)
    return {"duration_s": duration, "rms_dbfs": 20 * np.log10(rms) if rms > 0 else -120.0,
            "pitch_hz": float(np.median(pitches)) if pitches else None, "voiced_frames": len(pitches)}


def derive_features(modality: str, text: str = "", data: bytes | None = None) -> dict[str, Any]:
    """Features of one input by modality (video: only what the caller adds from sampled frames)."""
    features: dict[str, Any] = text_features(text) if text else {}
    if data is None or modality in ("text", "video"):
        return features
    if modality == "image":
        features.update(image_features(data))
    elif modality == "audio":
        features.update(audio_features(data))
    else:
        raise ValueError(f"`modality` must be text, audio, image or video, got {modality!r}")
    return features
