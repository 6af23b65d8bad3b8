"""Conversations with an NPC: grounded answers, memory across turns, refusals, signals, streaming."""

from __future__ import annotations

import pytest

from gaiverse.npc.dialogue import NpcAgent
from gaiverse.npc.expression import ARKIT_BLENDSHAPES
from gaiverse.npc.generators import GenerationRequest
from gaiverse.npc.understanding import HciSignal


@pytest.fixture
def sage(kb, personas, memory) -> NpcAgent:
    return NpcAgent(kb, personas.get("sage"), memory)


@pytest.mark.clause("NPC-c2")
def test_grounded_answer_quotes_the_knowledge_base(sage, user):
    reply = sage.respond(user, "What is the armor class of a lich?")
    assert reply.grounded and not reply.refused
    assert "armor class of 20" in reply.text and reply.sources == ["srd:monsters/lich"]


@pytest.mark.clause("NPC-c2")
def test_multi_turn_memory_of_questions(sage, user):
    sage.respond(user, "What is the capital of Kenya?")
    sage.respond(user, "How much does a greataxe cost?")
    before = sage.respond(user, "What did I ask you before?")
    first = sage.respond(user, "What was my first question?")
    assert before.intent == "recall" and "How much does a greataxe cost?" in before.text
    assert "What is the capital of Kenya?" in first.text


@pytest.mark.clause("NPC-c2")
def test_follow_up_question_about_it(sage, user):
    sage.respond(user, "What is the armor class of a lich?")
    reply = sage.respond(user, "How many hit points does it have?")
    assert "315 hit points" in reply.text


@pytest.mark.clause("NPC-c2")
def test_memory_is_per_user(sage, user):
    sage.respond(user, "What is the capital of Kenya?")
    assert "not asked me anything" in sage.respond(user + "-b", "What did I ask you before?").text


@pytest.mark.clause("NPC-d2")
@pytest.mark.parametrize("question", [
    "Who is the king of France?",
    "What is the capital of Atlantis?",
    "Who won the football World Cup in 2018?",
    "What is the favourite food of an owlbear?",
    "How many hit points does a beholder have?",
])
def test_out_of_knowledge_questions_are_declined_in_character(sage, user, question):
    reply = sage.respond(user, question)
    assert reply.refused and not reply.grounded
    assert reply.emotion == "apologetic" and reply.gesture == "shrug"
    assert not any(ch.isdigit() for ch in reply.text)


@pytest.mark.clause("NPC-d2")
def test_persona_declines_outside_its_domains(kb, personas, memory, user):
    hunter = NpcAgent(kb, personas.get("monster_hunter"), memory)
    assert "armor class of 8" in hunter.respond(user, "What is the armor class of a zombie?").text
    reply = hunter.respond(user, "What spell level is Teleport?")
    assert reply.refused and "Not my trade" in reply.text


@pytest.mark.clause("NPC-a2")
def test_a_users_own_knowledge_answers_only_that_user(kb, sage, user):
    kb.add_fact("The harbour master of Saltmere is called Ysolde.", user_id=user)
    assert "Ysolde" in sage.respond(user, "Who is the harbour master of Saltmere?").text
    other = sage.respond(user + "-b", "Who is the harbour master of Saltmere?")
    assert other.refused and "Ysolde" not in other.text


@pytest.mark.clause("NPC-c1")
def test_gamepad_and_click_turns(sage, user, personas):
    greet = sage.respond(user, signal=HciSignal("gamepad", button=0))
    assert greet.text == personas.get("sage").greeting and greet.gesture == "wave"
    pointed = sage.respond(user, signal=HciSignal("click", "object", "Longsword"))
    assert pointed.intent == "point_at" and "15 gold pieces" in pointed.text
    assert pointed.text.startswith("Ah, the Longsword.")
    leave = sage.respond(user, signal=HciSignal("key", button="Escape"))
    assert leave.intent == "leave" and leave.gesture == "wave_goodbye"


@pytest.mark.clause("NPC-c2")
def test_gift_is_remembered_and_warms_the_relationship(sage, user):
    sage.respond(user, "Here is a healing potion for you.")
    assert "a healing potion" in sage.respond(user, "What did I give you?").text
    assert sage.memory.get(user, "sage").relationship > 0


@pytest.mark.clause("NPC-d1")
def test_turn_streams_typed_events(sage, user):
    events = list(sage.stream(user, "What is the capital of Kenya?"))
    types = [e.type for e in events]
    assert types[:2] == ["intent", "expression"] and types[-1] == "reply"
    tokens = "".join(e.data["text"] for e in events if e.type == "token")
    reply = events[-1].data["reply"]
    assert tokens.strip() == reply.text and "Nairobi" in reply.text
    spoken = [e.data for e in events if e.type == "sentence"]
    assert spoken and all(s["visemes"] for s in spoken)
    assert set(events[1].data["blendshapes"]) <= set(ARKIT_BLENDSHAPES)


class InventingGenerator:
    """A stand-in language model that states a number the facts do not contain."""

    name = "inventing"

    def stream(self, request: GenerationRequest):
        yield from ["The lich ", "has an armor class ", "of 99. ", "It is very old."]


@pytest.mark.clause("NPC-c2")
def test_generated_claims_not_in_the_facts_are_never_spoken(kb, personas, memory, user):
    agent = NpcAgent(kb, personas.get("sage"), memory, generator=InventingGenerator())
    reply = agent.respond(user, "What is the armor class of a lich?")
    assert "99" not in reply.text and "armor class of 20" in reply.text
    assert reply.generator == "inventing->extractive"



@pytest.mark.clause("NPC-d1")
@pytest.mark.parametrize("question", ["Who are you?", "What is the armor class of a lich?"])
def test_spoken_sentences_are_the_reply_word_for_word(sage, user, question):
    events = list(sage.stream(user, question))
    spoken = " ".join(e.data["text"] for e in events if e.type == "sentence")
    assert spoken.split() == events[-1].data["reply"].text.split()
