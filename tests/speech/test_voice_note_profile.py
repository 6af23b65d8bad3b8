"""PER-a1 end to end for voice notes: a Piper-spoken note goes through the personalization service, gets a
Whisper transcript and WORLD prosody in its stored features, and moves the user's interests."""

from __future__ import annotations

import pytest

from gaiverse.personalization.knowledge import load_knowledge
from gaiverse.personalization.service import PersonalizationService
from gaiverse.privacy import PURPOSES, KeyRing
from gaiverse.speech.tts import to_wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.clause("PER-a1")]


@pytest.fixture
def service(tmp_path, store, whisper_dir) -> PersonalizationService:
    svc = PersonalizationService(tmp_path / "personalization.duckdb", KeyRing.load(tmp_path / "keys"), store,
                                 load_knowledge())
    svc.seed(include_srd=False)
    return svc


def test_spoken_wishes_reach_the_profile(service, synth):
    account = "acct-voice-note"
    for purpose in PURPOSES:
        service.set_consent(account, purpose, True)
    service.observe_text(account, "I want to fight a dragon in a big battle")
    before = dict(service.profile(account).tag_affinity)
    assert before.get("exploration", 0) == 0 and before.get("water", 0) == 0

    note = to_wav_bytes(synth.synthesize("I love exploring caves and fishing."))
    it = service.observe_media(account, "audio", note, "wav", "audio/wav")

    words = it.features["transcript"].lower()
    assert all(w in words for w in ("love", "exploring", "caves", "fishing")), words
    assert it.features["asr"]["language"] == "en" and it.features["asr"]["segments"]
    prosody = it.features["prosody"]
    assert 70 < prosody["pitch_median_hz"] < 300 and prosody["energy_rms_db"] > -40
    assert 1.0 < prosody["speaking_rate_wps"] < 6.0 and 0.1 < prosody["voiced_fraction"] < 1.0
    assert it.features["duration_s"] == pytest.approx(prosody["duration_s"], abs=0.01)

    profile = service.profile(account)
    interests = [tag for tag, _ in profile.interests(5)]
    assert "exploration" in interests and "water" in interests
    assert profile.tag_affinity["exploration"] > 0 and profile.tag_affinity["water"] > 0
    assert profile.modality_counts["audio"] == 1
    stored = service.history(account, modality="audio")[0]  # decrypted from DuckDB
    assert stored.features["transcript"] == it.features["transcript"]


def test_client_transcript_wins_but_asr_is_kept(service, synth):
    account = "acct-typed-transcript"
    for purpose in PURPOSES:
        service.set_consent(account, purpose, True)
    note = to_wav_bytes(synth.synthesize("Take me sailing on the lake."))
    it = service.observe_media(account, "audio", note, "wav", "audio/wav", text="take me sailing on the lake")
    assert it.features["transcript"] == "take me sailing on the lake"
    assert "sailing" in it.features["asr"]["text"].lower()
