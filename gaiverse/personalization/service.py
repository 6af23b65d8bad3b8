"""The personalization service: the closed loop of 8.4 for account holders, with PER-f1 applied on every path.

``PersonalizationService`` is what the API router and the flows' tasks hold. It owns one
``Database`` file shared by the interaction store, the task repository, the consent log and the
wrapped per-user keys, and it is the only place where an account id meets the personalization
data: every call maps it to the user's pseudonym first, so nothing below ever sees it.

* collection needs consent: ``interactions`` for anything stored, ``media`` for uploads,
  ``personalization`` for profiles, recommendations made from them and generated quests,
  ``analytics`` for counting task engagement into the tasks' relevance;
* media are sealed with the user's key before they reach the object store (content-addressed on
  the ciphertext); text and derived features are sealed in DuckDB by the store's codec;
* ``export`` returns everything held about the user as JSON-ready data, ``erase`` removes it
  (key first, then objects, rows, consents and the tasks made for the user), ``enforce_retention``
  deletes interactions and media older than the retention limit.
Implements PER-a1, PER-a2, PER-b2, PER-c1, PER-d1, PER-d2, PER-e1 and PER-f1 for the API and flows.

Many users and tasks (PER-g1): requests are served from memory and never open the DuckDB file on
the hot path. Interactions are read from ``InteractionIndex``, tasks scored from ``TaskIndex``
(``indexes.py``), consents and wrapped keys preloaded (``privacy_cache.py``), profiles kept and
updated incrementally; every interaction (and the engagement counts it changes) is written by the
one batching writer (``write_behind.py``), acknowledged after its commit and de-duplicated by the
client's idempotency key. Export, erasure, retention and imports flush the writer first, and
``close()`` (also run at interpreter exit) commits everything queued.
"""

from __future__ import annotations

import base64
import logging
import threading
import weakref
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from gaiverse.personalization.database import Database
from gaiverse.personalization.indexes import IndexedRecommender, IndexedTaskRepository
from gaiverse.personalization.interaction_log import InteractionLog
from gaiverse.personalization.interaction_store import ImportResult, Interaction, InteractionStore
from gaiverse.personalization.knowledge import KnowledgeBase, load_knowledge
from gaiverse.personalization.media_features import derive_features
from gaiverse.personalization.personalizer import TASK_EVENTS, Personalizer
from gaiverse.personalization.preference_analysis import PreferenceProfile
from gaiverse.personalization.quest_generator import GeneratedQuest
from gaiverse.personalization.recommender import Recommendation
from gaiverse.personalization.task_corpus import seed_repository
from gaiverse.personalization.task_repository import SearchHit, Task, TaskFilter, TaskRepository
from gaiverse.personalization.privacy_cache import PreloadedConsents, PreloadedVault
from gaiverse.personalization.write_behind import InteractionWriter, WriterConfig
from gaiverse.privacy import BlobStore, KeyRing, RetentionPolicy

log = logging.getLogger(__name__)

MEDIA_KIND = "personal/{modality}"
"""Object kind of sealed media (the key says only the modality, never the user)."""
EXPORT_FORMAT = "gaiverse-personal-data-export/1"
TASK_EVENT = {"accept": "accept", "complete": "complete", "abandon": "abandon"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def profile_summary(profile: PreferenceProfile) -> dict[str, Any]:
    """The profile as JSON-ready data: description, interests, aversions, style and habits (PER-c1)."""
    return {
        "description": profile.describe(),
        "interests": [{"tag": t, "score": round(v, 4)} for t, v in profile.interests(8)],
        "aversions": [{"tag": t, "score": round(v, 4)} for t, v in profile.aversions(5)],
        "play_style": {k: round(v, 4) for k, v in profile.play_style().items()},
        "difficulty": round(profile.difficulty, 3), "length_minutes": round(profile.length_minutes, 1),
        "social": round(profile.social, 3), "modality_counts": dict(profile.modality_counts),
        "n_inputs": profile.n_inputs, "n_sessions": profile.n_sessions,
        "accepted": sorted(profile.accepted), "completed": sorted(profile.completed),
        "abandoned": sorted(profile.abandoned),
    }


class PersonalizationService:
    """Interaction store + task repository + personalizer + privacy, keyed by account id."""

    def __init__(self, db_path: str | Path, keyring: KeyRing, blobs: BlobStore | None = None,
                 knowledge: KnowledgeBase | None = None, retention: RetentionPolicy | None = None,
                 writer: WriterConfig | None = None) -> None:
        self.db = Database(db_path)
        self.keyring = keyring
        self.blobs = blobs
        self.retention = retention or RetentionPolicy()
        self.vault = PreloadedVault(self.db, keyring)
        self.consents = PreloadedConsents(self.db)
        self.store = InteractionStore(db=self.db, codec=self.vault)
        self.writer = InteractionWriter(self.db, writer)
        self._closer = weakref.finalize(self, self.writer.close)  # flush on shutdown (atexit) or when dropped
        self.store.attach(self.writer, index=True)
        self.repository: TaskRepository = IndexedTaskRepository(db=self.db, writer=self.writer)
        self.knowledge = knowledge or load_knowledge()
        self.personalizer = Personalizer(self.store, self.repository, self.knowledge)
        self.personalizer.recommender = IndexedRecommender(self.repository, self.personalizer.config.recommender)
        self.consents.preload()
        self.vault.preload()
        self._recent: dict[str, dict[str, Recommendation]] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    @classmethod
    def from_settings(cls, settings, blobs: BlobStore | None = None) -> PersonalizationService:
        """The service of an installation: its DuckDB file, key ring and retention setting."""
        secret = settings.privacy_key.get_secret_value() if settings.privacy_key is not None else None
        return cls(settings.personalization_path, KeyRing.load(settings.personal_keys_dir, secret), blobs,
                   retention=RetentionPolicy(settings.retention_days))

    # plumbing ------------------------------------------------------------------------------
    def subject(self, account_id: str) -> str:
        """The pseudonym of an account in every personalization table."""
        return self.keyring.pseudonym(account_id)

    def _lock(self, subject: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(subject, threading.RLock())

    def close(self) -> None:
        """Commit every queued write and stop the writer (shutdown). PER-g1."""
        self._closer()

    def flush(self) -> None:
        """Wait until every queued write is committed."""
        self.store.flush()

    def refresh(self) -> bool:
        """Reload in-memory indexes when another process (a flow) changed the database; True if it did."""
        if not self.db.changed_elsewhere():
            return False
        self.flush()
        self.repository.reload()
        self.store.index.reload()  # type: ignore[union-attr]
        self.consents.clear_cache()
        self.consents.preload()
        self.vault.preload()
        self.personalizer.forget()
        self._recent.clear()
        log.info("personalization data changed in another process: indexes reloaded")
        return True

    def seed(self, include_srd: bool = True) -> int:
        """Seed the task repository with the authored and SRD-derived tasks (idempotent). PER-b1."""
        return seed_repository(self.repository, self.knowledge, include_srd=include_srd)

    def _enrol(self, subject: str) -> None:
        if not self.store.has_user(subject):
            self.store.add_user(subject)

    # consent -------------------------------------------------------------------------------
    def set_consent(self, account_id: str, purpose: str, granted: bool) -> dict[str, bool]:
        """Grant or withdraw a purpose; withdrawing ``personalization`` drops the in-memory profile."""
        subject = self.subject(account_id)
        with self._lock(subject):
            self.consents.record(subject, purpose, granted)
            if purpose == "personalization" and not granted:
                self.personalizer.forget(subject)
                self._recent.pop(subject, None)
            return self.consents.current(subject)

    def consent(self, account_id: str) -> dict[str, Any]:
        subject = self.subject(account_id)
        return {"current": self.consents.current(subject),
                "history": [asdict(e) for e in self.consents.history(subject)]}

    # collection (PER-a1, PER-a2) -----------------------------------------------------------
    def _observe(self, subject: str, idempotency_key: str | None = None, **record: Any) -> Interaction:
        """Store one input; fold it into the profile only with personalization consent.

        A retry (same ``idempotency_key``) returns the first interaction and changes nothing: not the
        profile, not the task's engagement counts. PER-a2, PER-c1, PER-g1.
        """
        state = self.consents.current(subject)
        self._enrol(subject)
        item_id, event = record.get("item_id"), record.get("event")
        if item_id and event in TASK_EVENTS and item_id not in self.repository:
            raise KeyError(f"`item_id` {item_id!r} is not a task of the repository")
        profile = self.personalizer.profile(subject) if state["personalization"] else None  # before the write
        interaction, duplicate = self.store.record_once(subject, idempotency_key=idempotency_key, **record)
        if duplicate:
            return interaction
        if profile is not None:
            with self.personalizer._lock:
                self.personalizer.analyzer.update(profile, interaction)
            if item_id and event in TASK_EVENTS and state["analytics"]:
                interests = {t for t, _ in profile.interests(5)}
                via = [t for t in self.repository.get(item_id).tags if t in interests]
                self.repository.record_engagement(item_id, TASK_EVENTS[event], via)  # type: ignore[arg-type]
        elif state["analytics"] and item_id and event in ("accept", "complete", "abandon"):
            self.repository.record_engagement(item_id, TASK_EVENTS[event])  # type: ignore[arg-type]
        return interaction

    def observe_text(self, account_id: str, text: str, session_id: str | None = None,
                     idempotency_key: str | None = None) -> Interaction:
        """A typed message. Needs consent ``interactions``; a retry with the same key is stored once."""
        if not text.strip():
            raise ValueError("`text` must not be empty")
        subject = self.subject(account_id)
        with self._lock(subject):
            self.consents.require(subject, "interactions")
            return self._observe(subject, idempotency_key, modality="text", event="message", text=text,
                                 session_id=self._session(subject, session_id),
                                 features=derive_features("text", text))

    def observe_media(self, account_id: str, modality: str, data: bytes, ext: str, content_type: str,
                      text: str = "", session_id: str | None = None,
                      on_stored: Callable[[Any], None] | None = None,
                      idempotency_key: str | None = None) -> Interaction:
        """An image, voice note or video: features derived, the bytes sealed and stored. Needs ``interactions``
        and ``media``; ``text`` is what came with it (a caption or a transcript from the terminal).

        ``on_stored(ref)`` runs after the sealed object is put and before the row is written (the API
        records the object in the catalog there); if it or the row fails, a new object is deleted again.
        A retry with the same ``idempotency_key`` returns the first interaction before anything is stored:
        no second object, no second row (PER-g1).
        """
        if modality not in ("audio", "image", "video"):
            raise ValueError(f"`modality` must be audio, image or video, got {modality!r}")
        if self.blobs is None:
            raise RuntimeError("no object store configured: media cannot be stored")
        subject = self.subject(account_id)
        with self._lock(subject):
            self.consents.require(subject, "interactions", "media")
            first = self._first(subject, idempotency_key)
            if first is not None:
                return first
            features = derive_features(modality, text, data)
            if text and modality == "audio":
                features["transcript"] = text
            elif text:
                features["caption"] = text
            features["media"] = {"ext": ext, "content_type": content_type, "bytes": len(data)}
            self._enrol(subject)
            ref = self.blobs.put_bytes(self.vault.seal(subject, data, b"|media"),
                                       kind=MEDIA_KIND.format(modality=modality), ext="bin")
            try:
                if on_stored is not None:
                    on_stored(ref)
                return self._observe(subject, idempotency_key, modality=modality, event="message", text="",
                                     features=features, session_id=self._session(subject, session_id),
                                     media_key=ref.key)
            except BaseException:
                self.blobs.delete(ref.key)  # sealed with a fresh nonce: nobody else can hold this key
                raise

    def _first(self, subject: str, idempotency_key: str | None) -> Interaction | None:
        """The interaction already stored (or being committed) under this key, or None when the key is new."""
        if idempotency_key is None:
            return None
        if not (isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 200):
            raise ValueError(f"`idempotency_key` must be 1-200 characters, got {idempotency_key!r}")
        known = self.writer.known(subject, idempotency_key)
        if known is None:
            return None
        result = known.result(self.writer.config.commit_timeout)
        first = self.store.interaction(subject, result.interaction_id)
        if first is None:
            raise KeyError(f"interaction {result.interaction_id} of this key no longer exists")
        return first  # as the first answer gave it

    @staticmethod
    def _session(subject: str, session_id: str | None) -> str | None:
        """Session ids are scoped to their user in storage, so two users' "s1" never meet."""
        return f"{subject}/{session_id}" if session_id else None

    def media(self, account_id: str, interaction_id: int) -> tuple[bytes, dict[str, Any]] | None:
        """The opened media of one of the user's interactions and its media metadata; None when not theirs."""
        subject = self.subject(account_id)
        interaction = self.store.interaction(subject, interaction_id)
        if interaction is None or not interaction.media_key or self.blobs is None:
            return None
        data = self.vault.open(subject, self.blobs.get_bytes(interaction.media_key), b"|media")
        return data, dict(interaction.features.get("media", {}))

    def history(self, account_id: str, limit: int | None = None, modality: str | None = None) -> list[Interaction]:
        """The user's interactions, oldest first (session ids shown as the user gave them). PER-a2."""
        subject = self.subject(account_id)
        if not self.store.has_user(subject):
            return []
        prefix = subject + "/"
        return [_unscoped(i, prefix) for i in self.store.history(subject, modality=modality, limit=limit)]

    # preference analysis and recommendation (PER-c1, PER-b2, PER-e1, PER-d1) -------------------
    def profile(self, account_id: str) -> PreferenceProfile:
        """The user's preference profile. Needs ``personalization``."""
        subject = self.subject(account_id)
        self.consents.require(subject, "personalization")
        self._enrol(subject)
        return self.personalizer.profile(subject)

    def recommend(self, account_id: str, k: int = 10) -> list[Recommendation]:
        """Tasks for the user with reasons; without ``personalization`` consent, ranked for a blank profile."""
        subject = self.subject(account_id)
        with self._lock(subject):
            if self.consents.allowed(subject, "personalization"):
                self._enrol(subject)
                recs = self.personalizer.recommend(subject, k)
            else:
                recs = self.personalizer.recommender.recommend(PreferenceProfile(subject), k)
            self._recent[subject] = {r.task.task_id: r for r in recs}
        return recs

    def try_recommend(self, account_id: str, k: int = 10) -> list[Recommendation] | None:
        """``recommend`` if the user's lock is free right now, else None without waiting.

        Why: the API answers recommendations on its event loop (microseconds of index work, no thread
        hop, PER-g1), where waiting for a lock held by the same user's write (which holds it until its
        batch commits) would stall every other request; on None the caller waits in a worker thread.
        """
        subject = self.subject(account_id)
        index = self.store.index
        if index is None or not index.has_user(subject):  # enrolling a new user writes: not on the loop
            return None
        lock = self._lock(subject)
        if not lock.acquire(blocking=False):
            return None
        try:
            return self.recommend(account_id, k)
        finally:
            lock.release()

    def needs_refresh(self) -> bool:
        """Whether ``refresh`` has work to do: reads the small generation file only, so it is cheap enough to
        ask on the event loop before every request (the reload itself then runs in a thread)."""
        db = self.db
        return db.generation() != db._seen or db._missed

    def generate(self, account_id: str, n: int = 1) -> list[GeneratedQuest]:
        """New quests made from the user's preferences, stored in the repository. Needs ``personalization``."""
        subject = self.subject(account_id)
        with self._lock(subject):
            self.consents.require(subject, "personalization")
            self._enrol(subject)
            return self.personalizer.generate(subject, n)

    def visible_task(self, account_id: str, task_id: str) -> Task | None:
        """A task the user may see: not one generated or adjusted for someone else."""
        subject = self.subject(account_id)
        recent = self._recent.get(subject, {}).get(task_id)
        if recent is not None:
            return recent.task
        if task_id not in self.repository:
            return None
        task = self.repository.get(task_id)
        return task if task.provenance.for_user in (None, subject) else None

    def search(self, account_id: str, query: str | None, tags: list[str], k: int = 10,
               provenance: list[str] | None = None) -> list[SearchHit]:
        """Hybrid search over the tasks the user may see. PER-b2."""
        flt = TaskFilter(for_user=self.subject(account_id), provenance=provenance)  # type: ignore[arg-type]
        return self.repository.search(query or None, tags, flt, k=k)

    def task_event(self, account_id: str, task_id: str, event: str,
                   idempotency_key: str | None = None) -> tuple[Interaction, Task]:
        """Accept, complete or abandon a task; an accepted adjusted variant is stored first (PER-d2, PER-e1).

        Needs ``interactions``; KeyError when the task is not one the user may see.
        """
        if event not in TASK_EVENT:
            raise ValueError(f"`event` must be one of {sorted(TASK_EVENT)}, got {event!r}")
        subject = self.subject(account_id)
        with self._lock(subject):
            self.consents.require(subject, "interactions")
            task = self.visible_task(account_id, task_id)
            if task is None:
                raise KeyError(f"`task_id` {task_id!r} is not a task you can see")
            if task.task_id not in self.repository:
                self.repository.add(task)
            interaction = self._observe(subject, idempotency_key, event=TASK_EVENT[event], item_id=task.task_id)
            return interaction, self.repository.get(task.task_id)

    # export, erasure, retention (PER-f1) ---------------------------------------------------
    def export(self, account_id: str) -> dict[str, Any]:
        """Everything held about the user, machine-readable (media inline as base64)."""
        subject = self.subject(account_id)
        self.flush()  # everything acknowledged is in DuckDB before it is exported
        known = self.store.has_user(subject)
        interactions = []
        for it in self.history(account_id) if known else []:
            entry = {**asdict(it), "ts": it.ts.isoformat(), "user_id": subject}
            if it.media_key:
                opened = self.media(account_id, it.interaction_id)
                entry["media_base64"] = base64.b64encode(opened[0]).decode("ascii") if opened else None
            interactions.append(entry)
        personalized = self.consents.allowed(subject, "personalization") and known
        return {
            "format": EXPORT_FORMAT, "exported_at": _now().isoformat(), "subject": subject,
            "consent": self.consent(account_id),
            "user": ({"attributes": self.store.attributes(subject),
                      "sessions": [{**s, "session_id": s["session_id"].removeprefix(subject + "/")}
                                   for s in self.store.sessions(subject)]} if known else None),
            "interactions": interactions,
            "profile": profile_summary(self.personalizer.profile(subject)) if personalized else None,
            "tasks_made_for_you": [_task_json(t) for t in self.repository.generated_for(subject)],
            "encryption_key": {"held": self.vault.has_key(subject), "algorithm": "AES-256-GCM, wrapped"},
        }

    def erase(self, account_id: str) -> dict[str, Any]:
        """Remove every trace of the user: key, media objects, interactions, sessions, consents, tasks, caches.

        The key goes first, so an interrupted erasure leaves only data nobody can open; the file is
        then rewritten (``Database.compact``) so no bytes of deleted rows remain. Idempotent: a failed
        erasure can simply be repeated.
        """
        subject = self.subject(account_id)
        with self._lock(subject):
            self.flush()  # no queued row of the user may land after the delete
            shredded = self.vault.shred(subject)
            keys = self.store.media_keys(user_id=subject)
            for key in keys:
                self._delete_blob(key)
            rows = self.store.count(subject)
            self.store.delete_user(subject)
            consents = self.consents.forget(subject)
            tasks = self.repository.remove([t.task_id for t in self.repository.generated_for(subject)])
            self.personalizer.forget(subject)
            self._recent.pop(subject, None)
            self.db.compact()  # deleted rows must not survive in free blocks of the file
        log.info("erased subject %s: %d interactions, %d media objects, %d tasks", subject[:10], rows, len(keys), tasks)
        return {"interactions": rows, "media_objects": len(keys), "consents": consents, "tasks": tasks,
                "keys": int(shredded), "media_keys": keys}

    def _delete_blob(self, key: str) -> None:
        if self.blobs is None:
            raise RuntimeError(f"no object store configured: cannot delete {key}")
        self.blobs.delete(key)

    def enforce_retention(self, now: datetime | None = None) -> dict[str, Any]:
        """Delete interactions (and their media) older than the retention limit; profiles are rebuilt."""
        cutoff = self.retention.cutoff(now)
        self.flush()
        expiring = self.store.media_keys(before=cutoff)
        keep = set(self.store.media_keys()) - set(expiring)
        doomed = [k for k in expiring if k not in keep]
        for key in doomed:  # objects first: a failure leaves rows that the next run expires again
            self._delete_blob(key)
        rows, _ = self.store.expire(cutoff)
        if rows:
            self.db.compact()
        self.personalizer.forget()
        self._recent.clear()
        log.info("retention: %d interactions and %d media objects older than %s deleted", rows, len(doomed), cutoff)
        return {"cutoff": cutoff.isoformat(), "interactions": rows, "media_objects": len(doomed),
                "media_keys": doomed}

    def pseudonymise_log(self, parsed: InteractionLog) -> InteractionLog:
        """The log with pseudonyms for its user ids and user-scoped session ids (what gets imported)."""
        frame = parsed.frame.copy()
        frame["user_id"] = frame["user_id"].map(self.keyring.pseudonym)
        frame["session_id"] = [None if s is None or s != s else f"{u}/{s}"
                               for u, s in zip(frame["user_id"], frame["session_id"])]
        return InteractionLog(frame, parsed.source, parsed.format, parsed.user_features, parsed.affinity,
                              parsed.affinity_items, parsed.item_context)

    def import_log(self, parsed: InteractionLog, digest: str, *, pseudonymised: bool = False) -> ImportResult:
        """Bulk import of a validated log; user ids pseudonymised (unless already), text sealed. PER-a2."""
        self.flush()
        result = self.store.import_log(parsed if pseudonymised else self.pseudonymise_log(parsed), digest)
        self.personalizer.forget()
        return result


def _unscoped(interaction: Interaction, prefix: str) -> Interaction:
    if interaction.session_id and interaction.session_id.startswith(prefix):
        return Interaction(**{**asdict(interaction), "session_id": interaction.session_id[len(prefix):]})
    return interaction


def _task_json(task: Task) -> dict[str, Any]:
    data = asdict(task)
    data["created_at"] = task.created_at.isoformat()
    return data
