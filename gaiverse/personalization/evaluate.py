"""Offline evaluation of the recommender on interaction logs it did not train on (`gaiverse eval recommend`).

Train on the earlier part of a log (split by time) or on an explicit train file, report on the later
part: recall@k, NDCG@k, coverage and novelty of the learned model next to popularity and random
baselines computed in the same run. Bandit logs (every row with a propensity, e.g. the Open Bandit
Dataset) also get off-policy estimates (IPW, self-normalised IPW and doubly robust, bootstrap 95 %
intervals) of the click rate of a policy that fills the page's slots with its top items, against the
logged policy's observed click rate. Output: the JSON object of EVAL.md.
Implements the offline evaluation of PER-e1 and PER-e2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaiverse.personalization.implicit_feedback import (ImplicitFeedbackModel, RankingEvents, RankingModel,
                                                        RankingModelConfig, event_contexts, per_event_metrics,
                                                        ranking_events)
from gaiverse.personalization.interaction_log import InteractionLog, read_interaction_log, split_by_time
from gaiverse.personalization.offpolicy import bootstrap, dr_terms, ipw_terms, top_slots_policy

log = logging.getLogger(__name__)

POLICIES = ("model", "popularity", "random")


@dataclass
class RecommendEvalConfig:
    """Knobs of the evaluation; defaults are what `gaiverse eval recommend` uses."""

    k: int = 10
    """Cut-off of the ranking metrics."""
    train_fraction: float = 0.7
    """Share of rows (by time) used for training when one log is given."""
    seed: int = 0
    """Seed for the random baseline, tie-breaking and the bootstrap."""
    n_bootstrap: int = 1000
    """Bootstrap resamples for the off-policy intervals."""
    max_listed: int = 500
    """At most this many evaluation items are listed under ``items``."""
    model: RankingModelConfig = field(default_factory=RankingModelConfig)
    """The learned model's candidates and selection rule."""


def _policy_metrics(scores: np.ndarray, ev: RankingEvents, k: int, self_info: np.ndarray,
                    tie: np.ndarray) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Mean metrics, per-event recall/NDCG (for the bootstrap) and the top-k lists of one policy."""
    recalls, ndcgs, tops = per_event_metrics(scores, ev, k, tie)
    n_items = scores.shape[1]
    metrics = {f"recall@{k}": float(recalls.mean()) if len(recalls) else 0.0,
               f"ndcg@{k}": float(ndcgs.mean()) if len(ndcgs) else 0.0,
               f"coverage@{k}": len(np.unique(tops)) / n_items,
               f"novelty@{k}": float(self_info[tops].mean()) if len(tops) else 0.0}
    return metrics, {f"recall@{k}": recalls, f"ndcg@{k}": ndcgs}, tops


def _ranking_intervals(per_event: dict[str, dict[str, np.ndarray]], cfg: RecommendEvalConfig) -> dict[str, Any]:
    """Percentile bootstrap over test events (shared resamples) of each policy's recall/NDCG and of the
    paired difference model − popularity; with few events these intervals are wide, which is the point."""
    terms = {f"{policy}/{metric}": values for policy, metrics in per_event.items() for metric, values in metrics.items()}
    for metric in per_event["model"]:
        terms[f"model_minus_popularity/{metric}"] = per_event["model"][metric] - per_event["popularity"][metric]
    if not len(next(iter(terms.values()))):
        return {}
    est = bootstrap(terms, n_boot=cfg.n_bootstrap, seed=cfg.seed)
    out: dict[str, Any] = {}
    for name, e in est.items():
        group, metric = name.split("/")
        out.setdefault(group, {})[metric] = e.as_dict()
    return out


def _score_matrices(model: RankingModel, train: InteractionLog, contexts: InteractionLog,
                    seed: int) -> dict[str, np.ndarray]:
    n, n_items = len(contexts.frame), len(model.items)
    pos = train.frame.loc[(train.frame["reward"] > 0) & train.frame["item_id"].notna(), "item_id"].astype(str)
    counts = pos.value_counts().reindex(model.items, fill_value=0).to_numpy(dtype=float)
    rng = np.random.default_rng(seed + 1)
    return {"model": model.predict_matrix(contexts),
            "popularity": np.broadcast_to(counts, (n, n_items)),
            "random": rng.random((n, n_items))}


def _off_policy(test: InteractionLog, scores: dict[str, np.ndarray], q_model: np.ndarray, items: list[str],
                tie: np.ndarray, cfg: RecommendEvalConfig) -> dict[str, Any]:
    """IPW / SNIPW / DR click-rate estimates; ``q_model`` is the DR reward model's (n, K) click probabilities."""
    tf = test.frame
    index = {item: i for i, item in enumerate(items)}
    known = tf["item_id"].astype(str).isin(index).to_numpy()
    if not known.all():
        log.warning("%d test rows show items unknown at training time; left out of off-policy estimates",
                    int((~known).sum()))
    reward = tf["reward"].to_numpy(dtype=float)[known]
    pscore = tf["propensity"].to_numpy(dtype=float)[known]
    action = tf["item_id"].astype(str)[known].map(index).to_numpy()
    slots = int(max(1, tf["position"].dropna().nunique()))
    q_hat = q_model[known]
    terms, weights = {"logged": reward}, {}
    for name in POLICIES:
        if name == "random":
            pi = np.full((len(reward), len(items)), 1.0 / len(items))
        else:
            pi = top_slots_policy(scores[name][known], slots, tie)
        terms[f"{name}/ipw"] = ipw_terms(reward, pscore, pi, action)
        terms[f"{name}/snipw"] = terms[f"{name}/ipw"]
        weights[f"{name}/snipw"] = pi[np.arange(len(reward)), action] / pscore
        terms[f"{name}/dr"] = dr_terms(reward, pscore, pi, action, q_hat)
    est = bootstrap(terms, weights, n_boot=cfg.n_bootstrap, seed=cfg.seed)
    result: dict[str, Any] = {
        "policy": f"each of the page's {slots} slots shows one of the policy's top {slots} items "
                  f"(uniform over slots; the random baseline is uniform over all {len(items)} items)",
        "n_rows": int(len(reward)), "clicks": int(reward.sum()),
        "logged": {"ctr": est["logged"].as_dict()}}
    for name in POLICIES:
        result[name] = {m: est[f"{name}/{m}"].as_dict() for m in ("ipw", "snipw", "dr")}
        matched = weights[f"{name}/snipw"] > 0
        result[name]["matched_rows"] = int(matched.sum())
        result[name]["matched_clicks"] = int(reward[matched].sum())
    result["note"] = ("percentile bootstrap over test rows; when a policy's matched rows hold no click, its IPW "
                      "interval collapses to [0, 0] and understates the uncertainty (see matched_clicks)")
    return result


def evaluate_recommend(interactions: str | Path | None = None, *, train: str | Path | None = None,
                       test: str | Path | None = None, item_context: str | Path | None = None,
                       config: RecommendEvalConfig | None = None) -> dict[str, Any]:
    """Train on the earlier part of a log (or ``train``), report on the later part (or ``test``).

    Returns the EVAL.md dict. Raises ``InteractionLogError`` when a file cannot be read.
    Implements PER-e1/PER-e2 offline evaluation.
    """
    cfg = config or RecommendEvalConfig()
    started = time.perf_counter()
    if (interactions is None) == (train is None or test is None):
        raise ValueError("give either `interactions` or both `train` and `test`")
    if interactions is not None:
        full = read_interaction_log(interactions, item_context)
        train_log, test_log = split_by_time(full, cfg.train_fraction)
        data = [str(interactions)]
    else:
        train_log = read_interaction_log(train, item_context)
        test_log = read_interaction_log(test, item_context)
        data = [str(train), str(test)]
    catalogue = sorted(set(test_log.frame["item_id"].dropna().astype(str)))
    if test_log.item_context is not None:
        catalogue = sorted(set(catalogue) | set(test_log.item_context.index.astype(str)))
    # a test set that starts before training ends was cut per user: validate the same way
    per_user = bool(test_log.frame["ts"].min() < train_log.frame["ts"].max()) and not test_log.has_propensity
    model = RankingModel(cfg.model).fit(train_log, catalogue, per_user_validation=per_user)
    items = model.items
    index = {item: i for i, item in enumerate(items)}
    tie = np.random.default_rng(cfg.seed).random(len(items))
    train_pos = train_log.frame.loc[train_log.frame["reward"] > 0, "item_id"].dropna().astype(str)
    counts = train_pos.value_counts().reindex(items, fill_value=0).to_numpy(dtype=float)
    self_info = -np.log2((counts + 1.0) / (counts.sum() + len(items)))

    ev = ranking_events(train_log, test_log, index)
    if test_log.has_propensity:  # off-policy estimates need every row's scores
        contexts, align = test_log, np.asarray(ev.rows, dtype=np.int64)
    else:
        contexts, align = event_contexts(test_log, ev)
    scores = _score_matrices(model, train_log, contexts, cfg.seed)
    results, per_event, tops = {}, {}, {}
    for name in POLICIES:
        results[name], per_event[name], tops[name] = _policy_metrics(scores[name][align], ev, cfg.k, self_info, tie)

    listed = []
    tf = test_log.frame
    model_scores = scores["model"][align]
    for j, row in enumerate(ev.rows[: cfg.max_listed]):
        order = np.argsort(-(model_scores[j] + 1e-9 * tie), kind="stable")
        ranks = sorted(int(np.flatnonzero(order == i)[0]) + 1 for i in ev.relevant[j])
        listed.append({
            "user": ev.users[j], "ts": tf["ts"].iat[row].isoformat(), "source_row": int(tf["row"].iat[row]),
            "expected": sorted(items[i] for i in ev.relevant[j]),
            "recommended": [items[i] for i in tops["model"][j]], "rank_of_expected": ranks,
            "hit": any(i in ev.relevant[j] for i in tops["model"][j]),
            "popularity_hit": any(i in ev.relevant[j] for i in tops["popularity"][j]),
            "random_hit": any(i in ev.relevant[j] for i in tops["random"][j])})

    metrics = dict(results["model"])
    baselines = {name: dict(results[name]) for name in ("popularity", "random")}
    ope = None
    if test_log.has_propensity:
        click_model = model.click_model() or ImplicitFeedbackModel(cfg.model.features).fit(train_log, items)
        ope = _off_policy(test_log, scores, click_model.predict_matrix(test_log), items, tie, cfg)
        for name, target in (("model", metrics), ("popularity", baselines["popularity"]),
                             ("random", baselines["random"])):
            target["ipw_ctr"] = ope[name]["ipw"]["value"]
            target["dr_ctr"] = ope[name]["dr"]["value"]
    out: dict[str, Any] = {
        "eval": "recommend", "data": data, "n": len(ev.rows), "metrics": metrics,
        "baseline": {"name": "popularity", **baselines["popularity"]},
        "baselines": {"popularity": baselines["popularity"], "random": baselines["random"]},
        "lower_is_better": {name: False for name in metrics},
        "ci95": _ranking_intervals(per_event, cfg),
        "split": {"train_rows": len(train_log.frame), "test_rows": len(test_log.frame),
                  "train_until": train_log.frame["ts"].max().isoformat(),
                  "test_from": test_log.frame["ts"].min().isoformat(),
                  "train_positives": int((train_log.frame["reward"] > 0).sum()),
                  "test_positives": int((test_log.frame["reward"] > 0).sum())},
        "n_items": len(items), "format": test_log.format,
        "model": model.describe(),
        "novelty": "mean self-information -log2 p(item) of recommended items, p from training positives",
        "intervals": "ci95: percentile bootstrap over test events; model_minus_popularity is the paired difference",
        "items": listed, "items_truncated": len(ev.rows) > cfg.max_listed,
        "seconds": round(time.perf_counter() - started, 3), "checkpoint": None}
    if ope is not None:
        out["off_policy"] = ope
        out["logged_policy"] = {"ctr": ope["logged"]["ctr"]["value"], "ci95": ope["logged"]["ctr"]["ci95"]}
    return out
