"""Fixtures of the privacy tests: a key ring in a temp keys dir, a service over a temp DuckDB file and an
in-memory object store (fast tests); real services come from tests/conftest.py (slow tests)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from gaiverse.personalization.knowledge import load_knowledge
from gaiverse.personalization.service import PersonalizationService
from gaiverse.privacy import PURPOSES, KeyRing


@dataclass(frozen=True)
class Ref:
    key: str


class MemoryBlobs:
    """The object-store protocol over a dict (content-addressed like the real one)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, data: bytes, *, kind: str, ext: str) -> Ref:
        key = f"{kind}/{hashlib.sha256(data).hexdigest()}.{ext}"
        self.objects[key] = bytes(data)
        return Ref(key)

    def get_bytes(self, key: str) -> bytes:
        return self.objects[key]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


@pytest.fixture(scope="session")
def knowledge():
    return load_knowledge()


@pytest.fixture
def keyring(tmp_path) -> KeyRing:
    return KeyRing.load(tmp_path / "keys")


@pytest.fixture
def blobs() -> MemoryBlobs:
    return MemoryBlobs()


@pytest.fixture
def service(tmp_path, keyring, blobs, knowledge) -> PersonalizationService:
    svc = PersonalizationService(tmp_path / "personalization.duckdb", keyring, blobs, knowledge)
    svc.seed(include_srd=False)
    return svc


def consent_all(service: PersonalizationService, account: str) -> None:
    for purpose in PURPOSES:
        service.set_consent(account, purpose, True)


@pytest.fixture(scope="session")
def prefect_api(prefect_server):
    """The session Prefect server as this process's API (as in tests/flows/conftest.py)."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL

    prefect.context.refresh_global_settings_context()
    assert PREFECT_API_URL.value() == prefect_server
    yield prefect_server
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
