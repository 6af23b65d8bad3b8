"""POST /interiors/captures asks for the `media` consent first, refuses bad room captures with the check that
failed, before anything is stored; a good one, where the room-capture deployment is not served, is answered 404
and nothing is stored."""

from __future__ import annotations

import uuid

import cv2
import httpx
import pytest

from gaiverse.config import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.clause("ENV-c1")]

PHOTOS = sorted((REPO_ROOT / "data" / "multiview" / "kapture_maupertuis_facade" / "images").glob("*.jpg"))


def _small_jpeg(path, long_side: int = 480) -> bytes:
    """The real photo at 480 px (the session's upload limit is 1 MB)."""
    image = cv2.imread(str(path))
    scale = long_side / max(image.shape[:2])
    return cv2.imencode(".jpg", cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))[1].tobytes()


def _images(paths):
    return [("images", (p.name, _small_jpeg(p), "image/jpeg")) for p in paths]


@pytest.fixture(scope="module")
def roomer(api_server, admin):
    """A user of these tests only (they give the `media` consent, which other tests' users must not have)."""
    response = admin.post("/users", json={"name": f"roomer-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    with httpx.Client(base_url=api_server, timeout=60, headers={"X-API-Key": response.json()["key"]}) as http:
        yield http


def test_bad_room_captures_are_refused_with_the_reason(roomer, catalog):
    alice = roomer
    refused = alice.post("/interiors/captures", files=_images(PHOTOS[:3]))
    assert refused.status_code == 403 and "media" in refused.json()["detail"], refused.text
    assert alice.put("/personalization/consent/media").status_code == 200
    before = catalog.query("SELECT count(*) AS n FROM versions WHERE starts_with(collection, 'room-capture/')")[0]["n"]
    too_few = alice.post("/interiors/captures", files=_images(PHOTOS[:2]))
    assert too_few.status_code == 422 and "count" in too_few.json()["detail"], too_few.text
    renamed = alice.post("/interiors/captures", files=_images(PHOTOS[:3]) + [
        ("images", ("room.jpg", b"MZ\x90\x00 not a photo", "image/jpeg"))])
    assert renamed.status_code == 415 and "room.jpg" in renamed.json()["detail"], renamed.text
    truncated = alice.post("/interiors/captures", files=_images(PHOTOS[:3]) + [
        ("images", ("cut.jpg", _small_jpeg(PHOTOS[3])[:300], "image/jpeg"))])
    assert truncated.status_code == 422 and "cut.jpg" in truncated.json()["detail"], truncated.text
    mixed = alice.post("/interiors/captures", files=_images(PHOTOS[:3]) + [
        ("video", ("walk.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video/mp4"))])
    assert mixed.status_code == 422 and "either one video or photos" in mixed.json()["detail"], mixed.text
    unknown = alice.post("/interiors/captures", files=_images(PHOTOS[:3]), data={"notes": "x"})
    assert unknown.status_code == 422 and "notes" in unknown.json()["detail"], unknown.text
    too_big = alice.post("/interiors/captures", files=[("images", (p.name, p.read_bytes(), "image/jpeg")) for p in PHOTOS])
    assert too_big.status_code == 413 and "limit" in too_big.json()["detail"], too_big.text
    after = catalog.query("SELECT count(*) AS n FROM versions WHERE starts_with(collection, 'room-capture/')")[0]["n"]
    assert after == before


def test_a_good_capture_without_the_deployment_leaves_nothing(roomer, catalog):
    alice = roomer
    count = "SELECT count(*) AS n FROM versions WHERE starts_with(collection, 'room-capture/')"
    assert alice.put("/personalization/consent/media").status_code == 200
    before = catalog.query(count)[0]["n"]
    started = alice.post("/interiors/captures", files=_images(PHOTOS))
    if started.status_code == 202:  # the deployment is served in this session: follow the capture
        body = started.json()
        assert body["checks"]["mode"] == "images" and body["checks"]["files"] == 4
        progress = alice.get(body["capture_url"]).json()
        assert [s["step"] for s in progress["steps"]][:3] == ["fetch", "frames", "features"]
        return
    assert started.status_code == 404 and "room-capture" in started.json()["detail"], started.text
    assert catalog.query(count)[0]["n"] == before


def test_a_world_build_with_a_room_that_is_not_my_finished_room_is_refused(roomer, store, catalog, settings):
    """POST /worlds `room_capture_id`: malformed, another user's and an unfinished capture are 422 naming the field,
    before any run starts; another user's capture is refused like a missing one."""
    from gaiverse.avatar.capture import open_vault
    from gaiverse.interiors.capture import OwnerKey, check_upload, delete_capture, store_capture

    keyring, vault = open_vault(settings)
    files = [(p.name, _small_jpeg(p)) for p in PHOTOS[:3]]
    me = roomer.get("/me").json()["user_id"]
    mine = store_capture(store, catalog, me, files, check_upload(files), OwnerKey(vault, keyring.pseudonym(me)))
    theirs = store_capture(store, catalog, "someone-else", files, check_upload(files),
                           OwnerKey(vault, keyring.pseudonym("someone-else")))
    runs = "SELECT count(*) AS n FROM runs WHERE owner = ?"
    before = catalog.query(runs, [me])[0]["n"]
    try:
        for capture_id, reason in [("room-notanid", "room_capture_id"), (theirs, f"no room capture {theirs!r}"),
                                   (mine, "no finished room")]:
            refused = roomer.post("/worlds", json={"prompt": "a small town", "size_m": 256,
                                                   "room_capture_id": capture_id})
            assert refused.status_code == 422, refused.text
            assert "room_capture_id" in refused.json()["detail"] and reason in refused.json()["detail"], refused.text
        assert catalog.query(runs, [me])[0]["n"] == before
    finally:
        for capture_id in (mine, theirs):
            delete_capture(store, catalog, capture_id)
