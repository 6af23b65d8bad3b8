"""Fixtures of the personalization tests: the shipped data, a seeded task repository, a fresh store."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gaiverse.config import REPO_ROOT
from gaiverse.personalization.interaction_store import InteractionStore
from gaiverse.personalization.knowledge import KnowledgeBase, load_knowledge
from gaiverse.personalization.personalizer import Personalizer
from gaiverse.personalization.service import PersonalizationService
from gaiverse.personalization.task_corpus import seed_repository
from gaiverse.personalization.task_repository import TaskRepository
from gaiverse.privacy import PURPOSES, KeyRing

OBD = REPO_ROOT / "data" / "interactions" / "obd"
T0 = datetime(2026, 3, 2, 19, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_knowledge()


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory, kb) -> Path:
    """A task repository seeded once with the authored + SRD tasks; tests open copies."""
    path = tmp_path_factory.mktemp("tasks") / "tasks.duckdb"
    repo = TaskRepository(path)
    seed_repository(repo, kb)
    repo.db.close()
    return path


@pytest.fixture
def repo(seeded_db, tmp_path) -> TaskRepository:
    copy = tmp_path / "tasks.duckdb"
    shutil.copy(seeded_db, copy)
    return TaskRepository(copy)


@pytest.fixture
def store(tmp_path) -> InteractionStore:
    return InteractionStore(tmp_path / "interactions.duckdb")


@pytest.fixture
def personalizer(store, repo, kb) -> Personalizer:
    store.add_user("alice")
    store.add_user("bob")
    return Personalizer(store, repo, kb)


@pytest.fixture
def service(tmp_path, kb):
    """A service over a temp DuckDB file and key ring, seeded, with every consent given to "acct-1"."""
    svc = PersonalizationService(tmp_path / "p.duckdb", KeyRing.load(tmp_path / "keys"), knowledge=kb)
    svc.seed(include_srd=False)
    for purpose in PURPOSES:
        svc.set_consent("acct-1", purpose, True)
    yield svc
    svc.close()
