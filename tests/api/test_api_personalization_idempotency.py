"""Idempotent writes over the real API (PER-g1): a retry of a media upload with the same `Idempotency-Key`
stores nothing new (no second row, no second sealed object), a new key stores again, and a key is scoped to
its user. The same for text; a revoked key stops working at the next request (in-memory key table)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gaiverse.privacy import PURPOSES
from tests.media import png_bytes

pytestmark = pytest.mark.slow
P = "/personalization"


def _user(api_server: str, admin: httpx.Client) -> httpx.Client:
    body = admin.post("/users", json={"name": f"idem-{uuid.uuid4().hex[:8]}"}).json()
    http = httpx.Client(base_url=api_server, timeout=60, headers={"X-API-Key": body["key"]})
    http.name = body["name"]  # type: ignore[attr-defined]
    for purpose in PURPOSES:
        assert http.put(f"{P}/consent/{purpose}").status_code == 200
    return http


def _sealed_images(store) -> set[str]:
    return {ref.key for ref in store.list(kind="personal/image")}


@pytest.mark.clause("PER-g1")
def test_media_retry_with_the_same_key_stores_one_row_and_one_object(api_server, admin, store):
    user, other = _user(api_server, admin), _user(api_server, admin)
    picture = png_bytes((200, 40, 40), 48)
    before = _sealed_images(store)

    def send(http: httpx.Client, key: str) -> httpx.Response:
        return http.post(f"{P}/interactions/media", params={"text": "red door"}, files={"file": ("d.png", picture)},
                         headers={"Idempotency-Key": key})

    first = send(user, "upload-1")
    assert first.status_code == 201, first.text
    retry = send(user, "upload-1")
    assert retry.status_code == 201 and retry.json() == first.json()
    images = [i for i in user.get(f"{P}/interactions").json() if i["modality"] == "image"]
    assert [i["interaction_id"] for i in images] == [first.json()["interaction_id"]]
    added = _sealed_images(store) - before
    assert len(added) == 1  # the retry sealed and stored nothing (a fresh nonce would give a new key)

    again = send(user, "upload-2")  # a new key is a new input
    assert again.status_code == 201 and again.json()["interaction_id"] != first.json()["interaction_id"]
    elsewhere = send(other, "upload-1")  # keys are per user
    assert elsewhere.status_code == 201 and elsewhere.json()["interaction_id"] != first.json()["interaction_id"]
    assert len(_sealed_images(store) - before) == 3

    bad = user.post(f"{P}/interactions/media", files={"file": ("d.png", picture)},
                    headers={"Idempotency-Key": "k" * 201})
    assert bad.status_code == 422 and "Idempotency-Key" in bad.text
    for http in (user, other):
        http.close()


@pytest.mark.clause("PER-g1")
def test_text_retry_is_stored_once_and_revoked_keys_stop_at_once(api_server, admin):
    user = _user(api_server, admin)
    key = {"Idempotency-Key": "say-1"}
    first = user.post(f"{P}/interactions", json={"text": "I love exploring ruins"}, headers=key)
    retry = user.post(f"{P}/interactions", json={"text": "I love exploring ruins"}, headers=key)
    assert first.status_code == retry.status_code == 201 and retry.json() == first.json()
    assert len(user.get(f"{P}/interactions").json()) == 1
    assert user.get(f"{P}/recommendations", params={"k": 3}).status_code == 200  # the key is in the table now

    erased = user.delete(f"{P}/data", params={"confirm": user.name})  # type: ignore[attr-defined]
    assert erased.status_code == 200
    assert user.get(f"{P}/recommendations").status_code == 401
    user.close()
