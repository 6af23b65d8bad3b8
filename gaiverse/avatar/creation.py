"""Avatar creation (AV-c1): the one place that wires the four engines together.

    source (analysis JSON, best frame, its 478 landmarks, head-pose and upper-body tracks) + AvatarParams
      1. portrait   gaiverse.avatar.portrait.build_avatar_model -> AvatarModel (personalised head on the body)
      2. voice      gaiverse.avatar.voice: VoiceProfile.from_analysis + synthesize -> the avatar's voice sample
      3. animation  gaiverse.avatar.animation: talk_clip (lip-sync model on that sample) + head_motion_clip
                    (the captured head-pose and upper-body tracks) added to the model -> .glb and VRM
      4. render     gaiverse.avatar.render: turntable PNG contact sheet and MP4

``CreationSource`` is what creation needs from a capture. The flow builds it once from the analysis
and stores it sealed in version 1 (``source``), so a customisation rebuilds the avatar from it with new
parameters and no new capture. Each step is its own function so the flow can run them as separate
tasks (with their timings) and ``create`` chains them for customisation, the evaluation and benchmarks.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaiverse.avatar.decision import AvatarParams
from gaiverse.speech.wav import float_to_pcm16, pcm16_wav

log = logging.getLogger(__name__)

GREETING = "Hello, I am your avatar. I look and sound like you, and I can say whatever you type for me."
"""What the avatar's voice sample says (the talk clip is animated from it)."""
SOURCE_FORMAT = "gaiverse.avatar-source/1"
TURNTABLE_SECONDS = 4.0
VOICE_RATE = 16_000


@dataclass
class CreationSource:
    """What creation needs from one capture (personal data: stored sealed, never in Prefect)."""

    analysis: dict[str, Any] | None
    """The capture analysis JSON (``CaptureAnalysis.to_json()``); None gives the generic avatar."""
    portrait_frame: np.ndarray | None
    """RGB uint8 (H, W, 3): the most frontal sharp frame, projected onto the head as its texture."""
    landmarks: np.ndarray | None
    """(478, 3) MediaPipe face-mesh landmarks of ``portrait_frame`` in pixels."""
    pose_track: np.ndarray | None
    """(n, 3) head yaw, pitch, roll in degrees at ``pose_fps``; gaps filled by interpolation."""
    pose_fps: float = 0.0
    body_track: np.ndarray | None = None
    """(n, 4) upper-body track (``gaiverse.avatar.animation.BODY_COLUMNS``, degrees, NaN where no body)
    on the same frames as ``pose_track``; None for sources made before it existed."""

    @classmethod
    def from_analysis(cls, analysis, frames: list[np.ndarray], duration_s: float) -> CreationSource:
        """From a ``gaiverse.avatar.analysis.CaptureAnalysis`` of evenly sampled ``frames`` spanning ``duration_s``."""
        faces = {f.frame_index: f for f in analysis.faces}
        best = analysis.best_frame.value
        face = faces.get(best) if best is not None else None
        track = _pose_track([faces.get(i) for i in range(len(frames))])
        body = None
        if track is not None:
            from gaiverse.avatar.animation import body_track_from_frames

            body = body_track_from_frames(frames).astype(np.float32)
        return cls(analysis=analysis.to_json(), portrait_frame=frames[best] if best is not None else None,
                   landmarks=np.asarray(face.landmarks, np.float32) if face is not None else None,
                   pose_track=track, pose_fps=len(frames) / duration_s if duration_s > 0 else 0.0,
                   body_track=body)

    def to_bytes(self) -> bytes:
        """An .npz with the arrays and the analysis JSON (to be sealed before it is stored)."""
        arrays = {"meta": np.frombuffer(json.dumps({"format": SOURCE_FORMAT, "pose_fps": self.pose_fps,
                                                    "analysis": self.analysis}).encode(), np.uint8)}
        for name in ("portrait_frame", "landmarks", "pose_track", "body_track"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CreationSource:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes())
            if meta.get("format") != SOURCE_FORMAT:
                raise ValueError(f"not an avatar source: format {meta.get('format')!r}, expected {SOURCE_FORMAT!r}")
            get = lambda name: npz[name] if name in npz.files else None  # noqa: E731
            return cls(analysis=meta["analysis"], portrait_frame=get("portrait_frame"), landmarks=get("landmarks"),
                       pose_track=get("pose_track"), pose_fps=float(meta["pose_fps"]), body_track=get("body_track"))


def _pose_track(faces: list) -> np.ndarray | None:
    """Yaw/pitch/roll per frame, linearly interpolated over frames without a face; None without any face."""
    known = [(i, (f.yaw_deg, f.pitch_deg, f.roll_deg)) for i, f in enumerate(faces) if f is not None]
    if not known:
        return None
    at, values = np.array([i for i, _ in known]), np.array([v for _, v in known], dtype=np.float64)
    frames = np.arange(len(faces))
    return np.stack([np.interp(frames, at, values[:, k]) for k in range(3)], 1).astype(np.float32)


@dataclass
class Creation:
    """Everything one creation produced; ``objects()`` are stored (sealed) as the version's downloads."""

    glb: bytes
    vrm: bytes
    voice_wav: bytes
    turntable_png: bytes | None
    turntable_mp4: bytes | None
    stats: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def objects(self) -> dict[str, bytes]:
        out = {"glb": self.glb, "vrm": self.vrm, "voice": self.voice_wav, "turntable_png": self.turntable_png,
               "turntable_mp4": self.turntable_mp4}
        return {name: data for name, data in out.items() if data is not None}


# ---- the four engines, one function each ----------------------------------------------------------------

def build_portrait(source: CreationSource, params: AvatarParams):
    """1. The personalised model (generic head when the capture had no usable face mesh)."""
    from gaiverse.avatar.portrait import build_avatar_model

    return build_avatar_model(source.analysis, params, source.portrait_frame, source.landmarks)


def make_voice(source: CreationSource, params: AvatarParams, text: str = GREETING) -> tuple[np.ndarray, int]:
    """2. The avatar's voice saying ``text``: Piper converted toward the user's pitch and timbre."""
    from gaiverse.avatar.voice import VoiceProfile, synthesize

    profile = VoiceProfile.from_analysis(source.analysis, params)
    audio, rate = synthesize(text, profile)
    return np.asarray(audio, np.float32), int(rate)


def make_clips(source: CreationSource, audio: np.ndarray, rate: int, expressiveness: float = 0.5) -> list:
    """3. The "talk" clip (lip-sync on the avatar's own voice, nods scaled by ``expressiveness``) and
    "head_motion" (the captured head pose, and the upper body when the source has its track)."""
    from gaiverse.avatar.animation import head_motion_clip, talk_clip

    clips = [talk_clip(audio, rate, expressiveness=float(expressiveness))]
    if source.pose_track is not None and source.pose_fps > 0 and len(source.pose_track) >= 2:
        body = source.body_track
        body = body if body is not None and len(body) == len(source.pose_track) else None
        clips.append(head_motion_clip(source.pose_track, source.pose_fps, body_track=body))
    return clips


def export(model, clips: list, extras: dict[str, Any] | None = None) -> tuple[bytes, bytes, dict[str, Any]]:
    """The model with its clips as (.glb, .vrm, stats); ``extras`` go into the scene's ``gaiverse`` extras."""
    model.add_clips(clips)
    extras = {"gaiverse": extras} if extras else None
    return model.to_glb(extras), model.to_vrm(extras), model.stats()


def render(glb: bytes, seconds: float = TURNTABLE_SECONDS, mp4: bool = True) -> tuple[bytes | None, bytes | None]:
    """4. Server-side previews: the turntable contact sheet (PNG) and, when asked, the turntable MP4.

    A machine without EGL gets no previews (a warning, not a failed avatar: the .glb/VRM and voice are
    what the user takes away; the warning names what is missing)."""
    from gaiverse.avatar.render import RenderUnavailable, turntable_mp4, turntable_png

    try:
        return turntable_png(glb), turntable_mp4(glb, seconds) if mp4 else None
    except RenderUnavailable as err:
        log.warning("no turntable previews: %s", err)
        return None, None


VOICE_FIELDS = ("pitch_semitones", "pitch_range_scale", "speaking_rate")
"""The AvatarParams the voice depends on (``VoiceProfile.from_analysis``): equal ones give the same voice."""


def same_voice(a: AvatarParams, b: AvatarParams) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in VOICE_FIELDS)


def read_voice(wav: bytes) -> tuple[np.ndarray, int]:
    """A stored voice sample (16-bit WAV) back as float32 samples and its rate."""
    from gaiverse.personalization.media_features import decode_audio_bytes

    audio, rate = decode_audio_bytes(wav)
    return audio.astype(np.float32), int(rate)


def voice_wav(audio: np.ndarray, rate: int) -> bytes:
    return pcm16_wav(float_to_pcm16(audio), rate)


def create(source: CreationSource, params: AvatarParams, text: str = GREETING, mp4: bool = True,
           extras: dict[str, Any] | None = None, voice: tuple[np.ndarray, int] | None = None) -> Creation:
    """All four engines in order, with the wall time of each (ms); ``extras`` (e.g. the avatar id) go into
    the .glb's scene extras beside the parameters. ``voice`` (samples, rate) reuses a sample made with
    the same voice parameters (``same_voice``) instead of synthesising it again: the voice conversion's
    timbre search is the slowest engine step."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    model = build_portrait(source, params)
    timings["portrait"] = _ms(t)
    t = time.perf_counter()
    audio, rate = voice if voice is not None else make_voice(source, params, text)
    timings["voice"] = _ms(t)
    t = time.perf_counter()
    glb, vrm, stats = export(model, make_clips(source, audio, rate, params.expressiveness), extras)
    timings["animation"] = _ms(t)
    t = time.perf_counter()
    png, video = render(glb, mp4=mp4)
    timings["render"] = _ms(t)
    timings["total"] = round(sum(timings.values()), 1)
    log.info("avatar created in %.0f ms (%s)", timings["total"], ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    return Creation(glb=glb, vrm=vrm, voice_wav=voice_wav(audio, rate), turntable_png=png, turntable_mp4=video,
                    stats={**stats, "voice_s": round(len(audio) / rate, 2)}, timings_ms=timings)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)
