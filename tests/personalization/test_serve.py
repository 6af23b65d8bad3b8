"""PER-g1 scale-out: two Ray Serve recommendation replicas over the service's DuckDB file, answering like the
in-process service, both serving, refreshed after a write, proxy on loopback only."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gaiverse.personalization.service import PersonalizationService
from gaiverse.privacy import PURPOSES, KeyRing
from gaiverse.proc import free_port

pytestmark = pytest.mark.slow

ACCOUNTS = {"acct-a": "I love exploring ruins and old maps", "acct-b": "puzzles and riddles, no combat",
            "acct-c": "a hard fight against a dragon with friends"}


def _listeners(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _same(service: PersonalizationService, account: str, answer: dict) -> None:
    expected = service.recommend(account, k=5)
    assert [i["original_task_id"] for i in answer["items"]] == [r.original_task_id for r in expected]
    assert [i["score"] for i in answer["items"]] == pytest.approx([r.score for r in expected], abs=1e-9)
    assert [i["reason"] for i in answer["items"]] == [r.reason for r in expected]


@pytest.fixture
def serving(ray_local, tmp_path, kb):
    from ray import serve

    from ray_actors.personalization_serve import start

    service = PersonalizationService(tmp_path / "p.duckdb", KeyRing.load(tmp_path / "keys"), knowledge=kb)
    service.seed(include_srd=False)
    for account, text in ACCOUNTS.items():
        for purpose in PURPOSES:
            service.set_consent(account, purpose, True)
        service.observe_text(account, text)
    service.flush()
    port = free_port()
    handle = start(service.db.path, tmp_path / "keys", port, replicas=2)
    yield service, handle, port
    serve.shutdown()
    service.close()


@pytest.mark.clause("PER-g1")
def test_two_replicas_answer_like_the_in_process_service(serving):
    service, handle, port = serving
    assert _listeners(port) == {"0100007F"}  # 127.0.0.1 only, no 0.0.0.0 / :: listener
    subjects = {service.subject(a): a for a in ACCOUNTS}
    base = f"http://127.0.0.1:{port}/recommendations"

    def ask(subject: str) -> dict:
        response = httpx.get(base, params={"subject": subject, "k": 5}, timeout=60)
        response.raise_for_status()
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, [s for s in subjects for _ in range(12)]))
    assert len({a["replica"] for a in answers}) == 2  # both replicas served
    for subject, answer in zip([s for s in subjects for _ in range(12)], answers):
        _same(service, subjects[subject], answer)
    # an unknown pseudonym gets the ranking for a blank profile, as the service gives a user without consent
    blank = ask("u-nobody")
    assert len(blank["items"]) == 5 and blank["replica"]
    # a write bumps the version: the replicas reload and follow the service
    account = "acct-a"
    service.observe_text(account, "no more exploring; I want puzzles and a mystery in the library")
    service.flush()
    version = service.db.generation()
    for _ in range(100):
        answer = handle.recommend.remote(service.subject(account), 5).result()
        if answer["version"] == version:
            break
        time.sleep(0.2)
    assert answer["version"] == version
    _same(service, account, answer)
