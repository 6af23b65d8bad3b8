"""PER-g1 latency paths: recommendations answered without waiting (``try_recommend`` gives way to a write of
the same user and to a first-time user, whose enrolment writes), and the writer telling a known idempotency
key before any side effect happens (media: no object stored for a retry)."""

from __future__ import annotations

import threading

import pytest


pytestmark = pytest.mark.clause("PER-g1")


def test_try_recommend_answers_like_recommend_and_never_waits(service):
    assert service.try_recommend("acct-1", 5) is None  # not enrolled yet: enrolment writes, so not inline
    assert service.store.count(service.subject("acct-1")) == 0
    service.observe_text("acct-1", "I love exploring ruins and solving puzzles")
    fast = service.try_recommend("acct-1", 5)
    assert fast is not None
    assert [r.task.task_id for r in fast] == [r.task.task_id for r in service.recommend("acct-1", 5)]

    held, release = threading.Event(), threading.Event()

    def writer_of_the_same_user() -> None:  # as a write holds the user's lock until its batch commits
        with service._lock(service.subject("acct-1")):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer_of_the_same_user)
    thread.start()
    try:
        assert held.wait(30)
        assert service.try_recommend("acct-1", 5) is None  # gives way instead of blocking the event loop
    finally:
        release.set()
        thread.join(30)
    assert service.try_recommend("acct-1", 5) is not None


def test_writer_knows_a_key_before_the_retry_does_anything(service):
    subject = service.subject("acct-1")
    assert service.writer.known(subject, "media-1") is None
    first = service.observe_text("acct-1", "a picture of the harbour", idempotency_key="media-1")
    known = service.writer.known(subject, "media-1")
    assert known is not None
    result = known.result(30)
    assert result.interaction_id == first.interaction_id and result.duplicate
    assert service.writer.known(service.subject("acct-2"), "media-1") is None  # keys are per user
    with pytest.raises(ValueError, match="idempotency_key"):
        service._first(subject, "k" * 201)
    assert service._first(subject, "media-1").interaction_id == first.interaction_id
