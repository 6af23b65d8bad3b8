"""Avatar animation clips on real GRID talking-face clips: lip sync from the voice, head and upper-body
motion from video."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.avatar.analysis import analyse_capture
from gaiverse.avatar.animation import (BODY_LIMITS_DEG, HEAD_MOTION_CLIP, TALK_CLIP, body_track_from_frames,
                                       clean_body_track, clean_track, head_motion_clip, pose_track_from_analysis,
                                       pose_track_from_frames, talk_clip)
from gaiverse.avatar.lipsync_model import FeatureExtractor
from gaiverse.character import build_character
from gaiverse.character.animation import CLIPS
from gaiverse.character.gltf_writer import read_accessor, read_glb
from gaiverse.character.transforms import IDENTITY, multiply, rotate
from gaiverse.config import REPO_ROOT
from gaiverse.vision.video import decode
from validation.gltf import validate_glb

GRID = REPO_ROOT / "data/avatar/grid"
ALIGN = GRID / "swwp2s.align"


@pytest.fixture(scope="module")
def talker():
    """GRID talker 'set white with p two soon' (word alignment available): 75 frames, 3 s of audio."""
    sample = decode(GRID / "id2_vcd_swwp2s.mpg", max_frames=75)
    assert sample.audio is not None and len(sample.frames) == 75
    return sample


@pytest.fixture(scope="module")
def track(talker) -> np.ndarray:
    return pose_track_from_frames(talker.frames)


@pytest.fixture(scope="module")
def body_track(talker) -> np.ndarray:
    return body_track_from_frames(talker.frames)


@pytest.fixture(scope="module")
def avatar_glb(talker, track, body_track) -> bytes:
    character = build_character()
    character.clips += [talk_clip(talker.audio, 16_000), head_motion_clip(track, talker.fps, body_track=body_track)]
    return character.glb("avatar", {"gaiverse": {"avatar": "test"}})


def _channels(gltf: dict, blob: bytes, clip: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(node name, path) -> (key times, values) of one animation read back from the .glb."""
    anim = next(a for a in gltf["animations"] if a["name"] == clip)
    out = {}
    for channel in anim["channels"]:
        sampler = anim["samplers"][channel["sampler"]]
        node = gltf["nodes"][channel["target"]["node"]]["name"]
        out[(node, channel["target"]["path"])] = (read_accessor(gltf, blob, sampler["input"]),
                                                  read_accessor(gltf, blob, sampler["output"]))
    return out


def _yaw_pitch_of_head(neck: np.ndarray, head: np.ndarray) -> np.ndarray:
    """(K, 2) yaw (towards the avatar's left, +X) and pitch (chin up) of the head's forward axis."""
    forward = np.array([rotate(multiply(n, h), [0.0, 0.0, 1.0]) for n, h in zip(neck, head)])
    return np.degrees(np.stack([np.arctan2(forward[:, 0], forward[:, 2]), np.arcsin(forward[:, 1])], 1))


def _chain(channels: dict, parents: tuple[str, ...], joint: str) -> tuple[np.ndarray, np.ndarray]:
    """(K, 4) composed rotation of ``parents`` (in order, root first) and (K, 4) ``joint`` rotations."""
    rotations = [channels[(name, "rotation")][1].reshape(-1, 4) for name in parents + (joint,)]
    composed = [IDENTITY] * rotations[0].shape[0]
    for rotation in rotations[:-1]:
        composed = [multiply(c, r) for c, r in zip(composed, rotation)]
    return np.array(composed), rotations[-1]


def _torso_angles(spine: np.ndarray, chest: np.ndarray) -> np.ndarray:
    """(K, 3) roll (top tipped towards +X), lean (towards +Z) and yaw (forward towards +X) of the chest, degrees."""
    up = np.array([rotate(multiply(s, c), [0.0, 1.0, 0.0]) for s, c in zip(spine, chest)])
    forward = np.array([rotate(multiply(s, c), [0.0, 0.0, 1.0]) for s, c in zip(spine, chest)])
    return np.degrees(np.stack([np.arcsin(up[:, 0]), np.arcsin(up[:, 2]),
                                np.arctan2(forward[:, 0], forward[:, 2])], 1))


def _pose_array(clip, joint: str) -> np.ndarray:
    return np.array([p.get(joint, IDENTITY) for p in clip.poses])


def test_avatar_glb_with_talk_and_head_motion_passes_the_khronos_validator(avatar_glb, talker, artifacts_dir):
    (artifacts_dir / "avatar_animated.glb").write_bytes(avatar_glb)
    report = validate_glb(avatar_glb)
    assert report.errors == [], report.summary()
    assert report.warnings == [], report.warnings[:5]
    assert report.info["animationCount"] == len(CLIPS) + 2
    gltf, blob = read_glb(avatar_glb)
    talk = _channels(gltf, blob, TALK_CLIP)
    morph_times, _ = talk[("avatar_head", "weights")]
    # the clip ends with the audio, so a player starting both together stays in sync
    assert morph_times[-1] == pytest.approx(talker.audio.size / 16_000, abs=1e-4)
    assert {("neck", "rotation"), ("head", "rotation")} <= set(talk)
    assert not {("spine", "rotation"), ("chest", "rotation")} & set(talk)  # talking leaves the body to the idle
    assert set(_channels(gltf, blob, HEAD_MOTION_CLIP)) == {
        (joint, "rotation") for joint in ("spine", "chest", "leftShoulder", "rightShoulder", "neck", "head")}


def test_talk_mouth_opens_with_the_real_voice(talker):
    audio = talker.audio
    clip = talk_clip(audio, 16_000, fps=50)
    assert clip.duration == pytest.approx(audio.size / 16_000) and clip.morph_keys[-1][0] == clip.duration
    times = np.array([t for t, _ in clip.morph_keys])
    jaw = np.array([w["jawOpen"] for _, w in clip.morph_keys])
    assert all(0.0 <= v <= 1.0 for _, w in clip.morph_keys for v in w.values())
    rms = FeatureExtractor.rms(audio)
    energy_db = 20 * np.log10(np.convolve(rms, np.ones(4) / 4, mode="same") + 1e-5)

    def corr(shift_s: float) -> float:
        shifted = np.interp(times + shift_s, np.arange(rms.size) * 0.01, energy_db)
        return float(np.corrcoef(jaw, shifted)[0, 1])

    shifts = np.arange(-0.3, 0.31, 0.02)
    curve = np.array([corr(s) for s in shifts])
    assert corr(0.0) > 0.4, corr(0.0)
    assert abs(shifts[curve.argmax()]) <= 0.06, curve  # in time with the audio, not merely during speech
    assert corr(0.0) > max(curve[0], curve[-1]) + 0.15, curve
    # inside the aligned words the jaw is open more than in the silences around them
    words = np.zeros(times.size, bool)
    for line in ALIGN.read_text().splitlines():
        start, end, word = line.split()
        if word != "sil":
            words |= (times >= int(start) / 25_000) & (times < int(end) / 25_000)
    assert jaw[words].mean() > 1.3 * jaw[~words].mean(), (jaw[words].mean(), jaw[~words].mean())
    # blinks close both eyes and nods stay small
    assert max(w["eyeBlinkLeft"] for _, w in clip.morph_keys) == pytest.approx(1.0, abs=0.2)
    nod_deg = [2 * np.degrees(np.arccos(np.clip(abs(p["head"][3]), 0, 1))) / 0.6 for p in clip.poses]
    assert 1.0 < max(nod_deg) <= 12.0


def test_head_motion_follows_the_measured_pose_track(avatar_glb, track, talker):
    assert np.isfinite(track).all(1).sum() >= 70
    gltf, blob = read_glb(avatar_glb)
    channels = _channels(gltf, blob, HEAD_MOTION_CLIP)
    times, _ = channels[("neck", "rotation")]
    assert times.size == track.shape[0]
    assert times[-1] == pytest.approx((track.shape[0] - 1) / talker.fps, abs=1e-4)
    # the head's orientation in the model (through spine and chest) is the measured one
    angles = _yaw_pitch_of_head(*_chain(channels, ("spine", "chest", "neck"), "head"))
    measured = track - np.nanmedian(track, 0)
    ok = np.isfinite(measured).all(1)
    assert np.corrcoef(angles[ok, 0], measured[ok, 0])[0, 1] > 0.7
    assert np.corrcoef(angles[ok, 1], measured[ok, 1])[0, 1] > 0.7
    # the same video mirrored turns the avatar the other way
    mirrored = pose_track_from_frames([np.ascontiguousarray(f[:, ::-1]) for f in talker.frames[:40]])
    clip = head_motion_clip(mirrored, talker.fps)
    yaw_mirrored = _yaw_pitch_of_head(np.array([p["neck"] for p in clip.poses]),
                                      np.array([p["head"] for p in clip.poses]))[:, 0]
    assert np.corrcoef(yaw_mirrored, angles[:40, 0])[0, 1] < -0.5


def test_retargeting_keeps_the_pose_conventions():
    """Known turns: yaw + (towards the user's left) turns the avatar to its left (+X), pitch + (chin up)
    raises its gaze, roll + (towards the left shoulder) tips its crown to +X; neck and head share it."""
    t = np.arange(50) / 25.0
    track = np.stack([30 * np.sin(np.pi * t), 15 * np.cos(np.pi * t), np.full_like(t, 10.0)], 1)
    clip = head_motion_clip(track, 25.0, smooth_s=0.0, centre=False)
    neck = np.array([p["neck"] for p in clip.poses])
    head = np.array([p["head"] for p in clip.poses])
    angles = _yaw_pitch_of_head(neck, head)
    assert np.abs(angles[:, 0] - track[:, 0]).max() < 6.0  # roll couples a little into the forward axis
    assert np.abs(angles[:, 1] - track[:, 1]).max() < 6.0
    crown = np.array([rotate(multiply(n, h), [0.0, 1.0, 0.0]) for n, h in zip(neck, head)])
    no_yaw = np.abs(track[:, 0]) < 1e-6
    assert no_yaw.sum() == 2 and (crown[no_yaw, 0] > 0).all()  # roll +10, no yaw: the crown tips to +X
    neck_deg = 2 * np.degrees(np.arccos(np.clip(np.abs(neck[:, 3]), 0, 1)))
    head_deg = 2 * np.degrees(np.arccos(np.clip(np.abs(head[:, 3]), 0, 1)))
    assert neck_deg / np.maximum(neck_deg + head_deg, 1e-9) == pytest.approx(np.full(50, 0.4), abs=0.01)


def _rolled(frames: list[np.ndarray], roll_deg: np.ndarray) -> list[np.ndarray]:
    """Frames turned clockwise on screen by ``roll_deg`` (the user's roll convention) about the chest."""
    import cv2

    h, w = frames[0].shape[:2]
    return [cv2.warpAffine(f, cv2.getRotationMatrix2D((w / 2, 0.7 * h), -float(a), 1.0), (w, h),
                           borderMode=cv2.BORDER_REPLICATE) for f, a in zip(frames, roll_deg)]


def test_body_motion_follows_the_shoulder_roll_and_mirroring_flips_it(talker):
    """The real talker rocked side to side (the frames turned ±8 degrees, 1 Hz): the measured shoulder
    roll follows, the avatar's chest tips the same way, the head keeps the measured pose, and the
    mirrored video tips it the other way."""
    frames, fps = talker.frames[:50], talker.fps
    applied = 8.0 * np.sin(2 * np.pi * np.arange(50) / fps)
    rolled = _rolled(frames, applied)
    body = body_track_from_frames(rolled)
    assert np.isfinite(body).all()
    measured_roll = body[:, 0] - np.median(body[:, 0])
    assert np.corrcoef(measured_roll, applied)[0, 1] > 0.8
    assert 3.0 < np.ptp(measured_roll) / 2 < 12.0  # about the applied amplitude, not a trace of it
    head = pose_track_from_frames(rolled)
    clip = head_motion_clip(head, fps, body_track=body)
    torso = _torso_angles(_pose_array(clip, "spine"), _pose_array(clip, "chest"))
    assert np.corrcoef(torso[:, 0], measured_roll)[0, 1] > 0.9
    assert np.abs(torso).max() <= BODY_LIMITS_DEG[:2].max() + 1.0
    # spine and chest share the roll 40/60, as the head shares with the neck
    spine_deg = 2 * np.degrees(np.arccos(np.clip(np.abs(_pose_array(clip, "spine")[:, 3]), 0, 1)))
    chest_deg = 2 * np.degrees(np.arccos(np.clip(np.abs(_pose_array(clip, "chest")[:, 3]), 0, 1)))
    big = chest_deg > 1.0
    assert np.median(spine_deg[big] / chest_deg[big]) == pytest.approx(0.4 / 0.6, abs=0.05)
    # through the turned chest the head still ends at the measured pose (not the sum of both)
    world = np.array([multiply(multiply(s, c), multiply(n, h)) for s, c, n, h in zip(
        *(_pose_array(clip, j) for j in ("spine", "chest", "neck", "head")))])
    crown_roll = np.degrees(np.arcsin([rotate(q, [0.0, 1.0, 0.0])[0] for q in world]))
    head_roll = clean_track(head, fps)[:, 2]
    assert np.abs(crown_roll - head_roll).max() < 3.0
    # the same video mirrored tips the avatar the other way
    mirrored = body_track_from_frames([np.ascontiguousarray(f[:, ::-1]) for f in rolled])
    mirrored_clip = head_motion_clip(head, fps, body_track=mirrored)
    mirrored_roll = _torso_angles(_pose_array(mirrored_clip, "spine"), _pose_array(mirrored_clip, "chest"))[:, 0]
    assert np.corrcoef(mirrored_roll, torso[:, 0])[0, 1] < -0.8


def test_frames_without_a_body_hold_the_rest_pose(talker, track):
    """Face-only framing (the face cropped and enlarged, as a close webcam sees it) and empty frames:
    no shoulders, so the body stays at rest, while the head still moves."""
    import cv2

    frames = talker.frames[:40]
    h, w = frames[0].shape[:2]
    face_only = [cv2.resize(np.ascontiguousarray(f[110:255, 125:235]), (w, h)) for f in frames[20:]]
    body = body_track_from_frames(frames[:20] + face_only)
    assert np.isfinite(body[:20]).all(1).sum() >= 18 and not np.isfinite(body[20:]).any()
    clip = head_motion_clip(track[:40], talker.fps, body_track=body)
    rest = clip.poses[20 + 15:]  # past the smoothing's reach (4 sigma of 0.15 s at 25 fps)
    for joint in ("spine", "chest", "leftShoulder", "rightShoulder"):
        assert all(np.allclose(p[joint], IDENTITY, atol=1e-6) for p in rest), joint
    assert max(abs(p["head"][1]) for p in clip.poses) > 1e-3  # the head keeps the measured motion
    empty = body_track_from_frames([np.full_like(frames[0], 128)] * 10)
    assert np.isnan(empty).all()
    still = head_motion_clip(track[:10], talker.fps, body_track=empty)
    assert all(np.allclose(p["chest"], IDENTITY) and np.allclose(p["spine"], IDENTITY) for p in still.poses)


def test_body_retargeting_conventions():
    """Known body poses: roll + tips the chest's top to the avatar's left (+X), lean + forward (+Z),
    yaw + turns it to its left; a shrug lifts both clavicles; the head pose is kept in the model."""
    n = 40
    body = np.zeros((n, 4))
    body[:10, 0], body[10:20, 2], body[20:30, 1], body[30:, 3] = 10.0, 10.0, 15.0, 8.0
    clip = head_motion_clip(np.zeros((n, 3)), 25.0, smooth_s=0.0, centre=False, body_track=body)
    torso = _torso_angles(_pose_array(clip, "spine"), _pose_array(clip, "chest"))
    assert torso[:10, 0] == pytest.approx(np.full(10, 10.0), abs=0.1)
    assert torso[10:20, 1] == pytest.approx(np.full(10, 10.0), abs=0.1)
    assert torso[20:30, 2] == pytest.approx(np.full(10, 15.0), abs=0.1)
    left_tip = np.array([rotate(p["leftShoulder"], [1.0, 0.0, 0.0]) for p in clip.poses[30:]])
    right_tip = np.array([rotate(p["rightShoulder"], [-1.0, 0.0, 0.0]) for p in clip.poses[30:]])
    assert (left_tip[:, 1] > 0.1).all() and (right_tip[:, 1] > 0.1).all()
    # the head looks straight ahead in the model however the torso turns
    world = [multiply(multiply(p["spine"], p["chest"]), multiply(p["neck"], p["head"])) for p in clip.poses]
    assert all(np.allclose(rotate(q, [0.0, 0.0, 1.0]), [0.0, 0.0, 1.0], atol=1e-6) for q in world)


def test_clean_body_track_bridges_short_dropouts_and_clamps():
    track = np.zeros((100, 4))
    track[:, 0] = 40.0 * np.sin(np.arange(100) / 10.0)  # beyond the plausible roll
    track[30:34] = np.nan  # 4 frames at 25 fps: bridged
    track[60:90] = np.nan  # 1.2 s: rest
    clean = clean_body_track(track, 25.0, smooth_s=0.0, centre=False)
    assert np.isfinite(clean).all() and np.abs(clean[:, 0]).max() <= BODY_LIMITS_DEG[0]
    assert (np.abs(clean[31:33, 0]) > 1.0).all()
    assert np.allclose(clean[62:88], 0.0)


def test_creation_source_carries_the_body_track(talker):
    """The creation source measures the body on the capture frames, survives its sealed .npz form and
    puts the body into the head_motion clip."""
    from gaiverse.avatar.creation import CreationSource, make_clips

    frames = talker.frames[:25]
    analysis = analyse_capture(frames, None, 16_000, transcribe=False, body=False)
    source = CreationSource.from_bytes(CreationSource.from_analysis(analysis, frames, 1.0).to_bytes())
    assert source.body_track is not None and source.body_track.shape == (25, 4)
    assert np.isfinite(source.body_track).all(1).sum() >= 23
    clips = {c.name: c for c in make_clips(source, talker.audio[:16_000], 16_000)}
    assert {"spine", "chest", "neck", "head"} <= set(clips[HEAD_MOTION_CLIP].joints())
    assert not {"spine", "chest"} & set(clips[TALK_CLIP].joints())


def test_pose_track_from_the_analysis_json_equals_the_frames_track(talker, track):
    analysis = analyse_capture(talker.frames[:20], None, 16_000, transcribe=False, body=False)
    from_json = pose_track_from_analysis(analysis.to_json())
    assert from_json.shape == (20, 3)
    ok = np.isfinite(from_json).all(1)
    assert ok.sum() >= 18
    assert np.abs(from_json[ok] - track[:20][ok]).max() < 0.05


def test_clean_track_fills_gaps_and_smooths():
    rng = np.random.default_rng(0)
    track = np.stack([np.linspace(-20, 20, 100)] * 3, 1) + rng.normal(0, 2, (100, 3))
    track[40:45] = np.nan
    clean = clean_track(track, 25.0, smooth_s=0.1)
    assert np.isfinite(clean).all() and np.abs(np.median(clean, 0)).max() < 2.0
    assert np.diff(clean[:, 0]).std() < 0.5 * np.diff(np.nan_to_num(track[:, 0])).std()


@pytest.mark.parametrize("call, message", [
    (lambda: head_motion_clip(np.zeros((10, 2)), 25.0), "yaw_pitch_roll_deg"),
    (lambda: head_motion_clip(np.full((10, 3), np.nan), 25.0), "no finite row"),
    (lambda: head_motion_clip(np.zeros((10, 3)), 0.0), "fps"),
    (lambda: talk_clip(np.zeros((100, 2)), 16_000), "mono"),
    (lambda: talk_clip(np.zeros(16_000), 16_000, fps=500), "fps"),
    (lambda: talk_clip(np.full(16_000, np.nan), 16_000), "NaN"),
    (lambda: pose_track_from_analysis({"n_frames": 3}), "head_pose"),
    (lambda: head_motion_clip(np.zeros((10, 3)), 25.0, body_track=np.zeros((9, 4))), "body_track"),
    (lambda: clean_body_track(np.zeros((10, 3)), 25.0), "body_track"),
    (lambda: body_track_from_frames([]), "frames"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
