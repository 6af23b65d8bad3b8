"""Off-policy estimates of a recommendation policy's click rate from bandit logs (IPW, SNIPW, DR).

Each estimator returns per-row contributions, so one bootstrap over rows gives confidence intervals
for every policy from the same resamples. Notation: ``pi_e`` is the evaluation policy's (n, K)
action distribution, ``action`` the logged item index, ``pscore`` the logging policy's probability of
that item in that slot, ``q_hat`` an (n, K) reward model. Position is ignored by ``pi_e`` (it puts
the same distribution in every slot), as in the Open Bandit Pipeline's examples.
Implements the off-policy part of the PER-e1/e2 offline evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def _check(reward: np.ndarray, pscore: np.ndarray, pi_e: np.ndarray, action: np.ndarray) -> None:
    n = len(reward)
    if pi_e.ndim != 2 or pi_e.shape[0] != n:
        raise ValueError(f"`pi_e` must have shape (n={n}, K), got {pi_e.shape}")
    if len(pscore) != n or len(action) != n:
        raise ValueError(f"`pscore` ({len(pscore)}) and `action` ({len(action)}) must have n={n} rows")
    if (pscore <= 0).any() or (pscore > 1).any():
        raise ValueError("`pscore` must be in (0, 1]")
    if not np.allclose(pi_e.sum(1), 1.0, atol=1e-6):
        raise ValueError("every row of `pi_e` must sum to 1")


def ipw_terms(reward: np.ndarray, pscore: np.ndarray, pi_e: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Inverse propensity weighting: r_i · pi_e(a_i|x_i) / pi_b(a_i|x_i), one term per row."""
    _check(reward, pscore, pi_e, action)
    return reward * pi_e[np.arange(len(reward)), action] / pscore


def dr_terms(reward: np.ndarray, pscore: np.ndarray, pi_e: np.ndarray, action: np.ndarray,
             q_hat: np.ndarray) -> np.ndarray:
    """Doubly robust: E_{pi_e}[q_hat(x, .)] + w_i (r_i - q_hat(x_i, a_i)), one term per row."""
    _check(reward, pscore, pi_e, action)
    rows = np.arange(len(reward))
    weight = pi_e[rows, action] / pscore
    return (pi_e * q_hat).sum(1) + weight * (reward - q_hat[rows, action])


@dataclass(frozen=True)
class Estimate:
    """A policy value with its bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | list[float]]:
        return {"value": self.value, "ci95": [self.low, self.high]}


def bootstrap(terms: dict[str, np.ndarray], weights: dict[str, np.ndarray] | None = None,
              n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, Estimate]:
    """Mean of each term vector with (1 - alpha) percentile intervals from shared row resamples.

    ``weights[name]`` given: a self-normalised estimate sum(terms) / sum(weights) (SNIPW).
    """
    if n_boot < 10:
        raise ValueError(f"`n_boot` must be >= 10, got {n_boot}")
    n = len(next(iter(terms.values())))
    rng = np.random.default_rng(seed)
    out: dict[str, Estimate] = {}
    chunks = [rng.integers(0, n, size=(min(200, n_boot - s), n)) for s in range(0, n_boot, 200)]
    for name, values in terms.items():
        w = None if weights is None else weights.get(name)
        stats = []
        for idx in chunks:
            num = values[idx].sum(1)
            stats.append(num / np.maximum(w[idx].sum(1), 1e-12) if w is not None else num / n)
        boot = np.concatenate(stats)
        point = values.sum() / max(w.sum(), 1e-12) if w is not None else values.mean()
        low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
        out[name] = Estimate(float(point), float(low), float(high))
    return out


def top_slots_policy(scores: np.ndarray, slots: int, tie_break: np.ndarray | None = None) -> np.ndarray:
    """The policy that shows its ``slots`` best-scored items, uniform over slots: (n, K) distribution."""
    n, k = scores.shape
    if not 1 <= slots <= k:
        raise ValueError(f"`slots` must be in 1..{k}, got {slots}")
    keyed = scores + (0 if tie_break is None else 1e-9 * tie_break)
    top = np.argpartition(-keyed, slots - 1, axis=1)[:, :slots]
    pi = np.zeros((n, k))
    np.put_along_axis(pi, top, 1.0 / slots, axis=1)
    return pi
