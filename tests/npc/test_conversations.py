"""The conversation suite: multi-turn dialogues through the live engine (``NpcSession``).

Memory across turns ("what did I ask you before?"), intents from clicks and gamepad buttons,
persona consistency across a whole conversation, and in-character refusal of questions the
knowledge base cannot answer.
"""

from __future__ import annotations

import re

import pytest

from gaiverse.npc.backends import DialogueConfig, LocalDialogue
from gaiverse.npc.session import NpcSession
from gaiverse.npc.persona import STYLE_LINES


@pytest.fixture(scope="module")
def dialogue(kb, personas, tmp_path_factory):
    config = DialogueConfig(tmp_path_factory.mktemp("conv") / "unused.duckdb")
    return LocalDialogue(config, kb=kb, personas=personas)


class Conversation:
    """A user talking to one NPC; ``say``/``signal`` return the turn's ``text_done`` event."""

    def __init__(self, dialogue, user, npc):
        self.session = NpcSession(user, npc, dialogue)
        self.turns: list[dict] = []

    def _turn(self, event) -> dict:
        events = list(self.session.handle(event))
        done = next(e for e in events if e["type"] == "text_done")
        done["gesture_clip"] = next(e["clip"] for e in events if e["type"] == "gesture")
        done["intent_event"] = next(e for e in events if e["type"] == "state" and e.get("intent"))
        self.turns.append(done)
        return done

    def say(self, text: str) -> dict:
        return self._turn({"type": "text", "text": text})

    def signal(self, **signal) -> dict:
        return self._turn({"type": "hci", **signal})


@pytest.mark.clause("NPC-c2")
def test_memory_what_did_i_ask_you_before(dialogue, user):
    talk = Conversation(dialogue, user, "sage")
    talk.say("Hello!")
    talk.say("What is the capital of Kenya?")
    talk.say("What is the armor class of a lich?")
    before = talk.say("What did I ask you before?")
    first = talk.say("What was my first question?")
    assert before["intent"] == "recall" and "armor class of a lich" in before["text"]
    assert "capital of Kenya" in first["text"]
    follow_up = talk.say("How many hit points does it have?")  # 'it' = the lich
    assert "315" in follow_up["text"]


@pytest.mark.clause("NPC-c2")
def test_memory_of_actions_and_per_user(dialogue, user):
    talk = Conversation(dialogue, user, "innkeeper")
    gift = talk.signal(kind="drop", target_kind="item", target="silver ring")
    assert gift["intent"] == "give_item" and "silver ring" in gift["text"] and gift["emotion"] == "gratitude"
    assert "silver ring" in talk.say("What did I give you?")["text"]
    stranger = Conversation(dialogue, user + "-other", "innkeeper")
    assert "not given me anything" in stranger.say("What did I give you?")["text"]


@pytest.mark.clause("NPC-c1")
def test_intents_from_clicks_and_gamepad(dialogue, user):
    talk = Conversation(dialogue, user, "sage")
    first_click = talk.signal(kind="click", target_kind="npc")
    assert first_click["intent"] == "greet" and first_click["gesture_clip"] == "wave"
    second_click = talk.signal(kind="click", target_kind="npc")  # already greeted: invites a question
    assert second_click["intent"] == "ask" and not second_click["refused"]
    pointed = talk.signal(kind="click", target_kind="object", target="Potion of Healing")
    assert pointed["intent"] == "point_at" and "50 gold pieces" in pointed["text"]
    assert pointed["gesture_clip"] == "point"
    expected = {0: "ask", 1: "leave", 2: "trade", 3: "follow"}  # A (greeted already), B, X, Y
    for button, intent in expected.items():
        turn = talk.signal(kind="gamepad", button=button)
        assert turn["intent"] == intent, (button, turn)
    assert talk.signal(kind="stick", axes=[0.0, -1.0])["intent"] == "follow"
    assert talk.signal(kind="key", button="t")["intent"] == "trade"
    assert talk.turns[-3]["intent_event"]["source"] == "gamepad"


@pytest.mark.clause("NPC-d2")
def test_persona_stays_consistent_across_a_conversation(dialogue, user):
    talk = Conversation(dialogue, user, "monster_hunter")
    hello = talk.say("Hi there!")
    assert "Kestra" in hello["text"]
    replies = [talk.say(q) for q in ("What is the armor class of a zombie?", "Who is the king of France?",
                                     "What spell level is Teleport?", "Thanks!", "Goodbye!")]
    gruff_lines = {text.split("{")[0].strip() for kind in STYLE_LINES["gruff"].values() for text in kind if text}
    other_names = ("Elowen", "Brom", "Thalindra")
    for reply in [hello, *replies]:
        assert not any(name in reply["text"] for name in other_names), reply["text"]
    assert "armor class of 8" in replies[0]["text"]
    assert any(line and replies[2]["text"].startswith(line) for line in gruff_lines)  # out of domain, gruff
    assert replies[4]["intent"] == "leave" and replies[4]["gesture_clip"] == "wave"


@pytest.mark.clause("NPC-d2")
@pytest.mark.parametrize("question", ["Hello! Who are you?", "What is your name?", "Tell me about yourself."])
def test_questions_about_the_npc_itself_are_answered_from_its_persona(dialogue, user, personas, question):
    persona = personas.get("monster_hunter")
    talk = Conversation(dialogue, user, "monster_hunter")
    reply = talk.say(question)
    assert reply["intent"] == "about_self" and not reply.get("refused"), reply
    assert reply["text"].startswith(f"I'm {persona.name},") and persona.role.split()[-1] in reply["text"]
    assert talk.say("What is the armor class of a zombie?")["intent"] == "ask"  # not a self question


@pytest.mark.clause("NPC-d2")
@pytest.mark.parametrize("npc", ["sage", "innkeeper", "archmage"])
@pytest.mark.parametrize("question", ["Who is the king of France?", "What is the capital of Atlantis?",
                                      "How many hit points does a beholder have?"])
def test_out_of_knowledge_questions_are_declined_in_character(dialogue, user, npc, question):
    talk = Conversation(dialogue, user, npc)
    reply = talk.say(question)
    style = dialogue.persona(npc).style
    assert reply["refused"] and not reply["grounded"]
    assert reply["emotion"] == "apologetic" and reply["gesture_clip"] == "shrug"
    assert not re.search(r"\d", reply["text"])
    assert reply["text"] in STYLE_LINES[style]["refuse"] or "outside" in reply["text"] or "not my" in reply["text"]
