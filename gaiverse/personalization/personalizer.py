"""The closed personalization loop in one object: input -> store -> profile -> recommendation / new quest.

``Personalizer`` is what flows, Ray actors and API endpoints wrap: ``observe`` stores an input
(any modality) and folds it into the user's in-memory profile at once, task events also update the
task's observed engagement, ``recommend`` ranks the repository for the current profile, ``generate``
makes and stores new quests, ``accept`` stores an adjusted variant the user took on.
Implements the service flow of 8.4 (PER-a1..PER-e2) as plain Python.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from gaiverse.personalization.interaction_store import Interaction, InteractionStore
from gaiverse.personalization.knowledge import KnowledgeBase
from gaiverse.personalization.preference_analysis import PreferenceAnalyzer, PreferenceConfig, PreferenceProfile
from gaiverse.personalization.quest_generator import GeneratedQuest, QuestGenerator, QuestGeneratorConfig
from gaiverse.personalization.recommender import LearnedScorer, Recommendation, Recommender, RecommenderConfig
from gaiverse.personalization.task_repository import TaskFilter, TaskRepository

log = logging.getLogger(__name__)

TASK_EVENTS = {"accept": "accepted", "complete": "completed", "abandon": "abandoned", "view": "shown"}


@dataclass
class PersonalizerConfig:
    """Configuration of every stage of the loop."""

    preferences: PreferenceConfig = field(default_factory=PreferenceConfig)
    recommender: RecommenderConfig = field(default_factory=RecommenderConfig)
    generator: QuestGeneratorConfig = field(default_factory=QuestGeneratorConfig)


class Personalizer:
    """Interaction store + task repository + preference analysis + recommender + quest generator."""

    def __init__(self, store: InteractionStore, repository: TaskRepository, knowledge: KnowledgeBase,
                 config: PersonalizerConfig | None = None, learned: LearnedScorer | None = None) -> None:
        self.config = config or PersonalizerConfig()
        self.store = store
        self.repository = repository
        self.knowledge = knowledge
        self.analyzer = PreferenceAnalyzer(self.config.preferences, self._lookup, repository.tag_vocabulary())
        self.recommender = Recommender(repository, self.config.recommender, learned)
        self.generator = QuestGenerator(repository, knowledge, self.config.generator)
        self._profiles: dict[str, PreferenceProfile] = {}
        self._lock = threading.RLock()

    def _lookup(self, task_id: str):
        return self.repository.get(task_id) if task_id in self.repository else None

    def profile(self, user_id: str) -> PreferenceProfile:
        """The user's current profile: built from the stored history once, then kept incrementally."""
        with self._lock:
            if user_id not in self._profiles:
                self._profiles[user_id] = self.analyzer.build(user_id, self.store.history(user_id))
            return self._profiles[user_id]

    def describe(self, user_id: str) -> str:
        """The short personal description of PER-c1."""
        return self.profile(user_id).describe()

    def observe(self, user_id: str, *, count_engagement: bool = True, **record: Any) -> Interaction:
        """Store one input and reflect it in the profile (and task engagement) immediately.

        ``record`` are the keyword arguments of ``InteractionStore.record`` (modality, event, text,
        item_id, session_id, ts, reward, features, media_key). ``count_engagement`` False keeps task
        events out of the tasks' observed relevance (no analytics consent, PER-f1).
        Implements PER-a1, PER-a2, PER-e1.
        """
        item_id = record.get("item_id")
        if item_id and record.get("event") in TASK_EVENTS and item_id not in self.repository:
            raise KeyError(f"`item_id` {item_id!r} is not a task of the repository")
        with self._lock:
            profile = self.profile(user_id)
            interaction = self.store.record(user_id, **record)
            self.analyzer.update(profile, interaction)
        if item_id and interaction.event in TASK_EVENTS and count_engagement:
            interests = {t for t, _ in profile.interests(5)}
            via = [t for t in self.repository.get(item_id).tags if t in interests]
            self.repository.record_engagement(item_id, TASK_EVENTS[interaction.event], via)  # type: ignore[arg-type]
        return interaction

    def recommend(self, user_id: str, k: int = 10, filters: TaskFilter | None = None) -> list[Recommendation]:
        """Recommendations for the user's current profile, with reasons. Implements PER-b2, PER-e1, PER-e2."""
        return self.recommender.recommend(self.profile(user_id), k, filters)

    def generate(self, user_id: str, n: int = 1) -> list[GeneratedQuest]:
        """New quests for the user, validated and stored in the repository. Implements PER-d1, PER-d2."""
        return self.generator.generate(self.profile(user_id), n)

    def accept(self, user_id: str, recommendation: Recommendation, count_engagement: bool = True) -> str:
        """The user takes on a recommended task: an adjusted variant is stored (PER-d2), then accepted."""
        task = recommendation.task
        if task.task_id not in self.repository:
            self.repository.add(task)
        self.observe(user_id, event="accept", item_id=task.task_id, count_engagement=count_engagement)
        return task.task_id

    def forget(self, user_id: str | None = None) -> None:
        """Drop the in-memory profile of one user (or of all): it is rebuilt from the store when next needed."""
        with self._lock:
            if user_id is None:
                self._profiles.clear()
            else:
                self._profiles.pop(user_id, None)
