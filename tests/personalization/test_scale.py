"""PER-g1: the single batching writer (exact counts, idempotent retries, flush on shutdown), reads of one's own
writes from memory, and the in-memory task index (same ranking as the per-task path, updated incrementally)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor

import pytest

from gaiverse.personalization.database import Database
from gaiverse.personalization.indexes import IndexedRecommender, IndexedTaskRepository
from gaiverse.personalization.interaction_store import InteractionStore
from gaiverse.personalization.preference_analysis import PreferenceProfile
from gaiverse.personalization.recommender import Recommender
from gaiverse.personalization.write_behind import InteractionWriter, WriterConfig

from .conftest import T0


def _db_count(path, sql="SELECT count(*) FROM interactions", params=()):
    with Database(path).read() as con:
        return con.execute(sql, list(params)).fetchone()[0]


@pytest.mark.clause("PER-g1")
def test_concurrent_writers_store_each_interaction_once_even_when_retried(tmp_path):
    store = InteractionStore(tmp_path / "i.duckdb")
    store.add_user("alice")
    store.add_user("bob")
    store.attach(InteractionWriter(store.db, WriterConfig(max_rows=64)), index=True)
    threads, per_thread = 12, 30

    def client(n: int) -> list[tuple[str, int]]:
        user = "alice" if n % 2 else "bob"
        out = []
        for j in range(per_thread):
            key = f"req-{n}-{j}"
            first = store.record(user, text=f"message {n}/{j}", idempotency_key=key)
            retry, duplicate = store.record_once(user, text=f"message {n}/{j}", idempotency_key=key)
            assert duplicate and retry.interaction_id == first.interaction_id and retry.text == first.text
            out.append((key, first.interaction_id))
        return out

    with ThreadPoolExecutor(threads) as pool:
        results = [r for chunk in pool.map(client, range(threads)) for r in chunk]
    # the same key submitted concurrently from several threads: one row
    with ThreadPoolExecutor(8) as pool:
        racing = list(pool.map(lambda _: store.record_once("alice", text="race", idempotency_key="race-1"), range(8)))
    assert len({it.interaction_id for it, _ in racing}) == 1 and sum(not dup for _, dup in racing) == 1
    store.flush()
    expected = threads * per_thread + 1
    assert _db_count(store.path) == expected
    assert _db_count(store.path, "SELECT count(DISTINCT interaction_id) FROM interactions") == expected
    assert _db_count(store.path, "SELECT count(DISTINCT (user_id, idempotency_key)) FROM interactions") == expected
    assert len({i for _, i in results}) == threads * per_thread
    assert store.writer.batches < expected  # batched: fewer transactions than rows
    # a different user may use the same key: keys are scoped per user
    assert not store.record_once("bob", text="race", idempotency_key="race-1")[1]
    store.writer.close()


@pytest.mark.clause("PER-g1")
def test_a_user_reads_their_own_writes_at_once_and_they_are_committed_when_acknowledged(service):
    it = service.observe_text("acct-1", "I love puzzles and riddles", session_id="s1", idempotency_key="k1")
    history = service.history("acct-1")
    assert history[-1].interaction_id == it.interaction_id and history[-1].text == "I love puzzles and riddles"
    assert history[-1].session_id == "s1"
    # acknowledged means committed: a separate reader of the file sees the row already
    assert _db_count(service.db.path, "SELECT count(*) FROM interactions WHERE interaction_id = ?",
                     [it.interaction_id]) == 1
    again = service.observe_text("acct-1", "I love puzzles and riddles", session_id="s1", idempotency_key="k1")
    assert again.interaction_id == it.interaction_id and len(service.history("acct-1")) == len(history)
    assert service.profile("acct-1").n_inputs == len(history)  # the retry did not count twice
    # the in-memory history equals the database's after a reload from the file
    service.store.index.reload()
    assert [i.interaction_id for i in service.history("acct-1")] == [i.interaction_id for i in history]


@pytest.mark.clause("PER-g1")
def test_a_new_input_changes_the_next_recommendation_through_the_incremental_index(service):
    before = service.recommend("acct-1", k=5)
    service.observe_text("acct-1", "no combat please, I want puzzles, riddles and mysteries")
    after = service.recommend("acct-1", k=5)
    assert [r.original_task_id for r in after] != [r.original_task_id for r in before]
    assert any(tag in ("puzzle", "mystery") for tag in after[0].task.tags)
    assert "combat" not in after[0].task.tags
    # a completed task leaves the list, and its engagement reaches the index without a rebuild
    top = after[0].original_task_id
    row = service.repository.index.pos[top]
    popularity = service.repository.index.popularity[row]
    service.task_event("acct-1", top, "complete")
    assert service.repository.index.popularity[row] == popularity + 1
    assert top not in [r.original_task_id for r in service.recommend("acct-1", k=5)]
    service.flush()
    stored = _db_count(service.db.path, "SELECT data->>'$.engagement.counts.completed' FROM tasks WHERE task_id = ?", [top])
    assert int(stored) == service.repository.get(top).engagement.counts["completed"] >= 1


@pytest.mark.clause("PER-g1")
def test_indexed_recommender_ranks_like_the_per_task_recommender(repo):
    indexed = IndexedTaskRepository(db=repo.db)
    fast, slow = IndexedRecommender(indexed), Recommender(indexed)
    assert len(indexed) <= slow.config.candidate_limit  # the old path scores every task here
    explorer = PreferenceProfile("u1", tag_affinity={"exploration": 2.0, "combat": -1.0, "nature": 0.5},
                                 difficulty=3.0, social=0.2, current_text="a quiet walk by the lake")
    fighter = PreferenceProfile("u2", tag_affinity={"combat": 1.5, "dragon": 1.0}, difficulty=4.5, social=0.9,
                                completed={indexed.all()[0].task_id: T0}, last_ts=T0)
    for profile in (PreferenceProfile("u0"), explorer, fighter):
        a, b = fast.recommend(profile, k=10), slow.recommend(profile, k=10)
        assert [r.task.task_id for r in a] == [r.task.task_id for r in b]
        assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-6)
        assert [r.reason for r in a] == [r.reason for r in b]


@pytest.mark.clause("PER-g1")
def test_shutdown_commits_every_queued_write(tmp_path):
    store = InteractionStore(tmp_path / "i.duckdb")
    store.add_user("alice")
    writer = InteractionWriter(store.db, WriterConfig(max_rows=10, max_delay=0.2))
    now = datetime.now(timezone.utc)  # keys are remembered for a window of recent rows
    rows = [{"user_id": "alice", "ts": now, "modality": "text", "event": "message", "text": f"m{i}", "features": "{}",
             "source": "live"} for i in range(95)]
    futures = [writer.submit(row, f"k{i}") for i, row in enumerate(rows)]  # nobody waits for them
    writer.close()
    assert all(f.done() and not f.exception() for f in futures)
    assert _db_count(store.path) == 95
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(rows[0])
    # keys survive a restart: a retry after it is still recognised
    restarted = InteractionWriter(store.db)
    assert restarted.write(rows[3], "k3").duplicate
    restarted.close()
    assert _db_count(store.path) == 95


@pytest.mark.clause("PER-g1")
def test_erasure_and_export_see_writes_still_in_the_queue(service):
    service.writer.config.max_delay = 0.3
    done = threading.Event()

    def talk():
        for i in range(5):
            service.observe_text("acct-1", f"message {i}")
        done.set()

    worker = threading.Thread(target=talk)
    worker.start()
    worker.join()
    assert done.is_set()
    exported = service.export("acct-1")
    assert len(exported["interactions"]) == 5
    erased = service.erase("acct-1")
    assert erased["interactions"] == 5
    assert _db_count(service.db.path) == 0 and service.history("acct-1") == []
