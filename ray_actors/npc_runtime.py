"""Ray actors that hold the live NPC models: dialogue (knowledge base + generator + memory), ASR and TTS.

Detached named actors (``ray_actors/base.py``), so every API process and every connection
shares one warm copy of each model. The API reaches them only through ``NpcRuntime``, whose
adapters give ``gaiverse.npc.session.NpcSession`` the same protocols the in-process models
implement: the dialogue turn streams back through a Ray streaming generator (one object per
token, ~1 ms each), ASR and TTS are single calls.

Decision (docs/CONFORMANCE.md NPC-c1): the API has no in-process fallback. Like every model
stage it goes through ``connect()``, which joins ``GAIVERSE_RAY_ADDRESS`` (the embedded stack's
Ray head, or a cluster) and otherwise starts a local Ray in the API process. One path, whether
one machine or many.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import ray

from gaiverse.config import Settings, get_settings
from gaiverse.npc.persona import NpcPersona
from gaiverse.npc.understanding import HciSignal
from ray_actors.base import StageActor, get_or_create
from ray_actors.cluster import ActorPolicy

log = logging.getLogger(__name__)

DIALOGUE_ACTOR, ASR_ACTOR, TTS_ACTOR = "npc-dialogue", "npc-asr", "npc-tts"
SESSION_POLICY = ActorPolicy(max_concurrency=16)
"""Threaded actors: many sessions stream turns at once (the models release the GIL in their native code)."""


class NpcDialogueActor(StageActor):
    """The knowledge base, personas, per-user memories and the answer generator of every NPC."""

    def __init__(self, kb_path: str, memory_path: str | None, generator: str, model_dir: str | None):
        super().__init__()
        from gaiverse.npc.backends import DialogueConfig, LocalDialogue

        self.dialogue = LocalDialogue(DialogueConfig(Path(kb_path), Path(memory_path) if memory_path else None,
                                                     generator, Path(model_dir) if model_dir else None))

    def turn(self, user_id: str, npc_id: str, text: str | None = None, signal: HciSignal | None = None,
             source: str = "text", persona: NpcPersona | None = None) -> Iterator[dict[str, Any]]:
        """Streaming generator: the dialogue turn's events as they are produced."""
        with self.serving():
            yield from self.dialogue.turn(user_id, npc_id, text=text, signal=signal, source=source,
                                          persona=persona)

    def describe(self, npc_id: str, persona: NpcPersona | None = None) -> dict[str, Any]:
        from gaiverse.npc.backends import npc_voice

        voice = npc_voice(persona or self.dialogue.persona(npc_id))
        return {**self.dialogue.describe(npc_id, persona), "voice": voice}

    def forget(self, user_id: str) -> None:
        self.dialogue.forget(user_id)


class NpcAsrActor(StageActor):
    """Whisper base (faster-whisper, int8) for push-to-talk utterances."""

    def __init__(self, model_dir: str | None = None) -> None:
        super().__init__()
        from gaiverse.npc.backends import SpeechAsr

        self.asr = SpeechAsr(Path(model_dir) if model_dir else None)

    def transcribe(self, pcm: bytes, sample_rate: int) -> dict[str, Any]:
        with self.serving():
            return self.asr.transcribe(pcm, sample_rate)


class NpcTtsActor(StageActor):
    """Piper TTS, one warm synthesiser per NPC voice."""

    def __init__(self) -> None:
        super().__init__()
        from gaiverse.npc.backends import SpeechTts

        self.tts = SpeechTts()

    def synthesize(self, text: str, voice: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.serving():
            return self.tts.synthesize(text, voice)


def forget_user(user_id: str) -> bool:
    """Make the running dialogue actor forget ``user_id`` (erasure); False when no such actor is alive.

    Only on a Ray this process is already connected to: erasure must not start a cluster, and with
    no dialogue actor there is no live memory to drop (its DuckDB file is covered in docs/PRIVACY.md).
    """
    if not ray.is_initialized():
        return False
    from ray_actors.cluster import NAMESPACE

    try:
        handle = ray.get_actor(DIALOGUE_ACTOR, namespace=NAMESPACE)
    except ValueError:  # no dialogue actor on this Ray
        return False
    ray.get(handle.forget.remote(user_id))
    return True


def speech_available() -> bool:
    """True when the speech package (ASR and TTS) is importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gaiverse.speech.asr", "gaiverse.speech.tts"))


class _RemoteDialogue:
    def __init__(self, handle):
        self.handle = handle

    def turn(self, user_id, npc_id, text=None, signal=None, source="text", persona=None):
        refs = self.handle.turn.remote(user_id, npc_id, text=text, signal=signal, source=source, persona=persona)
        for ref in refs:
            yield ray.get(ref)


class _RemoteAsr:
    def __init__(self, handle):
        self.handle = handle

    def transcribe(self, pcm: bytes, sample_rate: int) -> dict[str, Any]:
        return ray.get(self.handle.transcribe.remote(pcm, sample_rate))


class _RemoteTts:
    def __init__(self, handle):
        self.handle = handle

    def synthesize(self, text: str, voice: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return ray.get(self.handle.synthesize.remote(text, voice))


class NpcRuntime:
    """Handles of the three actors (created on first use) as session backends. Blocking: call from a thread."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        s = self.settings
        npc_dir = s.data_dir / "npc"
        self.dialogue_handle = get_or_create(
            NpcDialogueActor, DIALOGUE_ACTOR, str(npc_dir / "kb.duckdb"), str(npc_dir / "memory.duckdb"),
            s.npc_generator, str(s.data_dir / "models"), settings=s, policy=SESSION_POLICY)
        self.speech = speech_available()
        self.asr_handle = self.tts_handle = None
        if self.speech:
            self.asr_handle = get_or_create(NpcAsrActor, ASR_ACTOR, str(s.data_dir / "models" / "whisper-base"),
                                            settings=s, policy=SESSION_POLICY)
            self.tts_handle = get_or_create(NpcTtsActor, TTS_ACTOR, settings=s, policy=SESSION_POLICY)
        else:
            log.warning("gaiverse.speech is not installed: NPC sessions run text-only")
        self.dialogue = _RemoteDialogue(self.dialogue_handle)
        self.asr = _RemoteAsr(self.asr_handle) if self.asr_handle is not None else None
        self.tts = _RemoteTts(self.tts_handle) if self.tts_handle is not None else None

    def ready(self) -> dict[str, Any]:
        """Wait until every actor has loaded its model; returns their ``info()``."""
        handles = [h for h in (self.dialogue_handle, self.asr_handle, self.tts_handle) if h is not None]
        return {"actors": ray.get([h.info.remote() for h in handles]), "speech": self.speech}

    def describe(self, npc_id: str, persona: NpcPersona | None = None) -> dict[str, Any]:
        return ray.get(self.dialogue_handle.describe.remote(npc_id, persona))
