"""The embedded stack as a user runs it: `gaiverse up`, status, a restart that keeps everything, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from gaiverse.config import Settings
from gaiverse.proc import free_port, pid_alive

pytestmark = pytest.mark.slow


@pytest.fixture
def stack_env(tmp_path) -> dict[str, str]:
    """A private data dir and free ports, so this stack never meets the session services."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GAIVERSE_", "PREFECT_"))}
    env.update({
        "GAIVERSE_DATA_DIR": str(tmp_path / "data"), "GAIVERSE_S3_PORT": str(free_port()),
        "GAIVERSE_PREFECT_PORT": str(free_port()), "GAIVERSE_API_PORT": str(free_port()),
        "GAIVERSE_RAY_HEAD_PORT": str(free_port()), "RAY_AUTH_MODE": "disabled",
    })
    yield env
    gaiverse(env, "down")


def gaiverse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gaiverse.cli", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{key.removeprefix("GAIVERSE_").lower(): value
                       for key, value in env.items() if key.startswith("GAIVERSE_")})


def test_up_restart_keeps_published_assets_and_rows(stack_env):
    from storage.catalog import Catalog
    from storage.objectstore import ObjectStore

    first = gaiverse(stack_env, "up")
    assert first.returncode == 0, first.stderr
    status = gaiverse(stack_env, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    services = {s["name"]: s for s in json.loads(status.stdout)["services"]}
    assert all(s["healthy"] for s in services.values()), services
    settings = _settings(stack_env)
    assert httpx.get(settings.api_url + "/health").status_code == 200

    store = ObjectStore.from_settings(settings)
    asset = store.put_bytes(b"published before the restart", kind="test/restart", ext="txt")
    manifest = store.put_bytes(json.dumps({"assets": [asset.key]}).encode(), kind="manifest", ext="json")
    catalog = Catalog(settings.catalog_path)
    catalog.publish_version("test/restart", manifest=manifest, assets=[asset], message="before", author="t")

    pids = [s["pid"] for s in services.values() if s["pid"]]
    assert gaiverse(stack_env, "down").returncode == 0
    assert not any(pid_alive(pid) for pid in pids), "a service outlived `gaiverse down`"
    assert gaiverse(stack_env, "status").returncode == 1

    again = gaiverse(stack_env, "up")
    assert again.returncode == 0, again.stderr
    assert store.get_bytes(asset.key) == b"published before the restart"
    assert [v.version for v in Catalog(settings.catalog_path).versions("test/restart")] == [1]
    assert json.loads(store.get_bytes(manifest.key))["assets"] == [asset.key]


def test_bad_configuration_is_named(tmp_path):
    env = {**os.environ, "GAIVERSE_API_PORT": "not-a-port", "GAIVERSE_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "gaiverse.cli", "status"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "api_port" in result.stderr


def test_demo_runs_selfcheck_via_api_and_ctrl_c_stops_every_child(stack_env):
    """`gaiverse demo` as the README's first command runs it: self-check passes, Ctrl-C cleans up."""
    import signal
    import time

    settings = _settings(stack_env)
    proc = subprocess.Popen([sys.executable, "-m", "gaiverse.cli", "demo"], env=stack_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    for line in proc.stdout:  # blocks until the demo prints; the demo always ends its start-up
        lines.append(line)
        if "press Ctrl-C" in line or proc.poll() is not None:
            break
    output = "".join(lines)
    assert "self-check passed" in output, output
    assert "-> COMPLETED" in output, output
    key = (settings.data_dir / "admin.key").read_text().strip()
    runs = httpx.get(settings.api_url + "/runs", headers={"Authorization": f"Bearer {key}"}).json()
    assert any(r["state"] == "COMPLETED" for r in runs), runs
    pids = [int(p.read_text()) for p in (settings.run_dir).glob("*.pid")]
    assert len(pids) == 5
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, rest
    assert "stopped: " in rest
    deadline = time.monotonic() + 30
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(pid_alive(pid) for pid in pids), "a child outlived Ctrl-C"
