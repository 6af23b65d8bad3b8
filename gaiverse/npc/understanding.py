"""Understanding the user: intents and entities from text and from HCI signals (mouse, gamepad, keyboard).

Implements NPC-c1 (interactive behaviour from text, voice and mouse/controller signals) and the
understanding half of NPC-c2 (context and intent). Text and voice (after ASR) go through the
same rules; clicks, hovers, gamepad buttons and keys map to the same intents through
``SignalMap``, so the dialogue layer never needs to know how the user expressed themselves.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Literal

from gaiverse.npc.kb_search import match_entities
from gaiverse.npc.text import terms

log = logging.getLogger(__name__)

IntentName = Literal["greet", "ask", "give_item", "point_at", "follow", "trade", "leave", "recall", "thank",
                     "about_self", "smalltalk", "none"]
Source = Literal["text", "voice", "click", "hover", "gamepad", "key"]


@dataclass(frozen=True)
class Intent:
    """What the user wants from the NPC this turn."""

    name: IntentName
    """greet, ask, give_item, point_at, follow, trade, leave (the spec's list) plus recall, thank, about_self
    (questions about the NPC itself), smalltalk."""
    text: str
    """The utterance, or a description of the signal ("clicked the well")."""
    source: Source = "text"
    """How the user expressed it."""
    entities: tuple[str, ...] = ()
    """Knowledge-base subjects named (after resolving 'it' to the last subject)."""
    target: str | None = None
    """The object or item the intent is about (given item, pointed-at object)."""
    confidence: float = 1.0
    """Rule confidence, 0..1."""
    query: str = ""
    """The question to retrieve with: the utterance plus the resolved subject for follow-ups."""
    behaviour: str | None = None
    """What the NPC's body should do regardless of words: look_at_user, look_at_target, walk_with_user, ..."""
    rude: bool = False
    """Insults lower the relationship and sour the NPC's expression."""


@dataclass(frozen=True)
class HciSignal:
    """A non-verbal input from the web terminal: mouse, Gamepad API or keyboard. NPC-c1."""

    kind: Literal["click", "hover", "gamepad", "key", "drop"]
    """``drop``: an inventory item dragged onto the NPC."""
    target_kind: Literal["npc", "object", "item", "none"] = "none"
    """What the pointer was on."""
    target: str | None = None
    """Name or id of the object or item under the pointer (or dropped)."""
    button: str | int | None = None
    """Gamepad button (standard-mapping index 0..16 or a name like 'a') or a key ('e', 'Escape')."""


GAMEPAD_NAMES = {0: "a", 1: "b", 2: "x", 3: "y", 4: "lb", 5: "rb", 6: "lt", 7: "rt", 8: "back", 9: "start",
                 12: "up", 13: "down", 14: "left", 15: "right"}
"""W3C Gamepad API 'standard' mapping: button index -> name (Xbox labels)."""


@dataclass
class SignalMap:
    """Which intent each HCI signal means; presets can replace any row."""

    gamepad: dict[str, IntentName] = field(default_factory=lambda: {
        "a": "greet", "b": "leave", "x": "trade", "y": "follow", "rb": "give_item", "lb": "point_at",
        "start": "ask"})
    """Gamepad button name -> intent."""
    keys: dict[str, IntentName] = field(default_factory=lambda: {
        "e": "greet", "escape": "leave", "t": "trade", "f": "follow", "g": "give_item", "q": "point_at",
        "enter": "ask"})
    """Key (lower case, ``KeyboardEvent.key``) -> intent."""


GREETING = re.compile(r"^\s*(hi|hello|hey|hiya|greetings|good (morning|afternoon|evening|day)|well met|howdy|hail)"
                      r"\b[\s,!.]*", re.I)
PATTERNS: list[tuple[IntentName, re.Pattern]] = [
    ("recall", re.compile(r"\bwhat (did|have) i (just )?(ask|say|tell|told|give|gave|show)|\bwhat was my (last |first )?"
                          r"(question|request)|\bremind me what i|\bdid i (already )?(ask|tell|give)|"
                          r"\bwhat did we (talk|speak) about", re.I)),
    ("leave", re.compile(r"^\s*(bye|goodbye|good bye|farewell|see you|see ya|later|i must go|i have to go|"
                         r"i'?m (leaving|off)|gotta go)\b", re.I)),
    ("about_self", re.compile(r"\b(who are you|who might you be|what(?:'?s| is) your name|tell me about yourself|"
                              r"introduce yourself|what are you called)\b|"
                              r"\bwhat do you do(?: here| for a living)?\s*\?*\s*$", re.I)),
    ("thank", re.compile(r"^\s*(thanks|thank you|cheers|much obliged|many thanks)\b", re.I)),
    ("give_item", re.compile(r"\b(i('| wi)ll give you|i give you|here,? take|take (this|my)|here is (a|an|my|the|some)|"
                             r"here'?s (a|an|my|the|some)|i brought you|accept (this|my)|a gift for you|"
                             r"i want to give you)\b", re.I)),
    ("trade", re.compile(r"\b(trade|barter|buy|sell|purchase|your wares|what do you sell|how much for|"
                         r"do you have .* for sale)\b", re.I)),
    ("follow", re.compile(r"\b(follow me|come with me|come along|walk with me|lead (me|the way)|show me the way|"
                          r"guide me|take me to)\b", re.I)),
    ("point_at", re.compile(r"\b(look at (this|that)|what is (this|that)\b(?! \w+ of)|what'?s (this|that)\??$|"
                            r"see (this|that)\b)", re.I)),
]
QUESTION = re.compile(r"\?\s*$|^\s*(what|who|whom|whose|where|when|which|why|how|is|are|can|could|do|does|did|"
                      r"will|would|should|tell me|explain|describe|name|list)\b", re.I)
RUDE = re.compile(r"\b(stupid|idiot|fool|useless|shut up|hate you|moron|dumb)\b", re.I)
PRONOUN = re.compile(r"\b(it|its|it's|they|them|their|that one|this one|he|she|his|her|there)\b", re.I)


class Understanding:
    """Rules that turn an utterance or a signal into an ``Intent``, using the dialogue's context.

    ``lexicon`` is the knowledge base's subject lexicon (``KnowledgeBase.entities()``): names of
    monsters, spells, places... matched in the utterance.
    """

    def __init__(self, lexicon: dict[str, tuple[str, str]] | None = None, signals: SignalMap | None = None):
        self.lexicon = lexicon or {}
        self.signals = signals or SignalMap()

    def entities(self, text: str) -> list[str]:
        """Subjects named in full, longest first."""
        found = match_entities(terms(text), self.lexicon)
        names = [name for name, score in found.items() if score >= 1.0]
        return sorted(names, key=len, reverse=True)

    def from_text(self, text: str, last_entity: str | None = None, pointed_at: str | None = None,
                  source: Source = "text") -> Intent:
        """Intent of a typed or transcribed utterance. ``last_entity`` resolves 'it' in follow-up questions."""
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a string, got {type(text).__name__}")
        utterance = " ".join(text.split())
        if not utterance:
            return Intent("none", "", source, confidence=0.0)
        rude = bool(RUDE.search(utterance))
        greeting = GREETING.match(utterance)
        rest = utterance[greeting.end():] if greeting else utterance
        if greeting and not terms(rest) and not QUESTION.search(rest):
            return Intent("greet", utterance, source, behaviour="look_at_user", rude=rude)
        entities = tuple(self.entities(rest))
        for name, pattern in PATTERNS:
            if pattern.search(rest):
                target = None
                if name == "give_item":
                    target = entities[0] if entities else _object_after(rest)
                elif name == "point_at":
                    target = pointed_at
                elif name == "follow":
                    target = _object_after(rest, ("to",))
                behaviour = {"follow": "walk_with_user", "point_at": "look_at_target", "leave": "wave_goodbye",
                             "give_item": "reach_out", "trade": "open_trade"}.get(name)
                return Intent(name, utterance, source, entities, target, 0.9, rest, behaviour, rude)
        query = rest
        if not entities and last_entity and PRONOUN.search(rest):
            entities = (last_entity,)
            query = f"{rest} ({last_entity})"
        if QUESTION.search(rest) or terms(rest):
            confident = QUESTION.search(rest) is not None
            return Intent("ask", utterance, source, entities, None, 0.9 if confident else 0.6, query,
                          "look_at_user", rude)
        return Intent("smalltalk", utterance, source, entities, confidence=0.5, rude=rude)

    def from_signal(self, signal: HciSignal, greeted: bool = False) -> Intent:
        """Intent of a click, hover, drop, gamepad button or key. Implements NPC-c1 for mouse/controller."""
        if signal.kind == "hover":
            if signal.target_kind == "npc":
                return Intent("none", "hovered over the NPC", "hover", behaviour="look_at_user", confidence=0.5)
            return Intent("none", f"hovered over {signal.target}", "hover", target=signal.target,
                          behaviour="glance_at_target", confidence=0.5)
        if signal.kind == "click":
            if signal.target_kind == "npc":
                name: IntentName = "ask" if greeted else "greet"
                return Intent(name, "clicked the NPC", "click", behaviour="look_at_user")
            if signal.target_kind in ("object", "item") and signal.target:
                return Intent("point_at", f"clicked {signal.target}", "click", target=signal.target,
                              query=f"What is {signal.target}?", behaviour="look_at_target")
            raise ValueError(f"a click needs `target_kind` npc, object or item with a `target`, got {signal}")
        if signal.kind == "drop":
            if not signal.target:
                raise ValueError("a drop signal needs the dropped item as `target`")
            return Intent("give_item", f"handed over {signal.target}", "click", target=signal.target,
                          behaviour="reach_out")
        if signal.kind == "gamepad":
            button = GAMEPAD_NAMES.get(signal.button, signal.button) if isinstance(signal.button, int) else signal.button
            name = self.signals.gamepad.get(str(button).lower()) if button is not None else None
            source: Source = "gamepad"
        elif signal.kind == "key":
            name = self.signals.keys.get(str(signal.button).lower()) if signal.button is not None else None
            source = "key"
        else:
            raise ValueError(f"`signal.kind` must be click, hover, drop, gamepad or key, got {signal.kind!r}")
        if name is None:
            return Intent("none", f"pressed {signal.button}", source, confidence=0.0)
        if name == "greet" and greeted:
            name = "ask"
        behaviour = {"follow": "walk_with_user", "leave": "wave_goodbye", "trade": "open_trade",
                     "point_at": "look_at_target", "give_item": "reach_out"}.get(name, "look_at_user")
        return Intent(name, f"pressed {button if signal.kind == 'gamepad' else signal.button}", source,
                      target=signal.target, behaviour=behaviour)


def _object_after(text: str, words: tuple[str, ...] = ("you", "this", "my", "a", "an", "the", "some")) -> str | None:
    """The noun phrase after a give/take verb: 'here is a healing potion' -> 'healing potion'."""
    match = re.search(r"\b(?:" + "|".join(words) + r")\s+([a-z][\w' -]{1,40}?)(?:[.!?,]|$| for | to )", text, re.I)
    if not match:
        return None
    phrase = re.sub(r"^(a|an|the|my|some|this)\s+", "", match.group(1).strip(), flags=re.I)
    return phrase or None
