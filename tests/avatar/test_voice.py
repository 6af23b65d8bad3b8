"""The avatar voice on real talkers: Piper converted with WORLD towards a GRID talker and a reader."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.avatar.analysis import analyse_capture, to_policy_inputs
from gaiverse.avatar.decision import BASE_VOICE_F0_HZ, HeuristicDecider
import json

from gaiverse.avatar import voice
from gaiverse.avatar.voice import (RANGE_REFERENCE_SEMITONES, VoiceProfile, convert, match_report,
                                   measure_voice, piper_speech, synthesize, voice_distance)
from gaiverse.config import REPO_ROOT
from gaiverse.vision.video import decode_audio

TEXT = "Hello, I am your new avatar. It is nice to finally meet you."
TALKERS = {"grid_brbk7n": REPO_ROOT / "data/avatar/grid/brbk7n.mpg",
           "librispeech_female": REPO_ROOT / "data/speech/librispeech_198-209-0000.ogg"}
"""A GRID talker at ~190 Hz and a reader an octave above the base voice (~105 Hz)."""


@pytest.fixture(scope="module")
def voices() -> dict[str, np.ndarray]:
    """16 kHz mono speech per talker (the first 6 s: enough voiced speech for F0 and timbre)."""
    return {name: decode_audio(path, max_seconds=6.0) for name, path in TALKERS.items()}


@pytest.fixture(scope="module")
def reports(voices) -> dict[str, dict]:
    return {name: match_report(audio, 16_000, TEXT) for name, audio in voices.items()}


@pytest.mark.slow
@pytest.mark.parametrize("talker", sorted(TALKERS))
def test_converted_voice_matches_the_talker_better_than_plain_piper(reports, talker):
    r = reports[talker]
    print(f"\n{talker}: {r}")
    converted, baseline = r["converted"], r["baseline"]
    assert converted["f0_median_error_semitones"] < 1.0, converted
    assert converted["mcd_db"] < baseline["mcd_db"], (converted, baseline)
    assert r["profile"]["source"] == "measured"
    if talker == "librispeech_female":  # an octave from the base voice: the baseline is far off
        assert baseline["f0_median_error_semitones"] > 6.0 and r["profile"]["warp"] > 1.05, r


@pytest.mark.slow
def test_profile_follows_the_decision_and_a_deeper_voice_wish(voices):
    analysis = analyse_capture([], voices["librispeech_female"], 16_000, "a deeper voice please",
                               transcribe=False, body=False)
    measured = analysis.f0.value["median_hz"]
    capture, prefs = to_policy_inputs(analysis)
    wished = HeuristicDecider().decide(capture, prefs)
    plain = HeuristicDecider().decide(capture, type(prefs)())
    as_measured = VoiceProfile.from_analysis(analysis.to_json(), plain)
    deeper = VoiceProfile.from_analysis(analysis, wished)
    assert as_measured.f0_median_hz == pytest.approx(measured, rel=1e-3)
    assert as_measured.f0_range_semitones == pytest.approx(analysis.f0.value["range_semitones"], rel=1e-3)
    wished_hz = BASE_VOICE_F0_HZ * 2 ** (wished.pitch_semitones / 12)
    assert deeper.f0_median_hz == pytest.approx(wished_hz, rel=1e-3)
    assert deeper.f0_median_hz < 0.9 * as_measured.f0_median_hz and deeper.warp < as_measured.warp
    # without a timbre measure the warp follows the pitch; without an analysis the profile is the base voice's
    missing = {"value": None, "quality": "missing"}
    no_timbre = VoiceProfile.from_analysis({**analysis.to_json(), "timbre": missing}, plain)
    assert no_timbre.source == "pitch" and no_timbre.warp > 1.0
    base = VoiceProfile.from_analysis(None, None)
    assert base.f0_median_hz == BASE_VOICE_F0_HZ and base.f0_range_semitones == RANGE_REFERENCE_SEMITONES


@pytest.mark.slow
def test_convert_moves_a_real_recording_to_the_target_pitch(voices):
    audio = voices["grid_brbk7n"]
    target = VoiceProfile(f0_median_hz=130.0, f0_range_semitones=10.0, warp=0.9)
    out = convert(audio, 16_000, target)
    assert out.dtype == np.float32 and out.size == audio.size
    assert np.abs(out).max() == pytest.approx(np.abs(audio).max(), rel=1e-3)
    measured = voice_distance(measure_voice(out, 16_000), measure_voice(audio, 16_000))
    assert abs(12 * np.log2(measured["f0_median_hz"] / 130.0)) < 1.0, measured
    assert abs(measured["f0_range_semitones"] - 10.0) < 4.0, measured


@pytest.mark.slow
def test_speaking_rate_goes_to_piper():
    plain, rate = piper_speech(TEXT)
    fast, fast_rate = synthesize(TEXT, VoiceProfile(speaking_rate=1.5))
    assert rate == fast_rate and fast.dtype == np.float32
    assert fast.size / plain.size == pytest.approx(1 / 1.5, rel=0.15)


@pytest.mark.slow
def test_the_same_profile_gives_the_same_audio():
    profile = VoiceProfile(f0_median_hz=180.0, f0_range_semitones=10.0, warp=1.1)
    first, rate = synthesize(TEXT, profile)
    second, _ = synthesize(TEXT, profile)
    assert np.array_equal(first, second)
    plain, _ = piper_speech(TEXT)
    assert plain.size == first.size and not np.allclose(plain, first, atol=1e-3)  # it was converted


@pytest.mark.slow
def test_shipped_base_voice_table_matches_the_installed_voice_and_a_fresh_measurement():
    shipped = json.loads((voice.TABLE_DIR / f"{voice.BASE_VOICE}.json").read_text())
    assert shipped["key"] == voice.base_voice_key()  # same weights (sha256), code version and settings
    reference = voice.reference_features()  # measured afresh in this process
    median, _ = voice.f0_stats(voice.fold_octave_slips(reference.f0[reference.speech_frames()]))
    assert median == pytest.approx(shipped["reference_f0_median_hz"], abs=0.05)
    warps = voice.table_warps()
    for i, j in ((2, 1), (9, 7)):  # a low voice with a longer tract, a high one with a shorter tract
        fresh = voice.converted_mfcc(reference, voice.TABLE_F0_HZ[i], RANGE_REFERENCE_SEMITONES, float(warps[j]))
        np.testing.assert_allclose(fresh, shipped["mfcc"][i][j], atol=0.02)


@pytest.mark.slow
def test_table_warp_agrees_with_the_exact_search(voices):
    analysis = analyse_capture([], voices["librispeech_female"], 16_000, transcribe=False, body=False)
    mfcc = np.asarray(analysis.timbre.value["mfcc_mean"])
    f0, spread = analysis.f0.value["median_hz"], analysis.f0.value["range_semitones"]
    fast = voice.table_warp(mfcc, f0)
    exact = voice.fit_warp(mfcc, f0, spread, steps=voice.TABLE_WARP_STEPS)
    assert fast > 1.05 and abs(np.log(fast / exact)) < 0.04, (fast, exact)


def test_a_table_with_another_key_is_not_used(tmp_path, monkeypatch, settings):
    """A shipped table measured on other weights is skipped for the one cached in the data dir."""
    shipped = json.loads((voice.TABLE_DIR / f"{voice.BASE_VOICE}.json").read_text())
    stale = {**shipped, "key": {**shipped["key"], "model_sha256": "0" * 64}, "mfcc": []}
    (tmp_path / f"{voice.BASE_VOICE}.json").write_text(json.dumps(stale))
    cached = voice.cached_table_path()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(shipped))
    monkeypatch.setattr(voice, "TABLE_DIR", tmp_path)
    monkeypatch.setattr(voice, "_TABLES", {})
    assert voice.base_voice_table()["mfcc"] == shipped["mfcc"]
    cached.unlink()


@pytest.mark.parametrize("call, message", [
    (lambda: VoiceProfile(f0_median_hz=900.0), "f0_median_hz"),
    (lambda: VoiceProfile(warp=3.0), "warp"),
    (lambda: VoiceProfile(speaking_rate=0.1), "speaking_rate"),
    (lambda: VoiceProfile.from_analysis("not an analysis"), "analysis"),
    (lambda: synthesize("   ", VoiceProfile()), "empty"),
    (lambda: synthesize("hello", None), "profile"),
    (lambda: convert(np.zeros((100, 2), np.float32), 16_000, VoiceProfile()), "mono"),
    (lambda: convert(np.zeros(100, np.float32), 16_000, VoiceProfile()), "0.2 s"),
    (lambda: convert(np.zeros(16_000, np.float32), 16_000, VoiceProfile()), "voiced"),
    (lambda: convert(np.zeros(16_000, np.float32), 1_000, VoiceProfile()), "sample_rate"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
