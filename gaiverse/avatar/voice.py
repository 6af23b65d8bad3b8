"""The avatar's voice (AV-c1, AV-c2): Piper TTS converted towards the user's voice with the WORLD vocoder.

A :class:`VoiceProfile` says where the voice should land: F0 median (Hz) and range (semitones, 5th to
95th percentile), a frequency warp of the spectral envelope (vocal-tract length: 1.2 moves every formant
20 % up, the step from a typical adult male to a typical female voice) and a speaking rate.
``VoiceProfile.from_analysis`` builds it from the capture analysis (``gaiverse.avatar.analysis``: its
mean timbre MFCCs) and the decided ``AvatarParams`` (pitch, range and rate, with the user's wishes such
as "deeper voice" already folded in).

``synthesize`` speaks with Piper (``gaiverse.speech.tts``; the rate goes to Piper's length_scale) and
``convert`` re-synthesises any audio with WORLD (pyworld): Harvest F0 mapped in the log domain onto the
target median and range (so the contour keeps its shape), CheapTrick envelope and D4C aperiodicity
warped in frequency, and the first harmonic restored (``H1_H2_DB``). The warp is not guessed from
pitch: it is searched so that the converted base voice's mean MFCCs (measured exactly as the analysis
measured the user) come closest to the user's, because formant spacing and pitch vary independently
between speakers. That search reads a shipped table (``checkpoints/voice/<voice>.json``: the converted
base voice's MFCCs over a grid of pitches and warps, keyed by the voice weights' sha256 and the
measurement settings) instead of re-synthesising the base voice in every process (~15 s + 2-6 s per
profile before); ``python -m gaiverse.avatar.voice`` rebuilds it, and a key mismatch measures it once
into the data dir. Piper runs without its sampling noise, so a profile always gives the same audio. (A spectral tilt fitted the same way on top of the warp lowered the envelope distance
for 2 of 6 real talkers and raised it for 4, so the profile has none.)

``measure_voice`` / ``voice_distance`` are the match measures (F0 median and range errors, mel-cepstral
distortion of the long-term average envelopes); ``match_report`` runs them for one talker, with the
unconverted Piper voice as the baseline.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaiverse.avatar.decision import BASE_VOICE_F0_HZ, AvatarParams
from gaiverse.config import REPO_ROOT

log = logging.getLogger(__name__)

BASE_VOICE = "en_US-joe-medium"
"""The Piper voice every avatar voice is converted from."""
RANGE_REFERENCE_SEMITONES = 8.0
"""``AvatarParams.pitch_range_scale`` multiplies this (the decision sets scale = measured range / 8)."""
FRAME_PERIOD_MS = 5.0
"""WORLD frame period. 10 ms would halve CheapTrick, D4C and synthesis (~10 % of a conversion; Harvest,
the bulk, does not depend on it) but put GRID brbk7n's converted median 1.2 semitones over its target
(0.1 at 5 ms), so it stays at 5 ms."""
PIPER_NOISE_SCALE = 0.0
PIPER_NOISE_W_SCALE = 0.0
"""Piper's generator and duration noise scales for the avatar voice. Piper draws fresh noise in its ONNX
graph on every call (the voice's defaults 0.667 / 0.8) and cannot be seeded, so the same profile gave a
different F0 contour each time (0.2-1.0 semitone median spread on low voices). At zero the model speaks
its mean prosody: the same text and profile give the same samples, still Piper's own voice."""
WARP_LIMITS = (0.78, 1.32)
"""Envelope warp search bounds: roughly the spread of adult vocal-tract lengths around the base voice."""
FALLBACK_WARP_EXPONENT = 0.25
"""Without a timbre measure, warp = (target F0 / base F0) ** this (adult female/male formants differ by
~15-20 % while F0 differs by ~70-90 %)."""
WISH_TIMBRE_FRACTION = 0.3
"""Share of a wished pitch change (params pitch minus measured pitch) also applied to the formants, so
"deeper voice" sounds deeper, not only lower."""
MATCH_COEFFS = slice(1, 13)
"""MFCCs compared when searching the warp: c1..c12 (c0 is loudness)."""
REFERENCE_TEXT = ("The quick brown fox jumps over the lazy dog. Please call Stella and ask her to bring "
                  "these things with her from the store.")
"""Phonetically varied sentences (~6 s) the base voice speaks to measure its timbre for the table."""
ANALYSIS_RATE = 16_000
H1_H2_DB = 5.0
"""Level of the first harmonic over the second that re-synthesised voiced frames get at least. Piper's
envelope has H1-H2 near -22 dB (almost no fundamental), real modal voices a few dB above zero (+4.6 to
+7.8 dB on the GRID and LibriSpeech talkers); without it a re-synthesised low voice is tracked an octave
up (GRID bbaf2n's 115 Hz target measured 134-140 Hz)."""


@dataclass(frozen=True)
class VoiceProfile:
    """Where the converted voice lands (defaults: the base voice's median pitch, the reference range,
    no warp, its own rate)."""

    f0_median_hz: float = BASE_VOICE_F0_HZ
    f0_range_semitones: float = RANGE_REFERENCE_SEMITONES
    warp: float = 1.0
    """Spectral envelope frequency factor: > 1 = shorter vocal tract, formants up (brighter)."""
    speaking_rate: float = 1.0
    """Multiplier on the base voice's rate (Piper length_scale = 1 / rate)."""
    voice: str = BASE_VOICE
    source: str = "default"
    """How the timbre was set: "measured" (warp searched on the user's MFCCs), "pitch" (fallback from the
    target pitch) or "default" (no analysis)."""

    def __post_init__(self) -> None:
        checks = (("f0_median_hz", self.f0_median_hz, 50.0, 400.0),
                  ("f0_range_semitones", self.f0_range_semitones, 0.5, 36.0),
                  ("warp", self.warp, 0.6, 1.6), ("speaking_rate", self.speaking_rate, 0.5, 2.0))
        for name, value, lo, hi in checks:
            if not (np.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"`{name}` must be within {lo}..{hi}, got {value}")

    @property
    def length_scale(self) -> float:
        return 1.0 / self.speaking_rate

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_analysis(cls, analysis: Any, params: AvatarParams | None = None,
                      voice: str = BASE_VOICE) -> VoiceProfile:
        """Profile from the analysis (``CaptureAnalysis``, its ``to_json()``, or None) and the decision.

        Pitch median, range and rate come from ``params`` (they already hold the user's wishes); the
        warp is searched against the analysis' timbre. Without a timbre the warp follows the
        target pitch (``FALLBACK_WARP_EXPONENT``); without ``params`` the measured pitch is used.
        """
        measured = _analysis_values(analysis)
        if params is None:
            f0 = measured.get("median_hz") or BASE_VOICE_F0_HZ
            spread = measured.get("range_semitones") or RANGE_REFERENCE_SEMITONES
            params = AvatarParams(pitch_semitones=float(12 * np.log2(f0 / BASE_VOICE_F0_HZ)),
                                  pitch_range_scale=spread / RANGE_REFERENCE_SEMITONES)
        target_f0 = float(np.clip(BASE_VOICE_F0_HZ * 2 ** (params.pitch_semitones / 12), 55.0, 380.0))
        target_range = float(np.clip(RANGE_REFERENCE_SEMITONES * params.pitch_range_scale, 1.0, 30.0))
        rate = float(np.clip(params.speaking_rate, 0.5, 2.0))
        timbre = measured.get("timbre")
        if timbre is not None:
            warp = table_warp(np.asarray(timbre["mfcc_mean"], dtype=np.float64), target_f0, voice)
            source = "measured"
        else:
            warp = (target_f0 / BASE_VOICE_F0_HZ) ** FALLBACK_WARP_EXPONENT
            source = "pitch" if analysis is not None else "default"
        if measured.get("median_hz"):  # a wished pitch change also moves the formants a little
            wish_semitones = 12 * np.log2(target_f0 / measured["median_hz"])
            warp *= 2 ** (WISH_TIMBRE_FRACTION * wish_semitones / 12)
        warp = float(np.clip(warp, *WARP_LIMITS))
        return cls(target_f0, target_range, warp, rate, voice, source)


def _analysis_values(analysis: Any) -> dict[str, Any]:
    """median_hz, range_semitones and timbre (or absent) from any shape of analysis the flow carries."""
    if analysis is None:
        return {}
    if hasattr(analysis, "to_json"):
        analysis = analysis.to_json()
    if not isinstance(analysis, dict):
        raise ValueError(f"`analysis` must be a CaptureAnalysis, its JSON dict or None, "
                         f"got {type(analysis).__name__}")

    def measure(key: str) -> dict | None:
        item = analysis.get(key)
        return item.get("value") if isinstance(item, dict) and "quality" in item else item

    f0 = measure("f0") or {}
    out: dict[str, Any] = {"median_hz": f0.get("median_hz", analysis.get("f0_median_hz")),
                           "range_semitones": f0.get("range_semitones", analysis.get("f0_range_semitones"))}
    timbre = measure("timbre")
    if isinstance(timbre, dict) and len(timbre.get("mfcc_mean") or []) >= MATCH_COEFFS.stop:
        out["timbre"] = timbre
    return out


# -- WORLD analysis / conversion / synthesis ---------------------------------------------------------

@dataclass
class WorldFeatures:
    """WORLD parameters of one signal: F0 (Hz, 0 unvoiced), envelope and aperiodicity per 5 ms frame."""

    f0: np.ndarray
    envelope: np.ndarray
    aperiodicity: np.ndarray
    sample_rate: int
    n_samples: int

    def speech_frames(self, floor_db: float = 35.0) -> np.ndarray:
        """Frames within ``floor_db`` of the loudest, as the analysis picks the user's speech frames
        (quiet phrase ends would otherwise pull the median F0 under what the user was measured at)."""
        energy = 10 * np.log10(self.envelope.sum(1) + 1e-20)
        return energy > energy.max() - floor_db


def analyse_world(audio: np.ndarray, sample_rate: int) -> WorldFeatures:
    """Harvest F0 (octave jumps folded), CheapTrick envelope and D4C aperiodicity of mono float audio."""
    import pyworld

    from gaiverse.speech.prosody import world_f0

    x = np.ascontiguousarray(_check_audio(audio, sample_rate), dtype=np.float64)
    # Harvest, not DIO: DIO reads the Piper voice an octave high (see gaiverse.speech.prosody).
    f0, times = world_f0(x, sample_rate, FRAME_PERIOD_MS, "harvest")
    return WorldFeatures(f0, pyworld.cheaptrick(x, f0, times, sample_rate),
                         pyworld.d4c(x, f0, times, sample_rate), int(sample_rate), x.size)


OCTAVE_SLIP_SEMITONES = 9.0
"""Voiced frames more than this above their utterance's median F0 are read as a tracker's octave slip
and folded down: on Piper's voice (first harmonic ~22 dB under the second) Harvest puts about a fifth of
the frames, weakly periodic ones, 6-15 semitones up; re-synthesised there they jump an octave (a
converted voice then measured a 27-semitone range for a 15-semitone target; folded: 16)."""


def fold_octave_slips(f0: np.ndarray) -> np.ndarray:
    """F0 with voiced frames over ``OCTAVE_SLIP_SEMITONES`` above the median halved (once)."""
    voiced = f0 > 0
    if voiced.sum() < 5:
        return f0
    out = f0.copy()
    median = np.median(f0[voiced])
    slipped = voiced & (12 * np.log2(np.maximum(f0, 1e-9) / median) > OCTAVE_SLIP_SEMITONES)
    out[slipped] = f0[slipped] / 2
    return out


def f0_stats(f0: np.ndarray) -> tuple[float, float]:
    """(median Hz, 5-95 % range in semitones) of the voiced frames; the range floor is 1 semitone."""
    voiced = f0[f0 > 0]
    if voiced.size < 5:
        raise ValueError(f"audio has only {voiced.size} voiced frames: no pitch to convert")
    spread = 12 * np.log2(np.percentile(voiced, 95) / np.percentile(voiced, 5))
    return float(np.median(voiced)), float(max(spread, 1.0))


def map_f0(f0: np.ndarray, target_median_hz: float, target_range_semitones: float,
           speech: np.ndarray | None = None) -> np.ndarray:
    """Voiced F0 (octave slips folded) moved in log2 so the median and 5-95 % range of its ``speech``
    frames (default all) become the targets; unvoiced frames stay 0."""
    f0 = fold_octave_slips(f0)
    median, spread = f0_stats(f0 if speech is None or (f0[speech] > 0).sum() < 5 else f0[speech])
    ratio = float(np.clip(target_range_semitones / spread, 0.25, 4.0))
    out = np.zeros_like(f0)
    voiced = f0 > 0
    out[voiced] = target_median_hz * 2.0 ** (ratio * np.log2(f0[voiced] / median))
    return np.clip(out, 0.0, 1000.0) * voiced


def warp_axis(n_bins: int, warp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation indices (i0, i1, frac) reading bin k of the output at bin k / warp."""
    source = np.clip(np.arange(n_bins, dtype=np.float64) / warp, 0, n_bins - 1)
    i0 = np.floor(source).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_bins - 1)
    return i0, i1, source - i0


def warp_envelope(features: WorldFeatures, warp: float) -> tuple[np.ndarray, np.ndarray]:
    """(envelope, aperiodicity) with frequency f of the output read at f / ``warp`` (all frames at once)."""
    i0, i1, frac = warp_axis(features.envelope.shape[1], warp)
    env = features.envelope[:, i0] * (1 - frac) + features.envelope[:, i1] * frac
    ap = features.aperiodicity[:, i0] * (1 - frac) + features.aperiodicity[:, i1] * frac
    return np.ascontiguousarray(env), np.ascontiguousarray(np.clip(ap, 0.0, 1.0))


def restore_fundamental(envelope: np.ndarray, f0: np.ndarray, sample_rate: int,
                        h1_h2_db: float = H1_H2_DB) -> np.ndarray:
    """Envelope raised below 2 F0 in voiced frames whose first harmonic lies more than ``h1_h2_db`` under
    the second: full gain up to F0, fading to none at 2 F0 (linear in frequency, in dB)."""
    freqs = np.linspace(0, sample_rate / 2, envelope.shape[1])
    voiced = np.flatnonzero(f0 > 0)
    if voiced.size == 0:
        return envelope
    log_env = np.log10(envelope[voiced] + 1e-30)
    rows = np.arange(voiced.size)

    def level(hz: np.ndarray) -> np.ndarray:
        pos = np.clip(hz / freqs[1], 0, freqs.size - 1.001)
        k = pos.astype(np.int64)
        return 10 * (log_env[rows, k] * (k + 1 - pos) + log_env[rows, k + 1] * (pos - k))

    f = f0[voiced]
    gain_db = np.maximum(0.0, h1_h2_db - (level(f) - level(2 * f)))
    shape = np.clip((2 * f[:, None] - freqs[None, :]) / f[:, None], 0.0, 1.0)
    out = envelope.copy()
    out[voiced] = envelope[voiced] * 10 ** (gain_db[:, None] * shape / 10)
    return out


def resynthesise(features: WorldFeatures, profile: VoiceProfile, peak: float | None = None) -> np.ndarray:
    """Float32 audio of ``features`` with the profile's pitch and timbre, scaled to ``peak`` if given."""
    import pyworld

    f0 = map_f0(features.f0, profile.f0_median_hz, profile.f0_range_semitones, features.speech_frames())
    env, ap = warp_envelope(features, profile.warp)
    env = restore_fundamental(env, f0, features.sample_rate)
    y = pyworld.synthesize(f0, env, ap, features.sample_rate, FRAME_PERIOD_MS)[: features.n_samples]
    if y.size < features.n_samples:
        y = np.pad(y, (0, features.n_samples - y.size))
    top = float(np.abs(y).max())
    if peak is not None and top > 0:
        y = y * (peak / top)
    return y.astype(np.float32)


def convert(audio: np.ndarray, sample_rate: int, profile: VoiceProfile) -> np.ndarray:
    """Any mono float speech converted to ``profile`` (same rate, same length, same peak level).

    The source's own F0 median and range (over its speech frames) are measured and mapped onto the
    profile's; speaking rate is not changed here (only Piper's synthesis applies it).
    """
    x = _check_audio(audio, sample_rate)
    return resynthesise(analyse_world(x, sample_rate), profile, peak=float(np.abs(x).max()))


def piper_speech(text: str, voice: str = BASE_VOICE, rate: float = 1.0) -> tuple[np.ndarray, int]:
    """``text`` by the plain Piper voice (the unconverted baseline): (float32 samples, sample rate).

    Deterministic (``PIPER_NOISE_SCALE``): the same text, voice and rate give the same samples.
    """
    from piper import SynthesisConfig

    from gaiverse.speech.tts import VoiceSettings, load_voice

    if not isinstance(text, str) or not text.strip():
        raise ValueError("`text` to synthesise is empty")
    settings = VoiceSettings(voice=voice, rate=rate)  # validates the rate
    piper = load_voice(settings.voice)
    config = SynthesisConfig(length_scale=1.0 / settings.rate, noise_scale=PIPER_NOISE_SCALE,
                             noise_w_scale=PIPER_NOISE_W_SCALE)
    chunks = [chunk.audio_float_array for chunk in piper.synthesize(text.strip(), syn_config=config)]
    return np.clip(np.concatenate(chunks), -1.0, 1.0).astype(np.float32), int(piper.config.sample_rate)


def synthesize(text: str, profile: VoiceProfile) -> tuple[np.ndarray, int]:
    """``text`` spoken by Piper at the profile's rate and converted to its pitch and timbre:
    (float32 mono samples in [-1, 1], sample rate)."""
    if not isinstance(profile, VoiceProfile):
        raise ValueError(f"`profile` must be a VoiceProfile, got {type(profile).__name__}")
    audio, rate = piper_speech(text, profile.voice, profile.speaking_rate)
    return convert(audio, rate, profile), rate


def _check_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if not isinstance(audio, np.ndarray) or audio.ndim != 1:
        got = getattr(audio, "shape", type(audio).__name__)
        raise ValueError(f"`audio` must be a mono 1-D float array, got {got}")
    if not 8000 <= int(sample_rate) <= 96_000:
        raise ValueError(f"`sample_rate` must be 8000..96000 Hz, got {sample_rate}")
    if audio.size < 0.2 * sample_rate:
        raise ValueError(f"`audio` lasts {audio.size / sample_rate:.3f} s: need at least 0.2 s of speech")
    if not np.isfinite(audio).all():
        raise ValueError("`audio` holds NaN or infinite samples")
    return audio.astype(np.float64, copy=False)


# -- timbre search ------------------------------------------------------------------------------------------

_REFERENCE: dict[str, WorldFeatures] = {}
_REFERENCE_LOCK = threading.Lock()


def reference_features(voice: str = BASE_VOICE) -> WorldFeatures:
    """WORLD features of the base voice speaking ``REFERENCE_TEXT`` at 16 kHz (once per process; only the
    table build and the exact ``fit_warp`` need them)."""
    with _REFERENCE_LOCK:
        if voice not in _REFERENCE:
            from gaiverse.speech.asr import resample

            audio, rate = piper_speech(REFERENCE_TEXT, voice)
            audio = resample(audio, rate, ANALYSIS_RATE)
            _REFERENCE[voice] = analyse_world(audio, ANALYSIS_RATE)
            log.info("measured the base voice %s for timbre matching", voice)
        return _REFERENCE[voice]


def converted_mfcc(reference: WorldFeatures, f0_hz: float, range_semitones: float, warp: float) -> np.ndarray:
    """Mean MFCCs (as ``analysis.timbre_of`` measures the user) of the reference converted this way."""
    from gaiverse.avatar.analysis import timbre_of

    profile = VoiceProfile(f0_hz, range_semitones, warp)
    measure = timbre_of(resynthesise(reference, profile), reference.sample_rate)
    return np.asarray(measure.value["mfcc_mean"], dtype=np.float64)


def _parabola_minimum(grid: np.ndarray, cost: np.ndarray) -> float:
    """The best grid point, refined by the vertex of the parabola through it and its neighbours."""
    best = int(np.argmin(cost))
    x = float(grid[best])
    if 0 < best < grid.size - 1:
        c0, c1, c2 = cost[best - 1: best + 2]
        denom = c0 - 2 * c1 + c2
        if denom > 0:
            x += 0.5 * (c0 - c2) / denom * float(grid[1] - grid[0])
    return x


def fit_warp(user_mfcc: np.ndarray, f0_hz: float, range_semitones: float,
             voice: str = BASE_VOICE, steps: int = 7) -> float:
    """The envelope warp bringing the converted base voice's mean MFCCs (c1..c12) closest to ``user_mfcc``,
    searched exactly (slow: each grid point re-synthesises the reference; ``table_warp`` is the fast path).

    A grid over log(warp) within ``WARP_LIMITS`` (each point re-synthesises the reference at the
    target pitch and measures it as the analysis measured the user), refined by the vertex of the
    parabola through the best point and its neighbours.
    """
    reference = reference_features(voice)
    target = np.asarray(user_mfcc, dtype=np.float64)[MATCH_COEFFS]
    grid = np.linspace(np.log(WARP_LIMITS[0]), np.log(WARP_LIMITS[1]), steps)
    cost = np.array([np.sum((converted_mfcc(reference, f0_hz, range_semitones, float(np.exp(g)))[MATCH_COEFFS]
                             - target) ** 2) for g in grid])
    return float(np.exp(_parabola_minimum(grid, cost)))


# -- the shipped base-voice measurement -------------------------------------------------------------------

MEASUREMENT_VERSION = 1
"""Bump when anything that changes the base-voice table changes (the key also holds the settings below)."""
TABLE_F0_HZ = tuple(float(round(f, 2)) for f in np.geomspace(55.0, 380.0, 12))
"""Target pitches of the table (~3 semitones apart; ``table_warp`` interpolates in log F0 between them)."""
TABLE_WARP_STEPS = 9
"""Warps of the table, log-spaced within ``WARP_LIMITS``."""
TABLE_DIR = REPO_ROOT / "checkpoints" / "voice"
"""Where the shipped tables live: ``<voice>.json``."""


def voice_model_sha256(voice: str = BASE_VOICE) -> str:
    """sha256 of the Piper voice's .onnx file: the table is only valid for these exact weights."""
    import hashlib

    from gaiverse.speech.tts import voice_path

    digest = hashlib.sha256()
    with open(voice_path(voice), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_voice_key(voice: str = BASE_VOICE) -> dict[str, Any]:
    """What a stored table must have been measured with to be used: the voice weights, the code version
    and every setting the measurement depends on."""
    return {"voice": voice, "model_sha256": voice_model_sha256(voice), "measurement_version": MEASUREMENT_VERSION,
            "reference_text": REFERENCE_TEXT, "frame_period_ms": FRAME_PERIOD_MS, "h1_h2_db": H1_H2_DB,
            "piper_noise": [PIPER_NOISE_SCALE, PIPER_NOISE_W_SCALE], "range_semitones": RANGE_REFERENCE_SEMITONES,
            "f0_hz": list(TABLE_F0_HZ), "warps": [round(float(w), 6) for w in table_warps()]}


def table_warps() -> np.ndarray:
    return np.geomspace(WARP_LIMITS[0], WARP_LIMITS[1], TABLE_WARP_STEPS)


def measure_base_voice(voice: str = BASE_VOICE) -> dict[str, Any]:
    """The base voice's mean MFCCs (c0..c12) converted to every (table F0, table warp), at the reference
    range: the whole of what the warp search needs, so a profile costs no synthesis at run time."""
    reference = reference_features(voice)
    median, spread = f0_stats(fold_octave_slips(reference.f0[reference.speech_frames()]))
    mfcc = [[[round(float(c), 4) for c in converted_mfcc(reference, f0, RANGE_REFERENCE_SEMITONES, float(w))]
             for w in table_warps()] for f0 in TABLE_F0_HZ]
    return {"key": base_voice_key(voice), "reference_f0_median_hz": round(median, 2),
            "reference_f0_range_semitones": round(spread, 2), "mfcc": mfcc}


def write_base_voice_table(path: Path, voice: str = BASE_VOICE) -> dict[str, Any]:
    """Measure the base voice and store the table as JSON at ``path`` (atomically)."""
    table = measure_base_voice(voice)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    tmp.replace(path)
    log.info("wrote the base-voice table %s", path)
    return table


def _read_table(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if table.get("key") != key:
        log.info("base-voice table %s was measured with other settings or weights: not used", path)
        return None
    return table


_TABLES: dict[str, dict[str, Any]] = {}


def cached_table_path(voice: str = BASE_VOICE) -> Path:
    """Where a table measured at run time is kept (the data dir outlives the process)."""
    from gaiverse.config import get_settings

    return get_settings().data_dir / "voice" / f"{voice}.json"


def base_voice_table(voice: str = BASE_VOICE) -> dict[str, Any]:
    """The base voice's table: the shipped one (``TABLE_DIR``) when its key matches the installed voice and
    this code, else the one cached under the data dir, else measured now (~1 min, once) and cached there."""
    with _REFERENCE_LOCK:
        if voice not in _TABLES:
            key = base_voice_key(voice)
            table = _read_table(TABLE_DIR / f"{voice}.json", key) or _read_table(cached_table_path(voice), key)
            _TABLES[voice] = table
        needs_measuring = _TABLES[voice] is None
    if needs_measuring:  # outside the lock: measuring takes reference_features' lock itself
        log.warning("no base-voice table for %s matches this voice and code: measuring it", voice)
        table = write_base_voice_table(cached_table_path(voice), voice)
        with _REFERENCE_LOCK:
            _TABLES[voice] = table
    return _TABLES[voice]


def table_warp(user_mfcc: np.ndarray, f0_hz: float, voice: str = BASE_VOICE) -> float:
    """``fit_warp`` from the base-voice table: the MFCCs at ``f0_hz`` interpolated in log F0, the cost
    over the table's warps, refined by the parabola vertex (milliseconds instead of seconds)."""
    table = base_voice_table(voice)
    mfcc = np.asarray(table["mfcc"], dtype=np.float64)  # (f0, warp, coeff)
    log_f0 = np.log(np.asarray(table["key"]["f0_hz"]))
    x = float(np.clip(np.log(f0_hz), log_f0[0], log_f0[-1]))
    i = int(np.clip(np.searchsorted(log_f0, x) - 1, 0, log_f0.size - 2))
    t = (x - log_f0[i]) / (log_f0[i + 1] - log_f0[i])
    at_f0 = mfcc[i] * (1 - t) + mfcc[i + 1] * t
    target = np.asarray(user_mfcc, dtype=np.float64)[MATCH_COEFFS]
    cost = np.sum((at_f0[:, MATCH_COEFFS] - target) ** 2, axis=1)
    grid = np.log(np.asarray(table["key"]["warps"]))
    return float(np.exp(_parabola_minimum(grid, cost)))


# -- match measures ------------------------------------------------------------------------------------------

MCD_ORDER = 24
"""Cepstral coefficients c1..c24 compared by the mel-cepstral distortion."""


def average_envelope_cepstrum(audio: np.ndarray, sample_rate: int, n_mel: int = 64) -> np.ndarray:
    """Cepstrum (c0..c``MCD_ORDER``) of the long-term average log-amplitude envelope of the voiced,
    non-silent frames, on a mel-spaced axis from 60 Hz to 7.6 kHz (audio at any rate, analysed at 16 kHz)."""
    from scipy.fft import dct

    from gaiverse.speech.asr import resample

    x = resample(_check_audio(audio, sample_rate).astype(np.float32), int(sample_rate), ANALYSIS_RATE)
    features = analyse_world(x, ANALYSIS_RATE)
    keep = (features.f0 > 0) & features.speech_frames()
    if keep.sum() < 10:
        raise ValueError(f"audio has only {int(keep.sum())} voiced frames: need 10 to compare envelopes")
    log_amp = 0.5 * np.log(features.envelope[keep] + 1e-20).mean(0)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    axis = 700 * (10 ** (np.linspace(mel(60.0), mel(7600.0), n_mel) / 2595) - 1)
    bins = np.linspace(0, ANALYSIS_RATE / 2, log_amp.size)
    # c_k = (1/N) sum_n log|H(w_n)| cos(k w_n): the real cepstrum's scale, so MCD values compare with
    # the literature's (a few dB between speakers); scipy's unnormalised DCT-II carries a factor 2N.
    return dct(np.interp(axis, bins, log_amp), type=2)[: MCD_ORDER + 1] / (2 * n_mel)


def mel_cepstral_distortion(a: np.ndarray, b: np.ndarray) -> float:
    """MCD in dB between two cepstra, c0 (level) excluded: 10/ln10 * sqrt(2 * sum (a_d - b_d)^2)."""
    diff = np.asarray(a)[1:] - np.asarray(b)[1:]
    return float(10 / np.log(10) * np.sqrt(2 * np.sum(diff ** 2)))


@dataclass
class VoiceMeasures:
    """What the match compares: F0 median and range (as the capture analysis measures a user: Harvest,
    10 ms, speech frames) and the long-term average envelope cepstrum."""

    f0_median_hz: float
    f0_range_semitones: float
    cepstrum: np.ndarray


def measure_voice(audio: np.ndarray, sample_rate: int, analysis: Any = None) -> VoiceMeasures:
    """Measures of one voice; pass the capture ``analysis`` of the same audio to reuse its F0."""
    from gaiverse.avatar.analysis import analyse_capture

    x = _check_audio(audio, sample_rate).astype(np.float32)
    if analysis is None:
        analysis = analyse_capture([], x, sample_rate, transcribe=False, body=False)
    f0 = analysis.f0
    if f0.value is None:
        raise ValueError(f"no pitch measurable in the audio: {f0.reason}")
    return VoiceMeasures(f0.value["median_hz"], f0.value["range_semitones"],
                         average_envelope_cepstrum(x, sample_rate))


def voice_distance(candidate: VoiceMeasures, reference: VoiceMeasures) -> dict[str, float]:
    """How far a candidate voice is from a reference voice: F0 median error (Hz, semitones), range error
    (semitones) and the MCD of the average envelopes (dB)."""
    c, r = candidate, reference
    return {"f0_median_hz": round(c.f0_median_hz, 2), "f0_range_semitones": round(c.f0_range_semitones, 2),
            "reference_f0_median_hz": round(r.f0_median_hz, 2),
            "reference_f0_range_semitones": round(r.f0_range_semitones, 2),
            "f0_median_error_hz": round(abs(c.f0_median_hz - r.f0_median_hz), 2),
            "f0_median_error_semitones": round(float(abs(12 * np.log2(c.f0_median_hz / r.f0_median_hz))), 3),
            "f0_range_error_semitones": round(abs(c.f0_range_semitones - r.f0_range_semitones), 2),
            "mcd_db": round(mel_cepstral_distortion(c.cepstrum, r.cepstrum), 3)}


def match_report(talker_audio: np.ndarray, sample_rate: int, text: str,
                 params: AvatarParams | None = None) -> dict[str, Any]:
    """Profile from one talker's speech (and ``params``, default: the measured pitch), then ``text`` by
    the converted voice and by the plain Piper voice (the baseline), both measured against the talker;
    also the seconds of synthesis + conversion per second of audio."""
    from gaiverse.avatar.analysis import analyse_capture

    analysis = analyse_capture([], _check_audio(talker_audio, sample_rate).astype(np.float32), sample_rate,
                               transcribe=False, body=False)
    talker = measure_voice(talker_audio, sample_rate, analysis)
    start = time.perf_counter()
    profile = VoiceProfile.from_analysis(analysis, params)
    profile_s = time.perf_counter() - start
    start = time.perf_counter()
    converted, rate = synthesize(text, profile)
    seconds = time.perf_counter() - start
    baseline, base_rate = piper_speech(text, profile.voice, profile.speaking_rate)
    return {"profile": profile.to_json(), "profile_s": round(profile_s, 3),
            "converted": voice_distance(measure_voice(converted, rate), talker),
            "baseline": voice_distance(measure_voice(baseline, base_rate), talker),
            "audio_s": round(converted.size / rate, 3),
            "synthesis_s_per_audio_s": round(seconds / (converted.size / rate), 3)}


if __name__ == "__main__":  # python -m gaiverse.avatar.voice [VOICE]: (re)build the shipped base-voice table
    import sys

    logging.basicConfig(level=logging.INFO)
    name = sys.argv[1] if len(sys.argv) > 1 else BASE_VOICE
    started = time.perf_counter()
    write_base_voice_table(TABLE_DIR / f"{name}.json", name)
    print(f"{TABLE_DIR / f'{name}.json'} in {time.perf_counter() - started:.1f} s")
