"""Preference analysis: interests, needs and preferences of one user, folded from their interaction history.

A ``PreferenceProfile`` is updated one interaction at a time (``PreferenceAnalyzer.update``), so the
profile built from a full history equals the one kept current incrementally, and a new input changes
it at once. It holds tag affinities with exponential time decay, preferred difficulty, task length
and social setting (moving averages), play style, modality habits and time-of-day and session habits,
and renders a short description in words. What the user says (typed, or transcribed/OCR'd text in
the derived features) is read with a small keyword lexicon with negation ("no more combat" counts
against combat). The learned implicit-feedback model lives in ``implicit_feedback.py``.
Implements PER-c1.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

from gaiverse.personalization.embedding import tokenize
from gaiverse.personalization.interaction_store import Interaction
from gaiverse.personalization.task_repository import Task

log = logging.getLogger(__name__)

TAG_LEXICON: dict[str, tuple[str, ...]] = {
    "exploration": ("explore", "exploring", "exploration", "discover", "adventure", "journey", "travel", "wander",
                    "map", "ruins", "unknown"),
    "combat": ("fight", "fighting", "combat", "battle", "kill", "slay", "sword", "war", "monster", "attack", "boss"),
    "puzzle": ("puzzle", "riddle", "logic", "solve", "cipher", "brain", "brainteaser"),
    "mystery": ("mystery", "mysterie", "detective", "clue", "secret", "investigate", "whodunit"),
    "social": ("friend", "talk", "chat", "people", "meet", "party", "together", "tavern", "inn", "community"),
    "diplomacy": ("negotiate", "diplomacy", "peace", "bargain", "persuade", "truce"),
    "trade": ("trade", "trading", "buy", "sell", "merchant", "market", "haggle", "shop"),
    "stealth": ("sneak", "sneaking", "stealth", "thief", "hide", "spy", "heist"),
    "nature": ("nature", "forest", "animal", "tree", "garden", "flower", "wood", "wildlife"),
    "treasure": ("treasure", "loot", "gem", "chest", "gold"),
    "magic": ("magic", "spell", "wizard", "sorcery", "arcane", "enchant"),
    "study": ("study", "learn", "read", "book", "library", "knowledge", "history", "science"),
    "horror": ("scary", "horror", "spooky", "creepy", "haunted", "dark"),
    "undead": ("undead", "zombie", "skeleton", "ghost", "vampire"),
    "dragon": ("dragon", "wyrm"),
    "crafting": ("craft", "crafting", "build", "building", "forge", "smith", "make"),
    "relaxed": ("relax", "relaxing", "chill", "calm", "cozy", "cosy", "peaceful", "casual"),
    "water": ("sea", "lake", "ocean", "swim", "swimming", "boat", "fishing", "fish", "sail"),
    "hunting": ("hunt", "hunting", "track", "tracking"),
    "music": ("music", "song", "sing", "singing", "bard", "lute"),
    "racing": ("race", "racing", "speed", "sprint"),
    "rescue": ("rescue", "save", "saving"),
    "survival": ("survival", "survive", "snow", "cold"),
    "epic": ("epic", "legendary", "heroic"),
}
CLAUSE_BREAK = re.compile(r"[.,;:!?]|\b(?:but|however|instead|though)\b", re.IGNORECASE)
NEGATORS = frozenset(("not", "no", "don't", "dont", "never", "hate", "avoid", "dislike", "boring", "bored", "tired",
                      "without", "less", "enough", "stop", "sick", "can't", "cannot", "nothing"))
INTENSIFIERS = frozenset(("love", "really", "favourite", "favorite", "adore", "more", "lot"))
EASY_WORDS = frozenset(("easy", "simple", "casual", "gentle", "beginner", "relaxed", "relaxing"))
HARD_WORDS = frozenset(("hard", "challenge", "challenging", "difficult", "tough", "deadly", "brutal", "harder"))
GROUP_WORDS = frozenset(("friend", "together", "party", "group", "team", "guild", "coop", "co-op"))
SOLO_WORDS = frozenset(("alone", "solo", "myself", "single"))
SHORT_WORDS = frozenset(("quick", "short", "brief", "minute", "fast"))
LONG_WORDS = frozenset(("long", "lengthy", "hour", "marathon", "saga"))
STYLE_TAGS: dict[str, frozenset[str]] = {
    "explorer": frozenset(("exploration", "mystery", "treasure", "nature", "water", "survival")),
    "fighter": frozenset(("combat", "hunting", "dragon", "undead", "epic", "challenge")),
    "socialiser": frozenset(("social", "diplomacy", "trade", "music", "delivery", "escort", "rescue")),
    "thinker": frozenset(("puzzle", "study", "magic", "mystery")),
    "crafter": frozenset(("crafting", "gathering", "relaxed")),
}
EVENT_WEIGHT = {"message": 1.0, "click": 1.0, "accept": 1.0, "complete": 2.0, "abandon": -1.5, "view": 0.1,
                "impression": 0.0, "rate": 1.0}
_KEYWORD_TAG = {tokenize(w)[0] if tokenize(w) else w: tag for tag, words in TAG_LEXICON.items() for w in words}


@dataclass
class PreferenceConfig:
    """How quickly preferences move and fade."""

    half_life_days: float = 14.0
    """Tag affinities halve after this many days without new evidence."""
    rate: float = 0.3
    """Step of the moving averages (difficulty, length, social) towards each new observation."""
    media_text_weight: float = 0.7
    """Weight of text found in media (transcripts, OCR) relative to typed text."""
    session_gap_minutes: float = 30.0
    """A pause longer than this starts a new session."""


@dataclass
class TextSignals:
    """What one text says about the user's wishes."""

    tags: dict[str, float] = field(default_factory=dict)
    difficulty: float | None = None
    social: float | None = None
    length_minutes: float | None = None


def text_signals(text: str, vocabulary: Iterable[str] = ()) -> TextSignals:
    """Tag wishes (negative when negated), difficulty, social and length hints in a text. Implements PER-c1."""
    vocab = set(vocabulary)
    out = TextSignals()
    for clause in CLAUSE_BREAK.split(text.replace("’", "'")):
        _clause_signals(tokenize(clause), vocab, out)
    return out


def _clause_signals(tokens: list[str], vocab: set[str], out: TextSignals) -> None:
    """Negation reaches back three words within one clause only ("no combat, more exploration")."""
    for i, tok in enumerate(tokens):
        window = tokens[max(0, i - 3):i]
        sign = -1.0 if any(w in NEGATORS for w in window) else 1.0
        boost = 1.5 if any(w in INTENSIFIERS for w in window) else 1.0
        tag = _KEYWORD_TAG.get(tok) or (tok if tok in vocab else None)
        if tag is not None:
            out.tags[tag] = out.tags.get(tag, 0.0) + sign * boost
        if tok in EASY_WORDS:
            out.difficulty = 1.0 if sign > 0 else 4.0
        elif tok in HARD_WORDS:
            out.difficulty = 4.5 if sign > 0 else 1.5
        if tok in GROUP_WORDS:
            out.social = 1.0 if sign > 0 else 0.0
        elif tok in SOLO_WORDS:
            out.social = 0.0 if sign > 0 else 1.0
        if tok in SHORT_WORDS:
            out.length_minutes = 15.0
        elif tok in LONG_WORDS:
            out.length_minutes = 75.0


@dataclass
class PreferenceProfile:
    """Interests, needs and preferences of one user. Implements PER-c1."""

    user_id: str
    tag_affinity: dict[str, float] = field(default_factory=dict)
    """Tag -> decayed evidence; negative means the user avoids it."""
    item_affinity: dict[str, float] = field(default_factory=dict)
    """Item -> decayed evidence for items that are not tasks of the repository (e.g. logged products)."""
    difficulty: float = 2.0
    """Preferred task difficulty, 1..5."""
    length_minutes: float = 30.0
    """Preferred task length."""
    social: float = 0.5
    """0 = solo, 1 = with others."""
    modality_counts: dict[str, int] = field(default_factory=dict)
    hour_counts: list[float] = field(default_factory=lambda: [0.0] * 24)
    n_sessions: int = 0
    session_minutes_total: float = 0.0
    session_start: datetime | None = None
    last_ts: datetime | None = None
    n_inputs: int = 0
    completed: dict[str, datetime] = field(default_factory=dict)
    abandoned: dict[str, datetime] = field(default_factory=dict)
    accepted: dict[str, datetime] = field(default_factory=dict)
    current_text: str = ""
    """Text of the latest message-like input (the current input of PER-e1)."""

    def interests(self, n: int = 5) -> list[tuple[str, float]]:
        """The strongest positive tag affinities, best first."""
        pos = sorted(((t, v) for t, v in self.tag_affinity.items() if v > 0.05), key=lambda x: (-x[1], x[0]))
        return pos[:n]

    def aversions(self, n: int = 3) -> list[tuple[str, float]]:
        """The strongest negative tag affinities, most avoided first."""
        neg = sorted(((t, v) for t, v in self.tag_affinity.items() if v < -0.05), key=lambda x: (x[1], x[0]))
        return neg[:n]

    def play_style(self) -> dict[str, float]:
        """Share of positive affinity per play style (explorer, fighter, socialiser, thinker, crafter)."""
        raw = {s: sum(max(self.tag_affinity.get(t, 0.0), 0.0) for t in tags) for s, tags in STYLE_TAGS.items()}
        total = sum(raw.values())
        return {s: (v / total if total > 0 else 0.0) for s, v in raw.items()}

    def describe(self) -> str:
        """A short personal description in words, generated from the profile. Implements PER-c1."""
        if self.n_inputs == 0:
            return "new player; no preferences known yet"
        parts = []
        loves = [t for t, _ in self.interests(3)]
        if loves:
            parts.append("loves " + _join(loves))
        avoids = [t for t, _ in self.aversions(2)]
        if avoids:
            parts.append("avoids " + _join(avoids))
        style = max(self.play_style().items(), key=lambda x: x[1])
        if style[1] > 0.3:
            parts.append(f"plays as {'an' if style[0][0] in 'aeiou' else 'a'} {style[0]}")
        level = ["very easy", "easy", "medium", "hard", "very hard"][min(4, max(0, round(self.difficulty) - 1))]
        setting = "solo" if self.social < 0.35 else "with others" if self.social > 0.65 else "solo or in groups"
        parts.append(f"prefers {level} tasks {setting}")
        habit = self._habits()
        if habit:
            parts.append(habit)
        return "; ".join(parts)

    def _habits(self) -> str:
        words = []
        if self.n_sessions:
            mean = self.session_minutes_total / self.n_sessions
            words.append("short" if mean < 20 else "long" if mean > 60 else "medium-length")
        total = sum(self.hour_counts)
        if total >= 3:
            periods = {"morning": range(5, 12), "afternoon": range(12, 17), "evening": range(17, 22),
                       "night": [22, 23, 0, 1, 2, 3, 4]}
            share = {p: sum(self.hour_counts[h] for h in hours) / total for p, hours in periods.items()}
            best = max(share.items(), key=lambda x: x[1])
            if best[1] >= 0.5:
                words.append(best[0])
        text = f"plays in {' '.join(words)} sessions" if words else ""
        modalities = sorted(self.modality_counts.items(), key=lambda x: -x[1])
        if modalities:
            names = {"text": "text", "audio": "voice", "image": "images", "video": "video"}
            used = [names[m] for m, c in modalities if c >= 0.2 * modalities[0][1]][:2]
            text += (", " if text else "") + "mostly by " + _join(used)
        return text


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


class PreferenceAnalyzer:
    """Folds interactions into profiles. ``task_lookup`` resolves task ids to tasks (tags, difficulty)."""

    def __init__(self, config: PreferenceConfig | None = None,
                 task_lookup: Callable[[str], Task | None] | None = None, vocabulary: Iterable[str] = ()) -> None:
        self.config = config or PreferenceConfig()
        self.task_lookup = task_lookup or (lambda _id: None)
        self.vocabulary = set(vocabulary)

    def build(self, user_id: str, history: Iterable[Interaction]) -> PreferenceProfile:
        """The profile of a user from their whole history (oldest first). Implements PER-c1."""
        profile = PreferenceProfile(user_id)
        for interaction in history:
            self.update(profile, interaction)
        return profile

    def update(self, profile: PreferenceProfile, it: Interaction) -> PreferenceProfile:
        """Fold one new interaction into ``profile`` (in place) and return it. Implements PER-c1."""
        cfg = self.config
        if it.user_id != profile.user_id:
            raise ValueError(f"interaction of user {it.user_id!r} given to the profile of {profile.user_id!r}")
        self._decay_and_sessions(profile, it.ts)
        profile.n_inputs += 1
        profile.modality_counts[it.modality] = profile.modality_counts.get(it.modality, 0) + 1
        profile.hour_counts[it.ts.hour] += 1.0
        weight = EVENT_WEIGHT.get(it.event, 0.0)
        texts = [(it.text, 1.0)] if it.text else []
        for key in ("transcript", "ocr_text", "caption"):
            if it.features.get(key):
                texts.append((str(it.features[key]), cfg.media_text_weight))
        for text, text_weight in texts:
            signals = text_signals(text, self.vocabulary)
            for tag, value in signals.tags.items():
                if value < 0 and profile.tag_affinity.get(tag, 0.0) > 0:
                    profile.tag_affinity[tag] = 0.0  # an explicit "no more X" overrides past evidence for X
                self._add(profile.tag_affinity, tag, text_weight * value)
            if signals.difficulty is not None:
                profile.difficulty += cfg.rate * 2 * (signals.difficulty - profile.difficulty)
            if signals.social is not None:
                profile.social += cfg.rate * 2 * (signals.social - profile.social)
            if signals.length_minutes is not None:
                profile.length_minutes += cfg.rate * 2 * (signals.length_minutes - profile.length_minutes)
        for tag, value in _colour_hints(it.features).items():
            self._add(profile.tag_affinity, tag, value)
        group = _group_hint(it.features)
        if group is not None:  # a weak hint: half the step of a stated wish
            profile.social += cfg.rate * (group - profile.social)
        if texts and it.event == "message":
            profile.current_text = texts[0][0]
        if it.item_id and it.event != "message":
            self._task_event(profile, it, weight)
        return profile

    def _task_event(self, profile: PreferenceProfile, it: Interaction, weight: float) -> None:
        cfg = self.config
        task = self.task_lookup(it.item_id)
        if task is None:
            if it.reward:
                self._add(profile.item_affinity, it.item_id, weight * float(it.reward))
            return
        for tag in task.tags:
            self._add(profile.tag_affinity, tag, weight * task.tag_relevance.get(tag, 0.7))
        if it.event == "complete":
            profile.completed[task.task_id] = it.ts
            profile.difficulty += cfg.rate * (task.difficulty + 0.3 - profile.difficulty)
            profile.length_minutes += cfg.rate * (task.length_minutes - profile.length_minutes)
            if task.social != "either":
                profile.social += cfg.rate * ((1.0 if task.social == "group" else 0.0) - profile.social)
        elif it.event == "abandon":
            profile.abandoned[task.task_id] = it.ts
            # giving up says "too hard or too long": the preferences may only go down
            easier = min(profile.difficulty, task.difficulty - 1.0)
            profile.difficulty += cfg.rate * (easier - profile.difficulty)
            shorter = min(profile.length_minutes, 0.6 * task.length_minutes)
            profile.length_minutes += cfg.rate * (shorter - profile.length_minutes)
        elif it.event == "accept":
            profile.accepted[task.task_id] = it.ts
        profile.difficulty = min(5.0, max(1.0, profile.difficulty))

    def _decay_and_sessions(self, profile: PreferenceProfile, ts: datetime) -> None:
        cfg = self.config
        last = profile.last_ts
        if last is not None and ts > last:
            days = (ts - last).total_seconds() / 86400.0
            factor = 0.5 ** (days / cfg.half_life_days)
            profile.tag_affinity = {t: v * factor for t, v in profile.tag_affinity.items()}
            profile.item_affinity = {t: v * factor for t, v in profile.item_affinity.items()}
        if last is None or (ts - last).total_seconds() > cfg.session_gap_minutes * 60:
            profile.n_sessions += 1
            profile.session_start = ts
        elif profile.session_start is not None:
            profile.session_minutes_total += max(0.0, (ts - last).total_seconds() / 60.0)
        profile.last_ts = ts if last is None else max(last, ts)

    @staticmethod
    def _add(table: dict[str, float], key: str, value: float) -> None:
        table[key] = table.get(key, 0.0) + value
        if math.isclose(table[key], 0.0, abs_tol=1e-9):
            del table[key]


def _colour_hints(features: dict) -> dict[str, float]:
    """Weak scene hints from image features: dark scenes -> horror, green -> nature, blue -> water."""
    hints: dict[str, float] = {}
    brightness = features.get("brightness")
    if isinstance(brightness, (int, float)) and brightness < 0.25:
        hints["horror"] = 0.3
    hue = features.get("dominant_hue")
    if hue in ("green",):
        hints["nature"] = 0.3
    elif hue in ("blue", "cyan"):
        hints["water"] = 0.3
    return hints


def _group_hint(features: dict) -> float | None:
    """Social setting suggested by the faces in a shared photo or video: several faces -> with others
    (1.0), one face -> no hint, none -> None. Faces come from ``gaiverse.vision.faces`` (``n_faces``)."""
    n = features.get("n_faces")
    if not isinstance(n, (int, float)) or n < 2:
        return None
    return 1.0
