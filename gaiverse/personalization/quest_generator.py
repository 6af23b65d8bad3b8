"""Rule-based quest generation: motivation -> strategy (action sequence) -> concrete steps -> text.

The grammar follows the structure found in analyses of RPG quests (Doran & Parberry, 2011): a quest
giver's motivation (knowledge, protection, wealth, ...) is served by one of a few strategies, each a
sequence of actions (goto, kill, get, give, talk, escort, study, ...). The generator picks the
motivation from the user's preferences, takes places and NPCs from tasks of the repository that
suit the user (the "from tasks" of the provenance) and from the world, monsters, items and spells
from the SRD knowledge at the user's difficulty, renders the steps with templates, validates the
result (every referenced place, NPC, item, monster and spell exists; no duplicate of a stored task)
and stores it back with provenance. Implements PER-d1 and PER-d2.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field

from gaiverse.personalization.knowledge import RARITY_DIFFICULTY, KnowledgeBase, cr_range
from gaiverse.personalization.preference_analysis import PreferenceProfile
from gaiverse.personalization.recommender import target_difficulty
from gaiverse.personalization.task_corpus import CREATURE_TYPES, XP_BY_CR
from gaiverse.personalization.task_repository import Provenance, Task, TaskFilter, TaskRepository

log = logging.getLogger(__name__)

# motivation -> (tags it serves, {strategy: action sequence})
GRAMMAR: dict[str, tuple[frozenset[str], dict[str, list[str]]]] = {
    "knowledge": (frozenset({"mystery", "study", "puzzle", "exploration"}),
                  {"investigate": ["goto", "explore", "report"], "deliver_for_study": ["get", "goto", "give"]}),
    "protection": (frozenset({"combat", "undead", "hunting", "dragon", "horror"}),
                   {"attack_threat": ["goto", "kill", "report"], "defend": ["talk", "defend", "report"]}),
    "reputation": (frozenset({"epic", "challenge", "treasure"}),
                   {"obtain_rare": ["goto", "get", "give"], "slay_legend": ["goto", "kill", "report"]}),
    "serenity": (frozenset({"social", "diplomacy", "rescue", "escort"}),
                 {"escort": ["talk", "escort", "report"], "mediate": ["talk", "goto", "talk_other", "report"]}),
    "wealth": (frozenset({"trade", "treasure", "gathering"}),
               {"recover_goods": ["goto", "get", "sell"], "courier": ["talk", "get", "goto", "give"]}),
    "ability": (frozenset({"magic", "study"}), {"practise_spell": ["talk", "study", "goto", "use"]}),
    "equipment": (frozenset({"crafting", "gathering"}), {"assemble": ["get", "goto", "give"]}),
    "comfort": (frozenset({"relaxed", "nature", "water", "music"}), {"errand": ["talk", "goto", "explore", "report"]}),
}
COMBAT_ACTIONS = frozenset({"kill", "defend"})
STEP_TEMPLATES = {
    "goto": "Travel to {place}.", "explore": "Explore {place} and note what you find.",
    "kill": "Defeat the {monster} (challenge rating {cr}).", "defend": "Hold {place} against the {monster}.",
    "get": "Obtain the {item}.", "give": "Bring the {item} to {npc}.", "sell": "Sell the {item} to {npc}.",
    "report": "Report back to {npc}.", "talk": "Talk to {npc}.", "talk_other": "Hear out {other_npc}.",
    "escort": "Escort {npc} safely to {place}.", "study": "Study the spell {spell} with {npc}.",
    "use": "Cast {spell} at {place} to prove you have mastered it.",
}
TITLES = {
    "investigate": "The Secret of {place}", "deliver_for_study": "A Curiosity for {npc}",
    "attack_threat": "Trouble at {place}", "defend": "The Siege of {place}", "obtain_rare": "The {item} of Legend",
    "slay_legend": "The Bane of {place}", "escort": "Safe Passage for {npc}", "mediate": "Words Between Friends",
    "recover_goods": "Fortune at {place}", "courier": "A Parcel for {npc}", "practise_spell": "The Lesson of {spell}",
    "assemble": "Tools for {npc}", "errand": "A Quiet Day at {place}",
}
INTROS = {
    "knowledge": "{npc} wants to understand what is happening at {place}.",
    "protection": "{npc} fears for the people near {place}.",
    "reputation": "{npc} promises that whoever succeeds at {place} will be remembered.",
    "serenity": "{npc} longs for peace and asks for your help.",
    "wealth": "{npc} sees a profit to be made at {place}.",
    "ability": "{npc} offers to teach a spell to a willing student.",
    "equipment": "{npc} needs the right gear for the work ahead.",
    "comfort": "{npc} asks for a small favour around {place}.",
}


@dataclass
class Step:
    """One concrete action with the entities it references (kind -> id)."""

    action: str
    refs: dict[str, str]
    text: str


@dataclass
class GeneratedQuest:
    motivation: str
    strategy: str
    steps: list[Step]
    task: Task
    problems: list[str] = field(default_factory=list)


@dataclass
class QuestGeneratorConfig:
    """How the generator explores the grammar."""

    seed: int = 0
    """Seed of the deterministic choices (a user's quests differ through the user id too)."""
    seed_tasks: int = 8
    """How many of the user's best-matching tasks provide places and NPCs."""
    attempts: int = 24
    """Candidate quests tried per requested quest before giving up."""
    duplicate_threshold: float = 0.92
    """Embedding cosine above which a candidate counts as a duplicate of a stored task."""


class QuestGenerator:
    """Generates, validates and stores personalised quests. Implements PER-d1 and PER-d2."""

    def __init__(self, repository: TaskRepository, knowledge: KnowledgeBase,
                 config: QuestGeneratorConfig | None = None) -> None:
        self.repository = repository
        self.kb = knowledge
        self.config = config or QuestGeneratorConfig()

    def motivations(self, profile: PreferenceProfile) -> list[str]:
        """Motivations ordered by how well their tags match the profile; combat ones last if avoided."""
        aff = profile.tag_affinity
        avoids_combat = aff.get("combat", 0.0) < 0

        def score(m: str) -> float:
            tags, strategies = GRAMMAR[m]
            value = sum(aff.get(t, 0.0) for t in tags)
            if avoids_combat and all(COMBAT_ACTIONS & set(seq) for seq in strategies.values()):
                value -= 100.0
            return value

        return sorted(GRAMMAR, key=lambda m: (-score(m), m))

    def _seed_tasks(self, profile: PreferenceProfile) -> list[Task]:
        interests = [t for t, _ in profile.interests(5)]
        avoid = [t for t, _ in profile.aversions(3)]
        hits = self.repository.search(" ".join(interests) or None, interests,
                                      TaskFilter(exclude_tags=avoid, for_user=profile.user_id),
                                      k=self.config.seed_tasks)
        return [h.task for h in hits]

    def _pick_monster(self, rng: random.Random, difficulty: int, profile: PreferenceProfile) -> str | None:
        low, high = cr_range(difficulty)
        liked = {t for t, _ in profile.interests(8)}
        avoided = {t for t, _ in profile.aversions(5)}
        pool = [m for m in self.kb.monsters.values() if low <= m.cr <= high and "good" not in m.alignment.lower()]
        pool = [m for m in pool if not (set(CREATURE_TYPES.get(m.creature_type, ([], []))[0]) & avoided)] or pool
        preferred = [m for m in pool if set(CREATURE_TYPES.get(m.creature_type, ([], []))[0]) & liked]
        choices = sorted(m.slug for m in (preferred or pool))
        return rng.choice(choices) if choices else None

    def _pick_item(self, rng: random.Random, difficulty: int) -> str | None:
        pool = sorted(i.slug for i in self.kb.items.values()
                      if i.kind == "magic_item" and 2 <= RARITY_DIFFICULTY.get(i.rarity, 1) <= max(2, difficulty))
        return rng.choice(pool) if pool else None

    def _pick_spell(self, rng: random.Random, difficulty: int) -> str | None:
        pool = sorted(s.slug for s in self.kb.spells.values() if 1 <= s.level <= 2 * difficulty - 1)
        return rng.choice(pool) if pool else None

    def _candidate(self, profile: PreferenceProfile, motivation: str, strategy: str, seeds: list[Task],
                   rng: random.Random) -> GeneratedQuest:
        kb = self.kb
        difficulty = target_difficulty(profile)
        places = [t.location for t in seeds if t.location and kb.exists("place", t.location)]
        place = rng.choice(places) if places else rng.choice(sorted(kb.places))
        local = sorted(n.id for n in kb.npcs_at(place))
        seed_npcs = [n for t in seeds for n in t.npcs if kb.exists("npc", n)]
        npc = rng.choice(local or seed_npcs or sorted(kb.npcs))
        others = sorted(set(seed_npcs + sorted(kb.npcs)) - {npc})
        refs = {"place": place, "npc": npc, "other_npc": rng.choice(others) if others else npc}
        actions = GRAMMAR[motivation][1][strategy]
        if {"kill", "defend"} & set(actions):
            refs["monster"] = self._pick_monster(rng, difficulty, profile) or ""
        if {"get", "give", "sell"} & set(actions):
            refs["item"] = self._pick_item(rng, difficulty) or ""
        if {"study", "use"} & set(actions):
            refs["spell"] = self._pick_spell(rng, difficulty) or ""
        names = {"place": kb.places[place].name, "npc": kb.npcs[npc].name,
                 "other_npc": kb.npcs[refs["other_npc"]].name}
        for kind in ("monster", "item", "spell"):
            if refs.get(kind) and kb.exists(kind, refs[kind]):
                names[kind] = kb.name(kind, refs[kind])
        if refs.get("monster") in kb.monsters:
            names["cr"] = f"{kb.monsters[refs['monster']].cr:g}"
        steps = []
        for action in actions:
            used = {k: refs[k] for k in ("place", "npc", "other_npc", "monster", "item", "spell")
                    if "{" + k + "}" in STEP_TEMPLATES[action]}
            steps.append(Step(action, used, STEP_TEMPLATES[action].format_map(_Missing(names))))
        title = TITLES[strategy].format_map(_Missing(names))
        intro = INTROS[motivation].format_map(_Missing(names))
        description = intro + " " + " ".join(f"({i + 1}) {s.text}" for i, s in enumerate(steps))
        liked = [t for t, _ in profile.interests(5)]
        tags = sorted((set(GRAMMAR[motivation][0]) & set(liked)) | set(kb.places[place].tags[:2])
                      | ({"combat"} if COMBAT_ACTIONS & set(actions) else set()) | {motivation_tag(motivation)})
        xp = XP_BY_CR.get(kb.monsters[refs["monster"]].cr, 100) if refs.get("monster") in kb.monsters else 100 * difficulty
        used_refs = {k: v for s in steps for k, v in s.refs.items()}
        key = "|".join([profile.user_id, motivation, strategy] + sorted(f"{k}={v}" for k, v in used_refs.items()))
        task = Task(
            task_id=f"gen-{hashlib.sha256(key.encode()).hexdigest()[:12]}", title=title, description=description,
            tags=tags, relevance=0.6, tag_relevance={t: 0.8 for t in tags if t in liked}, difficulty=difficulty,
            length_minutes=int(max(10, 5 * round(profile.length_minutes / 5))),
            social="group" if profile.social > 0.65 else "solo" if profile.social < 0.35 else "either",
            rewards={"xp": xp, "gold": max(5, xp // 4)}, location=place,
            npcs=sorted({v for k, v in used_refs.items() if k in ("npc", "other_npc")}),
            items=[used_refs["item"]] if used_refs.get("item") else [],
            monsters=[used_refs["monster"]] if used_refs.get("monster") else [],
            requirements={"spells": [used_refs["spell"]]} if used_refs.get("spell") else {},
            provenance=Provenance("generated", f"quest_generator {motivation}/{strategy}", profile.user_id,
                                  [t.task_id for t in seeds[:3]]))
        return GeneratedQuest(motivation, strategy, steps, task)

    def validate(self, quest: GeneratedQuest) -> list[str]:
        """Problems that make a quest unusable: unknown entities, avoided combat, or a duplicate. Implements PER-d1."""
        problems = []
        for step in quest.steps:
            for kind, entity in step.refs.items():
                kb_kind = "npc" if kind == "other_npc" else kind
                if not entity or not self.kb.exists(kb_kind, entity):
                    problems.append(f"step {step.action!r} references unknown {kb_kind} {entity!r}")
        if not quest.steps:
            problems.append("quest has no steps")
        duplicate = self.repository.find_duplicate(quest.task, self.config.duplicate_threshold)
        if duplicate is not None:
            problems.append(f"duplicates stored task {duplicate!r}")
        return problems

    def generate(self, profile: PreferenceProfile, n: int = 1, store: bool = True) -> list[GeneratedQuest]:
        """Up to ``n`` new, valid quests for the user, stored in the repository when ``store``.

        Implements PER-d1 (generation from preferences and the repository) and PER-d2 (stored back).
        """
        if n < 1:
            raise ValueError(f"`n` must be >= 1, got {n}")
        seeds = self._seed_tasks(profile)
        digest = hashlib.sha256(f"{self.config.seed}|{profile.user_id}|{len(self.repository)}".encode()).hexdigest()
        rng = random.Random(int(digest[:16], 16))
        order = [(m, s) for m in self.motivations(profile) for s in GRAMMAR[m][1]]
        if profile.tag_affinity.get("combat", 0.0) < 0:  # the user avoids combat: no kill or defend steps
            order = [(m, s) for m, s in order if not COMBAT_ACTIONS & set(GRAMMAR[m][1][s])]
        made: list[GeneratedQuest] = []
        for attempt in range(self.config.attempts * n):
            if len(made) == n:
                break
            motivation, strategy = order[(len(made) + attempt // 3) % min(len(order), 4 + attempt // 6)]
            quest = self._candidate(profile, motivation, strategy, seeds, rng)
            quest.problems = self.validate(quest)
            if any(q.task.task_id == quest.task.task_id for q in made):
                quest.problems.append("same as a quest made in this call")
            if quest.problems:
                log.debug("rejected %s: %s", quest.task.task_id, quest.problems)
                continue
            if store:
                self.repository.add(quest.task)
            made.append(quest)
        log.info("generated %d/%d quests for %s", len(made), n, profile.user_id)
        return made


def motivation_tag(motivation: str) -> str:
    """The tag a motivation adds to its quests."""
    return {"knowledge": "mystery", "protection": "combat", "reputation": "epic", "serenity": "social",
            "wealth": "trade", "ability": "magic", "equipment": "crafting", "comfort": "relaxed"}[motivation]


class _Missing(dict):
    """Template values; a missing one renders visibly (and validation then rejects the quest)."""

    def __missing__(self, key: str) -> str:
        return f"<missing {key}>"
