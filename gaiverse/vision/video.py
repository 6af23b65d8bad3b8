"""Video decoding for user uploads and captures: evenly spaced RGB frames plus the soundtrack at 16 kHz.

PyAV (FFmpeg libraries in the ``av`` wheel) decodes any container FFmpeg knows. Frames are taken at
the centres of ``max_frames`` equal slices of the clip, by seeking, so a long video costs as much as
a short one; the audio goes to ASR and prosody. Bad input (not a video, no video stream, zero or
excessive duration, oversized frames) is refused with a ValueError naming the problem. Implements the
video part of PER-a1; the avatar capture stage (AVA) reads frames the same way.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

AUDIO_RATE = 16_000
"""Sample rate of the returned soundtrack (what ASR expects)."""


@dataclass
class VideoLimits:
    """What a decodable upload may be."""

    max_duration_s: float = 600.0
    """Longest accepted clip."""
    max_pixels: int = 4096 * 4096
    """Largest accepted frame (width x height)."""
    max_audio_s: float = 120.0
    """Soundtrack kept for ASR: the first this many seconds."""


@dataclass
class VideoSample:
    """Frames (RGB uint8 (h, w, 3)) at ``times_s``, stream facts, and the mono 16 kHz float32 soundtrack."""

    frames: list[np.ndarray]
    fps: float
    duration_s: float
    audio: np.ndarray | None = None
    times_s: list[float] = field(default_factory=list)
    width: int = 0
    height: int = 0


def _open(video: bytes | str | Path):
    import av

    if isinstance(video, (bytes, bytearray)):
        if not video:
            raise ValueError("`video` is empty")
        source, label = io.BytesIO(bytes(video)), f"{len(video)} bytes"
    elif isinstance(video, (str, Path)):
        if not Path(video).is_file():
            raise ValueError(f"`video` path {str(video)!r} does not exist")
        source, label = str(video), str(video)
    else:
        raise ValueError(f"`video` must be bytes or a path, got {type(video).__name__}")
    try:
        return av.open(source, mode="r", metadata_errors="ignore"), label
    except (av.error.FFmpegError, ValueError) as err:
        raise ValueError(f"`video` is not a decodable media file ({label}): {err}") from err


def decode(video: bytes | str | Path, max_frames: int = 8, limits: VideoLimits | None = None) -> VideoSample:
    """Evenly spaced frames, fps, duration and soundtrack of a video (bytes or path)."""
    import av

    if not 1 <= max_frames <= 256:
        raise ValueError(f"`max_frames` must be 1..256, got {max_frames}")
    limits = limits or VideoLimits()
    container, label = _open(video)
    with container:
        if not container.streams.video:
            raise ValueError(f"`video` has no video stream ({label})")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > limits.max_pixels:
            raise ValueError(f"`video` frames are {width}x{height}, more than {limits.max_pixels} pixels")
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        duration = _duration(container, stream)
        if duration is not None and duration > limits.max_duration_s:
            raise ValueError(f"`video` lasts {duration:.1f} s, more than max_duration_s="
                             f"{limits.max_duration_s}")
        try:
            times, frames = _sample_frames(container, stream, duration, max_frames)
        except av.error.FFmpegError as err:
            raise ValueError(f"`video` frames cannot be decoded ({label}): {err}") from err
    if not frames:
        raise ValueError(f"`video` has no decodable frames ({label})")
    if duration is None:
        duration = times[-1] + (1.0 / fps if fps else 0.0)
    if duration <= 0:
        raise ValueError(f"`video` has zero duration ({label})")
    audio = decode_audio(video, limits.max_audio_s)
    return VideoSample(frames=frames, fps=fps, duration_s=float(duration), audio=audio,
                       times_s=times, width=width, height=height)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def upright_rgb(frame, rotation: float | None = None) -> np.ndarray:
    """RGB uint8 of a decoded frame turned upright: phone videos store sensor-oriented frames plus a display
    rotation (counter-clockwise degrees), and a face detector given a sideways face finds none.

    ``rotation`` : the decoded frame's own, when ``frame`` is a reformatted copy (which loses it).
    """
    rgb = frame.to_ndarray(format="rgb24")
    turns = int(round((getattr(frame, "rotation", 0) if rotation is None else rotation) / 90)) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _sample_frames(container, stream, duration: float | None, n: int,
                   seek_above_s: float = 30.0) -> tuple[list[float], list[np.ndarray]]:
    """Frames nearest the centres of n equal slices of the clip (times from the clip start).

    Short clips (or unknown duration) are decoded in one pass; longer ones are sought to a keyframe
    a little before each centre, because container seeking is only keyframe-accurate.
    """
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if duration is None or duration <= seek_above_s:
        decoded = [(float(f.time) - start if f.time is not None else float(i), f)
                   for i, f in enumerate(container.decode(stream))]
        if not decoded:
            return [], []
        length = duration or decoded[-1][0] or 1.0
        stamps = np.array([t for t, _ in decoded])
        picks = sorted({int(np.abs(stamps - (i + 0.5) * length / n).argmin()) for i in range(n)})
        frames = [upright_rgb(decoded[i][1]) for i in picks]
        return [round(decoded[i][0], 4) for i in picks], frames
    times, frames = [], []
    for i in range(n):
        target = start + (i + 0.5) * duration / n
        container.seek(int(max(start, target - 2.0) / stream.time_base), stream=stream, backward=True)
        frame = next((f for f in container.decode(stream) if f.time is None or f.time >= target - 1e-3), None)
        if frame is None:
            continue
        stamp = round(float(frame.time if frame.time is not None else target) - start, 4)
        if times and stamp <= times[-1]:
            continue
        times.append(stamp)
        frames.append(upright_rgb(frame))
    return times, frames


def decode_audio(video: bytes | str | Path, max_seconds: float = 120.0) -> np.ndarray | None:
    """The first audio stream as mono float32 at 16 kHz (at most ``max_seconds``), or None without one."""
    import av

    container, _ = _open(video)
    with container:
        if not container.streams.audio:
            return None
        resampler = av.audio.resampler.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        chunks, total, limit = [], 0, int(max_seconds * AUDIO_RATE)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if total >= limit:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as err:
            log.warning("audio of the video could not be decoded: %s", err)
            return None
    if not chunks:
        return None
    return np.concatenate(chunks)[:limit].astype(np.float32)
