"""`gaiverse eval avatar-policy`: the trained decision policy vs the heuristic baseline on held-out users.

Held-out users come from seeds the training never drew and state their wishes with phrase templates
the training never used (``policy_env.HELDOUT_TEMPLATES``). Both deciders see the same parsed
capture and wishes; satisfaction is scored without rating noise. Reports mean satisfaction, each
component, the paired difference with a bootstrap 95 % interval and the share of users for whom the
policy is better. Output: the JSON object of EVAL.md. Implements the evaluation of AV-b2/AV-b3.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from gaiverse.avatar.decision import DEFAULT_POLICY_DIR, HeuristicDecider, PolicyDecider
from gaiverse.avatar.policy_env import WEIGHTS, reward, sample_users, satisfaction

HELDOUT_SEED = 900_001
"""Training draws users from seeds 0 .. seed*100003+iterations; this one is far outside."""


def _summary(p) -> dict[str, Any]:
    return {"style": p.style, "hair_style": p.hair_style, "colours": p.colours_srgb(),
            "height_m": round(p.height_m, 3), "pitch_semitones": round(p.pitch_semitones, 2),
            "speaking_rate": round(p.speaking_rate, 3), "expressiveness": round(p.expressiveness, 3)}


def evaluate_avatar_policy(policy_dir: Path | str | None = None, users: int = 1000, seed: int = HELDOUT_SEED,
                           list_items: int = 50, n_boot: int = 1000) -> dict[str, Any]:
    """The EVAL.md dict for the policy in ``policy_dir`` (default: the shipped checkpoint)."""
    if users < 10:
        raise ValueError(f"`users` must be >= 10, got {users}")
    started = time.perf_counter()
    policy_dir = Path(policy_dir) if policy_dir is not None else DEFAULT_POLICY_DIR
    policy, baseline = PolicyDecider.load(policy_dir), HeuristicDecider()
    population = sample_users(users, seed=seed, heldout=True)
    scores = {"policy": [], "heuristic": []}
    parts = {"policy": {k: [] for k in WEIGHTS}, "heuristic": {k: [] for k in WEIGHTS}}
    items = []
    for i, user in enumerate(population):
        chosen = {"policy": policy.decide(user.analysis, user.prefs),
                  "heuristic": baseline.decide(user.analysis, user.prefs)}
        for name, params in chosen.items():
            scores[name].append(reward(user, params))
            for k, v in satisfaction(user, params).items():
                parts[name][k].append(v)
        if i < list_items:
            items.append({"user": i, "said": user.text, "parsed": user.prefs.matched,
                          "policy": _summary(chosen["policy"]), "heuristic": _summary(chosen["heuristic"]),
                          "policy_satisfaction": round(scores["policy"][-1], 4),
                          "heuristic_satisfaction": round(scores["heuristic"][-1], 4)})
    pol, heu = np.array(scores["policy"]), np.array(scores["heuristic"])
    diff = pol - heu
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(1)

    def block(name: str) -> dict[str, float]:
        out = {"satisfaction": float(np.mean(scores[name]))}
        out.update({f"{k}_satisfaction": float(np.mean(v)) for k, v in parts[name].items()})
        return out

    metrics = block("policy")
    return {
        "eval": "avatar-policy", "data": [f"simulated held-out users (seed {seed}, unseen phrase templates)"],
        "n": users, "metrics": metrics, "baseline": {"name": "heuristic", **block("heuristic")},
        "lower_is_better": {k: False for k in metrics},
        "difference": {"mean": float(diff.mean()), "ci95": [float(np.quantile(boot, 0.025)),
                                                            float(np.quantile(boot, 0.975))],
                       "policy_better_share": float((diff > 1e-9).mean()),
                       "policy_worse_share": float((diff < -1e-9).mean())},
        "policy": {"name": "ppo residual policy", "checkpoint": str(policy_dir), **{
            k: policy.meta.get(k) for k in ("curve_first", "curve_last", "seconds")}},
        "items": items, "seconds": round(time.perf_counter() - started, 3),
        "checkpoint": str(policy_dir / "MODEL_CARD.md"),
    }
