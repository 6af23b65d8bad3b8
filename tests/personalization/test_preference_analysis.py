"""Preference analysis: affinities with negation and decay, needs, habits, description, incremental = batch."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gaiverse.personalization.interaction_store import Interaction
from gaiverse.personalization.preference_analysis import PreferenceAnalyzer, PreferenceConfig

from .conftest import T0


def _msg(text, hours=0.0, modality="text", **features):
    return Interaction(0, "alice", T0 + timedelta(hours=hours), modality, "message", text, features=features)


@pytest.mark.clause("PER-c1")
def test_message_with_negation_gives_signed_affinities_and_a_description():
    analyzer = PreferenceAnalyzer()
    profile = analyzer.build("alice", [_msg("I love exploring ruins and solving riddles, but no combat please")])
    assert profile.tag_affinity["exploration"] > 0 and profile.tag_affinity["puzzle"] > 0
    assert profile.tag_affinity["combat"] < 0
    text = profile.describe()
    assert "loves exploration" in text and "avoids combat" in text


@pytest.mark.clause("PER-c1")
def test_affinities_decay_with_time():
    analyzer = PreferenceAnalyzer(PreferenceConfig(half_life_days=7))
    profile = analyzer.build("alice", [_msg("dragons!"), _msg("hello", hours=24 * 7)])
    assert profile.tag_affinity["dragon"] == pytest.approx(0.5, rel=1e-6)


@pytest.mark.clause("PER-c1")
def test_incremental_update_equals_building_from_history(personalizer):
    p = personalizer
    p.observe("alice", text="I want puzzles and mysteries", ts=T0)
    p.observe("alice", event="accept", item_id="authored-star-chart", ts=T0 + timedelta(minutes=2))
    p.observe("alice", event="complete", item_id="authored-star-chart", ts=T0 + timedelta(minutes=30))
    p.observe("alice", modality="audio", features={"transcript": "now something by the lake"},
              ts=T0 + timedelta(minutes=40))
    live = p.profile("alice")
    rebuilt = p.analyzer.build("alice", p.store.history("alice"))
    assert rebuilt.tag_affinity == pytest.approx(live.tag_affinity)
    assert rebuilt.difficulty == pytest.approx(live.difficulty)
    assert rebuilt.completed.keys() == live.completed.keys() == {"authored-star-chart"}


@pytest.mark.clause("PER-c1")
def test_task_outcomes_move_difficulty_social_and_modality_habits(personalizer):
    p = personalizer
    start = p.profile("alice").difficulty
    p.observe("alice", event="accept", item_id="authored-wolf-pack", ts=T0)  # difficulty 2
    p.observe("alice", event="abandon", item_id="authored-wolf-pack", ts=T0 + timedelta(minutes=10))
    assert p.profile("alice").difficulty < start
    assert p.profile("alice").tag_affinity["hunting"] < 0
    social_before = p.profile("alice").social
    p.observe("alice", event="complete", item_id="authored-goblin-raid", ts=T0 + timedelta(minutes=50))
    assert p.profile("alice").social > social_before
    for i in range(4):
        p.observe("alice", modality="audio", features={"transcript": "more treasure"}, ts=T0 + timedelta(hours=1, minutes=i))
    assert "voice" in p.describe("alice") and "treasure" in p.describe("alice")


@pytest.mark.clause("PER-c1")
def test_photos_of_several_people_hint_at_playing_with_others():
    analyzer = PreferenceAnalyzer()
    group = analyzer.build("alice", [_msg("", modality="image", n_faces=4)] * 3)
    alone = analyzer.build("alice", [_msg("", modality="image", n_faces=1)] * 3)
    assert group.social > alone.social == 0.5
