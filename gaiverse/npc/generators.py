"""Answer generators: an extractive, templated one that needs no model, and a llama.cpp one.

Both receive the same ``GenerationRequest`` (persona, question, retrieved facts, the grounded
sentences chosen from them, and the user's memory) and stream text token by token (NPC-d1).
The extractive generator quotes the knowledge base verbatim inside persona phrasing, so it
cannot state an unsupported fact; the language-model generator phrases answers more naturally
and is checked sentence by sentence against the facts by the dialogue layer (NPC-c2).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
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
    n_ctx: int = 1024
    """Context window in tokens (prompts stay under ~300 tokens; a smaller window is a smaller KV cache)."""
    n_threads: int = field(default_factory=lambda: int(os.environ.get("GAIVERSE_NPC_LLM_THREADS", "2")))
    """CPU threads (env ``GAIVERSE_NPC_LLM_THREADS``). On 2 free cores two threads evaluate a prompt ~1.9x
    faster than one; but llama.cpp's threads wait on each other at every layer, so on an oversubscribed
    machine (load average 8-20 on 2 cores) two threads ran 3-10x slower than one: set 1 there."""
    max_tokens: int = 48
    """Longest answer, in tokens: NPC answers are one sentence, sometimes two."""
    temperature: float = 0.0
    """Greedy: answers restate facts, and the same question gets the same answer (testable, cacheable)."""
    max_facts: int = 0
    """Passages placed in the prompt besides the grounded sentences. None by default: prompt length drives
    time to first token, and the checker rejects numbers and names from outside the grounded sentences."""
    max_fact_chars: int = 240
    """Each extra passage is cut to this many characters in the prompt."""
    memory_lines: int = 3
    """Recent dialogue lines (and the attitude line) kept in the prompt."""
    lead_in: bool = True
    """Say a short persona lead-in ("Let me recall.") at once and let the model continue it, so the first
    text token does not wait for the model's prompt evaluation. (The session's sentence splitter still
    speaks it only once the model's first checked sentence starts.)"""


SYSTEM_RULES = (
    "You are a character in a fantasy world who answers a visitor's question. The user message tells you who "
    "you are, the facts you know, and the question. Stay in character. Answer in one short sentence using ONLY "
    "those facts. Copy names and numbers exactly as written in the facts. If the facts do not answer the "
    "question, say that you do not know. Never invent names, numbers or events."
)
"""The system prompt: the same for every NPC and turn, so llama.cpp keeps its evaluated prefix cached."""

LEAD_INS: dict[str, list[str]] = {
    "scholarly": ["Let me recall.", "Indeed.", "A fine question."],
    "friendly": ["Oh, I know this one!", "Let me think.", "Ha, good question."],
    "gruff": ["Listen.", "Right.", "Hmph."],
    "formal": ["Certainly.", "Allow me.", "Of course."],
}


def lead_in(persona: NpcPersona, turn: int) -> str:
    """A short persona-styled opening sentence (never empty, unlike the extractive opener)."""
    options = LEAD_INS.get(persona.style, LEAD_INS["scholarly"])
    return options[turn % len(options)]


class LlamaGenerator:
    """A llama.cpp chat model with persona, retrieved facts and memory in the prompt. NPC-d1.

    Latency (NPC-d1): the system prompt is one constant text for every NPC, so llama.cpp's prefix
    match keeps it evaluated across turns and personas; the persona comes first in the user message,
    so consecutive turns with one NPC reuse that too. ``lead_in`` is spoken before the model runs
    and prefilled as the start of the model's answer, which the model continues.
    Grounding (NPC-c2): only called for questions the retrieval gate grounded; the dialogue layer
    checks each generated sentence against the facts and falls back to the extractive answer.
    """

    name = "llama"
    last_first_token_s: float | None = None
    """Seconds from the request to the model's first token in the last ``stream`` (lock wait included)."""

    def __init__(self, config: LlamaConfig):
        path = Path(config.model_path)
        if not path.is_file():
            raise FileNotFoundError(f"`model_path` must be a .gguf file, got {path}")
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as err:
            raise RuntimeError("the language-model generator needs `llama-cpp-python` "
                               "(see requirements/requirements-llm.txt)") from err
        self.config = config
        self._lock = threading.Lock()
        log.info("loading %s", path)
        self.llm = Llama(model_path=str(path), n_ctx=config.n_ctx, n_threads=config.n_threads,
                         n_threads_batch=config.n_threads, verbose=False)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{path} has no chat template (tokenizer.chat_template); use a chat-tuned GGUF")
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        self._eos = self.llm._model.token_get_text(eos) if eos != -1 else ""
        self._format = Jinja2ChatFormatter(template, self._eos,
                                           self.llm._model.token_get_text(bos) if bos != -1 else "")
        self.warm()

    def warm(self) -> None:
        """Evaluate the constant system prompt once, so the first user turn finds it cached."""
        prompt = self.prompt([{"role": "system", "content": SYSTEM_RULES}, {"role": "user", "content": "Hello."}])
        with self._lock:
            for _ in self.llm.create_completion(prompt, max_tokens=1, temperature=0.0, stream=True):
                pass

    def prompt(self, messages: list[dict], prefill: str = "") -> str:
        """The chat template's text for ``messages`` with the assistant turn opened (and ``prefill`` begun)."""
        return self._format(messages=messages).prompt + prefill

    def lead_in(self, request: GenerationRequest) -> str:
        """What the NPC says at once, before the model's first token ("" when disabled)."""
        return lead_in(request.persona, request.turn) if self.config.lead_in else ""

    def messages(self, request: GenerationRequest) -> list[dict]:
        persona = request.persona
        cut = self.config.max_fact_chars
        facts = [" ".join(request.answer)] + [f[:cut].rsplit(" ", 1)[0] if len(f) > cut else f
                                               for f in request.facts[: self.config.max_facts]]
        user = f"{persona.describe()} You speak in a {persona.style} way.\n\nFacts:\n"
        user += "\n".join(f"- {f}" for f in dict.fromkeys(facts) if f)
        # the user's side of the dialogue only: a 0.5B model copies its own earlier answers into new ones
        memory = [m for m in request.memory.splitlines() if not m.startswith("You:")][-self.config.memory_lines:]
        if memory:
            user += "\n\nConversation so far:\n" + "\n".join(memory)
        user += f"\n\nQuestion: {request.question}"
        return [{"role": "system", "content": SYSTEM_RULES}, {"role": "user", "content": user}]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """The model's continuation of the lead-in (the lead-in itself is the caller's to say)."""
        lead = self.lead_in(request)
        prompt = self.prompt(self.messages(request), prefill=f"{lead} " if lead else "")
        started = time.perf_counter()
        self.last_first_token_s = None
        with self._lock:  # one llama context serves one generation at a time
            chunks = self.llm.create_completion(
                prompt, stream=True, max_tokens=self.config.max_tokens, temperature=self.config.temperature,
                top_p=1.0, repeat_penalty=1.0, stop=[self._eos, "\n\n", "Question:", "User:"])
            first = True
            for chunk in chunks:
                text = chunk["choices"][0].get("text") or ""
                if first:
                    text = text.lstrip()
                first = first and not text
                if text:
                    if self.last_first_token_s is None:
                        self.last_first_token_s = time.perf_counter() - started
                    yield text
