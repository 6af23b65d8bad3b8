"""The web terminal in headless Debian chromium (Playwright): sign in, live runs list, a .glb in the viewer.

Screenshots go to tests/artifacts/. Browsers cannot be downloaded here, so Playwright drives
the system chromium (setup installs it); the test is skipped only when it is absent.
"""

from __future__ import annotations


import pytest

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

from tests.browser import HEADLESS, WEBGL, chromium
ARGS = [*HEADLESS, *WEBGL]

# Counts pixels of the model's two vertex colours (orange box, blue ball) in the viewer canvas.
COUNT_MODEL_PIXELS = """() => {
  const source = document.getElementById('viewer');
  const copy = document.createElement('canvas');
  copy.width = source.width; copy.height = source.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(source, 0, 0);
  const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
  let orange = 0, blue = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
    if (r > 120 && r > g + 30 && g > b + 20) orange++;
    if (b > 120 && b > r + 40 && g > r) blue++;
  }
  return { orange, blue, total: copy.width * copy.height };
}"""


@pytest.fixture(scope="module")
def browser():
    with chromium(ARGS) as instance:
        yield instance


def test_terminal_lists_runs_live_and_shows_a_glb(browser, api_server, alice, served_flow, glb_bytes,
                                                  artifacts_dir):
    run = alice.post("/runs", json={"flow": served_flow, "parameters": {"n": 5, "label": "browser"}})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    upload = alice.post("/uploads", files={"file": ("scene.glb", glb_bytes, "model/gltf-binary")})
    assert upload.status_code == 201, upload.text
    key = upload.json()["key"]

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} for {r.url}") if r.status >= 400 else None)
    try:
        page.goto(api_server + "/")
        page.screenshot(path=str(artifacts_dir / "terminal-sign-in.png"))
        assert page.is_visible("#sign-in") and not page.is_visible("#terminal")
        page.fill("#api-key", "gv_wrong_key")
        page.click("#sign-in-form button")
        page.wait_for_selector("#sign-in-error:has-text('invalid API key')")
        problems.clear()  # the 401 of that wrong key was expected
        page.fill("#api-key", alice.key)
        page.click("#sign-in-form button")
        page.wait_for_selector(f"#runs tr[data-run-id='{run_id}']")
        assert page.text_content("#who") == alice.user["name"]
        # the list polls: the run turns COMPLETED without a reload
        page.wait_for_selector(f"#runs tr[data-run-id='{run_id}'] .state.COMPLETED", timeout=180_000)

        # trigger a run from the form; it appears in the list and its logs open on click
        page.fill("#parameter-fields input[name='n']", "7")
        page.click("#trigger-form button")
        page.wait_for_selector("#trigger-result:has-text('started')")
        started = page.text_content("#trigger-result").split()[1]
        row = f"#runs tr[data-run-id^='{started}']"
        page.wait_for_selector(f"{row} .state.COMPLETED", timeout=180_000)
        page.click(row)
        page.wait_for_selector("#run-logs:has-text('api-tiny got n=7')", timeout=60_000)
        page.screenshot(path=str(artifacts_dir / "terminal-runs.png"), full_page=True)

        page.click(f"#assets tr[data-key='{key}']")
        page.wait_for_selector("#viewer[data-state='loaded']", timeout=60_000)
        page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        pixels = page.evaluate(COUNT_MODEL_PIXELS)
        page.screenshot(path=str(artifacts_dir / "terminal-viewer.png"), full_page=True)
        page.locator("#viewer").screenshot(path=str(artifacts_dir / "viewer-canvas.png"))
    finally:
        page.close()
    assert pixels["orange"] > 0.005 * pixels["total"], pixels  # the box is drawn
    assert pixels["blue"] > 0.002 * pixels["total"], pixels    # and the ball on it
    assert not problems, problems
