"""Interaction database: single inputs of every modality, history queries, validated bulk import."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gaiverse.personalization.interaction_log import InteractionLogError
from gaiverse.personalization.interaction_store import UnknownUserError

from .conftest import OBD, T0


@pytest.mark.clause("PER-a1")
def test_every_modality_is_stored_with_features_and_media_key(store):
    store.add_user("alice")
    store.record("alice", text="hello", ts=T0)
    store.record("alice", modality="audio", features={"transcript": "find the dragon", "pitch_hz": 180.0},
                 media_key="s3://gaiverse/audio/ab.wav", ts=T0 + timedelta(minutes=1))
    store.record("alice", modality="image", features={"ocr_text": "MAP"}, media_key="s3://gaiverse/image/cd.png",
                 ts=T0 + timedelta(minutes=2))
    store.record("alice", modality="video", features={"frames": 8}, media_key="s3://gaiverse/video/ef.mp4",
                 ts=T0 + timedelta(minutes=3))
    audio = store.history("alice", modality="audio")
    assert len(audio) == 1 and audio[0].features["transcript"] == "find the dragon"
    assert audio[0].media_key == "s3://gaiverse/audio/ab.wav"
    assert [i.modality for i in store.history("alice")] == ["text", "audio", "image", "video"]
    with pytest.raises(ValueError, match="`modality`"):
        store.record("alice", modality="smell")
    with pytest.raises(UnknownUserError, match="mallory"):
        store.record("mallory", text="hi")


@pytest.mark.clause("PER-a2")
def test_current_input_and_history_queries(store):
    store.add_user("alice")
    for i in range(5):
        store.record("alice", text=f"message {i}", ts=T0 + timedelta(hours=i), session_id="s1" if i < 3 else "s2")
    assert store.current_input("alice").text == "message 4"
    assert [i.text for i in store.history("alice", limit=2)] == ["message 3", "message 4"]
    assert len(store.history("alice", since=T0 + timedelta(hours=2))) == 3
    assert store.count("alice") == 5


@pytest.mark.clause("PER-a2")
def test_bulk_import_of_shipped_obd_log(store):
    path = OBD / "bts" / "men" / "men.csv"
    result = store.import_csv(path)
    assert result.rows == 7296 and result.format == "obd" and result.users > 100
    assert store.count() == 7296
    user = store.users()[0]
    history = store.history(user)
    assert history == sorted(history, key=lambda i: (i.ts, i.interaction_id))
    assert history[0].event == "impression" and "user_features" in history[0].features
    again = store.import_csv(path)
    assert again.already_imported and store.count() == 7296


@pytest.mark.clause("PER-a2")
def test_bad_csv_is_refused_with_a_clear_error_and_nothing_stored(store, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,user_id,event,item_id\n"
                   "2026-03-01T10:00:00Z,u1,complete,t1\n"
                   "yesterday,u2,complete,t2\n"
                   "2026-03-01T10:05:00Z,u3,dance,t3\n")
    with pytest.raises(InteractionLogError) as err:
        store.import_csv(bad)
    message = str(err.value)
    assert "row 2 column `timestamp`" in message and "'yesterday'" in message
    assert "row 3 column `event`" in message and "'dance'" in message
    assert store.count() == 0 and store.users() == []
    missing = tmp_path / "missing.csv"
    missing.write_text("timestamp,event\n2026-03-01T10:00:00Z,message\n")
    with pytest.raises(InteractionLogError, match="missing column `user_id`"):
        store.import_csv(missing)


@pytest.mark.clause("PER-a2")
def test_gaiverse_csv_import_keeps_sessions_features_and_modalities(store, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text('timestamp,user_id,session_id,event,item_id,modality,text,features\n'
                   '2026-03-01T10:00:00Z,u1,s1,message,,text,I love puzzles,\n'
                   '2026-03-01T10:01:00Z,u1,s1,message,,audio,,"{""transcript"": ""more riddles""}"\n'
                   '2026-03-01T10:02:00Z,u1,s1,accept,authored-star-chart,text,,\n')
    result = store.import_csv(log)
    assert result.rows == 3 and result.users == 1
    history = store.history("u1")
    assert history[1].modality == "audio" and history[1].features["transcript"] == "more riddles"
    assert history[2].event == "accept" and history[2].reward == 1.0


@pytest.mark.clause("PER-a1")
def test_derived_features_of_image_and_voice_feed_the_profile(personalizer, tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from gaiverse.personalization.media_features import derive_features
    from gaiverse.speech.wav import pcm16_wav

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (20, 160, 40)).save(buf, format="PNG")
    image = derive_features("image", data=buf.getvalue())
    assert image["dominant_hue"] == "green" and image["width"] == 32
    tone = (0.3 * np.sin(2 * np.pi * 150 * np.arange(16000) / 16000) * 32767).astype(np.int16)
    audio = derive_features("audio", data=pcm16_wav(tone, 16000))
    assert audio["duration_s"] == pytest.approx(1.0) and audio["pitch_hz"] == pytest.approx(150, rel=0.05)
    with pytest.raises(ValueError, match="`data`"):
        derive_features("image", data=b"not an image")
    personalizer.observe("alice", modality="image", features=image, media_key="s3://gaiverse/image/x.png", ts=T0)
    assert personalizer.profile("alice").tag_affinity["nature"] > 0
