"""In-memory task index and the recommender that scores every task at once from it (PER-g1).

The pre-existing recommender scores tasks one by one in Python (~20 µs each), and above 2 000 tasks
first narrows them with a hybrid search that also loops over every task: with 50 000 tasks a
recommendation costs about a second. ``TaskIndex`` keeps what the score needs as arrays, one row
per task of the repository in the repository's order:

* ``carries`` (tasks x tags, 0/1) and ``tag_relevance`` (observed per-tag relevance where carried):
  the tag postings and the preference part of the score become two matrix-vector products;
* ``relevance`` (observed overall relevance), ``popularity`` (accepted + completed counts),
  ``difficulty``, ``social`` and ``owner`` (who a generated task is for) as vectors;
* the embedding matrix is the repository's own (no copy).

``IndexedTaskRepository`` keeps the index current on every change *without a rebuild*: an engagement
event rewrites that task's row of the arrays (and hands its database update to the single writer,
coalesced per task), added tasks are written into spare rows of growable buffers, only removals
rebuild. ``IndexedRecommender`` computes approximate scores (the same parts and weights as
``Recommender``) vectorised over all tasks, then re-scores only the few best candidates with the
per-task scalar code and builds reasons and adjustments for the top k alone, so it returns exactly
what scoring every task one by one returns (tested in ``test_recommend_fast_path.py``); at 50 000
tasks one recommendation costs ~1 ms in-process.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np

from gaiverse.personalization.preference_analysis import PreferenceProfile, text_signals
from gaiverse.personalization.recommender import (
    Recommendation, Recommender, adjust_task, score_parts, weighted_score,
)
from gaiverse.personalization.task_repository import (
    EngagementEvent, Task, TaskFilter, TaskRepository, _task_to_row, check_event,
    with_engagement,
)

log = logging.getLogger(__name__)

SOCIAL = {"solo": 0, "group": 1, "either": 2}
ROW_ARRAYS = {"inv_sqrt_tags": np.float64, "relevance": np.float64, "popularity": np.float64,
              "difficulty": np.float64, "level": np.int8, "social": np.int8, "owned": np.bool_}
"""One value per task, stored in growable buffers like the tag matrices."""
PRIOR_STRENGTH = 4.0
"""As ``Task.observed_relevance``: engagement shrinks towards the authored rating with this weight."""


class TaskIndex:
    """Arrays over the tasks of a repository, in the repository's order. Implements PER-g1."""

    def __init__(self, repository: TaskRepository) -> None:
        self.repository = repository
        self.lock = threading.RLock()
        self.rebuild()

    def rebuild(self) -> None:
        """Build every array from the repository's tasks (start-up, reload, removal)."""
        with self.repository._lock, self.lock:
            tasks = self.repository.all()
            self.tags = sorted({tag for t in tasks for tag in t.tags})
            self.tag_pos = {tag: j for j, tag in enumerate(self.tags)}
            n, m = len(tasks), len(self.tags)
            self.ids: list[str] = [t.task_id for t in tasks]
            self.pos = {tid: i for i, tid in enumerate(self.ids)}
            self._buffers: dict[str, np.ndarray] = {}
            self._allocate(n, m)
            self.owner: list[str | None] = [None] * n
            self.owner_rows: dict[str, set[int]] = {}
            self._owned_rows: np.ndarray | None = None
            for i, task in enumerate(tasks):
                self._fill(i, task)
            self._buffers["embeddings"][:n] = self.repository._matrix[:n]
            self._views()
        log.info("task index: %d tasks x %d tags", len(self.ids), len(self.tags))

    def _allocate(self, capacity: int, m: int) -> None:
        """(Re)allocate the buffers for ``capacity`` rows and ``m`` tags, keeping the rows filled so far.

        The tag matrices and the embedding copy are stored column by column: scoring reads only the
        columns of the user's tags and of the query's non-zero embedding dimensions (hashing embeddings
        are sparse), each one contiguous, without BLAS — whose threads, on a busy 2-core host, made one
        50 000-row product 20x slower than a single-threaded loop. The arrays the index exposes are
        views of the first ``len(ids)`` rows, so appending a task (an accepted adjusted variant) writes
        one row instead of copying ~100 MB (which took ~65 ms at 50 000 tasks, under the index lock).
        """
        old, filled = self._buffers, len(self.ids) if self._buffers else 0
        dim = self.repository.embedder.dim
        shapes = {"carries": ((capacity, m), np.float64), "tag_relevance": ((capacity, m), np.float64),
                  "embeddings": ((capacity, dim), np.float32)}
        shapes.update({name: ((capacity,), dtype) for name, dtype in ROW_ARRAYS.items()})
        self._buffers = {}
        for name, (shape, dtype) in shapes.items():
            buf = np.zeros(shape, dtype=dtype, order="F")
            if name in old and filled:
                prior = old[name][:filled]
                if buf.ndim == 2:
                    buf[:filled, :prior.shape[1]] = prior
                else:
                    buf[:filled] = prior
            self._buffers[name] = buf
        self._views()

    def _views(self) -> None:
        """Point the public arrays at the filled rows of the buffers."""
        n = len(self.ids)
        for name, buf in self._buffers.items():
            setattr(self, name, buf[:n])

    def _fill(self, i: int, task: Task) -> None:
        """Write row ``i`` from ``task`` (its tags must be in the vocabulary)."""
        self.carries[i] = 0.0
        self.tag_relevance[i] = 0.0
        for tag in task.tags:
            j = self.tag_pos[tag]
            self.carries[i, j] = 1.0
            self.tag_relevance[i, j] = task.observed_tag_relevance(tag, PRIOR_STRENGTH)
        self.inv_sqrt_tags[i] = 1.0 / math.sqrt(len(task.tags)) if task.tags else 0.0
        self.relevance[i] = task.observed_relevance(PRIOR_STRENGTH)
        self.popularity[i] = task.engagement.counts.get("accepted", 0) + task.engagement.counts.get("completed", 0)
        self.difficulty[i] = task.difficulty
        self.level[i] = task.difficulty
        self.social[i] = SOCIAL[task.social]
        owner = task.provenance.for_user
        if owner != self.owner[i]:
            if self.owner[i] is not None:
                self.owner_rows[self.owner[i]].discard(i)
            if owner is not None:
                self.owner_rows.setdefault(owner, set()).add(i)
            self._owned_rows = None
        self.owner[i] = owner
        self.owned[i] = owner is not None

    def owned_rows(self) -> np.ndarray:
        """Rows of the tasks generated or adjusted for some user (cached until one changes)."""
        if self._owned_rows is None:
            self._owned_rows = np.flatnonzero(self.owned)
        return self._owned_rows

    def update(self, task: Task) -> None:
        """One task changed (engagement, metadata): rewrite its row in place."""
        with self.lock:
            if task.task_id not in self.pos or any(t not in self.tag_pos for t in task.tags):
                self.rebuild()
                return
            i = self.pos[task.task_id]
            self._fill(i, task)
            self.embeddings[i] = self.repository.embedding(task.task_id)

    def append(self, tasks: Sequence[Task]) -> None:
        """Tasks added at the end of the repository: write their rows, growing the buffers by a quarter
        when full (amortised O(1) per task) or when new tags widen them."""
        with self.lock:
            new_tags = sorted({tag for t in tasks for tag in t.tags} - set(self.tag_pos))
            n, k = len(self.ids), len(tasks)
            capacity = len(self._buffers["relevance"])
            if new_tags or n + k > capacity:
                self.tags += new_tags
                self.tag_pos = {tag: j for j, tag in enumerate(self.tags)}
                self._allocate(max(n + k, capacity + capacity // 4 + 16), len(self.tags))
            self.owner += [None] * k
            for task in tasks:
                self.pos[task.task_id] = len(self.ids)
                self.ids.append(task.task_id)
            self._views()
            for task in tasks:
                i = self.pos[task.task_id]
                self._fill(i, task)
                self.embeddings[i] = self.repository.embedding(task.task_id)

    def postings(self, tag: str) -> np.ndarray:
        """Rows of the tasks that carry ``tag``."""
        j = self.tag_pos.get(tag)
        return np.zeros(0, dtype=np.int64) if j is None else np.flatnonzero(self.carries[:, j])

    def tag_vector(self, weights: dict[str, float]) -> np.ndarray:
        """A tag-space vector from tag -> weight (tags no task carries are dropped)."""
        out = np.zeros(len(self.tags))
        for tag, value in weights.items():
            j = self.tag_pos.get(tag)
            if j is not None:
                out[j] = value
        return out

    def tag_product(self, matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``matrix @ weights`` over the non-zero weights only, one contiguous column at a time."""
        out = np.zeros(matrix.shape[0])
        for j in np.flatnonzero(weights):
            out += weights[j] * matrix[:, j]
        return out

    def similarity(self, query: np.ndarray) -> np.ndarray:
        """Dot product of every task embedding with ``query`` (its non-zero dimensions only)."""
        out = np.zeros(len(self.ids), dtype=np.float32)
        for j in np.flatnonzero(query):
            out += query[j] * self.embeddings[:, j]
        return out

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.carries, self.tag_relevance, self.relevance, self.popularity,
                                      self.difficulty, self.inv_sqrt_tags, self.embeddings))


class IndexedTaskRepository(TaskRepository):
    """A task repository whose every change keeps a ``TaskIndex`` current; engagement writes are batched.

    With ``writer`` set (``InteractionWriter``), ``record_engagement`` updates memory at once and hands
    the row update to the single writer, which commits it with the next batch of interactions (the
    latest state of a task replaces an earlier queued one). Implements PER-b1 and PER-g1.
    """

    def __init__(self, *args, writer=None, **kwargs) -> None:
        self.writer = writer
        self.index: TaskIndex | None = None
        super().__init__(*args, **kwargs)

    def reload(self) -> None:
        super().reload()
        self.index = TaskIndex(self)

    def add(self, tasks: Task | Iterable[Task]) -> list[str]:
        batch = [tasks] if isinstance(tasks, Task) else list(tasks)
        with self._lock:
            added = super().add(batch)
            if added and self.index is not None:
                self.index.append(batch)
        return added

    def update(self, task: Task) -> None:
        with self._lock:
            super().update(task)
            self.index.update(task)  # type: ignore[union-attr]

    def remove(self, task_ids: Iterable[str]) -> int:
        with self._lock:
            n = super().remove(task_ids)
            if n:
                self.index.rebuild()  # type: ignore[union-attr]
        return n

    def record_engagement(self, task_id: str, event: EngagementEvent, via_tags: Sequence[str] = ()) -> Task:
        """As ``TaskRepository.record_engagement``; the database row is written by the single writer."""
        if self.writer is None:
            with self._lock:
                updated = super().record_engagement(task_id, event, via_tags)
                self.index.update(updated)  # type: ignore[union-attr]
            return updated
        check_event(event)
        with self._lock:
            updated = with_engagement(self.get(task_id), event, via_tags)
            self.writer.defer(("task", task_id), "UPDATE tasks SET data = ? WHERE task_id = ?",
                              [_task_to_row(updated)["data"], task_id])
            self._tasks[task_id] = updated
            self.index.update(updated)  # type: ignore[union-attr]
        return updated


class IndexedRecommender(Recommender):
    """``Recommender`` with every task scored at once from the ``TaskIndex``. Implements PER-b2, PER-e1, PER-g1.

    Two stages, so the result is exactly the full per-task ranking (same ids, order, scores, parts
    and reasons) at a fraction of its cost: (1) every task gets an *approximate* score from the
    index's arrays (float32 embedding products, another order of summation: off by < ``tolerance``);
    (2) argpartition picks the best candidates, and only those within ``2 * tolerance`` of the k-th
    accepted one are re-scored with the scalar ``score_parts`` of the per-task path and sorted
    exactly. A task left out has an exact score below each of k accepted tasks, so it cannot be in
    the exact top k.
    """

    def __init__(self, repository: IndexedTaskRepository, config=None, learned=None) -> None:
        super().__init__(repository, config, learned)
        self.repository: IndexedTaskRepository = repository

    @property
    def tolerance(self) -> float:
        """Bound on |approximate - exact score|: float32 dot products of unit vectors, weighted."""
        return 1e-4 * max(1.0, abs(self.config.w_current))

    def scores(self, profile: PreferenceProfile, said: dict[str, float] | None = None,
               query: np.ndarray | None = None) -> np.ndarray:
        """The approximate score of every task for ``profile`` (within ``tolerance`` of the exact one)."""
        cfg, idx = self.config, self.repository.index
        scale = max([1.0] + [abs(v) for v in profile.tag_affinity.values()])
        affinity = idx.tag_vector({t: v / scale for t, v in profile.tag_affinity.items()})
        score = np.zeros(len(idx.ids))
        for j in np.flatnonzero(affinity):  # liked tags weigh their relevance, disliked ones 0.8 per carrier
            if affinity[j] > 0:
                score += affinity[j] * idx.tag_relevance[:, j]
            else:
                score += (0.8 * affinity[j]) * idx.carries[:, j]
        score *= idx.inv_sqrt_tags
        if cfg.w_preference != 1.0:
            score *= cfg.w_preference
        score += cfg.w_relevance * idx.relevance
        if profile.current_text:
            if query is None:
                query = self.repository.embedder.embed([profile.current_text])[0]
            if said is None:
                said = text_signals(profile.current_text).tags
            current = np.maximum(idx.similarity(query), 0.0).astype(np.float64)
            current += 0.5 * np.clip(idx.tag_product(idx.carries, idx.tag_vector(said)), -2.0, 2.0)
            current *= cfg.w_current
            score += current
        # difficulty (1..5) and setting take few values: look their fit up instead of computing it per task
        difficulty_fit = np.array([0.0] + [1.0 - abs(d - profile.difficulty) / 4.0 for d in range(1, 6)])
        social_fit = np.array([1.0 - abs(profile.social - 0.0), 1.0 - abs(profile.social - 1.0), 0.5])
        score += np.take(cfg.w_difficulty * difficulty_fit, idx.level)
        score += np.take(cfg.w_social * social_fit, idx.social)
        return score

    def recommend(self, profile: PreferenceProfile, k: int = 10, filters: TaskFilter | None = None) -> list[Recommendation]:
        """The ``k`` best tasks with reasons, scored over the whole index. Implements PER-b2, PER-e1, PER-e2."""
        if k < 1:
            raise ValueError(f"`k` must be >= 1, got {k}")
        if self.learned is not None:
            return super().recommend(profile, k, filters)
        filters = replace(filters or TaskFilter(), for_user=profile.user_id)
        filters.exclude_ids = set(filters.exclude_ids) | self._excluded(profile)
        said = text_signals(profile.current_text).tags if profile.current_text else {}
        query = self.repository.embedder.embed([profile.current_text])[0] if profile.current_text else None
        idx = self.repository.index
        if len(idx.ids) != len(self.repository):  # an add is between the repository and the index: wait for it
            with self.repository._lock:  # (lock order: repository, then index — as add and rebuild take them)
                if len(idx.ids) != len(self.repository):  # still apart: something bypassed the index
                    idx.rebuild()
        with idx.lock:
            score = self.scores(profile, said, query)
            mine = np.fromiter(idx.owner_rows.get(profile.user_id, ()), dtype=np.int64)
            kept = score[mine]
            score[idx.owned_rows()] = -np.inf  # tasks made for other users are never shown
            score[mine] = kept
            picked = self._exact_top(profile, score, filters, said, query, k)
        out = []
        for task, parts, liked, disliked, task_score in picked:
            shown, changes = adjust_task(task, profile) if self.config.adjust else (task, [])
            reason = self._reason(profile, task, parts, liked, disliked, said, changes)
            out.append(Recommendation(shown, float(task_score), reason, parts, changes, task.task_id))
        return out

    def _exact_top(self, profile: PreferenceProfile, score: np.ndarray, filters: TaskFilter,
                   said: dict[str, float], query: np.ndarray | None, k: int) -> list[tuple]:
        """The exact top ``k`` accepted tasks: (task, parts, liked, disliked, score), best first."""
        ids, get = self.repository.index.ids, self.repository.get
        order = self._top(score, ids, k + len(filters.exclude_ids) + 32)
        chosen = []
        for i in order:
            if filters.accepts(get(ids[i])):
                chosen.append(i)
                if len(chosen) == k:
                    break
        if len(chosen) < k:  # hard filters ate the head: walk every visible task
            chosen = [i for i in self._top(score, ids, len(ids)) if filters.accepts(get(ids[i]))][:k]
        if not chosen:
            return []
        floor = float(score[chosen].min()) - 2 * self.tolerance
        exact = []
        for i in np.flatnonzero(score >= floor).tolist():
            task = get(ids[i])
            if not filters.accepts(task):
                continue
            current = float(self.repository.embedding(task.task_id) @ query) if query is not None else 0.0
            parts, liked, disliked = score_parts(profile, task, current, said)
            exact.append((task, parts, liked, disliked, weighted_score(self.config, parts)))
        exact.sort(key=lambda e: (-e[4], e[0].task_id))
        return exact[:k]

    @staticmethod
    def _top(score: np.ndarray, ids: list[str], m: int) -> list[int]:
        """Rows of the ``m`` best visible (finite-score) tasks by approximate score, best first (ties kept)."""
        if len(score) > m:
            rows = None
            if len(score) > 64 * (m + 64):  # a threshold from every 64th score usually leaves a few hundred rows
                sample = score[::64]
                t = np.partition(sample, len(sample) - (m // 64 + 4))[len(sample) - (m // 64 + 4)]
                rows = np.flatnonzero(score >= t)
                if len(rows) < m:  # too few above it: the exact way
                    rows = None
            if rows is None:
                rows = np.arange(len(score))
            keep = rows[np.argpartition(-score[rows], m - 1)[:m]]
            rows = rows[score[rows] >= score[keep].min()]  # keep every tie at the boundary
        else:
            rows = np.arange(len(score))
        rows = rows[np.isfinite(score[rows])]
        return sorted(rows.tolist(), key=lambda i: (-score[i], ids[i]))
