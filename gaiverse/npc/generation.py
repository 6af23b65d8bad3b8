"""NPC generation: a character-repository template + the user's settings -> a complete NPC.

Implements NPC-b1 (NPCs with natural, realistic appearance and behaviour) and NPC-b2 (the user's
predefined settings steer generation). Step by step, as the clause 8.3 service flow reads:

1. ``NpcSettings``: what the user asked for (role, traits, background, knowledge domains, voice,
   appearance hints, species, template), validated with one clear error per bad field;
2. ``retrieve_grounding``: knowledge-base passages relevant to the role, background and traits
   (the NPC's and user's own facts; the prior within the chosen domains, above a relevance
   threshold), the species and an SRD background (their ids are cited in the backstory);
3. ``generate_profile``: name, profile, backstory and motives grounded in those passages, a
   dialogue style, a voice (``gaiverse.speech.tts.VoiceSettings`` fields, stored as data), a daily
   schedule, idle behaviours and reactions (``behaviour.py``), and body parameters
   (``appearance.py``), all from one seeded generator: the same seed and settings give the same
   NPC; different seeds give different, still plausible NPCs;
4. ``appearance_glb``: the rigged, animatable .glb (``gaiverse.character``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import Any, Literal, Protocol, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gaiverse.character import BodyParams, build_character
from gaiverse.npc.appearance import sample_appearance
from gaiverse.npc.behaviour import daily_schedule, idle_behaviours, place_schedule, reactions
from gaiverse.npc.character_repository import (CATEGORY_DOMAINS, CATEGORY_STYLE, CharacterTemplate, match_template,
                                               role_category, srd_species)
from gaiverse.npc.kb_ingest import DOMAINS
from gaiverse.npc.persona import NpcPersona

KB_DOMAINS = tuple(DOMAINS)
"""The one list of knowledge domains: the knowledge base files passages under these
(``kb_ingest.DOMAINS``, served by GET /knowledge/domains) and generation chooses among the same."""
DOMAIN_WORDS = {
    "items": r"weapon|sword|axe|armou?r|shield|smith|forg|metal|gear|tool|item|potion|magic item",
    "spells": r"spell|magic|arcane|wizard|ritual|enchant|sorcer",
    "monsters": r"monster|beast|creature|dragon|undead|hunt|demon|giant",
    "medicine": r"medic|heal|herb|remed|disease|injur|anatomy",
    "conditions": r"condition|poison",
    "commerce": r"trade|goods|wares|price|guild|coin|merchant|craft",
    "geography": r"geograph|city|cities|countr|travel|road|map|land|capital|region",
    "history": r"histor|past|era|chronicle|ancient|war",
    "lore": r"legend|myth|stor(y|ies)|tale|folklore",
    "law": r"\blaw|legal|rule|custom",
    "science": r"scien|engineer|physic|chemi|astronom|nature",
    "backgrounds": r"background|lineage",
    "species": r"species|race|folk|elves|dwarves|people",
}
"""Free-text aliases accepted in ``NpcSettings.domains`` ("weapons" -> items); each word maps to one domain."""
RELEVANCE_MIN_COSINE = 0.35
"""A prior passage grounds a backstory only this close to the NPC's role and background: measured on
the shipped prior, on-topic passages score 0.36-0.58 (blacksmith -> smith's tools, scout -> scout,
mage -> Mage Hand) and unrelated ones stay below 0.31 (lighthouse keeper -> GeoNames cities 0.15-0.19)."""
STYLE_TRAITS = {
    "gruff": r"grump|gruff|surly|blunt|stern|taciturn|rude|cranky|harsh|wary",
    "friendly": r"friend|warm|cheer|kind|jovial|talkative|gentle|merry|generous",
    "formal": r"formal|proud|noble|haughty|dignified|polite|courteous|pious|exacting",
    "scholarly": r"curious|learned|wise|bookish|precise|studious|thoughtful|clever",
}
TRAIT_POOL = ["patient", "curious", "cautious", "honest", "stubborn", "witty", "loyal", "shrewd", "generous",
              "superstitious", "ambitious", "tired", "brave", "practical", "dreamy"]
NAME_PARTS = {
    "default": (["Al", "Bri", "Cor", "Da", "El", "Fen", "Gar", "Hal", "Is", "Jor", "Ka", "Lor", "Mar", "Ne", "Or",
                 "Pel", "Ro", "Sa", "Tor", "Wen"], ["an", "ric", "wyn", "dor", "a", "el", "ith", "on", "ra", "ten"]),
    "dwarf": (["Bar", "Dur", "Gim", "Thor", "Bal", "Dag", "Brom", "Kaz", "Ror", "Har"],
              ["in", "ek", "grim", "dal", "rik", "unn", "ar", "om"]),
    "elf": (["Ael", "Ela", "Fae", "Lia", "Syl", "Tha", "Ili", "Naer", "Gal", "Ary"],
            ["ndra", "riel", "wen", "lor", "thas", "nis", "dil", "ael"]),
    "halfling": (["Pip", "Mer", "Ros", "Tob", "Cal", "Lil", "Wil", "Bel"], ["py", "ry", "ie", "o", "wick", "bin"]),
    "orc": (["Gro", "Ush", "Kra", "Mog", "Dur", "Tha", "Zug", "Ruk"], ["k", "nak", "gash", "dra", "ug", "ka"]),
}
Sex = Literal["female", "male", "nonbinary"]


class VoicePrefs(BaseModel):
    """Voice wishes; missing fields are generated. Ranges match ``gaiverse.speech.tts.VoiceSettings``."""

    model_config = ConfigDict(extra="forbid")
    voice: str | None = Field(None, min_length=1, max_length=200, description="Piper voice name or .onnx path")
    pitch_semitones: float | None = Field(None, ge=-24, le=24)
    rate: float | None = Field(None, ge=0.25, le=4.0)
    timbre_shift: float | None = Field(None, ge=-12, le=12)


class NpcSettings(BaseModel):
    """The user's settings for one NPC (NPC-b2). Every field is optional; given ones win over the template."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=60, pattern=r"^[\w][\w' .-]*$")
    role: str | None = Field(None, min_length=2, max_length=120)
    traits: list[str] = Field(default_factory=list, max_length=8)
    background: str | None = Field(None, max_length=2000)
    domains: list[str] = Field(default_factory=list, max_length=8)
    voice: VoicePrefs | None = None
    appearance: list[str] = Field(default_factory=list, max_length=12, description="hints: tall, heavy, red hair, ...")
    species: str | None = Field(None, description="SRD species slug: human, dwarf, elf-high, halfling, ...")
    sex: Sex | None = None
    age: int | None = Field(None, ge=16, le=400)
    template: str | None = Field(None, min_length=1, max_length=80, description="character repository template id")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    world_id: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{2,62}$",
                                 description="one of your worlds: the NPC's day is spent at its real places")

    @field_validator("traits", "domains", "appearance")
    @classmethod
    def _short_words(cls, values: list[str]) -> list[str]:
        for v in values:
            if not isinstance(v, str) or not v.strip() or len(v) > 60:
                raise ValueError(f"each entry must be 1-60 characters, got {v!r}")
        return [v.strip() for v in values]

    @field_validator("domains")
    @classmethod
    def _known_domains(cls, values: list[str]) -> list[str]:
        for v in values:
            if domain_of(v) is None:
                raise ValueError(f"`domains` entries must be knowledge domains ({', '.join(KB_DOMAINS)}) or a word "
                                 f"naming one (weapons, travel, trade, ...), got {v!r}")
        return values

    @field_validator("species")
    @classmethod
    def _known_species(cls, value: str | None) -> str | None:
        if value is not None and value not in srd_species():
            raise ValueError(f"`species` must be one of {sorted(srd_species())}, got {value!r}")
        return value


class Retriever(Protocol):
    """What generation needs from the knowledge base (``KnowledgeBase.search``)."""

    def search(self, query: str, scope: Any = None, domains: Sequence[str] | None = None, k: int = 5) -> list: ...


@dataclass
class NpcProfile:
    """Everything generated for one NPC; JSON-ready through ``to_dict``."""

    npc_id: str
    name: str
    role: str
    species: str
    sex: str
    age: int
    traits: list[str]
    domains: list[str]
    kb_domains: list[str]
    template: str
    category: str
    background: str
    backstory: str
    motives: list[str]
    citations: list[dict[str, Any]]
    dialogue_style: dict[str, Any]
    voice: dict[str, Any]
    behaviour: dict[str, Any]
    appearance: dict[str, Any]
    unmatched_hints: list[str] = field(default_factory=list)
    seed: int = 0
    owner: str | None = None
    world: dict[str, Any] | None = None
    """Where the NPC lives: ``{world_id, version, home, work, places}`` when placed in a world."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NpcProfile":
        return cls(**data)

    def persona(self) -> NpcPersona:
        """The dialogue persona (``gaiverse.npc.persona``) the live dialogue uses for this NPC."""
        return NpcPersona(self.npc_id, self.name, self.role, tuple(self.traits), self.dialogue_style["style"],
                          tuple(self.kb_domains) or None, self.dialogue_style["greeting"])

    def body_params(self) -> BodyParams:
        return BodyParams.from_dict(self.appearance)


def settings_seed(settings: NpcSettings, user_id: str | None) -> int:
    """The seed of generation: the user's, or one derived from their settings (stable across runs)."""
    if settings.seed is not None:
        return settings.seed
    fields = settings.model_dump_json(exclude={"world_id"} if settings.world_id is None else None)  # seeds as before
    blob = f"{user_id}\x00{fields}"
    return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def domain_of(word: str) -> str | None:
    """The knowledge domain a chosen domain names: itself when it is one, else its alias's, else None."""
    w = word.strip().lower()
    if w in KB_DOMAINS:
        return w
    return next((d for d, pattern in DOMAIN_WORDS.items() if re.search(pattern, w, re.I)), None)


def kb_domains_for(words: Sequence[str], fallback: Sequence[str]) -> list[str]:
    """The knowledge domains of an NPC: exactly the ones the user chose ("weapons" -> items), the template's
    when none were chosen; plus ``general``, where the NPC's and the user's own facts are filed by default."""
    out = list(dict.fromkeys(d for d in map(domain_of, words) if d is not None)) or list(fallback)
    return out + (["general"] if "general" not in out else [])


def retrieve_grounding(kb: Retriever, scope: Any, role: str, domains: Sequence[str], kb_domains: Sequence[str],
                       species_name: str, background: str, k: int = 2, traits: Sequence[str] = (),
                       npc_id: str | None = None) -> list[dict[str, Any]]:
    """Passages the backstory stands on, each one it will actually cite.

    Retrieval is driven by who the NPC is: its role, background and traits (plus the user's alias
    words such as "weapons") against the NPC's and the user's own facts (``scope`` without the prior;
    facts attached to ``npc_id`` are always the NPC's own) and against the prior filtered by the
    chosen domains. A prior passage counts only above ``RELEVANCE_MIN_COSINE`` and when it reads as a
    short fact (no stat blocks), so a lighthouse keeper is not grounded in a random GeoNames city.
    The species and a named SRD background (word match) are cited for the NPC's own kind and past.
    """
    chosen = {domain_of(d) for d in domains}
    aliases = [d for d in domains if d.strip().lower() not in KB_DOMAINS]  # "weapons" says more than "items"
    about = " ".join([role, *aliases, background]).strip()
    seen: set[int] = set()
    out: list[dict[str, Any]] = []

    def keep(hit: Any, purpose: str, query: str) -> None:
        seen.add(int(hit.id))
        out.append({"id": int(hit.id), "source": hit.source, "entity": hit.entity, "domain": hit.domain,
                    "purpose": purpose, "query": query, "text": hit.text,
                    "cosine": round(float(getattr(hit, "cosine", 0.0)), 3)})

    if scope is not None and is_dataclass(scope) and (scope.user_id or npc_id or scope.npc_id):
        own_scope = replace(scope, npc_id=npc_id or scope.npc_id, include_prior=False)
        query = " ".join([about, *traits]).strip()
        for hit in kb.search(query, own_scope, k=3):
            attached = npc_id is not None and hit.npc_id == npc_id
            relevant = attached or hit.cosine >= RELEVANCE_MIN_COSINE
            if hit.id not in seen and relevant and _clause(hit.text, hit.entity):
                keep(hit, "own", query)
    filter_ = [d for d in kb_domains if d != "general" or "general" in chosen]
    if filter_:
        for hit in kb.search(about, scope, domains=filter_, k=k + 2):
            if (len([c for c in out if c["purpose"] == "expertise"]) < k and hit.id not in seen
                    and hit.user_id is None and hit.npc_id is None
                    and hit.cosine >= RELEVANCE_MIN_COSINE and _clause(hit.text, hit.entity)):
                keep(hit, "expertise", about)
    query = f"{species_name} traits size"
    sized = [h for h in kb.search(query, scope, domains=["species"], k=4) if h.id not in seen and _species_size(h.text)]
    for hit in sorted(sized, key=lambda h: not h.entity.lower().startswith(species_name.lower()))[:1]:
        keep(hit, "species", query)
    srd_bg = next((b for b in ("acolyte", "criminal", "sage", "soldier")
                   if re.search(rf"\b{b}\b", f"{background} {role}", re.I)), None)
    if srd_bg:
        for hit in kb.search(srd_bg.capitalize(), scope, domains=["backgrounds"], k=1):
            if hit.id not in seen and hit.entity.lower() == srd_bg:
                keep(hit, "background", srd_bg.capitalize())
    return out


STAT_LABEL = re.compile(r"(?:^|\s)[A-Z][A-Za-z']*(?: [A-Z(][A-Za-z')]*)*: ")
"""'Ability Scores: ', 'Creature Type: ': the labels of SRD stat blocks, which make poor backstory clauses."""


def _clause(text: str, entity: str | None = None, limit: int = 160) -> str | None:
    """A passage as one short grounded clause ("the lighthouse lamp was lit in 1887"), or None when it is
    a stat block, an editor's note or too long to read as a clause."""
    if entity and text.startswith(f"{entity}:"):
        text = text[len(entity) + 1:]
    sentence = re.split(r"(?<=[.!?])\s+", text.strip())[0].strip().rstrip(".!?;: ")
    if len(sentence) < 12 or len(sentence) > limit or STAT_LABEL.search(sentence) or "Foundry" in sentence:
        return None
    return sentence[0].lower() + sentence[1:] if re.match(r"^(The|A|An|It|This|These|Its)\b", sentence) else sentence


def _species_size(text: str) -> str | None:
    """'small (about 3-4 feet tall)' from an SRD species passage's 'Size:' line."""
    m = re.search(r"Size:\s*(Tiny|Small|Medium|Large)(?:\s*(\([^)]{3,60}\)))?", text)
    return None if m is None else m.group(1).lower() + (f" {m.group(2)}" if m.group(2) else "")


def _name(rng: np.random.Generator, species: str) -> str:
    key = next((k for k in NAME_PARTS if species.startswith(k)), "default")
    first, second = NAME_PARTS[key]
    return first[int(rng.integers(len(first)))] + second[int(rng.integers(len(second)))]


def _style(traits: list[str], template: CharacterTemplate) -> str:
    scores = {style: sum(bool(re.search(p, t, re.I)) for t in traits) for style, p in STYLE_TRAITS.items()}
    best = max(scores, key=lambda s: scores[s])
    return best if scores[best] > 0 else template.style


def _voice(rng: np.random.Generator, prefs: VoicePrefs | None, sex: str, age: int, species: str,
           traits: list[str], height_m: float) -> dict[str, Any]:
    """Piper ``VoiceSettings`` fields: female voices higher and brighter, small folk brighter, big folk deeper."""
    pitch = {"female": 6.5, "male": -1.0, "nonbinary": 2.5}[sex] + float(rng.normal(0, 1.0))
    timbre = {"female": 2.0, "male": -0.5, "nonbinary": 0.8}[sex] + float(rng.normal(0, 0.4))
    timbre += float(np.clip((1.72 - height_m) * 4.0, -2.5, 3.5))
    rate = 1.0 + float(rng.normal(0, 0.04))
    if age >= 60:
        rate -= 0.08
        pitch -= 0.5
    if any(re.search(r"grump|gruff|stern|slow|calm", t, re.I) for t in traits):
        rate -= 0.06
        pitch -= 0.8
    if any(re.search(r"cheer|nervous|excit|talkative|quick", t, re.I) for t in traits):
        rate += 0.08
    out = {"voice": "en_US-joe-medium", "pitch_semitones": round(float(np.clip(pitch, -8, 10)), 2),
           "rate": round(float(np.clip(rate, 0.75, 1.3)), 3), "timbre_shift": round(float(np.clip(timbre, -4, 5)), 2)}
    if prefs is not None:
        out.update(prefs.model_dump(exclude_none=True))
    return out


def _backstory(name: str, pronoun: str, age: int, species: str, role: str, category: str, background: str,
               traits: list[str], domains: list[str], citations: list[dict[str, Any]], rng: np.random.Generator
               ) -> tuple[str, list[str]]:
    """Backstory sentences and motives from the role, background and traits; each sentence that states a
    fact of a passage says it as a short clause and cites it as [kb:<id>]. Motives name the role and the
    chosen domains, never a passage's subject (a random city is no one's life goal)."""
    role_np = role if re.match(r"^(a|an|the)\b", role, re.I) else f"{_article(role)} {role}"
    sentences = [f"{name} is {_article(species)} {species.lower()}, {age} years old, and works as {role_np}.",
                 f"People who know {name} call {_obj(pronoun)} {traits[0]}"
                 + (f" and {traits[1]}" if len(traits) > 1 else "") + "."]
    if domains:
        sentences.append(f"As {role_np}, {pronoun} {'deal' if pronoun == 'they' else 'deals'} in "
                         f"{', '.join(domains)} every day.")
    by_purpose: dict[str, list[dict[str, Any]]] = {}
    for c in citations:
        by_purpose.setdefault(c["purpose"], []).append(c)
    for c in by_purpose.get("species", [])[:1]:
        size = _species_size(c["text"])
        if size:
            sentences.append(f"{name} is {size}, like all {species.lower()} folk [kb:{c['id']}].")
    for c in by_purpose.get("background", [])[:1]:
        sentences.append(f"{name} came up as {_article(c['entity'])} {c['entity'].lower()} [kb:{c['id']}].")
    if background:
        sentences.append(f"{name}'s past: {background.strip().rstrip('.')}.")
    own = [(c, _clause(c["text"], c["entity"])) for c in by_purpose.get("own", [])[:3]]
    if any(clause for _, clause in own):
        sentences.append(" ".join(f"{name} knows that {clause} [kb:{c['id']}]." for c, clause in own if clause))
    expertise = [(c, _clause(c["text"], c["entity"])) for c in by_purpose.get("expertise", [])[:3]]
    if any(clause for _, clause in expertise):
        sentences.append(f"Years as {role_np} taught {name} the trade: "
                         + "; ".join(f"{clause} [kb:{c['id']}]" for c, clause in expertise if clause) + ".")
    topics = ", ".join(domains) if domains else f"the {role.lower()}'s trade"
    goal = {"craft": f"make work worthy of legend as {role_np}",
            "study": f"understand {topics} better than any scholar alive",
            "watch": f"keep the people safe as {role_np}, whatever comes"}.get(
                category, f"keep faith with {pronoun_pos(pronoun)} work as {role_np}")
    motives = [goal,
               ["earn enough coin to retire in peace", "win the respect of a rival", "protect the people nearby",
                "uncover what really happened in the old days", "pay back an old debt"][int(rng.integers(5))],
               f"share what {pronoun} knows of {topics} with those who ask"]
    sentences.append(f"Above all, {name} wants to {motives[0]}, and to {motives[1]}.")
    return " ".join(sentences), motives


def pronoun_pos(pronoun: str) -> str:
    return {"she": "her", "he": "his", "they": "their"}[pronoun]


def _obj(pronoun: str) -> str:
    return {"she": "her", "he": "him", "they": "them"}[pronoun]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


@dataclass
class NpcPlan:
    """Who the NPC is, decided before retrieval: the resolved settings of one generation (JSON-ready)."""

    npc_id: str
    seed: int
    name: str
    role: str
    category: str
    species: str
    sex: str
    age: int
    traits: list[str]
    domains: list[str]
    kb_domains: list[str]
    background: str
    style: str
    template: dict[str, Any]
    appearance_hints: list[str]
    voice_prefs: dict[str, Any] | None
    user_id: str | None = None
    world_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_npc(settings: NpcSettings, template: CharacterTemplate | None = None, npc_id: str | None = None,
             user_id: str | None = None) -> NpcPlan:
    """Resolve template + settings into an ``NpcPlan`` (species, sex, age, name, traits drawn when not given).

    ``template`` defaults to the repository entry that best fits the role; a user template's stored
    settings sit under this request's (explicit fields win). Implements NPC-b2 steering.
    """
    if template is None:
        template = match_template(settings.role or "", settings.template)
    if template.settings:
        merged = {**template.settings, **settings.model_dump(exclude_none=True, exclude_defaults=True)}
        settings = NpcSettings.model_validate(merged)
    seed = settings_seed(settings, user_id)
    rng = np.random.default_rng(seed)
    role = settings.role or template.role
    category = role_category(role) or template.category
    species = settings.species or ("dwarf" if category == "craft" and rng.random() < 0.3 else
                                   str(rng.choice(["human"] * 6 + ["dwarf", "elf-high", "elf-wood", "halfling",
                                                                   "gnome-rock", "orc", "tiefling-infernal",
                                                                   "dragonborn", "goliath"])))
    sex = settings.sex or str(rng.choice(["female", "male"]))
    age = settings.age or int(np.clip(rng.normal(38, 13), 18, 75))
    traits = list(dict.fromkeys(settings.traits + template.traits))
    while len(traits) < 3:
        extra = TRAIT_POOL[int(rng.integers(len(TRAIT_POOL)))]
        if extra not in traits:
            traits.append(extra)
    name = settings.name or _name(rng, species)
    style = _style(settings.traits, template) if settings.traits else CATEGORY_STYLE.get(category, template.style)
    return NpcPlan(
        npc_id=npc_id or f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-') or 'npc'}-{seed % 100000:05d}",
        seed=seed, name=name, role=role, category=category, species=species, sex=sex, age=age, traits=traits,
        domains=settings.domains, kb_domains=kb_domains_for(settings.domains, CATEGORY_DOMAINS.get(category, template.domains)),
        background=settings.background or "", style=style, template=template.to_dict(),
        appearance_hints=settings.appearance,
        voice_prefs=settings.voice.model_dump(exclude_none=True) if settings.voice else None, user_id=user_id,
        world_id=settings.world_id)


def retrieve_for(plan: NpcPlan, kb: Retriever, scope: Any = None) -> list[dict[str, Any]]:
    """The passages a plan's backstory cites (``retrieve_grounding`` with the plan's role, domains, species)."""
    species = srd_species()[plan.species]["name"].split(",")[0]
    return retrieve_grounding(kb, scope, plan.role, plan.domains, plan.kb_domains, species,
                              plan.background or plan.template["name"], traits=plan.traits, npc_id=plan.npc_id)


def write_profile(plan: NpcPlan, citations: list[dict[str, Any]], places: Sequence[Any] | None = None) -> NpcProfile:
    """Backstory, motives, dialogue style, voice, behaviour and body for a plan. Implements NPC-b1.

    ``places`` (``world_knowledge.WorldPlaces`` of ``plan.world_id``) put the schedule at real places.
    """
    rng = np.random.default_rng([plan.seed, 1])
    species = srd_species()[plan.species]
    species_name = species["name"].split(",")[0]
    pronoun = {"female": "she", "male": "he", "nonbinary": "they"}[plan.sex]
    backstory, motives = _backstory(plan.name, pronoun, plan.age, species_name, plan.role, plan.category,
                                    plan.background, plan.traits, plan.domains, citations, rng)
    body, unmatched = sample_appearance(rng, plan.species, species, plan.sex, plan.age, plan.category,
                                        plan.template.get("abilities") or {}, plan.appearance_hints)
    user_role = plan.role if plan.role != plan.template.get("role") else None  # the template's own routine fits it
    schedule = daily_schedule(rng, plan.category, plan.traits, user_role, role_category(plan.role) is not None)
    behaviour = {"schedule": schedule, "idle": idle_behaviours(rng, plan.traits, plan.style),
                 "reactions": reactions(plan.traits, plan.style),
                 "routines": [f"{b['activity']} at the {b['place']} from {b['start']} to {b['end']}"
                              for b in schedule if b["activity"] != "sleep"]}
    prefs = VoicePrefs.model_validate(plan.voice_prefs) if plan.voice_prefs else None
    profile = NpcProfile(
        npc_id=plan.npc_id, name=plan.name, role=plan.role, species=plan.species, sex=plan.sex, age=plan.age,
        traits=plan.traits, domains=plan.domains, kb_domains=plan.kb_domains, template=plan.template["id"],
        category=plan.category, background=plan.background, backstory=backstory, motives=motives,
        citations=citations, dialogue_style=_dialogue_style(plan, rng),
        voice=_voice(rng, prefs, plan.sex, plan.age, plan.species, plan.traits, body.height_m), behaviour=behaviour,
        appearance=body.to_dict(), unmatched_hints=unmatched, seed=plan.seed, owner=plan.user_id)
    return place_in_world(profile, places) if places is not None else profile


def place_in_world(profile: NpcProfile, places: Sequence[Any]) -> NpcProfile:
    """The profile with its schedule at real places of a world (home, work, market...), its routines
    naming them, and ``world`` knowledge in its dialogue domains. A profile without a world is unchanged
    elsewhere; this is what NPC-b1 behaviour "in the world" means once a world exists."""
    if not len(places):
        raise ValueError("`places` must not be empty: the world has no named places")
    schedule, chosen = place_schedule(profile.behaviour["schedule"], places, profile.seed)
    awake = [b for b in schedule if b["activity"] != "sleep"]
    home = chosen.get("home") or next((b["place"] for b in schedule if b["activity"] == "sleep"), None)
    hours: dict[str, float] = {}
    for b in awake:
        if b.get("place_kind") != "home":  # a priest lives and works at the temple: work is where the day goes
            hours[b["place"]] = hours.get(b["place"], 0.0) + b["hours"]
    work = max(hours, key=lambda p: hours[p], default=home)
    behaviour = {**profile.behaviour, "schedule": schedule,
                 "routines": [f"{b['activity']} at {b['place']} from {b['start']} to {b['end']}" for b in awake]}
    world = {"world_id": getattr(places, "world_id", None), "version": getattr(places, "version", None),
             "home": home, "work": work, "places": chosen}
    kb_domains = profile.kb_domains + (["world"] if "world" not in profile.kb_domains else [])
    return NpcProfile(**{**profile.to_dict(), "behaviour": behaviour, "world": world, "kb_domains": kb_domains})


def _dialogue_style(plan: NpcPlan, rng: np.random.Generator) -> dict[str, Any]:
    name, role, style = plan.name, plan.role, plan.style
    topics = ", ".join(plan.domains) if plan.domains else ", ".join(d for d in plan.kb_domains if d != "general")
    greeting = {"gruff": f"{name}. {role[0].upper() + role[1:]}. If it's about {topics}, ask. Otherwise, move along.",
                "friendly": f"Hello there! I'm {name}, {role}. Ask me anything about {topics}!",
                "formal": f"Good day. I am {name}, {role}. I am at your service in matters of {topics}.",
                "scholarly": f"Well met. I am {name}, {role}; {topics} are my study."}[style]
    return {
        "style": style, "greeting": greeting,
        "formality": {"gruff": 0.2, "friendly": 0.35, "formal": 0.9, "scholarly": 0.7}[style],
        "verbosity": round(float(np.clip(rng.normal({"gruff": 0.25, "friendly": 0.6, "formal": 0.55,
                                                      "scholarly": 0.75}[style], 0.08), 0, 1)), 2),
        "addresses_user_as": {"gruff": "you", "friendly": "friend", "formal": "honoured guest",
                              "scholarly": "traveller"}[style],
        "traits_in_prompt": plan.traits, "topics": plan.domains or plan.kb_domains,
    }


def generate_profile(settings: NpcSettings, template: CharacterTemplate | None, kb: Retriever | None,
                     scope: Any = None, npc_id: str | None = None, user_id: str | None = None,
                     places: Sequence[Any] | None = None) -> NpcProfile:
    """plan -> retrieve -> write in one call (the flow runs the three as tasks). ``kb`` None cites nothing;
    ``places`` are the named places of ``settings.world_id`` (``world_knowledge.world_places``)."""
    plan = plan_npc(settings, template, npc_id, user_id)
    return write_profile(plan, retrieve_for(plan, kb, scope) if kb is not None else [], places)


def appearance_glb(profile: NpcProfile) -> bytes:
    """The NPC's rigged .glb: body + face with ARKit/viseme targets + gesture clips, profile summary in extras."""
    character = build_character(profile.body_params())
    extras = {"npc": {"npc_id": profile.npc_id, "name": profile.name, "role": profile.role,
                      "species": profile.species, "voice": profile.voice, "style": profile.dialogue_style["style"]}}
    return character.glb(profile.npc_id, extras)
