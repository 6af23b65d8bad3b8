"""API keys and users: keys are random, shown once, and only their sha256 is stored.

A key is ``gv_`` + 32 random bytes (urlsafe base64), so a plain sha256 is enough to store it:
there is nothing to brute-force that a slow hash would protect. The catalog's ``users``
table keeps the hash and a short prefix (to tell keys apart in listings).

The admin key is created on the API's first start: ``GAIVERSE_ADMIN_KEY`` when set (rotating
the admin's key when it changes), otherwise a generated one that is written once to stderr
and to ``<data_dir>/admin.key`` (mode 0600), where ``read_admin_key`` finds it for the CLI.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gaiverse.config import Settings
from storage.catalog import Catalog, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "gv_"
ADMIN_NAME = "admin"
ADMIN_KEY_FILE = "admin.key"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_KEY_CHARS = 16


@dataclass(frozen=True)
class User:
    user_id: str
    name: str
    is_admin: bool
    key_prefix: str
    created_at: datetime


def new_key() -> str:
    """A fresh API key: ``gv_`` + 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"`name` must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                         f"or digit, got {name!r}")
    return name


def admin_key_path(settings: Settings) -> Path:
    return settings.data_dir / ADMIN_KEY_FILE


def read_admin_key(settings: Settings) -> str | None:
    """The admin key a client on this machine should use: GAIVERSE_ADMIN_KEY, else the saved admin.key."""
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value()
    path = admin_key_path(settings)
    try:
        key = path.read_text().strip()
    except OSError:
        return None
    return key or None


def _row_to_user(row: tuple) -> User:
    user_id, name, is_admin, key_prefix, created_at = row
    return User(user_id, name, bool(is_admin), key_prefix, created_at)


_USER_COLUMNS = "user_id, name, is_admin, key_prefix, created_at"


KEY_TABLE_MAX_AGE = 60.0
"""Longest time (s) the in-memory key table is trusted without a reload, even when the catalog files
look unchanged (a guard against a change the file stamp might miss)."""


def _file_stamp(path: Path) -> tuple:
    """Identity, size and mtime of the catalog file and its WAL: every DuckDB commit (from any process)
    grows the WAL or rewrites the file, and compaction replaces it, so an equal stamp means no change."""
    out = []
    for part in (path, path.with_name(path.name + ".wal")):
        try:
            st = os.stat(part)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class _KeyTable:
    """Every account of one catalog by key hash, in memory (PER-g1).

    Why: a look-up that opens the catalog costs ~20 ms of mostly GIL-holding work, and with thousands
    of accounts a per-key cache with a short lifetime misses on almost every request, which capped the
    whole API at ~30 requests/s (profiled with py-spy). The table is reloaded in one query when the
    catalog's file stamp changes (a key created, rotated or deleted by any process) or after
    ``KEY_TABLE_MAX_AGE``, so a revoked key stops working at the next request, not seconds later.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp: tuple | None = None
        self.loaded_at = 0.0
        self.users: dict[str, User] = {}
        self.lock = threading.Lock()

    def fresh(self) -> bool:
        return (self.stamp is not None and time.monotonic() - self.loaded_at < KEY_TABLE_MAX_AGE
                and _file_stamp(self.path) == self.stamp)

    def reload(self, catalog: Catalog) -> None:
        with self.lock:
            if self.fresh():  # another thread reloaded while this one waited
                return
            stamp = _file_stamp(self.path)  # before the query: a write during it forces the next reload
            rows = catalog.query(f"SELECT key_hash, {_USER_COLUMNS} FROM users")
            self.users = {r.pop("key_hash"): _row_to_user(tuple(r.values())) for r in rows}
            self.stamp, self.loaded_at = stamp, time.monotonic()

    def invalidate(self) -> None:
        with self.lock:
            self.stamp = None


_tables: dict[str, _KeyTable] = {}
_tables_lock = threading.Lock()


def _table(catalog: Catalog) -> _KeyTable:
    path = str(catalog.path)
    table = _tables.get(path)
    if table is None:
        with _tables_lock:
            table = _tables.setdefault(path, _KeyTable(catalog.path))
    return table


def forget_cached_keys() -> None:
    """Drop every in-memory key table (after an account or a key changed): the next look-up reloads."""
    with _tables_lock:
        tables = list(_tables.values())
    for table in tables:
        table.invalidate()


NEEDS_RELOAD = object()
"""What ``cached_user_by_key`` answers when only a catalog query can tell."""


def cached_user_by_key(catalog: Catalog, key: str) -> User | None | object:
    """The look-up answered from memory when the key table is current (a ``stat`` of the catalog, a few
    microseconds: safe on the event loop); ``NEEDS_RELOAD`` when ``find_user_by_key`` must run (in a thread)."""
    if not key or len(key) > 512:
        return None
    table = _table(catalog)
    if not table.fresh():
        return NEEDS_RELOAD
    return table.users.get(hash_key(key))


def find_user_by_key(catalog: Catalog, key: str) -> User | None:
    """The user holding ``key``, or None (also for keys that are not even well-formed)."""
    if not key or len(key) > 512:
        return None
    table = _table(catalog)
    if not table.fresh():
        table.reload(catalog)
    return table.users.get(hash_key(key))


def create_user(catalog: Catalog, name: str, *, is_admin: bool = False,
                key: str | None = None) -> tuple[User, str]:
    """Create a user and its key; returns (user, key). The key is not stored and cannot be shown again.

    ValueError for a bad name, LookupError when the name is taken.
    """
    check_name(name)
    key = key or new_key()
    user = User(str(uuid.uuid4()), name, is_admin, key[:10], utcnow())
    with catalog.write() as con:
        if con.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
            raise LookupError(f"a user named {name!r} already exists")
        con.execute(
            "INSERT INTO users (user_id, name, key_hash, key_prefix, is_admin, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [user.user_id, name, hash_key(key), user.key_prefix, is_admin, user.created_at],
        )
    log.info("created user %s (%s)%s", name, user.user_id, " as admin" if is_admin else "")
    return user, key


def ensure_admin(settings: Settings, catalog: Catalog) -> str | None:
    """Make sure an admin can sign in; returns the key when one was generated now (else None)."""
    configured = settings.admin_key.get_secret_value() if settings.admin_key is not None else None
    if configured is not None and len(configured) < MIN_KEY_CHARS:
        raise ValueError(f"`admin_key` must be at least {MIN_KEY_CHARS} characters, got {len(configured)}")
    path = admin_key_path(settings)
    generated: str | None = None
    with catalog.write() as con:
        admin = con.execute("SELECT user_id, key_hash FROM users WHERE name = ?", [ADMIN_NAME]).fetchone()
        if configured is not None:
            if admin is None:
                _insert_admin(con, configured)
            elif admin[1] != hash_key(configured):  # GAIVERSE_ADMIN_KEY changed: rotate
                con.execute(
                    "UPDATE users SET key_hash = ?, key_prefix = ?, is_admin = TRUE WHERE user_id = ?",
                    [hash_key(configured), configured[:10], admin[0]],
                )
                log.info("admin key rotated from GAIVERSE_ADMIN_KEY")
                forget_cached_keys()
            return None
        if admin is not None:
            return None
        saved = read_admin_key(settings)  # a catalog rebuilt beside an existing admin.key keeps that key
        generated = saved if saved and saved.startswith(KEY_PREFIX) else new_key()
        _insert_admin(con, generated)
    _write_secret(path, generated)
    sys.stderr.write(
        f"gaiverse: created the admin API key (shown once; saved to {path}, mode 0600):\n    {generated}\n"
    )
    sys.stderr.flush()
    return generated


def _insert_admin(con, key: str) -> None:
    con.execute(
        "INSERT INTO users (user_id, name, key_hash, key_prefix, is_admin, created_at) "
        "VALUES (?, ?, ?, ?, TRUE, ?)",
        [str(uuid.uuid4()), ADMIN_NAME, hash_key(key), key[:10], utcnow()],
    )


def _write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
