"""Catalog: migrations, transactional publishing, run records, and concurrent writers."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from storage.catalog import MIGRATIONS, Catalog, parameters_hash
from storage.objectstore import AssetRef


def _ref(n: int, kind: str = "test/asset") -> AssetRef:
    sha = f"{n:064x}"
    return AssetRef(f"{kind}/{sha}.bin", kind, sha, 10 + n, "application/octet-stream")


@pytest.fixture
def fresh(tmp_path) -> Catalog:
    return Catalog(tmp_path / "catalog.duckdb")


def test_migrations_apply_once_and_record_version(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path)
    assert Catalog(path).migrate() == len(MIGRATIONS)
    rows = Catalog(path).query("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


def test_publish_is_one_transaction(fresh: Catalog):
    assets = [_ref(1), _ref(2)]
    version = fresh.publish_version("world/alpha", manifest=_ref(3, "manifest"), assets=assets,
                                    message="first", author="u1")
    assert version.version == 1 and version.parent_version is None
    second = fresh.publish_version("world/alpha", manifest=_ref(4, "manifest"), assets=[_ref(1)],
                                   message="second", author="u1")
    assert second.version == 2 and second.parent_version == 1
    assert [v.version for v in fresh.versions("world/alpha")] == [1, 2]
    assert fresh.can_read_asset(_ref(2).key, "u1") and not fresh.can_read_asset(_ref(2).key, "u2")


def test_failed_publish_leaves_no_rows(fresh: Catalog):
    before = fresh.query("SELECT count(*) AS n FROM assets")[0]["n"]
    with pytest.raises(ValueError, match="parent_version"):
        fresh.publish_version("world/beta", manifest=_ref(9, "manifest"), assets=[_ref(7), _ref(8)],
                              message="bad parent", author="u1", parent_version=41)
    assert fresh.query("SELECT count(*) AS n FROM assets")[0]["n"] == before
    assert fresh.versions("world/beta") == []


def test_exception_inside_write_rolls_back(fresh: Catalog):
    with pytest.raises(RuntimeError):
        with fresh.write() as con:
            con.execute("INSERT INTO asset_owners VALUES ('k', 'o')")
            raise RuntimeError("task died half way")
    assert fresh.query("SELECT count(*) AS n FROM asset_owners")[0]["n"] == 0


def test_run_upsert_keeps_owner_and_computes_duration(fresh: Catalog):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    fresh.upsert_run("r1", flow_name="selfcheck", state="SCHEDULED", owner="alice", parameters={"n": 1})
    fresh.upsert_run("r1", flow_name="selfcheck", state="COMPLETED", owner=None, parameters={"n": 1},
                     started_at=start, ended_at=start + timedelta(seconds=3))
    row = fresh.run("r1")
    assert row["owner"] == "alice" and row["state"] == "COMPLETED" and row["duration_s"] == 3.0
    assert row["parameters_hash"] == parameters_hash({"n": 1})


def test_parameters_hash_is_order_independent():
    assert parameters_hash({"a": 1, "b": [1, 2]}) == parameters_hash({"b": [1, 2], "a": 1})
    assert parameters_hash({"a": 1}) != parameters_hash({"a": 2})


def _writer(path: str, worker: int, count: int) -> None:
    catalog = Catalog(path)
    for i in range(count):
        catalog.record_task_runs([{"task_run_id": f"{worker}-{i}", "flow_run_id": "f", "task_name": "t",
                                   "parameters_hash": "h", "state": "COMPLETED", "retries": 0, "duration_s": 0.1}])


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.duckdb")
    Catalog(path)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(path, w, 25)) for w in range(3)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(120)
        assert proc.exitcode == 0
    assert Catalog(path).query("SELECT count(*) AS n FROM task_runs")[0]["n"] == 75


def test_readers_open_read_only(fresh: Catalog):
    with fresh.read() as con:
        with pytest.raises(duckdb.Error):
            con.execute("INSERT INTO asset_owners VALUES ('k', 'o')")
