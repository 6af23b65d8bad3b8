"""PER-f1 without services: keys outside the data files, per-user encryption, pseudonyms, consent, export,
erasure and retention over a real DuckDB file and an in-memory object store."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from gaiverse.personalization.audit import scan_bytes, scan_duckdb
from gaiverse.personalization.database import Database
from gaiverse.privacy import KEY_FILE, ConsentRegistry, ConsentRequired, KeyRing, SealError, SubjectVault

from tests.media import png_bytes, tone_wav_bytes as wav_bytes

from .conftest import consent_all

SECRET_TEXT = "my secret hideout is behind the waterfall at Glass Lake"


@pytest.mark.clause("PER-f1")
def test_master_key_lives_outside_the_data_files_owner_only(tmp_path):
    keys = tmp_path / "keys"
    ring = KeyRing.load(keys)
    path = keys / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(keys.stat().st_mode) == 0o700
    again = KeyRing.load(keys)
    assert ring.pseudonym("acct-1") == again.pseudonym("acct-1") != ring.pseudonym("acct-2")
    assert ring.pseudonym("acct-1") != KeyRing.load(tmp_path / "other").pseudonym("acct-1")
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="0600"):
        KeyRing.load(keys)
    with pytest.raises(ValueError, match="`master` must be 32 bytes"):
        KeyRing.load(keys, secret="c2hvcnQ=")


@pytest.mark.clause("PER-f1")
def test_sealed_data_opens_only_for_its_user_and_never_after_its_key_is_shredded(tmp_path, keyring):
    vault = SubjectVault(Database(tmp_path / "v.duckdb"), keyring)
    sealed = vault.seal_text("u-a", SECRET_TEXT)
    assert SECRET_TEXT not in sealed and vault.open_text("u-a", sealed) == SECRET_TEXT
    blob = vault.seal("u-a", b"PNGDATA" * 10, b"|media")
    with pytest.raises(SealError):
        vault.open("u-b", blob, b"|media")
    with pytest.raises(SealError):
        vault.open("u-a", blob[:-1] + bytes([blob[-1] ^ 1]), b"|media")
    assert vault.shred("u-a")
    with pytest.raises(SealError, match="erased"):
        vault.open_text("u-a", sealed)


@pytest.mark.clause("PER-f1")
def test_consent_is_per_purpose_off_by_default_and_logged(tmp_path):
    registry = ConsentRegistry(Database(tmp_path / "c.duckdb"))
    assert registry.current("u-a") == dict.fromkeys(("interactions", "media", "personalization", "analytics"), False)
    registry.record("u-a", "interactions", True)
    registry.record("u-a", "interactions", False)
    assert not registry.allowed("u-a", "interactions")
    assert [e.granted for e in registry.history("u-a")] == [True, False]
    with pytest.raises(ConsentRequired, match="'interactions'"):
        registry.require("u-a", "interactions")
    with pytest.raises(ValueError, match="`purpose`"):
        registry.record("u-a", "marketing", True)


@pytest.mark.clause("PER-f1")
def test_tables_hold_pseudonyms_and_ciphertext_only(service, tmp_path):
    consent_all(service, "acct-42")
    service.observe_text("acct-42", SECRET_TEXT, session_id="evening")
    service.observe_media("acct-42", "image", png_bytes(), "png", "image/png", text="my dog Rex at home")
    assert [i.text for i in service.history("acct-42")][0] == SECRET_TEXT
    assert service.history("acct-42")[0].session_id == "evening"
    subject = service.subject("acct-42")
    assert service.store.users() == [subject] and subject.startswith("u-")
    with service.db.read() as con:
        assert scan_duckdb(con, ["acct-42", "waterfall", "Rex"]) == []
    assert scan_bytes([tmp_path], [b"acct-42", b"waterfall", b"Rex at home"]) == []


@pytest.mark.clause("PER-f1")
def test_stored_media_is_sealed_and_opens_for_its_owner_only(service, blobs):
    consent_all(service, "alice")
    consent_all(service, "bob")
    picture = png_bytes()
    it = service.observe_media("alice", "image", picture, "png", "image/png")
    stored = blobs.get_bytes(it.media_key)
    assert picture[16:64] not in stored and b"IHDR" not in stored and it.media_key.startswith("personal/image/")
    assert service.media("alice", it.interaction_id)[0] == picture
    assert service.media("bob", it.interaction_id) is None


@pytest.mark.clause("PER-f1")
def test_withdrawing_consent_stops_collection(service):
    with pytest.raises(ConsentRequired, match="'interactions'"):
        service.observe_text("acct-1", "hello")
    consent_all(service, "acct-1")
    service.observe_text("acct-1", "I love puzzles")
    service.set_consent("acct-1", "media", False)
    with pytest.raises(ConsentRequired, match="'media'"):
        service.observe_media("acct-1", "audio", wav_bytes(), "wav", "audio/wav")
    service.set_consent("acct-1", "interactions", False)
    with pytest.raises(ConsentRequired):
        service.observe_text("acct-1", "more puzzles")
    task_id = service.repository.all()[0].task_id
    with pytest.raises(ConsentRequired):
        service.task_event("acct-1", task_id, "accept")
    service.set_consent("acct-1", "personalization", False)
    with pytest.raises(ConsentRequired, match="'personalization'"):
        service.profile("acct-1")
    assert len(service.history("acct-1")) == 1 and len(service.recommend("acct-1", 3)) == 3


@pytest.mark.clause("PER-f1")
def test_without_analytics_consent_task_events_are_not_counted(service):
    for purpose in ("interactions", "personalization"):
        service.set_consent("acct-1", purpose, True)
    task = service.repository.all()[0]
    service.task_event("acct-1", task.task_id, "complete")
    assert service.repository.get(task.task_id).engagement.counts["completed"] == 0
    service.set_consent("acct-1", "analytics", True)
    service.task_event("acct-1", service.repository.all()[1].task_id, "complete")
    assert service.repository.all()[1].engagement.counts["completed"] == 1


@pytest.mark.clause("PER-f1")
def test_export_holds_everything_about_the_user(service):
    consent_all(service, "acct-7")
    service.observe_text("acct-7", SECRET_TEXT, session_id="s1")
    voice = wav_bytes()
    service.observe_media("acct-7", "audio", voice, "wav", "audio/wav", text="find the dragon")
    quest = service.generate("acct-7", 1)[0]
    service.task_event("acct-7", quest.task.task_id, "accept")
    export = service.export("acct-7")
    assert export["subject"] == service.subject("acct-7")
    texts = [i["text"] for i in export["interactions"]]
    assert SECRET_TEXT in texts and len(export["interactions"]) == 3
    audio = next(i for i in export["interactions"] if i["modality"] == "audio")
    assert audio["features"]["transcript"] == "find the dragon" and audio["features"]["pitch_hz"] > 0
    import base64
    assert base64.b64decode(audio["media_base64"]) == voice
    assert [t["task_id"] for t in export["tasks_made_for_you"]] == [quest.task.task_id]
    assert export["consent"]["current"]["media"] and len(export["consent"]["history"]) == 4
    assert export["user"]["sessions"][0]["session_id"] == "s1"
    assert export["profile"]["description"] and quest.task.task_id in export["profile"]["accepted"]


@pytest.mark.clause("PER-f1")
def test_erasure_leaves_no_trace_in_duckdb_or_the_object_store(service, blobs, tmp_path):
    consent_all(service, "acct-9")
    consent_all(service, "acct-other")
    service.observe_text("acct-9", SECRET_TEXT, session_id="s1")
    picture = png_bytes((200, 30, 30))
    service.observe_media("acct-9", "image", picture, "png", "image/png")
    service.generate("acct-9", 1)
    service.recommend("acct-9", 3)
    service.observe_text("acct-other", "I like trading")
    subject = service.subject("acct-9")
    result = service.erase("acct-9")
    assert result["interactions"] == 2 and result["media_objects"] == 1 and result["tasks"] >= 1
    with service.db.read() as con:
        assert scan_duckdb(con, [subject, "acct-9", "waterfall"]) == []
    assert scan_bytes([tmp_path], [subject.encode(), b"acct-9", b"waterfall"]) == []
    assert all(picture[16:64] not in data for data in blobs.objects.values())
    assert len(blobs.objects) == 0 and service.history("acct-other")[0].text == "I like trading"
    assert service.erase("acct-9")["interactions"] == 0  # idempotent


@pytest.mark.clause("PER-f1")
def test_retention_deletes_old_interactions_and_their_media(service, blobs):
    consent_all(service, "acct-1")
    old = datetime.now(timezone.utc) - timedelta(days=400)
    subject = service.subject("acct-1")
    service.observe_text("acct-1", "recent message")
    ref = blobs.put_bytes(service.vault.seal(subject, b"old picture"), kind="personal/image", ext="bin")
    service.store.record(subject, modality="image", text="", ts=old, media_key=ref.key, session_id=f"{subject}/old")
    assert len(service.history("acct-1")) == 2
    result = service.enforce_retention()
    assert result["interactions"] == 1 and result["media_keys"] == [ref.key]
    assert not blobs.exists(ref.key)
    assert [i.text for i in service.history("acct-1")] == ["recent message"]
    assert service.store.sessions(subject) == []


def test_a_database_written_by_another_process_is_noticed(tmp_path):
    first, second = Database(tmp_path / "x.duckdb"), Database(tmp_path / "x.duckdb")
    with first.write() as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    assert second.changed_elsewhere() and not second.changed_elsewhere()
    assert not first.changed_elsewhere()
    with duckdb.connect(str(tmp_path / "x.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 0
