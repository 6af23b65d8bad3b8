"""Capture analysis (AV-b1) on real data: a GRID talking-face clip and the NASA astronaut portrait.

One full analysis of the GRID clip (MediaPipe face mesh + pose, WORLD F0, Whisper ASR) is shared by
the module; the mirrored / rotated / degenerate inputs skip ASR and pose to stay cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gaiverse.avatar.analysis import CaptureAnalysis, analyse_capture, to_policy_features, to_policy_inputs
from gaiverse.avatar.colour import delta_e, srgb_to_lab
from gaiverse.avatar.decision import CAPTURE_DIM, BASE_VOICE_F0_HZ, HeuristicDecider, PolicyDecider, PolicyNet
from gaiverse.avatar.head_pose import _MODEL_CV, RIGID_IDS, head_pose
from gaiverse.avatar.preferences import COLOURS
from gaiverse.vision.video import decode

DATA = Path(__file__).resolve().parents[2] / "data" / "avatar" / "grid"
PORTRAIT = Path(__file__).resolve().parents[2] / "data" / "vision" / "astronaut.jpg"
WISH = "I'd like blue hair, and a deeper voice"


@pytest.fixture(scope="module")
def grid():
    sample = decode(DATA / "bbaf2n.mpg", max_frames=25)
    assert sample.audio is not None and len(sample.frames) == 25
    return sample


@pytest.fixture(scope="module")
def grid_analysis(grid) -> CaptureAnalysis:
    return analyse_capture(grid.frames, grid.audio, 16_000, WISH)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.array(Image.open(PORTRAIT).convert("RGB"))


def test_grid_face_mesh_and_frontal_pose(grid_analysis):
    a = grid_analysis
    assert len(a.usable_frames) >= 23, a.usable_frames
    assert all(f.landmarks.shape == (478, 3) for f in a.faces)
    pose = a.head_pose.value["median"]
    assert abs(pose["yaw"]) < 20 and abs(pose["pitch"]) < 20 and abs(pose["roll"]) < 10, pose
    assert a.head_pose.value["reprojection_iod_median"] < 0.08
    assert a.best_frame.quality == "good" and a.best_frame.value in a.usable_frames
    print(f"\nGRID face mesh: {a.timings_ms['landmarks_per_frame']:.1f} ms/frame, pose median {pose}")


def test_grid_face_shape_is_plausible(grid_analysis, grid):
    shape = grid_analysis.face_shape.value
    width = grid.frames[0].shape[1]
    # GRID framing: head and shoulders in a 360 px wide frame -> the outer eye corners ~15-25 % of it.
    assert 0.12 * width < shape["inter_ocular_px"] < 0.3 * width, shape
    # Adult anthropometry: interpupillary ~63 mm vs outer-canthal ~90 mm.
    assert 0.6 < shape["interpupillary_px"] / shape["inter_ocular_px"] < 0.8, shape
    assert 0.65 < shape["face_width_height_ratio"] < 1.0 and 1.0 < shape["jaw_width_iod"] < 1.6, shape


def test_mirroring_flips_yaw_and_roll(grid, grid_analysis):
    frames = [f[:, ::-1].copy() for f in grid.frames[:8]]
    mirrored = analyse_capture(frames, None, 16_000, None, transcribe=False, body=False)
    mirrored = mirrored.head_pose.value["median"]
    original = np.median([[f.yaw_deg, f.roll_deg] for f in grid_analysis.faces if f.frame_index < 8], 0)
    assert abs(original[0]) > 3, "the GRID talker is turned a little: the sign test needs a non-zero yaw"
    assert np.sign(mirrored["yaw"]) == -np.sign(original[0]) and abs(mirrored["yaw"] + original[0]) < 3
    assert abs(mirrored["roll"] + original[1]) < 3


def test_in_plane_rotation_is_read_as_roll(astronaut):
    rot = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 15, 1.0), (512, 512),
                         borderMode=cv2.BORDER_REPLICATE)  # 15 deg counter-clockwise
    a, b = (analyse_capture([im], None, 16_000, None, transcribe=False, body=False, video=False)
            .head_pose.value["median"] for im in (astronaut, rot))
    assert abs((b["roll"] - a["roll"]) + 15) < 3, (a, b)
    assert abs(b["yaw"] - a["yaw"]) < 4


def test_head_pose_recovers_known_rotations():
    """The canonical model projected with known yaw/pitch gives them back with the documented signs."""
    cam = np.array([[640, 0, 320], [0, 640, 240], [0, 0, 1.0]])
    for yaw, pitch in ((25, 0), (-25, 0), (0, 15), (0, -15)):
        a, b = np.radians(-yaw), np.radians(-pitch)  # camera-axis rotations (see head_pose.euler_from_matrix)
        ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        pts = (ry @ rx @ _MODEL_CV.T).T + [0, 0, 50]
        proj = (cam @ pts.T).T
        lm = np.zeros((478, 2))
        lm[RIGID_IDS] = proj[:, :2] / proj[:, 2:]
        pose = head_pose(lm, (640, 480))
        assert abs(pose.yaw_deg - yaw) < 0.5 and abs(pose.pitch_deg - pitch) < 0.5, (yaw, pitch, pose)
        if yaw:  # yaw > 0: the nose tip (landmark 1) lies right of the image centre
            assert np.sign(lm[1, 0] - 320) == np.sign(yaw)


def test_astronaut_colours_and_body(astronaut):
    a = analyse_capture([astronaut], None, 16_000, None, transcribe=False, video=False)
    assert a.usable_frames == [0] and abs(a.head_pose.value["median"]["yaw"]) < 20
    skin, hair, eyes = (np.array(m.value["lab"]) for m in (a.skin, a.hair, a.eyes))
    assert 55 < skin[0] < 90 and skin[1] > 0 and skin[2] > 0, skin  # light skin: reddish-yellow
    assert hair[0] < skin[0] - 10 and delta_e(hair, skin) > 15, (hair, skin)
    assert a.hair.value["name"] in {"blond", "brown", "dark brown"}, a.hair.value
    assert eyes[0] < 50 and a.eyes.value["name"] in {"brown", "hazel"}, a.eyes.value
    assert a.eyes.quality == "low" and "px across" in a.eyes.reason  # small iris in a 512 px portrait
    body = a.body.value
    assert body is not None and 2.5 < body["shoulder_width_iod"] < 5.0, body
    assert body["height_m"] is None and "feet" in a.body.reason  # upper body only
    assert a.f0.value is None and a.f0.reason


def test_grid_voice_matches_pyworld(grid, grid_analysis):
    import pyworld

    f0 = grid_analysis.f0.value
    x = grid.audio.astype(np.float64)
    ref, _ = pyworld.harvest(x, 16_000, f0_floor=60.0, f0_ceil=500.0, frame_period=10.0)
    ref_median = float(np.median(ref[ref > 0]))
    assert 85 < f0["median_hz"] < 180, f0  # adult male speaking F0
    assert abs(f0["median_hz"] / ref_median - 1) < 0.05, (f0, ref_median)
    assert 2 < f0["range_semitones"] < 24
    timbre = grid_analysis.timbre.value
    assert len(timbre["mfcc_mean"]) == 13 and np.isfinite(timbre["mfcc_mean"]).all()
    assert 100 < timbre["spectral_centroid_hz"] < 3000 and timbre["spectral_tilt_db_per_octave"] < 0
    rate = grid_analysis.speaking_rate.value
    # "bin blue at f two now": 6 syllables in ~1.7 s of speech.
    assert 4 <= rate["syllables"] <= 8 and 2.0 < rate["syllables_per_s"] < 5.0, rate


def test_wishes_parsed_from_text_and_transcript(grid_analysis):
    prefs = grid_analysis.preferences_object()
    assert prefs.colours == {"hair": COLOURS["blue"]} and prefs.pitch == -1
    assert isinstance(grid_analysis.transcript.value, str)  # Whisper ran (GRID's grammar trips it up)


def test_policy_features_drive_both_deciders(grid_analysis):
    features, prefs = to_policy_inputs(grid_analysis)
    assert features == to_policy_features(grid_analysis)
    vec = features.vector()
    assert vec.shape == (CAPTURE_DIM,) and np.isfinite(vec).all()
    assert features.hair_lab is not None and features.height_m is None and features.build is None
    base = HeuristicDecider().decide(features, prefs)
    assert delta_e(np.array(base.hair_lab), srgb_to_lab(np.array(COLOURS["blue"]) / 255)) < 1e-6
    expected = 12 * np.log2(grid_analysis.f0.value["median_hz"] / BASE_VOICE_F0_HZ) - 3.0
    assert abs(base.pitch_semitones - expected) < 1e-6
    untrained = PolicyDecider(PolicyNet()).decide(features, prefs)  # residual policy: starts at the baseline
    assert np.allclose(untrained.hair_lab, base.hair_lab) and untrained.style == base.style


def test_json_round_trip_and_missing_reasons(grid_analysis):
    data = json.loads(json.dumps(grid_analysis.to_json(include_landmarks=True)))
    assert len(data["faces"][0]["landmarks"]) == 478
    assert data["body"]["value"]["build"] is None and "hips" in data["body"]["reason"]
    for key in ("skin", "hair", "eyes", "f0", "timbre", "speaking_rate", "face_shape", "head_pose"):
        assert data[key]["value"] is not None, key


def test_no_face_and_bad_input():
    blank = [np.full((240, 320, 3), 128, np.uint8)] * 3
    t = np.arange(16_000) / 16_000  # a 150 Hz buzz with harmonics (WORLD finds no pitch in a pure sine)
    tone = (0.1 * sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 11))).astype(np.float32)
    a = analyse_capture(blank, tone, 16_000, "make me taller", transcribe=False)
    assert a.faces == [] and a.best_frame.value is None and "no frame" in a.best_frame.reason
    assert a.skin.value is None and a.body.value is None and a.body.reason
    assert abs(a.f0.value["median_hz"] - 150) < 3 and a.preferences.value["height"] == 1
    assert a.speaking_rate.value is None and "syllable" in a.speaking_rate.reason  # a steady buzz: no speech
    assert to_policy_features(a).skin_lab == (65.0, 12.0, 18.0)  # policy's neutral skin when unmeasured
    with pytest.raises(ValueError, match=r"frames\[0\]"):
        analyse_capture([np.zeros((10, 10), np.uint8)], None, 16_000, None)
    with pytest.raises(ValueError, match="sample_rate"):
        analyse_capture(blank, tone, 100, None)
    with pytest.raises(ValueError, match="nothing to analyse"):
        analyse_capture([], None, 16_000, None)
