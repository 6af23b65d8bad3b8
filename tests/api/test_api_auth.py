"""Keys against the real server: 401 without a valid key, both header styles, admin-only user creation."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

AUTHENTICATED = [("GET", "/me"), ("GET", "/runs"), ("GET", "/assets"), ("GET", "/deployments"),
                 ("POST", "/runs"), ("POST", "/uploads"), ("POST", "/users"), ("GET", "/versions/world"),
                 ("GET", "/catalog/task_runs?run_id=x"),
                 ("GET", "/runs/00000000-0000-0000-0000-000000000000")]


def test_health_needs_no_key_and_reports_every_service(client):
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"object_store", "catalog", "prefect", "web"}
    assert all(c["status"] == "ok" for c in body["components"].values())


@pytest.mark.parametrize("method, path", AUTHENTICATED)
def test_missing_key_is_401(client, method, path, detail, snapshot):
    before = snapshot()
    response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 401
    assert "API key" in detail(response)
    assert response.headers["www-authenticate"] == "Bearer"
    assert snapshot() == before


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer gv_not_a_real_key"}, {"X-API-Key": "gv_nope"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}, {"X-API-Key": ""}])
def test_invalid_key_is_401(client, headers, detail):
    response = client.get("/me", headers=headers)
    assert response.status_code == 401
    detail(response)


def test_both_header_styles_sign_in(client, alice):
    by_header = client.get("/me", headers={"X-API-Key": alice.key})
    by_bearer = client.get("/me", headers={"Authorization": f"Bearer {alice.key}"})
    assert by_header.status_code == by_bearer.status_code == 200
    assert by_header.json() == by_bearer.json()
    me = by_header.json()
    assert me["name"] == alice.user["name"] and me["is_admin"] is False
    assert "key" not in me and alice.key.startswith(me["key_prefix"])


def test_only_admins_create_users_and_names_are_unique(admin, alice, detail, snapshot):
    before = snapshot()
    refused = alice.post("/users", json={"name": "mallory"})
    assert refused.status_code == 403
    detail(refused)
    taken = admin.post("/users", json={"name": alice.user["name"]})
    assert taken.status_code == 409
    assert alice.user["name"] in detail(taken)
    bad_name = admin.post("/users", json={"name": "two words"})
    assert bad_name.status_code == 422
    assert "name" in detail(bad_name)
    assert snapshot() == before


def test_created_key_is_shown_once_and_works(admin, client):
    created = admin.post("/users", json={"name": "dave-keytest"})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("gv_")
    assert client.get("/me", headers={"X-API-Key": key}).json()["name"] == "dave-keytest"
