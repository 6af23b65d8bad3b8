"""The environment the avatar decision policy learns in: simulated users and how satisfied they are.

Users are drawn from published population statistics (not from any one person): skin tones around
the six Fitzpatrick types in CIELAB, natural hair and iris colours, body height by sex, speaking F0 by
sex (adult men ~120 Hz, women ~210 Hz), pitch range and speaking rate; 40 % are captured without
the whole body (height/build unknown). Each user states 0-3 wishes in one sentence built from phrase
templates and parsed by ``parse_preferences`` exactly as a real transcript would be (so parse
misses count against both deciders).

Satisfaction (reward, 0..1 per component, weighted mean) encodes what the engines can deliver and
what users report valuing, including trade-offs the fixed heuristic ignores:
- likeness: ΔE*ab of skin/hair/eyes to the user (or to the wished colour); stylised renderings are
  judged against more saturated targets (users expect cartoon colours to "pop");
- voice: distance in semitones to the user's F0 (or to the wish: "deeper" is best 3-5 st below),
  times the naturalness of the converted voice, which falls off for shifts beyond ~4 st of the
  base voice (WORLD conversion artefacts), so a large shift is a compromise, not a copy;
- body: height and build close to measured (or the wish, best +10 %/-10 %), implausible values punished;
- style: the wished style (1), or realistic/stylised when none (0.9/0.8), avoided styles 0;
- expressiveness: close to the user's own liveliness, plus a bonus in stylised styles.
Held-out users come from disjoint seeds and from phrase templates never used in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaiverse.avatar.colour import delta_e, srgb_to_lab
from gaiverse.avatar.decision import BASE_VOICE_F0_HZ, AvatarParams, CaptureAnalysis
from gaiverse.avatar.preferences import COLOURS, Preferences, parse_preferences

FITZPATRICK_LAB = np.array([[70, 8, 16], [64, 10, 18], [58, 12, 20], [50, 13, 21], [42, 13, 19], [34, 11, 15]],
                           dtype=float)
HAIR_LAB = np.array([[15, 2, 4], [25, 8, 14], [38, 12, 22], [62, 6, 30], [40, 28, 32], [62, 0, 2]], dtype=float)
"""black, dark brown, brown, blond, red, grey."""
HAIR_WEIGHTS = np.array([0.35, 0.3, 0.15, 0.1, 0.04, 0.06])
EYE_LAB = np.array([[30, 8, 18], [45, 4, 24], [55, -8, 20], [58, -2, -18]], dtype=float)
"""brown, hazel, green, blue."""

WEIGHTS = {"skin": 1.0, "hair": 1.0, "eyes": 0.6, "voice": 1.5, "body": 0.8, "style": 1.2, "expressiveness": 0.5,
           "rate": 0.4, "hair_style": 0.5}

TRAIN_TEMPLATES = {
    "colour": ["I want {c} hair", "give me {c} hair", "{c} eyes please", "make my hair {c}"],
    "pitch": ["a {d} voice", "make my voice {d}", "I'd like to sound {d}"],
    "style": ["{s} style", "make it look {s}", "I prefer a {s} look"],
    "height": ["make me {h}", "a bit {h} than me"],
    "rate": ["speak {r}", "talk a little {r}"],
    "hair_style": ["{hs} hair"],
}
HELDOUT_TEMPLATES = {
    "colour": ["could the hair be {c}", "with {c} eyes", "I'd love {c} coloured hair"],
    "pitch": ["can the voice be {d}", "the tone should be {d}"],
    "style": ["something {s}", "a {s} avatar"],
    "height": ["I want to be {h}"],
    "rate": ["the voice should speak {r}"],
    "hair_style": ["with {hs} hair"],
}
WISH_COLOURS = ["blue", "green", "purple", "pink", "red", "blond", "silver", "black", "orange", "teal"]


@dataclass
class SimUser:
    """One simulated user: what a capture would measure, what they said, and their hidden truth."""

    analysis: CaptureAnalysis
    text: str
    prefs: Preferences
    true_height_m: float
    true_build: float


def _choose(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _wish_text(rng: np.random.Generator, templates: dict[str, list[str]]) -> str:
    kinds = list(templates)
    n = int(rng.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.3, 0.15]))
    phrases = []
    for kind in rng.choice(kinds, size=n, replace=False):
        t = _choose(rng, templates[kind])
        phrases.append(t.format(c=_choose(rng, WISH_COLOURS), d=_choose(rng, ["deeper", "higher", "lower"]),
                                s=_choose(rng, ["cartoon", "anime", "realistic", "stylized"]),
                                h=_choose(rng, ["taller", "shorter"]), r=_choose(rng, ["faster", "slower"]),
                                hs=_choose(rng, ["long", "curly", "short"])))
    return ", and ".join(phrases)


def sample_users(n: int, seed: int, heldout: bool = False) -> list[SimUser]:
    """``n`` users from the population; ``heldout`` switches to the unseen phrase templates."""
    if n < 1:
        raise ValueError(f"`n` must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    templates = HELDOUT_TEMPLATES if heldout else TRAIN_TEMPLATES
    users = []
    for _ in range(n):
        female = rng.random() < 0.5
        skin = FITZPATRICK_LAB[rng.integers(6)] + rng.normal(0, [3, 2, 2])
        hair = HAIR_LAB[rng.choice(6, p=HAIR_WEIGHTS)] + rng.normal(0, 2.5, 3)
        eye = EYE_LAB[rng.integers(4)] + rng.normal(0, 2.5, 3)
        height = rng.normal(1.63, 0.07) if female else rng.normal(1.76, 0.07)
        build = float(np.clip(rng.normal(0.4 if female else 0.6, 0.12), 0, 1))
        body_seen = rng.random() > 0.4
        f0 = float(np.exp(rng.normal(np.log(205 if female else 118), 0.12)))
        text = _wish_text(rng, templates)
        analysis = CaptureAnalysis(
            skin_lab=tuple(skin), hair_lab=tuple(hair) if rng.random() > 0.1 else None,
            eye_lab=tuple(eye) if rng.random() > 0.2 else None,
            height_m=float(height + rng.normal(0, 0.03)) if body_seen else None,
            build=float(np.clip(build + rng.normal(0, 0.05), 0, 1)) if body_seen else None,
            f0_median_hz=f0, f0_range_semitones=float(np.clip(rng.normal(8, 2.5), 2, 16)),
            speaking_rate_wps=float(np.clip(rng.normal(2.6, 0.4), 1.4, 4.0)),
            expressiveness=float(np.clip(rng.beta(2, 2), 0, 1)))
        users.append(SimUser(analysis, text, parse_preferences(text), float(height), build))
    return users


def _stylise(lab: np.ndarray, style: str) -> np.ndarray:
    """The colour a user expects to see in a given rendering style (more chroma when stylised)."""
    boost = {"realistic": 1.0, "stylized": 1.15, "cartoon": 1.35, "anime": 1.3}[style]
    return np.array([lab[0], lab[1] * boost, lab[2] * boost])


def _closeness(distance: float, scale: float) -> float:
    return float(np.exp(-(distance / scale) ** 2))


def satisfaction(user: SimUser, p: AvatarParams) -> dict[str, float]:
    """Per-component satisfaction in 0..1 of ``user`` with avatar ``p`` (no noise)."""
    a, prefs = user.analysis, user.prefs
    out: dict[str, float] = {}
    truth = {"skin": np.array(a.skin_lab), "hair": np.array(a.hair_lab) if a.hair_lab is not None else None,
             "eyes": np.array(a.eye_lab) if a.eye_lab is not None else None}
    got = {"skin": np.array(p.skin_lab), "hair": np.array(p.hair_lab), "eyes": np.array(p.eye_lab)}
    for part in ("skin", "hair", "eyes"):
        if part in prefs.colours:
            target = _stylise(srgb_to_lab(np.array(prefs.colours[part]) / 255.0), p.style)
        elif truth[part] is not None:
            target = _stylise(truth[part], p.style)
        else:
            out[part] = 0.8  # never measured, never asked for: users are mostly indifferent
            continue
        out[part] = _closeness(float(delta_e(got[part], target)), 18.0)
    user_st = 12 * np.log2(a.f0_median_hz / BASE_VOICE_F0_HZ)
    target_st = user_st + {-1: -4.0, 0: 0.0, 1: 4.0}[prefs.pitch]
    natural = _closeness(max(0.0, abs(p.pitch_semitones) - 4.0), 6.0)
    out["voice"] = _closeness(p.pitch_semitones - target_st, 3.5) * (0.35 + 0.65 * natural)
    target_rate = a.speaking_rate_wps / 2.6 * (1 + 0.2 * prefs.rate)
    out["rate"] = _closeness(np.log(p.speaking_rate / target_rate), 0.15)
    target_h = user.true_height_m * (1 + 0.1 * prefs.height)
    target_b = user.true_build
    out["body"] = _closeness(p.height_m / target_h - 1, 0.06) * (0.6 + 0.4 * _closeness(p.build - target_b, 0.25))
    if p.style in prefs.avoid_styles:
        out["style"] = 0.0
    elif prefs.style:
        out["style"] = 1.0 if p.style == prefs.style else 0.2
    else:
        out["style"] = {"realistic": 0.9, "stylized": 0.8, "cartoon": 0.5, "anime": 0.45}[p.style]
    lively = a.expressiveness + 0.3 * prefs.expressiveness + (0.2 if p.style in ("cartoon", "anime") else 0.0)
    out["expressiveness"] = _closeness(p.expressiveness - min(lively, 1.0), 0.25)
    out["hair_style"] = 1.0 if prefs.hair_style in (None, p.hair_style) else 0.3
    return out


def reward(user: SimUser, p: AvatarParams, rng: np.random.Generator | None = None) -> float:
    """Weighted mean satisfaction; with ``rng``, plus the noise of a real user's rating (sd 0.05)."""
    parts = satisfaction(user, p)
    value = sum(WEIGHTS[k] * v for k, v in parts.items()) / sum(WEIGHTS[k] for k in parts)
    return float(value + (rng.normal(0, 0.05) if rng is not None else 0.0))


def colour_word_lab(word: str) -> np.ndarray:
    return srgb_to_lab(np.array(COLOURS[word]) / 255.0)
