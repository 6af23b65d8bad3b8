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

Upper-body motion goes into the same "head_motion" clip (``head_motion_clip(..., body_track=...)``), so
the clip the player already knows turns the torso too, and "talk" (neck/head and morphs only) is
untouched. ``body_track_from_frames`` measures per frame, from MediaPipe pose
(``gaiverse.avatar.analysis.body_poses``): the shoulder line's roll in the image, the torso's yaw from
the shoulders' depth (world landmarks), its forward lean (hips -> shoulders when the hips are visible,
else the shoulders' height change over a typical torso length) and a shrug (shoulders rising towards
the ears). The track is centred, clamped to ``BODY_LIMITS_DEG``, smoothed, and split between spine
(40 %) and chest (60 %; the rig has no upperChest); the shrug turns both clavicles. The head joints
then take the head pose *relative to the chest*, so the head still ends where the video shows it.
Frames without a body hold the rest pose (short dropouts are bridged).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from gaiverse.character.animation import Clip, Pose
from gaiverse.character.transforms import IDENTITY, euler, inverse, multiply, slerp

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
BODY_COLUMNS = ("roll", "yaw", "lean", "shrug")
"""Columns of a body track (degrees): shoulder-line roll (+ towards the user's left shoulder, as head
roll), torso yaw (+ towards the user's left, as head yaw), forward lean (+ towards the camera) and
shrug (+ shoulders raised)."""
BODY_LIMITS_LOW_DEG = np.array([-15.0, -25.0, -10.0, -6.0])
BODY_LIMITS_DEG = np.array([15.0, 25.0, 15.0, 12.0])
"""Plausible range of each body column for a seated/standing talker (beyond: the tracker lost the body)."""
BODY_SMOOTH_FACTOR = 1.5
"""The body track is smoothed over 1.5 times the head's window: a torso moves slower, and its
landmarks jitter more (fewer, larger, partly occluded)."""
SPINE_SHARE = 0.4
"""Share of a torso rotation the spine takes (the chest takes the rest)."""
BODY_MIN_VISIBILITY = 0.5
"""MediaPipe visibility under which a landmark counts as not seen."""
BODY_MAX_GAP_S = 0.5
"""Dropouts of the body up to this long are bridged; longer ones hold the rest pose."""
MIN_SHOULDERS_PER_EARS = 1.8
"""Shoulder width over ear-to-ear distance below which the "shoulders" are not a body: adults measure
~2.6 (biacromial ~39 cm, head ~15 cm); MediaPipe's tracker, once the body leaves a face-only frame,
keeps guessing shoulders at ~1.1-1.5."""
SHOULDER_MARGIN = 0.1
"""How far outside the frame (fraction of its size) a shoulder joint may be: the joint sits below the
visible shoulder line, often just under the bottom edge of a head-and-shoulders frame."""
TORSO_PER_SHOULDER = 1.3
"""Shoulder-to-hip height over shoulder width (adult means ~0.50 m / ~0.39 m): the lever of a lean
when the hips are out of frame."""


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


def _check_track(track: Any, columns: int, name: str, fps: float, smooth_s: float) -> np.ndarray:
    track = np.array(track, dtype=np.float64)
    if track.ndim != 2 or track.shape[1] != columns or track.shape[0] < 2:
        raise ValueError(f"`{name}` must be (T >= 2, {columns}) degrees, got shape {track.shape}")
    if not 1.0 <= float(fps) <= 240.0:
        raise ValueError(f"`fps` must be within 1..240, got {fps}")
    if not 0.0 <= float(smooth_s) <= 2.0:
        raise ValueError(f"`smooth_s` must be within 0..2 s, got {smooth_s}")
    return track


def _smooth(track: np.ndarray, fps: float, smooth_s: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    sigma = smooth_s * float(fps)
    return gaussian_filter1d(track, sigma, axis=0, mode="nearest") if sigma > 0.3 else track


def clean_track(yaw_pitch_roll_deg: np.ndarray, fps: float, smooth_s: float = 0.1,
                centre: bool = True) -> np.ndarray:
    """(T, 3) track with NaN rows (no face) interpolated, the median removed (``centre``), clamped to
    ``POSE_LIMITS_DEG`` and smoothed with a Gaussian of ``smooth_s`` seconds."""
    track = _check_track(yaw_pitch_roll_deg, 3, "yaw_pitch_roll_deg", fps, smooth_s)
    found = np.isfinite(track).all(1)
    if found.sum() < 1:
        raise ValueError("`yaw_pitch_roll_deg` has no finite row (no face in any frame)")
    index = np.arange(track.shape[0])
    track = np.stack([np.interp(index, index[found], track[found, k]) for k in range(3)], 1)
    if centre:
        track -= np.median(track[found], axis=0)
    track = np.clip(track, -POSE_LIMITS_DEG, POSE_LIMITS_DEG)
    return _smooth(track, fps, smooth_s)


def clean_body_track(body_track: np.ndarray, fps: float, smooth_s: float = 0.15,
                     centre: bool = True) -> np.ndarray:
    """(T, 4) body track (``BODY_COLUMNS``) ready to retarget: the median of the frames with a body
    removed (``centre``: the camera is rarely square to the shoulders), dropouts up to
    ``BODY_MAX_GAP_S`` interpolated and longer ones (and a track with no body at all) at rest (0),
    clamped to ``BODY_LIMITS_DEG`` and smoothed (Gaussian, ``smooth_s`` seconds)."""
    track = _check_track(body_track, len(BODY_COLUMNS), "body_track", fps, smooth_s)
    found = np.isfinite(track).all(1)
    if not found.any():
        return np.zeros_like(track)
    if centre:
        track[found] -= np.median(track[found], axis=0)
    index = np.arange(track.shape[0])
    filled = np.stack([np.interp(index, index[found], track[found, k]) for k in range(track.shape[1])], 1)
    nearest_found = np.abs(index[:, None] - index[found][None, :])
    after = np.where(index[found][None, :] >= index[:, None], nearest_found, track.shape[0]).min(1)
    before = np.where(index[found][None, :] <= index[:, None], nearest_found, track.shape[0]).min(1)
    bridged = (before + after) <= BODY_MAX_GAP_S * float(fps) + 1  # a gap between two seen frames
    track = np.where((found | bridged)[:, None], filled, 0.0)
    track = np.clip(track, BODY_LIMITS_LOW_DEG, BODY_LIMITS_DEG)
    return _smooth(track, fps, smooth_s)


def body_rotation(roll_deg: float, yaw_deg: float, lean_deg: float) -> np.ndarray:
    """The chest's rotation in the model (spine * chest) for a body pose in ``BODY_COLUMNS``
    conventions: yaw turns it to its left (+X) like ``retarget_rotation``, roll tips its top towards
    +X, a forward lean towards +Z."""
    return euler(x=lean_deg, y=yaw_deg, z=-roll_deg)


def body_pose(row: np.ndarray, spine_share: float = SPINE_SHARE) -> Pose:
    """Spine, chest and clavicle rotations for one cleaned body-track row."""
    roll, yaw, lean, shrug = (float(v) for v in row)
    torso = body_rotation(roll, yaw, lean)
    return {"spine": slerp(IDENTITY, torso, spine_share), "chest": slerp(IDENTITY, torso, 1.0 - spine_share),
            "leftShoulder": euler(z=shrug), "rightShoulder": euler(z=-shrug)}


def head_motion_clip(yaw_pitch_roll_deg: np.ndarray, fps: float, smooth_s: float = 0.1,
                     centre: bool = True, neck_share: float = NECK_SHARE,
                     body_track: np.ndarray | None = None) -> Clip:
    """The "head_motion" clip: one key per track frame (1/``fps`` apart) with neck and head rotations
    retargeted from the cleaned track (``clean_track``). With ``body_track`` ((T, 4), ``BODY_COLUMNS``,
    same frames) it also turns spine, chest and clavicles (``clean_body_track``, smoothed over
    ``BODY_SMOOTH_FACTOR`` times ``smooth_s``), and neck + head take
    the head pose relative to the chest so the head's orientation in the model stays the measured one."""
    if not 0.0 <= float(neck_share) <= 1.0:
        raise ValueError(f"`neck_share` must be within 0..1, got {neck_share}")
    track = clean_track(yaw_pitch_roll_deg, fps, smooth_s, centre)
    if body_track is None:
        poses = [split_neck_head(retarget_rotation(*row), neck_share) for row in track]
    else:
        if np.shape(body_track)[:1] != track.shape[:1]:
            raise ValueError(f"`body_track` must have one row per head-pose frame ({track.shape[0]}), "
                             f"got shape {np.shape(body_track)}")
        body = clean_body_track(body_track, fps, BODY_SMOOTH_FACTOR * float(smooth_s), centre)
        poses = []
        for head_row, body_row in zip(track, body):
            torso = body_rotation(*body_row[:3])
            relative = multiply(inverse(torso), retarget_rotation(*head_row))
            poses.append({**body_pose(body_row), **split_neck_head(relative, neck_share)})
    times = [float(i / fps) for i in range(track.shape[0])]
    return Clip(HEAD_MOTION_CLIP, times, poses, loop=False)


def body_track_from_poses(poses: list) -> np.ndarray:
    """(T, 4) ``BODY_COLUMNS`` in degrees per ``gaiverse.avatar.analysis.BodyPose`` (NaN rows where no
    body or the shoulders are not seen).

    Roll is the shoulder line in the image (shoulders sorted by image side, so the tracker's left/right
    labels do not matter), yaw the shoulders' depth difference in the world landmarks. The lean is the
    world hips -> shoulders vector when the hips are seen in most frames, else the shoulders' image
    height change over ``TORSO_PER_SHOULDER`` shoulder widths (leaning towards a camera at face height
    lowers them). The shrug is the shoulders' rise towards the ears over half a shoulder width. The
    image-height measures (shrug, hip-less lean) are relative: about their median over the track."""
    from gaiverse.avatar.analysis import EARS, HIPS, SHOULDERS

    n = len(poses)
    roll, yaw, hip_lean, drop, rise = (np.full(n, np.nan) for _ in range(5))
    seen = lambda pose, ids: bool((pose.visibility[list(ids)] >= BODY_MIN_VISIBILITY).all())  # noqa: E731
    for i, pose in enumerate(poses):
        if pose is None or not seen(pose, SHOULDERS):
            continue
        left, right = sorted((pose.image[j] for j in SHOULDERS), key=lambda p: p[0])  # image left, right
        width = float(np.hypot(*(right[:2] - left[:2])))
        if width < 1.0 or not _plausible_shoulders(pose, width):
            continue
        roll[i] = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
        mid_y = (left[1] + right[1]) / 2
        drop[i] = np.degrees(mid_y / (TORSO_PER_SHOULDER * width))
        if seen(pose, EARS):
            rise[i] = np.degrees((pose.image[list(EARS), 1].mean() - mid_y) / (width / 2))
        yaw[i] = 0.0
        if pose.world is not None:
            w_left, w_right = sorted((pose.world[j] for j in SHOULDERS), key=lambda p: p[0])
            yaw[i] = np.degrees(np.arctan2(w_right[2] - w_left[2], w_right[0] - w_left[0]))
            if seen(pose, HIPS):
                up = (w_left + w_right) / 2 - pose.world[list(HIPS)].mean(0)  # world y down, z away
                hip_lean[i] = np.degrees(np.arctan2(-up[2], -up[1]))
    body = np.isfinite(roll)
    if not body.any():
        return np.full((n, len(BODY_COLUMNS)), np.nan)
    hips_mostly = np.isfinite(hip_lean[body]).mean() >= 0.8
    lean = np.where(np.isfinite(hip_lean), hip_lean, np.nanmedian(hip_lean)) if hips_mostly else \
        drop - np.nanmedian(drop)
    shrug = rise - np.nanmedian(rise) if np.isfinite(rise).any() else np.zeros(n)
    out = np.stack([roll, yaw, lean, np.nan_to_num(shrug)], 1)
    out[~body] = np.nan
    return out


def _plausible_shoulders(pose, width: float) -> bool:
    """Both shoulders within ``SHOULDER_MARGIN`` of the frame and, when the ears are seen, at least
    ``MIN_SHOULDERS_PER_EARS`` ear distances apart (else a guess of the tracker, not a body)."""
    from gaiverse.avatar.analysis import EARS, SHOULDERS

    frame_w, frame_h = pose.frame_size
    xy = pose.image[list(SHOULDERS), :2]
    lo = -SHOULDER_MARGIN * np.array([frame_w, frame_h])
    if (xy < lo).any() or (xy > np.array([frame_w, frame_h]) - lo).any():
        return False
    if (pose.visibility[list(EARS)] < BODY_MIN_VISIBILITY).any():
        return True
    ears = float(np.hypot(*(pose.image[EARS[0], :2] - pose.image[EARS[1], :2])))
    return width >= MIN_SHOULDERS_PER_EARS * ears


def body_track_from_frames(frames: list[np.ndarray], model_complexity: int = 1) -> np.ndarray:
    """(T, 4) body track of the RGB frames of one clip (``body_track_from_poses`` on MediaPipe pose
    tracked across the frames)."""
    from gaiverse.avatar.analysis import body_poses

    if not frames:
        raise ValueError("`frames` is empty")
    if model_complexity not in (0, 1, 2):
        raise ValueError(f"`model_complexity` must be 0, 1 or 2, got {model_complexity}")
    return body_track_from_poses(body_poses(list(frames), video=True, model_complexity=model_complexity))


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
