"""Lip-sync (animation engine): real mouth targets, shipped model vs energy baseline, live == batch."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaiverse.avatar.lipsync_eval import (BT1359_EARLY_MS, BT1359_LATE_MS, av_offset_ms, compare_clip,
                                         evaluate_lipsync)
from gaiverse.avatar.lipsync_model import DEFAULT_DIR, EnergyBaseline, LipsyncModel, LipsyncStreamer
from gaiverse.avatar.lipsync_targets import (BLENDSHAPES, OPEN_FULL, extract_targets, load_targets,
                                             mediapipe_available, to_blendshapes)
from gaiverse.avatar.lipsync_training import DEFAULT_TARGETS, LipsyncTrainConfig, train_model
from gaiverse.cli import app
from gaiverse.config import REPO_ROOT

CLIP = REPO_ROOT / "data/avatar/grid/id2_vcd_swwp2s.mpg"
ALIGN = REPO_ROOT / "data/avatar/grid/swwp2s.align"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The net is tiny: intra-op threads only add waiting on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _speech_frames(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames inside words and of the trailing silence, from the GRID word alignment (1000 units/frame)."""
    voiced, trailing = np.zeros(n_frames, bool), np.zeros(n_frames, bool)
    rows = [line.split() for line in ALIGN.read_text().splitlines() if line.strip()]
    for i, (start, end, word) in enumerate(rows):
        frames = slice(int(start) // 1000, min(n_frames, int(end) // 1000))
        if word != "sil":
            voiced[frames] = True
        elif i == len(rows) - 1:
            trailing[frames] = True
    return voiced, trailing


def _assert_follows_speech(targets) -> None:
    voiced, trailing = _speech_frames(targets.n_frames)
    # the talker holds his lips parted before speaking (teeth visible), so the leading silence is not a
    # closed-mouth reference; after the sentence the mouth is closed.
    assert targets.open[voiced].mean() > 2 * targets.open[trailing].mean()
    assert targets.open[voiced].max() > targets.open[trailing].max() + 0.05
    weights = targets.blendshapes()
    assert weights.shape == (targets.n_frames, len(BLENDSHAPES))
    assert 0 <= weights.min() and weights.max() <= 1
    jaw, close = weights[:, 0], weights[:, 1]
    assert jaw[voiced].mean() > jaw[trailing].mean() and close[trailing].mean() > close[voiced].mean()


def test_targets_from_real_video_follow_speech():
    targets = extract_targets(CLIP)
    assert targets.method == ("mediapipe" if mediapipe_available() else "opencv")
    assert targets.n_frames == 75 and targets.found.all() and abs(targets.fps - 25) < 1e-6
    assert abs(targets.audio.size / targets.audio_rate - 3.0) < 0.05
    _assert_follows_speech(targets)


@pytest.mark.slow
def test_opencv_fallback_targets_follow_speech():
    _assert_follows_speech(extract_targets(CLIP, method="opencv"))


def test_extract_targets_refuses_bad_input(tmp_path):
    bad = tmp_path / "not_a_video.mpg"
    bad.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a decodable"):
        extract_targets(bad)
    with pytest.raises(ValueError, match="does not exist"):
        extract_targets(tmp_path / "missing.mpg")
    with pytest.raises(ValueError, match="method"):
        extract_targets(CLIP, method="dlib")


def test_blendshape_mapping_is_the_documented_one():
    closed, wide_open = to_blendshapes(np.array([0.0, OPEN_FULL]), np.zeros(2), np.zeros(2))
    names = {n: i for i, n in enumerate(BLENDSHAPES)}
    assert closed[names["mouthClose"]] == 1 and closed[names["jawOpen"]] == 0
    assert wide_open[names["jawOpen"]] == 1 and wide_open[names["mouthClose"]] == 0
    pucker, funnel, stretch = to_blendshapes(np.array([0.0, 0.2, 0.0]), np.array([-0.12, -0.12, 0.12]),
                                             np.zeros(3))
    assert pucker[names["mouthPucker"]] == 1 and pucker[names["mouthFunnel"]] == 0
    assert funnel[names["mouthFunnel"]] == 1 and funnel[names["mouthPucker"]] == 0
    assert stretch[names["mouthStretchLeft"]] == stretch[names["mouthStretchRight"]] == 1
    smile = to_blendshapes(np.array([0.0]), np.array([0.0]), np.array([0.04]), np.array([0.0]))[0]
    assert smile[names["mouthSmileLeft"]] == 1 and smile[names["mouthSmileRight"]] == 0


def test_av_offset_finds_a_known_shift():
    rng = np.random.default_rng(0)
    real = np.convolve(rng.random(400), np.ones(15) / 15, mode="same")
    late = np.concatenate([np.full(12, real[0]), real[:-12]])  # prediction 120 ms after the real mouth
    assert av_offset_ms(late, real) == 120.0 and av_offset_ms(real, late) == -120.0
    assert av_offset_ms(real, real) == 0.0


@pytest.mark.parametrize("held_out", ["bbaf2n", "brbk7n", "id2_vcd_swwp2s"])
def test_shipped_fold_beats_energy_baseline_on_held_out_talker(held_out):
    clips = {c.name: c for c in load_targets(DEFAULT_TARGETS)}
    model = LipsyncModel.load(DEFAULT_DIR / f"fold_{held_out}.pt")
    assert model.meta["held_out"] == held_out and held_out not in model.meta["trained_on"]
    baseline = EnergyBaseline(**model.meta["baseline"])
    result = compare_clip(clips[held_out], model, baseline)
    assert result["model"]["open_corr"] > result["baseline"]["open_corr"]
    assert result["model"]["open_corr"] > 0.4
    assert -BT1359_LATE_MS <= result["model"]["av_offset_ms"] <= BT1359_EARLY_MS


@pytest.mark.parametrize("chunk", [320, 137])
def test_streaming_output_equals_batch_output(chunk):
    model = LipsyncModel.load()
    audio = load_targets(DEFAULT_TARGETS)[2].audio
    batch = model.predict(audio)
    streamer = LipsyncStreamer(model)
    live = [streamer.push(audio[i: i + chunk]) for i in range(0, audio.size, chunk)]
    streamer.flush()
    assert streamer.measures().shape == batch.shape
    np.testing.assert_allclose(streamer.measures(), batch, atol=1e-5)
    ready = [w for w in live if w is not None]
    assert set(ready[-1]) == set(BLENDSHAPES) and all(0 <= v <= 1 for v in ready[-1].values())
    # the first pose (for t = 0) needs features up to 20 ms, i.e. audio up to 30 ms = 480 samples
    assert len(live) - len(ready) == -(-480 // chunk) - 1
    assert model.config.delay_ms == 30.0


def test_training_lowers_the_loss():
    clips = load_targets(DEFAULT_TARGETS)[:2]
    losses = []
    train_model(clips, LipsyncTrainConfig(steps=40, bank=4, seed=5),
                progress=lambda step, loss: losses.append(loss))
    assert len(losses) == 40 and np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_eval_avatar_lipsync_cli_prints_eval_json():
    result = CliRunner().invoke(app, ["eval", "avatar-lipsync", "--video", str(CLIP)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert out["eval"] == "avatar-lipsync" and out["n"] == 1 and out["data"] == [str(CLIP)]
    names = set(out["metrics"])
    assert names == set(out["baseline"]) - {"name"} == set(out["lower_is_better"]) | {"av_offset_ms"}
    item = out["items"][0]
    assert item["clip"] == "id2_vcd_swwp2s" and item["frames"] == 75
    assert -1 <= out["metrics"]["open_corr"] <= 1 and out["model_delay_ms"] == 30.0
    direct = evaluate_lipsync(CLIP)
    assert direct["metrics"] == out["metrics"]


def test_eval_avatar_lipsync_cli_names_an_unreadable_video(tmp_path):
    result = CliRunner().invoke(app, ["eval", "avatar-lipsync", "--video", str(tmp_path / "nope.mp4")])
    assert result.exit_code == 2 and "nope.mp4" in result.output


@pytest.mark.slow
def test_train_lipsync_cli_writes_folds_final_model_and_metrics(tmp_path):
    result = CliRunner().invoke(app, ["avatar", "train-lipsync", "--targets", str(DEFAULT_TARGETS),
                                      "--out", str(tmp_path), "--steps", "15"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert [f["held_out"] for f in summary["folds"]] == ["bbaf2n", "brbk7n", "id2_vcd_swwp2s"]
    assert {p.name for p in tmp_path.iterdir()} == {"lipsync.pt", "metrics.json", "fold_bbaf2n.pt",
                                                   "fold_brbk7n.pt", "fold_id2_vcd_swwp2s.pt"}
    final = LipsyncModel.load(tmp_path)
    assert final.meta["trained_on"] == ["bbaf2n", "brbk7n", "id2_vcd_swwp2s"] and final.meta["held_out"] is None
    bad = CliRunner().invoke(app, ["avatar", "train-lipsync", "--targets", str(tmp_path / "none.npz")])
    assert bad.exit_code == 2 and "none.npz" in bad.output
