"""The avatar decision policy: heuristic baseline rules, PPO learning, the shipped policy on held-out users."""

import json

import numpy as np
from typer.testing import CliRunner

from gaiverse.avatar.decision import DEFAULT_POLICY_DIR, CaptureAnalysis, HeuristicDecider, PolicyDecider
from gaiverse.avatar.evaluate import evaluate_avatar_policy
from gaiverse.avatar.policy_env import reward, sample_users
from gaiverse.avatar.policy_training import PolicyTrainConfig, train_policy
from gaiverse.avatar.preferences import parse_preferences
from gaiverse.cli import app


def test_heuristic_copies_measurements_and_applies_wishes():
    analysis = CaptureAnalysis(skin_lab=(60.0, 12.0, 18.0), f0_median_hz=210.0, height_m=1.65)
    plain = HeuristicDecider().decide(analysis, parse_preferences(""))
    asked = HeuristicDecider().decide(analysis, parse_preferences("blue hair, a deeper voice, taller, anime style"))
    assert plain.skin_lab == analysis.skin_lab and plain.style == "realistic"
    assert asked.pitch_semitones < plain.pitch_semitones and asked.height_m > plain.height_m
    assert asked.style == "anime" and asked.colours_srgb()["hair"] != plain.colours_srgb()["hair"]


def test_untrained_policy_decides_like_the_heuristic():
    policy, _ = train_policy(PolicyTrainConfig(iterations=0))
    for user in sample_users(20, seed=5):
        a = policy.decide(user.analysis, user.prefs)
        b = HeuristicDecider().decide(user.analysis, user.prefs)
        assert a.style == b.style and a.hair_style == b.hair_style
        assert np.allclose(a.skin_lab, b.skin_lab) and np.isclose(a.pitch_semitones, b.pitch_semitones)


def test_ppo_raises_the_reward_it_is_trained_on(tmp_path):
    policy, curve = train_policy(PolicyTrainConfig(iterations=12, batch_users=64, seed=3))
    assert np.mean(curve[-3:]) > np.mean(curve[:3])
    policy.save(tmp_path)
    again = PolicyDecider.load(tmp_path)
    user = sample_users(1, seed=11)[0]
    assert again.decide(user.analysis, user.prefs) == policy.decide(user.analysis, user.prefs)


def test_shipped_policy_beats_the_heuristic_on_held_out_users():
    result = evaluate_avatar_policy(DEFAULT_POLICY_DIR, users=300)
    assert result["metrics"]["satisfaction"] > result["baseline"]["satisfaction"]
    assert result["difference"]["ci95"][0] > 0
    assert len(result["items"]) == 50 and {"said", "policy", "heuristic"} <= set(result["items"][0])


def test_heldout_users_differ_from_training_users():
    train = {u.text for u in sample_users(300, seed=0)}
    held = {u.text for u in sample_users(300, seed=900_001, heldout=True)} - {""}
    assert held and not (held & train)
    assert 0 < reward(sample_users(1, seed=1)[0], HeuristicDecider().decide(*_pair(1))) <= 1


def _pair(seed):
    user = sample_users(1, seed=seed)[0]
    return user.analysis, user.prefs


def test_cli_eval_prints_one_json_object_and_names_a_missing_policy(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["eval", "avatar-policy", "--users", "20"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["eval"] == "avatar-policy"
    missing = runner.invoke(app, ["eval", "avatar-policy", "--policy", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no avatar policy" in missing.output
