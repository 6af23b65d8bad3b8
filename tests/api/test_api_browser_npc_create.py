"""Creating an NPC in the web terminal, then talking with it, in headless chromium.

Everything is real: the uvicorn API joined to the session's Ray (dialogue, ASR, TTS actors), the
Prefect server, and the ``npc-generate/generate`` deployment served by a runner subprocess whose
flow runs build the appearance on the same Ray. The user fills the form on /web/npc.html with
their own settings and an NPC-scoped fact and document, follows the run on the page, reads the
generated profile, and asks the new NPC about its fact by text. A second test sends bad settings
and checks each API error lands next to the field it names. Screenshots: tests/artifacts/npc-create-*.png.
"""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from gaiverse.config import REPO_ROOT, prefect_env
from gaiverse.proc import spawn, stop_pid, wait_until
from tests.api.npc_live_support import make_user, npc_api_fixture
from tests.browser import AUTOPLAY, HEADLESS, WEBGL, chromium

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

ARGS = [*HEADLESS, *WEBGL, *AUTOPLAY]
DEPLOYMENT = "npc-generate/generate"
FACT = "The lighthouse lamp was lit in 1887."
DOCUMENT = b"# Saltmere light\n\nThe Saltmere lighthouse tower has 212 steps up to the lamp room.\n"
WAIT_MS = 600_000
"""Guard against a hung page, not a performance limit: the first turn loads the dialogue models."""


npc_api = npc_api_fixture("api-npc-create")


@pytest.fixture(scope="module")
def npc_deployment(settings, prefect_server, ray_local):
    """``npc-generate/generate`` served by a runner polling every second; its runs join the session's Ray."""
    env = {**prefect_env(settings), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "GAIVERSE_RAY_ADDRESS": ray_local.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled"}
    code = "from prefect import serve; from flows.npc import generate_npc; serve(generate_npc.to_deployment(name='generate'))"
    service = spawn("npc-create-runner", [sys.executable, "-c", code], settings.run_dir, env=env, cwd=REPO_ROOT)

    def deployed() -> bool:
        try:
            return httpx.get(f"{settings.prefect_url}/deployments/name/{DEPLOYMENT}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(deployed, 120, f"the {DEPLOYMENT} deployment (log: {service.log_path})", interval_s=0.5)
        yield DEPLOYMENT
    finally:
        stop_pid(service.pid, "npc-create-runner")


@pytest.fixture(scope="module")
def browser():
    with chromium(ARGS) as instance:
        yield instance


def _open(browser, base: str, key: str, problems: list[str]):
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}")
            if m.type == "error" and "status of 422" not in m.text else None)
    page.add_init_script(f"sessionStorage.setItem('gaiverse.apiKey', {key!r});")
    page.goto(base + "/web/npc.html?npc=innkeeper")
    page.wait_for_selector("#c-template optgroup option", state="attached")
    page.wait_for_selector("#c-domains input", state="attached")
    return page


def _field_error(page, field: str) -> str:
    return page.text_content(f'#create-form [data-field="{field}"] > .field-error')


@pytest.mark.clause("NPC-b2")
def test_bad_settings_show_their_error_next_to_the_field(browser, npc_api, admin_key, artifacts_dir):
    _, key = make_user(npc_api, admin_key, "npc-create-bad")
    problems: list[str] = []
    page = _open(browser, npc_api, key, problems)
    try:
        page.fill("#c-role", "lighthouse keeper")
        page.fill("#c-age", "12")
        page.click("#c-submit")
        page.wait_for_selector('#create-form [data-field="age"].invalid')
        age_error = _field_error(page, "age")
        page.screenshot(path=str(artifacts_dir / "npc-create-bad-age.png"), full_page=True)

        page.fill("#c-age", "40")
        page.fill("#c-rate", "9")  # voice.rate: at most 4
        page.click("#c-submit")
        page.wait_for_selector('#create-form [data-field="voice.rate"].invalid')
        rate_error = _field_error(page, "voice.rate")
        age_cleared = _field_error(page, "age")
        page.locator("#create-card").screenshot(path=str(artifacts_dir / "npc-create-bad-rate.png"))
        progress = page.text_content("#create-progress")
    finally:
        page.close()
    assert "greater than or equal to 16" in age_error, age_error
    assert "less than or equal to 4" in rate_error, rate_error
    assert age_cleared == "" and progress == ""  # the earlier error is gone; no run was started
    mine = httpx.get(npc_api + "/npcs", headers={"X-API-Key": key}, timeout=30).json()
    assert mine == []
    assert not problems, problems


@pytest.mark.clause("NPC-a2")
@pytest.mark.clause("NPC-b1")
@pytest.mark.clause("NPC-b2")
@pytest.mark.clause("NPC-d1")
def test_create_an_npc_in_the_terminal_and_talk_to_it(browser, npc_api, npc_deployment, admin_key, artifacts_dir):
    _, key = make_user(npc_api, admin_key, "npc-create")
    problems: list[str] = []
    page = _open(browser, npc_api, key, problems)
    try:
        page.select_option("#c-template", "srd:commoner")
        page.fill("#c-name", "Ona")
        page.fill("#c-role", "lighthouse keeper")
        page.fill("#c-traits", "grumpy, watchful")
        page.fill("#c-background", "Kept the Saltmere light through thirty winters.")
        page.check("#c-domains input[value='history']")
        page.check("#c-domains input[value='geography']")
        page.select_option("#c-species", "dwarf")
        page.select_option("#c-sex", "female")
        page.fill("#c-age", "63")
        page.fill("#c-pitch", "-2")
        page.fill("#c-appearance", "short, heavy, grey hair")
        page.fill("#c-seed", "1887")
        page.fill("#c-facts", FACT)
        page.set_input_files("#c-doc", files=[{"name": "saltmere.md", "mimeType": "text/markdown", "buffer": DOCUMENT}])
        started = time.monotonic()
        page.click("#c-submit")
        page.wait_for_function("() => window.npcPage.creating", timeout=60_000)
        npc_id = page.evaluate("() => window.npcPage.creating.npc_id")
        page.wait_for_function("() => window.npcPage.created || document.querySelector('#create-progress li.fail')",
                               timeout=WAIT_MS)
        progress = page.text_content("#create-progress")
        print(f"NPC created and taught in {time.monotonic() - started:.1f} s")
        assert page.evaluate("() => !!window.npcPage.created"), progress
        page.locator("#create-card").screenshot(path=str(artifacts_dir / "npc-create-profile.png"))
        profile = page.text_content("#npc-profile")

        # the page switched to the new NPC: ask it about its own fact
        page.wait_for_function(f"() => window.npcPage.npcId === {npc_id!r}")
        page.wait_for_selector("#conn:has-text('connected')", timeout=WAIT_MS)
        before = page.evaluate("() => window.npcPage.turnsDone || 0")
        page.fill("#chat-input", "When was the lamp lit?")
        page.press("#chat-input", "Enter")
        page.wait_for_function(f"() => (window.npcPage.turnsDone || 0) > {before}", timeout=WAIT_MS)
        print(f"created, connected and answered in {time.monotonic() - started:.1f} s")
        page.screenshot(path=str(artifacts_dir / "npc-create-talk.png"), full_page=True)
        reply = page.text_content("#chat li.npc:last-of-type")
        kinds = page.evaluate("() => window.npcPage.events.map((e) => e.type)")
        ready = page.evaluate("() => window.npcPage.events.filter((e) => e.type === 'state' && e.state === 'ready').at(-1)")
        heading = page.text_content("#npc-name"), page.text_content("#npc-role")
        picked = page.eval_on_selector("#npc-select", "s => s.value")
    finally:
        page.close()

    assert "run " in progress and "Ona is ready" in progress and f"taught fact: {FACT}" in progress, progress
    assert "document: saltmere.md" in progress, progress
    assert "Ona, lighthouse keeper" in profile and "grumpy" in profile and "Backstory" in profile, profile
    assert "Daily schedule" in profile and "dwarf" in profile and "Kept the Saltmere light" in profile, profile
    assert f"{FACT} (fact, general)" in profile and "212 steps" in profile, profile  # its own knowledge
    assert heading[0] == "Ona" and "lighthouse keeper" in heading[1] and picked == npc_id
    assert ready["npc"]["npc_id"] == npc_id and ready["npc"]["style"] == "gruff", ready
    assert ready["npc"]["voice"]["pitch_semitones"] == -2, ready["npc"]["voice"]  # the voice setting was kept
    assert "1887" in reply, reply
    assert {"text_delta", "text_done", "expression", "gesture"} <= set(kinds), kinds
    detail = httpx.get(f"{npc_api}/npcs/{npc_id}", headers={"X-API-Key": key}, timeout=30).json()
    assert detail["profile"]["traits"][:2] == ["grumpy", "watchful"] and detail["profile"]["age"] == 63
    assert not problems, problems
