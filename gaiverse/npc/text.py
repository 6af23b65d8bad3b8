"""Small text helpers shared by the NPC modules: tokens, stems, sentences, numbers, markup cleaning.

Keyword retrieval (BM25), grounding checks and the evaluator must agree on what a word and a
number are, so they all use the functions here.
"""

from __future__ import annotations

import html
import re

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Numbers as people write them: 8,336,599  17  0.25  -3  1/4
NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])-?\d+(?:\.\d+)?(?:/\d+)?(?![\w])")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")

STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have how i if in into is it
    its me my of on or our she he so than that the their them then there these they this to was we were what
    when where which who whom whose why will with would you your yours about tell know please much many
    any some give say said also just like let us something anything explain describe far long big often
    belong belongs live lives get gets got use used make makes""" .split()
)
"""Words that carry no topic: ignored by keyword scoring and by the grounding coverage check."""

QUESTION_WORDS = frozenset("what when where which who whom whose why how".split())

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}


TERMS_VERSION = 5
"""Bumped whenever ``terms`` changes, so stored keyword indexes are rebuilt."""

CANON = {
    "fast": "speed", "quick": "speed", "quickly": "speed", "speedy": "speed", "price": "cost", "expensive": "cost",
    "cheap": "cost", "weight": "weigh", "heavy": "weigh", "armour": "armor", "flying": "fly", "flies": "fly",
    "swimming": "swim", "swims": "swim", "climbing": "climb", "climbs": "climb", "burrowing": "burrow",
    "populous": "population", "inhabitant": "population", "money": "currency", "hp": "hit", "ac": "armor",
    "people": "population", "last": "duration", "lasts": "duration", "dark": "darkvision", "rare": "rarity",
    "neighbour": "border", "neighbor": "border", "neighbouring": "border", "neighboring": "border",
    "adjacent": "border", "bordering": "border", "reach": "range", "immunity": "immune", "resistant": "resist",
    "resistance": "resist", "vulnerability": "vulnerable",
    "colour": "color", "metre": "meter", "kilometre": "kilometer", "kilometres": "kilometer",
}
"""Synonyms and inflections folded onto one term, for the questions people ask about stat blocks and places."""


def stem(token: str) -> str:
    """A light suffix fold ('dragons' -> 'dragon', 'points' -> 'point') so keyword matching is not brittle."""
    if token in CANON:
        return CANON[token]
    if len(token) > 4 and token.endswith("ies"):
        token = token[:-3] + "y"
    elif len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        token = token[:-1]
    return CANON.get(token, token)


def words(text: str) -> list[str]:
    """Lower-case word tokens, apostrophes folded ("can't" -> "can't", "aboleth's" -> "aboleth")."""
    out = []
    for tok in WORD.findall(text.lower().replace("\u2019", "'")):
        if tok.endswith("'s"):
            tok = tok[:-2]
        out.append(tok)
    return out


def terms(text: str) -> list[str]:
    """Content terms: stemmed words without stop words; what BM25 and coverage count."""
    return [stem(w) for w in words(text) if w not in STOPWORDS]


def sentences(text: str) -> list[str]:
    """Split prose into sentences on terminal punctuation followed by a capital or digit."""
    out = []
    for block in re.split(r"\n\s*\n|\n(?=[-*#] )", text):
        block = " ".join(block.split())
        if block:
            out.extend(s.strip() for s in SENTENCE_END.split(block) if s.strip())
    return out


def parse_number(token: str) -> float | None:
    """'8,336,599' -> 8336599.0, '1/4' -> 0.25, 'seventeen' -> 17.0; None when it is not a number."""
    token = token.strip().lower().rstrip(".")
    if token in NUMBER_WORDS:
        return float(NUMBER_WORDS[token])
    token = token.replace(",", "")
    try:
        if "/" in token:
            num, den = token.split("/", 1)
            return float(num) / float(den)
        return float(token)
    except (ValueError, ZeroDivisionError):
        return None


def numbers_with_positions(text: str) -> list[tuple[float, int]]:
    """Every number stated in ``text`` with its word index, digits and number words alike."""
    out: list[tuple[float, int]] = []
    # word index of a character offset = number of word tokens before it
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    for m in NUMBER.finditer(text):
        value = parse_number(m.group())
        if value is not None:
            out.append((value, _word_index(starts, m.start())))
    for i, w in enumerate(re.finditer(r"\S+", text)):
        bare = re.sub(r"[^a-z]", "", w.group().lower())
        if bare in NUMBER_WORDS and bare not in ("one", "hundred"):  # "one" is too often a pronoun
            out.append((float(NUMBER_WORDS[bare]), i))
    return sorted(out, key=lambda p: p[1])


def numbers(text: str) -> list[float]:
    """The numeric values stated in ``text``, in order."""
    return [v for v, _ in numbers_with_positions(text)]


def _word_index(starts: list[int], offset: int) -> int:
    lo, hi = 0, len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if starts[mid] <= offset:
            lo = mid + 1
        else:
            hi = mid
    return max(lo - 1, 0)


FOUNDRY_LABELLED = re.compile(r"\[\[[^\]]*\]\]\{([^}]*)\}")
FOUNDRY_ROLL = re.compile(r"\[\[/r(?:oll)?\s+([^\]]+)\]\]")
FOUNDRY_OTHER = re.compile(r"\[\[[^\]]*\]\]")
FOUNDRY_REFERENCE = re.compile(r"&(?:amp;)?Reference\[([^\]\s]+)[^\]]*\]")
FOUNDRY_UUID = re.compile(r"@\w+\[[^\]]*\](?:\{([^}]*)\})?")
HTML_TAG = re.compile(r"<[^>]+>")


def clean_markup(text: str, name: str = "") -> str:
    """Strip Foundry VTT inline markup and HTML from SRD text, keeping the readable labels.

    ``[[lookup @name lowercase]]{monster}`` becomes the creature's ``name``; ``[[/r 5d10]]`` its
    formula; ``&Reference[Grappled apply=false]`` the word Grappled; unresolvable lookups vanish.
    """
    text = html.unescape(html.unescape(text))
    text = re.sub(r"\[\[lookup @name[^\]]*\]\](\{[^}]*\})?", name.lower() if name else "it", text)
    text = FOUNDRY_LABELLED.sub(lambda m: m.group(1), text)
    text = FOUNDRY_ROLL.sub(lambda m: m.group(1).strip(), text)
    text = FOUNDRY_OTHER.sub("", text)
    text = FOUNDRY_REFERENCE.sub(lambda m: _camel_words(m.group(1)), text)
    text = FOUNDRY_UUID.sub(lambda m: m.group(1) or "", text)
    text = HTML_TAG.sub(" ", text)
    # what is left of unresolved lookups: "DC ,", "a -foot Emanation", "reach ft.", "()"
    text = re.sub(r"\bDC(?!\s*\d)\s*", "", text)
    text = re.sub(r"\b(a|an) -foot ", r"\1 ", text)
    text = re.sub(r",?\s*reach\s+ft\.?|\(\s*\)", "", text)
    text = re.sub(r"\s+-(?=foot)", " ", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ([.,;:])", r"\1", text)
    text = re.sub(r"(^|\n)[ .]+", r"\1", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _camel_words(token: str) -> str:
    """'HalfCover' -> 'Half Cover' (Foundry reference ids are CamelCase rule names)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", token)


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: the form accepted answers are compared in."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"[^a-z0-9.'/ -]+", " ", text)
    text = re.sub(r"(?<![0-9])\.|\.(?![0-9])", " ", text)
    return " ".join(text.split())
