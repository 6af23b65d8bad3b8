"""Storage conformance: what gaiverse needs from any S3 server, run against the embedded nanio server
(default) or a real MinIO (GAIVERSE_TEST_S3_ENDPOINT=host:port plus GAIVERSE_S3_ACCESS_KEY/SECRET_KEY)."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from storage.objectstore import IntegrityError, ObjectNotFound, ObjectStore, parse_key

pytestmark = pytest.mark.slow


def test_put_is_content_addressed_and_idempotent(store: ObjectStore):
    data = os.urandom(4096)
    first = store.put_bytes(data, kind="test/conformance", ext="bin")
    second = store.put_bytes(data, kind="test/conformance", ext="bin")
    assert first == second
    assert first.key == f"test/conformance/{hashlib.sha256(data).hexdigest()}.bin"
    assert store.get_bytes(first.key) == data
    assert store.stat(first.key).bytes == len(data)


def test_large_file_streams_multipart_and_verifies(store: ObjectStore, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(40 * 1024 * 1024))  # > 16 MB part size: multipart upload
    ref = store.put_file(path, kind="test/large")
    out = store.get_file(ref.key, tmp_path / "back.bin")
    assert out.read_bytes() == path.read_bytes()
    assert store.get_range(ref.key, 1000, 10) == path.read_bytes()[1000:1010]


def test_presigned_get_needs_no_credentials_and_expires(store: ObjectStore):
    ref = store.put_bytes(b"presigned body", kind="test/presign", ext="txt")
    url = store.presigned_get(ref.key, expires_s=60)
    assert httpx.get(url).content == b"presigned body"
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered).status_code == 403
    with pytest.raises(ValueError, match="expires_s"):
        store.presigned_get(ref.key, expires_s=0)


def test_list_by_kind(store: ObjectStore):
    refs = {store.put_bytes(f"item {i}".encode(), kind="test/listing", ext="txt").key for i in range(5)}
    store.put_bytes(b"elsewhere", kind="test/other", ext="txt")
    assert {ref.key for ref in store.list("test/listing")} == refs


def test_corrupt_object_is_detected_on_read(store: ObjectStore):
    honest = store.put_bytes(b"the real bytes", kind="test/integrity", ext="txt")
    _, sha, _ = parse_key(honest.key)
    forged_key = f"test/integrity/{hashlib.sha256(b'other').hexdigest()}.txt"
    store.client.put_object(store.bucket, forged_key, io.BytesIO(b"tampered"), 8)
    with pytest.raises(IntegrityError, match=forged_key):
        store.get_bytes(forged_key)
    assert store.get_bytes(honest.key) == b"the real bytes"


def test_missing_object_and_bad_keys(store: ObjectStore):
    with pytest.raises(ObjectNotFound):
        store.stat(f"test/missing/{'0' * 64}.bin")
    with pytest.raises(ValueError, match="content-addressed"):
        store.get_bytes("../etc/passwd")
    with pytest.raises(ValueError, match="kind"):
        store.put_bytes(b"x", kind="Bad Kind", ext="bin")
    with pytest.raises(ValueError, match="ext"):
        store.put_bytes(b"x", kind="test/ok", ext="too-long-extension")


def test_wrong_secret_is_rejected(settings, store: ObjectStore):
    intruder = Minio(settings.s3_address, access_key=settings.s3_access_key, secret_key="wrong", secure=False)
    with pytest.raises(S3Error):
        intruder.list_buckets()


def test_concurrent_puts_and_gets(store: ObjectStore):
    payloads = [os.urandom(100 * 1024) for _ in range(64)]
    with ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(lambda d: store.put_bytes(d, kind="test/concurrent", ext="bin"), payloads))
        back = list(pool.map(lambda r: store.get_bytes(r.key), refs))
    assert back == payloads


def test_objects_survive_a_restart_of_the_server(settings, store: ObjectStore, s3_server):
    if s3_server is None:
        pytest.skip("external S3 endpoint: its persistence is the operator's")
    ref = store.put_bytes(b"must survive", kind="test/persist", ext="txt")
    s3_server.stop()
    with pytest.raises(Exception):
        ObjectStore.from_settings(settings).stat(ref.key)
    s3_server.start()
    assert store.get_bytes(ref.key) == b"must survive"
