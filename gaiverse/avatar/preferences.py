"""Spoken or written avatar wishes ("blue hair", "a deeper voice", "cartoon style", "taller") as explicit targets.

A small rule parser over the words of a transcript or typed text: colour words bound to the part
they describe (hair, eyes, skin), directions for voice pitch, speaking rate, height, build and
expressiveness, a style and a hair style, with simple negation ("not cartoon", "no beard" is
ignored). The decision policy reads the resulting ``Preferences`` as a fixed-size vector.
Implements the preference-parsing part of AV-b1 (spoken/written preferences).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Style = Literal["realistic", "stylized", "cartoon", "anime"]
HairStyle = Literal["short", "long", "curly", "bald"]
STYLES: tuple[Style, ...] = ("realistic", "stylized", "cartoon", "anime")
HAIR_STYLES: tuple[HairStyle, ...] = ("short", "long", "curly", "bald")
PARTS = ("hair", "eyes", "skin")

COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 22), "brown": (101, 67, 33), "blond": (226, 196, 128), "blonde": (226, 196, 128),
    "red": (178, 34, 34), "ginger": (196, 90, 40), "auburn": (145, 50, 30), "grey": (150, 150, 150),
    "gray": (150, 150, 150), "silver": (192, 192, 200), "white": (240, 240, 240), "blue": (40, 90, 220),
    "green": (40, 160, 70), "purple": (128, 50, 170), "violet": (140, 70, 200), "pink": (240, 120, 180),
    "orange": (240, 140, 30), "yellow": (240, 220, 60), "teal": (0, 128, 128), "hazel": (142, 118, 60),
    "amber": (255, 191, 0), "golden": (218, 165, 32), "pale": (245, 220, 205), "tan": (200, 150, 110),
    "dark": (90, 60, 45),
}
"""sRGB 0..255 of each colour word the parser understands."""

PART_WORDS = {"hair": "hair", "haired": "hair", "eyes": "eyes", "eye": "eyes", "eyed": "eyes",
              "skin": "skin", "skinned": "skin", "complexion": "skin"}
UP_WORDS = {"higher", "high", "higher-pitched", "squeakier", "lighter", "brighter"}
DOWN_WORDS = {"deeper", "deep", "lower", "low", "lower-pitched", "darker", "bassier"}
FAST_WORDS = {"faster", "quicker", "quick", "fast"}
SLOW_WORDS = {"slower", "slow", "calmer", "calm", "relaxed"}
NEGATIONS = {"not", "no", "never", "without", "don't", "dont", "isn't"}


@dataclass
class Preferences:
    """What the user asked for; ``None`` / 0 means "no wish" (then the avatar follows the capture)."""

    colours: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Part ("hair", "eyes", "skin") -> wished sRGB colour."""
    pitch: int = 0
    """-1 deeper voice, +1 higher voice."""
    rate: int = 0
    """-1 slower speech, +1 faster."""
    height: int = 0
    """-1 shorter, +1 taller than the user."""
    build: int = 0
    """-1 slimmer, +1 broader / more muscular."""
    expressiveness: int = 0
    """-1 calmer face and gestures, +1 more expressive."""
    style: Style | None = None
    """Wished rendering style."""
    avoid_styles: tuple[Style, ...] = ()
    """Styles the user said no to."""
    hair_style: HairStyle | None = None
    """Wished hair style."""
    matched: list[str] = field(default_factory=list)
    """The phrases that produced each wish (shown to the user beside the measurements)."""

    def vector(self) -> np.ndarray:
        """Fixed-size encoding for the policy: (len = PREFERENCE_DIM,) float32."""
        from gaiverse.avatar.colour import srgb_to_lab

        parts = []
        for part in PARTS:
            if part in self.colours:
                parts.extend([1.0, *(srgb_to_lab(np.array(self.colours[part]) / 255.0) / LAB_SCALE)])
            else:
                parts.extend([0.0, 0.0, 0.0, 0.0])
        style = [1.0 if self.style == s else 0.0 for s in STYLES]
        avoid = [1.0 if s in self.avoid_styles else 0.0 for s in STYLES]
        hair = [1.0 if self.hair_style == h else 0.0 for h in HAIR_STYLES]
        dirs = [self.pitch, self.rate, self.height, self.build, self.expressiveness]
        return np.array(parts + style + avoid + hair + dirs, dtype=np.float32)


LAB_SCALE = np.array([100.0, 100.0, 100.0])
PREFERENCE_DIM = 4 * len(PARTS) + 2 * len(STYLES) + len(HAIR_STYLES) + 5


CLAUSE_BREAKS = {",", ".", ";", "!", "?", "and", "but"}


def _words(text: str) -> list[str]:
    """Lower-case words, keeping clause punctuation as tokens (negation does not cross them)."""
    return re.findall(r"[a-z]+(?:[-'][a-z]+)?|[,.;!?]", text.lower())


def _clause_window(words: list[str], i: int, reach: int = 2) -> tuple[int, int]:
    """Word span [lo, hi) of up to ``reach`` words either side of ``i``, not crossing clause punctuation."""
    lo, hi = i, i + 1
    while lo > max(0, i - reach) and words[lo - 1] not in CLAUSE_MARKS:
        lo -= 1
    while hi < min(len(words), i + reach + 1) and words[hi] not in CLAUSE_MARKS:
        hi += 1
    return lo, hi


def _merged_phrases(words: list[str], spans: list) -> list[str]:
    """The phrases that carried a wish, for showing the user: overlapping or touching spans merged, in order."""
    merged: list[list[int]] = []
    for lo, hi in sorted(set(spans)):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [" ".join(words[lo:hi]) for lo, hi in merged]


CLAUSE_MARKS = frozenset(",.;!?")


def _negated(words: list[str], i: int) -> bool:
    """A negation among the (up to 3) words before ``i`` in the same clause."""
    for w in reversed(words[max(0, i - 3):i]):
        if w in CLAUSE_BREAKS:
            return False
        if w in NEGATIONS:
            return True
    return False


def _bind_colour(words: list[str], i: int) -> str | None:
    """The body part a colour word at ``i`` describes: the nearest part word within 3 words after it
    ("blue hair", "green-eyed"), else within 3 before it ("hair that is blue")."""
    for j in range(i + 1, min(len(words), i + 4)):
        if words[j] in PART_WORDS:
            return PART_WORDS[words[j]]
        if words[j] in COLOURS or words[j] in CLAUSE_BREAKS | {"with", "voice"}:
            break
    for j in range(i - 1, max(-1, i - 4), -1):
        if words[j] in PART_WORDS:
            return PART_WORDS[words[j]]
    return None


def _direction(words: list[str], i: int, word: str, up: set[str], down: set[str]) -> int:
    sign = 1 if word in up else -1 if word in down else 0
    return -sign if _negated(words, i) else sign


def parse_preferences(text: str) -> Preferences:
    """Wishes stated in ``text`` (a transcript or typed request). Unknown words are ignored."""
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}")
    prefs = Preferences()
    words = _words(text.replace("-", " - ").replace(" - ", "-"))
    for i, word in enumerate(words):
        base = word.split("-")[0]
        context = _clause_window(words, i)
        if base in COLOURS and not _negated(words, i):
            part = _bind_colour(words, i) or (PART_WORDS.get(word.split("-")[1]) if "-" in word else None)
            if part is not None:
                prefs.colours[part] = COLOURS[base]
                prefs.matched.append(context)
        elif word in STYLES or word in {"cartoony", "cartoonish", "photorealistic", "lifelike", "anime-style"}:
            style = {"cartoony": "cartoon", "cartoonish": "cartoon", "photorealistic": "realistic",
                     "lifelike": "realistic", "anime-style": "anime"}.get(word, word)
            if _negated(words, i):
                prefs.avoid_styles = tuple(sorted(set(prefs.avoid_styles) | {style}))
            else:
                prefs.style = style  # type: ignore[assignment]
            prefs.matched.append(context)
        elif word in {"taller", "shorter", "tall", "short"} and not _followed_by_hair(words, i):
            prefs.height = (1 if word.startswith("tall") else -1) * (-1 if _negated(words, i) else 1)
            prefs.matched.append(context)
        elif word in {"muscular", "broader", "stronger", "bigger", "slimmer", "thinner", "leaner", "skinnier"}:
            prefs.build = (1 if word in {"muscular", "broader", "stronger", "bigger"} else -1) \
                * (-1 if _negated(words, i) else 1)
            prefs.matched.append(context)
        elif word in {"expressive", "animated", "lively"}:
            prefs.expressiveness = -1 if _negated(words, i) else 1
            prefs.matched.append(context)
        elif word in {"long", "curly", "bald"} or (word == "short" and _followed_by_hair(words, i)):
            if word == "bald" or _followed_by_hair(words, i):
                prefs.hair_style = word  # type: ignore[assignment]
                prefs.matched.append(context)
        if _mentions_voice(words, i):
            direction = _direction(words, i, word, UP_WORDS, DOWN_WORDS)
            if direction:
                prefs.pitch = direction
                prefs.matched.append(context)
        if word in FAST_WORDS | SLOW_WORDS and _mentions_speech(words, i):
            prefs.rate = 1 if word in FAST_WORDS else -1
            prefs.matched.append(context)
    prefs.matched = _merged_phrases(words, prefs.matched)
    if prefs.style is not None and prefs.style in prefs.avoid_styles:
        prefs.avoid_styles = tuple(s for s in prefs.avoid_styles if s != prefs.style)
    return prefs


def _followed_by_hair(words: list[str], i: int) -> bool:
    return any(w in {"hair", "haired"} for w in words[i + 1:i + 3])


def _mentions_voice(words: list[str], i: int) -> bool:
    window = words[max(0, i - 4):i + 4]
    return any(w in {"voice", "pitch", "sound", "tone"} for w in window)


def _mentions_speech(words: list[str], i: int) -> bool:
    window = words[max(0, i - 3):i + 4]
    return any(w in {"talk", "talks", "speak", "speaks", "speech", "speaking", "voice", "pace"} for w in window)
