"""Judging NPC answers against a QA item: is an accepted answer stated? is it a refusal?

Numeric answers are judged on the *stated value*: the number in the reply that the question's
words point at ("armor class of 17"), not any digit somewhere in a long reply. Each number's
claim to be the answer is scored by how close it sits after the question's content words,
weighting words that occur once in the reply (the attribute: 'armor class') over words repeated
in every sentence (the subject: 'aboleth'). Used by ``gaiverse eval npc`` (EVAL.md).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from gaiverse.npc.grounding import focus_terms
from gaiverse.npc.text import normalise, numbers_with_positions, parse_number, stem, words

REFUSE_MARKERS = frozenset({"", "refuse", "refusal", "refused", "unknown", "i don't know", "i do not know",
                            "no answer", "n/a", "<refuse>", "none", "decline", "out of knowledge"})
"""An item whose ``expected`` is one of these (and whose ``accept`` list is empty) expects a refusal."""


@dataclass
class Judgement:
    correct: bool
    stated: str | None
    """The stated value the judgement rests on (a number, or the matched accepted string)."""
    reason: str


def expects_refusal(expected: str | None, accept: Sequence[str]) -> bool:
    text = "" if expected is None else str(expected)
    return not [a for a in accept if str(a).strip()] and normalise(text) in REFUSE_MARKERS


def _numeric(candidate: str) -> float | None:
    """The value of a purely numeric accepted answer ('17', '9,733,276', '1/4', 'seventeen')."""
    text = candidate.strip()
    if re.fullmatch(r"-?[\d,]+(\.\d+)?|-?\d+/\d+|[a-z]+", text.lower()):
        return parse_number(text)
    return None


def stated_number(question: str, reply: str) -> float | None:
    """The number the reply states as the answer to ``question`` (see the module docstring)."""
    found = numbers_with_positions(reply)
    if not found:
        return None
    if len(found) == 1:
        return found[0][0]
    tokens = [stem(w) for w in (re.sub(r"[^\w']", "", t).lower() for t in reply.split())]
    focus = set(focus_terms(question))
    counts = Counter(t for t in tokens if t in focus)
    occurrences = [(i, t) for i, t in enumerate(tokens) if t in focus]
    if not occurrences:
        return found[0][0]
    best, best_score = found[0][0], -1.0
    for value, pos in found:
        score = 0.0
        for term in counts:
            near = 0.0
            for i, t in occurrences:
                if t != term:
                    continue
                dist = pos - i if pos > i else (i - pos) + 2  # numbers follow their attribute: "class of 17"
                near = max(near, 1.0 / (1.0 + dist))
            score += near / counts[term]
        if score > best_score + 1e-9:
            best, best_score = value, score
    return best


def judge(question: str, reply: str, expected: str | None, accept: Sequence[str], refused: bool) -> Judgement:
    """Whether ``reply`` answers the item correctly (a refusal is correct only where one is expected)."""
    if expects_refusal(expected, accept):
        return Judgement(refused, None, "refused as expected" if refused else "answered an out-of-knowledge question")
    if refused:
        return Judgement(False, None, "refused an answerable question")
    candidates = [str(c) for c in ([expected] if expected is not None else []) + list(accept) if str(c).strip()]
    norm_reply = f" {normalise(reply)} "
    stated = None
    for cand in candidates:
        value = _numeric(cand)
        if value is not None and not cand.strip().isalpha():
            stated = stated_number(question, reply)
            if stated is not None and abs(stated - value) <= 1e-6 * max(1.0, abs(value)):
                return Judgement(True, f"{stated:g}", f"stated value {stated:g} equals {cand}")
            continue
        if value is not None:  # a number word ('three'): accept the digits or the word
            stated = stated_number(question, reply)
            if stated is not None and stated == value:
                return Judgement(True, f"{stated:g}", f"stated value {stated:g} equals {cand}")
        if f" {normalise(cand)} " in norm_reply and normalise(cand):
            return Judgement(True, cand, f"states {cand!r}")
        # an accepted phrase made of several words may appear with its words in another order
        cand_words = [w for w in words(cand) if len(w) > 2]
        if len(cand_words) > 1 and all(f" {w} " in norm_reply for w in cand_words):
            return Judgement(True, cand, f"states all words of {cand!r}")
    shown = f"{stated:g}" if isinstance(stated, float) else None
    return Judgement(False, shown, "no accepted answer stated" + (f" (stated value {shown})" if shown else ""))
