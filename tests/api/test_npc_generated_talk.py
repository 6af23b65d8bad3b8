"""A user's own generated NPC, end to end: generate and publish it, give it a private fact, talk with it live.

The NPC is published by the real generation flow in-process (Prefect server, S3, catalog, the
session's Ray), the fact goes through ``POST /knowledge/facts`` scoped to that NPC, and the turn
runs over ``/npc/ws`` on a real uvicorn API whose dialogue, ASR and TTS actors live on the same
Ray. Then the user's data is erased and the dialogue actor no longer remembers them.
"""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.api.npc_live_support import make_user, npc_api_fixture, recv, turn, until, ws_url

pytestmark = pytest.mark.slow

NPC = "brann-forge"
FACT = "The secret quench for Duskwall steel is cold brine mixed with oak ash."
QUESTION = "What is the secret quench for Duskwall steel?"


npc_api = npc_api_fixture("api-npc-gen")


@pytest.fixture(scope="module")
def owner(npc_api, admin_key):
    return make_user(npc_api, admin_key, "brann-owner")


@pytest.fixture(scope="module")
def brann(owner, prefect_server, ray_local, store, catalog) -> dict:
    """Brann, generated from the owner's settings and published as ``npc/<owner>/brann-forge``."""
    import prefect.context

    from flows.npc import generate_npc

    prefect.context.refresh_global_settings_context()  # pick up the session server's PREFECT_API_URL
    return generate_npc(settings={"name": "Brann", "role": "blacksmith", "traits": ["grumpy"],
                                  "domains": ["weapons"], "seed": 5},
                        npc_id=NPC, user_id=owner[0])


def _auth(key: str) -> dict:
    return {"X-API-Key": key}


@pytest.mark.clause("NPC-a2")
@pytest.mark.clause("NPC-b1")
@pytest.mark.clause("NPC-d1")
def test_owner_talks_with_their_generated_npc_about_its_private_fact(npc_api, owner, brann, admin_key):
    fact = httpx.post(npc_api + "/knowledge/facts", headers=_auth(owner[1]), timeout=120,
                      json={"text": FACT, "npc_id": NPC, "entity": "Duskwall steel"})
    assert fact.status_code == 201, fact.text
    assert fact.json()["npc_id"] == NPC and fact.json()["owner"] == "you"

    with connect(ws_url(npc_api, f"npc={NPC}&key={owner[1]}"), max_size=None) as ws:
        ready = until(ws, "state", "ready")[-1]
        npc = ready["npc"]
        assert (npc["npc_id"], npc["name"], npc["role"], npc["style"]) == (NPC, "Brann", "blacksmith", "gruff")
        assert npc["glb"] == brann["assets"]["glb"] and ready["speech"] is True
        assert npc["voice"]["voice"] == "en_US-joe-medium" and "pitch_semitones" in npc["voice"]  # its own voice
        events = turn(ws, {"type": "text", "text": QUESTION})
        greeting = turn(ws, {"type": "hci", "kind": "click", "target_kind": "npc"})

    types = {e["type"] for e in events}
    done = next(e for e in events if e["type"] == "text_done")
    assert done["grounded"] and not done.get("refused"), done
    assert "brine" in done["text"] and "oak ash" in done["text"], done["text"]
    assert {"text_delta", "audio", "visemes", "expression", "gesture"} <= types, types
    audio = [e for e in events if e["type"] == "audio"]
    assert " ".join(a["text"] for a in audio) == done["text"]
    greet = next(e for e in greeting if e["type"] == "text_done")["text"]
    assert "Brann" in greet, greet  # in character: the persona from the generated profile

    # Nobody else can talk with (or teach) this NPC: it is not theirs and not a preset.
    _, other_key = make_user(npc_api, admin_key, "not-the-owner")
    with connect(ws_url(npc_api, f"npc={NPC}&key={other_key}")) as ws:
        error = recv(ws)
        assert error["type"] == "error" and error["fatal"] and NPC in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
        assert closed.value.rcvd.code == 1008
    stolen = httpx.post(npc_api + "/knowledge/facts", headers=_auth(other_key), timeout=60,
                        json={"text": "Brann owes me ten gold.", "npc_id": NPC})
    assert stolen.status_code == 404 and NPC in stolen.json()["detail"]


@pytest.mark.clause("NPC-c2")
def test_erasure_makes_the_dialogue_actor_forget_the_user(npc_api, admin_key, ray_local):
    from ray_actors.cluster import NAMESPACE
    from ray_actors.npc_runtime import DIALOGUE_ACTOR

    user_id, key = make_user(npc_api, admin_key, "forgetful")
    name = httpx.get(npc_api + "/me", headers=_auth(key), timeout=30).json()["name"]
    with connect(ws_url(npc_api, f"npc=innkeeper&key={key}"), max_size=None) as ws:
        until(ws, "state", "ready")
        turn(ws, {"type": "text", "text": "What is the capital of Kenya?"})

    dialogue = ray_local.get_actor(DIALOGUE_ACTOR, namespace=NAMESPACE)

    def recalled() -> str:
        events = [ray_local.get(ref) for ref in dialogue.turn.remote(user_id, "innkeeper",
                                                                      text="What did I ask you before?")]
        return next(e for e in events if e["type"] == "reply")["text"]

    assert "capital of Kenya" in recalled()  # remembered before the erasure
    erased = httpx.delete(npc_api + "/personalization/data", params={"confirm": name}, headers=_auth(key),
                          timeout=120)
    assert erased.status_code == 200, erased.text
    assert erased.json()["npc_memory_forgotten"] is True
    assert "capital of Kenya" not in recalled()
    ray_local.get(dialogue.forget.remote(user_id))  # the probe above was remembered too
