"""NPC personas: who the NPC is, how it speaks, which knowledge domains it draws on.

A persona keeps the NPC consistent across turns (NPC-d2): its name and role in greetings, its
style in every phrase that is not a quoted fact, and its domains in what it agrees to answer
(an innkeeper declines spell theory in character). The NPC generation flow (NPC-b1, NPC-b2)
will produce personas; until then the shipped presets in ``data/knowledge/npc/personas.json``
serve, and any unknown NPC id gets the all-knowing default sage under that id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from gaiverse.npc.prior import PRIOR_DIR

log = logging.getLogger(__name__)

Style = Literal["scholarly", "friendly", "gruff", "formal"]
PERSONAS_FILE = PRIOR_DIR / "personas.json"


@dataclass(frozen=True)
class NpcPersona:
    """The character an NPC plays in dialogue."""

    id: str
    """NPC id (also the knowledge-base owner of its own passages)."""
    name: str
    """What the NPC calls itself."""
    role: str = "a wandering sage"
    """One phrase: who it is in the world."""
    traits: tuple[str, ...] = ()
    """Personality traits, for the language-model prompt."""
    style: Style = "scholarly"
    """Phrasing of openers, refusals and small talk."""
    domains: tuple[str, ...] | None = None
    """Knowledge domains it answers from; None = all."""
    greeting: str = ""
    """First words when greeted."""

    def introduction(self) -> str:
        """How the NPC answers "who are you?": its own name and role, never a knowledge-base lookup."""
        role = self.role.strip().rstrip(".")
        if role and not re.match(r"^(a|an|the|your|my)\b", role, re.I):
            role = ("an " if role[:1].lower() in "aeiou" else "a ") + role
        text = f"I'm {self.name}, {role}." if role else f"I'm {self.name}."
        if self.traits:
            text += f" Folk would call me {_joined(self.traits[:2])}."
        return text

    def describe(self) -> str:
        """A one-paragraph persona description for a system prompt."""
        traits = f" You are {', '.join(self.traits)}." if self.traits else ""
        return f"You are {self.name}, {self.role}.{traits}"


STYLE_LINES: dict[Style, dict[str, list[str]]] = {
    "scholarly": {
        "open": ["", "Let me recall. ", "Indeed. ", "A fine question. "],
        "refuse": ["I am afraid that lies beyond my knowledge, and I will not guess.",
                   "My books are silent on that, so I cannot say.",
                   "That is not something I know; I would rather not invent an answer."],
        "out_of_domain": ["That is outside my studies of {domains}; I cannot speak to it."],
        "greet_again": ["Welcome back. What else would you learn?"],
        "smalltalk": ["What would you like to know? I can tell you of {domains}."],
        "thank": ["You are most welcome."],
        "leave": ["Farewell, traveller. May your road be kind."],
        "follow": ["Lead on; I will walk with you."],
        "trade": ["I have no wares, only knowledge, and that I give freely."],
        "give": ["For me? Thank you, I will keep the {item} safe."],
        "point": ["Ah, the {target}."],
        "rude": ["There is no need for harsh words."],
    },
    "friendly": {
        "open": ["", "Oh, I know this one! ", "Let me think... ", "Ha, good question. "],
        "refuse": ["Ah, you've got me there. I honestly don't know, and I won't make something up.",
                   "Hmm, no traveller's ever told me that one. I can't say.",
                   "That I don't know, friend, sorry."],
        "out_of_domain": ["Oh, that's not my line of work, friend. Ask me about {domains}."],
        "greet_again": ["Back again? Good to see you!"],
        "smalltalk": ["Ha! Anything else I can tell you? I know a fair bit about {domains}."],
        "thank": ["Any time, friend!"],
        "leave": ["Safe travels! Come back soon."],
        "follow": ["Right behind you!"],
        "trade": ["Let's see what I've got behind the counter."],
        "give": ["For me? That's kind of you, thank you for the {item}!"],
        "point": ["Oh, the {target}?"],
        "rude": ["Easy now, no need for that."],
    },
    "gruff": {
        "open": ["", "Listen. ", "Right. ", "Hmph. "],
        "refuse": ["Don't know. Won't guess either; guessing gets people killed.",
                   "Never heard of it. Ask someone else.",
                   "Can't tell you that."],
        "out_of_domain": ["Not my trade. I know {domains}."],
        "greet_again": ["You again. What now?"],
        "smalltalk": ["Get to the point. Ask about {domains}."],
        "thank": ["Hmph. You're welcome."],
        "leave": ["Watch your back out there."],
        "follow": ["Fine. Lead the way."],
        "trade": ["Got a few things. Coin first."],
        "give": ["A {item}? Hmph. Thanks."],
        "point": ["The {target}. What of it?"],
        "rude": ["Watch your tongue."],
    },
    "formal": {
        "open": ["", "Certainly. ", "Allow me. ", "Of course. "],
        "refuse": ["I regret that I do not know, and I shall not speculate.",
                   "That question lies outside what I can answer with certainty.",
                   "I cannot answer that truthfully, so I will not answer at all."],
        "out_of_domain": ["That is beyond my field; my learning concerns {domains}."],
        "greet_again": ["Welcome back. How may I assist you further?"],
        "smalltalk": ["I am at your service for questions about {domains}."],
        "thank": ["You are most welcome."],
        "leave": ["Farewell. May your studies prosper."],
        "follow": ["Very well, I shall accompany you."],
        "trade": ["I may part with a few reagents, for a fair price."],
        "give": ["A {item}. How generous; thank you."],
        "point": ["The {target}, you mean."],
        "rude": ["I will not be spoken to in that manner."],
    },
}


def line(persona: NpcPersona, kind: str, turn: int = 0, **values: str) -> str:
    """A persona-styled line of ``kind``; ``turn`` rotates among variants so replies do not repeat."""
    options = STYLE_LINES[persona.style][kind]
    seed = int(hashlib.sha256(f"{persona.id}:{kind}:{turn}".encode()).hexdigest()[:8], 16)
    domains = ", ".join(persona.domains) if persona.domains else "monsters, spells, items and the lands of the world"
    text = options[seed % len(options)].format(domains=domains, **values)
    return DOUBLE_ARTICLE.sub(lambda m: m.group(2), text)  # "the {target}" with target "The Green Man"


DOUBLE_ARTICLE = re.compile(r"\b([Tt]he) (The|the)\b")


@dataclass
class PersonaRegistry:
    """Known personas by NPC id; unknown ids get the default persona under their own id."""

    personas: dict[str, NpcPersona] = field(default_factory=dict)
    default_id: str = "sage"

    @classmethod
    def load(cls, path: Path | None = None) -> "PersonaRegistry":
        path = Path(path) if path is not None else PERSONAS_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"`path` must be a readable personas JSON file, got {path}: {err}") from None
        personas = {}
        for pid, p in raw.items():
            domains = tuple(p["domains"]) if p.get("domains") else None
            personas[pid] = NpcPersona(pid, p["name"], p.get("role", ""), tuple(p.get("traits", ())),
                                       p.get("style", "scholarly"), domains, p.get("greeting", ""))
        return cls(personas)

    def get(self, npc_id: str | None) -> NpcPersona:
        if npc_id is None:
            return self.personas[self.default_id]
        if npc_id in self.personas:
            return self.personas[npc_id]
        return replace(self.personas[self.default_id], id=npc_id)


def _joined(words: tuple[str, ...]) -> str:
    """("grumpy",) -> "grumpy"; ("grumpy", "kind") -> "grumpy and kind"."""
    return " and ".join(words) if len(words) <= 2 else ", ".join(words[:-1]) + " and " + words[-1]
