"""16-bit PCM mono WAV files in memory and on disk: the one format every audio step here exchanges.

Piper produces int16 samples, the browser's ``decodeAudioData`` and the API's file sniffing expect a
WAV container, and Whisper reads one back; one writer keeps the header fields in a single place.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np


def pcm16_wav(samples: np.ndarray | bytes, sample_rate: int) -> bytes:
    """int16 samples (array or little-endian bytes), mono -> WAV file bytes."""
    data = samples if isinstance(samples, (bytes, bytearray)) else np.asarray(samples, dtype="<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(data)
    return buffer.getvalue()


def float_to_pcm16(signal: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16 (clipped, not wrapped)."""
    return (np.clip(np.asarray(signal, dtype=np.float64), -1.0, 1.0) * 32767).astype("<i2")


def write_wav(path: str | Path, samples: np.ndarray | bytes, sample_rate: int) -> Path:
    """Write ``samples`` (int16) as a mono WAV file at ``path``."""
    path = Path(path)
    path.write_bytes(pcm16_wav(samples, sample_rate))
    return path
