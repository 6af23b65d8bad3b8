"""Room capture: frame selection from real photos and from a video of them, and COLMAP poses on a shipped scene.

COLMAP must recover the four Maupertuis façade cameras: after the best similarity transform their
centres match the shipped kapture trajectory to a few percent of the camera spread and their
orientations to a few degrees.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaiverse.interiors import capture
from gaiverse.interiors.poses import load_scene
from gaiverse.world.training import PROJECT_ROOT

pytestmark = pytest.mark.clause("ENV-c1")

FACADE = PROJECT_ROOT / "data" / "multiview" / "kapture_maupertuis_facade"
PHOTOS = sorted((FACADE / "images").glob("*.jpg"))


def _video_of(photos: list[Path], path: Path, fps: int = 6) -> Path:
    """An mp4 of the real photos, each held 1 s with a motion-blurred second half (hand shake)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = 640, 480
        stream.pix_fmt = "yuv420p"
        for photo in photos:
            rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(photo)), (640, 480), interpolation=cv2.INTER_AREA),
                               cv2.COLOR_BGR2RGB)
            kernel = np.zeros((1, 25), np.float32)
            kernel[0, :] = 1 / 25
            blurred = cv2.filter2D(rgb, -1, kernel)
            for k in range(fps):
                frame = av.VideoFrame.from_ndarray(rgb if k < fps // 2 else blurred, format="rgb24")
                container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_video_frames_are_sharp_distinct_and_spread(tmp_path):
    video = _video_of(PHOTOS, tmp_path / "room.mp4")
    frames = capture.decode_video(video, capture.FrameSelectionConfig(candidate_fps=6))
    assert len(frames) == 6 * len(PHOTOS)
    selection = capture.select_frames(frames, capture.FrameSelectionConfig(max_frames=8))
    # one frame per photo survives: the blurred halves lose to the sharp ones, repeats are near-duplicates
    assert len(selection.frames) == len(PHOTOS), selection.summary()
    sharpness = {f.source: f.sharpness for f in frames}
    kept_times = [float(f.source.split("@")[1][:-1]) for f in selection.frames]
    assert all(t % 1.0 < 0.5 for t in kept_times), kept_times  # from the sharp first half of each second
    assert min(f.sharpness for f in selection.frames) > np.median(list(sharpness.values()))
    assert sorted(int(t) for t in kept_times) == list(range(len(PHOTOS)))


def test_bad_captures_are_refused_with_the_reason(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(PHOTOS[0].read_bytes()[:200])
    with pytest.raises(capture.CaptureError, match="broken.jpg"):
        capture.decode_images([PHOTOS[0], broken])
    same = capture.decode_images([PHOTOS[0]] * 4)
    with pytest.raises(capture.CaptureError, match="near-duplicates"):
        capture.select_frames(same)
    not_video = tmp_path / "clip.mp4"
    not_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with pytest.raises(capture.CaptureError, match="clip.mp4"):
        capture.decode_video(not_video)
    with pytest.raises(capture.ColmapError, match="not installed"):
        capture.colmap_binary(capture.ColmapConfig(binary="colmap-not-here"))


@pytest.mark.slow
def test_colmap_recovers_the_facade_cameras(tmp_path):
    selection = capture.select_frames(capture.decode_images(PHOTOS))
    assert len(selection.frames) == len(PHOTOS)
    capture.write_frames(selection, tmp_path / "images")
    result = capture.reconstruct(tmp_path)
    assert result.registered == len(PHOTOS) and result.points > 200, result.summary()
    found = load_scene(tmp_path, long_side=64, triangulate=False)
    known = load_scene(FACADE, long_side=64, triangulate=False)
    by_frame = {f"frame_{k:03d}.jpg": f.source for k, f in enumerate(selection.frames)}
    known_index = {Path(n).name: i for i, n in enumerate(known.image_names)}
    order = [known_index[by_frame[Path(n).name]] for n in found.image_names]
    alignment = capture.similarity_alignment(known.c2w[order], found.c2w)
    print(f"COLMAP vs shipped poses: centre rms {alignment.rms:.3f} ({alignment.rms_relative:.1%} of the spread), "
          f"rotation errors {np.round(alignment.rotation_error_deg, 2)} deg, {result.points} points, "
          f"{result.seconds} s")
    assert alignment.rms_relative < 0.05, alignment
    assert max(alignment.rotation_error_deg) < 3.0, alignment


def test_upload_checks_name_the_failed_check(tmp_path):
    video = _video_of(PHOTOS, tmp_path / "walk.mp4").read_bytes()
    accepted = capture.check_upload([("walk.mp4", video)])
    assert accepted["mode"] == "video" and accepted["size"] == [640, 480] and accepted["sampled_frames"] >= 2
    photos = capture.check_upload([(p.name, p.read_bytes()) for p in PHOTOS])
    assert photos["mode"] == "images" and photos["files"] == len(PHOTOS)
    refused = {
        "decodable": [("walk.mp4", video[:5000])],
        "count": [("walk.mp4", video), (PHOTOS[0].name, PHOTOS[0].read_bytes())],
        "type": [("walk.avi", video)],
        "size": [(p.name, p.read_bytes()) for p in PHOTOS],
    }
    for check, files in refused.items():
        limits = capture.UploadLimits(max_bytes=len(video) + 10) if check == "size" else None
        with pytest.raises(capture.UploadRejected) as err:
            capture.check_upload(files, limits)
        assert err.value.check == check and "/tmp" not in str(err.value), (check, str(err.value))


@pytest.mark.slow
def test_stored_media_are_sealed_with_the_owner_key_and_deleted_with_the_capture(tmp_path, store, catalog, settings):
    from gaiverse.avatar.capture import open_vault

    keyring, vault = open_vault(settings)
    key = capture.OwnerKey(vault, keyring.pseudonym("room-owner"))
    video = _video_of(PHOTOS, tmp_path / "walk.mp4").read_bytes()
    files = [("my flat.mp4", video)]
    capture_id = capture.store_capture(store, catalog, "room-owner", files, capture.check_upload(files), key)
    version = catalog.versions(f"{capture.CAPTURE_COLLECTION}/{capture_id}")[0]
    manifest_text = store.get_bytes(version.manifest_key).decode()
    media_key = json.loads(manifest_text)["media"][0]["key"]
    raw = store.get_bytes(media_key)
    assert raw[:4] == b"GVE1" and b"ftyp" not in raw[:64] and video[200:264] not in raw  # not the MP4
    assert "my flat" not in manifest_text  # nor the user's file name
    other = capture.OwnerKey(vault, keyring.pseudonym("someone-else"))
    with pytest.raises(Exception, match="does not open|no data key"):
        other.open(raw, capture.SEAL_CONTEXT)
    _, paths = capture.load_capture(store, catalog, capture_id, tmp_path / "opened", key)
    assert paths[0].read_bytes() == video and paths[0].suffix == ".mp4"
    assert capture.delete_capture(store, catalog, capture_id) == {"versions": 1, "objects": 2}
    assert not store.exists(media_key) and not store.exists(version.manifest_key)
    assert not catalog.versions(f"{capture.CAPTURE_COLLECTION}/{capture_id}")
    assert catalog.query("SELECT count(*) AS n FROM assets WHERE key = ?", [media_key])[0]["n"] == 0
