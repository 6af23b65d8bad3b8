"""The NPC's body language: emotion -> ARKit blendshape weights, named gesture clips, and viseme timing.

Implements the expressive half of NPC-c2 and NPC-d1: every reply carries a facial expression
(weights for ARKit's 52 face blendshapes, which the generated NPC face rigs and VRM expose), a
gesture (a named animation clip the client plays), and visemes timed to the spoken text for lip
sync. Viseme timing here approximates phonemes from spelling; when the TTS audio is known,
``visemes(text, duration_s=...)`` stretches the same sequence to the audio's length.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

Emotion = Literal["neutral", "joy", "gratitude", "interest", "concern", "sadness", "anger", "surprise", "apologetic"]

ARKIT_BLENDSHAPES = (
    "eyeBlinkLeft eyeLookDownLeft eyeLookInLeft eyeLookOutLeft eyeLookUpLeft eyeSquintLeft eyeWideLeft "
    "eyeBlinkRight eyeLookDownRight eyeLookInRight eyeLookOutRight eyeLookUpRight eyeSquintRight eyeWideRight "
    "jawForward jawLeft jawRight jawOpen mouthClose mouthFunnel mouthPucker mouthLeft mouthRight mouthSmileLeft "
    "mouthSmileRight mouthFrownLeft mouthFrownRight mouthDimpleLeft mouthDimpleRight mouthStretchLeft "
    "mouthStretchRight mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper mouthPressLeft "
    "mouthPressRight mouthLowerDownLeft mouthLowerDownRight mouthUpperUpLeft mouthUpperUpRight browDownLeft "
    "browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff cheekSquintLeft cheekSquintRight "
    "noseSneerLeft noseSneerRight tongueOut"
).split()
"""Apple ARKit's 52 face blendshape names, the de-facto standard for rigged faces (VRM, three.js, Unity)."""

EMOTION_SHAPES: dict[str, dict[str, float]] = {
    "neutral": {},
    "joy": {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8, "cheekSquintLeft": 0.5, "cheekSquintRight": 0.5,
            "eyeSquintLeft": 0.3, "eyeSquintRight": 0.3, "browOuterUpLeft": 0.2, "browOuterUpRight": 0.2},
    "gratitude": {"mouthSmileLeft": 0.6, "mouthSmileRight": 0.6, "browInnerUp": 0.4, "cheekSquintLeft": 0.3,
                  "cheekSquintRight": 0.3, "eyeSquintLeft": 0.2, "eyeSquintRight": 0.2},
    "interest": {"browOuterUpLeft": 0.5, "browOuterUpRight": 0.5, "eyeWideLeft": 0.3, "eyeWideRight": 0.3,
                 "mouthSmileLeft": 0.2, "mouthSmileRight": 0.2},
    "concern": {"browInnerUp": 0.7, "browDownLeft": 0.2, "browDownRight": 0.2, "mouthFrownLeft": 0.3,
                "mouthFrownRight": 0.3, "mouthPressLeft": 0.3, "mouthPressRight": 0.3},
    "sadness": {"browInnerUp": 0.8, "mouthFrownLeft": 0.6, "mouthFrownRight": 0.6, "eyeLookDownLeft": 0.3,
                "eyeLookDownRight": 0.3, "mouthShrugLower": 0.3},
    "anger": {"browDownLeft": 0.9, "browDownRight": 0.9, "noseSneerLeft": 0.5, "noseSneerRight": 0.5,
              "mouthPressLeft": 0.5, "mouthPressRight": 0.5, "eyeSquintLeft": 0.4, "eyeSquintRight": 0.4},
    "surprise": {"eyeWideLeft": 0.9, "eyeWideRight": 0.9, "browOuterUpLeft": 0.8, "browOuterUpRight": 0.8,
                 "browInnerUp": 0.6, "jawOpen": 0.4},
    "apologetic": {"browInnerUp": 0.6, "mouthShrugUpper": 0.3, "mouthShrugLower": 0.4, "mouthPressLeft": 0.2,
                   "mouthPressRight": 0.2, "mouthSmileLeft": 0.15, "mouthSmileRight": 0.15},
}

GESTURES = ("idle", "wave", "nod", "bow", "shrug", "shake_head", "point", "beckon", "receive", "hand_over",
            "think", "explain", "cross_arms", "wave_goodbye")
"""Named animation clips the NPC rig provides; the client plays them by name."""

INTENT_REACTION: dict[str, tuple[str, str]] = {
    "greet": ("joy", "wave"), "thank": ("joy", "bow"), "give_item": ("gratitude", "receive"),
    "leave": ("sadness", "wave_goodbye"), "trade": ("interest", "beckon"), "follow": ("joy", "nod"),
    "point_at": ("interest", "point"), "recall": ("neutral", "think"), "about_self": ("joy", "nod"), "smalltalk": ("neutral", "idle"),
    "ask": ("neutral", "explain"), "none": ("neutral", "idle"),
}
CONCERN = re.compile(r"\b(poison|deadly|death|dies?|kill|damage|curse[ds]?|fear|frightened|dragon|undead|drain|"
                     r"paralyz|petrif|exhaustion|blind)", re.I)
WONDER = re.compile(r"\b(legendary|magic|magical|artifact|ancient|rare|gold)\b", re.I)


@dataclass
class Expression:
    """What the NPC's face and body do for one reply."""

    emotion: Emotion
    intensity: float
    """0..1: how strongly the emotion shows (grows with the relationship)."""
    gesture: str
    """One of ``GESTURES``."""
    blendshapes: dict[str, float] = field(default_factory=dict)
    """ARKit blendshape name -> weight 0..1 (names not listed are 0)."""


def react(intent: str, reply: str = "", refused: bool = False, rude: bool = False,
          relationship: float = 0.0) -> Expression:
    """Emotion and gesture for a reply to an intent. Implements NPC-c2 facial expressions and NPC-d1 gestures."""
    emotion, gesture = INTENT_REACTION.get(intent, ("neutral", "idle"))
    if rude:
        emotion, gesture = "anger", "cross_arms"
    elif refused:
        emotion, gesture = "apologetic", "shrug"
    elif intent == "ask":
        if CONCERN.search(reply):
            emotion = "concern"
        elif WONDER.search(reply):
            emotion = "interest"
    intensity = round(max(0.3, min(1.0, 0.6 + 0.4 * relationship)), 3)
    return Expression(emotion, intensity, gesture, blendshapes(emotion, intensity))  # type: ignore[arg-type]


def blendshapes(emotion: str, intensity: float = 1.0) -> dict[str, float]:
    """ARKit weights for ``emotion`` scaled by ``intensity`` (0..1)."""
    if emotion not in EMOTION_SHAPES:
        raise ValueError(f"`emotion` must be one of {sorted(EMOTION_SHAPES)}, got {emotion!r}")
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"`intensity` must be within 0..1, got {intensity}")
    return {k: round(v * intensity, 3) for k, v in EMOTION_SHAPES[emotion].items()}


# ------------------------------------------------------------------ visemes

VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U")
"""The 15 Oculus/Meta visemes (also what VRM's aa/ih/ou/ee/oh map from)."""
DIGRAPHS = {"th": "TH", "ch": "CH", "sh": "CH", "ph": "FF", "ng": "nn", "ck": "kk", "qu": "kk", "wh": "U",
            "oo": "U", "ee": "I", "ea": "I", "ou": "aa", "ow": "O", "oa": "O", "ai": "E", "ay": "E"}
LETTERS = {"p": "PP", "b": "PP", "m": "PP", "f": "FF", "v": "FF", "t": "DD", "d": "DD", "k": "kk", "g": "kk",
           "c": "kk", "q": "kk", "x": "kk", "j": "CH", "s": "SS", "z": "SS", "n": "nn", "l": "nn", "r": "RR",
           "a": "aa", "e": "E", "i": "I", "y": "I", "o": "O", "u": "U", "w": "U"}
VOWELS = {"aa", "E", "I", "O", "U"}
ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
       "seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def spell_number(n: int) -> str:
    """17 -> 'seventeen', 1380000 -> 'one million three hundred eighty thousand' (for lip sync only)."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    for size, word in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{spell_number(n // size)} {word}" + (f" {spell_number(rest)}" if rest else "")
    return str(n)


def _phonemes(word: str) -> list[str]:
    out, i = [], 0
    while i < len(word):
        pair = word[i:i + 2]
        if pair in DIGRAPHS:
            out.append(DIGRAPHS[pair])
            i += 2
            continue
        ch = word[i]
        if ch in LETTERS and not (ch == "e" and i == len(word) - 1 and len(word) > 2):  # silent final e
            out.append(LETTERS[ch])
        i += 1
    return out


@dataclass
class VisemeConfig:
    """Speaking-rate model of the approximation."""

    vowel_s: float = 0.11
    """Seconds per vowel viseme."""
    consonant_s: float = 0.065
    """Seconds per consonant viseme."""
    comma_pause_s: float = 0.18
    """Silence at a comma, semicolon or colon."""
    stop_pause_s: float = 0.32
    """Silence at a full stop, question or exclamation mark."""


def visemes(text: str, duration_s: float | None = None, config: VisemeConfig | None = None
            ) -> list[tuple[str, float, float]]:
    """(viseme, start_s, end_s) for speaking ``text``; stretched to ``duration_s`` when given. NPC-d1 lip sync."""
    config = config or VisemeConfig()
    text = re.sub(r"\d[\d,]*", lambda m: spell_number(int(m.group().replace(",", ""))) if
                  m.group().replace(",", "").isdigit() and len(m.group()) < 13 else m.group(), text)
    events: list[tuple[str, float]] = []
    for token in re.findall(r"[A-Za-z']+|[,;:.!?]", text):
        if token in ",;:":
            events.append(("sil", config.comma_pause_s))
        elif token in ".!?":
            events.append(("sil", config.stop_pause_s))
        else:
            for v in _phonemes(token.lower().replace("'", "")):
                events.append((v, config.vowel_s if v in VOWELS else config.consonant_s))
    total = sum(d for _, d in events)
    if not events or total == 0:
        return []
    scale = 1.0 if duration_s is None else max(duration_s, 0.0) / total
    out: list[tuple[str, float, float]] = []
    t = 0.0
    for v, d in events:
        d *= scale
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1], round(t + d, 4))
        else:
            out.append((v, round(t, 4), round(t + d, 4)))
        t += d
    return out
