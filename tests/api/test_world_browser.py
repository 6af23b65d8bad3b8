"""The worlds page in headless chromium: versions, the 3D view (orbit and walk), a map edit, and the diff.

Screenshots go to tests/artifacts/world-*.png.
"""

from __future__ import annotations


import pytest

from gaiverse.world.versions import WorldVersions
from tests.world._world_fixtures import small_state

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

from tests.browser import HEADLESS, WEBGL, chromium
ARGS = [*HEADLESS, *WEBGL]

# Share of canvas pixels that are not the viewer's background (#0c0f14): how much of the world is drawn.
DRAWN_SHARE = """() => {
  const source = document.getElementById('world-view');
  const copy = document.createElement('canvas');
  copy.width = source.width; copy.height = source.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(source, 0, 0);
  const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
  let drawn = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - 12) + Math.abs(data[i + 1] - 15) + Math.abs(data[i + 2] - 20) > 30) drawn++;
  }
  return drawn / (copy.width * copy.height);
}"""


@pytest.fixture(scope="module")
def browser():
    with chromium(ARGS) as instance:
        yield instance


@pytest.fixture(scope="module")
def carol_world(api_server, admin, store, catalog):
    """A user and a 256 m world of theirs with an assembled .glb (version 1)."""
    from gaiverse.world import world_build
    from tests.api.conftest import _make_user

    user = _make_user(api_server, admin, "carol")
    state = small_state(size=32)
    files = world_build.version_files(state, world_build.render(state))
    world_id = "web-" + user.user["user_id"][:8]
    WorldVersions(store, catalog).publish(world_id, state, author=user.user["user_id"], message="seeded for the browser",
                                          derived=files, new_world=True)
    yield user, world_id
    user.close()


def frames(page, n: int = 3) -> None:
    page.evaluate("(n) => new Promise((done) => { let k = n; const f = () => (--k > 0 ? requestAnimationFrame(f) : done()); "
                  "requestAnimationFrame(f); })", n)


def test_world_page_versions_view_edit_diff_walk(browser, api_server, carol_world, artifacts_dir):
    user, world_id = carol_world
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    try:
        page.goto(api_server + "/")
        page.evaluate("key => sessionStorage.setItem('gaiverse.apiKey', key)", user.key)
        page.goto(f"{api_server}/web/world.html?world={world_id}")
        page.wait_for_selector("#versions li[data-version='1']")
        page.wait_for_selector("#world-view[data-state='loaded']", timeout=120_000)
        frames(page)
        orbit_share = page.evaluate(DRAWN_SHARE)
        page.screenshot(path=str(artifacts_dir / "world-page.png"), full_page=True)

        # drag a region on the map, raise it: a new version appears and is shown
        page.select_option("#edit-op", "raise")  # first: changing the tool clears the selection
        box = page.locator("#map-overlay").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.7, steps=4)
        page.mouse.up()
        page.fill("#edit-amount", "25")
        page.click("#edit-form button")
        page.wait_for_selector("#edit-status:not(:empty)", timeout=60_000)
        assert "v2 published" in page.text_content("#edit-status"), page.text_content("#edit-status")
        page.wait_for_selector("#versions li[data-version='2'][aria-current='true']")
        page.wait_for_selector("#world-view[data-state='loaded']", timeout=900_000)

        page.fill("#diff-from", "1")
        page.fill("#diff-to", "2")
        page.click("#diff-form button[type='submit']")
        page.wait_for_selector("#diff-image:not([hidden])")
        page.wait_for_function("() => document.getElementById('diff-image').naturalWidth > 0")
        diff_text = page.text_content("#diff-data")
        page.screenshot(path=str(artifacts_dir / "world-edit-diff.png"), full_page=True)

        page.click("#mode-walk")
        page.focus("#world-view")
        for _ in range(5):
            page.keyboard.press("w")
        frames(page, 5)
        walk_share = page.evaluate(DRAWN_SHARE)
        mode = page.get_attribute("#world-view", "data-mode")
        page.locator("#world-view").screenshot(path=str(artifacts_dir / "world-walk.png"))
    finally:
        page.close()
    assert orbit_share > 0.1, orbit_share  # the world is drawn (framed whole, it fills about a fifth of the view)
    assert "cells changed" in diff_text and "identical" not in diff_text, diff_text
    assert mode == "walk" and walk_share > 0.3, walk_share  # at eye level the ground fills the lower view
    assert not problems, problems
