"""A small rule grammar that turns a user's world suggestion into explicit layout controls.

"a hilly coastal town with a river and a dense centre, 1 km x 1 km" -> relief, roughness,
water level, river, road density, settlement size, dense centre, size in metres.
Implements ENV-a2 (parse the user's suggestions into model inputs; service-flow step 2).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

MIN_SIZE_M, MAX_SIZE_M = 128.0, 4000.0


class SuggestionError(ValueError):
    """The suggestion is empty, not understood, contradictory, or asks for impossible values."""


@dataclass
class LayoutControls:
    """Explicit controls of a world layout (what the diffusion models and post-processing use)."""

    size_m: tuple[float, float] = (1000.0, 1000.0)
    """(width east, height north) of the world, metres."""
    relief_m: float = 60.0
    """Height range of the whole world, metres."""
    roughness: float = 0.01
    """Terrain roughness control: 3x3 residual std / tile relief (about 0.003 smooth .. 0.02 rugged)."""
    steepness: float = 1.3
    """Terrain steepness control: mean gradient x tile width / relief (about 0.9 gentle .. 2 steep),
    dimensionless so it never fights the relief; defaults follow the terrain words' roughness,
    as steepness and roughness go together in the real training tiles."""
    water_level: float = 0.0
    """Share of the area under water (sea or lake), 0..0.8."""
    coast: bool = False
    """Water along one side of the world (a coastline) rather than in the lowest basins."""
    river: bool = False
    """Carve a river across the world."""
    road_density: float = 8.0
    """Road length per area inside the settlement, km/km2 (Helsinki centre ~15, suburbs ~8, rural ~1)."""
    settlement_radius_m: float = 400.0
    """Radius of the built-up area around the world centre, metres (0 = no settlement)."""
    dense_centre: bool = False
    """Road density peaks at the centre and falls off towards the settlement edge."""
    major_share: float = 0.35
    """Share of road pixels that are major roads."""

    def as_dict(self) -> dict:
        return asdict(self)


# (pattern, field updates, group): within a group, two different matches contradict each other.
# Each rule's steepness is what real training tiles of that roughness typically have (a fit of
# log steepness on log roughness); steepness words (below) then override it.
_RELIEF = [
    (r"\brolling (plains?|prairies?|grasslands?|farmland|countryside)\b",
     {"relief_m": 20.0, "roughness": 0.004, "steepness": 0.95}, "relief"),
    (r"\bflat\b|\bplains?\b|\blevel\b", {"relief_m": 8.0, "roughness": 0.004, "steepness": 1.0}, "relief"),
    (r"\brolling\b|\bundulating\b", {"relief_m": 35.0, "roughness": 0.006, "steepness": 1.1}, "relief"),
    (r"\bhilly\b|\bhills?\b", {"relief_m": 120.0, "roughness": 0.01, "steepness": 1.4}, "relief"),
    (r"\bmountain(s|ous)?\b|\balpine\b|\bhighlands?\b",
     {"relief_m": 700.0, "roughness": 0.015, "steepness": 1.6}, "relief"),
]
_TEXTURE = [
    (r"\bsmooth\b|\bsoft\b", {"roughness": 0.004, "steepness": 1.0}, "texture"),
    (r"\brugged\b|\brough\b|\brocky\b|\bcraggy\b", {"roughness": 0.02, "steepness": 1.8}, "texture"),
]
_STEEPNESS = [
    (r"\bgentl[ey]\b|\bgently sloping\b|\bshallow slopes?\b|\bmild\b", {"steepness": 0.85}, "steepness"),
    (r"\bsteep\b|\bsheer\b|\bcliffs?\b|\bprecipitous\b|\bdramatic\b", {"steepness": 2.1}, "steepness"),
]
_WATER = [
    (r"\bcoast(al)?\b|\bseaside\b|\bby the sea\b|\bbeach\b|\bharbou?r\b|\bport\b", {"coast": True, "water_level": 0.25}, "coast"),
    (r"\bisland\b", {"coast": False, "water_level": 0.45}, "island"),
    (r"\blakes?\b|\blakeside\b", {"water_level": 0.12}, "lake"),
    (r"\brivers?\b|\bstream\b|\briverside\b", {"river": True}, "river"),
]
_SETTLEMENT = [
    (r"\b(wilderness|uninhabited|no roads|untouched)\b", {"road_density": 0.0, "settlement_radius_m": 0.0}, "settlement"),
    (r"\b(rural|countryside|farmland|farms?)\b", {"road_density": 2.0, "settlement_radius_m": 250.0}, "settlement"),
    (r"\b(village|hamlet)\b", {"road_density": 6.0, "settlement_radius_m": 200.0}, "settlement"),
    (r"\b(town|suburbs?|suburban)\b", {"road_density": 10.0, "settlement_radius_m": 400.0}, "settlement"),
    (r"\b(city|urban|metropolis|downtown)\b", {"road_density": 15.0, "settlement_radius_m": 2000.0, "major_share": 0.45}, "settlement"),
]
_DENSITY = [
    (r"\bdense (city )?(centre|center|core)\b|\bbusy (centre|center)\b", {"dense_centre": True}, "centre"),
    (r"\b(sparse|scattered|spread out|low[- ]density)\b", {"_density_factor": 0.5}, "density"),
    (r"\b(dense|crowded|compact|packed)\b", {"_density_factor": 1.4}, "density"),
]
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(km|m)\s*(?:x|×|by|\*)\s*(\d+(?:\.\d+)?)\s*(km|m)\b")
_AREA = re.compile(r"(\d+(?:\.\d+)?)\s*(km2|km²|square kilomet(?:re|er)s?|sq ?km|m2|m²)")
_RELIEF_VALUE = re.compile(r"relief(?: of)?\s*(\d+(?:\.\d+)?)\s*m\b")


def _metres(value: str, unit: str) -> float:
    return float(value) * (1000.0 if unit.startswith("km") or unit.startswith("square k") or unit.startswith("sq") else 1.0)


def parse_suggestion(prompt: str, defaults: LayoutControls | None = None) -> LayoutControls:
    """Parse a free-text suggestion into LayoutControls. Implements ENV-a2.

    Recognised: terrain words (flat, rolling plains, rolling, hilly, mountainous; smooth, rugged;
    gentle, steep), water
    (coastal, island, lake, river), settlement (wilderness, rural, village, town, city; dense
    centre, sparse, dense), sizes ("1 km x 1 km", "800 m by 600 m", "2 km2") and
    "relief 200 m". Raises SuggestionError for empty input, input with no recognised term,
    contradictory terms in one group (e.g. "flat mountainous"), or sizes outside
    128 m .. 4 km.
    """
    if prompt is None or not str(prompt).strip():
        raise SuggestionError("`prompt` is empty: describe the world, e.g. 'a hilly coastal town, 1 km x 1 km'")
    text = " ".join(str(prompt).lower().split())
    controls = asdict(defaults or LayoutControls())
    hits: dict[str, str] = {}
    understood = False
    density_factor = 1.0
    unclaimed: dict[str, str] = {}  # per group: the text without the words an earlier rule used
    for rules in (_RELIEF, _TEXTURE, _STEEPNESS, _WATER, _SETTLEMENT, _DENSITY):
        for pattern, updates, group in rules:
            match = re.search(pattern, unclaimed.get(group, text))
            if not match:
                continue
            # "rolling plains" is one rule: its words do not also count as "rolling" and "plains"
            span = unclaimed.get(group, text)
            unclaimed[group] = span[:match.start()] + " " * (match.end() - match.start()) + span[match.end():]
            if group in hits and hits[group] != pattern:
                raise SuggestionError(f"`prompt` is contradictory: {hits_words(hits[group], text)!r} and "
                                      f"{match.group(0)!r} both set the {group}")
            if group == "density" and re.search(r"\bdense (city )?(centre|center|core)\b", text) and "dense" in match.group(0):
                continue  # "dense centre" alone is a centre profile, not an overall density factor
            hits[group] = pattern
            understood = True
            for key, value in updates.items():
                if key == "_density_factor":
                    density_factor = value
                else:
                    controls[key] = value
    controls["road_density"] = controls["road_density"] * density_factor
    if "island" in hits and "coast" in hits:
        controls["water_level"] = 0.45
    size = _SIZE.search(text)
    area = _AREA.search(text)
    if size:
        controls["size_m"] = (_metres(size.group(1), size.group(2)), _metres(size.group(3), size.group(4)))
        understood = True
    elif area:
        side = float(area.group(1)) ** 0.5 * (1000.0 if "k" in area.group(2) else 1.0)
        controls["size_m"] = (side, side)
        understood = True
    relief = _RELIEF_VALUE.search(text)
    if relief:
        controls["relief_m"] = float(relief.group(1))
        understood = True
    if not understood:
        raise SuggestionError(f"could not understand {prompt!r}: use terms like flat/hilly/mountainous, coastal/river/lake, "
                              f"village/town/city, 'dense centre', and a size such as '1 km x 1 km'")
    for side in controls["size_m"]:
        if not MIN_SIZE_M <= side <= MAX_SIZE_M:
            raise SuggestionError(f"world size must be within {MIN_SIZE_M:.0f} m .. {MAX_SIZE_M / 1000:.0f} km per side, "
                                  f"got {controls['size_m'][0]:.0f} m x {controls['size_m'][1]:.0f} m")
    if controls["relief_m"] <= 0:
        raise SuggestionError(f"relief must be positive, got {controls['relief_m']} m")
    if controls["steepness"] <= 0:
        raise SuggestionError(f"steepness must be positive, got {controls['steepness']}")
    controls["size_m"] = tuple(controls["size_m"])
    result = LayoutControls(**controls)
    log.info("parsed %r -> %s", prompt, result)
    return result


def hits_words(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(0) if match else pattern
