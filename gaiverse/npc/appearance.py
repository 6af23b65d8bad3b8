"""An NPC's body from its species, sex, age, SRD abilities and the user's appearance hints.

Heights come from the SRD species size hints ("Medium (about 4-5 feet tall)"), builds from the
template's ability scores (a high-Strength guard is stockier than a high-Dexterity spy), and
everything else is drawn from a seeded generator within anthropometric ranges, so two NPCs
differ but each stays plausible (``gaiverse.character.params.check`` enforces it). Hints such as
"tall", "heavy", "red hair", "beard" or "pointed ears" override the draw. Implements the
appearance half of NPC-b1 and the steering of NPC-b2.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from gaiverse.character.params import LIMITS, BodyParams, check

FOOT = 0.3048
SKIN = {
    "default": [(0.96, 0.80, 0.69), (0.89, 0.68, 0.55), (0.78, 0.57, 0.44), (0.62, 0.43, 0.30),
                (0.45, 0.30, 0.20), (0.33, 0.22, 0.15)],
    "orc": [(0.45, 0.55, 0.35), (0.52, 0.58, 0.45), (0.55, 0.55, 0.5)],
    "tiefling": [(0.72, 0.30, 0.28), (0.55, 0.30, 0.50), (0.80, 0.45, 0.40)],
    "dragonborn": [(0.62, 0.42, 0.20), (0.55, 0.20, 0.15), (0.25, 0.35, 0.60), (0.30, 0.50, 0.30), (0.7, 0.6, 0.3)],
    "elf-drow": [(0.35, 0.33, 0.45), (0.28, 0.26, 0.36)],
    "goliath": [(0.62, 0.60, 0.58), (0.72, 0.66, 0.60)],
}
HAIR = {"black": (0.07, 0.06, 0.06), "dark brown": (0.20, 0.13, 0.08), "brown": (0.36, 0.23, 0.12),
        "auburn": (0.50, 0.22, 0.10), "red": (0.62, 0.22, 0.07), "ginger": (0.70, 0.32, 0.10),
        "blond": (0.82, 0.66, 0.38), "golden": (0.85, 0.68, 0.30), "grey": (0.60, 0.60, 0.60),
        "gray": (0.60, 0.60, 0.60), "silver": (0.78, 0.78, 0.80), "white": (0.90, 0.90, 0.88),
        "blue": (0.20, 0.30, 0.70), "green": (0.20, 0.50, 0.25), "purple": (0.45, 0.20, 0.55)}
EYES = {"brown": (0.30, 0.18, 0.08), "blue": (0.25, 0.45, 0.75), "green": (0.25, 0.50, 0.25),
        "grey": (0.50, 0.55, 0.60), "amber": (0.75, 0.50, 0.10), "black": (0.05, 0.05, 0.05),
        "red": (0.70, 0.10, 0.10), "gold": (0.85, 0.65, 0.15)}
CLOTHES = {
    "craft": [(0.35, 0.25, 0.16), (0.28, 0.28, 0.28), (0.45, 0.32, 0.2)],
    "trade": [(0.55, 0.35, 0.20), (0.30, 0.45, 0.35), (0.60, 0.55, 0.40)],
    "study": [(0.20, 0.22, 0.50), (0.40, 0.20, 0.45), (0.15, 0.30, 0.35)],
    "temple": [(0.90, 0.88, 0.80), (0.75, 0.62, 0.25), (0.55, 0.10, 0.10)],
    "watch": [(0.50, 0.52, 0.56), (0.45, 0.15, 0.12), (0.20, 0.28, 0.45)],
    "wild": [(0.25, 0.35, 0.20), (0.40, 0.33, 0.20), (0.30, 0.30, 0.22)],
    "shadow": [(0.12, 0.12, 0.14), (0.22, 0.18, 0.20), (0.25, 0.25, 0.30)],
    "court": [(0.55, 0.10, 0.25), (0.15, 0.20, 0.50), (0.70, 0.55, 0.15)],
    "sea": [(0.20, 0.25, 0.45), (0.75, 0.72, 0.65), (0.45, 0.15, 0.12)],
    "town": [(0.50, 0.45, 0.35), (0.40, 0.40, 0.30), (0.55, 0.40, 0.30)],
}
CLOTHES_WORDS = r"(?:clothes|clothing|shirt|tunic|robe|robes|coat|cloak|outfit|dress|jerkin)"


def height_range(species: dict) -> tuple[float, float]:
    """(mean, sd) height in metres from an SRD size hint ("about 5-7 feet tall")."""
    hint = species.get("size_hint", "")
    if species.get("name") == "Human" or species.get("name", "").startswith("Tiefling"):
        return 1.72, 0.08  # the SRD's 4-7 ft spans every body; use the adult human distribution
    found = re.search(r"(\d)\s*[\u2013\-]\s*(\d)\s*feet", hint)
    low, high = (float(found.group(1)), float(found.group(2))) if found else (5.0, 6.5)
    return (low + high) / 2 * FOOT, (high - low) / 4 * FOOT


def sample_appearance(rng: np.random.Generator, species_slug: str, species: dict, sex: str, age: int,
                      category: str, abilities: dict[str, int], hints: list[str]) -> tuple[BodyParams, list[str]]:
    """Body parameters and the hints that matched nothing (reported, not dropped silently)."""
    mean, sd = height_range(species)
    if sex == "female":
        mean *= 0.93
    z = float(np.clip(rng.normal(), -1.6, 1.6))
    strength, dexterity, con = (abilities.get(k, 10) for k in ("str", "dex", "con"))
    build = float(np.clip(0.45 + 0.05 * (strength - 10) + 0.03 * (con - 10) - 0.03 * (dexterity - 12)
                          + rng.normal(0, 0.12), 0.05, 0.95))
    small = species_slug.startswith(("halfling", "gnome"))
    p = BodyParams(
        shoulder_width=float(np.clip(rng.normal(0.25 if sex == "male" else 0.232, 0.008), 0.21, 0.28)),
        hip_width=float(np.clip(rng.normal(0.195 if sex == "male" else 0.208, 0.007), 0.175, 0.235)),
        arm_length=float(np.clip(rng.normal(0.44, 0.008), 0.41, 0.47)),
        leg_length=float(np.clip(rng.normal(0.44 if small else 0.50, 0.012), 0.42, 0.54)),
        build=build, head_scale=1.28 if small else 1.1 if species_slug == "dwarf" else float(rng.uniform(0.96, 1.04)),
        arm_droop_deg=float(rng.uniform(62, 70)),
        skin_rgb=_jitter(rng, _pick(rng, SKIN.get(species_slug, SKIN.get(species_slug.split("-")[0], SKIN["default"])))),
        hair_rgb=HAIR[_pick(rng, ["black", "dark brown", "brown", "auburn", "blond", "red"])],
        eye_rgb=EYES[_pick(rng, ["brown", "brown", "blue", "green", "grey", "amber"])],
        top_rgb=_jitter(rng, _pick(rng, CLOTHES[category])),
        bottom_rgb=_jitter(rng, _pick(rng, [(0.25, 0.22, 0.2), (0.3, 0.26, 0.2), (0.2, 0.2, 0.25), (0.35, 0.3, 0.22)])),
        shoes_rgb=_jitter(rng, (0.2, 0.13, 0.08)),
        hair_style=_pick(rng, ["short", "short", "long", "bun"] if sex == "female" else ["short", "short", "long", "bald"]),
        beard=bool(sex == "male" and rng.random() < (0.9 if species_slug == "dwarf" else 0.35)),
        sleeves=_pick(rng, ["short", "long"] if category in ("craft", "sea", "town") else ["long", "long", "short"]),
        ears="pointed" if species_slug.startswith("elf") else "round",
    )
    if species_slug == "dwarf":
        p = replace(p, shoulder_width=min(p.shoulder_width + 0.02, 0.29), build=max(p.build, 0.6))
    if species_slug in ("goliath", "orc"):
        p = replace(p, build=max(p.build, 0.55), shoulder_width=min(p.shoulder_width + 0.015, 0.29))
    if age >= 60 and rng.random() < 0.7:
        p = replace(p, hair_rgb=HAIR[_pick(rng, ["grey", "white", "silver"])])
    p, unmatched = apply_hints(p, hints, mean, sd, z)
    return check(p), unmatched


def apply_hints(p: BodyParams, hints: list[str], mean: float, sd: float, z: float) -> tuple[BodyParams, list[str]]:
    """Height and the other parameters after the user's hints (hints win over the draw)."""
    unmatched = []
    for raw in hints:
        hint = raw.lower().strip()
        matched = True
        if re.search(r"\bvery tall\b|\bgiant\b|\btowering\b", hint):
            z = max(z, 0.0) + 2.0
        elif re.search(r"\btall\b", hint):
            z = max(z, 0.0) + 1.2
        elif re.search(r"\bvery short\b|\btiny\b", hint):
            z = min(z, 0.0) - 2.0
        elif re.search(r"\bshort\b(?!\s+(hair|sleeves?))|\bsmall\b", hint):
            z = min(z, 0.0) - 1.2
        elif re.search(r"\b(heavy|stout|fat|burly|broad|muscular|stocky|big)\b", hint):
            p = replace(p, build=max(p.build, 0.85), shoulder_width=min(p.shoulder_width + 0.015, 0.3))
        elif re.search(r"\b(slim|thin|lean|slender|wiry|skinny)\b", hint):
            p = replace(p, build=min(p.build, 0.15))
        elif re.search(r"\bbald\b", hint):
            p = replace(p, hair_style="bald")
        elif re.search(r"\blong hair\b", hint):
            p = replace(p, hair_style="long")
        elif re.search(r"\bshort hair\b", hint):
            p = replace(p, hair_style="short")
        elif re.search(r"\bbun\b", hint):
            p = replace(p, hair_style="bun")
        elif re.search(r"\b(clean[- ]shaven|no beard|beardless)\b", hint):
            p = replace(p, beard=False)
        elif re.search(r"\bbeard|bearded\b", hint):
            p = replace(p, beard=True)
        elif re.search(r"\bpointed ears\b", hint):
            p = replace(p, ears="pointed")
        elif (m := re.search(r"\b(\w+)[- ]haired\b|\b(\w+) hair\b", hint)) and (m.group(1) or m.group(2)) in HAIR:
            p = replace(p, hair_rgb=HAIR[m.group(1) or m.group(2)])
        elif (m := re.search(r"\b(\w+)[- ]eyed\b|\b(\w+) eyes\b", hint)) and (m.group(1) or m.group(2)) in EYES:
            p = replace(p, eye_rgb=EYES[m.group(1) or m.group(2)])
        elif (m := re.search(rf"\b(\w+) {CLOTHES_WORDS}\b", hint)) and m.group(1) in HAIR:
            p = replace(p, top_rgb=HAIR[m.group(1)])
        elif re.search(r"\b(sleeveless|short sleeves?|bare arms)\b", hint):
            p = replace(p, sleeves="short")
        else:
            matched = False
        if not matched:
            unmatched.append(raw)
    low, high = LIMITS["height_m"]
    return replace(p, height_m=float(np.clip(mean + z * sd, low, high))), unmatched


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _jitter(rng: np.random.Generator, rgb, amount: float = 0.04) -> tuple[float, float, float]:
    return tuple(float(np.clip(c + rng.normal(0, amount), 0.0, 1.0)) for c in rgb)  # type: ignore[return-value]
