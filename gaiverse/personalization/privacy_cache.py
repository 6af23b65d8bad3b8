"""Consent states and wrapped data keys loaded once, so a request never opens DuckDB to check them (PER-g1).

``ConsentRegistry`` and ``SubjectVault`` (``gaiverse.privacy``) cache per user after the first
look-up, but that first look-up opens the file (~10-20 ms) — and the vault opens it *for writing*
on every cache miss of a seal, even when the key exists. With 100 000 users nearly every request
of a load test is somebody's first. These subclasses read every consent record and every wrapped
key in one scan at start-up (and after another process changed the file); keys are unwrapped
lazily on first use. Consent changes and key creation still write through at once. Nothing here
changes what is protected: keys stay wrapped until used, and erasure drops both caches (PER-f1).
"""

from __future__ import annotations

import logging
import threading

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gaiverse.privacy import PURPOSES, ConsentRegistry, SubjectVault

log = logging.getLogger(__name__)


class PreloadedConsents(ConsentRegistry):
    """Consent registry whose current states are all read at start-up. Implements PER-f1 + PER-g1."""

    def preload(self) -> int:
        """Current state of every subject with a consent record; returns how many subjects."""
        with self.db.read() as con:
            rows = con.execute("SELECT subject, purpose, granted FROM consents ORDER BY subject, recorded_at, rowid").fetchall()
        states: dict[str, dict[str, bool]] = {}
        for subject, purpose, granted in rows:
            states.setdefault(subject, {p: False for p in PURPOSES})[purpose] = bool(granted)
        self._current = states
        self._complete = True
        log.info("consents of %d subjects preloaded", len(states))
        return len(states)

    def record(self, subject: str, purpose: str, granted: bool, *, at=None):
        """As the base class, keeping the preloaded state of the subject current instead of dropping it."""
        before = self.current(subject) if getattr(self, "_complete", False) else None
        entry = super().record(subject, purpose, granted, at=at)
        if before is not None:
            before[purpose] = entry.granted
            self._current[subject] = before
        return entry

    def clear_cache(self) -> None:
        super().clear_cache()
        self._complete = False

    def current(self, subject: str) -> dict[str, bool]:
        """As the base class; a subject without records needs no look-up when everything was preloaded."""
        cached = self._current.get(subject)
        if cached is not None:
            return dict(cached)
        if getattr(self, "_complete", False):
            state = {purpose: False for purpose in PURPOSES}
            self._current[subject] = state
            return dict(state)
        return super().current(subject)


class PreloadedVault(SubjectVault):
    """Subject vault whose wrapped keys are all read at start-up and unwrapped on first use."""

    def preload(self) -> int:
        """Read every wrapped key; returns how many."""
        with self.db.read() as con:
            rows = con.execute("SELECT subject, wrapped FROM subject_keys").fetchall()
        self._wrapped = {subject: bytes(wrapped) for subject, wrapped in rows}
        self._wrapped_lock = threading.Lock()
        log.info("%d wrapped subject keys preloaded", len(rows))
        return len(rows)

    def _key(self, subject: str, create: bool) -> AESGCM:
        wrapped = getattr(self, "_wrapped", {}).get(subject)
        if wrapped is not None:
            with self._lock:
                cipher = self._cache.get(subject)
                if cipher is None:
                    cipher = self._cache[subject] = AESGCM(self.keyring.unwrap(subject, wrapped))
            return cipher
        cipher = super()._key(subject, create)
        return cipher

    def has_key(self, subject: str) -> bool:
        return subject in getattr(self, "_wrapped", {}) or super().has_key(subject)

    def shred(self, subject: str) -> bool:
        if hasattr(self, "_wrapped"):
            with self._wrapped_lock:
                self._wrapped.pop(subject, None)
        return super().shred(subject)
