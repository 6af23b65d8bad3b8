"""PPO training of the avatar decision policy in the satisfaction environment (AV-b2 deep RL, AV-b3 learning).

Each episode is one decision (a contextual bandit): observe a user's capture + wishes, act (style,
hair style and corrections to the heuristic's parameters), receive the user's noisy satisfaction.
PPO with a clipped objective and a learned value baseline; several epochs of minibatch updates per
batch of users. Deterministic for a given seed on CPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from gaiverse.avatar.decision import (HeuristicDecider, PolicyDecider, PolicyNet, apply_action,
                                      heuristic_priors)
from gaiverse.avatar.policy_env import SimUser, reward, sample_users

log = logging.getLogger(__name__)


@dataclass
class PolicyTrainConfig:
    """PPO schedule; the defaults train in a few minutes on 2 CPU cores."""

    iterations: int = 250
    """Batches of fresh users."""
    batch_users: int = 1024
    """Users (episodes) per batch."""
    epochs: int = 4
    """PPO passes over each batch."""
    minibatch: int = 256
    lr: float = 1e-3
    clip: float = 0.2
    """PPO ratio clip."""
    entropy: float = 1e-3
    """Entropy bonus on the categorical heads."""
    hidden: int = 128
    seed: int = 0


def _observe(users: list[SimUser]):
    heuristic = HeuristicDecider()
    bases = [heuristic.decide(u.analysis, u.prefs) for u in users]
    obs = np.stack([np.concatenate([u.analysis.vector(), u.prefs.vector()]) for u in users])
    priors = [heuristic_priors(b) for b in bases]
    style_prior = np.stack([p[0] for p in priors])
    hair_prior = np.stack([p[1] for p in priors])
    return bases, torch.from_numpy(obs), torch.from_numpy(style_prior), torch.from_numpy(hair_prior)


def _dists(net: PolicyNet, obs, sp, hp):
    mean, log_std, style_logits, hair_logits, value = net(obs, sp, hp)
    cont = torch.distributions.Normal(mean, log_std.exp())
    return cont, torch.distributions.Categorical(logits=style_logits), \
        torch.distributions.Categorical(logits=hair_logits), value


def train_policy(config: PolicyTrainConfig | None = None,
                 progress: Callable[[int, float], None] | None = None) -> tuple[PolicyDecider, list[float]]:
    """Train a policy; returns it and the mean reward of each batch (the learning curve)."""
    cfg = config or PolicyTrainConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 128-unit MLP: one thread is faster than two fighting over a busy machine
    try:
        return _train(cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: PolicyTrainConfig, progress: Callable[[int, float], None] | None) -> tuple[PolicyDecider, list[float]]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + 7)
    net = PolicyNet(hidden=cfg.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    curve: list[float] = []
    started = time.perf_counter()
    for it in range(cfg.iterations):
        users = sample_users(cfg.batch_users, seed=cfg.seed * 100_003 + it)
        bases, obs, sp, hp = _observe(users)
        with torch.no_grad():
            cont_d, style_d, hair_d, value = _dists(net, obs, sp, hp)
            cont_a, style_a, hair_a = cont_d.sample(), style_d.sample(), hair_d.sample()
            old_logp = cont_d.log_prob(cont_a).sum(-1) + style_d.log_prob(style_a) + hair_d.log_prob(hair_a)
        rewards = torch.tensor([reward(u, apply_action(b, c.numpy(), int(s), int(h)), rng)
                                for u, b, c, s, h in zip(users, bases, cont_a, style_a, hair_a)], dtype=torch.float32)
        adv = rewards - value
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        for _ in range(cfg.epochs):
            for idx in torch.randperm(len(users)).split(cfg.minibatch):
                c_d, s_d, h_d, v = _dists(net, obs[idx], sp[idx], hp[idx])
                logp = c_d.log_prob(cont_a[idx]).sum(-1) + s_d.log_prob(style_a[idx]) + h_d.log_prob(hair_a[idx])
                ratio = (logp - old_logp[idx]).exp()
                policy_loss = -torch.min(ratio * adv[idx], ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv[idx]).mean()
                value_loss = (v - rewards[idx]).pow(2).mean()
                entropy = (s_d.entropy() + h_d.entropy()).mean()
                opt.zero_grad()
                (policy_loss + 0.5 * value_loss - cfg.entropy * entropy).backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
        curve.append(float(rewards.mean()))
        if progress:
            progress(it, curve[-1])
    first, last = (curve[0], curve[-1]) if curve else (float("nan"), float("nan"))
    log.info("avatar policy: %d iterations x %d users in %.1f s, batch reward %.3f -> %.3f",
             cfg.iterations, cfg.batch_users, time.perf_counter() - started, first, last)
    meta = {"config": asdict(cfg), "curve_first": first, "curve_last": last,
            "seconds": round(time.perf_counter() - started, 1), "hidden": cfg.hidden}
    return PolicyDecider(net, meta), curve
