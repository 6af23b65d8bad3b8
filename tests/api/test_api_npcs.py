"""``/npcs`` over HTTP: a published NPC is listed and readable by its owner only; templates stay private.

The NPC is published by running the real generation flow in-process (Prefect server, S3, catalog,
Ray of the session) for alice; the API server is the real uvicorn subprocess.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(alice, prefect_server, ray_local, store, catalog) -> dict:
    import prefect.context

    from flows.npc import generate_npc

    prefect.context.refresh_global_settings_context()  # pick up the session server's PREFECT_API_URL
    return generate_npc(settings={"name": "Mira", "role": "innkeeper", "traits": ["cheerful"],
                                  "domains": ["travel"], "seed": 3},
                        npc_id="mira-inn", user_id=alice.user["user_id"])


@pytest.mark.clause("NPC-b1")
def test_owner_lists_and_reads_the_npc_and_others_get_404(published, alice, bob):
    listed = alice.get("/npcs")
    assert listed.status_code == 200, listed.text
    mine = {n["npc_id"]: n for n in listed.json()}
    assert mine["mira-inn"]["name"] == "Mira" and mine["mira-inn"]["version"] == published["version"]
    detail = alice.get("/npcs/mira-inn")
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["profile"]["dialogue_style"]["style"] == "friendly" and body["validation"]["gltf_errors"] == 0
    assert set(body["assets"]) == {"glb", "preview", "profile"}
    glb = alice.get(f"/assets/{body['assets']['glb']}/content")
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"

    assert bob.get("/npcs").json() == []
    missing = bob.get("/npcs/mira-inn")
    assert missing.status_code == 404 and "mira-inn" in missing.json()["detail"]
    assert bob.get(f"/assets/{body['assets']['glb']}/content").status_code == 404


@pytest.mark.clause("NPC-b2")
def test_templates_are_private_and_generation_is_started_as_a_flow_run(alice, bob):
    created = alice.post("/npcs/templates", json={"name": "My smith", "settings": {
        "role": "blacksmith", "traits": ["grumpy"], "appearance": ["tall"]}})
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    assert template_id in {t["id"] for t in alice.get("/npcs/templates").json()}
    bobs = {t["id"] for t in bob.get("/npcs/templates").json()}
    assert template_id not in bobs and "srd:guard" in bobs
    assert bob.delete(f"/npcs/templates/{template_id}").status_code == 404
    stolen = bob.post("/npcs", json={"template": template_id})
    assert stolen.status_code == 404 and template_id in stolen.json()["detail"]
    bad = alice.post("/npcs", json={"role": "smith", "species": "vulcan"})
    assert bad.status_code == 422 and "species" in bad.text

    started = alice.post("/npcs", json={"template": template_id, "name": "Brann"})
    if started.status_code == 404:  # the session serves no npc-generate deployment
        assert "npc-generate/generate" in started.json()["detail"]
    else:
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["npc_id"].startswith("brann-") and alice.get(body["run_url"]).status_code == 200
    assert alice.delete(f"/npcs/templates/{template_id}").status_code == 204
