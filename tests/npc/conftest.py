"""Shared NPC fixtures: one prior knowledge base built from the shipped data per test session.

Building the prior (6,000+ passages from the SRD and GeoNames, vectors from the shipped
embedding cache) and loading the sentence embedder take a few seconds, so every test shares
them; tests that add knowledge use their own user ids, which the owner scoping keeps apart.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from gaiverse.npc.knowledge_base import KnowledgeBase
from gaiverse.npc.memory import MemoryStore
from gaiverse.npc.persona import PersonaRegistry


@pytest.fixture(scope="session")
def kb_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("npc") / "kb.duckdb"


@pytest.fixture(scope="session")
def kb(kb_path: Path) -> KnowledgeBase:
    store = KnowledgeBase(kb_path)
    store.build_prior()
    yield store
    store.close()


@pytest.fixture(scope="session")
def personas() -> PersonaRegistry:
    return PersonaRegistry.load()


@pytest.fixture
def user() -> str:
    """A fresh user id per test: no memory or private knowledge from other tests."""
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def memory() -> MemoryStore:
    return MemoryStore()
