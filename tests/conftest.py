"""Shared service fixtures: real servers on 127.0.0.1, free ports, a temp data dir, stopped by PID.

Every service a test needs is started here once per session (S3 server, Prefect server,
Ray) because start-up costs seconds; tests that kill a service restart it themselves.
Area-specific fixtures live in the conftest.py of that test folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from gaiverse.config import Settings, get_settings, prefect_env
from gaiverse.proc import free_port, port_open, spawn, stop_pid, wait_until

ARTIFACTS = Path(__file__).parent / "artifacts"


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_chromium: browser test in headless Debian chromium")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gaiverse-data")


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    """Settings for the whole test session, exported as GAIVERSE_* so child processes see the same."""
    env = {
        "GAIVERSE_DATA_DIR": str(data_dir),
        "GAIVERSE_S3_PORT": str(free_port()),
        "GAIVERSE_PREFECT_PORT": str(free_port()),
        "GAIVERSE_API_PORT": str(free_port()),
        "GAIVERSE_ADMIN_KEY": "gv_test_admin_key_0123456789abcdef",
    }
    if os.environ.get("GAIVERSE_TEST_S3_ENDPOINT"):  # run the storage suite against a real MinIO
        env["GAIVERSE_S3_ENDPOINT"] = os.environ["GAIVERSE_TEST_S3_ENDPOINT"]
    os.environ.update(env)
    os.environ.pop("GAIVERSE_RAY_ADDRESS", None)
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session")
def s3_server(settings: Settings):
    """The embedded S3 server (nanio) for the session; yields a restartable handle."""
    from storage.s3server import start_s3_server

    if not settings.embedded_s3:
        yield None
        return
    handle = S3Handle(settings, start_s3_server(settings))
    yield handle
    handle.stop()


class S3Handle:
    """Lets fault tests kill and restart the embedded S3 server."""

    def __init__(self, settings: Settings, service):
        self.settings = settings
        self.service = service

    def stop(self) -> None:
        if self.service is not None:
            stop_pid(self.service.pid, "s3")
            self.service = None

    def start(self) -> None:
        from storage.s3server import start_s3_server

        if self.service is None:
            self.service = start_s3_server(self.settings)


@pytest.fixture(scope="session")
def store(settings: Settings, s3_server):
    from storage.objectstore import ObjectStore

    object_store = ObjectStore.from_settings(settings)
    object_store.ensure_bucket()
    return object_store


@pytest.fixture(scope="session")
def catalog(settings: Settings):
    from storage.catalog import Catalog

    return Catalog(settings.catalog_path)


@pytest.fixture(scope="session")
def prefect_server(settings: Settings):
    """A real Prefect 3 server (SQLite under the data dir); PREFECT_* env points this process at it."""
    env = prefect_env(settings)
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    service = spawn(
        "prefect-server",
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(settings.prefect_port), "--no-ui"],
        settings.run_dir, env=env,
    )
    os.environ.update(env)
    try:
        wait_until(lambda: _prefect_healthy(settings), 90, "Prefect server")
        yield settings.prefect_url
    finally:
        stop_pid(service.pid, "prefect-server")


def _prefect_healthy(settings: Settings) -> bool:
    import httpx

    if not port_open("127.0.0.1", settings.prefect_port):
        return False
    try:
        return httpx.get(settings.prefect_url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (num_cpus=2); tests that need a cluster start their own."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        # address="local": a bare ray.init() would join whatever `ray start` this machine ran last
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
