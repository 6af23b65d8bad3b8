"""Platform benchmark (issue: foundation): Prefect task overhead, Ray actor round trip, object store
throughput, catalog writes and publishing, and the cold start of `gaiverse up`.

Runs against its own embedded stack in a temporary data dir on free loopback ports, so it
never disturbs a running installation. Usage: python benchmarks/platform.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and "platform" would shadow the
# standard library module of that name: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks.report import Report  # noqa: E402
from gaiverse.config import get_settings, prefect_env  # noqa: E402
from gaiverse.proc import free_port  # noqa: E402


def isolated_settings(data_dir: Path):
    os.environ.update({
        "GAIVERSE_DATA_DIR": str(data_dir), "GAIVERSE_S3_PORT": str(free_port()),
        "GAIVERSE_PREFECT_PORT": str(free_port()), "GAIVERSE_API_PORT": str(free_port()),
        "GAIVERSE_RAY_HEAD_PORT": str(free_port()), "RAY_AUTH_MODE": "disabled",
    })
    get_settings.cache_clear()
    return get_settings()


def bench_cold_start(report: Report, settings) -> None:
    """`gaiverse up` on a new data dir (cold: new Prefect DB), then down and up again (restart)."""
    from gaiverse import stack

    cold, warm = [], []
    began = time.perf_counter()
    stack.up(settings)
    cold.append(time.perf_counter() - began)
    stack.down(settings)
    began = time.perf_counter()
    stack.up(settings)
    warm.append(time.perf_counter() - began)
    report.add("gaiverse up, cold (new data dir)", cold, unit="s", scale=1, goal="< 30 s to all healthy")
    report.add("gaiverse up, restart", warm, unit="s", scale=1)


def bench_prefect(report: Report, settings, n_tasks: int) -> None:
    os.environ.update(prefect_env(settings))
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"  # 200 task-state lines would bury the table
    from prefect import flow, task

    def trivial(i: int) -> int:
        return i + 1

    trivial_task = task(trivial, name="trivial", persist_result=False, cache_policy=None)
    per_task: list[float] = []

    @flow(name="bench-overhead", persist_result=False)
    def many_tasks(n: int) -> None:
        for i in range(n):
            began = time.perf_counter()
            trivial_task(i)
            per_task.append(time.perf_counter() - began)

    many_tasks(5)  # warm the client and the flow registration
    per_task.clear()
    began = time.perf_counter()
    many_tasks(n_tasks)
    flow_total = time.perf_counter() - began
    plain = []
    for i in range(n_tasks):
        began = time.perf_counter()
        trivial(i)
        plain.append(time.perf_counter() - began)
    report.add(f"Prefect task call ({n_tasks} tasks in one flow)", per_task, goal="< 50 ms per task",
               baseline=plain, baseline_name="plain call", flow_total_s=round(flow_total, 2))


def bench_ray(report: Report, settings, n_calls: int) -> None:
    import ray

    from gaiverse.stack import ray_address

    ray.init(address=ray_address(settings), log_to_driver=False)

    @ray.remote
    class Echo:
        def ping(self, x):
            return x

    actor = Echo.remote()
    ray.get(actor.ping.remote(0))
    samples = []
    for i in range(n_calls):
        began = time.perf_counter()
        ray.get(actor.ping.remote(i))
        samples.append(time.perf_counter() - began)
    plain = []
    for i in range(n_calls):
        began = time.perf_counter()
        (lambda x: x)(i)
        plain.append(time.perf_counter() - began)
    report.add("Ray actor round trip", samples, goal="< 5 ms p50", baseline=plain, baseline_name="plain call")
    ray.shutdown()


def bench_store(report: Report, settings, quick: bool) -> None:
    from storage.objectstore import ObjectStore

    store = ObjectStore.from_settings(settings)
    store.ensure_bucket()
    work = Path(tempfile.mkdtemp(prefix="gv-bench-"))
    sizes = [("1 KB", 1024, 100 if quick else 300), ("1 MB", 2**20, 20 if quick else 50),
             ("64 MB", 64 * 2**20, 2 if quick else 4)]
    for label, size, reps in sizes:
        puts, gets, copies = [], [], []
        for _ in range(reps):
            src = work / "src.bin"
            src.write_bytes(os.urandom(size))  # new bytes each time: no dedup shortcut
            began = time.perf_counter()
            ref = store.put_file(src, kind="bench/store")
            puts.append(time.perf_counter() - began)
            began = time.perf_counter()
            store.get_file(ref.key, work / "back.bin")
            gets.append(time.perf_counter() - began)
            began = time.perf_counter()
            shutil.copyfile(src, work / "copy.bin")
            copies.append(time.perf_counter() - began)
            store.delete(ref.key)
        mb = size / 2**20
        report.add(f"store put {label}", puts, baseline=copies, baseline_name="file copy",
                   throughput_mb_s=round(mb / sorted(puts)[len(puts) // 2], 1))
        report.add(f"store get {label} (verified)", gets, baseline=copies, baseline_name="file copy",
                   throughput_mb_s=round(mb / sorted(gets)[len(gets) // 2], 1))
    shutil.rmtree(work)


def bench_catalog(report: Report, data_dir: Path, quick: bool) -> None:
    from storage.catalog import Catalog
    from storage.objectstore import AssetRef

    catalog = Catalog(data_dir / "bench-catalog.duckdb")
    single = []
    n_single = 100 if quick else 300
    for i in range(n_single):
        began = time.perf_counter()
        catalog.record_task_runs([{"task_run_id": f"s{i}", "task_name": "t", "parameters_hash": "h",
                                   "state": "COMPLETED", "retries": 0, "duration_s": 0.01}])
        single.append(time.perf_counter() - began)
    batch_rows = 10_000
    rows = [{"task_run_id": f"b{i}", "task_name": "t", "parameters_hash": "h", "state": "COMPLETED",
             "retries": 0, "duration_s": 0.01} for i in range(batch_rows)]
    began = time.perf_counter()
    catalog.record_task_runs(rows)
    batch_s = time.perf_counter() - began
    report.add("catalog task_run insert (1 row / transaction)", single,
               rows_per_s=round(n_single / sum(single)))
    report.add(f"catalog task_run insert ({batch_rows} rows, 1 transaction)", [batch_s], unit="s", scale=1,
               rows_per_s=round(batch_rows / batch_s))
    publishes = []
    for v in range(30 if quick else 100):
        assets = [AssetRef(f"bench/a/{v * 10 + j:064x}.bin", "bench/a", f"{v * 10 + j:064x}", 100, "x")
                  for j in range(5)]
        manifest = AssetRef(f"bench/m/{v:064x}.json", "bench/m", f"{v:064x}", 100, "application/json")
        began = time.perf_counter()
        catalog.publish_version("bench/world", manifest=manifest, assets=assets, message=f"v{v}", author="bench")
        publishes.append(time.perf_counter() - began)
    report.add("catalog publish version (5 assets + manifest)", publishes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--tasks", type=int, default=200, help="tasks in the Prefect overhead flow")
    args = parser.parse_args()
    if args.tasks < 1:
        parser.error(f"--tasks must be >= 1, got {args.tasks}")
    data_dir = Path(tempfile.mkdtemp(prefix="gv-bench-data-"))
    settings = isolated_settings(data_dir)
    report = Report("platform", "prefect", "ray", "duckdb", "minio", "nanio", "torch")
    from gaiverse import stack

    try:
        bench_cold_start(report, settings)
        bench_prefect(report, settings, args.tasks)
        bench_ray(report, settings, 300 if args.quick else 1000)
        bench_store(report, settings, args.quick)
        bench_catalog(report, data_dir, args.quick)
    finally:
        stack.down(settings)
        report.finish()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
