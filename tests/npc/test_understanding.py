"""Intents and entities from text and from mouse, gamepad and keyboard signals."""

from __future__ import annotations

import pytest

from gaiverse.npc.understanding import HciSignal, Understanding


@pytest.fixture(scope="module")
def understanding(kb) -> Understanding:
    return Understanding(kb.entities())


@pytest.mark.clause("NPC-c1")
@pytest.mark.parametrize("text, intent", [
    ("Hello there!", "greet"),
    ("Good morning", "greet"),
    ("What is the capital of Kenya?", "ask"),
    ("Hi! How many hit points does a troll have?", "ask"),
    ("Tell me about the owlbear", "ask"),
    ("Here is a healing potion for you.", "give_item"),
    ("Follow me to the tavern", "follow"),
    ("I want to buy some rope", "trade"),
    ("Look at this!", "point_at"),
    ("Goodbye!", "leave"),
    ("What did I ask you before?", "recall"),
    ("Thanks a lot", "thank"),
])
def test_intent_from_text(understanding, text, intent):
    assert understanding.from_text(text).name == intent


@pytest.mark.clause("NPC-c2")
def test_entities_from_the_knowledge_base_lexicon(understanding):
    intent = understanding.from_text("Is an adult red dragon stronger than an aboleth?")
    assert set(intent.entities) == {"Adult Red Dragon", "Aboleth"}


@pytest.mark.clause("NPC-c2")
def test_pronoun_resolves_to_the_last_subject(understanding):
    intent = understanding.from_text("How many hit points does it have?", last_entity="Lich")
    assert intent.entities == ("Lich",) and "Lich" in intent.query


@pytest.mark.clause("NPC-c2")
def test_given_item_is_the_target(understanding):
    assert understanding.from_text("Here is a healing potion for you.").target == "healing potion"


@pytest.mark.clause("NPC-c1")
@pytest.mark.parametrize("signal, greeted, intent, target", [
    (HciSignal("click", "npc"), False, "greet", None),
    (HciSignal("click", "npc"), True, "ask", None),
    (HciSignal("click", "object", "Longsword"), False, "point_at", "Longsword"),
    (HciSignal("drop", "npc", "Potion of Healing"), False, "give_item", "Potion of Healing"),
    (HciSignal("gamepad", button=0), False, "greet", None),
    (HciSignal("gamepad", button=1), True, "leave", None),
    (HciSignal("gamepad", button=3), True, "follow", None),
    (HciSignal("gamepad", button="x"), True, "trade", None),
    (HciSignal("key", button="Escape"), True, "leave", None),
    (HciSignal("key", button="t"), True, "trade", None),
])
def test_intent_from_mouse_gamepad_and_keyboard(understanding, signal, greeted, intent, target):
    result = understanding.from_signal(signal, greeted=greeted)
    assert (result.name, result.target) == (intent, target)
    assert result.source in ("click", "gamepad", "key")


@pytest.mark.clause("NPC-c1")
def test_hover_turns_the_npcs_head_without_a_reply(understanding):
    result = understanding.from_signal(HciSignal("hover", "npc"))
    assert (result.name, result.behaviour) == ("none", "look_at_user")


@pytest.mark.clause("NPC-c1")
def test_unmapped_button_is_no_intent_and_a_bad_click_is_an_error(understanding):
    assert understanding.from_signal(HciSignal("gamepad", button=10)).name == "none"
    with pytest.raises(ValueError, match="target_kind"):
        understanding.from_signal(HciSignal("click", "none"))
