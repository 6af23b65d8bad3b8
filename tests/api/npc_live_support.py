"""Support for the live-NPC API tests: an API server joined to the session's Ray, users, a socket client.

The shared ``api_server`` fixture runs without Ray; the NPC socket needs the model actors, so
these tests start their own uvicorn (same data dir, catalog and S3) with
``GAIVERSE_RAY_ADDRESS`` pointing at the session's local Ray (``ray_local``), exactly as the
embedded stack points its API at the Ray head.
"""

from __future__ import annotations

import json
import sys
import uuid
import wave
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pytest

from gaiverse.config import REPO_ROOT, Settings, prefect_env
from gaiverse.proc import free_port, spawn, stop_pid, wait_until
from gaiverse.speech.wav import write_wav

RECV_GUARD_S = 600
"""Socket receive guard against a hung server (not a performance limit: first turns load models)."""


def start_npc_api(settings: Settings, ray_address: str, name: str = "api-npc", generator: str = "extractive"):
    """(base_url, service) of a uvicorn API whose NPC actors live on ``ray_address``.

    Tests use the extractive generator: deterministic wording, and no 400 MB GGUF assembled per session.
    """
    port = free_port()
    env = {**prefect_env(settings), "GAIVERSE_API_PORT": str(port), "GAIVERSE_RAY_ADDRESS": ray_address,
           "GAIVERSE_NPC_GENERATOR": generator}
    service = spawn(name, [sys.executable, "-m", "uvicorn", "--factory", "gaiverse.api.app:create_app",
                           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                    settings.run_dir, env=env, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(base + "/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 90, f"NPC API server (log: {service.log_path})")
    except Exception:
        stop_pid(service.pid, name)
        raise
    return base, service


def stop_npc_api(service, name: str = "api-npc") -> None:
    stop_pid(service.pid, name)


def npc_api_fixture(name: str):
    """A module-scoped ``npc_api`` fixture: a live API on the session's Ray and Prefect server, stopped after."""

    @pytest.fixture(scope="module")
    def npc_api(settings, store, catalog, ray_local, prefect_server):
        base, service = start_npc_api(settings, ray_local.get_runtime_context().gcs_address, name=name)
        yield base
        stop_npc_api(service, name)

    return npc_api


def make_user(base: str, admin_key: str, name: str = "npc-user") -> tuple[str, str]:
    """(user_id, key) of a new user created through the API with the admin key."""
    response = httpx.post(base + "/users", json={"name": f"{name}-{uuid.uuid4().hex[:6]}"},
                          headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["user_id"], body["key"]


def ws_url(base: str, query: str = "npc=sage") -> str:
    return base.replace("http://", "ws://") + "/npc/ws?" + query


def recv(ws) -> dict:
    return json.loads(ws.recv(timeout=RECV_GUARD_S))


def until(ws, kind: str, state: str | None = None) -> list[dict]:
    """Events up to and including the first of ``kind`` (and ``state`` for state events)."""
    events = []
    while True:
        event = recv(ws)
        events.append(event)
        if event["type"] == kind and (state is None or event.get("state") == state):
            return events


def turn(ws, message: dict) -> list[dict]:
    """Send one input and collect its events up to the final idle state."""
    ws.send(json.dumps(message))
    return until(ws, "state", "idle")


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(BytesIO(data)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


def speech_wav(text: str, path: Path, rate: int = 16000, after_s: float = 0.4) -> Path:
    """A 16 kHz mono WAV of ``text`` spoken by Piper, 0.4 s of silence before and ``after_s`` after (a take)."""
    from gaiverse.speech.asr import resample
    from gaiverse.speech.tts import Synthesizer

    audio = Synthesizer().synthesize(text)
    samples = resample(audio.pcm.astype(np.float32) / 32768.0, audio.sample_rate, rate)
    before, after = np.zeros(int(0.4 * rate), np.float32), np.zeros(int(after_s * rate), np.float32)
    pcm = (np.clip(np.concatenate([before, samples, after]), -1, 1) * 32767).astype("<i2")
    write_wav(path, pcm, rate)
    return path
