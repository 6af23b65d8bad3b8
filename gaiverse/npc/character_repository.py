"""The character repository: NPC templates seeded from the SRD, plus each user's own predefined NPC settings.

Implements NPC-b2 (users add their own predefined NPC settings to personalise generation) and the
"character repository" of the clause 8.3 service flow. System templates come from the shipped
SRD 5e data: the 26 humanoid NPC stat blocks (guard, priest, mage, noble, scout, ...) with their
ability scores, languages and gear, and the 4 backgrounds (acolyte, criminal, sage, soldier).
User templates are ``NpcSettings`` stored per user in DuckDB (``<data_dir>/npc/characters.duckdb``),
opened per operation under a file lock like the catalog, so the API and flow processes share it.
A user's templates are invisible to every other user.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import duckdb

from gaiverse.npc.prior import PRIOR_DIR
from gaiverse.proc import file_lock, locked_write

log = logging.getLogger(__name__)

SRD_DIR = PRIOR_DIR / "srd"
SCHEMA = """
CREATE TABLE IF NOT EXISTS npc_templates (
    template_id VARCHAR PRIMARY KEY, user_id VARCHAR NOT NULL, name VARCHAR NOT NULL,
    settings JSON NOT NULL, created_at TIMESTAMPTZ NOT NULL);
"""
GEAR_WORDS = re.compile(r"\b(longsword|shortsword|greatsword|scimitar|rapier|dagger|spear|pike|halberd|greataxe|"
                        r"handaxe|battleaxe|mace|warhammer|maul|club|quarterstaff|sling|shortbow|longbow|"
                        r"crossbow|javelin|whip|trident|flail|shield|glaive|lance)\b", re.I)
ROLE_OF = {
    "archmage": ("an archmage of great power", "study"), "assassin": ("a hired killer", "shadow"),
    "bandit": ("a roadside bandit", "shadow"), "bandit-captain": ("the captain of a bandit crew", "shadow"),
    "berserker": ("a wild warrior of the northern clans", "watch"), "commoner": ("a townsfolk labourer", "town"),
    "cultist": ("a cult initiate", "temple"), "cultist-fanatic": ("a fanatical cult leader", "temple"),
    "druid": ("a druid of the old groves", "wild"), "gladiator": ("an arena gladiator", "watch"),
    "guard": ("a town guard", "watch"), "guard-captain": ("the captain of the town guard", "watch"),
    "knight": ("a sworn knight", "watch"), "mage": ("a learned mage", "study"),
    "noble": ("a noble of an old house", "court"), "pirate": ("a pirate deckhand", "sea"),
    "pirate-captain": ("a pirate captain", "sea"), "priest": ("a temple priest", "temple"),
    "priest-acolyte": ("a temple acolyte", "temple"), "scout": ("a wilderness scout", "wild"),
    "spy": ("a spy for hire", "shadow"), "tough": ("a street tough", "shadow"),
    "tough-boss": ("the boss of a street gang", "shadow"), "vampire-familiar": ("a vampire's servant", "shadow"),
    "warrior-infantry": ("an infantry soldier", "watch"), "warrior-veteran": ("a veteran soldier", "watch"),
}
"""SRD stat block slug -> (role phrase, routine category)."""
CATEGORY_DOMAINS = {
    "study": ["spells", "items", "conditions"], "shadow": ["items", "conditions", "geography"],
    "watch": ["monsters", "items", "conditions"], "town": ["geography", "items"], "temple": ["spells", "conditions"],
    "wild": ["monsters", "geography"], "court": ["geography", "backgrounds"], "sea": ["geography", "monsters"],
    "craft": ["items"], "trade": ["items", "geography"],
}
CATEGORY_STYLE = {"study": "scholarly", "shadow": "gruff", "watch": "gruff", "town": "friendly", "temple": "formal",
                  "wild": "gruff", "court": "formal", "sea": "gruff", "craft": "gruff", "trade": "friendly"}
BACKGROUND_ROLE = {"acolyte": ("an acolyte of the temple", "temple"), "criminal": ("a reformed criminal", "shadow"),
                   "sage": ("a sage and scholar", "study"), "soldier": ("a former soldier", "watch")}


def repository_path(data_dir: Path) -> Path:
    """``<data_dir>/npc/characters.duckdb``: where the installation keeps user templates."""
    return Path(data_dir) / "npc" / "characters.duckdb"


class TemplateNotFound(LookupError):
    """No template with that id is visible to the caller."""


@dataclass
class CharacterTemplate:
    """One entry of the repository: the defaults a generated NPC starts from."""

    id: str
    """``srd:<slug>``, ``background:<slug>`` or ``user:<hash>``."""
    name: str
    kind: str
    """``srd_npc``, ``srd_background`` or ``user``."""
    role: str
    category: str
    """Routine category: study, shadow, watch, town, temple, wild, court, sea, craft, trade."""
    source: str
    """Where it comes from (``srd:monsters/guard``, ``srd:backgrounds/sage``, ``user``)."""
    style: str = "friendly"
    domains: list[str] = field(default_factory=list)
    traits: list[str] = field(default_factory=list)
    abilities: dict[str, int] = field(default_factory=dict)
    """SRD ability scores (str, dex, con, int, wis, cha); they shape build and dialogue."""
    gear: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    owner: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """For user templates: the stored ``NpcSettings`` (as JSON)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load(name: str) -> dict:
    with gzip.open(SRD_DIR / f"{name}.json.gz", "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _traits_from_abilities(scores: dict[str, int]) -> list[str]:
    """Two traits from the highest and lowest SRD ability scores (a high-WIS priest is 'perceptive')."""
    high = {"str": "strong", "dex": "quick", "con": "hardy", "int": "clever", "wis": "perceptive", "cha": "charming"}
    low = {"str": "frail", "dex": "clumsy", "con": "sickly", "int": "simple", "wis": "rash", "cha": "awkward"}
    if not scores:
        return []
    ranked = sorted(scores, key=lambda k: (-scores[k], k))
    out = [high[ranked[0]]]
    if scores[ranked[-1]] <= 9:
        out.append(low[ranked[-1]])
    return out


@lru_cache(maxsize=1)
def system_templates() -> tuple[CharacterTemplate, ...]:
    """Templates from the shipped SRD: humanoid NPC stat blocks and backgrounds."""
    out = []
    for slug, m in sorted(_load("monsters").items()):
        if not str(m.get("creature_type", "")).startswith("humanoid") or slug not in ROLE_OF:
            continue
        role, category = ROLE_OF[slug]
        actions = " ".join(a.get("name", "") for a in m.get("actions") or [])
        gear = sorted({g.lower() for g in GEAR_WORDS.findall(actions)})
        scores = {k: int(v) for k, v in (m.get("ability_scores") or {}).items()}
        out.append(CharacterTemplate(
            id=f"srd:{slug}", name=m["name"], kind="srd_npc", role=role, category=category,
            source=f"srd:monsters/{slug}", style=CATEGORY_STYLE[category], domains=CATEGORY_DOMAINS[category],
            traits=_traits_from_abilities(scores), abilities=scores, gear=gear,
            languages=list(m.get("languages") or [])))
    for slug, b in sorted(_load("backgrounds").items()):
        role, category = BACKGROUND_ROLE.get(slug, (f"a {slug}", "town"))
        out.append(CharacterTemplate(
            id=f"background:{slug}", name=b["name"], kind="srd_background", role=role, category=category,
            source=f"srd:backgrounds/{slug}", style=CATEGORY_STYLE[category], domains=CATEGORY_DOMAINS[category]))
    return tuple(out)


@lru_cache(maxsize=1)
def srd_species() -> dict[str, dict[str, Any]]:
    """Species slug -> {name, size_hint, darkvision}: the playable species of the SRD."""
    out = {}
    for slug, s in _load("species").items():
        hint = next((a.get("hint", "") for a in s.get("advancement") or [] if a.get("type") == "Size"), "")
        out[slug] = {"name": s["name"], "size_hint": hint, "darkvision": (s.get("senses") or {}).get("darkvision")}
    return out


class CharacterRepository:
    """System templates plus per-user templates in one DuckDB file (short locked opens)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.lock_path = Path(str(self.path) + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as con:
            con.execute(SCHEMA)

    @contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with locked_write(self.path, self.lock_path) as con:
            yield con

    def _rows(self, sql: str, params: list) -> list[tuple]:
        with file_lock(self.lock_path, exclusive=False):
            con = duckdb.connect(str(self.path), read_only=True)
            try:
                return con.execute(sql, params).fetchall()
            finally:
                con.close()

    def add(self, user_id: str, name: str, settings: dict[str, Any]) -> CharacterTemplate:
        """Store a user's predefined NPC settings (validated ``NpcSettings`` JSON) as a template. NPC-b2.

        The id derives from user and name: adding the same name again replaces the earlier version.
        """
        from gaiverse.npc.generation import NpcSettings

        _check_id("user_id", user_id)
        if not isinstance(name, str) or not name.strip() or len(name) > 80:
            raise ValueError(f"`name` must be 1-80 characters, got {name!r}")
        clean = NpcSettings.model_validate(settings).model_dump(mode="json", exclude_none=True)
        template_id = "user:" + hashlib.sha256(f"{user_id}\x00{name.strip()}".encode()).hexdigest()[:16]
        with self._write() as con:
            con.execute("DELETE FROM npc_templates WHERE template_id = ?", [template_id])
            con.execute("INSERT INTO npc_templates VALUES (?, ?, ?, ?, ?)",
                        [template_id, user_id, name.strip(), json.dumps(clean), datetime.now(timezone.utc)])
        return self.get(template_id, user_id)

    def user_templates(self, user_id: str) -> list[CharacterTemplate]:
        rows = self._rows("SELECT template_id, user_id, name, settings FROM npc_templates WHERE user_id = ? "
                          "ORDER BY created_at, template_id", [user_id])
        return [_user_template(*row) for row in rows]

    def list(self, user_id: str | None) -> list[CharacterTemplate]:
        """System templates, then the user's own."""
        return list(system_templates()) + (self.user_templates(user_id) if user_id else [])

    def get(self, template_id: str, user_id: str | None) -> CharacterTemplate:
        """A template visible to ``user_id``; ``TemplateNotFound`` for unknown ids and other users' templates."""
        for t in system_templates():
            if t.id == template_id:
                return t
        if user_id and template_id.startswith("user:"):
            rows = self._rows("SELECT template_id, user_id, name, settings FROM npc_templates "
                              "WHERE template_id = ? AND user_id = ?", [template_id, user_id])
            if rows:
                return _user_template(*rows[0])
        raise TemplateNotFound(f"no character template {template_id!r} among yours or the SRD's")

    def delete(self, template_id: str, user_id: str) -> None:
        self.get(template_id, user_id)
        if not template_id.startswith("user:"):
            raise ValueError(f"system template {template_id!r} cannot be deleted")
        with self._write() as con:
            con.execute("DELETE FROM npc_templates WHERE template_id = ? AND user_id = ?", [template_id, user_id])


def _user_template(template_id: str, user_id: str, name: str, settings: str) -> CharacterTemplate:
    data = json.loads(settings)
    base = match_template(data.get("role") or "", data.get("template"))
    return CharacterTemplate(
        id=template_id, name=name, kind="user", role=data.get("role") or base.role, category=base.category,
        source="user", style=base.style, domains=list(data.get("domains") or base.domains),
        traits=list(data.get("traits") or []), abilities=base.abilities, gear=base.gear, languages=base.languages,
        owner=user_id, settings=data)


ROLE_WORDS = {
    "craft": r"smith|blacksmith|armou?rer|weaponsmith|carpenter|mason|tailor|cobbler|potter|tanner|fletcher|crafts",
    "trade": r"merchant|trader|shop|innkeeper|barkeep|tavern|peddler|vendor|baker|butcher|cook|brewer",
    "study": r"mage|wizard|sage|scholar|librarian|alchemist|scribe|teacher|archmage|astronomer",
    "temple": r"priest|cleric|acolyte|monk|nun|healer|oracle|templar",
    "watch": r"guard|soldier|knight|captain|warrior|sentry|mercenary|gladiator|veteran",
    "wild": r"hunter|ranger|scout|druid|trapper|woodsman|herbalist|shepherd",
    "shadow": r"thief|spy|assassin|bandit|smuggler|rogue|criminal|thug",
    "court": r"noble|lord|lady|duke|baron|courtier|herald|diplomat|mayor",
    "sea": r"pirate|sailor|fisher|captain of a ship|navigator",
    "town": r"farmer|labou?rer|miller|stablehand|beggar|villager|commoner",
}
FALLBACK_TEMPLATE = {"craft": "srd:commoner", "trade": "srd:commoner", "study": "srd:mage", "temple": "srd:priest",
                     "watch": "srd:guard", "wild": "srd:scout", "shadow": "srd:spy", "court": "srd:noble",
                     "sea": "srd:pirate", "town": "srd:commoner"}


def role_category(role: str) -> str | None:
    """The routine category a free-text role belongs to, or None."""
    for category, pattern in ROLE_WORDS.items():
        if re.search(rf"\b({pattern})", role, re.I):
            return category
    return None


def match_template(role: str, template_id: str | None = None) -> CharacterTemplate:
    """The system template named by ``template_id`` or best fitting a free-text ``role``."""
    by_id = {t.id: t for t in system_templates()}
    if template_id and template_id in by_id:
        return by_id[template_id]
    words = re.sub(r"[^a-z ]", " ", role.lower())
    for t in system_templates():  # an SRD name in the role: "a city guard" -> Guard
        if t.kind == "srd_npc" and re.search(rf"\b{re.escape(t.name.lower())}\b", words):
            return t
    category = role_category(role) or "town"
    base = by_id[FALLBACK_TEMPLATE[category]]
    if base.category == category:
        return base
    return CharacterTemplate(**{**base.to_dict(), "category": category, "style": CATEGORY_STYLE[category],
                                "domains": CATEGORY_DOMAINS[category]})


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValueError(f"`{name}` must be a non-empty id, got {value!r}")
