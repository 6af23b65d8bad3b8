"""Where personal data meets the catalog: starting the personalization service, and a user's catalog records
in their export and their erasure (PER-f1).

The personalization tables hold only pseudonyms; the catalog holds the account (name, key hash),
the assets a user owns (their uploads), the runs they triggered, and one row per sealed media
object (without an owner: only the personalization data knows whose it is). Avatar captures and the
avatars made from them are catalog versions ``avatar-capture/<id>`` and ``avatar/<id>`` authored by the
account (objects sealed with the user's key, manifests naming the account): erasure deletes those
versions and their objects' rows in the same transaction as the account (room captures ``room-capture/<id>``
and rooms ``room/<id>`` alike; the export opens them with the user's key: ``export_rooms``), and the objects after it
commits (a failed commit leaves every row pointing at an object that still exists). Erasure removes
the account last, so a failed erasure can be repeated with the same key, then rewrites the catalog
file (same lock protocol as ``storage/catalog.py``) so no bytes of the deleted rows remain.
"""

from __future__ import annotations

import fcntl
import logging
import os
from typing import Any

from gaiverse.api.keys import User, forget_cached_keys
from gaiverse.config import Settings
from gaiverse.personalization.database import compact_file
from gaiverse.personalization.service import PersonalizationService
from storage.catalog import Catalog, counted_delete, drop_collections
from storage.objectstore import AssetRef, ObjectStore

log = logging.getLogger(__name__)

UPLOAD_KIND_PREFIX = "upload/"
"""Assets of these kinds are the user's own files: erased with the account when nobody else owns them."""
CAPTURE_PREFIX, AVATAR_PREFIX = "avatar-capture/", "avatar/"
"""Collections of a user's avatar captures and of the avatars made from them (``gaiverse/api/avatars.py``)."""


def start_personalization(settings: Settings, store: ObjectStore) -> PersonalizationService | str:
    """The service over ``<data_dir>/personalization.duckdb``, its task repository seeded when empty;
    or a one-line reason why it is unavailable (the routes then answer 503)."""
    try:
        service = PersonalizationService.from_settings(settings, blobs=store)
        if len(service.repository) == 0:
            try:
                service.seed()
            except ValueError:  # another process seeded at the same moment
                service.repository.reload()
        return service
    except Exception as err:  # noqa: BLE001 - the API still starts; the routes report why
        log.exception("personalization unavailable")
        return f"personalization unavailable: {type(err).__name__}: {err}".splitlines()[0]


def record_media(catalog: Catalog, ref: AssetRef) -> None:
    """Every stored object has its catalog row; a sealed media object's row names no owner."""
    catalog.record_asset(ref)


def catalog_export(catalog: Catalog, user: User) -> dict[str, Any]:
    """The user's account, owned assets and triggered runs, JSON-ready."""
    assets = catalog.query("SELECT a.* FROM assets a JOIN asset_owners o ON o.key = a.key WHERE o.owner = ? "
                           "ORDER BY a.created_at, a.key", [user.user_id])
    runs = catalog.query("SELECT flow_run_id, flow_name, deployment, parameters, state, started_at, ended_at "
                         "FROM runs WHERE owner = ? ORDER BY started_at", [user.user_id])
    return {
        "account": {"user_id": user.user_id, "name": user.name, "is_admin": user.is_admin,
                    "key_prefix": user.key_prefix, "created_at": user.created_at},
        "assets": assets, "runs": runs,
    }


def export_rooms(catalog: Catalog, store: ObjectStore, service: PersonalizationService, user_id: str) -> list[dict]:
    """The user's room captures, as avatar captures are exported: the manifest, the photos or video opened with
    their key, and the room made from them (its report and atlas files opened, base64; the NeRF checkpoint stays
    out, as in the atlas download). A capture whose room is not built yet has `room: null`."""
    import base64
    import json

    from gaiverse.interiors.capture import (
        CAPTURE_COLLECTION, ROOM_COLLECTION, SEAL_CONTEXT, CaptureError, OwnerKey, room_files,
    )

    rows = catalog.query("SELECT collection, manifest_key, message, created_at FROM versions WHERE "
                         "starts_with(collection, ?) AND author = ? ORDER BY created_at",
                         [CAPTURE_COLLECTION + "/", user_id])
    key = OwnerKey(service.vault, service.subject(user_id))
    out = []
    for row in rows:
        capture_id = row["collection"].split("/", 1)[1]
        manifest = json.loads(store.get_bytes(row["manifest_key"]))
        media = [{**item, "data_base64": base64.b64encode(
            key.open(store.get_bytes(item["key"]), SEAL_CONTEXT)).decode()} for item in manifest["media"]]
        room = None
        rooms = catalog.versions(f"{ROOM_COLLECTION}/{capture_id}")
        try:
            files = room_files(store, catalog, capture_id, key)
            report = json.loads(store.get_bytes(rooms[-1].manifest_key))
            room = {"version": rooms[-1].version, "manifest": report,
                    "files_base64": {n: base64.b64encode(b).decode() for n, b in sorted(files.items())}}
        except CaptureError:  # not built (yet)
            pass
        out.append({"capture_id": capture_id, "created_at": row["created_at"], "message": row["message"],
                    "manifest": manifest, "media": media, "room": room})
    return out


def erase_catalog(catalog: Catalog, store: ObjectStore, user: User, media_keys: list[str]) -> dict[str, int]:
    """Delete the user's catalog traces: sealed media rows, their own uploads (objects too), their avatar
    captures and avatars (versions, rows, then objects), ownership of shared assets, the runs they
    triggered and, last, the account."""
    rows = catalog.query(
        "SELECT o.key, a.kind, (SELECT count(*) FROM asset_owners x WHERE x.key = o.key) AS owners "
        "FROM asset_owners o LEFT JOIN assets a ON a.key = o.key WHERE o.owner = ?", [user.user_id])
    uploads = [r["key"] for r in rows
               if r["owners"] == 1 and (r["kind"] or "").startswith(UPLOAD_KIND_PREFIX)]
    for key in uploads:
        store.delete(key)
    doomed = sorted(set(media_keys) | set(uploads))
    deleted = 0
    with catalog.write() as con:
        avatar_rows, avatar_objects = _erase_avatars(con, user.user_id)
        deleted += avatar_rows
        for key in doomed:
            deleted += _delete(con, "DELETE FROM lineage WHERE output_key = ? OR input_key = ?", [key, key])
            deleted += _delete(con, "DELETE FROM asset_owners WHERE key = ?", [key])
            deleted += _delete(con, "DELETE FROM assets WHERE key = ?", [key])
        deleted += _delete(con, "DELETE FROM asset_owners WHERE owner = ?", [user.user_id])
        deleted += _delete(con, "DELETE FROM runs WHERE owner = ?", [user.user_id])
        deleted += _delete(con, "DELETE FROM users WHERE user_id = ?", [user.user_id])
    forget_cached_keys()  # the erased account's key must stop working at once
    for key in avatar_objects:  # after the commit: no row points at a deleted object
        store.delete(key)
    _compact_catalog(catalog)
    log.info("erased the catalog records of an account: %d rows, %d uploads, %d avatar objects", deleted,
             len(uploads), len(avatar_objects))
    return {"uploads": len(uploads), "catalog_rows": deleted, "avatar_objects": len(avatar_objects)}


def _erase_avatars(con, user_id: str) -> tuple[int, list[str]]:
    """Inside the erasure transaction: delete the user's ``avatar-capture/*`` versions, every version of the
    avatars made from them (and any other ``avatar/*`` they authored), their room captures, rooms and worlds
    (``world/*``: every version of a world is its owner's), the lineage of those manifests and
    the rows of their objects. Returns (rows deleted, keys of the objects to delete after the commit):
    an object still referenced by another owner, version or lineage row keeps its row and its bytes."""
    captures = [r[0].removeprefix(CAPTURE_PREFIX) for r in con.execute(
        "SELECT DISTINCT collection FROM versions WHERE starts_with(collection, ?) AND author = ?",
        [CAPTURE_PREFIX, user_id]).fetchall()]
    authored = [r[0] for r in con.execute(
        "SELECT DISTINCT collection FROM versions WHERE starts_with(collection, ?) AND author = ?",
        [AVATAR_PREFIX, user_id]).fetchall()]
    authored += [r[0] for r in con.execute(  # room captures and the rooms made from them (gaiverse/api/interiors.py)
        "SELECT DISTINCT collection FROM versions WHERE (starts_with(collection, 'room-capture/') "
        "OR starts_with(collection, 'room/')) AND author = ?", [user_id]).fetchall()]
    # their worlds: only a world's owner publishes to it and only with their own room capture, so this takes
    # every world whose windows show their room too (docs/PRIVACY.md)
    authored += [r[0] for r in con.execute(
        "SELECT DISTINCT collection FROM versions WHERE starts_with(collection, 'world/') AND author = ?",
        [user_id]).fetchall()]
    collections = sorted({CAPTURE_PREFIX + c for c in captures} | {AVATAR_PREFIX + c for c in captures}
                         | set(authored))
    return drop_collections(con, collections, [user_id])


def _compact_catalog(catalog: Catalog) -> None:
    """Rewrite the catalog file under its lock so the erased rows leave no bytes behind."""
    fd = os.open(catalog.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        compact_file(catalog.path)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _delete(con, sql: str, params: list[Any]) -> int:
    return counted_delete(con, sql.removeprefix("DELETE FROM "), params)
