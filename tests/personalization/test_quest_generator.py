"""Quest generation: grammar filled from preferences and knowledge, validated, stored back, recommendable."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gaiverse.personalization.quest_generator import GRAMMAR, COMBAT_ACTIONS

from .conftest import T0


@pytest.mark.clause("PER-d1")
def test_generated_quests_reference_only_existing_things_and_follow_preferences(personalizer, kb):
    p = personalizer
    p.observe("alice", text="I love exploring and puzzles, but I hate combat", ts=T0)
    quests = p.generate("alice", n=4)
    assert len(quests) == 4
    for q in quests:
        assert q.steps and q.problems == []
        assert [s.action for s in q.steps] == GRAMMAR[q.motivation][1][q.strategy]
        assert not COMBAT_ACTIONS & {s.action for s in q.steps}
        for step in q.steps:
            for kind, entity in step.refs.items():
                assert kb.exists("npc" if kind == "other_npc" else kind, entity), (kind, entity)
        assert kb.exists("place", q.task.location)
        assert "<missing" not in q.task.description and q.task.title


@pytest.mark.clause("PER-d2")
def test_generated_quests_are_stored_with_provenance_and_then_recommended(personalizer):
    p = personalizer
    p.observe("alice", text="mysteries and old books", ts=T0)
    quest = p.generate("alice", n=1)[0]
    stored = p.repository.get(quest.task.task_id)
    assert stored.provenance.kind == "generated" and stored.provenance.for_user == "alice"
    assert stored.provenance.from_tasks and all(t in p.repository for t in stored.provenance.from_tasks)
    recs = p.recommend("alice", k=10)
    hit = [r for r in recs if r.original_task_id == quest.task.task_id]
    assert hit and "made for you" in hit[0].reason


@pytest.mark.clause("PER-d1")
def test_no_duplicates_and_invalid_quests_are_rejected(personalizer):
    p = personalizer
    p.observe("alice", text="treasure and exploration", ts=T0)
    first = {q.task.task_id for q in p.generate("alice", n=3)}
    second = {q.task.task_id for q in p.generate("alice", n=3)}
    assert len(first) == 3 and not first & second
    assert p.repository.find_duplicate(p.repository.get("authored-lake-tower")) == "authored-lake-tower"
    quest = p.generator.generate(p.profile("alice"), n=1, store=False)[0]
    broken_step = replace(quest.steps[0], refs={"place": "atlantis"})
    broken = replace(quest, steps=[broken_step] + quest.steps[1:])
    assert any("unknown place 'atlantis'" in problem for problem in p.generator.validate(broken))
