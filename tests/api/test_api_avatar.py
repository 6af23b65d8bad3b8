"""``/avatars/captures`` over HTTP with real media: refusals name the problem and store nothing; a real
talking-face clip is stored sealed, runs the avatar flow (served by a runner subprocess) and only its
owner sees it. Then the avatar's versions (AV-c3): customisation with sliders and presets (bad values
refused naming the field and range), rollback with content equal to the target, downloads of .glb,
VRM, voice and turntables, and 404 for everyone but the owner.

Invalid inputs are made from the shipped GRID clip with ffmpeg at test time: its sound under a grey
picture (no face), its picture with a silent track, a 66 s loop (too long), a 1.3 MB loop (over the
test server's 1 MB limit), a text file and an image sent as the video.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import httpx
import pytest

from gaiverse.avatar.capture import FLOW_STEPS
from gaiverse.character.gltf_writer import read_glb
from gaiverse.config import REPO_ROOT, prefect_env
from gaiverse.proc import spawn, stop_pid, wait_until
from tests.media import ffmpeg

pytestmark = pytest.mark.slow

CLIP = REPO_ROOT / "data" / "avatar" / "grid" / "bbaf2n.mpg"
DEPLOYMENT = "avatar-create/avatar"
RUNNER = ("from prefect import serve\nfrom flows.avatar import create_avatar\n"
          "serve(create_avatar.to_deployment(name='avatar'))\n")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    """Real clip plus derived invalid files (bytes by name)."""
    tmp = tmp_path_factory.mktemp("avatar-media")
    clip = str(CLIP)
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=360x288:d=3", "-i", clip, "-map", "0:v", "-map", "1:a",
           "-c:v", "libx264", "-c:a", "aac", "-shortest", str(tmp / "noface.mp4"))
    ffmpeg("-i", clip, "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
           "-c:a", "mp2", "-shortest", str(tmp / "silent.mpg"))
    ffmpeg("-stream_loop", "21", "-i", clip, "-vf", "scale=64:48", "-r", "5", "-c:v", "libx264", "-crf", "45",
           "-c:a", "aac", "-b:a", "8k", str(tmp / "long.mp4"))
    ffmpeg("-stream_loop", "2", "-i", clip, "-c", "copy", str(tmp / "big.mpg"))
    ffmpeg("-ss", "1", "-i", clip, "-frames:v", "1", str(tmp / "face.png"))
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=360x288", "-frames:v", "1", str(tmp / "grey.png"))
    ffmpeg("-i", clip, "-ac", "1", "-ar", "16000", str(tmp / "voice.wav"))
    files = {p.name: p.read_bytes() for p in tmp.iterdir()}
    files["clip.mpg"] = CLIP.read_bytes()
    assert len(files["long.mp4"]) < 900_000 and len(files["big.mpg"]) > 1_100_000
    return files


@pytest.fixture(scope="module")
def user(api_server, admin):
    """A new user with the `media` consent not yet given."""
    name = f"avatar-{uuid.uuid4().hex[:6]}"
    response = admin.post("/users", json={"name": name})
    assert response.status_code == 201, response.text
    with httpx.Client(base_url=api_server, timeout=120, headers={"X-API-Key": response.json()["key"]}) as http:
        http.user_name = name
        yield http


@pytest.fixture(scope="module")
def other(api_server, admin):
    response = admin.post("/users", json={"name": f"other-{uuid.uuid4().hex[:6]}"})
    with httpx.Client(base_url=api_server, timeout=60, headers={"X-API-Key": response.json()["key"]}) as http:
        yield http


def _deployed(settings) -> bool:
    return httpx.get(f"{settings.prefect_url}/deployments/name/{DEPLOYMENT}", timeout=5).status_code == 200


@pytest.mark.clause("AV-a1")
def test_consent_first_then_every_bad_capture_is_refused_naming_why(user, media, snapshot, detail):
    refused = user.post("/avatars/captures", files={"video": ("me.mpg", media["clip.mpg"], "video/mpeg")})
    assert refused.status_code == 403 and "media" in detail(refused)
    assert user.put("/personalization/consent/media").status_code == 200

    before = snapshot()
    voice = ("v.wav", media["voice.wav"], "audio/wav")
    cases = [  # (files, data, status, words the reason must contain)
        ({"video": ("notes.mp4", b"just some text, not a video at all\n" * 40, "video/mp4")}, None, 415, "not a video"),
        ({"video": ("face.webm", media["face.png"], "video/webm")}, None, 415, "png"),
        ({"video": ("clip.mp4", media["noface.mp4"], "video/mp4")}, None, 422, "face"),
        ({"video": ("clip.mpg", media["silent.mpg"], "video/mpeg")}, None, 422, "no speech"),
        ({"video": ("clip.mp4", media["long.mp4"], "video/mp4")}, None, 422, "longest accepted is 60 s"),
        ({"video": ("clip.mpg", media["big.mpg"], "video/mpeg")}, None, 413, "limit"),
        ({"video": ("clip.mpg", media["clip.mpg"][:40_000], "video/mpeg")}, None, 422, "lasts"),
        ([("images", ("grey.png", media["grey.png"], "image/png")), ("audio", voice)], None, 422, "no face"),
        ([("images", ("face.png", media["face.png"], "image/png"))], None, 422, "audio"),
        ([("video", ("a.mpg", media["clip.mpg"], "video/mpeg")), ("audio", voice)], None, 422, "either one"),
        ({"video": ("clip.mpg", media["clip.mpg"], "video/mpeg")}, {"preferences": "x" * 2001}, 422, "preferences"),
        ({"clip": ("clip.mpg", media["clip.mpg"], "video/mpeg")}, None, 422, "unknown or misplaced field `clip`"),
    ]
    for files, data, status, words in cases:
        response = user.post("/avatars/captures", files=files, data=data)
        assert response.status_code == status, (words, response.text)
        assert words in detail(response), (words, response.text)
    assert snapshot() == before  # nothing stored, no run


@pytest.mark.clause("AV-a1")
def test_unserved_deployment_answers_404_and_stores_nothing(user, media, snapshot, detail, settings):
    if _deployed(settings):
        pytest.skip(f"{DEPLOYMENT} was registered by an earlier test of this session")
    assert user.put("/personalization/consent/media").status_code == 200
    before = snapshot()
    response = user.post("/avatars/captures", files={"video": ("clip.mpg", media["clip.mpg"], "video/mpeg")})
    assert response.status_code == 404 and DEPLOYMENT in detail(response)
    assert snapshot() == before


@pytest.fixture(scope="module")
def avatar_deployment(settings, prefect_server):
    """The real avatar flow served as 'avatar-create/avatar' by a runner subprocess (polling every second)."""
    env = {**prefect_env(settings), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    service = spawn("api-avatar-runner", [sys.executable, "-c", RUNNER], settings.run_dir, env=env, cwd=REPO_ROOT)
    try:
        wait_until(lambda: _deployed(settings), 120, f"deployment {DEPLOYMENT} (log: {service.log_path})", interval_s=0.5)
        yield DEPLOYMENT
    finally:
        stop_pid(service.pid, "api-avatar-runner")


def read_events(http: httpx.Client, url: str) -> list[tuple[str, dict]]:
    """Every server-sent event of ``url`` until the stream ends: (event, data)."""
    events = []
    with http.stream("GET", url, timeout=httpx.Timeout(30, read=600)) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for block in _blocks(response):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
            if "event" in lines:
                events.append((lines["event"], json.loads(lines["data"])))
    return events


def _blocks(response):
    buffer = ""
    for text in response.iter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield block


@pytest.fixture(scope="module")
def made(avatar_deployment, user, media, store, catalog):
    """A real capture uploaded by ``user`` and the avatar flow run to its end: (POST answer, events)."""
    assert user.put("/personalization/consent/media").status_code == 200
    started = user.post("/avatars/captures", files={"video": ("me.mpg", media["clip.mpg"], "video/mpeg")},
                        data={"preferences": "green eyes and cartoon style please"})
    assert started.status_code == 202, started.text
    body = started.json()
    return body, read_events(user, body["events_url"])


@pytest.mark.clause("AV-a1")
@pytest.mark.clause("AV-a3")
def test_capture_is_sealed_runs_the_flow_and_is_visible_to_its_owner_only(made, user, other, media, store, catalog,
                                                                          detail):
    body, events = made
    capture_id = body["capture_id"]
    assert body["checks"]["frames_with_face"] >= 6 and body["checks"]["speech_s"] > 0.5
    assert 2.5 < body["checks"]["duration_s"] < 3.5 and body["wishes"]

    version = catalog.versions(f"avatar-capture/{capture_id}")[0]
    manifest = json.loads(store.get_bytes(version.manifest_key))
    sealed = store.get_bytes(manifest["media"][0]["key"])
    assert sealed[:4] == b"GVE1" and media["clip.mpg"][:64] not in sealed  # stored encrypted
    assert "green" not in json.dumps(manifest)  # the wishes are sealed too

    for path in ("", "/progress", "/events"):
        hidden = other.get(f"/avatars/captures/{capture_id}{path}")
        assert hidden.status_code == 404 and capture_id in detail(hidden)
    assert capture_id not in {c["capture_id"] for c in other.get("/avatars/captures").json()}
    assert capture_id in {c["capture_id"] for c in user.get("/avatars/captures").json()}

    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and "progress" in kinds
    final = events[-1][1]
    assert final["progress"]["state"] == "COMPLETED", final["progress"]
    assert [s["step"] for s in final["progress"]["steps"]] == [label for _, label in FLOW_STEPS]
    assert all(s["state"] == "COMPLETED" for s in final["progress"]["steps"])
    seen = {s["step"]: s["state"] for _, data in events if "steps" in data for s in data["steps"]}
    assert seen  # progress was reported per step while it ran

    capture = user.get(f"/avatars/captures/{capture_id}").json()
    avatar = capture["avatar"]
    assert avatar["version"] == 1 and avatar["decider"] == "ppo-policy"
    assert avatar["analysis"]["preferences"]["style"] == "cartoon" and avatar["params"]["style"] == "cartoon"
    assert "eyes" in avatar["analysis"]["preferences"]["colours"]
    assert set(avatar["downloads"]) == {"glb", "vrm", "voice", "turntable_png", "turntable_mp4"}
    preview = user.get(avatar["preview_url"])  # stored sealed, opened for its owner only
    assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert store.get_bytes(avatar["assets"]["preview"])[:4] == b"GVE1"
    assert other.get(avatar["preview_url"]).status_code == 404


# ---- versions, customisation (AV-c3), rollback, downloads -----------------------------------------------

MAGIC = {"glb": b"glTF", "vrm": b"glTF", "voice.wav": b"RIFF", "turntable.png": b"\x89PNG"}


def _download(http: httpx.Client, capture_id: str, what: str, version: int | None = None) -> httpx.Response:
    path = {"glb": "download?format=glb", "vrm": "download?format=vrm"}.get(what, what)
    sep = "&" if "?" in path else "?"
    return http.get(f"/avatars/{capture_id}/{path}" + (f"{sep}version={version}" if version else ""))


@pytest.mark.clause("AV-c3")
def test_customise_refuses_bad_values_naming_the_field_and_range(made, user, snapshot, detail):
    capture_id = made[0]["capture_id"]
    before = snapshot()
    cases = [  # (body, words the reason must contain)
        ({"params": {"height_m": 2.9}}, "`params.height_m` must be a number in 1.2..2.3 m, got 2.9"),
        ({"params": {"speaking_rate": 0.1}}, "`params.speaking_rate` must be a number in 0.5..2 x"),
        ({"params": {"hair_style": "mohawk"}}, "`params.hair_style` must be one of short, long, curly, bald"),
        ({"params": {"eye_colour": "#12"}}, "`params.eye_colour` must be an sRGB hex colour"),
        ({"params": {"wings": True}}, "unknown field `params.wings`"),
        ({"height_m": 1.8}, "unknown field `height_m`: allowed are preset, params"),
        ({"preset": "dragon"}, "unknown `preset` 'dragon'"),
        ({}, "nothing to change"),
        ({"preset": "taller", "base_version": 9}, "has no version 9"),
    ]
    for body, words in cases:
        response = user.post(f"/avatars/{capture_id}/customise", json=body)
        assert response.status_code == (404 if "no version" in words else 422), (words, response.text)
        assert words in detail(response), (words, response.text)
    assert user.post(f"/avatars/{capture_id}/customise", content=b"{not json",
                     headers={"content-type": "application/json"}).status_code == 422
    assert snapshot() == before  # no version, no object
    presets = user.get("/avatars/presets").json()
    assert {"as-captured", "cartoon", "deeper-voice", "taller"} <= {p["name"] for p in presets["presets"]}
    assert {"name": "height_m", "minimum": 1.2, "maximum": 2.3, "step": 0.01, "unit": "m",
            "label": "height"} in presets["sliders"]


@pytest.mark.clause("AV-c3")
def test_customise_rollback_and_download_make_versions_with_equal_content(made, user, store):
    capture_id = made[0]["capture_id"]
    v1 = {what: _download(user, capture_id, what, 1) for what in MAGIC}
    for what, response in v1.items():
        assert response.status_code == 200 and response.content[:4] == MAGIC[what], what
        assert "no-store" in response.headers["cache-control"] and "attachment" in response.headers["content-disposition"]
    assert v1["glb"].headers["content-type"] == "model/gltf-binary"
    assert "VRMC_vrm" in read_glb(v1["vrm"].content)[0]["extensions"]
    assert "VRMC_vrm" not in read_glb(v1["glb"].content)[0].get("extensions", {})
    mp4 = user.get(f"/avatars/{capture_id}/turntable.mp4")
    assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp" and mp4.headers["content-type"] == "video/mp4"

    started = time.perf_counter()
    custom = user.post(f"/avatars/{capture_id}/customise", json={
        "params": {"hair_colour": "#1040d0", "pitch_semitones": -4.0, "height_m": 1.95}, "message": "blue, deeper"})
    seconds = time.perf_counter() - started
    assert custom.status_code == 201, custom.text
    v2 = custom.json()
    assert v2["version"]["version"] == 2 and v2["version"]["parent"] == 1 and v2["version"]["message"] == "blue, deeper"
    assert v2["avatar"]["version"] == 2 and v2["avatar"]["params"]["height_m"] == 1.95
    assert v2["avatar"]["params"]["colours"]["hair"] == "#1040d0"
    assert set(v2["timings_ms"]) >= {"portrait", "voice", "animation", "render"}
    print(f"\ncustomisation over HTTP: {seconds:.1f} s, engines (ms) {v2['timings_ms']}")
    glb2, voice2 = _download(user, capture_id, "glb"), _download(user, capture_id, "voice.wav")
    assert glb2.content[:4] == b"glTF" and glb2.content != v1["glb"].content
    assert voice2.content != v1["voice.wav"].content  # four semitones lower: a different sample
    scene = read_glb(glb2.content)[0]["scenes"][0]["extras"]["gaiverse"]
    assert scene["params"]["height_m"] == 1.95 and scene["avatar_id"] == capture_id  # semantic extras
    rendered = user.get(f"/avatars/{capture_id}/turntable.mp4?version=2")  # rendered on request for v2
    assert rendered.status_code == 200 and rendered.content[4:8] == b"ftyp"

    preset = user.post(f"/avatars/{capture_id}/customise", json={"preset": "deeper-voice", "base_version": 1})
    assert preset.status_code == 201 and preset.json()["version"]["parent"] == 1
    assert preset.json()["avatar"]["params"]["pitch_semitones"] == pytest.approx(
        user.get(f"/avatars/captures/{capture_id}").json()["avatar"]["params"]["pitch_semitones"])

    back = user.post(f"/avatars/{capture_id}/rollback", json={"to_version": 1})
    assert back.status_code == 201 and back.json()["version"] == 4 and back.json()["message"] == "rollback to v1"
    for what, response in v1.items():  # the content of v4 equals v1's, byte for byte
        assert _download(user, capture_id, what).content == response.content, what
    listed = user.get(f"/avatars/{capture_id}/versions").json()
    assert [v["version"] for v in listed] == [4, 3, 2, 1]
    assert [v["parent"] for v in listed] == [3, 1, 1, None]
    assert listed[0]["params"] == listed[3]["params"] and listed[2]["params"]["height_m"] == 1.95
    assert listed[2]["customisation"]["changed"] == ["hair_colour", "height_m", "pitch_semitones"]
    assert user.get(f"/avatars/captures/{capture_id}").json()["avatar"]["version"] == 4
    assert user.post(f"/avatars/{capture_id}/rollback", json={"to_version": 7}).status_code == 404
    assert _download(user, capture_id, "glb", 9).status_code == 404
    assert user.get(f"/avatars/{capture_id}/download?format=fbx").status_code == 422


@pytest.mark.clause("AV-c3")
def test_nobody_else_sees_or_changes_the_avatar(made, user, other, admin, snapshot, detail):
    capture_id = made[0]["capture_id"]
    before = snapshot()
    for http in (other, admin):
        for response in (http.get(f"/avatars/{capture_id}/versions"),
                         http.post(f"/avatars/{capture_id}/customise", json={"preset": "taller"}),
                         http.post(f"/avatars/{capture_id}/customise", json={"params": {"height_m": 9}}),
                         http.post(f"/avatars/{capture_id}/rollback", json={"to_version": 1}),
                         *(_download(http, capture_id, what) for what in MAGIC),
                         http.get(f"/avatars/{capture_id}/turntable.mp4")):
            assert response.status_code == 404, response.request.url
            assert capture_id in detail(response)
    assert snapshot() == before
    assert user.get(f"/avatars/{capture_id}/versions").status_code == 200
    unknown = user.get("/avatars/cap-000000000000/versions")
    assert unknown.status_code == 404 and "no avatar" in detail(unknown)


@pytest.mark.clause("AV-c3")
def test_export_has_every_version_and_erasure_removes_them_all(made, user, store, catalog):
    """Customised and rolled-back versions are in the data export, and erasure deletes every one of their
    objects (runs last in this module: the account is gone afterwards)."""
    capture_id = made[0]["capture_id"]
    versions = catalog.versions(f"avatar/{capture_id}")
    assert len(versions) >= 4  # captured, two customisations, a rollback (tests above)
    keys = {v.manifest_key for v in versions}
    for v in versions:
        keys |= {ref["key"] for ref in json.loads(store.get_bytes(v.manifest_key))["assets"].values()}
    exported = user.get("/personalization/export").json()["avatars"][0]["avatars"]
    assert [a["version"] for a in exported] == [v.version for v in versions]
    assert all({"glb", "vrm", "voice", "source"} <= set(a["objects_base64"]) for a in exported)
    assert all(store.exists(k) for k in keys)

    erased = user.delete("/personalization/data", params={"confirm": user.user_name})
    assert erased.status_code == 200, erased.text
    assert not [k for k in keys if store.exists(k)]
    assert catalog.versions(f"avatar/{capture_id}") == []
    assert catalog.query("SELECT count(*) AS n FROM lineage WHERE list_contains(?, input_key) "
                         "OR list_contains(?, output_key)", [sorted(keys), sorted(keys)])[0]["n"] == 0
