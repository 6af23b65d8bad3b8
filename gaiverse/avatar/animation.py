"""The avatar's animation clips (AV-c1): lip sync from its voice and head motion from the capture.

Both return ``gaiverse.character.animation.Clip`` objects, which the character's .glb writer exports
next to its idle and gestures:

- ``talk_clip``: the trained audio-to-blendshape model (``gaiverse.avatar.lipsync_model``, the shipped
  checkpoint) on the avatar's own voice gives the 8 ARKit mouth weights every 10 ms; they are sampled
  at ``fps`` as morph keys. Light head nods follow the syllabic energy (the fast envelope above the
  slow one, in dB), split between neck and head, and the eyes blink every few seconds. The clip lasts
  exactly as long as the audio, so a player starting both together stays in sync. No viseme keys: the
  face's ``viseme_*`` targets are fixed mixes of the same ARKit targets, so keying both would move the
  mouth twice.
- ``head_motion_clip``: a per-frame head pose track (yaw, pitch, roll in degrees, the conventions of
  ``gaiverse.avatar.head_pose``), gaps filled, centred on its median (a webcam is rarely straight in
  front of the face, and the avatar should not keep that offset), clamped to a comfortable range,
  smoothed (Gaussian, landmark jitter is frame-to-frame), and shared between the neck (40 %) and the
  head (60 %) about one axis, so the two compose to the measured rotation.

``pose_track_from_frames`` / ``pose_track_from_analysis`` give that track from video frames or from the
capture analysis JSON.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from gaiverse.character.animation import Clip, Pose
from gaiverse.character.transforms import IDENTITY, euler, slerp

TALK_CLIP = "talk"
HEAD_MOTION_CLIP = "head_motion"
NECK_SHARE = 0.4
"""Share of a head rotation the neck takes (the rest is the head joint's)."""
NOD_DEG = 4.0
"""Peak head pitch of an energy nod at expressiveness 0.5 (doubles at 1.0)."""
BLINK_PERIOD_S, BLINK_FIRST_S, BLINK_S = 3.7, 1.3, 0.16
"""A blink every 3.7 s (adults blink ~15-20 times a minute), the first at 1.3 s, closed-to-open 160 ms."""
POSE_LIMITS_DEG = np.array([60.0, 40.0, 30.0])
"""Largest yaw, pitch, roll a retargeted head turns (beyond: an outlier or a profile view)."""


# -- talk -------------------------------------------------------------------------------------------------

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def lipsync_model(path: str | Path | None = None):
    """The lip-sync model (default: the shipped ``checkpoints/lipsync``), loaded once per process."""
    from gaiverse.avatar.lipsync_model import LipsyncModel

    key = str(path or "default")
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = LipsyncModel.load(path)
        return _MODELS[key]


def key_times(duration_s: float, fps: float) -> np.ndarray:
    """0, 1/fps, ... and the exact end, so a clip lasts ``duration_s``."""
    times = np.arange(0.0, duration_s, 1.0 / fps)
    if duration_s - times[-1] > 1e-6:
        times = np.append(times, duration_s)
    return times


def energy_nods(audio16k: np.ndarray, times: np.ndarray, expressiveness: float = 0.5) -> np.ndarray:
    """Head pitch (degrees, + = down) at ``times``: the 10 ms energy envelope (dB, 40 dB floor under its
    peak) smoothed over 100 ms minus over 600 ms, positive part, scaled to ``NOD_DEG`` at its 95th
    percentile. Stressed syllables stand out of the slow envelope, so the head dips on them."""
    from gaiverse.avatar.lipsync_model import FeatureExtractor

    rms = FeatureExtractor.rms(audio16k)
    if rms.size < 3 or rms.max() <= 0:
        return np.zeros_like(times)
    db = 20 * np.log10(np.maximum(rms, rms.max() * 1e-2))
    level = (db - db.max() + 40.0) / 40.0

    def smooth(x: np.ndarray, frames: int) -> np.ndarray:
        kernel = np.ones(max(1, frames)) / max(1, frames)
        padded = np.pad(x, (frames // 2, frames - 1 - frames // 2), mode="edge")
        return np.convolve(padded, kernel, mode="valid")

    emphasis = np.maximum(smooth(level, 10) - smooth(level, 60), 0.0)
    top = np.percentile(emphasis, 95)
    if top <= 1e-6:
        return np.zeros_like(times)
    nod = np.clip(emphasis / top, 0.0, 1.5) * NOD_DEG * 2 * float(np.clip(expressiveness, 0.0, 1.0))
    return np.interp(times, np.arange(rms.size) * 0.01, nod)


def blinks(times: np.ndarray) -> np.ndarray:
    """Eye-blink weight at ``times``: triangles of ``BLINK_S`` every ``BLINK_PERIOD_S``."""
    phase = (times - BLINK_FIRST_S) % BLINK_PERIOD_S
    started = times >= BLINK_FIRST_S
    return np.where(started, np.clip(1.0 - np.abs(phase - BLINK_S / 2) / (BLINK_S / 2), 0.0, 1.0), 0.0)


def split_neck_head(rotation: np.ndarray, neck_share: float = NECK_SHARE) -> Pose:
    """Neck and head rotations about the rotation's own axis that compose (neck * head) to it."""
    return {"neck": slerp(IDENTITY, rotation, neck_share),
            "head": slerp(IDENTITY, rotation, 1.0 - neck_share)}


def talk_clip(audio: np.ndarray, sr: int, fps: float = 50.0, expressiveness: float = 0.5,
              model_path: str | Path | None = None) -> Clip:
    """The "talk" clip for mono float ``audio`` at ``sr`` Hz: ARKit mouth weights from the lip-sync
    model, energy nods and blinks, keyed at ``fps``; its duration is the audio's."""
    from gaiverse.avatar.lipsync_model import FRAME_MS, SAMPLE_RATE
    from gaiverse.avatar.lipsync_targets import BLENDSHAPES
    from gaiverse.speech.asr import resample

    audio = _check_audio(audio, sr)
    if not 1.0 <= float(fps) <= 1000.0 / FRAME_MS:
        raise ValueError(f"`fps` must be within 1..{1000 / FRAME_MS:.0f} (the model's frame rate), got {fps}")
    if not 0.0 <= float(expressiveness) <= 1.0:
        raise ValueError(f"`expressiveness` must be within 0..1, got {expressiveness}")
    x = resample(audio.astype(np.float32), int(sr), SAMPLE_RATE)
    weights = lipsync_model(model_path).predict_blendshapes(x)  # (n, 8), frame i at 10 i ms
    duration = audio.size / float(sr)
    times = key_times(duration, float(fps))
    frame_times = np.arange(weights.shape[0]) * FRAME_MS / 1000.0
    mouth = np.stack([np.interp(times, frame_times, weights[:, k]) for k in range(len(BLENDSHAPES))], 1)
    blink = blinks(times)
    nods = energy_nods(x, times, expressiveness)
    morph_keys = [(float(t), {**{name: round(float(w), 4) for name, w in zip(BLENDSHAPES, row)},
                              "eyeBlinkLeft": round(float(b), 4), "eyeBlinkRight": round(float(b), 4)})
                  for t, row, b in zip(times, mouth, blink)]
    poses = [split_neck_head(euler(x=float(n))) for n in nods]
    return Clip(TALK_CLIP, [float(t) for t in times], poses, loop=False, morph_keys=morph_keys)


def _check_audio(audio: np.ndarray, sr: int) -> np.ndarray:
    if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"`audio` must be a non-empty mono 1-D float array, got "
                         f"{getattr(audio, 'shape', type(audio).__name__)}")
    if not 8000 <= int(sr) <= 96_000:
        raise ValueError(f"`sr` must be 8000..96000 Hz, got {sr}")
    if audio.size < 0.05 * sr:
        raise ValueError(f"`audio` lasts {audio.size / sr:.3f} s: need at least 0.05 s")
    if not np.isfinite(audio).all():
        raise ValueError("`audio` holds NaN or infinite samples")
    return audio


# -- head motion ------------------------------------------------------------------------------------------

def retarget_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """The avatar's head rotation (glTF quaternion, +Y up, facing +Z, +X its left) for a head pose in the
    conventions of ``gaiverse.avatar.head_pose``: the camera's axes are the avatar's with y and z
    flipped, so pitch (chin up) and roll (towards the left shoulder) change sign and yaw does not."""
    return euler(x=-pitch_deg, y=yaw_deg, z=-roll_deg)


def clean_track(yaw_pitch_roll_deg: np.ndarray, fps: float, smooth_s: float = 0.1,
                centre: bool = True) -> np.ndarray:
    """(T, 3) track with NaN rows (no face) interpolated, the median removed (``centre``), clamped to
    ``POSE_LIMITS_DEG`` and smoothed with a Gaussian of ``smooth_s`` seconds."""
    from scipy.ndimage import gaussian_filter1d

    track = np.array(yaw_pitch_roll_deg, dtype=np.float64)
    if track.ndim != 2 or track.shape[1] != 3 or track.shape[0] < 2:
        raise ValueError(f"`yaw_pitch_roll_deg` must be (T >= 2, 3) degrees, got shape {track.shape}")
    if not 1.0 <= float(fps) <= 240.0:
        raise ValueError(f"`fps` must be within 1..240, got {fps}")
    if not 0.0 <= float(smooth_s) <= 2.0:
        raise ValueError(f"`smooth_s` must be within 0..2 s, got {smooth_s}")
    found = np.isfinite(track).all(1)
    if found.sum() < 1:
        raise ValueError("`yaw_pitch_roll_deg` has no finite row (no face in any frame)")
    index = np.arange(track.shape[0])
    track = np.stack([np.interp(index, index[found], track[found, k]) for k in range(3)], 1)
    if centre:
        track -= np.median(track[found], axis=0)
    track = np.clip(track, -POSE_LIMITS_DEG, POSE_LIMITS_DEG)
    sigma = smooth_s * float(fps)
    return gaussian_filter1d(track, sigma, axis=0, mode="nearest") if sigma > 0.3 else track


def head_motion_clip(yaw_pitch_roll_deg: np.ndarray, fps: float, smooth_s: float = 0.1,
                     centre: bool = True, neck_share: float = NECK_SHARE) -> Clip:
    """The "head_motion" clip: one key per track frame (1/``fps`` apart) with neck and head rotations
    retargeted from the cleaned track (``clean_track``)."""
    if not 0.0 <= float(neck_share) <= 1.0:
        raise ValueError(f"`neck_share` must be within 0..1, got {neck_share}")
    track = clean_track(yaw_pitch_roll_deg, fps, smooth_s, centre)
    poses = [split_neck_head(retarget_rotation(*row), neck_share) for row in track]
    times = [float(i / fps) for i in range(track.shape[0])]
    return Clip(HEAD_MOTION_CLIP, times, poses, loop=False)


def pose_track_from_frames(frames: list[np.ndarray]) -> np.ndarray:
    """(T, 3) yaw, pitch, roll (degrees) per RGB frame of one clip: MediaPipe face mesh (tracking across
    frames) then ``head_pose``; NaN where no face or the pose fit is poor (as the analysis rejects)."""
    from gaiverse.avatar.analysis import MAX_REPROJECTION_IOD, face_landmarks
    from gaiverse.avatar.head_pose import head_pose

    if not frames:
        raise ValueError("`frames` is empty")
    landmarks, _ = face_landmarks(list(frames), video=True)
    height, width = frames[0].shape[:2]
    out = np.full((len(frames), 3), np.nan)
    for i, lm in enumerate(landmarks):
        if lm is None:
            continue
        try:
            pose = head_pose(lm, (width, height))
        except ValueError:
            continue
        if pose.reprojection_iod < MAX_REPROJECTION_IOD:
            out[i] = (pose.yaw_deg, pose.pitch_deg, pose.roll_deg)
    return out


def pose_track_from_analysis(analysis: Any) -> np.ndarray:
    """(n_frames, 3) track from a ``CaptureAnalysis`` or its JSON (``head_pose.value.per_frame``), NaN
    for frames without a usable face."""
    if hasattr(analysis, "to_json"):
        analysis = analysis.to_json()
    if not isinstance(analysis, dict) or "n_frames" not in analysis or "head_pose" not in analysis:
        raise ValueError("`analysis` must be a CaptureAnalysis or its to_json() dict (n_frames, head_pose)")
    out = np.full((int(analysis["n_frames"]), 3), np.nan)
    for index, yaw, pitch, roll in (analysis["head_pose"].get("value") or {}).get("per_frame", []):
        out[int(index)] = (yaw, pitch, roll)
    return out
