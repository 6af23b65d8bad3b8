"""Checking an avatar capture before anything is stored: type, size, duration, decodable, a face, speech.

A capture is either one video with sound (recorded in the web terminal or uploaded) or a few
images plus one audio file. Every check names what was wrong, and ``check`` tells the API which
status to answer (type -> 415, size -> 413, the rest -> 422). The type is sniffed from the bytes,
never the file name; "decodable" means PyAV really decodes frames and samples. A face is searched
with the Haar detector (``gaiverse.vision.faces``) in evenly sampled frames; speech is a cheap
energy + voicing detector (no model: it runs inside the request), so silence, hum and noise are
refused while a whisper-quiet but voiced utterance passes.

Sealing: captured media are personal data. They are sealed with the user's own key from the
personalization vault (``gaiverse.privacy.SubjectVault``, docs/PRIVACY.md), with the context
``|avatar-capture``; ``open_vault`` gives flow processes the same vault, with which the flow seals
what it derives (analysis, transcript, preview of the face; context ``|avatar-derived``). Implements the checks of
AV-a1 (the terminal captures audio and video) and their server confirmation (AV-a3).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

SEAL_CONTEXT = b"|avatar-capture"
"""Authenticated context of sealed capture media (a capture blob never opens as another kind of media)."""
MEDIA_KIND = "personal/avatar-capture"
"""Object kind of sealed capture media: says neither the user nor what the file shows."""
DERIVED_CONTEXT = b"|avatar-derived"
"""Authenticated context of what the flow derives from a capture (analysis JSON, face preview), sealed alike."""
DERIVED_KIND = "personal/avatar"
"""Object kind of sealed derived data (analysis with transcript and measurements, the preview of the face)."""
AUDIO_RATE = 16_000
FLOW_STEPS: tuple[tuple[str, str], ...] = (
    ("avatar-decode", "decode"), ("avatar-analyse", "analyse"), ("avatar-decide", "decide"),
    ("avatar-portrait", "portrait"), ("avatar-voice", "voice"), ("avatar-animation", "animation"),
    ("avatar-render", "render"), ("avatar-store", "store"), ("avatar-report", "report"))
"""(task name, step shown to the user) of the avatar flow, in order: what a capture's progress reports."""

Check = Literal["type", "size", "count", "decodable", "duration", "face", "speech", "text"]


class CaptureRejected(ValueError):
    """A capture failed one check; ``check`` names which, the message says what was found and what is needed."""

    def __init__(self, check: Check, message: str):
        super().__init__(message)
        self.check = check


@dataclass(frozen=True)
class CaptureLimits:
    """What a capture may be."""

    max_bytes: int = 64 * 1024 * 1024
    """All files together."""
    min_duration_s: float = 2.0
    """Shortest recording (a GRID sentence lasts ~3 s)."""
    max_duration_s: float = 60.0
    """Longest recording: analysis and the avatar flow stay well under a minute of CPU."""
    max_images: int = 8
    max_pixels: int = 4096 * 4096
    sample_frames: int = 8
    """Frames of a video decoded (the flow asks for more, for the analysis)."""
    face_search_frames: int = 8
    """Of those, at most this many, evenly spaced, are searched for a face (the Haar detector costs
    ~0.1-0.2 s a frame; the analysis then finds the face mesh in every frame anyway)."""
    min_face_fraction: float = 0.25
    """A face must show in at least this share of the sampled frames (turning the head hides it in some)."""
    min_speech_s: float = 0.4
    """Voiced, loud-enough audio needed (about one word)."""
    max_text_chars: int = 2000


@dataclass(frozen=True)
class Sniffed:
    """What the bytes are: a format name, the kind of media and the MIME type to store it with."""

    name: str
    media: Literal["video", "image", "audio", "container"]
    """"container" holds video or only audio (webm, mp4, ogg): decoding decides."""
    content_type: str


def sniff(data: bytes) -> Sniffed | None:
    """The media format from the first bytes (magic numbers), or None when it is none we accept."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("png", "image", "image/png")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("jpg", "image", "image/jpeg")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("webp", "image", "image/webp")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed("wav", "audio", "audio/wav")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Sniffed("avi", "video", "video/x-msvideo")
    if head.startswith(b"fLaC"):
        return Sniffed("flac", "audio", "audio/flac")
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return Sniffed("mp3", "audio", "audio/mpeg")
    if head.startswith(b"OggS"):
        return Sniffed("ogg", "container", "audio/ogg")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Sniffed("webm", "container", "video/webm")
    if head[4:8] == b"ftyp":
        return Sniffed("mp4", "container", "video/mp4")
    if head.startswith(b"\x00\x00\x01\xba"):
        return Sniffed("mpeg", "video", "video/mpeg")
    if head[:1] == b"\x47" and len(data) > 188 and data[188:189] == b"\x47":
        return Sniffed("mpegts", "video", "video/mp2t")
    return None


@dataclass
class MediaFile:
    """One uploaded file of a capture, as received."""

    role: Literal["video", "image", "audio"]
    data: bytes
    filename: str = ""


@dataclass
class CaptureCheck:
    """What the checks measured (the server's confirmation shown in the terminal) and the decoded media."""

    mode: Literal["video", "images+audio"]
    duration_s: float
    frames_sampled: int
    frames_with_face: int
    face_box_fraction: float
    """Width of the largest face / width of its frame, median over frames with a face."""
    speech_s: float
    audio_peak_dbfs: float
    audio_rms_dbfs: float
    width: int = 0
    height: int = 0
    formats: dict[str, str] = field(default_factory=dict)
    """role -> sniffed format name."""
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    audio: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """The measurements, JSON-ready (no pixels, no samples)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("frames", "audio")}
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def check_capture(files: list[MediaFile], limits: CaptureLimits | None = None) -> CaptureCheck:
    """Check one capture (a video, or images + one audio file) and return the measurements and decoded media.

    Raises ``CaptureRejected`` naming the first failed check. Implements the upload validation of AV-a1.
    """
    limits = limits or CaptureLimits()
    total = sum(len(f.data) for f in files)
    if total > limits.max_bytes:
        raise CaptureRejected("size", f"the capture is {total} bytes, more than the limit of "
                                      f"{limits.max_bytes} bytes")
    videos = [f for f in files if f.role == "video"]
    images = [f for f in files if f.role == "image"]
    audios = [f for f in files if f.role == "audio"]
    if videos and (images or audios) or len(videos) > 1:
        raise CaptureRejected("count", "send either one `video` with sound, or `images` plus one `audio` file, "
                                       f"got {len(videos)} video(s), {len(images)} image(s), "
                                       f"{len(audios)} audio file(s)")
    if videos:
        return _check_video(videos[0], limits)
    if not images or len(audios) != 1:
        raise CaptureRejected("count", "a capture without a video needs at least one image in `images` and "
                                       f"exactly one `audio` file, got {len(images)} image(s) and "
                                       f"{len(audios)} audio")
    if len(images) > limits.max_images:
        raise CaptureRejected("count", f"at most {limits.max_images} images, got {len(images)}")
    return _check_images_audio(images, audios[0], limits)


def _sniffed(f: MediaFile, allowed: tuple[str, ...], what: str) -> Sniffed:
    sniffed = sniff(f.data)
    label = f"`{f.role}` file {f.filename[:80]!r}" if f.filename else f"`{f.role}` file"
    if not f.data:
        raise CaptureRejected("type", f"{label} is empty")
    if sniffed is None or sniffed.media not in allowed:
        found = f"a {sniffed.name} file" if sniffed else "no known media format"
        raise CaptureRejected("type", f"{label} is not {what}: its content is {found}")
    return sniffed


def _check_video(f: MediaFile, limits: CaptureLimits) -> CaptureCheck:
    from gaiverse.vision.video import VideoLimits, decode

    sniffed = _sniffed(f, ("video", "container"), "a video (mp4, webm, mpeg, avi, ogg)")
    duration = probe_duration(f.data)
    if duration is not None and duration > limits.max_duration_s:
        raise CaptureRejected("duration", f"the video lasts {duration:.1f} s; the longest accepted is "
                                          f"{limits.max_duration_s:.0f} s")
    try:
        sample = decode(f.data, max_frames=limits.sample_frames,
                        limits=VideoLimits(max_duration_s=limits.max_duration_s + 1, max_pixels=limits.max_pixels,
                                           max_audio_s=limits.max_duration_s + 1))
    except ValueError as err:
        reason = str(err).replace("`video`", "the video")
        check: Check = "duration" if "max_duration_s" in reason else "decodable"
        raise CaptureRejected(check, reason) from None
    if sample.audio is None or sample.audio.size == 0:
        raise CaptureRejected("speech", "the video has no sound track: record with the microphone on, or send "
                                        "images + an `audio` file")
    duration = max(sample.duration_s, sample.audio.size / AUDIO_RATE)
    _check_duration(duration, limits, "the video")
    faces = _faces(_evenly(sample.frames, limits.face_search_frames))
    _check_faces(faces, limits, "sampled video frames")
    speech = speech_measures(sample.audio)
    _check_speech(speech, limits, "the video's sound")
    return CaptureCheck(mode="video", duration_s=duration, frames_sampled=len(faces),
                        frames_with_face=sum(1 for b in faces if b is not None),
                        face_box_fraction=_face_fraction(faces),
                        width=sample.width, height=sample.height, formats={"video": sniffed.name},
                        frames=sample.frames, audio=sample.audio, **speech)


def _check_images_audio(images: list[MediaFile], audio: MediaFile, limits: CaptureLimits) -> CaptureCheck:
    from gaiverse.vision.faces import to_rgb_array
    from gaiverse.vision.video import decode_audio

    formats, frames = {}, []
    for i, image in enumerate(images):
        formats[f"image{i + 1}"] = _sniffed(image, ("image",), "an image (png, jpg, webp)").name
        try:
            rgb = to_rgb_array(image.data)
        except ValueError:
            raise CaptureRejected("decodable",
                                  f"image {i + 1} ({image.filename[:80]!r}) cannot be decoded") from None
        if rgb.shape[0] * rgb.shape[1] > limits.max_pixels:
            raise CaptureRejected("size", f"image {i + 1} is {rgb.shape[1]}x{rgb.shape[0]}, more than "
                                          f"{limits.max_pixels} pixels")
        frames.append(rgb)
    formats["audio"] = _sniffed(audio, ("audio", "container"), "audio (wav, ogg, flac, mp3, webm, m4a)").name
    duration = probe_duration(audio.data)
    if duration is not None and duration > limits.max_duration_s:
        raise CaptureRejected("duration", f"the audio lasts {duration:.1f} s; the longest accepted is "
                                          f"{limits.max_duration_s:.0f} s")
    try:
        samples = decode_audio(audio.data, limits.max_duration_s + 1)
    except ValueError as err:
        raise CaptureRejected("decodable", str(err).replace("`video`", "the audio")) from None
    if samples is None or samples.size == 0:
        raise CaptureRejected("decodable",
                              f"the `audio` file {audio.filename[:80]!r} has no decodable audio stream")
    _check_duration(samples.size / AUDIO_RATE, limits, "the audio")
    faces = _faces(frames)
    if not any(b is not None for b in faces):
        raise CaptureRejected("face", f"no face found in any of the {len(frames)} image(s): show your face, "
                                      "frontal, well lit")
    speech = speech_measures(samples)
    _check_speech(speech, limits, "the audio")
    return CaptureCheck(mode="images+audio", duration_s=samples.size / AUDIO_RATE, frames_sampled=len(frames),
                        frames_with_face=sum(1 for b in faces if b is not None),
                        face_box_fraction=_face_fraction(faces),
                        width=int(frames[0].shape[1]), height=int(frames[0].shape[0]), formats=formats,
                        frames=frames, audio=samples, **speech)


def probe_duration(data: bytes) -> float | None:
    """The duration a container declares (s), without decoding; None when it declares none (live WebM)."""
    import io

    import av

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if container.duration is not None:
                return container.duration / 1_000_000
            for stream in container.streams:
                if stream.duration is not None and stream.time_base is not None:
                    return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, ValueError):
        return None  # decoding reports it with the reason
    return None


def _check_duration(duration: float, limits: CaptureLimits, what: str) -> None:
    if duration < limits.min_duration_s:
        raise CaptureRejected("duration", f"{what} lasts {duration:.1f} s; record at least "
                                          f"{limits.min_duration_s:.0f} s")
    if duration > limits.max_duration_s:
        raise CaptureRejected("duration", f"{what} lasts {duration:.1f} s; the longest accepted is "
                                          f"{limits.max_duration_s:.0f} s")


def _evenly(frames: list[np.ndarray], n: int) -> list[np.ndarray]:
    """At most ``n`` of ``frames``, evenly spaced (all of them when there are no more than ``n``)."""
    if len(frames) <= n:
        return list(frames)
    return [frames[int(i)] for i in np.linspace(0, len(frames) - 1, n).round()]


def _faces(frames: list[np.ndarray]) -> list[tuple[float, tuple[int, int, int, int]] | None]:
    """(face width / frame width, box) of the largest face per frame, None where none was found."""
    from gaiverse.vision.faces import detect_faces

    out = []
    for frame in frames:
        found = detect_faces(frame, smiles=False)
        out.append((found[0].box[2] / frame.shape[1], found[0].box) if found else None)
    return out


def _face_fraction(faces) -> float:
    sizes = [f[0] for f in faces if f is not None]
    return float(np.median(sizes)) if sizes else 0.0


def _check_faces(faces, limits: CaptureLimits, what: str) -> None:
    found = sum(1 for f in faces if f is not None)
    needed = max(1, int(np.ceil(limits.min_face_fraction * len(faces))))
    if found < needed:
        raise CaptureRejected("face", f"a face was found in {found} of {len(faces)} {what}; at least {needed} "
                                      "needed: face the camera, well lit, not too far away")


def speech_measures(samples: np.ndarray, rate: int = AUDIO_RATE) -> dict[str, float]:
    """Seconds of speech-like audio (loud enough and voiced), peak and RMS level (dBFS) of mono float samples.

    A 30 ms frame counts as speech when it is within 30 dB of the loudest frame, above -50 dBFS,
    and periodic (normalised autocorrelation >= 0.3 at a lag of 2.5-14 ms, i.e. a 70-400 Hz pitch).
    """
    x = np.asarray(samples, dtype=np.float32)
    hop = int(0.03 * rate)
    n = x.size // hop
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if n == 0 or peak == 0.0:
        return {"speech_s": 0.0, "audio_peak_dbfs": -120.0, "audio_rms_dbfs": -120.0}
    frames = x[: n * hop].reshape(n, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1)) + 1e-12
    level = 20 * np.log10(rms)
    loud = (level > -50.0) & (level > level.max() - 30.0)
    voiced = np.zeros(n, dtype=bool)
    voiced[loud] = _periodicity(frames[loud], int(rate / 400), int(rate / 70)) >= 0.3
    return {"speech_s": float(voiced.sum() * hop / rate),
            "audio_peak_dbfs": round(float(20 * np.log10(peak)), 2),
            "audio_rms_dbfs": round(float(20 * np.log10(np.sqrt((x.astype(np.float64) ** 2).mean()) + 1e-12)), 2)}


def _periodicity(frames: np.ndarray, min_lag: int, max_lag: int) -> np.ndarray:
    """Peak normalised autocorrelation (sum x[t] x[t+lag] / sum x^2) per frame over lags min_lag..max_lag,
    for all frames at once through the FFT (zero-padded, so it equals the direct lagged sums)."""
    if frames.shape[0] == 0:
        return np.zeros(0)
    centred = frames.astype(np.float64) - frames.mean(1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * centred.shape[1])))
    spectrum = np.fft.rfft(centred, size, axis=1)
    corr = np.fft.irfft(spectrum * spectrum.conj(), size, axis=1)
    energy = corr[:, 0]
    peak = corr[:, min_lag:max_lag + 1].max(1)
    return np.where(energy > 0, peak / np.maximum(energy, 1e-300), 0.0)


def _check_speech(speech: dict[str, float], limits: CaptureLimits, what: str) -> None:
    if speech["speech_s"] < limits.min_speech_s:
        raise CaptureRejected("speech", f"no speech found in {what} ({speech['speech_s']:.1f} s voiced, peak "
                                        f"{speech['audio_peak_dbfs']:.0f} dBFS; at least {limits.min_speech_s} s "
                                        "needed): read the sentence aloud, close to the microphone")


def check_text(text: str | None, limits: CaptureLimits | None = None) -> str:
    """The typed preferences, stripped; refused when longer than the limit."""
    limits = limits or CaptureLimits()
    text = (text or "").strip()
    if len(text) > limits.max_text_chars:
        raise CaptureRejected("text",
                              f"`preferences` has {len(text)} characters, at most {limits.max_text_chars}")
    return text


def open_vault(settings):
    """(KeyRing, SubjectVault) of an installation: the per-user keys media are sealed with (docs/PRIVACY.md).

    The API seals with its personalization service's vault; flow processes open the same DuckDB
    file and master key here to unseal.
    """
    from gaiverse.personalization.database import Database
    from gaiverse.privacy import KeyRing, SubjectVault

    secret = settings.privacy_key.get_secret_value() if settings.privacy_key is not None else None
    keyring = KeyRing.load(settings.personal_keys_dir, secret)
    return keyring, SubjectVault(Database(settings.personalization_path), keyring)
