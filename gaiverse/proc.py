"""Start, probe and stop the stack's child processes by PID (pid files under the run dir)."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """One child process of the embedded stack."""

    name: str
    pid: int
    log_path: Path


def port_open(host: str, port: int, timeout_s: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback port nobody listens on right now (for tests and benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    """Poll ``predicate``; TimeoutError naming ``what`` when it stays false for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    if not predicate():
        raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def spawn(name: str, argv: Sequence[str], run_dir: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Service:
    """Start ``argv`` in its own process group, logging to run_dir/<name>.log, pid in run_dir/<name>.pid."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"{name}.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    (run_dir / f"{name}.pid").write_text(str(proc.pid))
    log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
    return Service(name, proc.pid, log_path)


def read_pid(run_dir: Path, name: str) -> int | None:
    path = run_dir / f"{name}.pid"
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def stop_pid(pid: int, name: str = "process", timeout_s: float = 15.0) -> None:
    """SIGINT the process group, then SIGTERM, then SIGKILL; returns when it is gone."""
    for sig, wait_s in ((signal.SIGINT, timeout_s * 0.5), (signal.SIGTERM, timeout_s * 0.5), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and pid_alive(pid):
            _reap(pid)
            time.sleep(0.05)
        if not pid_alive(pid):
            break
    _reap(pid)
    log.info("stopped %s (pid %d)", name, pid)


def stop_service(run_dir: Path, name: str) -> bool:
    """Stop the named service if its pid file points at a live process; True when one was stopped."""
    pid = read_pid(run_dir, name)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    stop_pid(pid, name)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@contextmanager
def file_lock(lock_path: str | Path, exclusive: bool) -> Iterator[None]:
    """Cross-process reader/writer lock on ``lock_path`` (fcntl): shared for readers, exclusive for writers.

    Each call opens its own descriptor, so threads of one process exclude each other too. Used to let
    several processes share one DuckDB file, which allows a single read-write opener at a time.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def transaction(con) -> Iterator:
    """BEGIN on a DuckDB connection; COMMIT when the block ends, ROLLBACK (nothing written) when it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextmanager
def locked_write(db_path: str | Path, lock_path: str | Path) -> Iterator:
    """One short read-write DuckDB connection to ``db_path`` under the exclusive ``lock_path`` lock, in one
    transaction: the pattern every shared DuckDB file of gaiverse uses for writes (catalog, repositories)."""
    import duckdb

    with file_lock(lock_path, exclusive=True):
        con = duckdb.connect(str(db_path))
        try:
            with transaction(con):
                yield con
        finally:
            con.close()
