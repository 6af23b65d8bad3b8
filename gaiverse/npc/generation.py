"""NPC generation: a character-repository template + the user's settings -> a complete NPC.

Implements NPC-b1 (NPCs with natural, realistic appearance and behaviour) and NPC-b2 (the user's
predefined settings steer generation). Step by step, as the clause 8.3 service flow reads:

1. ``NpcSettings``: what the user asked for (role, traits, background, knowledge domains, voice,
   appearance hints, species, template), validated with one clear error per bad field;
2. ``retrieve_grounding``: knowledge-base passages for the role, the domains, the species and
   the background (their ids are cited in the backstory);
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
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gaiverse.character import BodyParams, build_character
from gaiverse.npc.appearance import sample_appearance
from gaiverse.npc.behaviour import daily_schedule, idle_behaviours, reactions
from gaiverse.npc.character_repository import (CATEGORY_DOMAINS, CATEGORY_STYLE, CharacterTemplate, match_template,
                                               role_category, srd_species)
from gaiverse.npc.persona import NpcPersona

KB_DOMAINS = ("monsters", "spells", "items", "conditions", "species", "backgrounds", "geography", "general")
DOMAIN_WORDS = {
    "items": r"weapon|sword|axe|armou?r|shield|smith|forg|metal|gear|tool|item|potion|trade|goods|wares|magic item",
    "spells": r"spell|magic|arcane|wizard|ritual|enchant|sorcer",
    "monsters": r"monster|beast|creature|dragon|undead|hunt|demon|giant",
    "conditions": r"condition|poison|disease|heal|medicine|injur",
    "geography": r"geograph|city|cities|countr|travel|road|map|world|land|capital",
    "backgrounds": r"background|history|lineage",
    "species": r"species|race|folk|elves|dwarves|people",
}
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

    @field_validator("traits", "domains", "appearance")
    @classmethod
    def _short_words(cls, values: list[str]) -> list[str]:
        for v in values:
            if not isinstance(v, str) or not v.strip() or len(v) > 60:
                raise ValueError(f"each entry must be 1-60 characters, got {v!r}")
        return [v.strip() for v in values]

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
    blob = f"{user_id}\x00{settings.model_dump_json()}"
    return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def kb_domains_for(words: Sequence[str], fallback: Sequence[str]) -> list[str]:
    """Knowledge-base domains behind free-text domains ("weapons" -> items); the template's if none match."""
    out = []
    for w in words:
        if w.lower() in KB_DOMAINS:
            out.append(w.lower())
            continue
        for domain, pattern in DOMAIN_WORDS.items():
            if re.search(pattern, w, re.I):
                out.append(domain)
    out = list(dict.fromkeys(out)) or list(fallback)
    return out + (["general"] if "general" not in out else [])


def retrieve_grounding(kb: Retriever, scope: Any, role: str, domains: Sequence[str], kb_domains: Sequence[str],
                       species_name: str, background: str, k: int = 2) -> list[dict[str, Any]]:
    """Passages the backstory stands on: role + each domain, the species, the SRD background named."""
    queries: list[tuple[str, str, list[str] | None]] = []
    for d in domains or kb_domains[:2]:
        queries.append(("expertise", f"{d} {role}", [x for x in kb_domains if x != "general"] or None))
    queries.append(("species", f"{species_name} traits", ["species"]))
    srd_bg = next((b for b in ("acolyte", "criminal", "sage", "soldier") if b in (background + " " + role).lower()), None)
    if srd_bg:
        queries.append(("background", srd_bg.capitalize(), ["backgrounds"]))
    seen, out = set(), []
    for purpose, query, doms in queries:
        for hit in kb.search(query, scope, domains=doms, k=k):
            if hit.id in seen:
                continue
            seen.add(hit.id)
            out.append({"id": int(hit.id), "source": hit.source, "entity": hit.entity, "domain": hit.domain,
                        "purpose": purpose, "query": query, "text": hit.text})
    return out


def _first_sentence(text: str, limit: int = 220) -> str:
    sentence = re.split(r"(?<=[.!?])\s+", text.strip())[0]
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + "..."


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
    """Backstory sentences and motives; each sentence that states a fact cites its passage as [kb:<id>]."""
    role_np = role if re.match(r"^(a|an|the)\b", role, re.I) else f"{_article(role)} {role}"
    sentences = [f"{name} is {_article(species)} {species.lower()}, {age} years old, and works as {role_np}.",
                 f"People who know {name} call {_obj(pronoun)} {traits[0]}"
                 + (f" and {traits[1]}" if len(traits) > 1 else "") + "."]
    if domains:
        sentences.append(f"As {role_np}, {pronoun} {'deal' if pronoun == 'they' else 'deals'} in "
                         f"{', '.join(domains)} every day.")
    species_cited = False
    for c in citations:
        fact = _fact(c)
        if c["purpose"] == "species" and not species_cited:
            species_cited = True
            sentences.append(f"What the lore says of {pronoun_pos(pronoun)} people, the {c['entity'] or species}: "
                             f"{fact} [kb:{c['id']}]")
        elif c["purpose"] == "background":
            sentences.append(f"{name} came up as {_article(c['entity'])} {c['entity'].lower()}: {fact} [kb:{c['id']}]")
    if background:
        sentences.append(f"{name}'s past: {background.strip().rstrip('.')}.")
    expertise = [c for c in citations if c["purpose"] == "expertise"]
    if expertise:
        sentences.append(f"Years of work taught {name} the trade: " + " ".join(
            f"{_fact(c)} [kb:{c['id']}]" for c in expertise[:3]))
    things = [c["entity"] for c in expertise if c["entity"]] or ["the trade"]
    pick = things[int(rng.integers(len(things)))]
    goal = {"craft": f"make {_article(pick)} {pick.lower()} worthy of legend",
            "study": f"understand {pick} better than any scholar alive",
            "watch": f"keep the town safe, whatever {pick} may bring"}.get(category, f"learn all there is to know of {pick}")
    motives = [goal,
               ["earn enough coin to retire in peace", "win the respect of a rival", "protect the people nearby",
                "uncover what really happened in the old days", "pay back an old debt"][int(rng.integers(5))],
               f"share what {pronoun} knows about {', '.join(dict.fromkeys(things[:2]))} with those who ask"]
    sentences.append(f"Above all, {name} wants to {motives[0]}, and to {motives[1]}.")
    return " ".join(sentences), motives


def _fact(citation: dict[str, Any]) -> str:
    """The passage's first sentence without its 'Subject:' prefix (the passage id is cited beside it)."""
    text = citation["text"]
    prefix = f"{citation['entity']}:"
    if citation["entity"] and text.startswith(prefix):
        text = text[len(prefix):]
    return _first_sentence(text)


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
        voice_prefs=settings.voice.model_dump(exclude_none=True) if settings.voice else None, user_id=user_id)


def retrieve_for(plan: NpcPlan, kb: Retriever, scope: Any = None) -> list[dict[str, Any]]:
    """The passages a plan's backstory cites (``retrieve_grounding`` with the plan's role, domains, species)."""
    species = srd_species()[plan.species]["name"].split(",")[0]
    return retrieve_grounding(kb, scope, plan.role, plan.domains, plan.kb_domains, species,
                              plan.background or plan.template["name"])


def write_profile(plan: NpcPlan, citations: list[dict[str, Any]]) -> NpcProfile:
    """Backstory, motives, dialogue style, voice, behaviour and body for a plan. Implements NPC-b1."""
    rng = np.random.default_rng([plan.seed, 1])
    species = srd_species()[plan.species]
    species_name = species["name"].split(",")[0]
    pronoun = {"female": "she", "male": "he", "nonbinary": "they"}[plan.sex]
    backstory, motives = _backstory(plan.name, pronoun, plan.age, species_name, plan.role, plan.category,
                                    plan.background, plan.traits, plan.domains, citations, rng)
    body, unmatched = sample_appearance(rng, plan.species, species, plan.sex, plan.age, plan.category,
                                        plan.template.get("abilities") or {}, plan.appearance_hints)
    schedule = daily_schedule(rng, plan.category, plan.traits)
    behaviour = {"schedule": schedule, "idle": idle_behaviours(rng, plan.traits, plan.style),
                 "reactions": reactions(plan.traits, plan.style),
                 "routines": [f"{b['activity']} at the {b['place']} from {b['start']} to {b['end']}"
                              for b in schedule if b["activity"] != "sleep"]}
    prefs = VoicePrefs.model_validate(plan.voice_prefs) if plan.voice_prefs else None
    return NpcProfile(
        npc_id=plan.npc_id, name=plan.name, role=plan.role, species=plan.species, sex=plan.sex, age=plan.age,
        traits=plan.traits, domains=plan.domains, kb_domains=plan.kb_domains, template=plan.template["id"],
        category=plan.category, background=plan.background, backstory=backstory, motives=motives,
        citations=citations, dialogue_style=_dialogue_style(plan, rng),
        voice=_voice(rng, prefs, plan.sex, plan.age, plan.species, plan.traits, body.height_m), behaviour=behaviour,
        appearance=body.to_dict(), unmatched_hints=unmatched, seed=plan.seed, owner=plan.user_id)


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
                     scope: Any = None, npc_id: str | None = None, user_id: str | None = None) -> NpcProfile:
    """plan -> retrieve -> write in one call (the flow runs the three as tasks). ``kb`` None cites nothing."""
    plan = plan_npc(settings, template, npc_id, user_id)
    return write_profile(plan, retrieve_for(plan, kb, scope) if kb is not None else [])


def appearance_glb(profile: NpcProfile) -> bytes:
    """The NPC's rigged .glb: body + face with ARKit/viseme targets + gesture clips, profile summary in extras."""
    character = build_character(profile.body_params())
    extras = {"npc": {"npc_id": profile.npc_id, "name": profile.name, "role": profile.role,
                      "species": profile.species, "voice": profile.voice, "style": profile.dialogue_style["style"]}}
    return character.glb(profile.npc_id, extras)
