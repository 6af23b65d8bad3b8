"""The prior knowledge of every NPC: SRD 5e rules and monsters plus GeoNames world geography.

Structured records become short, self-contained fact sentences ("The aboleth has armor class
17.") so retrieval finds one fact per sentence and the answerer can quote it verbatim. Sources
ship in ``data/knowledge/npc/`` (licences in its LICENSE.md); nothing is read from outside the
repository. Implements NPC-a1 (professional domains: monsters, spells, items, conditions,
species, backgrounds; general knowledge: geography).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Iterator

from gaiverse.npc.chunking import Passage, _pack, ChunkingConfig
from gaiverse.npc.text import clean_markup

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
PRIOR_DIR = REPO_ROOT / "data" / "knowledge" / "npc"
"""The shipped prior sources (SRD JSON, GeoNames JSON) and the embedding cache."""
EMBEDDING_CACHE = PRIOR_DIR / "prior_embeddings.npz"

ABILITIES = [("str", "Strength"), ("dex", "Dexterity"), ("con", "Constitution"), ("int", "Intelligence"),
             ("wis", "Wisdom"), ("cha", "Charisma")]
SCHOOLS = {"abj": "Abjuration", "con": "Conjuration", "div": "Divination", "enc": "Enchantment",
           "evo": "Evocation", "ill": "Illusion", "nec": "Necromancy", "trs": "Transmutation"}
CONTINENTS = {"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America"}
UNITS = {"inst": "instantaneous", "minute": "minute", "hour": "hour", "day": "day", "round": "round",
         "disp": "until dispelled", "perm": "permanent", "spec": "special", "bonus": "bonus action",
         "action": "action", "reaction": "reaction", "turn": "turn", "month": "month", "year": "year"}
CHUNKS = ChunkingConfig(max_chars=500, min_chars=120)


def _num(value: float) -> str:
    """17.0 -> '17', 0.25 -> '1/4' (challenge ratings), 8336599 -> '8,336,599'."""
    fractions = {0.125: "1/8", 0.25: "1/4", 0.5: "1/2"}
    if value in fractions:
        return fractions[value]
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:g}"


def _the(name: str) -> str:
    """Monster names read as 'the aboleth', 'the adult red dragon'; proper names stay bare."""
    return f"the {name.lower()}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _plural(value: float, unit: str) -> str:
    return f"{_num(value)} {unit}" + ("" if value == 1 else "s")


def _load(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def monster_passages(monsters: dict) -> Iterator[Passage]:
    """Stat block -> summary, abilities/senses, and one passage per trait or action."""
    for slug, m in sorted(monsters.items()):
        name, the = m["name"], _the(m["name"])
        src = f"srd:monsters/{slug}"
        walk = m.get("movement") or {}
        speeds = [f"{_num(walk['walk'])} feet"] if walk.get("walk") else []
        speeds += [f"{mode} {_num(walk[key])} feet" for key, mode in
                   (("fly", "flying"), ("swim", "swimming"), ("climb", "climbing"), ("burrow", "burrowing"))
                   if walk.get(key)]
        summary = [
            f"{_cap(the)} is a {m['creature_size'].title()} {m['creature_type']} with a challenge rating of "
            f"{_num(m['cr'])}.",
            f"{_cap(the)}'s size is {m['creature_size'].title()} and its alignment is {m['alignment'].lower()}.",
            f"{_cap(the)} has an armor class of {_num(m['ac'])}.",
            f"{_cap(the)} has {_num(m['hp'])} hit points ({m['hp_dice']}).",
        ]
        if speeds:
            summary.append(f"{_cap(the)} has a speed of {', '.join(speeds)}.")
        yield Passage(" ".join(summary), "monsters", name, src)

        scores = m.get("ability_scores") or {}
        stats = [f"{_cap(the)} has " + ", ".join(f"{full} {scores[k]}" for k, full in ABILITIES if k in scores) + "."]
        senses = m.get("senses") or {}
        seen = [f"{s} {_num(senses[s])} feet" for s in ("blindsight", "darkvision", "tremorsense", "truesight")
                if senses.get(s)]
        if seen:
            stats.append(f"{_cap(the)} has {', '.join(seen)}.")
        if senses.get("passive_perception") is not None:
            stats.append(f"{_cap(the)} has a passive Perception of {_num(senses['passive_perception'])}.")
        if m.get("languages"):
            stats.append(f"{_cap(the)} speaks {', '.join(m['languages']).rstrip('.')}.")
        else:
            stats.append(f"{_cap(the)} speaks no languages.")
        for key, label in (("damage_immunities", "is immune to"), ("damage_resistances", "resists"),
                           ("damage_vulnerabilities", "is vulnerable to")):
            if m.get(key):
                stats.append(f"{_cap(the)} {label} {', '.join(map(str, m[key]))} damage.")
        if m.get("condition_immunities"):
            stats.append(f"{_cap(the)} cannot be {', '.join(map(str, m['condition_immunities']))}.")
        yield Passage(" ".join(stats), "monsters", name, src)

        for group, label in (("special_abilities", "trait"), ("actions", "action"),
                             ("legendary_actions", "legendary action")):
            for entry in m.get(group) or []:
                text = clean_markup(entry.get("description") or "", name=name)
                if not text:
                    continue
                dice = _damage_dice(entry)
                if dice and not re.search(r"\d+d\d+", text):
                    text = f"{text} Its damage dice are {dice}."
                head = f"{_cap(the)}'s {entry['name']} {label}"
                for piece in _pack([text], CHUNKS):
                    yield Passage(f"{head}: {piece}", "monsters", name, src)


def _damage_dice(entry: dict) -> str:
    """'2d6 bludgeoning' from a Foundry activity's damage parts (descriptions only hold a placeholder)."""
    parts = []
    for act in entry.get("activities") or []:
        for part in (act.get("damage") or {}).get("parts") or []:
            if part.get("number") and part.get("denomination"):
                types = " or ".join(part.get("types") or [])
                parts.append(f"{part['number']}d{part['denomination']} {types}".strip())
    return " plus ".join(dict.fromkeys(parts))


def spell_passages(spells: dict) -> Iterator[Passage]:
    """Spell -> a summary of its mechanics plus its description in passages."""
    for slug, s in sorted(spells.items()):
        name = s["name"]
        src = f"srd:spells/{slug}"
        school = SCHOOLS.get(s.get("school", ""), s.get("school", ""))
        level = s.get("level", 0)
        facts = [f"{name} is a level {level} spell of the {school} school of magic." if level
                 else f"{name} is a cantrip of the {school} school of magic."]
        ct = s.get("casting_time") or {}
        if ct.get("unit"):
            unit = UNITS.get(ct["unit"], ct["unit"])
            cond = f", {ct['condition']}" if ct.get("condition") else ""
            facts.append(f"Casting {name} takes {_plural(ct.get('value') or 1, unit)}{cond}.")
        rng = s.get("range") or {}
        if rng.get("units") == "ft" and rng.get("value"):
            facts.append(f"{name} has a range of {_num(rng['value'])} feet.")
        elif rng.get("units") == "mi" and rng.get("value"):
            facts.append(f"{name} has a range of {_plural(rng['value'], 'mile')}.")
        elif rng.get("units"):
            facts.append(f"{name} has a range of {rng.get('special') or rng['units']}.")
        comps = {"V": "verbal", "S": "somatic", "M": "material"}
        parts = [comps[c] for c in ("V", "S", "M") if c in (s.get("components") or [])]
        if parts:
            mat = (s.get("materials") or {}).get("value")
            facts.append(f"{name} needs {', '.join(parts)} components" + (f" ({mat})." if mat else "."))
        dur = s.get("duration") or {}
        if dur.get("units") in ("inst", "disp", "perm", "spec"):
            facts.append(f"The duration of {name} is {UNITS[dur['units']]}.")
        elif dur.get("units"):
            facts.append(f"The duration of {name} is {_plural(dur.get('value') or 1, UNITS.get(dur['units'], dur['units']))}.")
        facts.append(f"{name} {'requires' if s.get('concentration') else 'does not require'} concentration.")
        if s.get("ritual"):
            facts.append(f"{name} can be cast as a ritual.")
        yield Passage(" ".join(facts), "spells", name, src)
        text = clean_markup(s.get("description") or "", name=name)
        for piece in _pack(text.split("\n\n"), CHUNKS):
            yield Passage(f"{name}: {piece}", "spells", name, src)


def item_passages(items: dict) -> Iterator[Passage]:
    """Item -> cost, weight, rarity, damage or armour class, then its description."""
    for slug, it in sorted(items.items()):
        name = it["name"]
        src = f"srd:items/{slug}"
        kind = {"magic_item": "magic item", "item": "item"}.get(it.get("item_kind", ""), it.get("item_kind", "item"))
        facts = []
        if it.get("item_kind") == "weapon" and it.get("weapon_category"):
            facts.append(f"The {name} is a {it['weapon_category'].replace('_', ' ')} weapon.")
        elif it.get("item_kind") == "armor" and it.get("armor_category"):
            facts.append(f"{name} is {it['armor_category']} armor.")
        else:
            rarity = (it.get("rarity") or "").replace("_", " ")
            facts.append(f"{name} is {'an' if rarity[:1] in ('u', 'a', 'e', 'i', 'o') else 'a'} {rarity} {kind}."
                         .replace("  ", " "))
            if rarity and rarity != "common":
                facts.append(f"The rarity of {name} is {rarity}.")
        if it.get("rarity") and it.get("item_kind") in ("weapon", "armor") and it.get("rarity") != "common":
            facts.append(f"The rarity of {name} is {it['rarity'].replace('_', ' ')}.")
        if it.get("cost_gp"):
            facts.append(f"{name} costs {_num(it['cost_gp'])} gold pieces.")
        if it.get("weight"):
            facts.append(f"{name} weighs {_plural(it['weight'], 'pound')}.")
        for part in it.get("damage_parts") or []:
            facts.append(f"{name} deals {part['dice']} {part['damage_type']} damage.")
        if it.get("versatile_damage"):
            v = it["versatile_damage"]
            facts.append(f"{name} deals {v['dice']} {v['damage_type']} damage when used with two hands.")
        if it.get("properties"):
            facts.append(f"{name} has the properties {', '.join(it['properties'])}.")
        if it.get("base_ac"):
            facts.append(f"{name} gives a base armor class of {_num(it['base_ac'])}.")
        if it.get("strength_min"):
            facts.append(f"{name} requires a Strength of {_num(it['strength_min'])}.")
        if it.get("requires_attunement"):
            facts.append(f"{name} requires attunement{' ' + it['attunement_constraint'] if it.get('attunement_constraint') else ''}.")
        yield Passage(" ".join(facts), "items", name, src)
        text = clean_markup(it.get("description") or "", name=name)
        for piece in _pack(text.split("\n\n")[:6], CHUNKS):
            yield Passage(f"{name}: {piece}", "items", name, src)


def rules_passages(entries: dict, category: str) -> Iterator[Passage]:
    """Conditions, species and backgrounds: their rules text as passages."""
    for slug, e in sorted(entries.items()):
        name = e["name"]
        text = clean_markup(e.get("description") or "", name=name)
        if category == "conditions":
            text = f"The {name} condition. {text}"
        for piece in _pack(text.split("\n\n"), CHUNKS):
            yield Passage(f"{name}: {piece}" if not piece.startswith(f"The {name}") else piece, category, name,
                          f"srd:{category}/{slug}")


def geography_passages(countries: dict, cities: dict) -> Iterator[Passage]:
    """GeoNames countries and the cities of at least 500,000 people as fact sentences."""
    names = {code: c["name"] for code, c in countries.items()}
    for code, c in sorted(countries.items()):
        name = c["name"]
        facts = []
        if c.get("capital"):
            facts.append(f"The capital of {name} is {c['capital']}.")
        if c.get("continentcode") in CONTINENTS:
            facts.append(f"{name} is a country on the continent of {CONTINENTS[c['continentcode']]}.")
        if c.get("population"):
            facts.append(f"{name} has a population of {_num(c['population'])}.")
        if c.get("areakm2"):
            facts.append(f"{name} has an area of {_num(c['areakm2'])} square kilometres.")
        if c.get("currencyname"):
            facts.append(f"The currency of {name} is the {c['currencyname']} ({c['currencycode']}).")
        neighbours = [names[n] for n in (c.get("neighbours") or "").split(",") if n in names]
        if neighbours:
            facts.append(f"{name} borders {', '.join(neighbours)}.")
        if facts:
            yield Passage(" ".join(facts), "geography", name, f"geonames:{code}")
    for gid, city in sorted(cities.items(), key=lambda kv: -kv[1]["population"]):
        country = names.get(city["countrycode"], city["countrycode"])
        text = (f"{city['name']} is a city in {country} with a population of {_num(city['population'])}. "
                f"{city['name']} lies at latitude {city['latitude']:.2f} and longitude {city['longitude']:.2f} "
                f"in the {city['timezone']} time zone.")
        yield Passage(text, "geography", city["name"], f"geonames:{gid}")


def prior_passages(root: Path | None = None) -> list[Passage]:
    """Every prior passage from the shipped sources under ``root`` (default ``data/knowledge/npc``)."""
    root = Path(root) if root is not None else PRIOR_DIR
    srd, geo = root / "srd", root / "geonames"
    if not (srd / "monsters.json.gz").is_file() or not (geo / "countries.json").is_file():
        raise FileNotFoundError(f"`root` must hold srd/*.json.gz and geonames/*.json, got {root}")
    out: list[Passage] = []
    out += monster_passages(_load(srd / "monsters.json.gz"))
    out += spell_passages(_load(srd / "spells.json.gz"))
    out += item_passages(_load(srd / "items.json.gz"))
    for category in ("conditions", "species", "backgrounds"):
        out += rules_passages(_load(srd / f"{category}.json.gz"), category)
    out += geography_passages(_load(geo / "countries.json"), _load(geo / "cities_pop500k.json"))
    # identical passages (e.g. two items sharing a description) would only crowd retrieval
    seen, unique = set(), []
    for p in out:
        if p.text not in seen:
            seen.add(p.text)
            unique.append(p)
    log.info("prior knowledge: %d passages", len(unique))
    return unique


def build_prior(kb, root: Path | None = None, cache_path: Path | None = None) -> int:
    """Store the prior passages in ``kb`` (a ``KnowledgeBase``) unless the same prior is already there.

    A fingerprint of the passages, the embedder and the keyword tokenizer decides "the same";
    a changed prior replaces the old one in one transaction. Vectors come from the shipped cache
    where it holds them, so a fresh build takes seconds instead of a minute of embedding.
    Implements NPC-a1. Returns the number of prior passages.
    """
    from gaiverse.npc.embedding import CachedEmbedder
    from gaiverse.npc.text import TERMS_VERSION

    stamp = _source_stamp(root, kb.embedder.name, TERMS_VERSION)
    with kb._lock:
        meta = dict(kb.con.execute("SELECT key, value FROM kb_meta WHERE key IN "
                                   "('prior_stamp', 'prior_count', 'prior_fingerprint')").fetchall())
    if meta.get("prior_stamp") == stamp and meta.get("prior_count") and meta.get("prior_fingerprint"):
        return int(meta["prior_count"])  # same sources, code and embedder: skip re-reading 6,000 passages
    passages = prior_passages(root)
    digest = hashlib.sha256(f"{kb.embedder.name}:terms-v{TERMS_VERSION}".encode())
    for p in passages:
        digest.update(f"{p.domain}\x00{p.entity}\x00{p.source}\x00{p.text}\x01".encode())
    fingerprint = digest.hexdigest()
    with kb._lock:
        row = kb.con.execute("SELECT value FROM kb_meta WHERE key = 'prior_fingerprint'").fetchone()
    if row and row[0] == fingerprint:
        log.info("prior knowledge is current (%d passages)", len(passages))
        with kb._lock:
            kb.con.execute("INSERT OR REPLACE INTO kb_meta VALUES ('prior_stamp', ?), ('prior_count', ?)",
                           [stamp, str(len(passages))])
        return len(passages)
    cached = CachedEmbedder(kb.embedder, cache_path if cache_path is not None else EMBEDDING_CACHE)
    kb.add_passages(passages, doc_id="prior", name="SRD 5e + GeoNames", embedder=cached)
    log.info("prior knowledge: %d passages, %d embedded by the model", len(passages), cached.misses)
    with kb._lock:
        kb.con.execute("INSERT OR REPLACE INTO kb_meta VALUES ('prior_fingerprint', ?)", [fingerprint])
        kb.con.execute("INSERT OR REPLACE INTO kb_meta VALUES ('embedder', ?)", [kb.embedder.name])
        kb.con.execute("INSERT OR REPLACE INTO kb_meta VALUES ('prior_stamp', ?), ('prior_count', ?)",
                       [stamp, str(len(passages))])
        # fold the bulk load into the file now, not into some later user's small write
        kb.con.execute("CHECKPOINT")
    return len(passages)


def _source_stamp(root: Path | None, embedder_name: str, terms_version: object) -> str:
    """A cheap stand-in for the passage fingerprint: the source files' names, sizes and mtimes plus the
    code that turns them into passages. Equal stamps mean equal passages, so ``build_prior`` (run by every
    NPC generation) need not parse and hash the whole prior (~0.7 s idle, seconds on a loaded machine)."""
    root = Path(root) if root is not None else PRIOR_DIR
    digest = hashlib.sha256(f"{embedder_name}:terms-v{terms_version}".encode())
    code = [Path(__file__), Path(__file__).with_name("chunking.py"), Path(__file__).with_name("text.py")]
    for path in sorted((root / "srd").glob("*.json.gz")) + sorted((root / "geonames").glob("*.json")):
        st = path.stat()
        digest.update(f"{path.relative_to(root)}\x00{st.st_size}\x00{st.st_mtime_ns}\x01".encode())
    for path in code:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def embedding_text(p: Passage) -> str:
    """What gets embedded for a passage: its text, prefixed by its subject when the text omits it."""
    return f"{p.entity}: {p.text}" if p.entity and p.entity not in p.text else p.text


def refresh_embedding_cache(embedder, root: Path | None = None, path: Path | None = None) -> int:
    """Re-embed every prior passage and rewrite the shipped cache; run after changing ``prior.py``.

    Returns the number of vectors written. Takes about a minute on 2 cores.
    """
    from gaiverse.npc.embedding import write_cache

    texts = [embedding_text(p) for p in prior_passages(root)]
    write_cache(path or EMBEDDING_CACHE, texts, embedder.embed(texts), embedder.name)
    return len(texts)
