"""Fixtures of the privacy tests: a key ring in a temp keys dir, a service over a temp DuckDB file and an
in-memory object store (fast tests); real services come from tests/conftest.py (slow tests)."""

from __future__ import annotations

import hashlib
import io
import wave
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

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


def png_bytes(rgb=(20, 60, 220), size=48) -> bytes:
    """A real PNG: a flat colour with a white square (PIL)."""
    image = Image.new("RGB", (size, size), rgb)
    image.paste((255, 255, 255), (size // 4, size // 4, size // 2, size // 2))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def wav_bytes(pitch_hz: float = 190.0, seconds: float = 0.6, rate: int = 16000) -> bytes:
    """A real 16-bit PCM WAV voice-like tone (numpy): a pitch with two harmonics and a gentle envelope."""
    t = np.arange(int(rate * seconds)) / rate
    signal = sum(np.sin(2 * np.pi * pitch_hz * k * t) / k for k in (1, 2, 3)) * np.hanning(len(t)) * 0.4
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((signal * 32767).astype("<i2").tobytes())
    return out.getvalue()


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
