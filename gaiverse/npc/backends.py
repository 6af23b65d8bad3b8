"""The loaded models behind a live NPC session: dialogue (knowledge base + generator), ASR and TTS.

Plain Python holders that implement the protocols of ``gaiverse.npc.session``; the Ray actors of
``ray_actors/npc_runtime.py`` wrap them one to one, and tests and benchmarks may use them
in-process. Each loads its model once in ``__init__`` and warms it, so the first user turn does
not pay for loading (NPC-d1: smooth interaction).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from gaiverse.npc.dialogue import NpcAgent
from gaiverse.npc.generators import ExtractiveGenerator, Generator, LlamaConfig, LlamaGenerator
from gaiverse.npc.hci import STICK_INTENT
from gaiverse.npc.kb_shared import SharedKnowledgeBase
from gaiverse.npc.knowledge_base import KnowledgeBase
from gaiverse.npc.memory import MemoryStore
from gaiverse.npc.persona import NpcPersona, PersonaRegistry
from gaiverse.npc.understanding import HciSignal

log = logging.getLogger(__name__)


@dataclass
class DialogueConfig:
    """Where the dialogue model's state lives and which generator phrases answers."""

    kb_path: Path
    """DuckDB knowledge base (the prior is built into it when missing)."""
    memory_path: Path | None = None
    """DuckDB file of per-user memories; None keeps them in memory only."""
    generator: Literal["extractive", "llm", "auto"] = "extractive"
    """``auto``: the local language model when llama-cpp-python and the GGUF are installed."""
    model_dir: Path | None = None
    """Where the GGUF is assembled for ``llm``/``auto``."""


class KbView:
    """What ``NpcAgent`` reads from the knowledge base, over the shared file (``SharedKnowledgeBase``).

    The API, the CLI and the ingestion flow write the same DuckDB file under a lock, so the
    dialogue model must not keep it open: each turn opens it read-only once (``turn()``), and
    the entity lexicon is cached for ``lexicon_ttl_s``.
    """

    def __init__(self, shared: SharedKnowledgeBase, lexicon_ttl_s: float = 60.0):
        self.shared = shared
        self.lexicon_ttl_s = lexicon_ttl_s
        self._local = threading.local()
        self._lexicon: tuple[float, dict] | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Keep one read-only connection open for the calls of this thread's turn."""
        with self.shared.reading() as kb:
            self._local.kb = kb
            try:
                yield
            finally:
                self._local.kb = None

    def _call(self, name: str, *args, **kwargs):
        kb = getattr(self._local, "kb", None)
        if kb is not None:
            return getattr(kb, name)(*args, **kwargs)
        with self.shared.reading() as kb:
            return getattr(kb, name)(*args, **kwargs)

    def search(self, *args, **kwargs):
        return self._call("search", *args, **kwargs)

    def idf(self, *args, **kwargs):
        return self._call("idf", *args, **kwargs)

    def entities(self) -> dict:
        now = time.monotonic()
        if self._lexicon is None or now - self._lexicon[0] > self.lexicon_ttl_s:
            self._lexicon = (now, self._call("entities"))
        return self._lexicon[1]


class LocalDialogue:
    """Knowledge base, personas, memories and generator in this process; one ``NpcAgent`` per NPC id.

    Without ``kb`` it reads the installation's shared knowledge-base file (``config.kb_path``)
    through ``KbView``; tests may hand in an open ``KnowledgeBase``.
    """

    def __init__(self, config: DialogueConfig, kb: KnowledgeBase | None = None,
                 personas: PersonaRegistry | None = None, memory: MemoryStore | None = None):
        self.config = config
        if kb is None:
            shared = SharedKnowledgeBase(config.kb_path)
            shared.ensure(prior=True)
            kb = KbView(shared)  # type: ignore[assignment]
        self.kb = kb
        self.personas = personas or PersonaRegistry.load()
        self.memory = memory or MemoryStore(config.memory_path)
        self.generator = make_generator(config.generator, config.model_dir)
        self._agents: dict[NpcPersona, NpcAgent] = {}
        self._lock = threading.Lock()
        self.kb.search("warm up the embedder", k=1)

    def persona(self, npc_id: str) -> NpcPersona:
        return self.personas.get(npc_id)

    def describe(self, npc_id: str, persona: NpcPersona | None = None) -> dict[str, Any]:
        """Who the NPC is, for the client's first ``state`` event."""
        p = persona or self.persona(npc_id)
        return {"npc_id": p.id, "name": p.name, "role": p.role, "style": p.style,
                "domains": list(p.domains) if p.domains else None, "generator": self.generator.name}

    def agent(self, persona: NpcPersona) -> NpcAgent:
        """The agent playing ``persona``: one per distinct persona (generated NPCs of two users may share an id)."""
        with self._lock:
            if persona not in self._agents:
                agent = NpcAgent(self.kb, persona, self.memory, self.generator)
                agent.understanding.signals.gamepad.update(STICK_INTENT)
                self._agents[persona] = agent
            return self._agents[persona]

    def turn(self, user_id: str, npc_id: str, text: str | None = None, signal: HciSignal | None = None,
             source: str = "text", persona: NpcPersona | None = None) -> Iterator[dict[str, Any]]:
        """One dialogue turn as plain dicts (what a Ray streaming generator can carry)."""
        agent = self.agent(persona or self.persona(npc_id))
        with self.kb.turn() if isinstance(self.kb, KbView) else nullcontext():
            yield from self._events(agent, user_id, text, signal, source)

    def _events(self, agent: NpcAgent, user_id: str, text: str | None, signal: HciSignal | None,
                source: str) -> Iterator[dict[str, Any]]:
        for event in agent.stream(user_id, text=text, signal=signal, source=source):
            if event.type == "sentence":
                continue  # the session cuts sentences itself, from the tokens
            if event.type == "reply":
                r = event.data["reply"]
                yield {"type": "reply", "text": r.text, "intent": r.intent, "grounded": r.grounded,
                       "refused": r.refused, "sources": list(r.sources), "emotion": r.emotion,
                       "gesture": r.gesture, "generator": r.generator or "persona"}
            else:
                yield {"type": event.type, **event.data}

    def forget(self, user_id: str) -> None:
        self.memory.forget(user_id)


def make_generator(kind: str, model_dir: Path | None) -> Generator:
    """The extractive generator, or the local language model when asked for and installed."""
    if kind not in ("extractive", "llm", "auto"):
        raise ValueError(f"`generator` must be extractive, llm or auto, got {kind!r}")
    if kind == "extractive":
        return ExtractiveGenerator()
    from gaiverse.npc.llm import find_gguf, llama_available

    gguf = find_gguf(model_dir) if model_dir is not None and llama_available() else None
    if gguf is None:
        if kind == "llm":
            raise RuntimeError("`generator` llm needs llama-cpp-python and the packaged GGUF "
                               "(./gaiverse.sh setup llm)")
        log.warning("no local language model installed: NPC answers use the extractive generator")
        return ExtractiveGenerator()
    return LlamaGenerator(LlamaConfig(model_path=gguf))


# ------------------------------------------------------------------ speech


class SpeechAsr:
    """Whisper (``gaiverse.speech.asr.Transcriber``) on PCM16 push-to-talk audio.

    Greedy decoding in English: on 2 shared cores beam search costs ~30% more time for the same
    words on short utterances, and the knowledge base is English.
    """

    def __init__(self, model_dir: Path | None = None, beam_size: int = 1, language: str | None = "en") -> None:
        from gaiverse.speech.asr import Transcriber

        self.transcriber = Transcriber(model_dir, beam_size=beam_size, language=language)
        self.transcribe(np.zeros(8000, dtype=np.int16).tobytes(), 16000)  # load and warm the model

    def transcribe(self, pcm: bytes, sample_rate: int) -> dict[str, Any]:
        from gaiverse.speech.asr import resample

        audio = resample(np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, sample_rate)
        result = self.transcriber.transcribe(audio)
        return {"text": result.text, "language": result.language, "duration_s": result.duration_s}


class SpeechTts:
    """Piper (``gaiverse.speech.tts.Synthesizer``), one synthesiser per voice, kept warm."""

    def __init__(self) -> None:
        self._voices: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.synthesize("Hello.")

    def _synth(self, voice: dict[str, Any] | None):
        from gaiverse.speech.tts import Synthesizer, VoiceSettings

        key = tuple(sorted((voice or {}).items()))
        with self._lock:
            if key not in self._voices:
                self._voices[key] = Synthesizer(VoiceSettings(**(voice or {})))
            return self._voices[key]

    def synthesize(self, text: str, voice: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        out = []
        for chunk in self._synth(voice).stream(text):
            pcm = np.asarray(chunk.pcm)
            if pcm.dtype != np.int16:
                pcm = (np.clip(pcm, -1.0, 1.0) * 32767).astype(np.int16)
            out.append({"pcm": pcm.astype("<i2").tobytes(), "sample_rate": int(chunk.sample_rate),
                        "phonemes": [tuple(p) for p in (chunk.phonemes or [])]})
        return out


RATE_BY_STYLE = {"gruff": 0.92, "formal": 0.96, "friendly": 1.08, "scholarly": 1.0}


def npc_voice(persona: NpcPersona) -> dict[str, Any]:
    """A voice for a preset NPC: the speaking rate from its style and id.

    Only the rate, because Piper applies it for free, while a WORLD pitch shift adds ~40% to
    synthesis time, which the first-audio latency cannot afford; generated NPCs bring their own voice.
    """
    h = int(hashlib.sha256(persona.id.encode()).hexdigest()[:6], 16)
    return {"rate": round(RATE_BY_STYLE.get(persona.style, 1.0) + ((h >> 4) % 5 - 2) * 0.02, 3)}
