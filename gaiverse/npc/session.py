"""The real-time NPC turn engine: input events in, typed output events out, with per-stage timestamps.

Implements NPC-c1 (text, voice and mouse/controller input), NPC-c2 (speech and facial expression
with the answer) and NPC-d1 (text streamed token by token, speech sentence by sentence, visemes
and gestures). One ``NpcSession`` per connected user and NPC; it is plain Python and knows its
models only through three small protocols, so the same engine runs on in-process models
(tests, benchmarks' baseline) and on Ray actors (``ray_actors/npc_runtime.py``, the API).

Input events (dicts, as the WebSocket receives them):
``{"type": "text", "text"}``, ``{"type": "audio", "pcm": bytes, "sample_rate"}`` (PCM16 LE mono
chunks), ``{"type": "end_of_speech"}``, ``{"type": "hci", "kind", "target_kind"?, "target"?,
"button"?, "axes"?}``.

Output events, each ``{"type", "turn", ..., "t": {"at", "since_input_ms"}}``: ``state``,
``transcript``, ``text_delta``, ``text_done``, ``expression``, ``gesture``, ``visemes``,
``audio`` (one per spoken sentence, base64 WAV) and ``error``. ``since_input_ms`` is measured
from the end of the user's input (the last key press, the end of speech, the click), which is
what the latency goals of the issue count from.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from gaiverse.npc.expression import visemes as text_visemes
from gaiverse.npc.hci import HciConfig, SignalError, SignalFilter, parse_signal
from gaiverse.npc.persona import NpcPersona
from gaiverse.npc.text import SENTENCE_END
from gaiverse.npc.understanding import HciSignal
from gaiverse.speech.wav import pcm16_wav

log = logging.getLogger(__name__)

RIG_CLIPS = ("idle", "wave", "nod", "shake_head", "point", "shrug", "walk")
"""Animation clips every generated NPC rig carries (and the built-in head imitates)."""
GESTURE_CLIP = {"bow": "nod", "beckon": "wave", "receive": "nod", "hand_over": "point", "think": "idle",
                "explain": "nod", "cross_arms": "shake_head", "wave_goodbye": "wave"}
"""Dialogue gestures without a clip of their own -> the closest rig clip."""
BEHAVIOUR_CLIP = {"walk_with_user": "walk", "look_at_target": "point"}


class SessionError(ValueError):
    """An input event the session cannot take; the message names what was wrong."""


class DialogueBackend(Protocol):
    """Runs one dialogue turn: events {"type": intent|expression|token|reply, ...} as plain dicts."""

    def turn(self, user_id: str, npc_id: str, text: str | None = None, signal: HciSignal | None = None,
             source: str = "text", persona: NpcPersona | None = None) -> Iterator[dict[str, Any]]:
        ...


class AsrBackend(Protocol):
    """Speech -> text: {"text", "language", "duration_s"} for PCM16 LE mono audio."""

    def transcribe(self, pcm: bytes, sample_rate: int) -> dict[str, Any]:
        ...


class TtsBackend(Protocol):
    """Text -> speech chunks [{"pcm": PCM16 LE bytes, "sample_rate", "phonemes": [(ph, start_s, end_s)]}]."""

    def synthesize(self, text: str, voice: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        ...


@dataclass
class SessionConfig:
    """Limits and output choices of one session."""

    max_text_chars: int = 500
    """Longest typed utterance accepted."""
    max_utterance_s: float = 30.0
    """Longest push-to-talk utterance; longer audio is refused with an error event."""
    sample_rates: tuple[int, ...] = (16000, 22050, 24000, 44100, 48000)
    """Microphone sample rates accepted (the web page sends 16 kHz)."""
    speak: bool = True
    """Synthesise speech (when a TTS backend is given)."""
    tts_workers: int = 1
    """Sentences synthesised ahead while earlier ones are sent (1 keeps the order and the CPU share fair)."""


class SentenceSplitter:
    """Cuts a token stream into finished sentences as soon as the next one starts (for sentence TTS)."""

    def __init__(self) -> None:
        self.buffer = ""

    def feed(self, token: str) -> list[str]:
        self.buffer += token
        ends = list(SENTENCE_END.finditer(self.buffer))
        if not ends:
            return []
        cut = ends[-1]
        done, self.buffer = self.buffer[:cut.start()], self.buffer[cut.end():]
        return [s.strip() for s in SENTENCE_END.split(done) if s.strip()]

    def flush(self) -> list[str]:
        rest, self.buffer = self.buffer.strip(), ""
        return [rest] if rest else []


class NpcSession:
    """One user's live conversation with one NPC: validates input events and streams output events."""

    def __init__(self, user_id: str, npc_id: str, dialogue: DialogueBackend, asr: AsrBackend | None = None,
                 tts: TtsBackend | None = None, voice: dict[str, Any] | None = None,
                 config: SessionConfig | None = None, hci: HciConfig | None = None,
                 persona: NpcPersona | None = None):
        if not user_id or not npc_id:
            raise ValueError(f"`user_id` and `npc_id` must be non-empty, got {user_id!r}, {npc_id!r}")
        self.user_id, self.npc_id = user_id, npc_id
        self.dialogue, self.asr, self.tts, self.voice = dialogue, asr, tts, voice
        self.persona = persona
        """A generated NPC's persona; None: the preset persona of ``npc_id``."""
        self.config = config or SessionConfig()
        self.hci = hci or HciConfig()
        self.signals = SignalFilter(self.hci)
        self.turn = 0
        self._audio = bytearray()
        self._audio_rate: int | None = None
        self._tts_pool = ThreadPoolExecutor(max_workers=self.config.tts_workers, thread_name_prefix="npc-tts")

    def close(self) -> None:
        self._tts_pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- input

    def handle(self, event: dict[str, Any], received_at: float | None = None) -> Iterator[dict[str, Any]]:
        """Output events for one input event; a bad event yields one ``error`` event naming the problem."""
        received_at = time.time() if received_at is None else received_at
        try:
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "text":
                yield from self._text_turn(event, received_at)
            elif kind == "audio":
                yield from self._audio_chunk(event, received_at)
            elif kind == "end_of_speech":
                yield from self._voice_turn(received_at)
            elif kind == "hci":
                yield from self._signal_turn(event, received_at)
            else:
                raise SessionError(f"`type` must be text, audio, end_of_speech or hci, got {kind!r}")
        except (SessionError, SignalError) as err:
            yield self._event("error", received_at, message=str(err))

    def _text_turn(self, event: dict[str, Any], t0: float) -> Iterator[dict[str, Any]]:
        text = event.get("text")
        if not isinstance(text, str) or not text.strip():
            raise SessionError(f"`text` must be a non-empty string, got {text!r}")
        if len(text) > self.config.max_text_chars:
            raise SessionError(f"`text` must be at most {self.config.max_text_chars} characters, got {len(text)}")
        yield from self._turn(t0, text=text.strip())

    def _audio_chunk(self, event: dict[str, Any], t0: float) -> Iterator[dict[str, Any]]:
        pcm, rate = event.get("pcm"), event.get("sample_rate")
        if not isinstance(pcm, (bytes, bytearray)) or len(pcm) % 2:
            raise SessionError("`pcm` must be 16-bit little-endian mono PCM (an even number of bytes)")
        if rate not in self.config.sample_rates:
            raise SessionError(f"`sample_rate` must be one of {self.config.sample_rates}, got {rate!r}")
        if self._audio_rate is not None and rate != self._audio_rate:
            raise SessionError(f"`sample_rate` changed within one utterance: {self._audio_rate} -> {rate}")
        if (len(self._audio) + len(pcm)) / 2 / rate > self.config.max_utterance_s:
            self._audio.clear()
            self._audio_rate = None
            raise SessionError(f"utterance longer than {self.config.max_utterance_s:g} s: dropped, speak shorter")
        if not self._audio:
            yield self._event("state", t0, state="listening")
        self._audio += pcm
        self._audio_rate = rate

    def _voice_turn(self, t0: float) -> Iterator[dict[str, Any]]:
        if self.asr is None:
            raise SessionError("voice input is unavailable: no speech recogniser is loaded")
        if not self._audio:
            raise SessionError("`end_of_speech` without audio: send `audio` chunks first")
        pcm, rate = bytes(self._audio), self._audio_rate or 16000
        self._audio.clear()
        self._audio_rate = None
        self.turn += 1
        yield self._event("state", t0, state="thinking")
        heard = self.asr.transcribe(pcm, rate)
        asr_ms = (time.time() - t0) * 1e3
        text = " ".join(str(heard.get("text", "")).split())
        yield self._event("transcript", t0, text=text, language=heard.get("language"),
                          duration_s=heard.get("duration_s"), asr_ms=round(asr_ms, 1))
        if not text:
            yield self._event("error", t0, message="no speech recognised: hold the button while you speak")
            yield self._event("state", t0, state="idle")
            return
        yield from self._turn(t0, text=text, source="voice", new_turn=False, stages={"asr_ms": asr_ms})

    def _signal_turn(self, event: dict[str, Any], t0: float) -> Iterator[dict[str, Any]]:
        payload = {k: v for k, v in event.items() if k != "type"}
        signal = parse_signal(payload, self.hci)
        if signal is None or not self.signals.accept(signal):
            return
        yield from self._turn(t0, signal=signal)

    # ---------------------------------------------------------------- one turn

    def _turn(self, t0: float, text: str | None = None, signal: HciSignal | None = None, source: str = "text",
              new_turn: bool = True, stages: dict[str, float] | None = None) -> Iterator[dict[str, Any]]:
        """dialogue -> text_delta... -> text_done, with expression, gesture, visemes and audio per sentence."""
        if new_turn:
            self.turn += 1
            yield self._event("state", t0, state="thinking")
        stages = dict(stages or {})
        splitter, pending, seq, reply, behaviour = SentenceSplitter(), [], 0, None, None
        for item in self.dialogue.turn(self.user_id, self.npc_id, text=text, signal=signal, source=source,
                                       persona=self.persona):
            kind = item["type"]
            if kind == "intent":
                if item["intent"] == "none" and signal is not None:  # a hover or an unmapped button: body only
                    yield from self._behaviour_only(item, t0)
                    return
                behaviour = item.get("behaviour")
                yield self._event("state", t0, state="thinking", intent=item["intent"], source=item["source"],
                                  target=item.get("target"), behaviour=item.get("behaviour"))
            elif kind == "expression":
                yield self._event("expression", t0, emotion=item["emotion"], intensity=item["intensity"],
                                  blendshapes=item["blendshapes"])
                yield self._event("gesture", t0, name=item["gesture"], clip=clip_for(item["gesture"]))
                if behaviour in BEHAVIOUR_CLIP and BEHAVIOUR_CLIP[behaviour] != clip_for(item["gesture"]):
                    yield self._event("gesture", t0, name=behaviour, clip=BEHAVIOUR_CLIP[behaviour])  # then walk
            elif kind == "token":
                if "first_token_ms" not in stages:
                    stages["first_token_ms"] = (time.time() - t0) * 1e3
                yield self._event("text_delta", t0, text=item["text"])
                for sentence in splitter.feed(item["text"]):
                    for part in first_clause(sentence) if seq == 0 else [sentence]:
                        pending.append(self._speak(seq, part))
                        seq += 1
                yield from self._ready(pending, t0, stages, block=False)
            elif kind == "reply":
                reply = item
        for sentence in splitter.flush():
            for part in first_clause(sentence) if seq == 0 else [sentence]:
                pending.append(self._speak(seq, part))
                seq += 1
        if reply is not None:
            yield self._event("text_done", t0, text=reply["text"], intent=reply["intent"],
                              grounded=reply["grounded"], refused=reply["refused"], sources=reply["sources"],
                              emotion=reply["emotion"], gesture=reply["gesture"])
        yield from self._ready(pending, t0, stages, block=True)
        stages["done_ms"] = (time.time() - t0) * 1e3
        yield self._event("state", t0, state="idle", timings={k: round(v, 1) for k, v in stages.items()})

    def _behaviour_only(self, intent: dict[str, Any], t0: float) -> Iterator[dict[str, Any]]:
        behaviour = intent.get("behaviour")
        if behaviour:
            yield self._event("gesture", t0, name=behaviour, clip=BEHAVIOUR_CLIP.get(behaviour, "idle"),
                              target=intent.get("target"))
        yield self._event("state", t0, state="idle", intent="none", behaviour=behaviour)

    def _speak(self, seq: int, sentence: str) -> tuple[int, str, Future | None]:
        """Start synthesising one sentence (or nothing without TTS)."""
        if self.tts is None or not self.config.speak:
            return seq, sentence, None
        return seq, sentence, self._tts_pool.submit(self.tts.synthesize, sentence, self.voice)

    def _ready(self, pending: list, t0: float, stages: dict[str, float], block: bool) -> Iterator[dict[str, Any]]:
        """visemes + audio events of the sentences whose speech is ready, in order."""
        while pending:
            seq, sentence, future = pending[0]
            if future is not None and not block and not future.done():
                return
            pending.pop(0)
            try:
                chunks = future.result() if future is not None else []
            except Exception as err:  # noqa: BLE001 - a failed sentence must not end the conversation
                log.exception("speech synthesis failed for %r", sentence)
                yield self._event("error", t0, message=f"speech synthesis failed: {type(err).__name__}: {err}")
                chunks = []
            if not chunks:
                yield self._event("visemes", t0, seq=seq, text=sentence, audio=False,
                                  visemes=[list(v) for v in text_visemes(sentence)])
                continue
            pcm = b"".join(c["pcm"] for c in chunks)
            rate = int(chunks[0]["sample_rate"])
            duration = len(pcm) / 2 / rate
            timed = phoneme_visemes(chunks) or text_visemes(sentence, duration_s=duration)
            yield self._event("visemes", t0, seq=seq, text=sentence, audio=True, visemes=[list(v) for v in timed])
            if "first_audio_ms" not in stages:
                stages["first_audio_ms"] = (time.time() - t0) * 1e3
                yield self._event("state", t0, state="speaking")
            yield self._event("audio", t0, seq=seq, text=sentence, format="wav", sample_rate=rate,
                              duration_s=round(duration, 3), data=base64.b64encode(wav_bytes(pcm, rate)).decode())

    def _event(self, kind: str, t0: float, **data: Any) -> dict[str, Any]:
        now = time.time()
        return {"type": kind, "turn": self.turn, **data,
                "t": {"at": round(now, 4), "since_input_ms": round((now - t0) * 1e3, 1)}}


def first_clause(sentence: str, max_chars: int = 80, min_chars: int = 20) -> list[str]:
    """A long first sentence split at its first comma/semicolon, so its first audio comes sooner."""
    if len(sentence) <= max_chars:
        return [sentence]
    match = re.compile(r"[,;:]\s+").search(sentence, min_chars)
    if match is None or len(sentence) - match.end() < min_chars:
        return [sentence]
    return [sentence[:match.start() + 1], sentence[match.end():]]


def clip_for(gesture: str) -> str:
    """The rig clip that plays a dialogue gesture."""
    return gesture if gesture in RIG_CLIPS else GESTURE_CLIP.get(gesture, "idle")


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """PCM16 LE mono -> a WAV file (what ``decodeAudioData`` plays)."""
    return pcm16_wav(pcm, sample_rate)


# ------------------------------------------------------------------ phonemes -> visemes

IPA_VISEME = [
    ("tʃ", "CH"), ("dʒ", "CH"), ("aɪ", "aa"), ("aʊ", "aa"), ("eɪ", "E"), ("oʊ", "O"), ("ɔɪ", "O"),
    ("p", "PP"), ("b", "PP"), ("m", "PP"), ("f", "FF"), ("v", "FF"), ("θ", "TH"), ("ð", "TH"),
    ("t", "DD"), ("d", "DD"), ("ɾ", "DD"), ("k", "kk"), ("g", "kk"), ("ɡ", "kk"), ("ʃ", "CH"), ("ʒ", "CH"),
    ("s", "SS"), ("z", "SS"), ("n", "nn"), ("l", "nn"), ("ŋ", "nn"), ("h", "kk"), ("ɹ", "RR"), ("r", "RR"),
    ("ɚ", "RR"), ("ɝ", "RR"), ("a", "aa"), ("ɑ", "aa"), ("æ", "aa"), ("ʌ", "aa"), ("ɐ", "aa"), ("e", "E"),
    ("ɛ", "E"), ("ə", "E"), ("i", "I"), ("ɪ", "I"), ("j", "I"), ("y", "I"), ("o", "O"), ("ɔ", "O"), ("ɒ", "O"),
    ("u", "U"), ("ʊ", "U"), ("w", "U"),
]
"""IPA phonemes (espeak-ng / Piper) -> the 15 Oculus visemes of ``gaiverse.npc.expression``."""
_IPA = re.compile("|".join(re.escape(p) for p, _ in sorted(IPA_VISEME, key=lambda x: -len(x[0]))))
_IPA_MAP = dict(IPA_VISEME)


def ipa_viseme(phoneme: str) -> str:
    """One IPA phoneme -> viseme; stress and length marks, spaces and punctuation are silence."""
    match = _IPA.search(phoneme)
    return _IPA_MAP[match.group()] if match else "sil"


def phoneme_visemes(chunks: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """Visemes timed by the synthesiser's phonemes across the chunks of one sentence (merged runs)."""
    out: list[tuple[str, float, float]] = []
    offset = 0.0
    for chunk in chunks:
        for ph, start, end in chunk.get("phonemes") or []:
            v, s, e = ipa_viseme(ph), offset + float(start), offset + float(end)
            if e <= s:
                continue
            if out and out[-1][0] == v:
                out[-1] = (v, out[-1][1], round(e, 4))
            else:
                out.append((v, round(s, 4), round(e, 4)))
        offset += len(chunk["pcm"]) / 2 / int(chunk["sample_rate"])
    return out
