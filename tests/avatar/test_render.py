"""Rendering engine (AV-c1): offscreen EGL previews of character and avatar .glb files.

Real models only: the parametric character (the layout every avatar glb shares) and the personalised,
textured avatar of the NASA astronaut portrait (data/vision/astronaut.jpg). Checks are on pixels: the
model is drawn, its silhouette turns with yaw (front and back silhouettes mirror each other, the side
is narrower), a clip pose moves the arm above the head, jawOpen opens the mouth and nothing above it,
the face texture shows, and the MP4s hold the frames and the audio they should. Images are kept in
tests/artifacts/render-*.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from gaiverse.avatar import render
from gaiverse.character import build_character
from gaiverse.config import REPO_ROOT

pytestmark = pytest.mark.clause("AV-c1")

ASTRONAUT = REPO_ROOT / "data" / "vision" / "astronaut.jpg"


@pytest.fixture(scope="module")
def character_glb() -> bytes:
    return build_character().glb("avatar")


@pytest.fixture(scope="module")
def astronaut_glb() -> bytes:
    """The personalised avatar of a real portrait (MediaPipe landmarks + projected face texture)."""
    from gaiverse.avatar.analysis import face_landmarks
    from gaiverse.avatar.decision import AvatarParams
    from gaiverse.avatar.portrait import build_avatar_model

    image = np.array(Image.open(ASTRONAUT).convert("RGB"))
    landmarks, _ = face_landmarks([image], video=False)
    assert landmarks[0] is not None
    return build_avatar_model(None, AvatarParams(), image, landmarks[0]).to_glb()


def drawn(image: np.ndarray) -> np.ndarray:
    """Pixels that are not the background."""
    background = np.round(np.asarray(render.BACKGROUND) ** (1 / 2.2) * 255)
    return np.abs(image.astype(np.int16) - background).max(axis=2) > 12


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def save(path, *images: np.ndarray) -> None:
    Image.fromarray(np.hstack(images)).save(path)


def ffprobe(data: bytes, tmp_path) -> list[dict]:
    path = tmp_path / "video.mp4"
    path.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,width,height,nb_read_frames,duration", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["streams"]


def video_frames(data: bytes, tmp_path, size: tuple[int, int]) -> np.ndarray:
    """Every frame of an MP4 as (n, h, w, 3) float (decoded by ffmpeg)."""
    path = tmp_path / "frames.mp4"
    path.write_bytes(data)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size[1], size[0], 3).astype(np.float64)


def test_views_turn_the_silhouette_with_yaw(character_glb, artifacts_dir):
    start = time.perf_counter()
    front, side, back = render.render_views(character_glb, [0, 90, 180], size=(384, 512))
    ms = (time.perf_counter() - start) / 3 * 1000
    print(f"\n{ms:.1f} ms per 384x512 view (parse + pose + 3 draws)")
    save(artifacts_dir / "render-yaws.png", front, side, back)
    assert front.shape == (512, 384, 3) and front.dtype == np.uint8
    m_front, m_side, m_back = drawn(front), drawn(side), drawn(back)
    assert 0.04 < m_front.mean() < 0.5  # a figure, not an empty frame nor a wall
    width = lambda m: np.ptp(np.nonzero(m.any(axis=0))[0])  # noqa: E731
    assert width(m_side) < 0.6 * width(m_front)  # arms out in the A-pose: seen from the side it is narrow
    assert iou(m_front, m_back[:, ::-1]) > 0.85  # the back is the mirrored front silhouette
    assert iou(m_front, m_side) < 0.6
    assert not np.array_equal(front, back[:, ::-1])  # ... but shaded and coloured differently (face, hair)


def test_clip_pose_and_morph_weights_change_the_right_pixels(character_glb, artifacts_dir):
    rest, waving = render.render_views(character_glb, [0], (384, 512))[0], \
        render.render_views(character_glb, [0], (384, 512), clip="wave", t=0.6)[0]
    save(artifacts_dir / "render-wave.png", rest, waving)

    def top_offset(mask: np.ndarray) -> float:
        """Horizontal distance of the highest drawn point from the figure's middle (fraction of the image)."""
        row = np.nonzero(mask.any(axis=1))[0][0]
        return abs(np.nonzero(mask[row])[0].mean() - np.median(np.nonzero(mask)[1])) / mask.shape[1]

    assert top_offset(drawn(rest)) < 0.03  # the crown of the head
    assert top_offset(drawn(waving)) > 0.1  # the raised hand, beside the head

    closed, opened = (render.render_views(character_glb, [0], (384, 384), framing="head",
                                          morphs={"jawOpen": w})[0] for w in (0.0, 1.0))
    save(artifacts_dir / "render-jaw.png", closed, opened)
    changed = np.abs(closed.astype(np.int16) - opened.astype(np.int16)).max(axis=2) > 30
    head = drawn(closed)
    rows = np.nonzero(head.any(axis=1))[0]
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 300, changed.sum()
    assert ys.min() > rows[0] + 0.3 * (rows[-1] - rows[0])  # eyes, brows and hair untouched
    assert abs(np.median(xs) - np.median(np.nonzero(head)[1])) < 20  # in the middle of the face


def test_textured_personalised_avatar(astronaut_glb, character_glb, artifacts_dir):
    views = render.render_views(astronaut_glb, [0, 35], (384, 384), framing="head")
    opened = render.render_views(astronaut_glb, [0], (384, 384), framing="head", morphs={"jawOpen": 1.0})[0]
    generic = render.render_views(character_glb, [0], (384, 384), framing="head")[0]
    save(artifacts_dir / "render-astronaut.png", views[0], opened, views[1], generic)
    face = lambda img: img[120:260, 130:254].reshape(-1, 3).astype(np.float64)  # noqa: E731
    # the projected photo carries detail (eyes, brows, real skin shading) the flat-coloured head has not
    assert face(views[0]).std(axis=0).mean() > 1.3 * face(generic).std(axis=0).mean()
    assert (np.abs(opened.astype(np.int16) - views[0].astype(np.int16)).max(axis=2) > 30).sum() > 300


def test_turntable_png_sheet(character_glb, artifacts_dir):
    start = time.perf_counter()
    png = render.turntable_png(character_glb)
    print(f"\nturntable_png: {(time.perf_counter() - start) * 1000:.0f} ms for 8 views")
    (artifacts_dir / "render-turntable.png").write_bytes(png)
    sheet = np.asarray(Image.open(__import__("io").BytesIO(png)).convert("RGB"))
    assert sheet.shape == (640, 1024, 3)
    panels = [sheet[r * 320:(r + 1) * 320, c * 256:(c + 1) * 256] for r in range(2) for c in range(4)]
    masks = [drawn(p[20:]) for p in panels]  # below the yaw label
    assert all(m.mean() > 0.03 for m in masks)
    assert iou(masks[2], masks[6][:, ::-1]) > 0.7 and iou(masks[0], masks[2]) < 0.6  # 90 vs 270, 0 vs 90


def test_turntable_mp4(character_glb, tmp_path):
    start = time.perf_counter()
    data = render.turntable_mp4(character_glb, seconds=1.0, fps=12, size=(192, 256))
    per_frame = (time.perf_counter() - start) / 12 * 1000
    print(f"\nturntable_mp4: {per_frame:.1f} ms per frame (idle clip, 192x256)")
    (video,) = ffprobe(data, tmp_path)
    got = (video["codec_name"], video["width"], video["height"], int(video["nb_read_frames"]))
    assert got == ("h264", 192, 256, 12)


def test_talking_mp4_has_the_voice_and_a_moving_mouth(character_glb, tmp_path):
    from gaiverse.avatar.lipsync_targets import load_targets
    from gaiverse.avatar.lipsync_training import DEFAULT_TARGETS

    audio = load_targets(DEFAULT_TARGETS)[0].audio[8000:8000 + 24000]  # 1.5 s of a real GRID talker
    data = render.talking_mp4(character_glb, audio, 16_000, fps=20, size=(160, 160))
    streams = {s["codec_type"]: s for s in ffprobe(data, tmp_path)}
    assert streams["audio"]["codec_name"] == "aac" and int(streams["video"]["nb_read_frames"]) == 30
    assert abs(float(streams["audio"]["duration"]) - 1.5) < 0.1
    frames = video_frames(data, tmp_path, (160, 160))
    assert frames.std(axis=0).max() > 40  # the mouth opens and closes with the speech


def test_talking_mp4_follows_the_talk_clip(tmp_path):
    """With a "talk" clip in the glb the video's face follows the clip's keys (jaw wide open at 0.5 s)."""
    from gaiverse.character.animation import Clip

    character = build_character()
    keys = [(0.0, {}), (0.5, {"jawOpen": 1.0}), (1.0, {})]
    character.clips.append(Clip("talk", [0.0, 1.0], [{}, {}], morph_keys=keys))
    audio = np.sin(np.linspace(0, 2 * np.pi * 220, 16_000)).astype(np.float32) * 0.3
    data = render.talking_mp4(character.glb("avatar"), audio, 16_000, fps=10, size=(160, 160))
    frames = video_frames(data, tmp_path, (160, 160))
    change = [np.abs(f - frames[0]).max(axis=2).sum() for f in frames]
    jaw = [1 - abs(k / 10 - 0.5) * 2 for k in range(10)]  # the clip's jawOpen at each frame time
    assert len(frames) == 10 and np.corrcoef(change, jaw)[0, 1] > 0.9, change


def test_invalid_inputs_are_named(character_glb):
    with pytest.raises(ValueError, match="glb"):
        render.render_views(b"not a glb at all....", [0])
    with pytest.raises(ValueError, match="morphs"):
        render.render_views(character_glb, [0], morphs={"notAMorph": 1.0})
    with pytest.raises(ValueError, match="clip"):
        render.render_views(character_glb, [0], clip="moonwalk")
    with pytest.raises(ValueError, match="yaw_degrees"):
        render.render_views(character_glb, [])
    with pytest.raises(ValueError, match="size"):
        render.render_views(character_glb, [0], size=(8, 8))
    with pytest.raises(ValueError, match="seconds"):
        render.turntable_mp4(character_glb, seconds=0)
    with pytest.raises(ValueError, match="sr"):
        render.talking_mp4(character_glb, np.zeros(100, np.float32), 10)


def test_missing_egl_is_a_clear_error(tmp_path):
    """With no EGL vendor library the renderer says which Debian packages provide one."""
    code = ("from gaiverse.avatar.render import RenderUnavailable, renderer\n"
            "try:\n    renderer((32, 32))\nexcept RenderUnavailable as err:\n    print(err)\n")
    env = {**os.environ, "__EGL_VENDOR_LIBRARY_FILENAMES": str(tmp_path / "none.json"),
           "__EGL_VENDOR_LIBRARY_DIRS": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert "libegl1" in out.stdout and "EGL" in out.stdout, out.stdout + out.stderr


def test_context_release_and_recreate(character_glb):
    first = render.render_views(character_glb, [0], (64, 64))[0]
    render.release()
    assert np.array_equal(render.render_views(character_glb, [0], (64, 64))[0], first)
