"""The embedded S3 server: nanio on 127.0.0.1 with its objects on disk under the data dir.

nanio was chosen among the S3 servers installable from PyPI (no MinIO binary is available
here): it checks SigV4 signatures, supports ranges, multipart, copy and presigned URLs, and
keeps objects on disk across restarts (moto keeps them in memory). Setting
GAIVERSE_S3_ENDPOINT skips it and uses that server (MinIO) instead.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from gaiverse.config import Settings
from gaiverse.proc import Service, port_open, spawn, wait_until

SERVICE_NAME = "s3"


def nanio_argv(data_dir: Path, port: int) -> list[str]:
    exe = shutil.which("nanio", path=str(Path(sys.executable).parent)) or shutil.which("nanio")
    if exe is None:
        raise FileNotFoundError("the `nanio` S3 server is not installed (pip install nanio==0.1.7)")
    return [exe, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log"]


def start_s3_server(settings: Settings, timeout_s: float = 30.0) -> Service:
    """Start nanio for ``settings`` and wait until it accepts connections."""
    if not settings.embedded_s3:
        raise ValueError("`s3_endpoint` is set: the embedded S3 server is not used")
    if port_open("127.0.0.1", settings.s3_port):
        raise RuntimeError(f"port {settings.s3_port} is already in use; set GAIVERSE_S3_PORT")
    settings.objects_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "NANIO_ACCESS_KEY": settings.s3_access_key,
        "NANIO_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
    }
    service = spawn(SERVICE_NAME, nanio_argv(settings.objects_dir, settings.s3_port), settings.run_dir, env=env)
    wait_until(lambda: port_open("127.0.0.1", settings.s3_port), timeout_s, "embedded S3 server")
    return service
