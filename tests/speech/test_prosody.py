"""Prosody: WORLD pitch on tones with known F0, energy, voicing and speaking rate, and two real readers."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.speech.asr import load_audio
from gaiverse.speech.prosody import prosody

from .conftest import SPEECH_DATA

RATE = 16000


def harmonic(f0: np.ndarray, amplitude: float = 0.3) -> np.ndarray:
    """A voice-like tone (7 harmonics) following the per-sample pitch curve f0 (Hz)."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    return (amplitude * sum(np.sin(k * phase) / k for k in range(1, 8)) / 1.6).astype(np.float32)


def test_steady_tone_pitch_energy_and_voicing():
    tone = harmonic(np.full(RATE * 2, 150.0))
    p = prosody(tone, RATE)
    assert p["pitch_median_hz"] == pytest.approx(150, rel=0.02)
    assert p["pitch_range_semitones"] < 0.5
    assert p["voiced_fraction"] > 0.9 and p["duration_s"] == 2.0
    rms = float(np.sqrt(np.mean(tone.astype(np.float64) ** 2)))
    assert p["energy_rms_db"] == pytest.approx(20 * np.log10(rms), abs=0.5)
    assert p["speaking_rate_wps"] is None


def test_glide_over_an_octave_has_a_wide_range():
    p = prosody(harmonic(np.geomspace(110, 220, RATE * 2)), RATE)
    assert 9.0 < p["pitch_range_semitones"] < 12.5
    assert p["pitch_median_hz"] == pytest.approx(155, rel=0.05)


def test_silence_and_speaking_rate():
    silent = prosody(np.zeros(RATE, dtype=np.float32), RATE)
    assert silent["pitch_median_hz"] is None and silent["energy_rms_db"] == -120.0 and silent["voiced_fraction"] == 0
    speech = np.concatenate([np.zeros(RATE // 2, np.float32), harmonic(np.full(RATE * 2, 120.0)),
                             np.zeros(RATE // 2, np.float32)])
    assert prosody(speech, RATE, transcript="one two three four")["speaking_rate_wps"] == pytest.approx(2.0, rel=0.05)


def test_real_readers_female_higher_than_male():
    female = prosody(load_audio(SPEECH_DATA / "librispeech_198-209-0000.ogg")[: 6 * RATE], RATE)
    male = prosody(load_audio(SPEECH_DATA / "librispeech_3436-172162-0000.ogg")[: 6 * RATE], RATE)
    assert 165 < female["pitch_median_hz"] < 300 and 85 < male["pitch_median_hz"] < 165
    assert female["pitch_median_hz"] > 1.4 * male["pitch_median_hz"]
    assert 0.3 < female["voiced_fraction"] < 0.95 and 0.3 < male["voiced_fraction"] < 0.95
    assert female["duration_s"] == 6.0 and female["energy_rms_db"] > -40


@pytest.mark.parametrize("samples, sr, message", [
    (np.zeros((2, 100)), RATE, "mono"), (np.zeros(0), RATE, "non-empty"), (np.zeros(100), 100, "`sr`"),
    (np.full(100, np.inf), RATE, "NaN or infinite"),
])
def test_bad_input_is_refused(samples, sr, message):
    with pytest.raises(ValueError, match=message):
        prosody(samples, sr)


def test_octave_slips_are_folded_back():
    from gaiverse.speech.prosody import fix_octave_jumps

    track = np.full(60, 110.0)
    track[20:24] = 220.0  # a tracker slipping to the second harmonic for 4 frames
    track[40] = 55.0
    track[50:] = 0.0
    fixed = fix_octave_jumps(track, window=21)
    assert np.allclose(fixed[:50], 110.0) and np.all(fixed[50:] == 0)
    glide = np.geomspace(100, 200, 60)  # a real octave glide over 0.6 s is kept
    assert np.allclose(fix_octave_jumps(glide, window=21), glide)
