"""The task repository: quests, missions and challenges with their metadata, embeddings and engagement.

Tasks are persisted in DuckDB (one row per task, metadata as JSON, the embedding as a fixed-size
FLOAT array) and served from an in-memory index (a dict plus one embedding matrix) that every write
keeps current, so retrieval never waits on the database. Relevance exists twice: as authored
(overall and per tag) and as observed from engagement (shown, accepted, completed, abandoned), the
observed value shrinking towards the authored one while evidence is thin.
The file is a ``Database`` that other processes may write too (the seed flow): ``reload`` rebuilds
the index when ``Database.changed_elsewhere`` says so.
Implements PER-b1 (metadata), PER-b2 (hybrid retrieval) and PER-d2 (stored-back generated tasks).
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pandas as pd

from gaiverse.personalization.database import Database
from gaiverse.personalization.embedding import Embedder, HashingEmbedder, tokenize

log = logging.getLogger(__name__)

try:  # orjson (in the lock file via the API stack) parses the task JSON several times faster
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - plain json gives the same result
    _loads = json.loads

TaskKind = Literal["quest", "mission", "challenge"]
ProvenanceKind = Literal["authored", "imported", "generated"]
EngagementEvent = Literal["shown", "accepted", "completed", "abandoned"]
EVENT_VALUE: dict[str, float] = {"shown": 0.0, "accepted": 0.5, "completed": 1.0, "abandoned": 0.0}


@dataclass
class Provenance:
    """Where a task came from: authored by people, imported from a corpus, or generated for a user."""

    kind: ProvenanceKind
    """authored / imported / generated."""
    source: str = ""
    """Author, corpus entry (with licence) or generator name."""
    for_user: str | None = None
    """The user a generated task was made for."""
    from_tasks: list[str] = field(default_factory=list)
    """Tasks a generated task was derived from."""


@dataclass
class Engagement:
    """Observed engagement counts, overall and per tag (for the tags that led users to the task)."""

    counts: dict[str, int] = field(default_factory=lambda: {e: 0 for e in EVENT_VALUE})
    """Events per kind: shown, accepted, completed, abandoned."""
    per_tag: dict[str, list[float]] = field(default_factory=dict)
    """tag -> [summed event value, number of events]."""


@dataclass
class Task:
    """One task and its metadata. Implements PER-b1."""

    task_id: str
    title: str
    description: str
    tags: list[str]
    kind: TaskKind = "quest"
    relevance: float = 0.5
    """Authored overall relevance rating in [0, 1]."""
    tag_relevance: dict[str, float] = field(default_factory=dict)
    """Authored relevance per tag in [0, 1] (how strongly the task is about that tag)."""
    difficulty: int = 2
    """1 (trivial) .. 5 (deadly)."""
    length_minutes: int = 30
    social: Literal["solo", "group", "either"] = "either"
    requirements: dict[str, Any] = field(default_factory=dict)
    rewards: dict[str, Any] = field(default_factory=dict)
    location: str | None = None
    """Place id in the world (see ``knowledge.py``)."""
    npcs: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    monsters: list[str] = field(default_factory=list)
    provenance: Provenance = field(default_factory=lambda: Provenance("authored"))
    engagement: Engagement = field(default_factory=Engagement)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        if not self.task_id:
            raise ValueError("`task_id` must be non-empty")
        if not 0.0 <= self.relevance <= 1.0:
            raise ValueError(f"`relevance` must be in [0, 1], got {self.relevance} for {self.task_id}")
        if not 1 <= self.difficulty <= 5:
            raise ValueError(f"`difficulty` must be in 1..5, got {self.difficulty} for {self.task_id}")
        for tag, value in self.tag_relevance.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`tag_relevance[{tag!r}]` must be in [0, 1], got {value} for {self.task_id}")
        self.tags = sorted({t.strip().lower() for t in self.tags if t.strip()})

    @property
    def text(self) -> str:
        """What the embedding is computed from."""
        return f"{self.title}. {self.description} {' '.join(self.tags)}"

    def observed_relevance(self, prior_strength: float = 4.0) -> float:
        """Engagement-based relevance, shrunk towards the authored rating while evidence is thin."""
        n = sum(self.engagement.counts.values())
        value = sum(EVENT_VALUE[e] * c for e, c in self.engagement.counts.items())
        return (value + prior_strength * self.relevance) / (n + prior_strength)

    def observed_tag_relevance(self, tag: str, prior_strength: float = 4.0) -> float:
        """Per-tag engagement relevance, shrunk towards the authored per-tag (or overall) rating."""
        prior = self.tag_relevance.get(tag, self.relevance)
        value, n = self.engagement.per_tag.get(tag, (0.0, 0.0))
        return (value + prior_strength * prior) / (n + prior_strength)

    def signature(self) -> str:
        """Identity for duplicate checks: kind, title words and every referenced entity."""
        parts = [self.kind, " ".join(sorted(set(tokenize(self.title)))), self.location or "",
                 ",".join(sorted(self.npcs)), ",".join(sorted(self.items)), ",".join(sorted(self.monsters))]
        return "|".join(parts)


@dataclass
class TaskFilter:
    """Hard filters applied before scoring."""

    kinds: list[TaskKind] | None = None
    min_difficulty: int = 1
    max_difficulty: int = 5
    location: str | None = None
    provenance: list[ProvenanceKind] | None = None
    social: list[str] | None = None
    require_tags: list[str] = field(default_factory=list)
    exclude_tags: list[str] = field(default_factory=list)
    exclude_ids: set[str] = field(default_factory=set)
    for_user: str | None = None
    """When set, tasks generated for other users are excluded."""

    def accepts(self, task: Task) -> bool:
        if task.task_id in self.exclude_ids:
            return False
        if self.kinds is not None and task.kind not in self.kinds:
            return False
        if not self.min_difficulty <= task.difficulty <= self.max_difficulty:
            return False
        if self.location is not None and task.location != self.location:
            return False
        if self.provenance is not None and task.provenance.kind not in self.provenance:
            return False
        if self.social is not None and task.social not in self.social:
            return False
        if self.require_tags and not set(self.require_tags) <= set(task.tags):
            return False
        if self.exclude_tags and set(self.exclude_tags) & set(task.tags):
            return False
        gen_for = task.provenance.for_user
        return not (self.for_user is not None and gen_for is not None and gen_for != self.for_user)


@dataclass
class SearchWeights:
    """How the hybrid score mixes its parts."""

    vector: float = 0.6
    """Cosine similarity of query and task embeddings."""
    keyword: float = 0.25
    """Fraction of query words found in the task's title, description or tags."""
    tags: float = 0.4
    """Fraction of the requested tags the task carries."""
    relevance: float = 0.1
    """Observed (engagement-shrunk) relevance of the task."""


@dataclass
class SearchHit:
    task: Task
    score: float
    parts: dict[str, float]


def _task_to_row(task: Task) -> dict[str, Any]:
    data = asdict(task)
    return {"task_id": task.task_id, "data": json.dumps({k: v for k, v in data.items() if k != "created_at"}),
            "provenance_kind": task.provenance.kind, "created_at": task.created_at}


def _row_to_task(data: str, created_at: datetime) -> Task:
    raw = json.loads(data)
    raw["provenance"] = Provenance(**raw["provenance"])
    raw["engagement"] = Engagement(**raw["engagement"])
    return Task(**raw, created_at=created_at)


def _stored_task(raw: dict[str, Any], created_at: datetime) -> Task:
    """A task from its stored JSON without re-running ``Task.__post_init__``: rows are only written from
    validated ``Task`` objects (tags already normalised), so checking them again would only cost time."""
    task = object.__new__(Task)
    task.__dict__.update(raw)
    task.provenance = Provenance(**raw["provenance"])
    task.engagement = Engagement(**raw["engagement"])
    task.created_at = created_at
    return task


class TaskRepository:
    """Tasks in DuckDB at ``path`` plus an in-memory index for retrieval. Implements PER-b1, PER-b2."""

    def __init__(self, path: str | Path = ":memory:", embedder: Embedder | None = None, *,
                 db: Database | None = None) -> None:
        self.db = db or Database(path)
        self.path = self.db.path
        self.embedder = embedder or HashingEmbedder()
        self._lock = threading.RLock()
        with self.db.write() as con:
            con.execute(
                f"CREATE TABLE IF NOT EXISTS tasks (task_id VARCHAR PRIMARY KEY, data JSON NOT NULL, "
                f"provenance_kind VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
                f"embedding FLOAT[{self.embedder.dim}] NOT NULL)")
            con.execute("CREATE TABLE IF NOT EXISTS repository_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            stored = con.execute("SELECT value FROM repository_meta WHERE key = 'embedder'").fetchone()
            if stored is None:
                con.execute("INSERT INTO repository_meta VALUES ('embedder', ?)", [self.embedder.name])
            elif stored[0] != self.embedder.name:
                raise ValueError(f"`embedder` {self.embedder.name!r} differs from the one that built {self.path!r} "
                                 f"({stored[0]!r}); re-embed the repository first")
        self.reload()
        log.info("task repository %s: %d tasks", self.path, len(self._ids))

    def reload(self) -> None:
        """Rebuild the in-memory index from the database (after another process changed it).

        Column-wise: one numpy fetch (embeddings as one float32 matrix, timestamps as epoch
        microseconds), one JSON parse of all rows, and tasks rebuilt without re-validating what was
        validated when it was written; at 50 000 tasks this is ~10x faster than a per-row fetchall.
        """
        with self.db.read() as con:
            cols = con.execute("SELECT data, epoch_us(created_at) AS created_us, embedding FROM tasks "
                               "ORDER BY created_at, task_id").fetchnumpy()
        n = len(cols["data"])
        created = pd.to_datetime(np.asarray(cols["created_us"], dtype=np.int64), unit="us", utc=True).to_pydatetime()
        collecting = gc.isenabled()
        gc.disable()  # building ~10 containers per task would trigger the cyclic GC thousands of times
        try:
            raws = _loads("[" + ",".join(cols["data"].tolist()) + "]") if n else []
            tasks = [_stored_task(raw, ts) for raw, ts in zip(raws, created)]
        finally:
            if collecting:
                gc.enable()
        matrix = (np.stack(cols["embedding"]).astype(np.float32, copy=False) if n
                  else np.zeros((0, self.embedder.dim), dtype=np.float32))
        with self._lock:
            self._tasks = {t.task_id: t for t in tasks}
            self._ids = list(self._tasks)
            self._pos = {tid: i for i, tid in enumerate(self._ids)}
            self._matrix = matrix

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def get(self, task_id: str) -> Task:
        """The task with ``task_id``; KeyError naming it otherwise."""
        try:
            return self._tasks[task_id]
        except KeyError:
            raise KeyError(f"`task_id` {task_id!r} is not in the repository") from None

    def all(self) -> list[Task]:
        return [self._tasks[i] for i in self._ids]

    def tag_vocabulary(self) -> set[str]:
        """Every tag used by some task."""
        return {tag for t in self._tasks.values() for tag in t.tags}

    def embedding(self, task_id: str) -> np.ndarray:
        return self._matrix[self._pos[task_id]]

    def add(self, tasks: Task | Iterable[Task]) -> list[str]:
        """Store new tasks (embedding them); a task id that exists already raises ValueError.

        Implements PER-b1, and PER-d2 when the tasks are generated ones.
        """
        batch = [tasks] if isinstance(tasks, Task) else list(tasks)
        with self._lock:
            seen = set(self._tasks)
            for task in batch:
                if task.task_id in seen:
                    raise ValueError(f"`task_id` {task.task_id!r} already exists in the repository")
                seen.add(task.task_id)
            if not batch:
                return []
            vectors = self.embedder.embed([t.text for t in batch])
            rows = [_task_to_row(t) for t in batch]
            frame = pd.DataFrame(rows)
            frame["embedding"] = list(vectors)
            with self.db.write() as con:
                con.register("new_tasks", frame)
                try:
                    con.execute(f"INSERT INTO tasks SELECT task_id, data, provenance_kind, created_at, "
                                f"embedding::FLOAT[{self.embedder.dim}] FROM new_tasks")
                finally:
                    con.unregister("new_tasks")
            for task in batch:
                self._tasks[task.task_id] = task
                self._pos[task.task_id] = len(self._ids)
                self._ids.append(task.task_id)
            self._matrix = np.vstack([self._matrix, vectors])
        return [t.task_id for t in batch]

    def update(self, task: Task) -> None:
        """Persist a changed task (metadata and engagement; the text, hence embedding, may change too)."""
        with self._lock:
            self.get(task.task_id)
            vector = self.embedder.embed([task.text])[0]
            row = _task_to_row(task)
            with self.db.write() as con:
                con.execute("UPDATE tasks SET data = ?, embedding = ? WHERE task_id = ?",
                            [row["data"], vector.tolist(), task.task_id])
            self._tasks[task.task_id] = task
            self._matrix[self._pos[task.task_id]] = vector

    def record_engagement(self, task_id: str, event: EngagementEvent, via_tags: Sequence[str] = ()) -> Task:
        """Count one engagement event; ``via_tags`` are the user interests that led to the task.

        Observed relevance (overall and per tag) follows immediately. Implements PER-b1.
        """
        check_event(event)
        with self._lock:
            updated = with_engagement(self.get(task_id), event, via_tags)
            row = _task_to_row(updated)
            with self.db.write() as con:
                con.execute("UPDATE tasks SET data = ? WHERE task_id = ?", [row["data"], task_id])
            self._tasks[task_id] = updated
        return updated

    def remove(self, task_ids: Iterable[str]) -> int:
        """Delete tasks (erasure of tasks generated for a user); unknown ids are ignored. Returns how many."""
        with self._lock:
            doomed = [t for t in task_ids if t in self._tasks]
            if not doomed:
                return 0
            with self.db.write() as con:
                con.execute(f"DELETE FROM tasks WHERE task_id IN ({', '.join('?' for _ in doomed)})", doomed)
            keep = [i for i, tid in enumerate(self._ids) if tid not in set(doomed)]
            for tid in doomed:
                del self._tasks[tid]
            self._matrix = self._matrix[keep]
            self._ids = [self._ids[i] for i in keep]
            self._pos = {tid: i for i, tid in enumerate(self._ids)}
        return len(doomed)

    def generated_for(self, user_id: str) -> list[Task]:
        """Tasks generated (or adjusted) for ``user_id``."""
        return [t for t in self.all() if t.provenance.for_user == user_id]

    def similar(self, vector: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` tasks with the most similar embeddings (cosine), best first."""
        if not self._ids:
            return []
        sims = self._matrix @ vector.astype(np.float32)
        top = np.argsort(-sims)[:k]
        return [(self._ids[i], float(sims[i])) for i in top]

    def find_duplicate(self, task: Task, threshold: float = 0.92) -> str | None:
        """An existing task that ``task`` would duplicate: same signature or near-identical text."""
        signature = task.signature()
        for other in self._tasks.values():
            if other.signature() == signature:
                return other.task_id
        nearest = self.similar(self.embedder.embed([task.text])[0], k=1)
        if nearest and nearest[0][1] >= threshold:
            return nearest[0][0]
        return None

    def search(self, query: str | None = None, tags: Sequence[str] = (), filters: TaskFilter | None = None,
               k: int = 10, weights: SearchWeights | None = None) -> list[SearchHit]:
        """Hybrid retrieval: vector + keyword match on ``query``, tag overlap, relevance; after filters.

        Implements PER-b2 (retrieval).
        """
        if k < 1:
            raise ValueError(f"`k` must be >= 1, got {k}")
        weights = weights or SearchWeights()
        filters = filters or TaskFilter()
        idx = [i for i, tid in enumerate(self._ids) if filters.accepts(self._tasks[tid])]
        if not idx:
            return []
        vec = np.zeros(len(idx), dtype=np.float32)
        query_tokens = set(tokenize(query)) if query else set()
        if query:
            vec = self._matrix[idx] @ self.embedder.embed([query])[0]
        wanted = {t.lower() for t in tags}
        hits = []
        for row, i in enumerate(idx):
            task = self._tasks[self._ids[i]]
            parts = {"vector": float(vec[row])}
            if query_tokens:
                words = set(tokenize(task.text))
                parts["keyword"] = len(query_tokens & words) / len(query_tokens)
            if wanted:
                parts["tags"] = len(wanted & set(task.tags)) / len(wanted)
            parts["relevance"] = task.observed_relevance()
            score = sum(getattr(weights, name) * value for name, value in parts.items())
            hits.append(SearchHit(task, float(score), parts))
        hits.sort(key=lambda h: (-h.score, h.task.task_id))
        return hits[:k]


def check_event(event: str) -> None:
    if event not in EVENT_VALUE:
        raise ValueError(f"`event` must be one of {list(EVENT_VALUE)}, got {event!r}")


def with_engagement(task: Task, event: EngagementEvent, via_tags: Sequence[str] = ()) -> Task:
    """``task`` with one more ``event`` counted, overall and for each tag in ``via_tags`` (a new Task)."""
    engagement = Engagement(dict(task.engagement.counts), {k: list(v) for k, v in task.engagement.per_tag.items()})
    engagement.counts[event] = engagement.counts.get(event, 0) + 1
    for tag in via_tags:
        value, n = engagement.per_tag.get(tag, [0.0, 0.0])
        engagement.per_tag[tag] = [value + EVENT_VALUE[event], n + 1]
    return replace(task, engagement=engagement)
