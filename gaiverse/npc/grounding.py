"""Grounding: pick the sentence that answers a question from retrieved passages, decide whether the
knowledge base really answers it, and check any answer's claims against the facts.

An NPC must decline questions its knowledge cannot answer rather than invent (NPC-c2, NPC-d2,
and MODELS.md's warning that the small chat model invents kings of France). Retrieval always
returns *something*, so the gate is term coverage: the share (idf-weighted) of the question's
content words that the chosen sentence and its subject contain. "Who is the king of France?"
retrieves France's passage, but 'king' is nowhere in it, so coverage is low and the NPC declines.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Sequence

from gaiverse.npc.knowledge_base import Hit
from gaiverse.npc.text import numbers, sentences, terms

log = logging.getLogger(__name__)

GENERIC = frozenset(terms(
    "condition conditions spell spells monster monsters creature creatures item items city cities country "
    "countries place thing things work works mean means effect effects happen happens called kind type "
    "info information detail details fact facts"))
"""Words that name a kind of subject, not what is asked about it."""
NUMERIC_Q = re.compile(r"\b(how (many|much|far|long|big|heavy|old|fast)|number|amount|level|population|area|cost|"
                       r"price|weight|range|speed|challenge rating|armor class|ac|hit points|hp)\b", re.I)


@dataclass
class GroundingConfig:
    """Thresholds of the grounding gate, tuned on the dev QA set."""

    min_coverage: float = 0.6
    """Share (idf-weighted) of the question's content words the answer sentence must contain."""
    min_cosine: float = 0.3
    """Lowest question-passage cosine similarity an answer may rest on."""
    min_cosine_unnamed: float = 0.5
    """Lowest cosine when the question does not name the passage's subject (guards against word collisions)."""
    max_sentences: int = 2
    """Sentences quoted for a descriptive question ("what is X?"), more while shorter than min_description_chars."""
    min_description_chars: int = 100
    """A description goes on past ``max_sentences`` until it is at least this long."""
    max_chars: int = 360
    """Longest quoted answer."""
    passages: int = 6
    """Retrieved passages considered."""


@dataclass
class GroundedAnswer:
    """The quoted answer (or the reason there is none)."""

    sentences: list[str]
    """Verbatim sentences from the knowledge base; empty when not grounded."""
    hit: Hit | None
    """The passage they come from."""
    coverage: float
    """Question words found in the answer, idf-weighted, 0..1."""
    grounded: bool
    """True when the knowledge base answers the question."""
    reason: str = ""
    """Why not grounded: no_passages, low_coverage, low_similarity."""
    missing: list[str] = field(default_factory=list)
    """Question words the answer does not contain."""

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def confidence(self) -> float:
        """0..1: coverage tempered by the passage's cosine similarity."""
        return 0.0 if self.hit is None else round(min(1.0, self.coverage * (0.5 + max(self.hit.cosine, 0.0))), 3)


def focus_terms(question: str) -> list[str]:
    """The content words of a question: what an answer must talk about."""
    return [t for t in dict.fromkeys(terms(question)) if t not in GENERIC]


def _coverage(focus: Sequence[str], have: set[str], idf: dict[str, float]) -> tuple[float, list[str]]:
    total = sum(idf.get(t, 1.0) for t in focus)
    if total == 0:
        return 1.0, []
    missing = [t for t in focus if t not in have]
    return 1.0 - sum(idf.get(t, 1.0) for t in missing) / total, missing


def select_answer(question: str, hits: Sequence[Hit], idf: dict[str, float],
                  config: GroundingConfig | None = None, ignore: Sequence[str] = ()) -> GroundedAnswer:
    """The best-answering sentence(s) among ``hits`` and whether they really answer ``question``.

    ``ignore``: words that address the NPC ("innkeeper", its name) rather than ask about anything.
    Implements NPC-c2 grounded answers: the NPC only states sentences of its knowledge base.
    """
    config = config or GroundingConfig()
    if not hits:
        return GroundedAnswer([], None, 0.0, False, "no_passages")
    skip = set(terms(" ".join(ignore)))
    focus = [t for t in focus_terms(question) if t not in skip]
    wants_number = bool(NUMERIC_Q.search(question))
    best: tuple[float, Hit, int, list[str], float, list[str]] | None = None
    for rank, hit in enumerate(hits[:config.passages]):
        entity_terms = set(terms(hit.entity))
        sents = sentences(hit.text)
        for i, sent in enumerate(sents):
            cov, missing = _coverage(focus, set(terms(sent)) | entity_terms, idf)
            n_terms = len(terms(sent))
            score = (cov + 0.5 * hit.score + (0.15 if wants_number and numbers(sent) else 0.0) - 0.01 * i
                     - 0.02 * rank - 0.003 * n_terms - (0.2 if _is_label(sent, entity_terms) else 0.0))
            if best is None or score > best[0]:
                best = (score, hit, i, sents, cov, missing)
    assert best is not None
    _, hit, i, sents, cov, missing = best
    entity_terms = set(terms(hit.entity))
    # a descriptive question ("what is X?") names only its subject: quote the start of the subject's passage
    only_subject = not [t for t in focus if t not in entity_terms]
    if only_subject and hit.entity_match >= 1.0:
        # the subject's first passage is its summary (prior passages are stored summary first)
        first = min((h for h in hits[:config.passages] if h.entity == hit.entity), key=lambda h: h.id)
        hit, sents = first, sentences(first.text)
        chosen = _describe(sents, entity_terms, config)
    else:
        chosen = [sents[i]]
        if len(sents[i]) < 25 and i + 1 < len(sents) and not numbers(sents[i]):
            chosen.append(sents[i + 1])
    if cov < config.min_coverage:
        return GroundedAnswer([], hit, cov, False, "low_coverage", missing)
    if hit.cosine < config.min_cosine or (hit.entity_match < 1.0 and hit.cosine < config.min_cosine_unnamed):
        return GroundedAnswer([], hit, cov, False, "low_similarity", missing)
    return GroundedAnswer(chosen, hit, cov, True, "", missing)


def _describe(sents: Sequence[str], entity_terms: set[str], config: GroundingConfig) -> list[str]:
    """The opening sentences of a passage, skipping bare labels ("The Blinded condition.")."""
    chosen: list[str] = []
    for sent in sents:
        if _is_label(sent, entity_terms):
            continue
        if chosen and len(" ".join(chosen + [sent])) > config.max_chars:
            break
        chosen.append(sent)
        if len(chosen) >= config.max_sentences and len(" ".join(chosen)) >= config.min_description_chars:
            break
    return chosen or list(sents[:1])


BOILERPLATE = re.compile(r"(you experience the following effects?|as follows)[.:]?$", re.I)


def _is_label(sent: str, entity_terms: set[str]) -> bool:
    """Headings and boilerplate inside a passage: 'The Blinded condition.', 'Attacks Affected.'"""
    body = sent.split(":", 1)[-1].strip() if ":" in sent[:60] else sent
    words_ = re.findall(r"[A-Za-z][\w'’]*", body)
    title_case = len(words_) <= 6 and all(w[0].isupper() or w.lower() in ("a", "an", "and", "in", "of", "or", "the", "to") for w in words_)
    return (title_case or set(terms(body)) <= entity_terms | GENERIC or len(body) < 15
            or bool(BOILERPLATE.search(body)))


NEGATION = re.compile(r"\b(not|no|never|cannot|can't|can’t|doesn't|does not|isn't|won't|without|none)\b", re.I)


def contradicts(sentence: str, answer: Sequence[str]) -> bool:
    """True when ``sentence`` negates what the grounded ``answer`` affirms, or the reverse.

    Catches "No, Haste does not require concentration" against "Haste requires concentration".
    """
    if not answer:
        return False
    return bool(NEGATION.search(sentence)) != bool(NEGATION.search(" ".join(answer)))


PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{2,}(?:\s+[A-Z][a-z]+)*)")


def unsupported_claims(text: str, facts: Sequence[str], allowed: Sequence[str] = ()) -> list[str]:
    """Numbers and proper names stated in ``text`` that none of ``facts`` (nor ``allowed``) contains.

    Used on language-model output before it is spoken (NPC-d1) and by the evaluator to count
    hallucinations. Numbers compare by value (8,336,599 == 8336599); names case-insensitively.
    """
    pool = " ".join(list(facts) + list(allowed))
    pool_numbers = set(numbers(pool))
    pool_lower = pool.lower()
    bad = []
    for value in numbers(text):
        if value not in pool_numbers:
            bad.append(f"{value:g}")
    for sent in sentences(text):
        for match in PROPER.finditer(sent):
            name = match.group(1)
            if name.lower() not in pool_lower and not all(w.lower() in pool_lower for w in name.split()):
                bad.append(name)
    return bad
