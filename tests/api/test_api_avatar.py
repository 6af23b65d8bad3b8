"""``/avatars/captures`` over HTTP with real media: refusals name the problem and store nothing; a real
talking-face clip is stored sealed, runs the avatar flow (served by a runner subprocess) and only its
owner sees it.

Invalid inputs are made from the shipped GRID clip with ffmpeg at test time: its sound under a grey
picture (no face), its picture with a silent track, a 66 s loop (too long), a 1.3 MB loop (over the
test server's 1 MB limit), a text file and an image sent as the video.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
import pytest

from gaiverse.config import REPO_ROOT, prefect_env
from gaiverse.proc import spawn, stop_pid, wait_until

pytestmark = pytest.mark.slow

CLIP = REPO_ROOT / "data" / "avatar" / "grid" / "bbaf2n.mpg"
DEPLOYMENT = "avatar-create/avatar"
RUNNER = ("from prefect import serve\nfrom flows.avatar import create_avatar\n"
          "serve(create_avatar.to_deployment(name='avatar'))\n")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


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
    response = admin.post("/users", json={"name": f"avatar-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    with httpx.Client(base_url=api_server, timeout=120, headers={"X-API-Key": response.json()["key"]}) as http:
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


@pytest.mark.clause("AV-a1")
@pytest.mark.clause("AV-a3")
def test_capture_is_sealed_runs_the_flow_and_is_visible_to_its_owner_only(avatar_deployment, user, other, media,
                                                                          store, catalog, detail):
    assert user.put("/personalization/consent/media").status_code == 200
    started = user.post("/avatars/captures", files={"video": ("me.mpg", media["clip.mpg"], "video/mpeg")},
                        data={"preferences": "green eyes and cartoon style please"})
    assert started.status_code == 202, started.text
    body = started.json()
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

    events = read_events(user, body["events_url"])
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and "progress" in kinds
    final = events[-1][1]
    assert final["progress"]["state"] == "COMPLETED", final["progress"]
    assert [s["step"] for s in final["progress"]["steps"]] == ["decode", "analyse", "decide", "store", "report"]
    assert all(s["state"] == "COMPLETED" for s in final["progress"]["steps"])
    seen = {s["step"]: s["state"] for _, data in events if "steps" in data for s in data["steps"]}
    assert seen  # progress was reported per step while it ran

    capture = user.get(f"/avatars/captures/{capture_id}").json()
    avatar = capture["avatar"]
    assert avatar["version"] == 1 and avatar["decider"] == "ppo-policy"
    assert avatar["analysis"]["preferences"]["style"] == "cartoon" and avatar["params"]["style"] == "cartoon"
    assert "eyes" in avatar["analysis"]["preferences"]["colours"]
    preview = user.get(avatar["preview_url"])  # stored sealed, opened for its owner only
    assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert store.get_bytes(avatar["assets"]["preview"])[:4] == b"GVE1"
    assert other.get(avatar["preview_url"]).status_code == 404
