"""API fixtures: a real uvicorn server (subprocess, free port) on the session's S3, catalog and Prefect.

The server gets a 1 MB upload limit so the oversize tests stay small. Users are created
through the API with the admin key the session settings define (GAIVERSE_ADMIN_KEY).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import httpx
import pytest

from gaiverse.config import REPO_ROOT, Settings, prefect_env
from gaiverse.proc import free_port, spawn, stop_pid, wait_until

UPLOAD_LIMIT = 1_000_000
TABLES = ("users", "assets", "asset_owners", "versions", "runs", "task_runs", "validations", "lineage")
HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def api_server(settings: Settings, store, catalog, prefect_server) -> str:
    """Base URL of the API served by uvicorn in a subprocess."""
    port = free_port()
    env = {**prefect_env(settings), "GAIVERSE_API_PORT": str(port),
           "GAIVERSE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}
    service = spawn(
        "api-test",
        [sys.executable, "-m", "uvicorn", "--factory", "gaiverse.api.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        settings.run_dir, env=env, cwd=REPO_ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base + "/health"), 60, f"API server (log: {service.log_path})")
        yield base
    finally:
        stop_pid(service.pid, "api-test")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def admin_key(settings: Settings) -> str:
    return settings.admin_key.get_secret_value()


@pytest.fixture(scope="session")
def client(api_server: str):
    """An httpx client on the API without credentials."""
    with httpx.Client(base_url=api_server, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def admin(api_server: str, admin_key: str):
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=api_server, timeout=30, headers=headers) as http:
        yield http


class UserClient(httpx.Client):
    """An httpx client signed in as one user; ``.user`` is the user's record from POST /users."""

    user: dict
    key: str


def _make_user(api_server: str, admin: httpx.Client, name: str) -> UserClient:
    response = admin.post("/users", json={"name": f"{name}-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    body = response.json()
    http = UserClient(base_url=api_server, timeout=30, headers={"X-API-Key": body["key"]})
    http.user, http.key = body, body["key"]
    return http


@pytest.fixture(scope="session")
def alice(api_server, admin):
    with _make_user(api_server, admin, "alice") as http:
        yield http


@pytest.fixture(scope="session")
def bob(api_server, admin):
    with _make_user(api_server, admin, "bob") as http:
        yield http


@pytest.fixture(scope="session")
def served_flow(settings: Settings, prefect_server) -> str:
    """Deployments api-tiny/t, api-twin/a and api-twin/b served by a runner subprocess (polling every
    second); yields 'api-tiny/t'."""
    env = {**prefect_env(settings), "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_RUNNER_PROCESS_LIMIT": "2"}
    service = spawn("api-tiny-runner", [sys.executable, str(HERE / "tiny_flows.py")],
                    settings.run_dir, env=env, cwd=REPO_ROOT)
    try:
        names = ("api-tiny/t", "api-twin/a", "api-twin/b")
        wait_until(lambda: all(_deployment_exists(settings, name) for name in names), 90,
                   f"deployments {names} (log: {service.log_path})", interval_s=0.5)
        yield "api-tiny/t"
    finally:
        stop_pid(service.pid, "api-tiny-runner")


def _deployment_exists(settings: Settings, name: str) -> bool:
    try:
        return httpx.get(f"{settings.prefect_url}/deployments/name/{name}", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def snapshot(catalog, store, settings: Settings):
    """A callable returning row counts of every catalog table, all object keys and Prefect's run count."""

    def take() -> dict:
        counts = {table: catalog.query(f"SELECT count(*) AS n FROM {table}")[0]["n"] for table in TABLES}
        counts["objects"] = sorted(ref.key for ref in store.list())
        response = httpx.post(f"{settings.prefect_url}/flow_runs/count", json={}, timeout=10)
        counts["prefect_flow_runs"] = response.json() if response.status_code == 200 else None
        return counts

    return take


def _one_line_detail(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"detail"}, body
    detail = body["detail"]
    assert isinstance(detail, str) and detail.strip() and "\n" not in detail, body
    return detail


@pytest.fixture(scope="session")
def detail():
    """detail(response): the error's `detail`, asserted to be one non-empty line and the only key."""
    return _one_line_detail


@pytest.fixture(scope="session")
def upload_limit() -> int:
    return UPLOAD_LIMIT


@pytest.fixture(scope="session")
def glb_bytes() -> bytes:
    """A small coloured model (trimesh): a box on a sphere, vertex colours, exported as glTF binary."""
    import numpy as np
    import trimesh

    box = trimesh.creation.box(extents=(1.0, 0.6, 1.0))
    box.visual.vertex_colors = np.tile([230, 120, 40, 255], (len(box.vertices), 1))
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.35)
    ball.apply_translation((0, 0.65, 0))
    ball.visual.vertex_colors = np.tile([60, 160, 240, 255], (len(ball.vertices), 1))
    return trimesh.Scene([box, ball]).export(file_type="glb")
