"""The live NPC over the real API: WebSocket auth, validated messages, text, HCI and voice turns on Ray actors."""

from __future__ import annotations

import base64
import json
import wave

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.api.npc_live_support import (make_user, recv, speech_wav, start_npc_api, stop_npc_api, turn, until,
                                        wav_samples, ws_url)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def npc_api(settings, store, catalog, ray_local):
    base, service = start_npc_api(settings, ray_local.get_runtime_context().gcs_address)
    yield base
    stop_npc_api(service)


@pytest.fixture(scope="module")
def npc_user(npc_api, admin_key):
    return make_user(npc_api, admin_key)


@pytest.fixture
def talk(npc_api, npc_user):
    """A socket authenticated by its first message, past the `ready` state."""
    with connect(ws_url(npc_api, "npc=sage"), max_size=None) as ws:
        ws.send(json.dumps({"type": "auth", "key": npc_user[1]}))
        events = until(ws, "state", "ready")
        ws.ready = events[-1]
        yield ws


def _types(events):
    return [e["type"] for e in events]


@pytest.mark.clause("NPC-d1")
def test_text_turn_streams_text_speech_visemes_and_expression(talk):
    assert talk.ready["npc"]["name"] == "Elowen" and talk.ready["speech"] is True
    events = turn(talk, {"type": "text", "text": "What is the armor class of a lich?"})
    types = _types(events)
    deltas = [e["text"] for e in events if e["type"] == "text_delta"]
    done = next(e for e in events if e["type"] == "text_done")
    assert len(deltas) > 3 and "".join(deltas).strip() == done["text"]
    assert done["grounded"] and "20" in done["text"] and done["sources"] == ["srd:monsters/lich"]
    assert types.index("text_delta") < types.index("text_done") < types.index("audio")
    assert {"expression", "gesture", "visemes"} <= set(types)
    audio = [e for e in events if e["type"] == "audio"]
    visemes = {e["seq"]: e for e in events if e["type"] == "visemes"}
    assert " ".join(a["text"] for a in audio) == done["text"]
    for chunk in audio:
        samples, rate = wav_samples(base64.b64decode(chunk["data"]))
        assert rate == chunk["sample_rate"] and abs(len(samples) / rate - chunk["duration_s"]) < 0.01
        assert samples.std() > 300  # speech, not silence
        timeline = visemes[chunk["seq"]]["visemes"]
        assert visemes[chunk["seq"]]["audio"] and timeline[-1][2] <= chunk["duration_s"] + 0.05
        assert {v for v, _, _ in timeline} - {"sil"}
    idle = events[-1]
    assert idle["timings"]["first_token_ms"] <= idle["timings"]["first_audio_ms"] <= idle["timings"]["done_ms"]
    assert all(e["t"]["since_input_ms"] >= 0 for e in events)


@pytest.mark.clause("NPC-c1")
def test_click_gamepad_stick_and_key_signals_become_intents(talk):
    click = turn(talk, {"type": "hci", "kind": "click", "target_kind": "npc"})
    assert next(e for e in click if e.get("intent"))["intent"] == "greet"
    assert next(e for e in click if e["type"] == "gesture")["clip"] == "wave"
    pad = turn(talk, {"type": "hci", "kind": "gamepad", "button": 2})  # X: trade
    assert next(e for e in pad if e.get("intent"))["intent"] == "trade"
    stick = turn(talk, {"type": "hci", "kind": "stick", "axes": [0.05, -0.95]})  # pushed forward: follow
    assert next(e for e in stick if e.get("intent"))["behaviour"] == "walk_with_user"
    key = turn(talk, {"type": "hci", "kind": "key", "button": "Escape"})
    assert next(e for e in key if e["type"] == "text_done")["intent"] == "leave"
    obj = turn(talk, {"type": "hci", "kind": "click", "target_kind": "object", "target": "Nairobi"})
    assert next(e for e in obj if e.get("intent"))["intent"] == "point_at"


@pytest.mark.clause("NPC-c1")
@pytest.mark.parametrize("message, field", [
    ({"type": "text", "text": ""}, "text"),
    ({"type": "shout", "text": "hi"}, "type"),
    ({"type": "hci", "kind": "click"}, "target_kind"),
    ({"type": "hci", "kind": "stick", "axes": [3, 0]}, "axes"),
    ({"type": "audio", "pcm": "not base64!", "sample_rate": 16000}, "pcm"),
    ({"type": "audio", "pcm": "AAAAAA==", "sample_rate": 11025}, "sample_rate"),
    ({"type": "end_of_speech"}, "end_of_speech"),
    ({"type": "text", "text": "hi", "extra": 1}, "extra"),
])
def test_bad_messages_get_an_error_event_naming_the_field_and_the_socket_stays_open(talk, message, field):
    talk.send(json.dumps(message))
    error = recv(talk)
    assert error["type"] == "error" and field in error["message"], error
    talk.send(json.dumps({"type": "ping"}))
    assert recv(talk)["type"] == "pong"


@pytest.mark.clause("NPC-c1")
def test_not_json_is_an_error_event(talk):
    talk.send("hello?")
    assert recv(talk)["type"] == "error"


@pytest.mark.clause("NPC-c1")
@pytest.mark.parametrize("query, first", [("npc=sage&key=gv_wrong", None), ("npc=sage", {"type": "text", "text": "hi"}),
                                          ("npc=Bad%20Id", None)])
def test_unauthenticated_or_bad_npc_is_refused_and_closed(npc_api, query, first):
    with connect(ws_url(npc_api, query)) as ws:
        if first is not None:
            ws.send(json.dumps(first))
        error = recv(ws)
        assert error["type"] == "error" and error["fatal"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
        assert closed.value.rcvd.code == 1008


@pytest.mark.clause("NPC-c1")
def test_key_in_query_and_memory_across_connections(npc_api, npc_user):
    with connect(ws_url(npc_api, f"npc=innkeeper&key={npc_user[1]}"), max_size=None) as ws:
        until(ws, "state", "ready")
        turn(ws, {"type": "text", "text": "What is the capital of Kenya?"})
    with connect(ws_url(npc_api, f"npc=innkeeper&key={npc_user[1]}"), max_size=None) as ws:
        until(ws, "state", "ready")
        events = turn(ws, {"type": "text", "text": "What did I ask you before?"})
    assert "capital of Kenya" in next(e for e in events if e["type"] == "text_done")["text"]


@pytest.mark.clause("NPC-c1")
def test_voice_turn_transcribes_streamed_audio_and_answers(talk, tmp_path):
    path = speech_wav("What is the capital of Kenya?", tmp_path / "ask.wav")
    with wave.open(str(path)) as wav:
        pcm = wav.readframes(wav.getnframes())
    chunk = 3200  # 100 ms at 16 kHz, as the web page sends
    for i in range(0, len(pcm), chunk):
        talk.send(json.dumps({"type": "audio", "pcm": base64.b64encode(pcm[i:i + chunk]).decode(),
                              "sample_rate": 16000}))
    assert recv(talk)["state"] == "listening"
    events = turn(talk, {"type": "end_of_speech"})
    transcript = next(e for e in events if e["type"] == "transcript")
    assert "capital of kenya" in transcript["text"].lower()
    done = next(e for e in events if e["type"] == "text_done")
    assert "Nairobi" in done["text"] and any(e["type"] == "audio" for e in events)
    assert events[-1]["timings"]["asr_ms"] <= events[-1]["timings"]["first_audio_ms"]


@pytest.mark.clause("NPC-c1")
def test_an_npc_that_is_neither_a_preset_nor_yours_is_refused(npc_api, npc_user):
    with connect(ws_url(npc_api, f"npc=nobody-here&key={npc_user[1]}")) as ws:
        error = recv(ws)
        assert error["type"] == "error" and "no NPC 'nobody-here'" in error["message"] and error["fatal"]
