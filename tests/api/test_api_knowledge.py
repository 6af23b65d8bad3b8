"""/knowledge over the real API server: validation with one-line reasons, the document and fact lifecycle
(upload Markdown/CSV/JSON, list, get, edit, delete, search with domain and NPC filters), isolation between
users on every endpoint, and a large document handed to the ingestion flow served by a real runner."""

from __future__ import annotations

import json
import sys
import uuid

import httpx
import pytest

from gaiverse.config import REPO_ROOT, Settings, prefect_env
from gaiverse.proc import spawn, stop_pid, wait_until

pytestmark = pytest.mark.slow
K = "/knowledge"


def _new_user(api_server: str, admin: httpx.Client, prefix: str) -> httpx.Client:
    response = admin.post("/users", json={"name": f"{prefix}-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    body = response.json()
    http = httpx.Client(base_url=api_server, timeout=120, headers={"X-API-Key": body["key"]})
    http.user_id = body["user_id"]  # type: ignore[attr-defined]
    return http


@pytest.fixture
def fresh(api_server, admin):
    made: list[httpx.Client] = []

    def make(prefix: str) -> httpx.Client:
        made.append(_new_user(api_server, admin, prefix))
        return made[-1]

    yield make
    for http in made:
        http.close()


def _upload(http: httpx.Client, name: str, data: bytes | str, **params) -> httpx.Response:
    raw = data.encode() if isinstance(data, str) else data
    return http.post(f"{K}/documents", params=params, files={"file": (name, raw)})


def _search(http: httpx.Client, query: str, **params) -> list[dict]:
    response = http.get(f"{K}/search", params={"query": query, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _markdown(word: str) -> str:
    return (f"# The {word} lighthouse\n\nThe {word} lighthouse stands on the northern cliff of Saltmere. "
            f"Its keeper, Ona {word}, lights the lamp at dusk every evening.\n\n"
            f"## The {word} harbour\n\nFishing boats of the {word} harbour sail out before dawn and return at noon "
            "with herring and crabs.\n")


@pytest.mark.clause("NPC-a2")
def test_bad_requests_get_one_line_reasons_and_store_nothing(fresh, client, detail):
    user = fresh("kb-val")
    cases = [
        (_upload(user, "notes.pdf", b"%PDF-1.4"), 415),
        (_upload(user, "image.png", b"\x89PNG\r\n\x1a\n"), 415),
        (_upload(user, "empty.md", b""), 422),
        (_upload(user, "blank.txt", b"   \n\n  "), 422),
        (_upload(user, "broken.json", b'{"name": "x", '), 415),  # the content check refuses invalid JSON
        (_upload(user, "short.csv", b"name,height\n"), 422),
        (_upload(user, "ragged.csv", b"name,height\ntower,30,extra\n"), 422),
        (_upload(user, "bin.txt", b"abc\x00def"), 415),
        (_upload(user, "ok.md", "# A\n\nSome text here.", domain="astrology"), 422),
        (_upload(user, "ok.md", "# A\n\nSome text here.", npc_id="bad id!"), 422),
        (_upload(user, "ok.md", "# A\n\nSome text here.", npc_id="nobody-made-this-npc"), 404),
        (user.post(f"{K}/documents", content=b"x", headers={"content-type": "text/plain"}), 415),
        (user.post(f"{K}/facts", json={"text": ""}), 422),
        (user.post(f"{K}/facts", json={"text": "   "}), 422),
        (user.post(f"{K}/facts", json={"text": "A fact.", "domain": "Monsters!"}), 422),
        (user.get(f"{K}/search", params={"query": ""}), 422),
        (user.get(f"{K}/search", params={"query": "   "}), 422),
        (user.get(f"{K}/search", params={"query": "x", "k": 0}), 422),
        (user.get(f"{K}/search", params={"query": "x", "domain": "astrology"}), 422),
        (user.get(f"{K}/documents/not-a-doc-id"), 422),
        (user.get(f"{K}/documents/doc_0123456789abcdef"), 404),
        (user.delete(f"{K}/documents/doc_0123456789abcdef"), 404),
        (user.get(f"{K}/passages/0"), 422),
        (user.patch(f"{K}/passages/999999999", json={"text": "new"}), 404),
        (user.delete(f"{K}/passages/999999999"), 404),
        (client.get(f"{K}/documents"), 401),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.method, response.request.url, response.text)
        detail(response)
    assert user.get(f"{K}/documents").json() == [] and user.get(f"{K}/passages").json() == []


@pytest.mark.clause("NPC-a2")
def test_documents_and_facts_lifecycle_with_domain_and_npc_scopes(fresh):
    user = fresh("kb-life")
    word = f"zq{uuid.uuid4().hex[:6]}"
    md = _upload(user, "saltmere.md", _markdown(word), domain="world")
    assert md.status_code == 201, md.text
    stored = md.json()
    assert stored["status"] == "stored" and stored["passages"] == len(stored["passage_ids"]) >= 2
    csv_doc = _upload(user, "towers.csv", f"name,height,built\n{word} tower,30 metres,1203\nOld mill,12 metres,1450\n",
                      domain="history")
    assert csv_doc.status_code == 201 and csv_doc.json()["passages"] == 2
    records = [{"name": f"{word} guild", "founded": 1320, "trade": "rope and sailcloth"}]
    js = _upload(user, "guilds.json", json.dumps(records), domain="commerce")
    assert js.status_code == 201, js.text
    fact = user.post(f"{K}/facts", json={"text": f"The {word} innkeeper brews a blue ale.", "npc_id": "innkeeper",
                                         "entity": f"{word} inn"})
    assert fact.status_code == 201 and fact.json()["owner"] == "you" and fact.json()["npc_id"] == "innkeeper"

    docs = {d["name"]: d for d in user.get(f"{K}/documents").json()}
    assert set(docs) == {"saltmere.md", "towers.csv", "guilds.json", "fact"}
    assert docs["fact"]["kind"] == "fact" and docs["saltmere.md"]["passages"] == stored["passages"]
    assert [d["name"] for d in user.get(f"{K}/documents", params={"npc_id": "innkeeper"}).json()] == ["fact"]
    detail_doc = user.get(f"{K}/documents/{stored['doc_id']}").json()
    assert [p["id"] for p in detail_doc["items"]] == stored["passage_ids"]
    assert {p["domain"] for p in user.get(f"{K}/passages", params={"domain": "history"}).json()} == {"history"}

    # search: own additions with domain filters; the NPC-scoped fact only with that NPC
    hits = _search(user, f"Who keeps the {word} lighthouse?", include_prior="false")
    assert hits[0]["passage"]["doc_id"] == stored["doc_id"] and f"Ona {word}" in hits[0]["passage"]["text"]
    assert all(h["passage"]["domain"] == "history" for h in _search(user, f"{word} tower", domain="history"))
    assert _search(user, f"{word} tower height", domain="history")[0]["passage"]["entity"] == f"{word} tower"
    unscoped = _search(user, f"{word} blue ale", include_prior="false", k=50)
    assert fact.json()["id"] not in [h["passage"]["id"] for h in unscoped]
    scoped = _search(user, f"{word} blue ale", npc_id="innkeeper", include_prior="false")
    assert scoped[0]["passage"]["id"] == fact.json()["id"]

    # edit: the new text is what search finds; delete a passage, then a document
    first = stored["passage_ids"][0]
    edited = user.patch(f"{K}/passages/{first}", json={"text": f"The {word} lighthouse was painted red in spring.",
                                                        "domain": "lore"})
    assert edited.status_code == 200 and edited.json()["domain"] == "lore"
    assert "painted red" in _search(user, f"what colour is the {word} lighthouse", include_prior="false")[0][
        "passage"]["text"]
    assert user.delete(f"{K}/passages/{first}").json() == {"deleted": 1}
    assert user.get(f"{K}/passages/{first}").status_code == 404
    assert user.delete(f"{K}/documents/{csv_doc.json()['doc_id']}").json() == {"deleted": 2}
    assert not any("tower" in h["passage"]["text"] for h in _search(user, f"{word} tower", include_prior="false"))
    # uploading the same name again replaces the document
    again = _upload(user, "saltmere.md", f"# Saltmere\n\nThe {word} lighthouse is gone now.", domain="world")
    assert again.json()["doc_id"] == stored["doc_id"] and again.json()["passages"] == 1
    assert user.get(f"{K}/documents/{stored['doc_id']}").json()["passages"] == 1


@pytest.mark.clause("NPC-a1")
def test_search_reaches_the_prior_knowledge_with_domain_filters(fresh):
    user = fresh("kb-prior")
    domains = [d["domain"] for d in user.get(f"{K}/domains").json()]
    assert {"monsters", "geography", "general"} <= set(domains)

    def prior_loaded() -> bool:
        hits = _search(user, "What is the armor class of the aboleth?", domain="monsters")
        return bool(hits) and hits[0]["passage"]["owner"] == "prior"

    wait_until(prior_loaded, 120, "the API to load the prior knowledge")
    top = _search(user, "What is the armor class of the aboleth?", domain="monsters")[0]["passage"]
    assert "armor class of 17" in top["text"]
    assert user.get(f"{K}/passages/{top['id']}").json()["owner"] == "prior"
    assert all(h["passage"]["domain"] == "geography"
               for h in _search(user, "capital of France", domain="geography", k=5))
    # the prior is not the user's to change
    assert user.patch(f"{K}/passages/{top['id']}", json={"text": "changed"}).status_code == 404
    assert user.delete(f"{K}/passages/{top['id']}").status_code == 404


@pytest.mark.clause("NPC-a2")
def test_no_user_sees_or_changes_another_users_knowledge_through_any_endpoint(fresh):
    alice, bob = fresh("kb-alice"), fresh("kb-bob")
    secret = f"xk{uuid.uuid4().hex[:8]}"
    doc = _upload(alice, "secret.md", f"# {secret} vault\n\nThe {secret} vault code is 4711 and it lies under "
                                      "the old mill.").json()
    fact = alice.post(f"{K}/facts", json={"text": f"The {secret} password is swordfish.", "npc_id": "sage"}).json()
    pid = doc["passage_ids"][0]

    # reading: lists, documents, passages, search (with and without the NPC scope)
    assert bob.get(f"{K}/documents").json() == [] and bob.get(f"{K}/passages").json() == []
    assert bob.get(f"{K}/documents", params={"npc_id": "sage"}).json() == []
    assert bob.get(f"{K}/passages", params={"npc_id": "sage"}).json() == []
    assert bob.get(f"{K}/documents/{doc['doc_id']}").status_code == 404
    assert bob.get(f"{K}/documents/{fact['doc_id']}").status_code == 404
    for passage in (pid, fact["id"]):
        assert bob.get(f"{K}/passages/{passage}").status_code == 404
    for params in ({}, {"npc_id": "sage"}, {"include_prior": "false"}, {"domain": "general", "k": 50}):
        assert secret not in json.dumps(_search(bob, f"{secret} vault code password", **params))
    # writing: edit, delete passage, delete document, replace by uploading the same name
    assert bob.patch(f"{K}/passages/{pid}", json={"text": "bob was here"}).status_code == 404
    assert bob.delete(f"{K}/passages/{fact['id']}").status_code == 404
    assert bob.delete(f"{K}/documents/{doc['doc_id']}").status_code == 404
    assert bob.delete(f"{K}/documents/{fact['doc_id']}").status_code == 404
    mine = _upload(bob, "secret.md", "# Mine\n\nBob's own note about apples.").json()
    assert mine["doc_id"] != doc["doc_id"]

    # alice still has everything, unchanged
    assert alice.get(f"{K}/passages/{pid}").json()["text"].startswith(f"The {secret} vault code is 4711")
    assert alice.get(f"{K}/documents/{doc['doc_id']}").json()["passages"] == 1
    assert _search(alice, f"{secret} password", npc_id="sage", include_prior="false")[0]["passage"]["id"] == fact["id"]
    assert "apples" not in json.dumps(_search(alice, "note about apples", include_prior="false"))


@pytest.fixture(scope="module")
def knowledge_runner(settings: Settings, prefect_server):
    """The ingestion deployment (knowledge-ingest/ingest) served by a runner subprocess polling every second."""
    env = {**prefect_env(settings), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    code = ("from prefect import serve; from flows.knowledge import ingest_knowledge; "
            "serve(ingest_knowledge.to_deployment(name='ingest'))")
    service = spawn("kb-runner", [sys.executable, "-c", code], settings.run_dir, env=env, cwd=REPO_ROOT)

    def deployed() -> bool:
        try:
            url = f"{settings.prefect_url}/deployments/name/knowledge-ingest/ingest"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(deployed, 120, f"the ingestion deployment (log: {service.log_path})", interval_s=0.5)
        yield "knowledge-ingest/ingest"
    finally:
        stop_pid(service.pid, "kb-runner")


@pytest.mark.clause("NPC-a2")
def test_a_large_document_goes_through_the_ingestion_flow(fresh, knowledge_runner, catalog):
    user, other = fresh("kb-large"), fresh("kb-other")
    word = f"lg{uuid.uuid4().hex[:6]}"
    sections = [f"## Street {i} of {word}\n\nStreet {i} of {word} has {i + 3} houses and a well painted "
                f"{['red', 'green', 'blue'][i % 3]}; the baker there sells {i + 1} loaves a day." for i in range(80)]
    response = _upload(user, "streets.md", f"# {word} town\n\n" + "\n\n".join(sections), domain="world")
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "ingesting" and queued["passages"] > 64 and queued["passage_ids"] == []
    run_id = queued["run_id"]
    assert other.get(f"/runs/{run_id}").status_code == 404

    def finished() -> bool:
        state = user.get(f"/runs/{run_id}").json()["state"]
        assert state not in ("FAILED", "CRASHED", "CANCELLED"), user.get(f"/runs/{run_id}/logs").text[-2000:]
        return state == "COMPLETED"

    wait_until(finished, 240, f"ingestion run {run_id}", interval_s=1)
    stored = user.get(f"{K}/documents/{queued['doc_id']}").json()
    assert stored["passages"] == queued["passages"] == len(stored["items"])
    assert "Street 41 of" in _search(user, f"how many houses are on street 41 of {word}",
                                     include_prior="false")[0]["passage"]["text"]
    assert other.get(f"{K}/documents/{queued['doc_id']}").status_code == 404
    validation = catalog.query("SELECT success FROM validations WHERE suite = 'npc.knowledge_ingest' "
                               "AND flow_run_id = ?", [run_id])
    assert validation and validation[0]["success"]
    # the kept upload is the user's asset: listed for them, not for others
    assert any(a["kind"] == "upload/knowledge" for a in user.get("/assets").json())
    assert not any(a["kind"] == "upload/knowledge" for a in other.get("/assets").json())


@pytest.mark.clause("NPC-a2")
@pytest.mark.clause("PER-f1")
def test_erasing_a_user_removes_their_knowledge_without_a_trace(fresh, settings):
    from gaiverse.npc.kb_shared import kb_path_for
    from gaiverse.personalization.audit import scan_bytes

    user, other = fresh("kb-erase"), fresh("kb-stays")
    secret, kept = f"er{uuid.uuid4().hex[:10]}", f"kp{uuid.uuid4().hex[:10]}"
    doc = _upload(user, "diary.md", f"# {secret}\n\nMy {secret} diary says the key is under the mat.").json()
    user.post(f"{K}/facts", json={"text": f"The {secret} code is 1234.", "npc_id": "sage"})
    other.post(f"{K}/facts", json={"text": f"The {kept} code is 5678."})
    exported = user.get("/personalization/export").json()["knowledge"]
    assert {d["doc_id"] for d in exported} >= {doc["doc_id"]} and secret in json.dumps(exported)
    assert kept not in json.dumps(exported)
    name = user.get("/me").json()["name"]
    erased = user.delete("/personalization/data", params={"confirm": name})
    assert erased.status_code == 200, erased.text
    assert erased.json()["knowledge_passages"] == 2
    assert user.get(f"{K}/documents").status_code == 401
    kb_file = kb_path_for(settings.data_dir)
    assert scan_bytes([kb_file], [secret.encode(), user.user_id.encode(), doc["doc_id"].encode()]) == []
    assert "5678" in _search(other, f"{kept} code", include_prior="false")[0]["passage"]["text"]
