"""The "Knowledge" page in headless chromium against the real API: upload a document, add a fact for one NPC,
search, edit and delete. Screenshots go to tests/artifacts/knowledge-*.png."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

from tests.browser import HEADLESS, chromium
ARGS = list(HEADLESS)


@pytest.fixture(scope="module")
def browser():
    with chromium(ARGS) as instance:
        yield instance


@pytest.mark.clause("NPC-a2")
def test_knowledge_page_upload_fact_search_edit_delete(browser, api_server, admin, artifacts_dir, tmp_path):
    made = admin.post("/users", json={"name": f"scribe-{uuid.uuid4().hex[:8]}"}).json()
    tag = f"kw{uuid.uuid4().hex[:6]}"
    notes = tmp_path / "saltmere.md"
    notes.write_text(f"# The {tag} lighthouse\n\nThe {tag} lighthouse has one hundred and twelve steps.\n\n"
                     f"## The {tag} harbour\n\nBoats of the {tag} harbour return at noon with herring.\n")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} for {r.url}") if r.status >= 400 else None)
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        page.goto(api_server + "/")
        page.fill("#api-key", made["key"])
        page.click("#sign-in-form button")
        page.wait_for_selector("#terminal", state="visible")
        page.goto(api_server + "/web/knowledge.html")
        page.wait_for_selector("body[data-ready='true']")

        page.set_input_files("#doc-file", str(notes))
        page.select_option("#doc-domain", "world")
        page.click("#doc-form button")
        page.wait_for_selector("#doc-status.ok:has-text('saltmere.md: 2 passages stored')")
        page.fill("#fact-text", f"The {tag} innkeeper brews a blue ale.")
        page.fill("#fact-npc", "innkeeper")
        page.click("#fact-form button")
        page.wait_for_selector("#fact-status.ok:has-text('for innkeeper')")
        page.wait_for_selector("#documents tbody tr >> nth=1")

        page.fill("#search-query", f"What does the {tag} innkeeper brew?")
        page.fill("#search-npc", "innkeeper")
        page.uncheck("#search-prior")
        page.click("#search-form button")
        page.wait_for_selector("#search-status.ok")
        assert "blue ale" in page.text_content("#hits li:first-child")
        assert page.get_attribute("#hits li:first-child", "data-owner") == "you"
        page.screenshot(path=str(artifacts_dir / "knowledge-1-added.png"), full_page=True)

        page.click("#documents tbody tr:has-text('saltmere.md')")
        page.wait_for_selector("#passages li >> nth=1")
        page.click("#passages li:first-child button:has-text('Edit')")
        page.fill("#passages li:first-child textarea", f"The {tag} lighthouse was painted red in spring.")
        page.click("#passages li:first-child button:has-text('Save')")
        page.wait_for_selector("#docs-status.ok:has-text('saved')")
        page.fill("#search-query", f"what colour is the {tag} lighthouse")
        page.fill("#search-npc", "")
        page.click("#search-form button")
        page.wait_for_selector("#hits li:first-child:has-text('painted red')")
        page.screenshot(path=str(artifacts_dir / "knowledge-2-edited.png"), full_page=True)

        page.click("#documents tbody tr:has-text('saltmere.md') button:has-text('Delete')")
        page.wait_for_selector("#docs-status.ok:has-text('deleted (2 passages)')")
        assert page.eval_on_selector_all("#documents tbody tr", "rows => rows.length") == 1
        page.screenshot(path=str(artifacts_dir / "knowledge-3-deleted.png"), full_page=True)
    finally:
        page.close()
    with httpx.Client(base_url=api_server, headers={"X-API-Key": made["key"]}) as http:
        assert [d["name"] for d in http.get("/knowledge/documents").json()] == ["fact"]
    assert not problems, problems
