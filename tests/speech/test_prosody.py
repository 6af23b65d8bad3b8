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


def test_speech_spans_join_short_pauses_and_cut_long_runs():
    from gaiverse.speech.prosody import speech_pitch_track, speech_spans

    active = np.zeros(1000, bool)
    active[10:50] = active[60:100] = True  # a 10-frame pause: one stretch
    active[200:1000] = True  # 8 s of speech: cut into 4 s pieces
    assert speech_spans(active, max_gap=20, max_len=400) == [(10, 100), (200, 600), (600, 1000)]
    assert speech_spans(np.zeros(5, bool)) == []
    with pytest.raises(ValueError, match="`active` must be a 1-D bool array"):
        speech_pitch_track(np.zeros(1600), RATE, np.ones(10))
    assert not speech_pitch_track(np.zeros(1600), RATE, np.zeros(10, bool)).any()  # no speech: nothing tracked


def _real_clips() -> dict[str, np.ndarray]:
    """Every real speech recording of the repository (GRID talkers, JFK, two LibriSpeech readers) at 16 kHz,
    the long ones cut to their first 9 s (still two Harvest stretches) to keep the test lean."""
    from gaiverse.vision.video import decode_audio

    grid = SPEECH_DATA.parent / "avatar" / "grid"
    clips = {p.name: decode_audio(p) for p in sorted(grid.glob("*.mpg"))}
    clips.update({p.name: load_audio(p)[: 9 * RATE] for p in sorted(SPEECH_DATA.glob("*.ogg"))
                  + sorted(SPEECH_DATA.glob("*.flac"))})
    assert len(clips) >= 6
    return clips


@pytest.mark.slow
def test_speech_only_harvest_matches_whole_clip_harvest_on_real_speech():
    """Harvest run on the stretches of speech (what the avatar analysis does, to skip the pauses) gives the
    whole-clip Harvest F0 median within 2 % (1 % measured) and the same voicing on > 94 % of the frames."""
    from gaiverse.speech.prosody import speech_pitch_track, world_f0

    for name, audio in _real_clips().items():
        x = audio.astype(np.float64)
        frames = x[: x.size // 160 * 160].reshape(-1, 160)
        level = 10 * np.log10((frames ** 2).mean(1) + 1e-12)
        active = level > level.max() - 35
        whole = world_f0(x, RATE, 10.0, "harvest")[0][: active.size]
        whole = np.where(active[: whole.size], whole, 0.0)
        spans = speech_pitch_track(x, RATE, active)[: whole.size]
        ref, got = np.median(whole[whole > 0]), np.median(spans[spans > 0])
        assert abs(got / ref - 1) < 0.02, (name, got, ref)
        assert np.mean((whole > 0) == (spans > 0)) > 0.94, name  # 95-99 % measured
