"""Shared benchmark reporting: hardware and versions, median/p95 rows, a rich table, JSON results.

Every benchmark script builds a `Report`, adds one row per measure (samples in seconds or a
value), optionally a baseline and the ratio, then calls `finish()`: it prints the table and
writes benchmarks/results/<area>.json (git-ignored), as ../EVAL.md-style conventions ask.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


def hardware() -> dict[str, Any]:
    """CPU model, cores, memory and GPU (if any) of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1), "gpu": gpu,
            "python": platform.python_version(), "os": platform.platform()}


def versions(*packages: str) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Row:
    measure: str
    unit: str
    n: int
    median: float
    p95: float
    goal: str = ""
    baseline_name: str = ""
    baseline_median: float | None = None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Report:
    def __init__(self, area: str, *packages: str):
        self.area = area
        self.rows: list[Row] = []
        self.started = time.time()
        self.meta: dict[str, Any] = {"hardware": hardware(), "versions": versions(*packages)}

    def add(self, measure: str, samples: Sequence[float], *, unit: str = "ms", scale: float = 1e3,
            goal: str = "", baseline: Sequence[float] | None = None, baseline_name: str = "",
            **extra: Any) -> Row:
        """Add a measure from raw samples (seconds by default, shown in ms); ratio = median / baseline median."""
        values = [s * scale for s in samples]
        row = Row(measure, unit, len(values), statistics.median(values), percentile(values, 95), goal, extra=extra)
        if baseline:
            base = [s * scale for s in baseline]
            row.baseline_name = baseline_name
            row.baseline_median = statistics.median(base)
            row.ratio = row.median / row.baseline_median if row.baseline_median else None
        self.rows.append(row)
        return row

    def finish(self) -> Path:
        table = Table(title=f"benchmark: {self.area}")
        for column in ("measure", "n", "median", "p95", "unit", "goal", "baseline (median)", "ratio"):
            table.add_column(column, justify="left" if column in ("measure", "goal") else "right")
        for row in self.rows:
            base = f"{row.baseline_name} {row.baseline_median:.3g}" if row.baseline_median is not None else ""
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
            table.add_row(row.measure, str(row.n), f"{row.median:.3g}", f"{row.p95:.3g}", row.unit, row.goal, base, ratio)
        console = Console(width=200)
        console.print(table)
        hw = self.meta["hardware"]
        console.print(f"hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory_gb']} GB, GPU: {hw['gpu'] or 'none'}")
        console.print("versions: " + ", ".join(f"{k} {v}" for k, v in self.meta["versions"].items()))
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"{self.area}.json"
        payload = {"area": self.area, **self.meta, "seconds": round(time.time() - self.started, 1),
                   "rows": [row.__dict__ for row in self.rows]}
        out.write_text(json.dumps(payload, indent=2, default=str))
        console.print(f"wrote {out}")
        return out
