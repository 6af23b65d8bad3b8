"""The room-capture page in headless chromium: a user uploads the shipped Maupertuis photos of a real place and
gets a NeRF room back (issue 5, "make capture part of the product").

The real room-capture flow is served by a runner subprocess (lean but validated flow parameters: 60 NeRF
steps at 64 px, three 48 px rooms) on the session's Prefect, S3, catalog and Ray (the NeRF trains in the
training actor). Bad choices are named on the page before anything is sent (no files, two photos, a text
file), the server's refusals are shown as they are (no consent, a truncated photo), the good upload shows
its progress, the flow's steps one by one with the NeRF's PSNR, then the rendered colour + depth views,
the atlas sheets and the room behind a window from two sides; photos of unrelated places fail in COLMAP
and the page says so; deleting the capture removes it, erasing the account removes the failed one.
Screenshots: tests/artifacts/room-*.png.
"""

from __future__ import annotations

import io
import json
import sys
import uuid
import zipfile

import cv2
import httpx
import numpy as np
import pytest

from gaiverse.config import REPO_ROOT, prefect_env
from gaiverse.interiors.capture import ROOM_STEPS
from gaiverse.interiors.windows import load_library
from gaiverse.proc import spawn, stop_pid, wait_until
from tests.browser import HEADLESS, WEBGL, chromium, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium, pytest.mark.clause("ENV-c1")]

MULTIVIEW = REPO_ROOT / "data" / "multiview"
PHOTOS = sorted((MULTIVIEW / "kapture_maupertuis_facade" / "images").glob("*.jpg"))
DEPLOYMENT = "room-capture/room-capture"
LEAN = {"train_steps": 60, "long_side": 64, "view_size": 48, "rooms": 3, "max_frames": 8}
RUNNER = ("import sys, json\nfrom prefect import serve\nfrom flows.room_capture import room_capture\n"
          "serve(room_capture.to_deployment(name='room-capture', parameters=json.loads(sys.argv[1])))\n")
WAIT_MS = 900_000
"""Guard against a hung page, not a performance limit (COLMAP and the NeRF share 2 loaded cores)."""


def _deployed(settings) -> bool:
    return httpx.get(f"{settings.prefect_url}/deployments/name/{DEPLOYMENT}", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def room_deployment(settings, prefect_server, ray_local):
    """The real room-capture flow served by a runner subprocess whose runs join the session's Ray."""
    env = {**prefect_env(settings), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "GAIVERSE_RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    service = spawn("api-room-runner", [sys.executable, "-c", RUNNER, json.dumps(LEAN)], settings.run_dir, env=env,
                    cwd=REPO_ROOT)
    try:
        wait_until(lambda: _deployed(settings), 120, f"deployment {DEPLOYMENT} (log: {service.log_path})",
                   interval_s=0.5)
        yield DEPLOYMENT
    finally:
        stop_pid(service.pid, "api-room-runner")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, list[str]]:
    """The shipped photos at 480 px (the test server's upload limit is 1 MB), and files that must be refused."""
    tmp = tmp_path_factory.mktemp("room-photos")

    def small(source, name: str) -> str:
        image = cv2.imread(str(source))
        scale = 480 / max(image.shape[:2])
        cv2.imwrite(str(tmp / name), cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
        return str(tmp / name)

    facade = [small(p, f"facade_{k}.jpg") for k, p in enumerate(PHOTOS)]
    unrelated = [small(sorted((MULTIVIEW / scene / "images").rglob("*.jpg"))[0], f"{scene}.jpg")
                 for scene in ("kapture_maupertuis_aerial", "kapture_indoor_floor2")]
    (tmp / "notes.txt").write_text("not a photo")
    (tmp / "cut.jpg").write_bytes((tmp / "facade_0.jpg").read_bytes()[:300])
    return {"facade": facade, "unrelated": [facade[0], *unrelated], "text": [str(tmp / "notes.txt")],
            "truncated": [*facade[:3], str(tmp / "cut.jpg")]}


@pytest.fixture
def newcomer(api_server, admin):
    response = admin.post("/users", json={"name": f"room-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    return response.json()


def _upload(page, files: list[str]) -> None:
    page.set_input_files("#capture-files", files)
    page.click("#capture-form button")


def test_upload_room_photos_follow_the_flow_and_see_the_room(api_server, admin, newcomer, photos, room_deployment,
                                                             store, catalog, artifacts_dir, tmp_path):
    with chromium([*HEADLESS, *WEBGL]) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems: list[str] = []
        page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
        sign_in(page, api_server, newcomer["key"], "/web/room.html")
        assert page.get_attribute("nav#pages a[aria-current='page']", "href") == "/web/room.html"

        # wrong choices are named before anything is sent
        page.click("#capture-form button")
        page.wait_for_selector("#upload-status.error:has-text('choose photos or a video')")
        _upload(page, photos["facade"][:2])
        page.wait_for_selector("#upload-status.error:has-text('at least 3')")
        _upload(page, photos["text"])
        page.wait_for_selector("#upload-status.error:has-text('notes.txt')")
        _upload(page, photos["facade"])
        page.wait_for_selector("#upload-status.error:has-text('consent')")
        # the server's own checks: a truncated photo is refused with its name
        page.check("#consent-media")
        _upload(page, photos["truncated"])
        page.wait_for_selector("#upload-status.error:has-text('cut.jpg')")
        page.screenshot(path=str(artifacts_dir / "room-1-refused.png"), full_page=True)

        # the real photos: upload progress, then the flow step by step with the NeRF's PSNR
        _upload(page, photos["facade"])
        page.wait_for_selector("#upload-status.ok:has-text('accepted: 4 photos')")
        assert page.get_attribute("#upload-progress", "value") == "100"
        page.wait_for_selector("#room-steps li")
        page.screenshot(path=str(artifacts_dir / "room-2-progress.png"), full_page=True)
        page.wait_for_selector("#result-card[data-state='ready'], #flow-status.error", timeout=WAIT_MS)
        assert page.get_attribute("#result-card", "data-state") == "ready", page.text_content("#flow-status")
        readout = page.text_content("#training-text")
        assert "PSNR" in readout and "dB" in readout and "step 60 of 60" in readout, readout
        states = page.eval_on_selector_all("#room-steps li .state", "nodes => nodes.map(n => n.textContent)")
        assert states == ["COMPLETED"] * len(ROOM_STEPS), states
        assert "4 of 4 frames posed by COLMAP" in page.text_content("#flow-status")
        assert page.eval_on_selector_all("#views img", "imgs => imgs.filter(i => i.naturalWidth === 48).length") == 6
        page.wait_for_function("document.querySelector('#atlas-depth').naturalWidth > 0")
        page.wait_for_selector("#window-view[data-state='ready']")
        page.screenshot(path=str(artifacts_dir / "room-3-result.png"), full_page=True)

        # the room behind a window from two sides: the preview re-renders from the slider's viewpoint (visible
        # parallax inside the glass needs a longer-trained room than this lean 60-step run)
        shots = []
        for side, value in (("left", "-1"), ("right", "1")):
            page.eval_on_selector("#window-angle", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }",
                                  value)
            path = artifacts_dir / f"room-4-window-{side}.png"
            page.locator("#window-view").screenshot(path=str(path))
            shots.append(cv2.imread(str(path)).astype(np.float32))
        assert shots[0].shape == shots[1].shape and np.abs(shots[0] - shots[1]).mean() > 2.0

        capture_id = page.text_content("#capture-id")
        stranger = admin.post("/users", json={"name": f"stranger-{uuid.uuid4().hex[:6]}"}).json()["key"]
        with httpx.Client(base_url=api_server, headers={"X-API-Key": stranger}, timeout=60) as other:
            for method, path in (("GET", ""), ("GET", "/files/atlas_colour.png"), ("GET", "/atlas.zip"),
                                 ("DELETE", "")):  # another user learns nothing and removes nothing
                response = other.request(method, f"/interiors/captures/{capture_id}{path}")
                assert response.status_code == 404 and capture_id in response.json()["detail"], (path, response.text)
        with httpx.Client(base_url=api_server, headers={"X-API-Key": newcomer["key"]}, timeout=60) as http:
            room = http.get(f"/interiors/captures/{capture_id}").json()["room"]
            atlas = http.get(room["atlas_zip"])
            assert atlas.status_code == 200 and atlas.content[:2] == b"PK"
        with zipfile.ZipFile(io.BytesIO(atlas.content)) as archive:  # a room library windows can use as it is
            archive.extractall(tmp_path / "interiors")
        assert len(load_library(tmp_path / "interiors").views) == LEAN["rooms"]
        capture = json.loads(store.get_bytes(catalog.versions(f"room-capture/{capture_id}")[0].manifest_key))
        uploaded = open(photos["facade"][0], "rb").read()
        raw = store.get_bytes(capture["media"][0]["key"])  # what S3 holds is sealed, not the JPEG
        assert raw[:4] == b"GVE1" and raw[:3] != uploaded[:3] and uploaded[500:564] not in raw
        room_objects = json.loads(store.get_bytes(catalog.versions(f"room/{capture_id}")[0].manifest_key))["objects"]
        keys = [m["key"] for m in capture["media"]] + list(room_objects.values())
        assert all(store.get_bytes(key)[:4] == b"GVE1" for key in room_objects.values())

        # "Build a world with this room": the world page preselects the room, says the world will hold renderings
        # of it, and its build request carries the room (accepted: not a 422 naming room_capture_id)
        assert page.get_attribute("#build-with-room", "href") == f"/web/world.html?room={capture_id}"
        world_page = browser.new_page(viewport={"width": 1400, "height": 1000})
        world_page.on("pageerror", lambda err: problems.append(f"world page error: {err}"))
        sign_in(world_page, api_server, newcomer["key"], "/web/room.html")
        world_page.goto(api_server + page.get_attribute("#build-with-room", "href"))
        world_page.wait_for_selector(f"#build-status:has-text('Windows will show your room {capture_id}')")
        assert "renderings of your room" in world_page.text_content("#build-status")
        world_page.fill("#build-prompt", "a small town")
        world_page.select_option("#build-size", "256")
        world_page.click("#build-form button")
        world_page.wait_for_selector("#build-status:has-text('build refused'), #build-status:has-text('building')")
        assert "room_capture_id" not in world_page.text_content("#build-status")
        world_page.screenshot(path=str(artifacts_dir / "room-6-build-with-room.png"), full_page=True)
        world_page.close()

        # photos of three unrelated places: COLMAP cannot pose them, and the page says so
        _upload(page, photos["unrelated"])
        page.wait_for_selector("#upload-status.ok:has-text('accepted: 3 photos')")
        page.wait_for_selector("#flow-status.error", timeout=WAIT_MS)
        failure = page.text_content("#flow-status")
        assert "camera poses" in failure and "COLMAP could not pose the frames" in failure, failure
        assert "Flow run encountered" not in failure, failure
        page.screenshot(path=str(artifacts_dir / "room-5-colmap-failed.png"), full_page=True)

        # delete the good capture: its room and stored objects go
        page.click(f"#captures li:has-text('{capture_id}')")
        page.wait_for_selector("#result-card[data-state='ready']", timeout=WAIT_MS)
        page.click("#delete-capture")
        page.wait_for_selector("#delete-status.ok:has-text('deleted')")
        assert not problems, problems
    assert not any(store.exists(key) for key in keys)
    failed = catalog.query("SELECT collection FROM versions WHERE author = ? AND starts_with(collection, "
                           "'room-capture/')", [newcomer["user_id"]])
    assert len(failed) == 1, failed  # only the capture COLMAP could not pose is left
    failed_manifest = catalog.versions(failed[0]["collection"])[0].manifest_key
    failed_keys = [m["key"] for m in json.loads(store.get_bytes(failed_manifest))["media"]] + [failed_manifest]
    with httpx.Client(base_url=api_server, headers={"X-API-Key": newcomer["key"]}, timeout=60) as http:
        assert http.get(f"/interiors/captures/{capture_id}").status_code == 404
        erased = http.delete("/personalization/data", params={"confirm": newcomer["name"]})  # erasing the account
        assert erased.status_code == 200, erased.text
    assert not catalog.versions(failed[0]["collection"]) and not any(store.exists(k) for k in failed_keys)

