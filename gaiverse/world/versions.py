"""World versions in the catalog: publish, list, load, diff, roll back, back up, restore and delete.

A world `<id>` is the catalog collection `world/<id>` of the generic `versions` table. Each
version row points at an immutable JSON manifest in the object store that lists every object
of the version (state rasters, buildings, .glb, heightmap and map PNGs) by content-addressed
key. Publishing is one catalog transaction (assets, owners, lineage, version row), checked
against the expected parent version so two concurrent edits cannot both build on v3.
The owner of a world is the author of its first version; nobody else can read or change it.
This module takes the object store and the catalog as arguments (duck-typed: ``put_bytes``,
``get_bytes`` / ``write``, ``query``), so it stays free of the platform's imports.
Implements ENV-a3 (version management and backup).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, Sequence

import numpy as np

from gaiverse.world.osm import ROAD_CLASSES
from gaiverse.world.world_state import STATE_OBJECTS, WorldState, _fill_polygon, map_image, png_bytes, to_pixels

log = logging.getLogger(__name__)

WORLD_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
MANIFEST_FORMAT = "gaiverse.world/1"
BACKUP_FORMAT = "gaiverse.world-backup/1"
DIFF_GRID = 4
"""The diff reports height changes per cell of a DIFF_GRID x DIFF_GRID grid of regions."""


class WorldNotFound(LookupError):
    """No such world or version among the caller's worlds."""


class VersionConflict(RuntimeError):
    """The world moved on since the version an edit was based on (answered as 409)."""


class WorldIdTaken(RuntimeError):
    """Another user's world already has this id (answered as 409)."""


class WorldBusy(RuntimeError):
    """A build of the world is running, so it cannot be deleted now (answered as 409)."""


BUILD_FLOWS = ("build-world", "rebuild-world")
"""Flows that publish a world (flows/world.py): their `runs` rows say whether one is running for a world id."""


class BackupError(ValueError):
    """A backup archive is malformed, incomplete, or fails its checksums."""


class Store(Protocol):
    def put_bytes(self, data: bytes, *, kind: str, ext: str) -> Any: ...
    def get_bytes(self, key: str) -> bytes: ...


def _check_lineage(world_id: str, latest: int | None, owner: str | None, author: str,
                   base_version: int | None, new_world: bool) -> None:
    """A version may be added only by the world's owner, only to an existing world unless it is new,
    and only on top of the version the edit was made from (optimistic concurrency)."""
    if latest is not None and owner != author:
        raise WorldIdTaken(f"world id {world_id!r} is taken: choose another")
    if new_world and latest is not None:
        raise WorldIdTaken(f"world {world_id!r} already exists (latest version {latest})")
    if base_version is not None and latest != base_version:
        raise VersionConflict(f"world {world_id!r} is at version {latest}, not {base_version}: "
                              f"reload and apply the edit again")


class CatalogLike(Protocol):
    def write(self) -> Any: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class WorldVersion:
    world_id: str
    version: int
    parent_version: int | None
    manifest_key: str
    message: str
    author: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


def check_world_id(world_id: str) -> str:
    if not isinstance(world_id, str) or not WORLD_ID_RE.match(world_id):
        raise ValueError(f"`world_id` must be 3-63 lowercase letters, digits or dashes, got {world_id!r}")
    return world_id


def collection_of(world_id: str) -> str:
    return f"world/{check_world_id(world_id)}"


def _ref_dict(ref: Any) -> dict[str, Any]:
    return {"key": ref.key, "kind": ref.kind, "sha256": ref.sha256, "bytes": ref.bytes, "content_type": ref.content_type}


class WorldVersions:
    """Versions of worlds on one object store and catalog."""

    def __init__(self, store: Store, catalog: CatalogLike):
        self.store, self.catalog = store, catalog

    # ---- reading ----
    def owner(self, world_id: str) -> str | None:
        rows = self.catalog.query("SELECT author FROM versions WHERE collection = ? ORDER BY version LIMIT 1",
                                  [collection_of(world_id)])
        return rows[0]["author"] if rows else None

    def check_access(self, world_id: str, user_id: str | None, admin: bool = False) -> str:
        """The world's owner; WorldNotFound when it does not exist or is someone else's (same message)."""
        owner = self.owner(world_id)
        if owner is None or not (admin or user_id is None or owner == user_id):
            raise WorldNotFound(f"no world {world_id!r} among your worlds")
        return owner

    def worlds(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Worlds (of one owner, or all): id, owner, latest version, versions, last change."""
        rows = self.catalog.query(
            """SELECT substr(collection, 7) AS world_id, arg_min(author, version) AS owner,
                      max(version) AS latest_version, count(*) AS versions, max(created_at) AS updated_at,
                      arg_max(manifest_key, version) AS manifest_key, arg_max(message, version) AS message
               FROM versions WHERE starts_with(collection, 'world/') GROUP BY collection ORDER BY updated_at DESC""")
        return [r for r in rows if owner is None or r["owner"] == owner]

    def versions(self, world_id: str) -> list[WorldVersion]:
        rows = self.catalog.query(
            "SELECT version, parent_version, manifest_key, message, author, created_at FROM versions "
            "WHERE collection = ? ORDER BY version", [collection_of(world_id)])
        if not rows:
            raise WorldNotFound(f"no world {world_id!r} among your worlds")
        return [WorldVersion(world_id, **row) for row in rows]

    def version(self, world_id: str, version: int | None = None) -> WorldVersion:
        """One version (default the latest)."""
        found = self.versions(world_id)
        if version is None:
            return found[-1]
        for item in found:
            if item.version == version:
                return item
        raise WorldNotFound(f"world {world_id!r} has no version {version} (it has 1..{found[-1].version})")

    def manifest(self, world_id: str, version: int | None = None) -> dict[str, Any]:
        return json.loads(self.store.get_bytes(self.version(world_id, version).manifest_key))

    def load_state(self, world_id: str, version: int | None = None) -> WorldState:
        return self.state_of(self.manifest(world_id, version))

    def state_of(self, manifest: dict[str, Any], get_bytes=None) -> WorldState:
        """The state a manifest lists (for a caller that has read the manifest already); `get_bytes`: how to
        read its objects (default: the store)."""
        get_bytes = get_bytes or self.store.get_bytes
        blobs = {name: get_bytes(manifest["objects"][name]["key"]) for name in STATE_OBJECTS}
        return WorldState.from_objects(manifest["state"], blobs)

    # ---- writing ----
    def publish(self, world_id: str, state: WorldState, *, author: str, message: str,
                derived: dict[str, tuple[bytes, str, str]] | None = None, made_by: dict[str, Any] | None = None,
                base_version: int | None = None, new_world: bool = False, flow_run_id: str | None = None,
                extra: dict[str, Any] | None = None, reused: dict[str, dict[str, Any]] | None = None) -> WorldVersion:
        """Store the state's objects and a manifest, then publish the version in one catalog transaction.

        derived : name -> (bytes, kind, ext) of files made from the state (.glb, previews).
        reused : name -> object ref (manifest form) of objects already stored for an earlier version of this
        world (interiors, dynamics an edit left alone): listed in the manifest as they are, not copied.
        base_version : the version this one was made from; VersionConflict when the world's
        latest version is another one by then. new_world : the world must not exist yet.
        Implements ENV-a3.
        """
        collection = collection_of(world_id)
        if not message or not message.strip():
            raise ValueError("`message` must not be empty")
        self._check_publish(collection, author, base_version, new_world)  # refuse before storing anything
        objects = {**state.objects(), **(derived or {})}
        refs = {name: self.store.put_bytes(data, kind=kind, ext=ext) for name, (data, kind, ext) in objects.items()}
        kept = {name: _Ref(**ref) for name, ref in (reused or {}).items() if name not in refs}
        manifest = {"format": MANIFEST_FORMAT, "world_id": world_id, "owner": author, "state": state.describe(),
                    "objects": {name: _ref_dict(ref) for name, ref in sorted({**kept, **refs}.items())},
                    "made_by": made_by or {}, **(extra or {})}
        manifest_ref = self.store.put_bytes(json.dumps(manifest, indent=1, sort_keys=True, default=str).encode(),
                                            kind="world/manifest", ext="json")
        try:
            return self._publish_row(collection, manifest_ref, [*refs.values(), *kept.values()], author=author,
                                     message=message, base_version=base_version, new_world=new_world,
                                     flow_run_id=flow_run_id)
        except (VersionConflict, WorldIdTaken):  # lost a race after the check: leave no orphan objects
            self._discard_unreferenced([*refs.values(), manifest_ref])
            raise

    def delete(self, world_id: str) -> dict[str, Any]:
        """Delete every version of a world: its rows in one transaction, then the objects only it referenced.

        Objects are content-addressed, so another world (or a user's upload) may share one: those keep their rows
        and bytes (``storage.catalog.drop_collections``). Refused (WorldBusy) while a build or rebuild of the world
        is running, as its publish would bring the world back; an edit still running fails with VersionConflict
        (its base version is gone). WorldNotFound when the world does not exist."""
        from storage.catalog import drop_collections  # the one reference rule of every delete in the catalog

        collection = collection_of(world_id)
        with self.catalog.write() as con:
            authors = [r[0] for r in con.execute("SELECT DISTINCT author FROM versions WHERE collection = ?",
                                                 [collection]).fetchall()]
            if not authors:
                raise WorldNotFound(f"no world {world_id!r} among your worlds")
            running = con.execute("SELECT flow_run_id FROM runs WHERE state = 'RUNNING' AND list_contains(?, "
                                  "flow_name) AND json_extract_string(parameters, '$.world_id') = ?",
                                  [list(BUILD_FLOWS), world_id]).fetchall()
            if running:
                raise WorldBusy(f"world {world_id!r} is being built by run {running[0][0]}: "
                                "delete it once the run has finished")
            versions = con.execute("SELECT count(*) FROM versions WHERE collection = ?", [collection]).fetchone()[0]
            rows, objects = drop_collections(con, [collection], authors)
        for key in objects:  # after the commit: no row points at a deleted object
            self.store.delete(key)
        log.info("deleted world %s: %d versions, %d rows, %d objects", world_id, versions, rows, len(objects))
        return {"world_id": world_id, "versions": int(versions), "catalog_rows": rows, "objects": len(objects)}

    def _check_publish(self, collection: str, author: str, base_version: int | None, new_world: bool) -> None:
        """The checks of the publishing transaction, done once before any object is stored."""
        world_id = collection.split("/", 1)[1]
        rows = self.catalog.query("SELECT max(version) AS latest, arg_min(author, version) AS owner FROM versions "
                                  "WHERE collection = ?", [collection])
        latest, owner = (rows[0]["latest"], rows[0]["owner"]) if rows else (None, None)
        _check_lineage(world_id, latest, owner, author, base_version, new_world)

    def _discard_unreferenced(self, refs: list[Any]) -> None:
        keys = [ref.key for ref in refs]
        known = {r["key"] for r in self.catalog.query(
            "SELECT key FROM assets WHERE key IN (" + ",".join("?" * len(keys)) + ")", keys)}
        for key in set(keys) - known:
            if hasattr(self.store, "delete"):
                self.store.delete(key)

    def _publish_row(self, collection: str, manifest_ref: Any, refs: list[Any], *, author: str, message: str,
                     base_version: int | None, new_world: bool, flow_run_id: str | None,
                     number: int | None = None) -> WorldVersion:
        world_id = collection.split("/", 1)[1]
        created = datetime.now(timezone.utc)
        with self.catalog.write() as con:
            latest, first_author = con.execute(
                "SELECT max(version), arg_min(author, version) FROM versions WHERE collection = ?",
                [collection]).fetchone()
            _check_lineage(world_id, latest, first_author, author, base_version, new_world)
            number = number if number is not None and latest is None else (latest or 0) + 1
            every = [*refs, manifest_ref]  # one statement per table: a version has tens of objects
            _insert_rows(con, "assets", [[r.key, r.kind, r.bytes, r.sha256, r.content_type, created, None]
                                         for r in every])
            _insert_rows(con, "asset_owners", [[r.key, author] for r in every])
            _insert_rows(con, "lineage", [[manifest_ref.key, r.key, None, None] for r in refs])
            con.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [collection, number, latest, manifest_ref.key, message.strip()[:500], author, flow_run_id,
                         created])
        log.info("published %s v%d (%s)", collection, number, message)
        return WorldVersion(world_id, number, latest, manifest_ref.key, message.strip()[:500], author, created)

    def rollback(self, world_id: str, to_version: int, *, author: str, message: str | None = None) -> WorldVersion:
        """A new version whose manifest is that of `to_version` (nothing is deleted). Implements ENV-a3."""
        target = self.version(world_id, to_version)
        latest = self.version(world_id)
        refs = [_Ref(**ref) for ref in self.manifest(world_id, to_version)["objects"].values()]
        manifest_ref = _Ref(**{**self._asset_row(target.manifest_key)})
        return self._publish_row(collection_of(world_id), manifest_ref, refs, author=author,
                                 message=message or f"rollback to v{to_version}", base_version=latest.version,
                                 new_world=False, flow_run_id=None)

    def _asset_row(self, key: str) -> dict[str, Any]:
        rows = self.catalog.query("SELECT key, kind, sha256, bytes, content_type FROM assets WHERE key = ?", [key])
        if not rows:
            raise WorldNotFound(f"asset {key!r} is not in the catalog")
        return rows[0]

    # ---- diff ----
    def diff(self, world_id: str, a: int, b: int) -> dict[str, Any]:
        """What changed from version a to version b, as data: the state (heights, roads, water, buildings) and
        its outputs (window interiors, dynamics). Implements ENV-a3."""
        from gaiverse.world.version_outputs import diff_outputs

        states = diff_states(self.load_state(world_id, a), self.load_state(world_id, b))
        outputs = diff_outputs(self.store.get_bytes, self.manifest(world_id, a), self.manifest(world_id, b))
        identical = states["identical"] and not outputs["interiors"]["changed"] and not outputs["dynamics"]["changed"]
        return {"world_id": world_id, "from_version": a, "to_version": b, **states, **outputs, "identical": identical}

    def diff_png(self, world_id: str, a: int, b: int) -> bytes:
        return diff_image(self.load_state(world_id, a), self.load_state(world_id, b))

    # ---- backup ----
    def export_backup(self, world_id: str, version: int | None = None) -> bytes:
        """A self-contained tar archive of one version: manifest, every object, catalog rows, SHA256SUMS."""
        row = self.version(world_id, version)
        manifest_bytes = self.store.get_bytes(row.manifest_key)
        manifest = json.loads(manifest_bytes)
        files: dict[str, bytes] = {f"objects/{row.manifest_key}": manifest_bytes}
        for ref in manifest["objects"].values():
            files[f"objects/{ref['key']}"] = self.store.get_bytes(ref["key"])
        keys = [row.manifest_key, *(ref["key"] for ref in manifest["objects"].values())]
        assets = self.catalog.query("SELECT key, kind, sha256, bytes, content_type FROM assets WHERE key IN ("
                                    + ",".join("?" * len(keys)) + ")", keys)
        meta = {"format": BACKUP_FORMAT, "world_id": world_id, "version": row.to_dict(),
                "manifest_key": row.manifest_key, "assets": assets,
                "exported_at": datetime.now(timezone.utc).isoformat()}
        files["backup.json"] = json.dumps(meta, indent=1, sort_keys=True, default=str).encode()
        sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
        files["SHA256SUMS"] = sums.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def restore_backup(self, archive: bytes, *, author: str, world_id: str | None = None) -> WorldVersion:
        """Verify an archive and publish its version (as a new world, or on top of the caller's world).

        Every checksum is verified and every object stored before the one catalog transaction,
        so a bad archive leaves no rows. Implements ENV-a3.
        """
        files = read_backup(archive)
        meta = json.loads(files["backup.json"])
        world_id = check_world_id(world_id or meta["world_id"])
        manifest_key = meta["manifest_key"]
        manifest = json.loads(files[f"objects/{manifest_key}"])
        needed = [manifest_key, *(ref["key"] for ref in manifest["objects"].values())]
        missing = [key for key in needed if f"objects/{key}" not in files]
        if missing:
            raise BackupError(f"backup lacks objects: {', '.join(missing[:3])}")
        self._check_publish(collection_of(world_id), author, None, False)
        refs = {}
        for key in needed:
            kind, ext = key.rsplit("/", 1)[0], key.rsplit(".", 1)[1]
            ref = self.store.put_bytes(files[f"objects/{key}"], kind=kind, ext=ext)
            if ref.key != key:
                raise BackupError(f"object {key} does not hash to its key")
            refs[key] = ref
        original = meta["version"]
        exists = self.owner(world_id) is not None
        message = f"{original['message']} (restored from backup of v{original['version']} by {original['author']})"
        return self._publish_row(collection_of(world_id), refs[manifest_key],
                                 [refs[k] for k in needed[1:]], author=author, message=message,
                                 base_version=None, new_world=False, flow_run_id=None,
                                 number=None if exists else int(original["version"]))


def _insert_rows(con: Any, table: str, rows: list[list[Any]]) -> None:
    """INSERT OR IGNORE all rows in one statement."""
    if rows:
        marks = "(" + ", ".join("?" * len(rows[0])) + ")"
        con.execute(f"INSERT OR IGNORE INTO {table} VALUES " + ", ".join([marks] * len(rows)),
                    [value for row in rows for value in row])


@dataclass(frozen=True)
class _Ref:
    key: str
    kind: str
    sha256: str
    bytes: int
    content_type: str


def read_backup(archive: bytes) -> dict[str, bytes]:
    """Files of a backup archive, checked against its SHA256SUMS; BackupError on anything amiss."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            files = {}
            for member in tar.getmembers():
                if not member.isfile() or member.name.startswith("/") or ".." in member.name.split("/"):
                    raise BackupError(f"unexpected archive member {member.name!r}")
                files[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise BackupError(f"not a gaiverse world backup (tar.gz): {err}") from err
    if "SHA256SUMS" not in files or "backup.json" not in files:
        raise BackupError("backup lacks SHA256SUMS or backup.json")
    listed = {}
    for line in files.pop("SHA256SUMS").decode().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    if set(listed) != set(files):
        raise BackupError(f"SHA256SUMS lists {len(listed)} files, the archive holds {len(files)}")
    for name, data in files.items():
        if hashlib.sha256(data).hexdigest() != listed[name]:
            raise BackupError(f"checksum mismatch for {name}")
    meta = json.loads(files["backup.json"])
    if meta.get("format") != BACKUP_FORMAT:
        raise BackupError(f"backup format {meta.get('format')!r} is not {BACKUP_FORMAT}")
    return files


# ---- diffs of states ----
def diff_states(a: WorldState, b: WorldState, grid: int = DIFF_GRID, tol_m: float = 1e-4) -> dict[str, Any]:
    """Height delta per region, roads and water added/removed, buildings added/removed/moved."""
    if a.shape != b.shape:
        return {"identical": False, "shape_changed": {"from": list(a.shape), "to": list(b.shape)}}
    delta = b.heights.astype(np.float64) - a.heights.astype(np.float64)
    changed = np.abs(delta) > tol_m
    h, w = a.shape
    regions = []
    for i in range(grid):
        for j in range(grid):
            rs, re_ = i * h // grid, (i + 1) * h // grid
            cs, ce = j * w // grid, (j + 1) * w // grid
            d, m = delta[rs:re_, cs:ce], changed[rs:re_, cs:ce]
            if m.any():
                regions.append({"row": i, "col": j, "bounds_m": [cs * a.cell_m, (h - re_) * a.cell_m,
                                                                  ce * a.cell_m, (h - rs) * a.cell_m],
                                "changed_cells": int(m.sum()), "mean_delta_m": round(float(d[m].mean()), 3),
                                "min_delta_m": round(float(d.min()), 3), "max_delta_m": round(float(d.max()), 3)})
    roads = {}
    for k, name in enumerate(ROAD_CLASSES):
        added, removed = int((b.roads[k] & ~a.roads[k]).sum()), int((a.roads[k] & ~b.roads[k]).sum())
        roads[name] = {"added_cells": added, "removed_cells": removed,
                       "added_m2": added * a.cell_m**2, "removed_m2": removed * a.cell_m**2}
    before, after = {x.id: x for x in a.buildings}, {x.id: x for x in b.buildings}
    moved = []
    for bid in sorted(set(before) & set(after)):
        shift = after[bid].centroid() - before[bid].centroid()
        if float(np.hypot(*shift)) > 1e-3 or before[bid].footprint != after[bid].footprint:
            moved.append({"id": bid, "dx_m": round(float(shift[0]), 3), "dy_m": round(float(shift[1]), 3)})
    result = {
        "heights": {"changed_cells": int(changed.sum()), "max_abs_delta_m": round(float(np.abs(delta).max()), 3),
                    "mean_delta_m": round(float(delta[changed].mean()), 3) if changed.any() else 0.0,
                    "regions": regions},
        "roads": roads,
        "water": {"added_cells": int((b.water & ~a.water).sum()), "removed_cells": int((a.water & ~b.water).sum())},
        "buildings": {"added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
                      "moved": moved},
    }
    result["identical"] = (not changed.any() and all(v["added_cells"] == v["removed_cells"] == 0 for v in roads.values())
                           and result["water"]["added_cells"] == result["water"]["removed_cells"] == 0
                           and not result["buildings"]["added"] and not result["buildings"]["removed"] and not moved)
    return result


def diff_image(a: WorldState, b: WorldState, scale: int = 4) -> bytes:
    """PNG of version b's map, greyed, with what changed since a: raised terrain red, lowered blue,
    roads added green, removed magenta, buildings added/moved orange, removed (old place) purple."""
    base = map_image(b, scale).astype(np.float64)
    grey = base.mean(axis=2, keepdims=True) * 0.6 + 60
    image = np.repeat(grey, 3, axis=2)
    up = lambda mask: np.kron(mask, np.ones((scale, scale))).astype(bool)  # noqa: E731
    if a.shape == b.shape:
        delta = b.heights.astype(np.float64) - a.heights.astype(np.float64)
        changed = up(np.abs(delta) > 1e-4)
        strength = np.kron(np.clip(np.abs(delta) / max(float(np.abs(delta).max()), 1e-6), 0, 1), np.ones((scale, scale)))
        alpha = np.where(changed, 0.3 + 0.7 * strength, 0.0)[..., None]
        colour = np.where(np.kron(delta, np.ones((scale, scale)))[..., None] > 0, [220, 40, 40], [40, 80, 230])
        image = image * (1 - alpha) + colour * alpha
        road_a, road_b = a.roads.any(0), b.roads.any(0)
        image[up(road_b & ~road_a)] = [40, 200, 60]
        image[up(road_a & ~road_b)] = [220, 40, 220]
    before, after = {x.id: x for x in a.buildings}, {x.id: x for x in b.buildings}
    canvas = image.astype(np.uint8)
    for bid, building in before.items():
        if bid not in after or after[bid].footprint != building.footprint:
            _fill_polygon(canvas, to_pixels(building.footprint, b.shape, b.cell_m, scale), (130, 60, 200))
    for bid, building in after.items():
        if bid not in before or before[bid].footprint != building.footprint:
            _fill_polygon(canvas, to_pixels(building.footprint, b.shape, b.cell_m, scale), (255, 150, 20))
    return png_bytes(canvas)
