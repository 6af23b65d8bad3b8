"""`gaiverse world versions|diff|edit|rollback|backup|restore` on the session's S3 server and catalog."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from gaiverse.world.versions import WorldVersions
from gaiverse.world.world_cli import parse_size, world_app
from tests.world._world_fixtures import small_state

RUN = CliRunner()


def call(*args: str) -> tuple[int, dict | None, str]:
    result = RUN.invoke(world_app, list(args))
    body = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, body, result.stderr if result.exit_code else ""


@pytest.fixture()
def world(store, catalog) -> str:
    world_id = "cli-" + uuid.uuid4().hex[:8]
    WorldVersions(store, catalog).publish(world_id, small_state(size=32), author="dana", message="seeded", new_world=True)
    return world_id


def test_edit_diff_rollback_backup_restore(world, tmp_path):
    code, made, _ = call("edit", world, '{"op": "raise", "amount_m": 4, "region": {"x0_m": 0, "y0_m": 0, '
                                        '"x1_m": 96, "y1_m": 96}}', "-m", "cli raise", "--out", str(tmp_path / "v2"))
    assert code == 0 and made["version"] == 2 and made["author"] == "dana" and made["message"] == "cli raise"
    assert (tmp_path / "v2" / "map.png").is_file() and (tmp_path / "v2" / "manifest.json").is_file()
    code, diff, _ = call("diff", world, "1", "2", "--png", str(tmp_path / "d.png"))
    assert code == 0 and diff["heights"]["max_abs_delta_m"] == pytest.approx(4)
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    code, rolled, _ = call("rollback", world, "1")
    assert code == 0 and rolled["version"] == 3 and rolled["message"] == "rollback to v1"
    code, versions, _ = call("versions", world)
    assert [v["version"] for v in versions["versions"]] == [1, 2, 3]
    code, backup, _ = call("backup", world, "--version", "2", "--out", str(tmp_path / "b.tar.gz"))
    assert code == 0 and backup["bytes"] > 0
    code, restored, _ = call("restore", str(tmp_path / "b.tar.gz"), "--world-id", world + "-copy", "--owner", "dana")
    assert code == 0 and restored["world_id"] == world + "-copy" and restored["version"] == 2


def test_errors_exit_2_with_one_line(world, tmp_path):
    code, _, err = call("edit", world, "{not json")
    assert code == 2 and "not JSON" in err
    code, _, err = call("edit", world, '{"op": "raise", "amount_m": -1, "region": {"x0_m": 0, "y0_m": 0, '
                                       '"x1_m": 9, "y1_m": 9}}')
    assert code == 2 and "amount_m" in err
    code, _, err = call("edit", world, '{"op": "move_building", "building_id": "nope", "dx_m": 1}')
    assert code == 2 and "no building 'nope'" in err
    code, _, err = call("versions", "no-such-world")
    assert code == 2 and "no world" in err
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    code, _, err = call("restore", str(tmp_path / "junk.tar.gz"))
    assert code == 2 and "not a gaiverse world backup" in err
    assert parse_size("1km") == 1000 and parse_size("800 m") == 800 and parse_size("640") == 640
    with pytest.raises(ValueError, match="--size"):
        parse_size("big")


def test_delete_removes_the_world(world, store, catalog):
    manifest = WorldVersions(store, catalog).version(world).manifest_key
    code, deleted, _ = call("delete", world)
    assert code == 0 and deleted["world_id"] == world and deleted["versions"] == 1
    assert not store.exists(manifest) and catalog.asset(manifest) is None
    code, _, err = call("delete", world)
    assert code == 2 and "no world" in err
    code, _, err = call("delete", "Bad_Id")
    assert code == 2 and "world_id" in err
