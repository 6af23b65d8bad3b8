"""/personalization over the real API server: validation, consent, per-endpoint isolation between users, and
the closed loop of issue 8 (talk, show an image and a voice note, see the profile and recommendations change,
accept a generated quest that then is in the repository, export, erase without a trace)."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from gaiverse.config import REPO_ROOT
from gaiverse.personalization.audit import scan_bytes, scan_duckdb
from gaiverse.personalization.database import Database
from gaiverse.privacy import PURPOSES, KeyRing
from storage.catalog import Catalog
from tests.media import png_bytes, tone_wav_bytes

pytestmark = pytest.mark.slow
P = "/personalization"


def _png() -> bytes:
    return png_bytes((30, 90, 230), 64)


def _wav() -> bytes:
    return tone_wav_bytes(185.0, 0.8)


def _new_user(api_server: str, admin: httpx.Client, prefix: str, consent: bool = True) -> httpx.Client:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    response = admin.post("/users", json={"name": name})
    assert response.status_code == 201, response.text
    body = response.json()
    http = httpx.Client(base_url=api_server, timeout=60, headers={"X-API-Key": body["key"]})
    http.name, http.user_id = name, body["user_id"]  # type: ignore[attr-defined]
    if consent:
        for purpose in PURPOSES:
            assert http.put(f"{P}/consent/{purpose}").status_code == 200
    return http


def _media(http: httpx.Client, name: str, data: bytes, **params) -> httpx.Response:
    return http.post(f"{P}/interactions/media", params=params, files={"file": (name, data)})


@pytest.fixture
def fresh(api_server, admin):
    made: list[httpx.Client] = []

    def make(prefix: str, consent: bool = True) -> httpx.Client:
        made.append(_new_user(api_server, admin, prefix, consent))
        return made[-1]

    yield make
    for http in made:
        http.close()


@pytest.mark.clause("PER-f1")
def test_bad_requests_get_one_line_reasons_and_store_nothing(fresh, client, admin, detail):
    user = fresh("val", consent=False)
    response = user.post(f"{P}/interactions", json={"text": "hello"})
    assert response.status_code == 403 and "'interactions'" in detail(response)
    assert _media(user, "a.png", _png()).status_code == 403
    assert user.put(f"{P}/consent/marketing").status_code == 422
    for purpose in ("interactions", "media"):
        user.put(f"{P}/consent/{purpose}")
    cases = [
        (user.post(f"{P}/interactions", json={"text": ""}), 422),
        (user.post(f"{P}/interactions", json={"text": "hi", "session_id": "bad id!"}), 422),
        (_media(user, "notes.txt", b"just text"), 415),
        (_media(user, "fake.png", b"not a png at all"), 415),
        (_media(user, "empty.wav", b""), 422),
        (user.post(f"{P}/interactions/media", content=b"x", headers={"content-type": "text/plain"}), 415),
        (user.get(f"{P}/recommendations", params={"k": 0}), 422),
        (user.get(f"{P}/tasks", params={"provenance": "stolen"}), 422),
        (user.get(f"{P}/tasks/no such task"), 422),
        (user.get(f"{P}/tasks/authored-nothing-like-this"), 404),
        (user.post(f"{P}/tasks/authored-nothing-like-this/accept"), 404),
        (user.post(f"{P}/tasks/authored-nothing-like-this/finish"), 422),
        (user.get(f"{P}/interactions/999999999/media"), 404),
        (user.get(f"{P}/profile"), 403),
        (user.post(f"{P}/quests"), 403),
        (user.delete(f"{P}/data"), 422),
        (user.delete(f"{P}/data", params={"confirm": "someone-else"}), 422),
        (admin.delete(f"{P}/data", params={"confirm": "admin"}), 403),
        (client.get(f"{P}/interactions"), 401),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        detail(response)
    assert user.get(f"{P}/interactions").json() == []


@pytest.mark.clause("PER-f1")
def test_no_user_can_read_another_users_data_through_any_endpoint(fresh):
    alice, bob = fresh("iso-a"), fresh("iso-b")
    secret = f"alice secret {uuid.uuid4().hex}"
    said = alice.post(f"{P}/interactions", json={"text": secret + " I love puzzles", "session_id": "s1"}).json()
    shown = _media(alice, "a.png", _png()).json()
    quest = alice.post(f"{P}/quests").json()[0]["task"]["task_id"]
    alice_recs = [r["task"]["task_id"] for r in alice.get(f"{P}/recommendations").json()]
    assert alice.post(f"{P}/tasks/{quest}/accept").status_code == 200

    bob.post(f"{P}/interactions", json={"text": "I like trading"})
    # history and media
    assert secret not in bob.get(f"{P}/interactions").text
    for interaction in (said, shown):
        assert bob.get(f"{P}/interactions/{interaction['interaction_id']}/media").status_code == 404
    assert alice.get(f"{P}/interactions/{shown['interaction_id']}/media").content == _png()
    # profile, recommendations, quests
    assert bob.get(f"{P}/profile").json()["n_inputs"] == 1
    bob_recs = bob.get(f"{P}/recommendations", params={"k": 50}).json()
    assert not {r["task"]["task_id"] for r in bob_recs} & ({quest} | {t for t in alice_recs if "~for~" in t})
    assert all(r["task"]["made_for_you"] or r["task"]["provenance"] != "generated" or "~for~" in r["task"]["task_id"]
               for r in bob_recs)
    bob_quests = bob.post(f"{P}/quests").json()
    assert all(q["task"]["made_for_you"] for q in bob_quests) and quest not in {q["task"]["task_id"] for q in bob_quests}
    # the repository
    hits = bob.get(f"{P}/tasks", params={"provenance": "generated", "k": 100}).json()
    assert quest not in {h["task"]["task_id"] for h in hits}
    assert bob.get(f"{P}/tasks/{quest}").status_code == 404
    for event in ("accept", "complete", "abandon"):
        assert bob.post(f"{P}/tasks/{quest}/{event}").status_code == 404
    for task_id in (t for t in alice_recs if "~for~" in t):
        assert bob.get(f"{P}/tasks/{task_id}").status_code == 404
    # consent and export
    assert len(bob.get(f"{P}/consent").json()["history"]) == len(PURPOSES)
    export = bob.get(f"{P}/export")
    assert secret not in export.text and quest not in export.text and alice.name not in export.text
    # erasure of bob leaves alice untouched
    assert bob.delete(f"{P}/data", params={"confirm": bob.name}).status_code == 200
    assert secret in alice.get(f"{P}/interactions").text
    assert alice.get(f"{P}/tasks/{quest}").status_code == 200


@pytest.mark.clause("PER-a1")
@pytest.mark.clause("PER-e1")
@pytest.mark.clause("PER-f1")
def test_closed_loop_talk_show_recommend_accept_export_erase(fresh, settings, store):
    user = fresh("loop")
    assert user.get(f"{P}/profile").json()["description"].startswith("new player")
    recs = [[r["task"]["task_id"] for r in user.get(f"{P}/recommendations").json()]]
    descriptions = []

    said = "I love exploring ancient ruins and solving puzzles, but no more combat please"
    assert user.post(f"{P}/interactions", json={"text": said, "session_id": "evening"}).status_code == 201
    profile = user.get(f"{P}/profile").json()
    descriptions.append(profile["description"])
    assert "exploration" in profile["description"] and "combat" in profile["description"]
    top = user.get(f"{P}/recommendations").json()
    recs.append([r["task"]["task_id"] for r in top])
    assert "asked for" in top[0]["reason"] and "combat" not in top[0]["task"]["tags"]

    picture = _png()
    image = _media(user, "lake.png", picture, session_id="evening")
    assert image.status_code == 201, image.text
    assert image.json()["features"]["dominant_hue"] == "blue" and image.json()["has_media"]
    descriptions.append(user.get(f"{P}/profile").json()["description"])
    recs.append([r["task"]["task_id"] for r in user.get(f"{P}/recommendations").json()])

    voice = _wav()
    transcript = "let us go sailing and fishing on the lake"
    note = _media(user, "note.wav", voice, text=transcript, session_id="evening")
    assert note.status_code == 201, note.text
    assert 150 < note.json()["features"]["pitch_hz"] < 220 and note.json()["features"]["transcript"] == transcript
    profile = user.get(f"{P}/profile").json()
    descriptions.append(profile["description"])
    assert "water" in [i["tag"] for i in profile["interests"]] and profile["modality_counts"]["audio"] == 1
    recs.append([r["task"]["task_id"] for r in user.get(f"{P}/recommendations").json()])
    assert all(a != b for a, b in zip(recs, recs[1:])), recs
    assert len(set(descriptions)) == len(descriptions), descriptions

    quest = user.post(f"{P}/quests").json()[0]
    quest_id = quest["task"]["task_id"]
    assert quest["task"]["provenance"] == "generated" and quest["task"]["made_for_you"] and quest["steps"]
    accepted = user.post(f"{P}/tasks/{quest_id}/accept")
    assert accepted.status_code == 200 and accepted.json()["event"] == "accept"
    stored = user.get(f"{P}/tasks/{quest_id}").json()
    assert stored["made_for_you"] and stored["provenance"] == "generated"
    found = user.get(f"{P}/tasks", params={"provenance": "generated", "query": quest["task"]["title"]}).json()
    assert quest_id in [h["task"]["task_id"] for h in found]
    assert quest_id in user.get(f"{P}/profile").json()["accepted"]

    export = user.get(f"{P}/export").json()
    assert export["catalog"]["account"]["name"] == user.name
    by_modality = {i["modality"]: i for i in export["interactions"] if i["event"] == "message"}
    assert [i["item_id"] for i in export["interactions"] if i["event"] == "accept"] == [quest_id]
    assert by_modality["text"]["text"] == said and by_modality["text"]["session_id"] == "evening"
    assert base64.b64decode(by_modality["image"]["media_base64"]) == picture
    assert base64.b64decode(by_modality["audio"]["media_base64"]) == voice
    assert quest_id in [t["task_id"] for t in export["tasks_made_for_you"]]
    assert export["consent"]["current"] == dict.fromkeys(PURPOSES, True)
    media_keys = [i["media_key"] for i in export["interactions"] if i["media_key"]]
    assert len(media_keys) == 2 and all(store.exists(k) for k in media_keys)
    for key in media_keys:  # sealed in the store: no plaintext bytes
        sealed = store.get_bytes(key)
        assert picture[16:80] not in sealed and voice[100:200] not in sealed and b"IHDR" not in sealed

    erased = user.delete(f"{P}/data", params={"confirm": user.name})
    assert erased.status_code == 200 and erased.json()["interactions"] == 4 and erased.json()["account_deleted"]
    assert user.get("/me").status_code == 401

    subject = KeyRing.load(settings.personal_keys_dir).pseudonym(user.user_id)
    needles = [user.user_id, user.name, subject, said[:30], transcript, quest_id]
    with Database(settings.personalization_path).read() as con:
        assert scan_duckdb(con, needles) == []
        assert scan_bytes([settings.personalization_path], [n.encode() for n in needles]) == []
    with Catalog(settings.catalog_path).read() as con:
        assert scan_duckdb(con, needles + media_keys) == []
        assert scan_bytes([settings.catalog_path], [n.encode() for n in needles]) == []
    assert not any(store.exists(k) for k in media_keys)
    for ref in store.list():
        data = store.get_bytes(ref.key)
        assert picture[16:80] not in data and voice[100:200] not in data and said.encode() not in data
    if settings.embedded_s3:
        leftovers = scan_bytes([settings.objects_dir], [picture[16:80], voice[100:200], said.encode(),
                                                        transcript.encode(), subject.encode()])
        assert leftovers == []


AVATAR_CLIP = REPO_ROOT / "data" / "avatar" / "grid" / "bbaf2n.mpg"
"""GRID talker saying "bin blue at f two now" (2.98 s)."""


@pytest.mark.clause("PER-f1")
def test_avatar_capture_and_avatar_are_exported_then_erased_without_a_trace(fresh, settings, store):
    """A capture (sealed video + typed wishes, ``avatar-capture/<id>``) and the avatar the flow made from it
    (sealed analysis with the transcript, sealed face preview, ``avatar/<id>``) are in the export, then erasure
    leaves no catalog row, object or file byte with the account, the capture, the transcript or the preview."""
    import prefect
    import prefect.context
    from prefect.client.orchestration import get_client

    from flows.avatar import create_avatar
    from gaiverse.avatar.capture import DERIVED_CONTEXT, open_vault

    prefect.context.refresh_global_settings_context()  # this process's Prefect API: the session server
    create_avatar.to_deployment(name="avatar").apply()  # registered, not served: the API's run waits
    user = fresh("avatar-erase")
    clip, wishes = AVATAR_CLIP.read_bytes(), "green eyes and a cartoon style please"
    started = user.post("/avatars/captures", files={"video": ("me.mpg", clip, "video/mpeg")},
                        data={"preferences": wishes})
    assert started.status_code == 202, started.text
    capture_id = started.json()["capture_id"]
    with prefect.tags(f"owner:{user.user_id}"):  # run here as the runner would run the API's run
        made = create_avatar(capture_id=capture_id, user_id=user.user_id)

    keyring, vault = open_vault(settings)
    subject = keyring.pseudonym(user.user_id)
    avatar = json.loads(vault.open(subject, store.get_bytes(made["assets"]["avatar"]), DERIVED_CONTEXT))
    preview = vault.open(subject, store.get_bytes(made["assets"]["preview"]), DERIVED_CONTEXT)
    transcript = avatar["analysis"]["transcript"]
    assert preview[:4] == b"\x89PNG" and len(transcript) > 5
    shown = user.get(f"/avatars/captures/{capture_id}").json()["avatar"]
    assert shown["analysis"]["transcript"] == transcript and user.get(shown["preview_url"]).content == preview

    exported = user.get(f"{P}/export").json()["avatars"]
    assert [c["capture_id"] for c in exported] == [capture_id] and exported[0]["preferences_text"] == wishes
    assert base64.b64decode(exported[0]["media"][0]["data_base64"]) == clip
    assert exported[0]["avatars"][0]["result"]["analysis"]["transcript"] == transcript
    assert base64.b64decode(exported[0]["avatars"][0]["preview_png_base64"]) == preview
    capture_manifest = Catalog(settings.catalog_path).versions(f"avatar-capture/{capture_id}")[0].manifest_key
    manifest = json.loads(store.get_bytes(capture_manifest))
    keys = {capture_manifest, made["manifest_key"], *made["assets"].values(), manifest["preferences_key"],
            *(m["key"] for m in manifest["media"])}
    sealed = [blob for blob in map(store.get_bytes, keys) if blob[:4] == b"GVE1"]
    assert len(sealed) == 2 + len(made["assets"])  # video, wishes + analysis, preview, source, glb, vrm, voice, ...
    objects = exported[0]["avatars"][0]["objects_base64"]
    assert {"glb", "vrm", "voice", "source"} <= set(objects)
    assert base64.b64decode(objects["glb"]) == vault.open(subject, store.get_bytes(made["assets"]["glb"]),
                                                          DERIVED_CONTEXT)
    assert all(store.exists(k) for k in keys)

    erased = user.delete(f"{P}/data", params={"confirm": user.name})
    assert erased.status_code == 200 and erased.json()["account_deleted"], erased.text
    assert not any(store.exists(k) for k in keys)
    needles = [user.user_id, user.name, subject, capture_id, transcript, wishes, *keys]
    with Catalog(settings.catalog_path).read() as con:
        assert scan_duckdb(con, needles) == []
        assert scan_bytes([settings.catalog_path], [n.encode() for n in needles]) == []
    with Database(settings.personalization_path).read() as con:
        assert scan_duckdb(con, [user.user_id, subject]) == []
    chunks = [clip[2000:2064], preview[200:264], transcript.encode(), wishes.encode(), user.user_id.encode(),
              capture_id.encode(), *(blob[40:104] for blob in sealed)]
    for ref in store.list():
        data = store.get_bytes(ref.key)
        assert not any(chunk in data for chunk in chunks), ref.key
    if settings.embedded_s3:
        assert scan_bytes([settings.objects_dir], chunks) == []
    with get_client(sync_client=True) as client:  # the API's run never started: leave no run for a runner
        client.delete_flow_run(uuid.UUID(started.json()["run_id"]))
