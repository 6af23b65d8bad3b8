"""Uploads and assets against the real server and S3: limits, types, ownership, downloads."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(32)


def upload(http: httpx.Client, filename: str, data: bytes) -> httpx.Response:
    return http.post("/uploads", files={"file": (filename, data, "application/octet-stream")})


def test_upload_is_stored_content_addressed_and_owned(alice, store, catalog, glb_bytes):
    response = upload(alice, "model.glb", glb_bytes)
    assert response.status_code == 201, response.text
    asset = response.json()
    sha = hashlib.sha256(glb_bytes).hexdigest()
    assert asset["key"] == f"upload/glb/{sha}.glb"
    assert asset["bytes"] == len(glb_bytes) and asset["content_type"] == "model/gltf-binary"
    assert store.get_bytes(asset["key"]) == glb_bytes
    assert catalog.can_read_asset(asset["key"], alice.user["user_id"])
    again = upload(alice, "same-bytes.glb", glb_bytes)
    assert again.status_code == 201 and again.json()["key"] == asset["key"]  # idempotent
    listed = alice.get("/assets", params={"kind": "upload"}).json()
    assert asset["key"] in [a["key"] for a in listed]
    meta = alice.get(f"/assets/{asset['key']}")
    assert meta.status_code == 200 and meta.json()["sha256"] == sha


def test_download_redirects_to_a_working_presigned_url(alice, glb_bytes):
    key = upload(alice, "model.glb", glb_bytes).json()["key"]
    response = alice.get(f"/assets/{key}/download", follow_redirects=False)
    assert response.status_code == 307
    location = response.headers["location"]
    assert location.startswith("http://127.0.0.1:")
    fetched = httpx.get(location, timeout=30)  # no credentials needed
    assert fetched.status_code == 200 and fetched.content == glb_bytes
    assert alice.get(f"/assets/{key}/url").json()["url"].startswith("http://127.0.0.1:")
    content = alice.get(f"/assets/{key}/content")
    assert content.status_code == 200 and content.content == glb_bytes
    assert content.headers["content-type"] == "model/gltf-binary"


@pytest.mark.clause("PER-f1")
def test_another_users_asset_is_404_like_a_missing_one(alice, bob, detail):
    key = upload(alice, "private.png", PNG).json()["key"]
    missing = "upload/png/" + "0" * 64 + ".png"
    for suffix in ("", "/download", "/url", "/content"):
        theirs = bob.get(f"/assets/{key}{suffix}", follow_redirects=False)
        absent = bob.get(f"/assets/{missing}{suffix}", follow_redirects=False)
        assert theirs.status_code == absent.status_code == 404, suffix
        assert detail(theirs).replace(key, "K") == detail(absent).replace(missing, "K")
    assert key not in [a["key"] for a in bob.get("/assets").json()]


def test_admin_sees_every_asset(alice, admin):
    key = upload(alice, "for-admin.png", PNG).json()["key"]
    assert admin.get(f"/assets/{key}").status_code == 200


def test_oversized_upload_is_413_and_stores_nothing(alice, upload_limit, snapshot, detail):
    before = snapshot()
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(upload_limit + 10)
    response = upload(alice, "big.png", data)  # Content-Length known: refused before reading
    assert response.status_code == 413
    assert str(upload_limit) in detail(response)

    def chunks():  # no Content-Length: refused while streaming
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\r\n"
        for start in range(0, len(data), 65536):
            yield data[start:start + 65536]
        yield b"\r\n--b--\r\n"

    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    streamed = alice.post("/uploads", content=chunks(), headers=multipart)
    assert streamed.status_code == 413
    assert str(upload_limit) in detail(streamed)
    assert snapshot() == before


@pytest.mark.parametrize("filename, data, status", [
    ("tool.exe", b"MZ\x90\x00" + os.urandom(64), 415),         # extension not allowed
    ("fake.png", b"GIF89a" + os.urandom(64), 415),             # extension allowed, magic bytes wrong
    ("fake.glb", b"glTF" + os.urandom(64), 415),               # header without a valid length
    ("broken.json", b'{"unterminated": ', 415),
    ("README", b"hello", 415),                                  # no extension
    ("empty.png", b"", 422),
])
def test_wrong_file_type_is_refused_and_stores_nothing(alice, snapshot, detail, filename, data, status):
    before = snapshot()
    response = upload(alice, filename, data)
    assert response.status_code == status, response.text
    assert filename in detail(response)
    assert snapshot() == before


@pytest.mark.parametrize("kwargs, status", [
    ({"data": {"note": "no file"}, "files": {"other": ("x.png", PNG)}}, 422),   # no `file` field
    ({"content": b"not multipart", "headers": {"Content-Type": "text/plain"}}, 415),
    ({"content": b"--x\r\ngarbage", "headers": {"Content-Type": "multipart/form-data; boundary=y"}}, 400),
])
def test_malformed_upload_requests_are_4xx(alice, snapshot, detail, kwargs, status):
    before = snapshot()
    response = alice.post("/uploads", **kwargs)
    assert response.status_code == status, response.text
    detail(response)
    assert snapshot() == before
