"""Seeding the task repository: authored tasks plus quests imported from the D&D 5e SRD (CC BY 4.0).

Imported tasks are derived one per SRD entry by fixed rules: a hostile monster becomes a hunt, a
good-aligned one a parley, a harmless beast an observation; an uncommon-or-rarer magic item becomes a
retrieval; a spell becomes a study task. Each keeps the SRD entry and licence in its provenance.
Authored tasks are read from ``data/tasks/authored_tasks.json`` (written by the team).
Implements the seed corpus of PER-b1.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from gaiverse.personalization.knowledge import (
    DATA_DIR,
    RARITY_DIFFICULTY,
    SRD_ATTRIBUTION,
    KnowledgeBase,
    Monster,
    difficulty_from_cr,
)
from gaiverse.personalization.task_repository import Provenance, Task, TaskRepository

log = logging.getLogger(__name__)

AUTHORED_TASKS = DATA_DIR / "tasks" / "authored_tasks.json"

# creature type -> (tags, candidate places)
CREATURE_TYPES: dict[str, tuple[list[str], list[str]]] = {
    "beast": (["hunting", "wilderness", "nature"], ["whispering-woods", "frost-hollow"]),
    "undead": (["undead", "horror", "dungeon"], ["sunken-crypt"]),
    "dragon": (["dragon", "epic"], ["ember-peaks"]),
    "monstrosity": (["monster", "exploration"], ["iron-mine", "whispering-woods", "sky-bridge"]),
    "fiend": (["horror", "planar"], ["sunken-crypt", "ruined-observatory"]),
    "fey": (["fey", "mystery"], ["bramble-glade"]),
    "humanoid": (["intrigue", "stealth"], ["saltmarsh-docks", "crossroads-market"]),
    "elemental": (["magic", "elemental"], ["ember-peaks", "ruined-observatory"]),
    "construct": (["puzzle", "ancient"], ["library-of-ashes", "sky-bridge"]),
    "celestial": (["holy", "epic"], ["sky-bridge"]),
    "giant": (["giant", "epic"], ["ember-peaks", "frost-hollow"]),
    "aberration": (["horror", "mystery"], ["iron-mine"]),
    "plant": (["nature", "wilderness"], ["whispering-woods", "bramble-glade"]),
    "ooze": (["dungeon"], ["iron-mine", "sunken-crypt"]),
}
WATER_PLACES = ["glass-lake", "saltmarsh-docks"]
TREASURE_PLACES = ["sunken-crypt", "iron-mine", "ruined-observatory", "library-of-ashes", "sky-bridge",
                   "frost-hollow", "glass-lake", "ember-peaks"]
SPELL_SCHOOLS = {"abj": ("abjuration", "protection"), "con": ("conjuration", "magic"),
                 "div": ("divination", "mystery"), "enc": ("enchantment", "social"),
                 "evo": ("evocation", "combat"), "ill": ("illusion", "trickery"),
                 "nec": ("necromancy", "horror"), "trs": ("transmutation", "crafting")}
XP_BY_CR = {0: 10, 0.125: 25, 0.25: 50, 0.5: 100, 1: 200, 2: 450, 3: 700, 4: 1100, 5: 1800, 6: 2300, 7: 2900,
            8: 3900, 9: 5000, 10: 5900, 11: 7200, 12: 8400, 13: 10000, 14: 11500, 15: 13000, 16: 15000,
            17: 18000, 18: 20000, 19: 22000, 20: 25000, 21: 33000, 22: 41000, 23: 50000, 24: 62000,
            30: 155000}


def _pick(options: list[str], key: str) -> str:
    """A deterministic choice keyed by ``key`` (stable across runs and machines)."""
    return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]


def _questgiver(kb: KnowledgeBase, place: str, key: str) -> list[str]:
    local = sorted(n.id for n in kb.npcs_at(place))
    return [_pick(local, key)] if local else []


def _monster_task(kb: KnowledgeBase, m: Monster) -> Task:
    tags, places = CREATURE_TYPES.get(m.creature_type, (["monster"], ["whispering-woods"]))
    if m.swims:
        places = WATER_PLACES
    elif any(w in m.slug for w in ("winter", "polar", "ice", "frost", "white")):
        places = ["frost-hollow"]
    place = _pick(places, m.slug)
    npcs = _questgiver(kb, place, m.slug)
    giver = kb.npcs[npcs[0]].name if npcs else "A traveller"
    where = kb.places[place].name
    difficulty = difficulty_from_cr(m.cr)
    xp = XP_BY_CR.get(m.cr, int(200 * max(m.cr, 0.1)))
    what = f"a {m.size} {m.creature_type}".replace("  ", " ")
    if "good" in m.alignment.lower():
        title, kind_tags = f"Seek the Counsel of the {m.name}", ["diplomacy", "social"]
        desc = (f"{giver} says {what} known as the {m.name} dwells near {where}. Find it, earn its trust and "
                f"ask for its help.")
    elif m.creature_type == "beast" and m.cr == 0:
        title, kind_tags = f"Observe the {m.name}", ["relaxed", "exploration"]
        desc = f"{giver} wants notes on the {m.name} living around {where}. Track it quietly and record its habits."
    else:
        verb = "Hunt" if m.creature_type == "beast" else "Defeat"
        title, kind_tags = f"{verb} the {m.name}", ["combat"]
        desc = (f"{giver} reports {what} — the {m.name} — threatening {where}. {verb} it before it strikes "
                f"again (challenge rating {m.cr:g}).")
    all_tags = kind_tags + tags
    desc = desc[0].upper() + desc[1:]
    return Task(
        task_id=f"srd-monster-{m.slug}", title=title, description=desc, tags=all_tags,
        relevance=0.5, tag_relevance={t: 0.8 for t in all_tags[:2]}, difficulty=difficulty,
        length_minutes=15 + 10 * difficulty, social="group" if difficulty >= 4 else "either",
        requirements={"min_level": max(1, int(m.cr))}, rewards={"xp": xp, "gold": xp // 4},
        location=place, npcs=npcs, monsters=[m.slug] if "combat" in kind_tags else [],
        provenance=Provenance("imported", f"srd monsters/{m.slug}; {SRD_ATTRIBUTION}"))


def srd_tasks(kb: KnowledgeBase) -> list[Task]:
    """Tasks derived from every SRD monster, uncommon-or-rarer magic item and spell."""
    tasks = [_monster_task(kb, m) for m in kb.monsters.values()]
    for it in kb.items.values():
        if it.kind != "magic_item" or RARITY_DIFFICULTY.get(it.rarity, 1) < 2:
            continue
        place = _pick(TREASURE_PLACES, it.slug)
        npcs = _questgiver(kb, place, it.slug)
        difficulty = RARITY_DIFFICULTY[it.rarity]
        tags = ["treasure", "exploration", "magic"]
        tasks.append(Task(
            task_id=f"srd-item-{it.slug}", title=f"Recover the {it.name}",
            description=(f"Rumour says the {it.name}, a {it.rarity.replace('_', ' ')} magic item, lies hidden in "
                         f"{kb.places[place].name}. Find it and bring it back."),
            tags=tags, relevance=0.5, tag_relevance={"treasure": 0.9, "exploration": 0.7}, difficulty=difficulty,
            length_minutes=20 + 10 * difficulty, rewards={"items": [it.slug], "xp": 150 * difficulty},
            location=place, npcs=npcs, items=[it.slug],
            provenance=Provenance("imported", f"srd items/{it.slug}; {SRD_ATTRIBUTION}")))
    for sp in kb.spells.values():
        school, tag = SPELL_SCHOOLS.get(sp.school, (sp.school, "magic"))
        place = _pick(["library-of-ashes", "ruined-observatory"], sp.slug)
        npcs = _questgiver(kb, place, sp.slug)
        difficulty = min(5, 1 + sp.level // 2)
        level = "a cantrip" if sp.level == 0 else f"a level {sp.level} {school} spell"
        tasks.append(Task(
            task_id=f"srd-spell-{sp.slug}", title=f"Learn the Spell {sp.name}",
            description=(f"Study {sp.name}, {level}, from the notes kept at {kb.places[place].name} and cast it "
                         f"once under supervision."),
            tags=["magic", "study", tag], relevance=0.45, tag_relevance={"study": 0.8, tag: 0.6},
            difficulty=difficulty, length_minutes=15 + 5 * difficulty, social="solo",
            requirements={"spellcasting": True, "spell_level": sp.level}, rewards={"xp": 50 * (1 + sp.level)},
            location=place, npcs=npcs, kind="challenge",
            provenance=Provenance("imported", f"srd spells/{sp.slug}; {SRD_ATTRIBUTION}")))
    return tasks


def authored_tasks(path: Path = AUTHORED_TASKS) -> list[Task]:
    """The tasks the team wrote (provenance: authored)."""
    data = json.loads(Path(path).read_text())
    return [Task(**t, provenance=Provenance("authored", "gaiverse team (data/tasks/authored_tasks.json)"))
            for t in data["tasks"]]


def seed_repository(repo: TaskRepository, kb: KnowledgeBase, include_srd: bool = True) -> int:
    """Add the authored tasks and (optionally) the SRD-derived tasks that are not in ``repo`` yet.

    Every referenced place, NPC, item and monster must exist in ``kb``; returns the number added.
    """
    candidates = authored_tasks() + (srd_tasks(kb) if include_srd else [])
    for task in candidates:
        missing = [f"place {task.location!r}"] if task.location and not kb.exists("place", task.location) else []
        missing += [f"npc {n!r}" for n in task.npcs if not kb.exists("npc", n)]
        missing += [f"item {i!r}" for i in task.items if not kb.exists("item", i)]
        missing += [f"monster {m!r}" for m in task.monsters if not kb.exists("monster", m)]
        if missing:
            raise ValueError(f"seed task {task.task_id!r} references unknown {', '.join(missing)}")
    new = [t for t in candidates if t.task_id not in repo]
    repo.add(new)
    log.info("seeded %d tasks (%d were present)", len(new), len(candidates) - len(new))
    return len(new)
