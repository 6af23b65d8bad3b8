"""Ranking quality of the learned recommender (PER-c1, PER-e2): it beats popularity where there is signal
and falls back to popularity where there is none.

No dense real interaction log with a redistributable licence is shipped (the Open Bandit logs hold
4-13 held-out clicks per file; MovieLens may not be redistributed), so the "signal" logs here are
generated in the test from a stated latent structure: users belong to taste groups, each group
prefers its own block of items, and item popularity is skewed. The "no signal" log draws every item
from the same popularity curve, so nothing personal can be learned. Measured numbers on real logs
(MovieLens-100k, Open Bandit) are in docs/CONFORMANCE.md and the issue note.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from gaiverse.personalization.evaluate import evaluate_recommend

from .conftest import OBD

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _write_log(path: Path, n_users: int, n_items: int, per_user: int, personal: float, seed: int,
               start_days: float = 30.0) -> Path:
    """A gaiverse CSV: each user completes ``per_user`` distinct items over time; with probability
    ``personal`` an item comes from the user's group block, otherwise from the global popularity curve."""
    rng = np.random.default_rng(seed)
    groups = 5
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    blocks = np.array_split(rng.permutation(n_items), groups)
    rows = ["timestamp,user_id,event,item_id"]
    for u in range(n_users):
        block = blocks[u % groups]
        start = rng.uniform(0, start_days)
        chosen: list[int] = []
        while len(chosen) < per_user:
            item = int(rng.choice(block)) if rng.random() < personal else int(rng.choice(n_items, p=popularity))
            if item not in chosen:
                chosen.append(item)
        for j, item in enumerate(chosen):
            ts = T0 + timedelta(days=start + j * rng.uniform(0.2, 1.0))
            rows.append(f"{ts.isoformat()},u{u},complete,i{item}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _per_user_split(path: Path, tmp: Path, last: int = 3) -> tuple[Path, Path]:
    """Each user's ``last`` latest interactions go to the test file (the --train/--test protocol)."""
    header, *rows = path.read_text().splitlines()
    by_user: dict[str, list[str]] = {}
    for row in rows:
        by_user.setdefault(row.split(",")[1], []).append(row)
    train, test = [header], [header]
    for user_rows in by_user.values():
        user_rows.sort()
        train += user_rows[:-last]
        test += user_rows[-last:]
    (tmp / "train.csv").write_text("\n".join(train) + "\n")
    (tmp / "test.csv").write_text("\n".join(test) + "\n")
    return tmp / "train.csv", tmp / "test.csv"


@pytest.mark.clause("PER-c1")
def test_model_beats_popularity_where_users_have_structure(tmp_path):
    log = _write_log(tmp_path / "signal.csv", n_users=300, n_items=120, per_user=15, personal=0.6, seed=1)
    train, test = _per_user_split(log, tmp_path)
    r = evaluate_recommend(train=train, test=test)
    m, pop = r["metrics"], r["baselines"]["popularity"]
    assert r["model"]["selected"].startswith("ease"), r["model"]["validation"]
    assert m["recall@10"] > 1.5 * pop["recall@10"]
    assert m["ndcg@10"] > pop["ndcg@10"]
    diff = r["ci95"]["model_minus_popularity"]
    assert diff["recall@10"]["ci95"][0] > 0 and diff["ndcg@10"]["ci95"][0] > 0
    assert m["coverage@10"] > pop["coverage@10"]


@pytest.mark.clause("PER-e2")
def test_time_split_of_one_log_also_beats_popularity(tmp_path):
    log = _write_log(tmp_path / "signal.csv", n_users=300, n_items=120, per_user=15, personal=0.6, seed=2,
                     start_days=3.0)  # users active throughout, so most test users have a history
    r = evaluate_recommend(log)
    assert r["metrics"]["ndcg@10"] > r["baselines"]["popularity"]["ndcg@10"]
    assert r["ci95"]["model_minus_popularity"]["ndcg@10"]["ci95"][0] > 0
    assert r["model"]["validation"]["events"] >= 10


@pytest.mark.clause("PER-e2")
def test_without_personal_signal_the_model_falls_back_to_popularity(tmp_path):
    log = _write_log(tmp_path / "flat.csv", n_users=300, n_items=120, per_user=15, personal=0.0, seed=3)
    train, test = _per_user_split(log, tmp_path)
    r = evaluate_recommend(train=train, test=test)
    low = r["ci95"]["model_minus_popularity"]["ndcg@10"]["ci95"][0]
    assert r["metrics"]["ndcg@10"] >= r["baselines"]["popularity"]["ndcg@10"] - 0.01, r["model"]["validation"]
    assert low > -0.03


@pytest.mark.clause("PER-e2")
def test_sparse_bandit_log_ties_popularity_and_reports_intervals():
    """bts/women keeps 4 held-out clicks: too few to choose a model with, so no fitted noise is ranked."""
    r = evaluate_recommend(OBD / "bts" / "women" / "women.csv")
    assert r["model"]["validation"]["events"] < 10
    assert r["model"]["selected"].startswith("affinity") or r["model"]["selected"] == "popularity"
    assert r["metrics"]["ndcg@10"] >= r["baselines"]["popularity"]["ndcg@10"]
    for policy in ("model", "popularity", "random", "model_minus_popularity"):
        low, high = r["ci95"][policy]["recall@10"]["ci95"]
        assert low <= r["ci95"][policy]["recall@10"]["value"] <= high
