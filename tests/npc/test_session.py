"""The live turn engine in-process: event order and timestamps, sentence speech, HCI parsing, input errors."""

from __future__ import annotations

import base64
import io
import wave

import pytest

from gaiverse.npc.backends import DialogueConfig, LocalDialogue, SpeechTts
from gaiverse.npc.hci import SignalError, SignalFilter, parse_signal, stick_direction
from gaiverse.npc.session import NpcSession, SentenceSplitter, clip_for, first_clause, ipa_viseme
from gaiverse.npc.understanding import HciSignal


@pytest.fixture(scope="module")
def dialogue(kb, personas, tmp_path_factory):
    config = DialogueConfig(tmp_path_factory.mktemp("live") / "unused.duckdb")
    return LocalDialogue(config, kb=kb, personas=personas)


@pytest.fixture(scope="module")
def tts():
    return SpeechTts()


def _run(session, *events):
    out = []
    for event in events:
        out.extend(session.handle(event))
    return out


@pytest.mark.clause("NPC-d1")
def test_text_turn_streams_tokens_then_done_with_monotonic_timestamps(dialogue, user):
    session = NpcSession(user, "sage", dialogue)
    events = _run(session, {"type": "text", "text": "What is the capital of Kenya?"})
    types = [e["type"] for e in events]
    assert types[0] == "state" and types[-1] == "state" and events[-1]["state"] == "idle"
    assert types.index("expression") < types.index("text_delta") < types.index("text_done")
    done = events[types.index("text_done")]
    assert "".join(e["text"] for e in events if e["type"] == "text_delta").strip() == done["text"]
    assert "Nairobi" in done["text"] and done["grounded"]
    times = [e["t"]["since_input_ms"] for e in events]
    assert times == sorted(times) and all(e["turn"] == 1 for e in events)
    visemes = [e for e in events if e["type"] == "visemes"]
    assert visemes and not any(v["audio"] for v in visemes)  # no TTS: lip sync from text timing only
    assert " ".join(v["text"] for v in visemes) == done["text"]


@pytest.mark.clause("NPC-d1")
def test_speech_per_sentence_with_phoneme_timed_visemes(dialogue, tts, user):
    session = NpcSession(user, "innkeeper", dialogue, tts=tts)
    events = _run(session, {"type": "hci", "kind": "click", "target_kind": "npc"})
    audio = [e for e in events if e["type"] == "audio"]
    visemes = {e["seq"]: e for e in events if e["type"] == "visemes"}
    done = next(e for e in events if e["type"] == "text_done")
    assert len(audio) >= 2 and " ".join(a["text"] for a in audio) == done["text"]
    for chunk in audio:
        with wave.open(io.BytesIO(base64.b64decode(chunk["data"]))) as wav:
            assert wav.getframerate() == chunk["sample_rate"]
            assert abs(wav.getnframes() / wav.getframerate() - chunk["duration_s"]) < 0.01
        timeline = visemes[chunk["seq"]]["visemes"]
        assert timeline[-1][2] <= chunk["duration_s"] + 0.05
        assert all(a < b for _, a, b in timeline)
    timings = events[-1]["timings"]
    assert timings["first_token_ms"] <= timings["first_audio_ms"] <= timings["done_ms"]
    assert [e["state"] for e in events if e["type"] == "state"][-2:] == ["speaking", "idle"]


@pytest.mark.clause("NPC-c1")
def test_hover_moves_the_npc_without_speaking(dialogue, user):
    session = NpcSession(user, "sage", dialogue)
    events = _run(session, {"type": "hci", "kind": "hover", "target_kind": "object", "target": "well"})
    assert [e["type"] for e in events if e["type"] != "state"] == ["gesture"]
    assert events[1]["name"] == "glance_at_target" and events[1]["target"] == "well"


@pytest.mark.clause("NPC-c1")
def test_repeated_signal_is_ignored(dialogue, user):
    session = NpcSession(user, "sage", dialogue)
    first = _run(session, {"type": "hci", "kind": "gamepad", "button": 3})
    again = _run(session, {"type": "hci", "kind": "gamepad", "button": 3})
    assert any(e["type"] == "text_done" for e in first) and again == []


@pytest.mark.clause("NPC-c1")
@pytest.mark.parametrize("event, words", [
    ({"type": "wave"}, "`type`"),
    ({"type": "text", "text": "   "}, "`text`"),
    ({"type": "text", "text": "x" * 501}, "at most 500"),
    ({"type": "audio", "pcm": b"\x00\x01\x02", "sample_rate": 16000}, "`pcm`"),
    ({"type": "audio", "pcm": b"\x00\x00", "sample_rate": 11025}, "`sample_rate`"),
    ({"type": "end_of_speech"}, "no speech recogniser"),
    ({"type": "hci", "kind": "click", "target_kind": "object"}, "`target`"),
    ({"type": "hci", "kind": "stick", "axes": [0.2]}, "`axes`"),
    ({"type": "hci", "kind": "gamepad", "button": 42}, "`button`"),
])
def test_bad_input_events_give_one_error_event(dialogue, user, event, words):
    events = _run(NpcSession(user, "sage", dialogue), event)
    assert len(events) == 1 and events[0]["type"] == "error" and words in events[0]["message"], events


@pytest.mark.clause("NPC-c1")
def test_audio_rate_change_and_overlong_utterance_are_refused(dialogue, user):
    session = NpcSession(user, "sage", dialogue)
    second = bytes(3200)
    events = _run(session, {"type": "audio", "pcm": second, "sample_rate": 16000},
                  {"type": "audio", "pcm": second, "sample_rate": 48000})
    assert events[0]["state"] == "listening" and "changed within one utterance" in events[1]["message"]
    too_long = bytes(2 * 16000 * 31)
    assert "longer than 30" in _run(session, {"type": "audio", "pcm": too_long, "sample_rate": 16000})[0]["message"]


def test_sentence_splitter_cuts_when_the_next_sentence_starts():
    splitter, out = SentenceSplitter(), []
    for token in ["Well ", "met. ", "I ", "am ", "Brom, ", "the ", "innkeeper. ", "Sit", "!"]:
        out += splitter.feed(token)
    assert out == ["Well met.", "I am Brom, the innkeeper."] and splitter.flush() == ["Sit!"]


def test_long_first_sentence_is_split_at_a_clause():
    long = "The lich, a powerful undead spellcaster who has cheated death, has an armor class of twenty."
    assert first_clause(long) == ["The lich, a powerful undead spellcaster who has cheated death,",
                                  "has an armor class of twenty."]
    assert first_clause("Short, sweet.") == ["Short, sweet."]


def test_signal_parsing_and_sticks():
    assert parse_signal({"kind": "stick", "axes": [0.1, -0.9]}) == HciSignal("gamepad", "none", None, "up")
    assert parse_signal({"kind": "stick", "axes": [0.2, 0.1]}) is None  # at rest
    assert stick_direction(0.9, 0.2) == "right"
    assert parse_signal({"kind": "key", "button": "Escape"}).button == "Escape"
    with pytest.raises(SignalError, match="`kind`"):
        parse_signal({"kind": "telepathy"})
    with pytest.raises(SignalError, match="`target`"):
        parse_signal({"kind": "drop", "target_kind": "item"})
    flt = SignalFilter()
    signal = HciSignal("hover", "npc")
    assert flt.accept(HciSignal("click", "npc"), now=0.0) and flt.accept(HciSignal("click", "npc"), now=0.1)
    assert flt.accept(signal, now=0.0) and not flt.accept(signal, now=0.3) and flt.accept(signal, now=2.0)


def test_phonemes_and_gestures_map_to_the_rig():
    assert [ipa_viseme(p) for p in ("p", "ˈaɪ", "ʃ", "uː", "ð", " ", "ɹ")] == ["PP", "aa", "CH", "U", "TH", "sil", "RR"]
    assert clip_for("wave_goodbye") == "wave" and clip_for("shrug") == "shrug" and clip_for("think") == "idle"


@pytest.mark.clause("NPC-d1")
def test_follow_nods_then_walks_with_the_user(dialogue, user):
    events = _run(NpcSession(user, "sage", dialogue), {"type": "hci", "kind": "key", "button": "f"})
    assert [e["clip"] for e in events if e["type"] == "gesture"] == ["nod", "walk"]
