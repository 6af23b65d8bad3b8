"""One NPC talking with users: understand -> remember -> retrieve -> ground -> generate -> express.

Implements NPC-c1 (text, voice and mouse/controller input), NPC-c2 (context, intent, grounded
answers, expressions) and NPC-d1 (streamed text with gestures and lip-sync timing). A turn is a
stream of typed events a WebSocket service can forward unchanged:

- ``intent``: what the user wanted (and the NPC's immediate body behaviour);
- ``expression``: emotion, ARKit blendshape weights and gesture for the reply;
- ``token``: the reply text, token by token;
- ``sentence``: each finished sentence with its viseme timing (for TTS and lip sync);
- ``reply``: the final ``Reply`` (text, grounded/refused flags, sources).

Answers that the knowledge base cannot ground are declined in character. Language-model output
is checked sentence by sentence against the retrieved facts; a sentence with a number or name the
facts lack is never emitted, and the extractive answer is used instead.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from gaiverse.npc.expression import react, visemes
from gaiverse.npc.generators import ExtractiveGenerator, GenerationRequest, Generator, word_tokens
from gaiverse.npc.grounding import (NUMERIC_Q, GroundedAnswer, GroundingConfig, contradicts, focus_terms,
                                    select_answer, unsupported_claims)
from gaiverse.npc.judging import stated_number
from gaiverse.npc.knowledge_base import KnowledgeBase, Scope
from gaiverse.npc.memory import MemoryStore, Turn
from gaiverse.npc.persona import NpcPersona, line
from gaiverse.npc.text import numbers, sentences, terms
from gaiverse.npc.understanding import HciSignal, Intent, Understanding

log = logging.getLogger(__name__)

REFUSAL = re.compile(r"\b(i do not know|i don'?t know|not something i know|cannot say|can'?t say|can'?t tell|"
                     r"cannot answer|beyond my|outside my|not my (trade|line)|never heard|do not know|don'?t know|"
                     r"no idea|i'?m not sure|i am not sure|not sure)\b", re.I)


@dataclass
class NpcEvent:
    """One typed event of a turn, for the client."""

    type: str
    """intent | expression | token | sentence | reply"""
    data: dict[str, Any]


@dataclass
class Reply:
    """The NPC's complete answer to one turn."""

    text: str
    intent: str
    grounded: bool = False
    """True when the text states knowledge-base facts."""
    refused: bool = False
    """True when the NPC declined to answer."""
    sources: list[str] = field(default_factory=list)
    """Sources of the quoted passages."""
    facts: list[str] = field(default_factory=list)
    """The retrieved passages the answer was grounded on."""
    confidence: float = 0.0
    generator: str = ""
    behaviour: str | None = None
    emotion: str = "neutral"
    gesture: str = "idle"
    seconds_to_first_token: float | None = None
    seconds: float = 0.0
    request: GenerationRequest | None = field(default=None, repr=False, compare=False)
    """The pending generation while the turn streams; None once the text is final."""


@dataclass
class AgentConfig:
    """Retrieval and checking of one NPC's answers."""

    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    """Gate that decides whether the knowledge base answers a question."""
    check_generated: bool = True
    """Check language-model sentences against the facts before emitting them."""


class NpcAgent:
    """An NPC with a persona, a knowledge base, per-user memory and a generator."""

    def __init__(self, kb: KnowledgeBase, persona: NpcPersona, memory: MemoryStore | None = None,
                 generator: Generator | None = None, config: AgentConfig | None = None):
        self.kb = kb
        self.persona = persona
        self.memory = memory or MemoryStore()
        self.generator = generator or ExtractiveGenerator()
        self.fallback = ExtractiveGenerator()
        self.config = config or AgentConfig()
        self.understanding = Understanding(kb.entities())

    def respond(self, user_id: str, text: str | None = None, signal: HciSignal | None = None,
                source: str = "text") -> Reply:
        """Run one turn and return the final reply (``stream`` without the events)."""
        reply = None
        for event in self.stream(user_id, text=text, signal=signal, source=source):
            if event.type == "reply":
                reply = event.data["reply"]
        assert reply is not None
        return reply

    def stream(self, user_id: str, text: str | None = None, signal: HciSignal | None = None,
               source: str = "text") -> Iterator[NpcEvent]:
        """One turn as events. Give ``text`` (typed, or ASR output with ``source='voice'``) or a ``signal``."""
        if (text is None) == (signal is None):
            raise ValueError("give exactly one of `text` or `signal`")
        started = time.perf_counter()
        mem = self.memory.get(user_id, self.persona.id)
        if text is not None:
            intent = self.understanding.from_text(text, last_entity=mem.last_entity, source=source)  # type: ignore[arg-type]
        else:
            intent = self.understanding.from_signal(signal, greeted=mem.greeted)  # type: ignore[arg-type]
        yield NpcEvent("intent", {"intent": intent.name, "source": intent.source, "entities": list(intent.entities),
                                  "target": intent.target, "behaviour": intent.behaviour})
        previous_questions = mem.questions()
        mem.record(Turn("user", intent.text, intent.name, intent.source))
        if intent.source != "text" and intent.source != "voice":
            mem.actions.append(intent.text)

        reply = self._plan(intent, mem, previous_questions)
        expression = react(intent.name, reply.text, reply.refused, intent.rude, mem.relationship)
        reply.emotion, reply.gesture, reply.behaviour = expression.emotion, expression.gesture, intent.behaviour
        yield NpcEvent("expression", {"emotion": expression.emotion, "intensity": expression.intensity,
                                      "gesture": expression.gesture, "blendshapes": expression.blendshapes})
        tokens = self._tokens(reply)
        text_out, pending = "", ""
        for token in tokens:
            if reply.seconds_to_first_token is None:
                reply.seconds_to_first_token = time.perf_counter() - started
            text_out += token
            pending += token
            yield NpcEvent("token", {"text": token})
            done = sentences(pending)
            if len(done) > 1:  # every sentence but the last is finished
                for sent in done[:-1]:
                    yield NpcEvent("sentence", {"text": sent, "visemes": visemes(sent)})
                pending = done[-1] + (" " if pending[-1:].isspace() else "")  # keep the word gap
        if pending.strip():
            yield NpcEvent("sentence", {"text": pending.strip(), "visemes": visemes(pending.strip())})
        reply.text = text_out.strip()
        if reply.grounded and REFUSAL.search(reply.text) and reply.generator == self.generator.name != "extractive":
            reply.refused, reply.grounded = True, False
        reply.seconds = time.perf_counter() - started
        mem.record(Turn("npc", reply.text, intent.name))
        mem.update_relationship(intent.name, intent.rude)
        self.memory.save(mem)
        yield NpcEvent("reply", {"reply": reply})

    # ---------------------------------------------------------------- planning

    def _plan(self, intent: Intent, mem, previous_questions: list[str]) -> Reply:
        """Decide what to say; answers to questions carry a pending generation request."""
        p, turn = self.persona, len(mem.turns)
        if intent.rude and intent.name in ("smalltalk", "none"):
            return Reply(line(p, "rude", turn), intent.name)
        if intent.name == "greet":
            text = p.greeting if not mem.greeted and p.greeting else line(p, "greet_again", turn)
            mem.greeted = True
            return Reply(text, "greet")
        if intent.name == "recall":
            return Reply(self._recall(intent.text, mem, previous_questions), "recall")
        if intent.name == "about_self":
            mem.greeted = True
            return Reply(p.introduction(), "about_self")
        if intent.name == "give_item":
            item = intent.target or "gift"
            mem.items_received.append(item)
            mem.actions.append(f"gave me {item}")
            return Reply(line(p, "give", turn, item=item), "give_item")
        if intent.name in ("thank", "leave", "follow", "trade"):
            return Reply(line(p, intent.name, turn), intent.name)
        if intent.name == "point_at":
            if not intent.target:
                return Reply(line(p, "smalltalk", turn), "point_at")
            mem.actions.append(f"pointed at {intent.target}")
            reply = self._answer(f"What is {intent.target}?", mem, turn)
            prefix = line(p, "point", turn, target=intent.target)
            reply.text = f"{prefix} {reply.text}".strip()  # a grounded answer's text follows from its request
            reply.intent = "point_at"
            return reply
        if intent.name == "ask":
            if intent.source not in ("text", "voice") and not intent.query:  # a click or button: invite a question
                return Reply(line(p, "smalltalk", turn), "ask")
            return self._answer(intent.query or intent.text, mem, turn)
        if intent.name == "none":
            return Reply("", "none")
        return Reply(line(p, "smalltalk", turn), intent.name)

    def _recall(self, text: str, mem, previous_questions: list[str]) -> str:
        """Answer questions about the conversation itself from memory (NPC-c2 context)."""
        if re.search(r"\b(give|gave|brought)\b", text, re.I):
            if not mem.items_received:
                return "You have not given me anything yet."
            return f"You gave me {', '.join(_with_article(i) for i in mem.items_received)}."
        if not previous_questions:
            return "You have not asked me anything yet."
        if re.search(r"\bfirst\b", text, re.I):
            return f"Your first question was: \u201c{previous_questions[0]}\u201d"
        if len(previous_questions) > 1 and re.search(r"\b(all|everything|questions)\b", text, re.I):
            quoted = "; ".join(f"\u201c{q}\u201d" for q in previous_questions[-5:])
            return f"You asked me: {quoted}"
        return f"You asked me: \u201c{previous_questions[-1]}\u201d"

    def _retrieve(self, question: str, user_id: str, domains) -> tuple[list, GroundedAnswer]:
        hits = self.kb.search(question, Scope(user_id=user_id, npc_id=self.persona.id), domains=domains,
                              k=self.config.grounding.passages)
        idf = self.kb.idf(focus_terms(question))
        ignore = [self.persona.name, self.persona.id.replace("_", " ")]
        return hits, select_answer(question, hits, idf, self.config.grounding, ignore=ignore)

    def _answer(self, question: str, mem, turn: int) -> Reply:
        """Retrieve, gate on grounding, and prepare the generation request."""
        hits, answer = self._retrieve(question, mem.user_id, self.persona.domains)
        if not answer.grounded:
            text = line(self.persona, "refuse", turn)
            if self.persona.domains:
                _, anywhere = self._retrieve(question, mem.user_id, None)
                if anywhere.grounded:
                    text = line(self.persona, "out_of_domain", turn)
            log.info("declined %r: %s (coverage %.2f, missing %s)", question, answer.reason, answer.coverage,
                     answer.missing)
            return Reply(text, "ask", refused=True, facts=[h.text for h in hits[:3]], confidence=answer.confidence)
        assert answer.hit is not None
        mem.last_entity = answer.hit.entity or mem.last_entity
        reply = Reply("", "ask", grounded=True, sources=[answer.hit.source], facts=[h.text for h in hits],
                      confidence=answer.confidence, generator=self.generator.name)
        reply.request = GenerationRequest(self.persona, question, answer.sentences, [h.text for h in hits],
                                          mem.summary(), turn)
        return reply

    def _tokens(self, reply: Reply) -> Iterator[str]:
        """The reply's tokens: planned text, or a (checked) generation."""
        request, reply.request = reply.request, None
        if reply.text:  # planned words: the whole reply, or a lead-in before a generated answer
            yield from word_tokens(reply.text + (" " if request is not None else ""))
        if request is None:
            return
        if isinstance(self.generator, ExtractiveGenerator):
            yield from self.generator.stream(request)
            return
        lead = self.generator.lead_in(request) if hasattr(self.generator, "lead_in") else ""
        if lead:  # said at once, while the model evaluates its prompt (the model continues it)
            yield from word_tokens(lead + " ")
        if not self.config.check_generated:
            yield from self.generator.stream(request)
            return
        yield from self._checked(request, reply, bool(lead))

    def _checked(self, request: GenerationRequest, reply: Reply, led: bool = False) -> Iterator[str]:
        """Language-model tokens, released a sentence at a time after the sentence passes the checks.

        A sentence is held back when it states a number or name that neither the answering
        sentences nor the user's own words contain, gives a numeric question another value than the
        grounded answer, negates the grounded answer, or declines
        although the knowledge base answers the question; then the grounded (extractive) answer
        is said instead. When the model's sentences never carry the answer itself, the grounded
        sentences follow them.
        """
        said_by_user = user_lines(request.memory)
        allowed = [request.question, self.persona.name, self.persona.role, said_by_user]
        # numbers and names must come from the answering sentences (or the user), not from any retrieved
        # passage: those hold values that answer other questions ("51,393,010 is the capital of Kenya")
        facts = list(request.answer)
        buffer, emitted, carried = "", False, False
        numeric = NUMERIC_Q.search(request.question) and numbers(" ".join(request.answer))
        value = stated_number(request.question, " ".join(request.answer)) if numeric else None

        def check(sent: str) -> None:
            bad = unsupported_claims(sent, facts, allowed)
            if value is not None and numbers(sent) and stated_number(request.question, sent) != value:
                bad.append(f"states another value than {value:g}")
            if not emitted and contradicts(sent, request.answer):
                bad.append("negation")
            if REFUSAL.search(sent):
                bad.append("declined a grounded question")
            if bad:
                raise _Unsupported(sent, bad)

        stream = self.generator.stream(request)
        try:
            for token in stream:
                buffer += token
                done = sentences(buffer)
                if len(done) < 2:
                    continue
                for sent in done[:-1]:
                    check(sent)
                    yield from word_tokens(sent + " ")
                    emitted, carried = True, carried or carries_answer(sent, request)
                buffer = done[-1]
            if buffer.strip():
                check(buffer)
                yield from word_tokens(buffer.strip())
                emitted, carried = True, carried or carries_answer(buffer, request)
        except _Unsupported as err:
            log.info("generated sentence %r: %s", err.sentence, err.claims)
        finally:
            if hasattr(stream, "close"):
                stream.close()  # stop generating at once and free the model for the next turn
        if not emitted or not carried:
            reply.generator = f"{self.generator.name}{'+' if emitted else '->'}extractive"
            if led or emitted:  # the lead-in (or the model's own words) already opened the answer
                if emitted:
                    yield " "
                yield from word_tokens(" ".join(request.answer))
            else:
                yield from self.fallback.stream(request)


def carries_answer(text: str, request: GenerationRequest) -> bool:
    """True when ``text`` states the grounded answer's substance: for a numeric question the value the
    answer states for it, else a third (at least one) of the answer's content words the question lacks."""
    answer = " ".join(request.answer)
    wanted = numbers(answer)
    if wanted and NUMERIC_Q.search(request.question):
        # the value the question points at, not any number of the sentence ("swim 120 ft." vs "speed 30 ft.")
        return stated_number(request.question, text) == stated_number(request.question, answer)
    new_terms = set(terms(answer)) - set(terms(request.question)) - set(terms(request.persona.name))
    return not new_terms or len(new_terms & set(terms(text))) >= max(1, round(len(new_terms) / 3))


def user_lines(memory: str) -> str:
    """The user's own words and actions in a memory summary (not the NPC's earlier answers)."""
    return "\n".join(line_ for line_ in memory.splitlines() if not line_.startswith("You:"))


def _with_article(item: str) -> str:
    if re.match(r"^(a|an|the|some|my|your)\b|^\d", item, re.I):
        return item
    return ("an " if item[:1].lower() in "aeiou" else "a ") + item


class _Unsupported(Exception):
    def __init__(self, sentence: str, claims: list[str]):
        super().__init__(sentence)
        self.sentence, self.claims = sentence, claims
