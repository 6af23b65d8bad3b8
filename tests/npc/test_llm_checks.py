"""The checks every language-model answer passes before it is spoken (NPC-c2), with scripted model output.

The scripted generators stand in for the language model's text only: the retrieval gate, the
checks and the fallback under test are the real ones, and run without llama-cpp-python.
"""

from __future__ import annotations

import pytest

from gaiverse.npc.dialogue import NpcAgent
from gaiverse.npc.generators import GenerationRequest


class Scripted:
    """Model output fixed in advance, streamed in small pieces like llama.cpp's tokens."""

    def __init__(self, text: str, lead: str = ""):
        self.text, self.lead, self.name = text, lead, "scripted"

    def lead_in(self, request: GenerationRequest) -> str:
        return self.lead

    def stream(self, request: GenerationRequest):
        for i in range(0, len(self.text), 5):
            yield self.text[i:i + 5]


def _agent(kb, personas, memory, text: str, lead: str = "") -> NpcAgent:
    return NpcAgent(kb, personas.get("sage"), memory, generator=Scripted(text, lead))


@pytest.mark.clause("NPC-c2")
def test_a_model_that_declines_a_grounded_question_is_replaced_by_the_fact(kb, personas, memory, user):
    reply = _agent(kb, personas, memory, "I am not sure, I do not know that.").respond(
        user, "What is the capital of Kenya?")
    assert "Nairobi" in reply.text and not reply.refused and reply.grounded
    assert reply.generator == "scripted->extractive"


@pytest.mark.clause("NPC-c2")
def test_a_model_answer_without_the_asked_value_gets_the_fact_appended(kb, personas, memory, user):
    reply = _agent(kb, personas, memory, "Liches are fearsome undead spellcasters.", lead="Indeed.").respond(
        user, "What is the armor class of a lich?")
    assert reply.text.startswith("Indeed. Liches are fearsome undead spellcasters.")
    assert "20" in reply.text and reply.generator == "scripted+extractive"


@pytest.mark.clause("NPC-c2")
def test_an_invented_name_after_the_lead_in_falls_back_without_repeating_the_opener(kb, personas, memory, user):
    reply = _agent(kb, personas, memory, "The capital of Kenya is Mombasa.", lead="Let me recall.").respond(
        user, "What is the capital of Kenya?")
    assert "Mombasa" not in reply.text and "Nairobi" in reply.text
    assert reply.text.startswith("Let me recall. ") and reply.text.count("Let me recall") == 1


@pytest.mark.clause("NPC-c2")
def test_a_good_model_answer_is_spoken_as_generated(kb, personas, memory, user):
    reply = _agent(kb, personas, memory, "Nairobi is the capital of Kenya, traveller.", lead="Indeed.").respond(
        user, "What is the capital of Kenya?")
    assert reply.text == "Indeed. Nairobi is the capital of Kenya, traveller."
    assert reply.generator == "scripted" and reply.grounded


@pytest.mark.clause("NPC-c2")
def test_names_from_the_users_memory_may_be_said(kb, personas, memory, user):
    agent = _agent(kb, personas, memory, "Nairobi is the capital of Kenya, Ysolde.")
    agent.respond(user, "My name is Ysolde.")
    reply = agent.respond(user, "What is the capital of Kenya?")
    assert reply.text == "Nairobi is the capital of Kenya, Ysolde." and reply.generator == "scripted"


@pytest.mark.clause("NPC-c2")
def test_a_number_of_the_answer_sentence_that_is_not_the_asked_value_is_held_back(kb, personas, memory, user):
    base = NpcAgent(kb, personas.get("sage"), memory).respond(user + "-x", "How fast can a kraken swim?")
    assert "120" in base.text  # the grounded sentence holds the walking speed too
    other = next(n for n in ("20", "30", "40", "60") if n in base.text)
    reply = _agent(kb, personas, memory, f"It swims {other} feet.", lead="Indeed.").respond(
        user, "How fast can a kraken swim?")
    assert f"swims {other}" not in reply.text and "120" in reply.text and reply.generator == "scripted->extractive"
