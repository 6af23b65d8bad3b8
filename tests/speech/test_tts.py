"""TTS: Piper speech with phoneme timings, sentence streaming, rate, WORLD pitch and timbre shifts, WAV output."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from gaiverse.speech.prosody import prosody
from gaiverse.speech.tts import (SpeechAudio, Synthesizer, VoiceSettings, estimate_phoneme_times, to_wav_bytes,
                                 world_shift)

TEXT = "Welcome to the harbour. The boats leave at dawn! Will you come with us?"


def test_synthesis_gives_speech_and_ordered_phoneme_timings(synth):
    speech = synth.synthesize(TEXT)
    assert speech.pcm.dtype == np.int16 and speech.pcm.ndim == 1 and speech.sample_rate == 22050
    assert 3.0 < speech.duration_s < 9.0
    assert np.abs(speech.pcm).max() > 10000  # normalised speech, not silence
    phones = speech.phonemes
    assert len(phones) > 30
    starts = [start for _, start, _ in phones]
    assert starts == sorted(starts) and all(start < end <= speech.duration_s + 1e-3 for _, start, end in phones)
    assert {"w", "ɛ", "l", "k", "m"} <= {p[0] for p, _, _ in phones}
    assert not {p for p, _, _ in phones} & {" ", ".", "!", "?", "ˈ", "ˌ"}


def test_stream_yields_one_chunk_per_sentence(synth):
    chunks = list(synth.stream(TEXT))
    assert len(chunks) == 3 and all(isinstance(c, SpeechAudio) and c.phonemes for c in chunks)
    assert all(c.phonemes[0][1] < 0.5 for c in chunks)  # times restart in each chunk
    whole = synth.synthesize(TEXT)
    assert sum(c.duration_s for c in chunks) == pytest.approx(whole.duration_s, rel=0.2)


def test_rate_changes_duration():
    slow = Synthesizer(VoiceSettings(rate=0.7)).synthesize("Follow the river to the old stone bridge.")
    fast = Synthesizer(VoiceSettings(rate=1.6)).synthesize("Follow the river to the old stone bridge.")
    assert fast.duration_s < 0.65 * slow.duration_s


def test_pitch_shift_moves_the_median_pitch(synth):
    speech = synth.synthesize("Follow the river to the old stone bridge, then turn left.")
    x, rate = speech.pcm / 32768.0, speech.sample_rate
    f_plain = prosody(x, rate)["pitch_median_hz"]
    assert 80 < f_plain < 160  # joe speaks at ~100 Hz; DIO would say ~190 (second harmonic)
    octave = Synthesizer(VoiceSettings(pitch_semitones=12.0)).synthesize("Follow the river to the bridge.")
    f_octave = prosody(octave.pcm / 32768.0, rate)["pitch_median_hz"]
    assert 160 < f_octave < 340, f_octave  # ~2 x 100-120 Hz; shifting a DIO track gave ~2 x 2 x 100


def test_world_shift_exact_on_a_harmonic_tone():
    rate = 22050
    t = np.arange(rate) / rate
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8)).astype(np.float32) * 0.2
    shifted = world_shift(tone, rate, pitch_semitones=12.0, timbre_shift=0.0)
    assert prosody(shifted, rate)["pitch_median_hz"] == pytest.approx(280, rel=0.03)
    assert len(shifted) == len(tone)
    fifth = world_shift(tone, rate, pitch_semitones=7.0, timbre_shift=0.0)
    assert prosody(fifth, rate)["pitch_median_hz"] == pytest.approx(140 * 2 ** (7 / 12), rel=0.03)


def test_timbre_shift_raises_the_spectral_centroid(synth):
    base = synth.synthesize("Good morning, traveller.")
    x = base.pcm / 32768.0

    def centroid(y):
        spectrum = np.abs(np.fft.rfft(y))
        freqs = np.fft.rfftfreq(len(y), 1 / base.sample_rate)
        return float((spectrum * freqs).sum() / spectrum.sum())

    brighter = world_shift(x, base.sample_rate, 0.0, 4.0)
    darker = world_shift(x, base.sample_rate, 0.0, -4.0)
    assert centroid(darker) < centroid(x) < centroid(brighter)


def test_wav_bytes_round_trip(synth):
    speech = synth.synthesize("Hello.")
    with wave.open(io.BytesIO(to_wav_bytes(speech))) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, speech.sample_rate)
        assert np.array_equal(np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), speech.pcm)


def test_estimated_timings_weight_vowels_and_pauses():
    times = estimate_phoneme_times(list("hˈɛloʊ, wˈɜːld."), 0.1, 1.1)
    assert [p for p, _, _ in times] == ["h", "ɛ", "l", "o", "ʊ", "w", "ɜː", "l", "d"]
    assert times[0][1] == pytest.approx(0.1) and times[-1][2] == pytest.approx(1.1)
    durations = {p: end - start for p, start, end in times}
    assert durations["ɜː"] > durations["ɛ"] > durations["h"]
    assert times[5][1] - times[4][2] > 0.1  # the comma is a pause


@pytest.mark.parametrize("kwargs, message", [
    ({"pitch_semitones": 30}, "pitch_semitones"), ({"rate": 0}, "rate"), ({"timbre_shift": -20}, "timbre_shift"),
])
def test_bad_voice_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VoiceSettings(**kwargs)


def test_unknown_voice_and_empty_text_are_refused(synth):
    with pytest.raises(ValueError, match="`voice` must be one of"):
        Synthesizer(VoiceSettings(voice="en_GB-nobody"))
    with pytest.raises(RuntimeError, match="missing"):
        Synthesizer(VoiceSettings(voice="/no/such/voice.onnx"))
    with pytest.raises(ValueError, match="empty"):
        synth.synthesize("   ")
