"""Recommendation: preference × relevance with reasons, immediate reaction to new inputs, task adjustment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gaiverse.personalization.recommender import adjust_task
from gaiverse.personalization.task_repository import TaskFilter

from .conftest import T0


def _ids(recs):
    return [r.original_task_id for r in recs]


@pytest.mark.clause("PER-e1")
def test_new_message_changes_the_next_recommendation(personalizer):
    p = personalizer
    p.observe("alice", text="I want to fight monsters and slay a dragon", ts=T0)
    fighting = p.recommend("alice", k=5)
    assert sum("combat" in r.task.tags for r in fighting) >= 4
    p.observe("alice", text="No more combat. Calm fishing by the lake, please", ts=T0 + timedelta(minutes=5))
    calm = p.recommend("alice", k=5)
    assert _ids(calm) != _ids(fighting)
    assert calm[0].original_task_id == "authored-quiet-fishing"
    assert not any("combat" in r.task.tags for r in calm[:3])


@pytest.mark.clause("PER-e1")
def test_completed_and_abandoned_tasks_change_recommendations_immediately(personalizer):
    p = personalizer
    p.observe("alice", text="puzzles and riddles", ts=T0)
    first = p.recommend("alice", k=5)
    top = first[0].original_task_id
    p.observe("alice", event="accept", item_id=top, ts=T0 + timedelta(minutes=1))
    p.observe("alice", event="complete", item_id=top, ts=T0 + timedelta(minutes=20))
    after_complete = p.recommend("alice", k=5)
    assert top not in _ids(after_complete)
    dropped = after_complete[0].original_task_id
    dropped_tags = set(p.repository.get(dropped).tags)
    p.observe("alice", event="abandon", item_id=dropped, ts=T0 + timedelta(minutes=30))
    after_abandon = p.recommend("alice", k=5)
    assert dropped not in _ids(after_abandon)
    assert p.repository.get(dropped).engagement.counts["abandoned"] == 1
    assert all(p.profile("alice").tag_affinity.get(t, 0) < first_aff for t, first_aff in
               ((t, 10.0) for t in dropped_tags))


@pytest.mark.clause("PER-e2")
def test_every_recommendation_has_a_reason_from_preferences_and_relevance(personalizer):
    p = personalizer
    p.observe("alice", text="I love exploration and treasure", ts=T0)
    recs = p.recommend("alice", k=10)
    assert len(recs) == 10 and all(r.reason for r in recs)
    assert "exploration" in recs[0].reason or "treasure" in recs[0].reason
    assert recs == sorted(recs, key=lambda r: -r.score)
    assert {"preference", "relevance", "current_input", "difficulty_fit"} <= set(recs[0].parts)


@pytest.mark.clause("PER-e1")
def test_tasks_are_adjusted_after_an_abandoned_hard_task(personalizer):
    p = personalizer
    p.observe("alice", event="accept", item_id="authored-crypt-depths", ts=T0)
    p.observe("alice", event="abandon", item_id="authored-crypt-depths", ts=T0 + timedelta(minutes=15))
    task = p.repository.get("authored-dragon-scout")
    adjusted, changes = adjust_task(task, p.profile("alice"))
    assert adjusted.difficulty < task.difficulty and adjusted.rewards["gold"] < task.rewards["gold"]
    assert any("abandoned" in c for c in changes)
    assert adjusted.provenance.from_tasks == [task.task_id]
    rec = p.recommend("alice", k=10, filters=TaskFilter(require_tags=["dragon"], provenance=["authored"]))[0]
    accepted = p.accept("alice", rec)
    assert accepted in p.repository and rec.original_task_id not in _ids(p.recommend("alice", k=50))


@pytest.mark.clause("PER-b2")
def test_filters_apply_and_other_users_generated_tasks_are_hidden(personalizer):
    p = personalizer
    p.observe("bob", text="mysteries and puzzles", ts=T0)
    made = p.generate("bob", n=1)[0].task.task_id
    assert made in _ids(p.recommend("bob", k=5))
    p.observe("alice", text="mysteries and puzzles", ts=T0)
    assert made not in _ids(p.recommend("alice", k=50))
    easy = p.recommend("alice", k=10, filters=TaskFilter(max_difficulty=1))
    assert easy and all(p.repository.get(r.original_task_id).difficulty == 1 for r in easy)


@pytest.mark.clause("PER-c1")
def test_learned_model_on_stored_task_events_joins_the_ranking(personalizer):
    from gaiverse.personalization.implicit_feedback import ImplicitFeedbackModel, learned_scorer, log_from_store
    from gaiverse.personalization.recommender import Recommender

    p = personalizer
    puzzles = ["authored-star-chart", "authored-shifting-shelves", "authored-bridge-riddle", "authored-fey-bargain"]
    fights = ["authored-arena", "authored-goblin-raid", "authored-wolf-pack", "authored-crypt-bells"]
    for u in range(8):
        user = f"player{u}"
        p.store.add_user(user)
        liked, disliked = (puzzles, fights) if u % 2 else (fights, puzzles)
        for j, task in enumerate(liked[:3] if u < 6 else liked[:1]):
            p.observe(user, event="complete", item_id=task, ts=T0 + timedelta(minutes=j))
        for j, task in enumerate(disliked[:2]):
            p.observe(user, event="abandon", item_id=task, ts=T0 + timedelta(minutes=10 + j))
    train = log_from_store(p.store.frame(), p.repository.all())
    model = ImplicitFeedbackModel().fit(train)
    scores = learned_scorer(model)("player7", puzzles[1:] + fights[1:])  # player7 completed one puzzle only
    assert scores[:3].mean() > scores[3:].mean()
    ranked = Recommender(p.repository, learned=learned_scorer(model)).recommend(p.profile("player7"), k=5)
    assert "learned" in ranked[0].parts
