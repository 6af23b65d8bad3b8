"""Protection of personal data (PER-f1): keys outside the data files, per-user encryption, pseudonyms, consent.

* **Keys.** One master secret, from ``GAIVERSE_PRIVACY_KEY`` (a secret store) or a key file
  ``<keys_dir>/personal-data.key`` (mode 0600, created on first use; ``keys_dir`` defaults to
  ``<data_dir>/keys`` and belongs on another volume in production). Two keys are derived from it
  (HKDF-SHA256): one wraps the per-user data keys, one makes pseudonyms. Neither is ever written
  to DuckDB or the object store.
* **Per-user data keys** (``SubjectVault``): each user has a random AES-256-GCM key, stored only
  wrapped by the master key (``subject_keys`` table). Text, derived features, attributes and
  media of that user are sealed with it. Erasure deletes the wrapped key first ("crypto-shredding"),
  so any copy that outlives the delete (a backup, a DuckDB free page, a replica) is unreadable.
* **Pseudonyms** (``KeyRing.pseudonym``): the personalization tables never hold an account id,
  only ``u-`` + HMAC-SHA256(pseudonym key, account id); without the key the link is lost.
* **Consent per purpose** (``ConsentRegistry``): an append-only log of grants and withdrawals, the
  latest entry per purpose counts; no purpose is granted by default.
* **Retention** (``RetentionPolicy``): how long interactions are kept; the daily flow applies it.

Export and erasure of everything held about a user are in ``gaiverse.personalization.service``,
which applies these mechanisms across the interaction store, the task repository and the object
store. Plain Python: no Prefect, no Ray, no storage imports (the object store is a protocol).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gaiverse.personalization.database import Database

log = logging.getLogger(__name__)

Purpose = Literal["interactions", "media", "personalization", "analytics"]
PURPOSES: dict[str, str] = {
    "interactions": "store what you type and say and your task events, with your history (PER-a2)",
    "media": "store the images, voice notes and videos you upload, encrypted (PER-a1)",
    "personalization": "analyse your history into a preference profile, recommendations and quests (PER-c1, PER-e1)",
    "analytics": "count your task engagement, without your identity, in each task's observed relevance (PER-b1)",
}
assert set(PURPOSES) == set(get_args(Purpose))
POLICY_VERSION = "2026-03"
"""Version of the privacy notice (docs/PRIVACY.md) a consent refers to."""
KEY_FILE = "personal-data.key"
TEXT_PREFIX = "gv1:"
"""Sealed text: ``gv1:`` + urlsafe base64 of nonce (12 bytes) + AES-GCM ciphertext."""
BLOB_MAGIC = b"GVE1"
"""Sealed media: magic + nonce (12 bytes) + AES-GCM ciphertext."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_keys (
    subject VARCHAR PRIMARY KEY,
    wrapped BLOB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS consents (
    subject VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    granted BOOLEAN NOT NULL,
    policy_version VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS consents_subject ON consents (subject);
"""


class ConsentRequired(PermissionError):
    """An operation needs a purpose the user has not consented to; the message names it."""

    def __init__(self, purpose: str):
        super().__init__(f"consent for purpose {purpose!r} is not given ({PURPOSES[purpose]}); "
                         f"grant it with PUT /personalization/consent/{purpose}")
        self.purpose = purpose


class SealError(ValueError):
    """Sealed data could not be opened: wrong user, tampered bytes, or the user's key was erased."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))


class KeyRing:
    """The master secret and the keys derived from it. Implements the key handling of PER-f1."""

    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise ValueError(f"`master` must be 32 bytes, got {len(master)}")
        self._wrap = AESGCM(self._derive(master, b"gaiverse/wrap-subject-keys/v1"))
        self._pseudonym_key = self._derive(master, b"gaiverse/pseudonyms/v1")

    @staticmethod
    def _derive(master: bytes, label: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(master)

    @classmethod
    def load(cls, keys_dir: Path, secret: str | None = None) -> KeyRing:
        """The key ring from ``secret`` (urlsafe base64 of 32 bytes) or ``<keys_dir>/personal-data.key``.

        The key file is created (random, mode 0600, folder 0700) on first use; an existing one that
        others can read is refused, since it protects every user's data.
        """
        if secret is not None:
            try:
                master = _unb64(secret.strip())
            except ValueError as err:
                raise ValueError("`privacy_key` must be urlsafe base64 of 32 random bytes") from err
            return cls(master)
        path = Path(keys_dir) / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(path.parent, 0o700)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, (_b64(secrets.token_bytes(32)) + "\n").encode())
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # never replaces a key another process created meanwhile
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
            log.info("created the personal-data master key %s", path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PermissionError(f"`keys_dir` key file {path} has mode {oct(mode)}; it must be 0600 (owner only)")
        return cls(_unb64(path.read_text().strip()))

    def pseudonym(self, account_id: str) -> str:
        """The pseudonymous id that stands for ``account_id`` in every personalization table."""
        if not isinstance(account_id, str) or not account_id:
            raise ValueError(f"`account_id` must be a non-empty string, got {account_id!r}")
        digest = hmac.new(self._pseudonym_key, account_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return "u-" + digest[:32]

    def wrap(self, subject: str, key: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._wrap.encrypt(nonce, key, subject.encode())

    def unwrap(self, subject: str, wrapped: bytes) -> bytes:
        try:
            return self._wrap.decrypt(wrapped[:12], wrapped[12:], subject.encode())
        except InvalidTag as err:
            raise SealError(f"the key of subject {subject!r} does not open with this master key") from err


class SubjectVault:
    """Per-user data keys (stored wrapped) and sealing with them; the ``FieldCodec`` of the interaction store.

    Implements encryption at rest of PER-f1.
    """

    def __init__(self, db: Database, keyring: KeyRing) -> None:
        self.db = db
        self.keyring = keyring
        self._cache: dict[str, AESGCM] = {}
        self._lock = threading.Lock()
        with db.write() as con:
            con.execute(SCHEMA)

    def _key(self, subject: str, create: bool) -> AESGCM:
        with self._lock:
            if subject in self._cache:
                return self._cache[subject]
        with (self.db.write() if create else self.db.read()) as con:
            row = con.execute("SELECT wrapped FROM subject_keys WHERE subject = ?", [subject]).fetchone()
            if row is None and not create:
                raise SealError(f"no data key for subject {subject!r} (never created, or erased)")
            if row is None:
                key = AESGCM.generate_key(bit_length=256)
                con.execute("INSERT INTO subject_keys VALUES (?, ?, ?)",
                            [subject, self.keyring.wrap(subject, key), _now()])
            else:
                key = self.keyring.unwrap(subject, bytes(row[0]))
            cipher = AESGCM(key)
        if not self.db.writing():  # a key made inside an open transaction may still be rolled back
            with self._lock:
                self._cache[subject] = cipher
        return cipher

    def seal(self, subject: str, data: bytes, context: bytes = b"") -> bytes:
        """``data`` encrypted with the subject's key (created on first use); ``context`` is authenticated too."""
        nonce = secrets.token_bytes(12)
        return BLOB_MAGIC + nonce + self._key(subject, True).encrypt(nonce, bytes(data), subject.encode() + context)

    def open(self, subject: str, blob: bytes, context: bytes = b"") -> bytes:
        """The plaintext of ``seal``; SealError when it is not this subject's or was tampered with."""
        if blob[:4] != BLOB_MAGIC:
            raise SealError(f"`blob` is not sealed data (starts with {blob[:4]!r})")
        try:
            return self._key(subject, False).decrypt(blob[4:16], blob[16:], subject.encode() + context)
        except InvalidTag as err:
            raise SealError(f"sealed data does not open for subject {subject!r}") from err

    def seal_text(self, subject: str, text: str) -> str:
        return TEXT_PREFIX + _b64(self.seal(subject, text.encode("utf-8"), b"|text")[4:])

    def open_text(self, subject: str, sealed: str) -> str:
        if not sealed.startswith(TEXT_PREFIX):
            return sealed  # stored before encryption was configured
        return self.open(subject, BLOB_MAGIC + _unb64(sealed[len(TEXT_PREFIX):]), b"|text").decode("utf-8")

    def has_key(self, subject: str) -> bool:
        with self.db.read() as con:
            return con.execute("SELECT 1 FROM subject_keys WHERE subject = ?", [subject]).fetchone() is not None

    def shred(self, subject: str) -> bool:
        """Delete the subject's key: whatever was sealed with it can never be opened again."""
        with self._lock:
            self._cache.pop(subject, None)
        with self.db.write() as con:
            found = con.execute("SELECT 1 FROM subject_keys WHERE subject = ?", [subject]).fetchone() is not None
            con.execute("DELETE FROM subject_keys WHERE subject = ?", [subject])
        return found


@dataclass(frozen=True)
class ConsentRecord:
    purpose: str
    granted: bool
    policy_version: str
    recorded_at: datetime


class ConsentRegistry:
    """Consent per purpose, as an append-only log per user. Implements the consent part of PER-f1."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._current: dict[str, dict[str, bool]] = {}
        with db.write() as con:
            con.execute(SCHEMA)

    def clear_cache(self) -> None:
        """Forget cached states (another process may have recorded consent)."""
        self._current = {}

    def record(self, subject: str, purpose: str, granted: bool, *, at: datetime | None = None) -> ConsentRecord:
        """Grant or withdraw one purpose (the latest record counts)."""
        if purpose not in PURPOSES:
            raise ValueError(f"`purpose` must be one of {sorted(PURPOSES)}, got {purpose!r}")
        entry = ConsentRecord(purpose, bool(granted), POLICY_VERSION, at or _now())
        with self.db.write() as con:
            con.execute("INSERT INTO consents VALUES (?, ?, ?, ?, ?)",
                        [subject, purpose, entry.granted, entry.policy_version, entry.recorded_at])
        self._current.pop(subject, None)
        log.info("consent %s %s for %s", "granted" if granted else "withdrawn", purpose, subject[:10])
        return entry

    def history(self, subject: str) -> list[ConsentRecord]:
        """Every grant and withdrawal of the user, oldest first."""
        with self.db.read() as con:
            rows = con.execute("SELECT purpose, granted, policy_version, recorded_at FROM consents "
                               "WHERE subject = ? ORDER BY recorded_at, rowid", [subject]).fetchall()
        return [ConsentRecord(*row) for row in rows]

    def current(self, subject: str) -> dict[str, bool]:
        """Purpose -> granted now (False for purposes never answered); cached until the next change."""
        cached = self._current.get(subject)
        if cached is not None:
            return dict(cached)
        state = {purpose: False for purpose in PURPOSES}
        for entry in self.history(subject):
            state[entry.purpose] = entry.granted
        self._current[subject] = state
        return dict(state)

    def allowed(self, subject: str, purpose: str) -> bool:
        return self.current(subject)[purpose]

    def require(self, subject: str, *purposes: str) -> None:
        """Raise ConsentRequired naming the first purpose not granted."""
        state = self.current(subject)
        for purpose in purposes:
            if not state[purpose]:
                raise ConsentRequired(purpose)

    def forget(self, subject: str) -> int:
        """Delete the user's consent log (erasure); returns the rows deleted."""
        with self.db.write() as con:
            n = int(con.execute("SELECT count(*) FROM consents WHERE subject = ?", [subject]).fetchone()[0])
            con.execute("DELETE FROM consents WHERE subject = ?", [subject])
        self._current.pop(subject, None)
        return n


@dataclass(frozen=True)
class RetentionPolicy:
    """How long personal data is kept. Implements the retention limit of PER-f1."""

    interaction_days: int = 365
    """Interactions (text, features, media) older than this are deleted."""

    def __post_init__(self) -> None:
        if self.interaction_days < 1:
            raise ValueError(f"`interaction_days` must be >= 1, got {self.interaction_days}")

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Anything recorded before this instant is past its retention."""
        return (now or _now()) - timedelta(days=self.interaction_days)


class BlobStore(Protocol):
    """What erasure and media storage need of the object store (``storage.objectstore.ObjectStore``)."""

    def put_bytes(self, data: bytes, *, kind: str, ext: str) -> Any: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...
