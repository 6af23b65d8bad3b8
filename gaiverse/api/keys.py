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


KEY_CACHE_SECONDS = 5.0
"""How long a successful key look-up is reused. Each look-up opens the catalog file (~20 ms, the
largest cost of a small request under load, PER-g1); changes made by this process (key rotation,
erasure) drop the cache at once, changes by other processes are seen within this time."""
_key_cache: dict[tuple[str, str], tuple[float, User]] = {}
_key_cache_lock = threading.Lock()


def forget_cached_keys() -> None:
    """Drop every cached key look-up (after an account or a key changed)."""
    with _key_cache_lock:
        _key_cache.clear()


def find_user_by_key(catalog: Catalog, key: str) -> User | None:
    """The user holding ``key``, or None (also for keys that are not even well-formed)."""
    if not key or len(key) > 512:
        return None
    slot = (str(catalog.path), hash_key(key))
    hit = _key_cache.get(slot)
    if hit is not None and time.monotonic() - hit[0] < KEY_CACHE_SECONDS:
        return hit[1]
    rows = catalog.query(f"SELECT {_USER_COLUMNS} FROM users WHERE key_hash = ?", [slot[1]])
    user = _row_to_user(tuple(rows[0].values())) if rows else None
    if user is not None:
        with _key_cache_lock:
            _key_cache[slot] = (time.monotonic(), user)
    return user


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
