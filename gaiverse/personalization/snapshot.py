"""A read-only copy of the personalization indexes, for recommendation replicas (the scale-out path of PER-g1).

``PersonalizationService`` is the one writer of its DuckDB file. Recommendation replicas (Ray Serve,
``ray_actors/personalization_serve.py``) need the same in-memory indexes without ever writing: this
class loads them through shared, read-only connections only — tasks (``TaskIndex``), interactions
(``InteractionIndex``), consents and wrapped keys — and reloads everything when the file's version
token (``Database.generation``, bumped by every committed write) changed, checked at most every
``min_refresh_s``. A replica therefore answers from a snapshot at most one check behind the writer;
``recommend`` ranks exactly as the service does on the same data (same profile fold, same
``IndexedRecommender``), which the Serve test checks.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from gaiverse.personalization.database import Database
from gaiverse.personalization.embedding import HashingEmbedder
from gaiverse.personalization.indexes import IndexedRecommender, IndexedTaskRepository
from gaiverse.personalization.interaction_store import InteractionStore
from gaiverse.personalization.knowledge import KnowledgeBase, load_knowledge
from gaiverse.personalization.personalizer import Personalizer
from gaiverse.personalization.preference_analysis import PreferenceProfile
from gaiverse.personalization.privacy_cache import PreloadedConsents, PreloadedVault
from gaiverse.personalization.recommender import Recommendation
from gaiverse.privacy import KeyRing

log = logging.getLogger(__name__)


class _SnapshotTasks(IndexedTaskRepository):
    """The task repository and its index, loaded with reads only (no schema statements)."""

    def __init__(self, db: Database) -> None:  # noqa: D107 - deliberately skips the writing base __init__
        self.db, self.path, self.writer, self.index = db, db.path, None, None
        self.embedder = HashingEmbedder()
        self._lock = threading.RLock()
        with db.read() as con:
            stored = con.execute("SELECT value FROM repository_meta WHERE key = 'embedder'").fetchone()
        if stored is not None and stored[0] != self.embedder.name:
            raise ValueError(f"the repository was embedded with {stored[0]!r}; replicas embed with {self.embedder.name!r}")
        self.reload()


class _SnapshotVault(PreloadedVault):
    def __init__(self, db: Database, keyring: KeyRing) -> None:  # noqa: D107 - no schema write
        self.db, self.keyring, self._cache, self._lock = db, keyring, {}, threading.Lock()


class _SnapshotConsents(PreloadedConsents):
    def __init__(self, db: Database) -> None:  # noqa: D107 - no schema write
        self.db, self._current = db, {}


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    """What a replica returns per recommendation (JSON-ready)."""
    return {"task_id": rec.task.task_id, "original_task_id": rec.original_task_id, "title": rec.task.title,
            "tags": list(rec.task.tags), "score": rec.score, "reason": rec.reason,
            "adjustments": list(rec.adjustments)}


class RecommendationSnapshot:
    """In-memory indexes of one personalization file, read-only, refreshed on a version bump. PER-g1."""

    def __init__(self, db_path: str | Path, keyring: KeyRing, knowledge: KnowledgeBase | None = None,
                 min_refresh_s: float = 0.5) -> None:
        if not Path(db_path).exists():
            raise FileNotFoundError(f"`db_path` {db_path} does not exist (start the personalization service first)")
        self.db = Database(db_path)
        self.keyring = keyring
        self.knowledge = knowledge or load_knowledge()
        self.min_refresh_s = min_refresh_s
        self._lock = threading.RLock()
        self._checked = 0.0
        self.reloads = 0
        self._load()

    def _load(self) -> None:
        version = self.db.generation()
        vault = _SnapshotVault(self.db, self.keyring)
        vault.preload()
        consents = _SnapshotConsents(self.db)
        consents.preload()
        store = InteractionStore.read_only(self.db, vault)
        repository = _SnapshotTasks(self.db)
        personalizer = Personalizer(store, repository, self.knowledge)
        personalizer.recommender = IndexedRecommender(repository, personalizer.config.recommender)
        with self._lock:
            self.version, self.consents, self.store, self.personalizer = version, consents, store, personalizer
            self.reloads += 1
        log.info("recommendation snapshot %s loaded (version %s)", self.db.path, (version or "-")[:8])

    def refresh(self) -> bool:
        """Reload when the writer committed since the snapshot was taken; True if it did."""
        now = time.monotonic()
        if now - self._checked < self.min_refresh_s:
            return False
        self._checked = now
        if self.db.generation() == self.version:
            return False
        self._load()
        return True

    def recommend(self, subject: str, k: int = 10) -> list[Recommendation]:
        """As ``PersonalizationService.recommend`` for the user with pseudonym ``subject``."""
        if not isinstance(subject, str) or not subject:
            raise ValueError(f"`subject` must be a non-empty pseudonym, got {subject!r}")
        if not 1 <= k <= 50:
            raise ValueError(f"`k` must be in 1..50, got {k}")
        self.refresh()
        with self._lock:
            consents, store, personalizer = self.consents, self.store, self.personalizer
        if consents.allowed(subject, "personalization") and store.has_user(subject):
            return personalizer.recommend(subject, k)
        return personalizer.recommender.recommend(PreferenceProfile(subject), k)
