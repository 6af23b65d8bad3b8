"""Answer generators: an extractive, templated one that needs no model, and a llama.cpp one.

Both receive the same ``GenerationRequest`` (persona, question, retrieved facts, the grounded
sentences chosen from them, and the user's memory) and stream text token by token (NPC-d1).
The extractive generator quotes the knowledge base verbatim inside persona phrasing, so it
cannot state an unsupported fact; the language-model generator phrases answers more naturally
and is checked sentence by sentence against the facts by the dialogue layer (NPC-c2).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence, runtime_checkable

from gaiverse.npc.persona import NpcPersona, line

log = logging.getLogger(__name__)


@dataclass
class GenerationRequest:
    """Everything a generator may use to phrase one grounded answer."""

    persona: NpcPersona
    question: str
    answer: Sequence[str]
    """The grounded sentences (verbatim knowledge-base text) that answer the question."""
    facts: Sequence[str]
    """Retrieved passages, best first (context for a language model)."""
    memory: str = ""
    """Summary of the dialogue so far."""
    turn: int = 0
    """Turn number, to vary phrasing."""


@runtime_checkable
class Generator(Protocol):
    """Streams the NPC's answer text; concatenating the tokens gives the full answer."""

    name: str

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        ...


def word_tokens(text: str) -> Iterator[str]:
    """Split text into streamable tokens (words with their trailing space)."""
    for match in re.finditer(r"\S+\s*", text):
        yield match.group()


class ExtractiveGenerator:
    """Persona opener + the grounded sentences, verbatim. Works with no language model."""

    name = "extractive"

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        opener = line(request.persona, "open", request.turn)
        yield from word_tokens(opener + " ".join(request.answer))


@dataclass
class LlamaConfig:
    """A GGUF chat model run by llama-cpp-python."""

    model_path: Path
    """The ``.gguf`` file (see ``gaiverse.npc.llm.assemble_gguf`` for the packaged Qwen2.5 0.5B)."""
    n_ctx: int = 2048
    """Context window in tokens."""
    n_threads: int = 2
    """CPU threads; the target machine has 2 cores."""
    max_tokens: int = 80
    """Longest answer, in tokens: NPC answers are a sentence or two."""
    temperature: float = 0.2
    """Low: answers should restate facts, not wander."""
    chat_format: str | None = None
    """None: the template embedded in the GGUF."""
    max_facts: int = 2
    """Passages placed in the prompt besides the grounded sentences (prompt length drives time to first token)."""
    max_fact_chars: int = 300
    """Each passage is cut to this many characters in the prompt."""
    memory_turns: int = 2
    """Recent dialogue lines kept in the prompt."""


SYSTEM_RULES = (
    "Stay in character. Answer the user's question in one or two short sentences using ONLY the facts "
    "they give you. Copy names and numbers exactly as written in the facts. If the facts do not answer "
    "the question, say that you do not know. Never invent names, numbers or events."
)


class LlamaGenerator:
    """A llama.cpp chat model with persona, retrieved facts and memory in the prompt. NPC-d1.

    The system prompt (persona + rules) stays the same across turns so llama.cpp reuses its
    cached prefix; facts, memory and the question go in the user message.
    """

    name = "llama"

    def __init__(self, config: LlamaConfig):
        path = Path(config.model_path)
        if not path.is_file():
            raise FileNotFoundError(f"`model_path` must be a .gguf file, got {path}")
        try:
            from llama_cpp import Llama
        except ImportError as err:
            raise RuntimeError("the language-model generator needs `llama-cpp-python` "
                               "(see requirements/requirements-extra.txt)") from err
        self.config = config
        self._lock = threading.Lock()
        log.info("loading %s", path)
        self.llm = Llama(model_path=str(path), n_ctx=config.n_ctx, n_threads=config.n_threads,
                         chat_format=config.chat_format, verbose=False)

    def messages(self, request: GenerationRequest) -> list[dict]:
        persona = request.persona
        system = f"{persona.describe()} {SYSTEM_RULES}"
        cut = self.config.max_fact_chars
        facts = [" ".join(request.answer)] + [f[:cut] for f in request.facts[: self.config.max_facts]]
        user = "Facts:\n" + "\n".join(f"- {f}" for f in dict.fromkeys(facts) if f)
        memory = request.memory.splitlines()[-self.config.memory_turns - 1:] if request.memory else []
        if memory:
            user += "\n\nConversation so far:\n" + "\n".join(memory)
        user += f"\n\nQuestion: {request.question}"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        with self._lock:  # one llama context serves one generation at a time
            chunks = self.llm.create_chat_completion(
                messages=self.messages(request), stream=True, max_tokens=self.config.max_tokens,
                temperature=self.config.temperature, top_p=0.9, repeat_penalty=1.1)
            for chunk in chunks:
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield delta
