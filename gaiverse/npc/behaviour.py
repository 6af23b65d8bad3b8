"""An NPC's behaviour in the world: a daily schedule, routines, idle behaviours and reactions.

Schedules come from the routine category of the NPC's role (a smith works the forge, a guard
stands watch in shifts, a scholar studies) with seeded variation: a personal chronotype shifts
the whole day, each block's start moves by up to half an hour, and some optional blocks
(a tavern visit, a walk) appear only for some NPCs. Idle behaviours are gesture clips
(``expression.GESTURES``) weighted by personality; reactions map world events to an emotion,
a gesture and a line style, adjusted by traits (a grumpy NPC nods instead of waving).
Implements the behaviour half of NPC-b1.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from gaiverse.npc.expression import EMOTION_SHAPES, GESTURES, INTENT_REACTION

ROUTINES: dict[str, list[tuple[float, float, str, str, bool]]] = {
    # (start hour, end hour, activity, place, optional)
    "craft": [(6.5, 7.0, "breakfast", "home", False), (7.0, 12.0, "work at the forge", "workshop", False),
              (12.0, 13.0, "lunch", "tavern", False), (13.0, 18.0, "take orders and craft", "workshop", False),
              (18.0, 19.5, "supper and talk", "tavern", True), (19.5, 21.5, "mend tools", "home", True),
              (21.5, 30.5, "sleep", "home", False)],
    "trade": [(6.0, 7.0, "stock the shelves", "shop", False), (7.0, 12.5, "serve customers", "shop", False),
              (12.5, 13.0, "lunch", "shop", False), (13.0, 17.0, "haggle at the market", "market square", False),
              (17.0, 22.0, "serve customers", "shop", False), (22.0, 23.0, "count the coin", "shop", True),
              (23.0, 30.0, "sleep", "home", False)],
    "study": [(7.0, 8.0, "breakfast and letters", "home", False), (8.0, 12.0, "study", "library", False),
              (12.0, 13.0, "lunch", "home", False), (13.0, 16.0, "experiments", "study", False),
              (16.0, 17.0, "walk", "gardens", True), (17.0, 21.0, "write", "study", False),
              (21.0, 23.0, "read by candlelight", "home", True), (23.0, 31.0, "sleep", "home", False)],
    "temple": [(5.0, 6.0, "dawn prayers", "temple", False), (6.0, 7.0, "breakfast", "temple", False),
               (7.0, 12.0, "tend the sick", "temple", False), (12.0, 13.0, "lunch", "temple", False),
               (13.0, 17.0, "alms and counsel", "market square", False), (17.0, 18.0, "evening prayers", "temple", False),
               (18.0, 20.0, "study scripture", "temple", True), (20.0, 29.0, "sleep", "temple", False)],
    "watch": [(6.0, 6.5, "muster", "barracks", False), (6.5, 14.0, "stand watch", "town gate", False),
              (14.0, 15.0, "meal", "barracks", False), (15.0, 18.0, "patrol the streets", "streets", False),
              (18.0, 20.0, "drill", "barracks", True), (20.0, 22.0, "dice and ale", "tavern", True),
              (22.0, 30.0, "sleep", "barracks", False)],
    "wild": [(5.0, 6.0, "check the snares", "forest edge", False), (6.0, 12.0, "track game", "forest", False),
             (12.0, 13.0, "meal by the fire", "camp", False), (13.0, 17.0, "scout the roads", "roads", False),
             (17.0, 19.0, "trade pelts", "market square", True), (19.0, 21.0, "mend gear", "camp", False),
             (21.0, 29.0, "sleep", "camp", False)],
    "shadow": [(10.0, 11.0, "breakfast", "hideout", False), (11.0, 15.0, "watch the market", "market square", False),
               (15.0, 17.0, "meet contacts", "tavern", False), (17.0, 20.0, "rest", "hideout", True),
               (20.0, 26.0, "night business", "alleys", False), (26.0, 34.0, "sleep", "hideout", False)],
    "court": [(8.0, 9.0, "breakfast", "manor", False), (9.0, 12.0, "hold audience", "hall", False),
              (12.0, 14.0, "luncheon", "manor", False), (14.0, 17.0, "correspondence", "study", False),
              (17.0, 19.0, "ride", "estate", True), (19.0, 23.0, "dinner and guests", "manor", False),
              (23.0, 32.0, "sleep", "manor", False)],
    "sea": [(5.0, 6.0, "check the tide", "docks", False), (6.0, 12.0, "work the ship", "ship", False),
            (12.0, 13.0, "mess", "ship", False), (13.0, 18.0, "load cargo", "docks", False),
            (18.0, 22.0, "songs and rum", "tavern", True), (22.0, 29.0, "sleep", "ship", False)],
    "town": [(6.0, 7.0, "breakfast", "home", False), (7.0, 12.0, "work", "fields", False),
             (12.0, 13.0, "lunch", "home", False), (13.0, 18.0, "work", "fields", False),
             (18.0, 20.0, "gossip", "tavern", True), (20.0, 22.0, "chores", "home", True),
             (22.0, 30.0, "sleep", "home", False)],
}
IDLE_BY_TRAIT = {
    "gruff": {"cross_arms": 3, "idle": 2, "shake_head": 1}, "grumpy": {"cross_arms": 3, "shake_head": 2, "idle": 1},
    "friendly": {"wave": 2, "nod": 2, "idle": 2}, "warm": {"nod": 2, "wave": 1, "idle": 2},
    "curious": {"think": 3, "point": 1, "idle": 1}, "nervous": {"shake_head": 1, "think": 1, "shrug": 2},
    "proud": {"cross_arms": 2, "nod": 1, "idle": 1}, "cheerful": {"wave": 2, "nod": 2, "explain": 1},
}
EVENTS = ("greeted", "thanked", "given_gift", "insulted", "threatened", "asked_in_domain", "asked_unknown",
          "farewell", "customer", "stranger_near")
"""World and dialogue events an NPC reacts to."""


def _clock(hours: float) -> str:
    hours %= 24
    return f"{int(hours):02d}:{int(round((hours % 1) * 60)) % 60:02d}"


ROLE_WORKPLACES: tuple[tuple[str, str, str], ...] = (
    (r"lighthouse", "lighthouse", "tend the light"),
    (r"innkeeper|\binn\b|tavern|barkeep", "inn", "serve guests"),
    (r"baker", "bakery", "bake bread"), (r"butcher", "butcher's shop", "cut and sell meat"),
    (r"brewer", "brewery", "brew ale"), (r"miller", "mill", "grind grain"),
    (r"fisher", "fishing boat", "fish"), (r"ferry", "ferry landing", "ferry travellers"),
    (r"stable|groom", "stables", "tend the horses"), (r"miner\b", "mine", "dig ore"),
    (r"healer|herbalist|physician|doctor|apothecar", "apothecary", "tend the sick"),
    (r"scribe", "scriptorium", "copy manuscripts"),
    (r"teacher|schoolmaster", "schoolhouse", "teach"), (r"gravedigger", "graveyard", "dig graves"),
    (r"shepherd", "pastures", "tend the flock"),
)
"""Role words -> (workplace, work activity): a role's own workplace wins over its routine category's."""
CATEGORY_WORK: dict[str, tuple[str, str]] = {
    "town": ("fields", "work"), "craft": ("workshop", "work at the forge"), "trade": ("shop", "serve customers"),
    "study": ("library", "study"), "temple": ("temple", "tend the sick"), "watch": ("town gate", "stand watch"),
    "wild": ("forest", "track game"), "shadow": ("alleys", "night business"), "court": ("hall", "hold audience"),
    "sea": ("ship", "work the ship"),
}
"""Routine category -> (its workplace, its core work activity): what a role's workplace replaces."""
AGENT_WORDS = r"(keeper|master|mistress|hand|worker|tender|warden|man|woman|maker|seller|wright|operator|attendant)"
_NOT_WORK = re.compile(r"sleep|breakfast|lunch|luncheon|meal|mess|supper|dinner|prayers")


def role_workplace(role: str | None) -> tuple[str, str] | None:
    """(workplace, activity) of a free-text role: the mapped one, else a workplace named after the role
    ("toll bridge keeper" -> "toll bridge"; "cartographer" -> "cartographer's workshop"); None for no role."""
    if not role or not role.strip():
        return None
    for pattern, place, activity in ROLE_WORKPLACES:
        if re.search(pattern, role, re.I):
            return place, activity
    words = re.sub(r"^(a|an|the)\s+", "", role.strip().lower())
    place = re.sub(rf"\s+{AGENT_WORDS}$", "", words)
    return (place if place != words else f"{words}'s workplace"), "work"


def at_role_workplace(blocks: list[dict[str, Any]], category: str, role: str | None,
                      routine_follows_role: bool = False) -> list[dict[str, Any]]:
    """The day's work blocks moved to the role's workplace (a lighthouse keeper works at the lighthouse,
    not in a commoner's fields). A mapped role always moves them; the generic workplace is used only when
    the routine category did not come from the role itself (``routine_follows_role``)."""
    work = role_workplace(role)
    mapped = role is not None and any(re.search(p, role, re.I) for p, _, _ in ROLE_WORKPLACES)
    if work is None or category not in CATEGORY_WORK or (routine_follows_role and not mapped):
        return blocks
    place, activity = work
    home_place, core = CATEGORY_WORK[category]
    out = []
    for b in blocks:
        if b["place"] == home_place and not _NOT_WORK.search(b["activity"]):
            b = {**b, "place": place, "activity": activity if b["activity"] == core else b["activity"]}
        out.append(b)
    return out


def daily_schedule(rng: np.random.Generator, category: str, traits: list[str], role: str | None = None,
                   routine_follows_role: bool = False) -> list[dict[str, Any]]:
    """Blocks of the day ({start, end, activity, place}) for a routine category, varied per NPC; with the
    user's ``role``, work happens at the role's workplace (``at_role_workplace``)."""
    if category not in ROUTINES:
        raise ValueError(f"`category` must be one of {sorted(ROUTINES)}, got {category!r}")
    shift = float(rng.choice([-1.0, -0.5, 0.0, 0.0, 0.5, 1.0]))
    if any(t.lower() in ("lazy", "easygoing", "sleepy") for t in traits):
        shift += 1.0
    if any(t.lower() in ("diligent", "disciplined", "hardworking", "early riser") for t in traits):
        shift -= 0.5
    blocks = [b for b in ROUTINES[category] if not b[4] or rng.random() < 0.6]
    starts = [b[0] + shift + (float(rng.integers(-2, 3)) * 0.25 if i else 0.0) for i, b in enumerate(blocks)]
    for i in range(1, len(starts)):  # keep the day in order with at least 15 minutes per block
        starts[i] = max(starts[i], starts[i - 1] + 0.25)
    out = []
    for i, (start, block) in enumerate(zip(starts, blocks)):
        end = starts[0] + 24.0 if i == len(blocks) - 1 else starts[i + 1]
        out.append({"start": _clock(start), "end": _clock(end), "activity": block[2], "place": block[3],
                    "hours": round(end - start, 2)})
    return at_role_workplace(out, category, role, routine_follows_role) if role else out


def idle_behaviours(rng: np.random.Generator, traits: list[str], style: str) -> list[dict[str, Any]]:
    """Gesture clips played when nobody talks to the NPC, with relative weights (sum 1)."""
    weights = {"idle": 3.0, "think": 1.0, "nod": 0.5}
    for key in [t.lower() for t in traits] + [style]:
        for gesture, w in IDLE_BY_TRAIT.get(key, {}).items():
            weights[gesture] = weights.get(gesture, 0.0) + w
    for gesture in weights:
        weights[gesture] *= float(rng.uniform(0.7, 1.3))
    total = sum(weights.values())
    assert all(g in GESTURES for g in weights)
    return [{"gesture": g, "weight": round(w / total, 3), "every_s": round(float(rng.uniform(6, 20)), 1)}
            for g, w in sorted(weights.items(), key=lambda kv: -kv[1])]


def reactions(traits: list[str], style: str) -> dict[str, dict[str, str]]:
    """Event -> {emotion, gesture, line}; ``line`` names a persona line kind (``persona.STYLE_LINES``)."""
    gruff = style == "gruff" or any(t.lower() in ("grumpy", "gruff", "surly", "blunt") for t in traits)
    base = {
        "greeted": INTENT_REACTION["greet"] + ("greet_again",), "thanked": INTENT_REACTION["thank"] + ("thank",),
        "given_gift": INTENT_REACTION["give_item"] + ("give",), "insulted": ("anger", "cross_arms", "rude"),
        "threatened": ("anger" if gruff else "concern", "cross_arms" if gruff else "shake_head", "rude"),
        "asked_in_domain": INTENT_REACTION["ask"] + ("open",), "asked_unknown": ("apologetic", "shrug", "refuse"),
        "farewell": INTENT_REACTION["leave"] + ("leave",), "customer": INTENT_REACTION["trade"] + ("trade",),
        "stranger_near": ("interest" if not gruff else "neutral", "nod" if gruff else "wave", "smalltalk"),
    }
    if gruff:
        base["greeted"] = ("neutral", "nod", "greet_again")
        base["thanked"] = ("neutral", "nod", "thank")
    out = {event: {"emotion": e, "gesture": g, "line": line} for event, (e, g, line) in base.items()}
    assert all(v["emotion"] in EMOTION_SHAPES and v["gesture"] in GESTURES for v in out.values())
    return out


SCHEDULE_PLACE_KINDS: dict[str, tuple[str, ...]] = {
    "home": ("home",), "workshop": ("workshop", "shop"), "tavern": ("tavern",), "shop": ("shop", "market"),
    "market square": ("market",), "library": ("library", "hall"), "study": ("library", "home"),
    "gardens": ("park",), "temple": ("temple",), "barracks": ("barracks", "gate"), "town gate": ("gate",),
    "streets": ("road",), "alleys": ("road",), "roads": ("road", "gate"), "forest edge": ("forest", "fields"),
    "forest": ("forest",), "camp": ("forest", "fields"), "hideout": ("home",), "manor": ("manor", "hall"),
    "hall": ("hall",), "estate": ("manor", "park", "fields"), "docks": ("docks", "gate"), "ship": ("docks", "gate"),
    "fields": ("fields", "park"), "inn": ("tavern",), "lighthouse": ("docks", "hill"),
    "bakery": ("shop", "workshop"), "butcher's shop": ("shop", "workshop"), "brewery": ("workshop", "shop"),
    "mill": ("workshop", "fields"), "fishing boat": ("docks",), "ferry landing": ("docks",),
    "stables": ("workshop", "fields"), "mine": ("hill", "workshop"), "apothecary": ("shop", "temple"),
    "scriptorium": ("library",), "schoolhouse": ("library", "hall"), "graveyard": ("temple", "park"),
    "pastures": ("fields", "park"),
}
"""Routine place -> kinds of world places (``world_knowledge.WorldPlace.kind``) it may be, best first."""


def place_schedule(schedule: list[dict[str, Any]], places: Any, seed: int) -> tuple[list[dict[str, Any]], dict]:
    """Put each block of a schedule at a real place of the world (NPC-b1 behaviour in the world).

    ``places`` are named places (``name``, ``kind``, ``x``, ``y``, ``district``). A routine place maps to
    the first place kind the world has (``SCHEDULE_PLACE_KINDS``); the NPC's home is one house, chosen
    by ``seed``, and roads and homes are drawn once per NPC so the whole day is consistent. Returns the
    placed schedule and ``{routine place: world place name}``; a place the table does not know (a role's
    own workplace such as "cartographer's workshop") goes to a workshop or shop of the world.
    """
    rng = np.random.default_rng([int(seed), 7])
    by_kind: dict[str, list[Any]] = {}
    for p in places:
        by_kind.setdefault(p.kind, []).append(p)
    chosen: dict[str, Any] = {}
    for label in dict.fromkeys(b["place"] for b in schedule):
        for kind in SCHEDULE_PLACE_KINDS.get(label, ("workshop", "shop")) + ("market", "district"):
            pool = by_kind.get(kind)
            if pool:
                chosen[label] = pool[int(rng.integers(len(pool)))] if kind in ("home", "road", "district") else pool[0]
                break
    placed = []
    for block in schedule:
        p = chosen.get(block["place"])
        placed.append({**block, "place": p.name, "place_kind": p.kind, "routine_place": block["place"],
                       "x": p.x, "y": p.y, "district": p.district} if p is not None else dict(block))
    return placed, {label: p.name for label, p in chosen.items()}
