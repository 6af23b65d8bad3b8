"""Small real media files for tests: a PNG made with PIL and a voice-like WAV tone made with numpy.

Several test modules upload "a photo" and "a voice note"; their bytes come from here so a change of
format (say, a new required WAV field) is made once.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from gaiverse.speech.wav import float_to_pcm16, pcm16_wav


def png_bytes(rgb: tuple[int, int, int] = (20, 60, 220), size: int = 48) -> bytes:
    """A flat colour with a white square in the upper-left quarter: one dominant colour, one edge."""
    image = Image.new("RGB", (size, size), rgb)
    image.paste((255, 255, 255), (size // 4, size // 4, size // 2, size // 2))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def tone_wav_bytes(pitch_hz: float = 190.0, seconds: float = 0.6, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV of a voice-like tone: a pitch with two harmonics under a Hann envelope."""
    t = np.arange(int(rate * seconds)) / rate
    signal = sum(np.sin(2 * np.pi * pitch_hz * k * t) / k for k in (1, 2, 3)) * np.hanning(len(t)) * 0.4
    return pcm16_wav(float_to_pcm16(signal), rate)


def ffmpeg(*args: str) -> None:
    """Run Debian's ffmpeg quietly, overwriting outputs; a failure raises with its exit code."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def phone_video(source: Path, directory: Path) -> Path:
    """``source`` as a phone records portrait video: frames stored turned 90° clockwise, plus a display
    rotation tag; the sound is kept (AAC)."""
    turned, tagged = directory / "turned.mp4", directory / "phone.mp4"
    ffmpeg("-i", str(source), "-vf", "transpose=1", "-c:v", "libx264", "-c:a", "aac", str(turned))
    ffmpeg("-i", str(turned), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(tagged))
    return tagged
