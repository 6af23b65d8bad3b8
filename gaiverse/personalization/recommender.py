"""Recommendation: rank tasks by the user's preferences × task relevance, say why, and adjust them to the user.

The score of a task for a user is a weighted sum of named parts — preference match (tag affinities ×
per-tag relevance), task relevance (authored, shrunk with observed engagement), similarity to the
current input, difficulty and social fit, and optionally a learned model's score — and the reason
shown to the user is written from the parts that contributed most. Nothing is cached between calls
except the profile, which the caller updates on every new input, so a new message or a completed or
abandoned task changes the very next recommendation. Recommended tasks are adjusted (difficulty,
length, rewards) to the profile before they are shown.
Implements PER-b2, PER-e1 and PER-e2.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Callable, Sequence

import numpy as np

from gaiverse.personalization.preference_analysis import PreferenceProfile, text_signals
from gaiverse.personalization.task_repository import Provenance, Task, TaskFilter, TaskRepository

log = logging.getLogger(__name__)

LearnedScorer = Callable[[str, Sequence[str]], np.ndarray]
"""(user_id, task_ids) -> probabilities in [0, 1] from a learned model."""

DIFFICULTY_WORDS = ["very easy", "easy", "medium", "hard", "very hard"]


@dataclass
class RecommenderConfig:
    """Weights of the score parts and the adjustment rules."""

    w_preference: float = 1.0
    """Tag affinities of the user × per-tag relevance of the task."""
    w_relevance: float = 0.4
    """Overall relevance of the task (authored, updated by observed engagement)."""
    w_current: float = 1.0
    """Similarity of the task to the user's current input (latest message)."""
    w_difficulty: float = 0.3
    """Closeness of the task's difficulty to the preferred one."""
    w_social: float = 0.15
    """Fit of solo/group setting."""
    w_learned: float = 0.5
    """Learned model's score, when a scorer is given."""
    candidate_limit: int = 2000
    """Above this many tasks, score only the best candidates of a hybrid search."""
    abandon_cooldown: timedelta = timedelta(days=3)
    """An abandoned task is not offered again for this long."""
    adjust: bool = True
    """Adjust difficulty, length and rewards of recommended tasks to the profile."""


@dataclass
class Recommendation:
    """One recommended task, its score, the parts of the score and the reason in words."""

    task: Task
    score: float
    reason: str
    parts: dict[str, float]
    adjustments: list[str] = field(default_factory=list)
    """What was changed in the task for this user (empty: shown as stored)."""
    original_task_id: str = ""


def _affinity_scale(profile: PreferenceProfile) -> float:
    return max([1.0] + [abs(v) for v in profile.tag_affinity.values()])


def preference_match(profile: PreferenceProfile, task: Task) -> tuple[float, list[str], list[str]]:
    """Match of a task's tags to the user's affinities in [-1, 1], with the liked and disliked tags."""
    if not task.tags:
        return 0.0, [], []
    scale = _affinity_scale(profile)
    total, liked, disliked = 0.0, [], []
    for tag in task.tags:
        aff = profile.tag_affinity.get(tag, 0.0) / scale
        total += aff * task.observed_tag_relevance(tag) if aff > 0 else aff * 0.8
        if aff > 0.15:
            liked.append(tag)
        elif aff < -0.15:
            disliked.append(tag)
    return total / math.sqrt(len(task.tags)), liked, disliked


def _recent_abandons(profile: PreferenceProfile) -> int:
    return sum(1 for ts in profile.abandoned.values()
               if profile.last_ts is not None and profile.last_ts - ts < timedelta(days=1))


def target_difficulty(profile: PreferenceProfile) -> int:
    """The difficulty to offer now: the preferred one, eased for a day after an abandoned task."""
    return int(min(5, max(1, round(profile.difficulty - (0.5 if _recent_abandons(profile) else 0.0)))))


def adjust_task(task: Task, profile: PreferenceProfile) -> tuple[Task, list[str]]:
    """A copy of ``task`` fitted to the user: difficulty, length and rewards. Implements PER-e1."""
    changes: list[str] = []
    recent_abandons = _recent_abandons(profile)
    target = profile.difficulty - (0.5 if recent_abandons else 0.0)
    difficulty = task.difficulty
    if task.difficulty - target >= 0.75:
        difficulty = max(1, task.difficulty - max(1, round(task.difficulty - target)))
    elif target - task.difficulty >= 1.25 and profile.completed:
        difficulty = min(5, task.difficulty + 1)
    length = task.length_minutes
    if task.length_minutes > 1.5 * profile.length_minutes:
        length = max(10, int(5 * round(profile.length_minutes * 1.2 / 5)))
    if difficulty == task.difficulty and length == task.length_minutes:
        return task, changes
    rewards = dict(task.rewards)
    factor = (difficulty / task.difficulty) * (0.5 + 0.5 * length / task.length_minutes)
    for key in ("gold", "xp"):
        if isinstance(rewards.get(key), (int, float)):
            rewards[key] = max(1, int(round(rewards[key] * factor)))
    if difficulty != task.difficulty:
        why = "after an abandoned task" if recent_abandons and difficulty < task.difficulty else "to your level"
        changes.append(f"difficulty {task.difficulty}→{difficulty} ({why})")
    if length != task.length_minutes:
        changes.append(f"length {task.length_minutes}→{length} min (your sessions are shorter)")
    if rewards != task.rewards:
        changes.append("rewards scaled to match")
    adjusted = replace(task, task_id=f"{task.task_id}~for~{profile.user_id}", difficulty=difficulty,
                       length_minutes=length, rewards=rewards,
                       provenance=Provenance("generated", "recommender.adjust_task", profile.user_id, [task.task_id]))
    return adjusted, changes


def score_parts(profile: PreferenceProfile, task: Task, current: float, said: dict[str, float],
                learned: float | None = None) -> tuple[dict[str, float], list[str], list[str]]:
    """The named score parts of one task, with its liked and disliked tags.

    ``current`` is the task embedding's dot product with the current input's. The one scalar
    definition of a task's score: the full per-task loop and the indexed fast path's exact
    re-scoring of its top candidates both call it, so they agree to the last bit.
    """
    match, liked, disliked = preference_match(profile, task)
    asked = sum(said.get(t, 0.0) for t in task.tags)
    parts = {"preference": match, "relevance": task.observed_relevance(),
             "current_input": max(0.0, current) + 0.5 * max(-2.0, min(2.0, asked)),
             "difficulty_fit": 1.0 - abs(task.difficulty - profile.difficulty) / 4.0,
             "social_fit": 0.5 if task.social == "either"
             else 1.0 - abs(profile.social - (1.0 if task.social == "group" else 0.0))}
    if learned is not None:
        parts["learned"] = learned
    return parts, liked, disliked


def weighted_score(cfg: RecommenderConfig, parts: dict[str, float]) -> float:
    """The score: the weighted sum of the parts (same order of operations everywhere)."""
    return (cfg.w_preference * parts["preference"] + cfg.w_relevance * parts["relevance"]
            + cfg.w_current * parts["current_input"] + cfg.w_difficulty * parts["difficulty_fit"]
            + cfg.w_social * parts["social_fit"] + cfg.w_learned * parts.get("learned", 0.0))


class Recommender:
    """Scores the repository's tasks for a profile. Implements PER-b2, PER-e1, PER-e2."""

    def __init__(self, repository: TaskRepository, config: RecommenderConfig | None = None,
                 learned: LearnedScorer | None = None) -> None:
        self.repository = repository
        self.config = config or RecommenderConfig()
        self.learned = learned

    def _candidates(self, profile: PreferenceProfile, filters: TaskFilter) -> list[Task]:
        if len(self.repository) <= self.config.candidate_limit:
            return [t for t in self.repository.all() if filters.accepts(t)]
        interests = [t for t, _ in profile.interests(5)]
        query = profile.current_text or " ".join(interests)
        hits = self.repository.search(query or None, interests, filters, k=self.config.candidate_limit)
        return [h.task for h in hits]

    def _excluded(self, profile: PreferenceProfile) -> set[str]:
        cfg = self.config
        out = set(profile.completed) | (set(profile.accepted) - set(profile.abandoned))
        for task_id in list(out):  # a variant adjusted for the user stands for its original task
            if task_id in self.repository and self.repository.get(task_id).provenance.source == "recommender.adjust_task":
                out |= set(self.repository.get(task_id).provenance.from_tasks)
        if profile.last_ts is not None:
            out |= {t for t, ts in profile.abandoned.items() if profile.last_ts - ts < cfg.abandon_cooldown}
        return out

    def recommend(self, profile: PreferenceProfile, k: int = 10, filters: TaskFilter | None = None) -> list[Recommendation]:
        """The ``k`` best tasks for the profile, each with a reason; adjusted when configured.

        Implements PER-b2 (ranking by preference and relevance), PER-e1 (current input and history)
        and PER-e2.
        """
        if k < 1:
            raise ValueError(f"`k` must be >= 1, got {k}")
        cfg = self.config
        filters = replace(filters or TaskFilter(), for_user=profile.user_id)
        filters.exclude_ids = set(filters.exclude_ids) | self._excluded(profile)
        tasks = self._candidates(profile, filters)
        if not tasks:
            return []
        current = np.zeros(len(tasks))
        if profile.current_text:
            query = self.repository.embedder.embed([profile.current_text])[0]
            current = np.array([float(self.repository.embedding(t.task_id) @ query) for t in tasks])
        learned = None
        if self.learned is not None:
            learned = np.asarray(self.learned(profile.user_id, [t.task_id for t in tasks]), dtype=float)
        said = text_signals(profile.current_text).tags if profile.current_text else {}
        scored = []
        for i, task in enumerate(tasks):
            parts, liked, disliked = score_parts(profile, task, current[i], said,
                                                 None if learned is None else float(learned[i]))
            scored.append((weighted_score(cfg, parts), task, parts, liked, disliked))
        scored.sort(key=lambda s: (-s[0], s[1].task_id))
        out = []
        for score, task, parts, liked, disliked in scored[:k]:
            shown, changes = adjust_task(task, profile) if cfg.adjust else (task, [])
            reason = self._reason(profile, task, parts, liked, disliked, said, changes)
            out.append(Recommendation(shown, float(score), reason, parts, changes, task.task_id))
        log.debug("recommended %s to %s", [r.original_task_id for r in out], profile.user_id)
        return out

    @staticmethod
    def _reason(profile: PreferenceProfile, task: Task, parts: dict[str, float], liked: list[str],
                disliked: list[str], said: dict[str, float], changes: list[str]) -> str:
        """The recommendation's reason in words, from the parts that contributed most."""
        bits = []
        asked = [t for t in task.tags if said.get(t, 0) > 0]
        if asked:
            bits.append(f"you just asked for {', '.join(asked)}")
        elif parts["current_input"] > 0.15 and not any(said.get(t, 0) < 0 for t in task.tags):
            bits.append(f"close to what you just said (\"{profile.current_text[:60]}\")")
        if liked:
            bits.append(f"matches your interest in {', '.join(liked[:3])}")
        if parts["relevance"] >= 0.65:
            source = "players" if sum(task.engagement.counts.values()) >= 3 else "its authors"
            bits.append(f"rated {parts['relevance']:.2f} by {source}")
        if parts["difficulty_fit"] >= 0.85:
            bits.append(f"suits your preferred difficulty ({DIFFICULTY_WORDS[task.difficulty - 1]})")
        if parts.get("learned", 0) >= 0.5:
            bits.append("players like you engaged with it")
        if task.provenance.kind == "generated" and task.provenance.for_user == profile.user_id:
            bits.append("made for you")
        if not bits:
            bits.append("a well-rated task to try something new")
        text = "; ".join(bits)
        if disliked:
            text += f" (though it involves {', '.join(disliked)})"
        if changes:
            text += "; adjusted: " + ", ".join(changes)
        return text[0].upper() + text[1:]
