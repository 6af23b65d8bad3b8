"""The avatar capture page in headless chromium with a fake camera and microphone playing a real GRID clip.

The clip is converted at test time to the raw formats chromium's fake devices read (.y4m video, .wav
audio). The user signs in, uploads a file without a face (the server's reason is shown), starts the
camera (live feedback: face, lighting, sharpness, audio level), runs the guided steps, and the
recording is uploaded; the server's checks, the flow's progress per step and finally the analysis and
decided parameters appear. Then the avatar itself: the live player (its voice with lip sync), a slider
moved to make version 2, a rollback to version 1 (version 3), and the .glb and .vrm downloaded.
Screenshots: tests/artifacts/avatar-*.png.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from gaiverse.avatar.capture import FLOW_STEPS
from gaiverse.config import REPO_ROOT
from tests.api.test_api_avatar import avatar_deployment  # noqa: F401 - the served avatar flow (fixture)
from tests.browser import chromium
from tests.media import ffmpeg

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

CLIP = REPO_ROOT / "data" / "avatar" / "grid" / "bbaf2n.mpg"


@pytest.fixture(scope="module")
def fake_media(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fake-devices")
    ffmpeg("-i", str(CLIP), "-pix_fmt", "yuv420p", "-r", "25", str(tmp / "camera.y4m"))
    ffmpeg("-i", str(CLIP), "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", str(tmp / "microphone.wav"))
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=320x240:d=3", "-i", str(CLIP), "-map", "0:v", "-map", "1:a",
           "-c:v", "libx264", "-c:a", "aac", "-shortest", str(tmp / "no-face.mp4"))
    return tmp


@pytest.fixture(scope="module")
def browser(fake_media):
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={fake_media / 'camera.y4m'}",
            f"--use-file-for-fake-audio-capture={fake_media / 'microphone.wav'}",
            "--autoplay-policy=no-user-gesture-required"]
    with chromium(args) as instance:
        yield instance


@pytest.fixture
def newcomer(api_server, admin):
    response = admin.post("/users", json={"name": f"capturer-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.clause("AV-a1")
@pytest.mark.clause("AV-a2")
@pytest.mark.clause("AV-a3")
def test_guided_capture_with_live_feedback_uploads_and_shows_the_avatar(browser, api_server, newcomer, fake_media,
                                                                       avatar_deployment, artifacts_dir):
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    context.grant_permissions(["camera", "microphone"], origin=api_server)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    try:
        page.goto(api_server + "/")
        page.fill("#api-key", newcomer["key"])
        page.click("#sign-in-form button")
        page.wait_for_selector("#terminal", state="visible")
        page.goto(api_server + "/web/avatar.html")
        page.wait_for_selector("body[data-ready='true']")
        assert page.get_attribute("nav#pages a[aria-current='page']", "href") == "/web/avatar.html"

        # an uploaded file without a face: refused, and the server's reason is shown
        page.check("#consent-media")
        page.set_input_files("#file-video", str(fake_media / "no-face.mp4"))
        page.click("#upload-form button")
        page.wait_for_selector("#server-status.error:has-text('face')")

        # camera on: live feedback computed in the browser
        page.click("#start-camera")
        page.wait_for_selector("#start-capture:not([disabled])")
        page.wait_for_selector("#m-face.ok", timeout=20_000)
        detector = page.text_content("#detector")
        assert "FaceDetector" in detector
        assert "good" in page.text_content("#m-light .value") and "sharp" in page.text_content("#m-blur .value")
        page.screenshot(path=str(artifacts_dir / "avatar-1-camera.png"), full_page=True)

        # the guided steps: progress per step, then the recording is uploaded by itself
        page.fill("#wishes", "blue hair and a deeper voice, cartoon style")
        page.click("#start-capture")
        page.wait_for_selector("#steps li.current[data-step='read']", timeout=60_000)
        assert not page.is_hidden("#sentence")
        page.wait_for_selector("#m-audio.ok", timeout=20_000)  # the fake microphone is speaking
        page.screenshot(path=str(artifacts_dir / "avatar-2-steps.png"), full_page=True)
        page.wait_for_selector("#server-status.ok:has-text('accepted')", timeout=120_000)
        status = page.text_content("#server-status")
        assert "face in" in status and "s of speech" in status and "wishes:" in status, status
        page.wait_for_selector("#flow-steps li")
        page.screenshot(path=str(artifacts_dir / "avatar-3-progress.png"), full_page=True)

        # the flow's progress streams in, then the analysis and the decided parameters
        page.wait_for_selector("#flow-status.ok:has-text('ready')", timeout=600_000)
        states = page.eval_on_selector_all("#flow-steps li .state", "nodes => nodes.map(n => n.textContent)")
        assert states == ["COMPLETED"] * len(FLOW_STEPS), states
        table = page.text_content("#analysis")
        assert "cartoon" in table and "ppo-policy" in table and "F0" in table, table
        page.wait_for_function("document.querySelector('#preview').naturalWidth > 0")
        page.screenshot(path=str(artifacts_dir / "avatar-4-result.png"), full_page=True)
        _avatar_player_customise_rollback_download(page, artifacts_dir)
    finally:
        context.close()
    assert not problems, problems
    with httpx.Client(base_url=api_server, headers={"X-API-Key": newcomer["key"]}, timeout=30) as http:
        captures = http.get("/avatars/captures").json()
        assert len(captures) == 1
        capture = http.get(f"/avatars/captures/{captures[0]['capture_id']}").json()
    assert capture["mode"] == "video" and capture["media"][0]["format"] == "webm"
    assert capture["avatar"]["version"] == 3 and capture["avatar"]["customisation"] is None  # rolled back to v1
    assert capture["avatar"]["params"]["style"] == "cartoon" and capture["avatar"]["params"]["hair_lab"][2] < -20


def _avatar_player_customise_rollback_download(page, artifacts_dir) -> None:
    """The live avatar speaks with lip sync; a slider makes v2; rollback makes v3 = v1; .glb/.vrm download."""
    page.wait_for_selector("#player[data-state='ready']", timeout=120_000)
    page.wait_for_selector("#versions li[data-version='1']")
    page.click("#player [data-action='voice']")
    page.wait_for_function("window.avatarPlayerStats && window.avatarPlayerStats.jawOpenMax > 0.1", timeout=30_000)
    clips = page.evaluate("window.avatarPlayerStats.clips")
    assert {"talk", "head_motion"} <= set(clips), clips
    page.wait_for_function("document.querySelector('#turntable').naturalWidth > 0")
    page.screenshot(path=str(artifacts_dir / "avatar-5-live.png"), full_page=True)

    def height_slider() -> str:
        return page.eval_on_selector("#sliders input[name='height_m']", "(e) => e.value")

    height = float(height_slider())
    taller = round(min(2.3, height + 0.2), 2)
    page.eval_on_selector("#sliders input[name='height_m']",
                          f"(e) => {{ e.value = '{taller}'; e.dispatchEvent(new Event('input')); }}")
    assert page.text_content("#sliders input[name='height_m'] + .slider-value").startswith(f"{taller:.2f}")
    page.click("#apply-custom")
    page.wait_for_selector("#custom-status.ok, #custom-status.error", timeout=300_000)
    page.screenshot(path=str(artifacts_dir / "avatar-6-customised.png"), full_page=True)
    said = page.text_content("#custom-status")
    assert said.startswith("version 2:") and "height_m" in said, said
    page.wait_for_selector("#versions li.current[data-version='2']")
    page.wait_for_selector("#player[data-state='ready']", timeout=120_000)
    assert float(height_slider()) == taller
    page.screenshot(path=str(artifacts_dir / "avatar-6-customised.png"), full_page=True)

    page.click("#versions li[data-version='1'] button[data-rollback='1']")
    page.wait_for_selector("#custom-status.ok:has-text('version 3: rollback to v1')", timeout=60_000)
    page.wait_for_selector("#versions li.current[data-version='3']")
    assert float(height_slider()) == height
    for ext in ("glb", "vrm"):
        with page.expect_download(timeout=60_000) as info:
            page.click(f"#download-{ext}")
        download = info.value
        assert download.suggested_filename.endswith(f"-v3.{ext}")
        path = artifacts_dir / f"avatar-download.{ext}"
        download.save_as(str(path))
        assert path.read_bytes()[:4] == b"glTF"
    page.screenshot(path=str(artifacts_dir / "avatar-7-versions.png"), full_page=True)

    # the link on the Prefect run (avatar.html?capture=<id>) reopens the capture with its current version
    capture_id = page.text_content("#capture-id")
    page.goto(page.url.split("?")[0] + f"?capture={capture_id}")
    page.wait_for_selector("#flow-status.ok:has-text('avatar v3 ready')", timeout=120_000)
    page.wait_for_selector("#player[data-state='ready']", timeout=120_000)
    assert page.text_content("#capture-id") == capture_id
