"""Expressions, gestures and viseme timing for NPC replies."""

from __future__ import annotations

import pytest

from gaiverse.npc.expression import ARKIT_BLENDSHAPES, GESTURES, VISEMES, blendshapes, react, visemes


@pytest.mark.clause("NPC-c2")
@pytest.mark.parametrize("intent, kwargs, emotion, gesture", [
    ("greet", {}, "joy", "wave"),
    ("give_item", {}, "gratitude", "receive"),
    ("ask", {"reply": "The basilisk's gaze can petrify you."}, "concern", "explain"),
    ("ask", {"refused": True}, "apologetic", "shrug"),
    ("smalltalk", {"rude": True}, "anger", "cross_arms"),
    ("leave", {}, "sadness", "wave_goodbye"),
])
def test_emotion_and_gesture_follow_intent_and_reply(intent, kwargs, emotion, gesture):
    expr = react(intent, **kwargs)
    assert (expr.emotion, expr.gesture) == (emotion, gesture) and expr.gesture in GESTURES
    assert set(expr.blendshapes) <= set(ARKIT_BLENDSHAPES)
    assert all(0.0 <= w <= 1.0 for w in expr.blendshapes.values())


@pytest.mark.clause("NPC-c2")
def test_warmer_relationship_shows_stronger_expression():
    assert react("greet", relationship=0.8).intensity > react("greet", relationship=-0.5).intensity
    with pytest.raises(ValueError, match="emotion"):
        blendshapes("smug")


@pytest.mark.clause("NPC-d1")
def test_visemes_are_ordered_and_stretch_to_the_audio():
    timing = visemes("The lich has 315 hit points.")
    assert {v for v, _, _ in timing} <= set(VISEMES)
    assert all(a[2] <= b[1] + 1e-9 and a[1] < a[2] for a, b in zip(timing, timing[1:]))
    assert timing[-1][0] == "sil"  # the full stop
    stretched = visemes("The lich has 315 hit points.", duration_s=4.0)
    assert stretched[-1][2] == pytest.approx(4.0, abs=1e-3)
    assert len(timing) > len(visemes("The lich has hit points."))  # the number is spoken, not skipped
