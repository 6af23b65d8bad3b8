"""Avatar animation clips on real GRID talking-face clips: lip sync from the voice, head motion from video."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.avatar.analysis import analyse_capture
from gaiverse.avatar.animation import (HEAD_MOTION_CLIP, TALK_CLIP, clean_track, head_motion_clip,
                                       pose_track_from_analysis, pose_track_from_frames, talk_clip)
from gaiverse.avatar.lipsync_model import FeatureExtractor
from gaiverse.character import build_character
from gaiverse.character.animation import CLIPS
from gaiverse.character.gltf_writer import read_accessor, read_glb
from gaiverse.character.transforms import multiply, rotate
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
def avatar_glb(talker, track) -> bytes:
    character = build_character()
    character.clips += [talk_clip(talker.audio, 16_000), head_motion_clip(track, talker.fps)]
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
    assert {("neck", "rotation"), ("head", "rotation")} == set(_channels(gltf, blob, HEAD_MOTION_CLIP))


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
    times, neck = channels[("neck", "rotation")]
    _, head = channels[("head", "rotation")]
    assert times.size == track.shape[0]
    assert times[-1] == pytest.approx((track.shape[0] - 1) / talker.fps, abs=1e-4)
    angles = _yaw_pitch_of_head(neck.reshape(-1, 4), head.reshape(-1, 4))
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
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
