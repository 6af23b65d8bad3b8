"""The embedded stack on one machine: S3 server, Prefect server, Ray head, flow runner and API.

`gaiverse up` starts each piece that is not configured to be external, as a child process
in its own session with a pid file under ``<data_dir>/run``, and waits until each answers
its health check. `gaiverse down` stops them by PID in reverse order. Pieces pointed at
external services (GAIVERSE_S3_ENDPOINT, GAIVERSE_PREFECT_API_URL, GAIVERSE_RAY_ADDRESS) are
left alone and only probed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import httpx

from gaiverse.config import REPO_ROOT, Settings, prefect_env
from gaiverse.proc import port_open, read_pid, spawn, stop_service, wait_until

log = logging.getLogger(__name__)

SERVICES = ("s3", "prefect-server", "ray-head", "flows", "api")
"""Start order; `down` stops them in reverse."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    healthy: bool
    pid: int | None
    detail: str


def child_env(settings: Settings) -> dict[str, str]:
    """Environment of every child: the same GAIVERSE_* settings, Prefect pointed at our server, Ray at our head."""
    env = {key: value for key, value in os.environ.items() if key.startswith("GAIVERSE_")}
    env["GAIVERSE_DATA_DIR"] = str(settings.data_dir)
    env.update(prefect_env(settings))
    env["GAIVERSE_RAY_ADDRESS"] = ray_address(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return env


def ray_address(settings: Settings) -> str:
    return settings.ray_address or f"127.0.0.1:{settings.ray_head_port}"


def _bin(name: str) -> str:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"`{name}` is not installed in this environment")
    return found


# health probes -------------------------------------------------------------------------------
def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def s3_healthy(settings: Settings) -> bool:
    from storage.objectstore import ObjectStore

    host, _, port = settings.s3_address.rpartition(":")
    if not port_open(host, int(port)):
        return False
    try:
        ObjectStore.from_settings(settings, timeout_s=3).ensure_bucket()
        return True
    except Exception as err:  # an answering server with wrong keys is not healthy
        log.debug("s3 not healthy: %s", err)
        return False


def prefect_healthy(settings: Settings) -> bool:
    return _http_ok(settings.prefect_url + "/health")


def ray_healthy(settings: Settings) -> bool:
    host, _, port = ray_address(settings).removeprefix("ray://").rpartition(":")
    return port_open(host or "127.0.0.1", int(port))


def api_healthy(settings: Settings) -> bool:
    return _http_ok(settings.api_url + "/health")


def flows_healthy(settings: Settings) -> bool:
    """The runner is alive and the Prefect server knows at least one of its deployments."""
    if read_pid(settings.run_dir, "flows") is None:
        return False
    try:
        response = httpx.post(settings.prefect_url + "/deployments/filter", json={"limit": 1}, timeout=2)
        return response.status_code == 200 and bool(response.json())
    except httpx.HTTPError:
        return False


# starting ----------------------------------------------------------------------------------
def _start_s3(settings: Settings) -> None:
    from storage.s3server import start_s3_server

    start_s3_server(settings)
    wait_until(lambda: s3_healthy(settings), 30, "S3 server")


def _start_prefect(settings: Settings) -> None:
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    if port_open("127.0.0.1", settings.prefect_port):
        raise RuntimeError(f"port {settings.prefect_port} is already in use; set GAIVERSE_PREFECT_PORT")
    spawn("prefect-server", [_bin("prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(settings.prefect_port), "--analytics-off"],
          settings.run_dir, env=child_env(settings))
    wait_until(lambda: prefect_healthy(settings), 120, "Prefect server")


def _start_ray(settings: Settings) -> None:
    if port_open("127.0.0.1", settings.ray_head_port):
        raise RuntimeError(f"port {settings.ray_head_port} is already in use; set GAIVERSE_RAY_HEAD_PORT")
    argv = [_bin("ray"), "start", "--head", "--block", "--port", str(settings.ray_head_port),
            "--node-ip-address", "127.0.0.1", "--include-dashboard", "false", "--disable-usage-stats"]
    if settings.ray_num_cpus:
        argv += ["--num-cpus", str(settings.ray_num_cpus)]
    if settings.ray_stage_resources:
        argv += ["--resources", json.dumps(settings.ray_stage_resources)]
    spawn("ray-head", argv, settings.run_dir, env=child_env(settings))
    wait_until(lambda: ray_healthy(settings), 60, "Ray head")


def _start_flows(settings: Settings) -> None:
    spawn("flows", [sys.executable, "-m", "flows.serve"], settings.run_dir, env=child_env(settings), cwd=REPO_ROOT)
    wait_until(lambda: flows_healthy(settings), 90, "flow runner (python -m flows.serve)")


def _start_api(settings: Settings) -> None:
    if port_open(settings.api_host, settings.api_port):
        raise RuntimeError(f"port {settings.api_port} is already in use; set GAIVERSE_API_PORT")
    spawn("api", [sys.executable, "-m", "uvicorn", "--factory", "gaiverse.api.app:create_app",
                  "--host", settings.api_host, "--port", str(settings.api_port), "--no-access-log"],
          settings.run_dir, env=child_env(settings), cwd=REPO_ROOT)
    wait_until(lambda: api_healthy(settings), 60, "API")


STARTERS: dict[str, tuple[Callable[[Settings], None], Callable[[Settings], bool]]] = {
    "s3": (_start_s3, s3_healthy),
    "prefect-server": (_start_prefect, prefect_healthy),
    "ray-head": (_start_ray, ray_healthy),
    "flows": (_start_flows, flows_healthy),
    "api": (_start_api, api_healthy),
}


def _is_external(settings: Settings, name: str) -> bool:
    return {"s3": not settings.embedded_s3, "prefect-server": settings.prefect_api_url is not None,
            "ray-head": settings.ray_address is not None}.get(name, False)


def _ensure(settings: Settings, name: str, on_event: Callable[[str, str], None]) -> str:
    """Start one service unless it is external or already healthy; returns what happened."""
    start, healthy = STARTERS[name]
    if healthy(settings):
        on_event(name, "already running")
        return "already running"
    if _is_external(settings, name):
        raise RuntimeError(f"external {name} configured but not reachable")
    began = time.monotonic()
    start(settings)
    message = f"started in {time.monotonic() - began:.1f} s"
    on_event(name, message)
    return message


def up(settings: Settings, on_event: Callable[[str, str], None] = lambda name, msg: None) -> dict[str, str]:
    """Start every missing piece; independent ones in parallel. Stops what it started if one fails."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    events: dict[str, str] = {}
    try:
        # S3, Prefect and Ray do not depend on each other: start them together.
        with ThreadPoolExecutor(3) as pool:
            futures = {name: pool.submit(_ensure, settings, name, on_event) for name in SERVICES[:3]}
            for name, future in futures.items():
                events[name] = future.result()
        with ThreadPoolExecutor(2) as pool:
            futures = {name: pool.submit(_ensure, settings, name, on_event) for name in SERVICES[3:]}
            for name, future in futures.items():
                events[name] = future.result()
    except BaseException:
        started = [name for name, msg in events.items() if msg.startswith("started")]
        down(settings, only=started)
        raise
    return events


def down(settings: Settings, only: list[str] | None = None) -> list[str]:
    """Stop the stack's children by PID, in reverse start order; returns the names stopped."""
    stopped = []
    # clients first (API, runner), then the servers they talk to; each tier in parallel
    for tier in (("api", "flows"), ("ray-head", "prefect-server", "s3")):
        names = [name for name in tier if only is None or name in only]
        with ThreadPoolExecutor(max(1, len(names))) as pool:
            done = pool.map(lambda name: stop_service(settings.run_dir, name), names)
            stopped += [name for name, was_running in zip(names, list(done)) if was_running]
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """Health of every piece, embedded or external."""
    result = []
    for name in SERVICES:
        healthy = STARTERS[name][1](settings)
        pid = read_pid(settings.run_dir, name)
        where = "external" if _is_external(settings, name) else ("embedded" if pid else "not running")
        result.append(ServiceStatus(name, healthy, pid, where))
    return result


def urls(settings: Settings) -> dict[str, str]:
    return {
        "prefect_ui": settings.prefect_url.removesuffix("/api"),
        "api_docs": settings.api_url + "/docs",
        "web_terminal": settings.api_url + "/",
        "s3": ("https://" if settings.s3_secure else "http://") + settings.s3_address,
        "ray": ray_address(settings),
    }


def status_dicts(settings: Settings) -> list[dict]:
    return [asdict(s) for s in status(settings)]
