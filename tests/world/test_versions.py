"""World versions on the real S3 server and catalog: publish, conflicts, ownership, diff, rollback, backup/restore."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import numpy as np
import pytest
from PIL import Image
from pydantic import TypeAdapter

from gaiverse.world.editing import Edit, apply_edit
from gaiverse.world.versions import (
    BackupError, VersionConflict, WorldIdTaken, WorldNotFound, WorldVersions, check_world_id, read_backup,
)
from storage.catalog import Catalog
from tests.world._world_fixtures import small_state

EDIT = TypeAdapter(Edit)


@pytest.fixture()
def repo(store, catalog) -> WorldVersions:
    return WorldVersions(store, catalog)


def new_id() -> str:
    return "t-" + uuid.uuid4().hex[:10]


def test_publish_list_load_round_trip(repo):
    world = new_id()
    state = small_state()
    v1 = repo.publish(world, state, author="alice", message="built", made_by={"kind": "build"}, new_world=True,
                      derived={"map_png": (b"\x89PNG\r\n\x1a\nfake", "world/map", "png")})
    assert (v1.version, v1.parent_version) == (1, None)
    loaded = repo.load_state(world)
    assert np.array_equal(loaded.heights, state.heights) and loaded.heights.dtype == np.float32
    assert np.array_equal(loaded.roads, state.roads) and np.array_equal(loaded.water, state.water)
    assert [b.id for b in loaded.buildings] == ["b1", "b2"] and loaded.buildings[0].attrs == {"levels": 3}
    assert loaded.controls == state.controls and loaded.prompt == "a test world"
    manifest = repo.manifest(world, 1)
    assert set(manifest["objects"]) == {"heights", "roads", "water", "buildings", "map_png"}
    assert manifest["made_by"] == {"kind": "build"} and manifest["owner"] == "alice"
    # every object of the version is in the catalog, owned by its author, linked to the manifest
    keys = [ref["key"] for ref in manifest["objects"].values()]
    rows = repo.catalog.query("SELECT input_key FROM lineage WHERE output_key = ?", [v1.manifest_key])
    assert sorted(r["input_key"] for r in rows) == sorted(keys)
    assert all(repo.catalog.can_read_asset(key, "alice") for key in keys)
    assert [w["world_id"] for w in repo.worlds("alice") if w["world_id"] == world] == [world]
    assert all(w["world_id"] != world for w in repo.worlds("bob"))


def test_edit_versions_conflicts_and_ownership(repo):
    world = new_id()
    state = small_state()
    repo.publish(world, state, author="alice", message="built", new_world=True)
    edited = apply_edit(state, EDIT.validate_python({"op": "raise", "amount_m": 5, "region": {
        "x0_m": 100, "y0_m": 100, "x1_m": 200, "y1_m": 200}}))
    v2 = repo.publish(world, edited.state, author="alice", message="raise", base_version=1)
    assert (v2.version, v2.parent_version) == (2, 1)
    with pytest.raises(VersionConflict, match="at version 2, not 1"):
        repo.publish(world, edited.state, author="alice", message="stale edit", base_version=1)
    with pytest.raises(WorldIdTaken):
        repo.publish(world, state, author="bob", message="steal")
    with pytest.raises(WorldIdTaken, match="already exists"):
        repo.publish(world, state, author="alice", message="again", new_world=True)
    assert [v.version for v in repo.versions(world)] == [1, 2]
    with pytest.raises(WorldNotFound):
        repo.check_access(world, "bob")
    assert repo.check_access(world, "alice") == "alice"
    assert repo.check_access(world, "bob", admin=True) == "alice"
    with pytest.raises(WorldNotFound, match="no version 9"):
        repo.version(world, 9)
    with pytest.raises(ValueError, match="world_id"):
        check_world_id("Bad Id!")


def test_diff_reports_what_changed_as_data_and_png(repo, artifacts_dir):
    world = new_id()
    state = small_state()
    repo.publish(world, state, author="alice", message="built", new_world=True)
    s2 = apply_edit(state, EDIT.validate_python({"op": "raise", "amount_m": 10, "feather_m": 0, "region": {
        "x0_m": 0, "y0_m": 384, "x1_m": 128, "y1_m": 512}})).state
    s2 = apply_edit(s2, EDIT.validate_python({"op": "draw_road", "points": [[50, 20], [50, 492]],
                                              "road_class": "major"})).state
    s2 = apply_edit(s2, EDIT.validate_python({"op": "move_building", "building_id": "b2", "dx_m": 30})).state
    repo.publish(world, s2, author="alice", message="three edits", base_version=1)
    diff = repo.diff(world, 1, 2)
    assert not diff["identical"]
    assert diff["heights"]["changed_cells"] == 16 * 16 and diff["heights"]["max_abs_delta_m"] == pytest.approx(10)
    assert [(r["row"], r["col"]) for r in diff["heights"]["regions"]] == [(0, 0)]  # north-west region only
    assert diff["roads"]["major"]["added_cells"] > 50 and diff["roads"]["minor"]["removed_cells"] == 0
    assert diff["buildings"]["removed"] == ["b1"]  # under the new road
    assert diff["buildings"]["moved"] == [{"id": "b2", "dx_m": 30.0, "dy_m": 0.0}]
    assert repo.diff(world, 2, 2)["identical"]
    png = repo.diff_png(world, 1, 2)
    (artifacts_dir / "world_diff.png").write_bytes(png)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert image.shape == (256, 256, 3)
    red = (image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert red[:64, :64].mean() > 0.3 and red[128:, 128:].sum() == 0  # raised area red, only there


def test_rollback_points_at_old_content(repo):
    world = new_id()
    state = small_state()
    v1 = repo.publish(world, state, author="alice", message="built", new_world=True)
    s2 = apply_edit(state, EDIT.validate_python({"op": "lower", "amount_m": 3, "region": {
        "x0_m": 0, "y0_m": 0, "x1_m": 300, "y1_m": 300}})).state
    repo.publish(world, s2, author="alice", message="lower", base_version=1)
    v3 = repo.rollback(world, 1, author="alice")
    assert (v3.version, v3.parent_version, v3.manifest_key) == (3, 2, v1.manifest_key)
    assert v3.message == "rollback to v1"
    assert np.array_equal(repo.load_state(world).heights, state.heights)
    with pytest.raises(WorldNotFound):
        repo.rollback(world, 7, author="alice")


def test_backup_restores_into_an_empty_stack(repo, store, tmp_path):
    world = new_id()
    state = small_state()
    repo.publish(world, state, author="alice", message="built", new_world=True,
                 derived={"glb": (b"glTF-bytes", "world/glb", "glb")})
    s2 = apply_edit(state, EDIT.validate_python({"op": "raise", "amount_m": 4, "region": {
        "x0_m": 0, "y0_m": 0, "x1_m": 300, "y1_m": 300}})).state
    repo.publish(world, s2, author="alice", message="raised", base_version=1,
                 derived={"glb": (b"glTF-bytes-2", "world/glb", "glb")})
    archive = repo.export_backup(world, 2)
    files = read_backup(archive)
    meta = json.loads(files["backup.json"])
    assert meta["version"]["version"] == 2 and len(meta["assets"]) == 6  # 5 objects + manifest
    # an empty stack: a new catalog file and a new bucket on the S3 server
    from storage.objectstore import ObjectStore

    empty_store = ObjectStore(store.client, "restore-" + uuid.uuid4().hex[:8])
    empty_store.ensure_bucket()
    empty = WorldVersions(empty_store, Catalog(tmp_path / "empty.duckdb"))
    restored = empty.restore_backup(archive, author="carol")
    assert (restored.world_id, restored.version) == (world, 2)
    assert "restored from backup of v2" in restored.message
    back = empty.load_state(world)
    assert np.array_equal(back.heights, s2.heights) and back.buildings == s2.buildings
    assert empty.manifest(world)["objects"]["glb"]["key"] == repo.manifest(world)["objects"]["glb"]["key"]
    assert empty.check_access(world, "carol") == "carol"


def test_corrupt_or_incomplete_backups_leave_nothing(repo, tmp_path):
    world = new_id()
    repo.publish(world, small_state(), author="alice", message="built", new_world=True)
    archive = repo.export_backup(world)
    members = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            members[member.name] = tar.extractfile(member).read()

    def pack(files):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    heights_name = next(n for n in members if n.startswith("objects/world/heights/"))
    tampered = dict(members, **{heights_name: members[heights_name][:-4] + b"\0\0\0\0"})
    empty = WorldVersions(repo.store, Catalog(tmp_path / "empty.duckdb"))
    with pytest.raises(BackupError, match="checksum mismatch"):
        empty.restore_backup(pack(tampered), author="carol")
    with pytest.raises(BackupError, match="SHA256SUMS"):
        empty.restore_backup(pack({k: v for k, v in members.items() if k != heights_name}), author="carol")
    with pytest.raises(BackupError, match="not a gaiverse world backup"):
        empty.restore_backup(b"not a tarball", author="carol")
    assert empty.catalog.query("SELECT count(*) AS n FROM versions")[0]["n"] == 0
