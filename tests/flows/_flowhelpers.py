"""Helpers shared by the flow tests (imported as a module: tests/flows is on sys.path)."""

from __future__ import annotations

import time
from typing import Callable


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 120, interval_s: float = 0.02) -> None:
    """Poll until ``predicate`` holds (a readiness wait for test choreography, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")


def task_runs_of(catalog, flow_run_id: str) -> dict[str, dict]:
    """task_runs rows of one flow run, by task name."""
    rows = catalog.query("SELECT * FROM task_runs WHERE flow_run_id = ?", [flow_run_id])
    return {row["task_name"]: row for row in rows}
