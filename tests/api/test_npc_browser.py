"""The NPC page in headless chromium: a full text turn, clicks, a gamepad button and a full voice turn.

The voice turn uses chromium's fake microphone (``--use-file-for-fake-audio-capture``) playing a
WAV that Piper speaks at test time. Screenshots go to tests/artifacts/ (npc-*.png).
"""

from __future__ import annotations

import wave

import pytest

from tests.api.npc_live_support import make_user, speech_wav, start_npc_api, stop_npc_api

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

from tests.browser import AUTOPLAY, FAKE_MEDIA, HEADLESS, WEBGL, chromium
ARGS = [*HEADLESS, *WEBGL, *AUTOPLAY, *FAKE_MEDIA]
VOICE_QUESTION = "What is the capital of Kenya?"

# A gamepad the test presses: navigator.getGamepads() answers window.__pad when set.
FAKE_GAMEPAD = """
window.__pad = null;
navigator.getGamepads = () => [window.__pad];
"""


@pytest.fixture(scope="module")
def npc_api(settings, store, catalog, ray_local):
    base, service = start_npc_api(settings, ray_local.get_runtime_context().gcs_address, name="api-npc-browser")
    yield base
    stop_npc_api(service, "api-npc-browser")


@pytest.fixture(scope="module")
def spoken_question(tmp_path_factory):
    # long trailing silence: the button is released in it even when the microphone opened late
    return speech_wav(VOICE_QUESTION, tmp_path_factory.mktemp("mic") / "question.wav", after_s=1.6)


@pytest.fixture(scope="module")
def browser(spoken_question):
    with chromium(ARGS + [f"--use-file-for-fake-audio-capture={spoken_question}"]) as instance:
        yield instance


def _events(page, kind):
    return page.evaluate(f"() => window.npcPage.events.filter((e) => e.type === '{kind}')")


def _wait_turns(page, n):
    page.wait_for_function(f"() => (window.npcPage.turnsDone || 0) >= {n}", timeout=600_000)


@pytest.mark.clause("NPC-d1")
def test_npc_page_text_click_gamepad_and_voice_turns(browser, npc_api, admin_key, spoken_question, artifacts_dir):
    _, key = make_user(npc_api, admin_key, "npc-browser")
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.add_init_script(f"sessionStorage.setItem('gaiverse.apiKey', {key!r});" + FAKE_GAMEPAD)
    try:
        page.goto(npc_api + "/web/npc.html?npc=sage")
        page.wait_for_selector("#conn:has-text('connected')", timeout=600_000)
        assert page.text_content("#npc-name") == "Elowen"

        # 1. a full text turn: streamed text, spoken sentences, the face moving with the visemes
        page.fill("#chat-input", "What is the armor class of a lich?")
        page.press("#chat-input", "Enter")
        page.wait_for_function("() => window.npcPage.lastViseme && window.npcPage.played >= 1", timeout=600_000)
        page.screenshot(path=str(artifacts_dir / "npc-speaking.png"))
        _wait_turns(page, 1)
        assert "armor class of 20" in page.text_content("#chat li.npc:last-of-type")
        mouth = page.evaluate("() => window.npcPage.maxJaw")

        # 2. a click on the NPC greets it
        spot = page.evaluate("() => window.npcPage.scene.screenOf('npc')")
        page.mouse.click(spot["x"], spot["y"])
        _wait_turns(page, 2)
        assert "Elowen" in page.text_content("#chat li.npc:last-of-type")

        # 3. gamepad button Y (3): follow
        page.evaluate("() => { window.__pad = {id: 'test pad', buttons: Array.from({length: 17}, (_, i) => "
                      "({pressed: i === 3, value: i === 3 ? 1 : 0})), axes: [0, 0, 0, 0]}; }")
        _wait_turns(page, 3)
        page.evaluate("() => { window.__pad.buttons[3] = {pressed: false, value: 0}; }")
        intents = [e.get("intent") for e in _events(page, "text_done")]
        assert intents[-1] == "follow", intents

        # 4. a full voice turn: hold the push-to-talk button while the fake microphone speaks
        with wave.open(str(spoken_question)) as wav:
            seconds = wav.getnframes() / wav.getframerate()
        page.hover("#ptt")
        page.mouse.down()
        page.wait_for_timeout(int((seconds - 0.3) * 1000))  # the fake microphone loops the file: stop before
        page.mouse.up()
        _wait_turns(page, 4)
        page.screenshot(path=str(artifacts_dir / "npc-voice-turn.png"))
        transcript = _events(page, "transcript")[-1]["text"]
        answer = _events(page, "text_done")[-1]["text"]
    finally:
        page.close()
    assert mouth > 0.05  # visemes opened the mouth while it spoke
    assert "kenya" in transcript.lower(), transcript
    assert "Nairobi" in answer, answer
    assert not problems, problems
