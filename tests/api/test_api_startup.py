"""What the app does when a piece is missing: three.js not installed, Prefect unreachable."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gaiverse.api import web
from gaiverse.api.app import build_app, create_app
from gaiverse.config import Settings
from gaiverse.proc import free_port


def test_without_three_js_the_terminal_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(web, "THREE_CANDIDATES", (tmp_path / "nowhere",))
    app = build_app()
    status = web.mount_web(app)
    assert "npm ci" in status
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 503
        assert "three.js is not installed" in page.text and "npm ci" in page.text
        assert client.get("/vendor/three/build/three.module.js").status_code == 404


def test_with_three_js_the_page_and_its_modules_are_served():
    app = build_app()
    assert web.mount_web(app) == "ok"
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and '"three": "/vendor/three/build/three.module.js"' in page.text
        for path in ("/vendor/three/build/three.module.js", "/vendor/three/jsm/loaders/GLTFLoader.js",
                     "/vendor/three/jsm/controls/OrbitControls.js", "/web/viewer.js", "/web/app.js"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "javascript" in response.headers["content-type"], path


@pytest.mark.slow
def test_health_is_503_and_names_prefect_when_it_is_down(settings, store, catalog):
    down = Settings(prefect_api_url=f"http://127.0.0.1:{free_port()}/api")
    with TestClient(create_app(down)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"]["prefect"]["status"] == "error" and body["components"]["prefect"]["detail"]
    assert body["components"]["object_store"]["status"] == "ok"
    assert body["components"]["catalog"]["status"] == "ok"
