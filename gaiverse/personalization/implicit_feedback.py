"""A learned implicit-feedback model in torch: click/engagement probability from user context × item content.

    logit(x, a) = b + b_a + w_aff · log1p(affinity(x, a)) + pos_bias[slot]
                  + < mean_f P[f(x)] ,  Q[a] + mean_g V[g(a)] + W · num(a) >

``f(x)`` are the user's categorical context tokens (its id and ``user_feature_*`` values; OBD logs
have no user id, only hashed features), ``g(a)`` the item's categorical content tokens and
``num(a)`` its numeric features (``item_context`` columns, or task tags and difficulty). It is a
factorisation machine restricted to user×item crosses, trained with weighted binary cross-entropy
on logged impressions (non-clicked impressions are the negatives; a log with positives only gets
sampled negatives). Heavy L2 keeps it near the item-bias (popularity-by-rate) model when clicks are
few, as in the Open Bandit logs (~0.5 % click rate). Implements the learned model of PER-c1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from gaiverse.personalization.interaction_log import InteractionLog

log = logging.getLogger(__name__)


@dataclass
class ImplicitModelConfig:
    """Size and training schedule of the model; defaults are tuned for a few thousand impressions."""

    dim: int = 8
    """Size of the user and item factors."""
    epochs: int = 150
    """Full-batch Adam steps."""
    lr: float = 0.05
    """Adam learning rate."""
    l2_factors: float = 1e-3
    """L2 penalty on factor embeddings (per example, summed over used rows)."""
    l2_bias: float = 1e-3
    """L2 penalty on item biases (shrinks towards the global click rate)."""
    negatives: int = 4
    """Sampled negatives per positive when the log has no logged negatives."""
    seed: int = 0
    """Seed for initialisation and negative sampling (training is deterministic on CPU)."""


def _tokens(value: object) -> list[str]:
    return [v for v in str(value).split("|") if v] if value is not None and value == value else []


class _Net(nn.Module):
    def __init__(self, n_ctx: int, n_items: int, n_item_tok: int, n_num: int, n_pos: int, dim: int) -> None:
        super().__init__()
        self.ctx = nn.EmbeddingBag(n_ctx + 1, dim, mode="mean", padding_idx=0)
        self.item = nn.Embedding(n_items, dim)
        self.item_tok = nn.EmbeddingBag(n_item_tok + 1, dim, mode="mean", padding_idx=0)
        self.item_num = nn.Linear(max(n_num, 1), dim, bias=False)
        self.item_bias = nn.Embedding(n_items, 1)
        self.pos_bias = nn.Embedding(n_pos + 1, 1)
        self.global_bias = nn.Parameter(torch.zeros(1))
        self.w_aff = nn.Parameter(torch.zeros(1))
        for emb in (self.ctx, self.item, self.item_tok):
            nn.init.normal_(emb.weight, std=0.01)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.zeros_(self.pos_bias.weight)

    def item_vectors(self, item_tok: torch.Tensor, item_off: torch.Tensor, item_num: torch.Tensor) -> torch.Tensor:
        return self.item.weight + self.item_tok(item_tok, item_off) + self.item_num(item_num)

    def user_vectors(self, ctx_tok: torch.Tensor, ctx_off: torch.Tensor) -> torch.Tensor:
        return self.ctx(ctx_tok, ctx_off)


def _unique(lists: list[list[int]]) -> tuple[list[list[int]], np.ndarray]:
    """Distinct token lists and, per input row, the index of its list (contexts repeat a lot)."""
    seen: dict[tuple[int, ...], int] = {}
    inverse = np.array([seen.setdefault(tuple(t), len(seen)) for t in lists], dtype=np.int64)
    return [list(t) for t in seen], inverse


def _bag(lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """EmbeddingBag input: flat token tensor + offsets; empty bags get the padding token 0."""
    flat, offsets = [], []
    for toks in lists:
        offsets.append(len(flat))
        flat.extend(toks or [0])
    return torch.tensor(flat, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class ImplicitFeedbackModel:
    """Fit on an ``InteractionLog``, then score (context, item) pairs. Implements PER-c1 (learned model)."""

    def __init__(self, config: ImplicitModelConfig | None = None) -> None:
        self.config = config or ImplicitModelConfig()
        self.items: list[str] = []
        self._item_index: dict[str, int] = {}
        self._ctx_vocab: dict[str, int] = {}
        self._net: _Net | None = None

    # feature building
    def _ctx_tokens(self, log_: InteractionLog, grow: bool) -> list[list[int]]:
        cols = list(log_.user_features.columns)
        users = log_.frame["user_id"].astype(str).tolist()
        feats = log_.user_features.astype(str).to_numpy() if cols else np.empty((len(users), 0), dtype=object)
        out = []
        for i, user in enumerate(users):
            toks = [f"uid={user}"] + [f"{c}={feats[i, j]}" for j, c in enumerate(cols)]
            ids = []
            for tok in toks:
                if tok not in self._ctx_vocab and grow:
                    self._ctx_vocab[tok] = len(self._ctx_vocab) + 1
                if tok in self._ctx_vocab:
                    ids.append(self._ctx_vocab[tok])
            out.append(ids)
        return out

    def _item_features(self, item_context: pd.DataFrame | None) -> None:
        numeric = [] if item_context is None else [c for c in item_context.columns
                                                    if pd.api.types.is_numeric_dtype(item_context[c])]
        categorical = [] if item_context is None else [c for c in item_context.columns if c not in numeric]
        vocab: dict[str, int] = {}
        tok_lists, nums = [], []
        for item in self.items:
            row = item_context.loc[item] if item_context is not None and item in item_context.index else None
            toks = []
            for c in categorical:
                for v in _tokens(None if row is None else row[c]):
                    toks.append(vocab.setdefault(f"{c}={v}", len(vocab) + 1))
            tok_lists.append(toks)
            nums.append([float(row[c]) if row is not None else 0.0 for c in numeric] or [0.0])
        self._n_item_tok = len(vocab)
        self._item_tok, self._item_off = _bag(tok_lists)
        num = torch.tensor(nums, dtype=torch.float32)
        self._item_num = (num - num.mean(0)) / (num.std(0) + 1e-6) if len(self.items) > 1 else num

    def _affinity(self, log_: InteractionLog, item_idx: np.ndarray | None) -> torch.Tensor:
        """log1p affinity of each row for its item (item_idx) or for every catalogue item (None)."""
        n = len(log_.frame)
        if log_.affinity is None:
            return torch.zeros(n if item_idx is not None else (n, len(self.items)))
        col = {item: j for j, item in enumerate(log_.affinity_items)}
        cols = np.array([col.get(item, -1) for item in self.items])
        full = np.zeros((n, len(self.items)), dtype=np.float32)
        ok = cols >= 0
        full[:, ok] = log_.affinity[:, cols[ok]]
        full = np.log1p(np.clip(full, 0, None))
        if item_idx is None:
            return torch.from_numpy(full)
        return torch.from_numpy(full[np.arange(n), item_idx])

    # training
    def fit(self, train: InteractionLog, catalogue: list[str] | None = None) -> ImplicitFeedbackModel:
        """Train on the rows of ``train`` that name an item. ``catalogue``: every rankable item id."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        frame = train.frame
        has_item = frame["item_id"].notna().to_numpy()
        train = train.subset(has_item)
        frame = train.frame
        if frame.empty:
            raise ValueError(f"`train` ({train.source}) has no rows naming an item")
        known = set(frame["item_id"].astype(str))
        if train.item_context is not None:
            known |= set(train.item_context.index.astype(str))
        self.items = sorted(known | set(catalogue or []), key=lambda s: (len(s), s))
        self._item_index = {item: i for i, item in enumerate(self.items)}
        self._item_features(train.item_context)
        ctx = self._ctx_tokens(train, grow=True)
        item_idx = frame["item_id"].astype(str).map(self._item_index).to_numpy()
        y = (frame["reward"].to_numpy(dtype=float) > 0).astype(np.float32)
        pos = frame["position"].fillna(0).astype(int).clip(0, 10).to_numpy()
        aff = self._affinity(train, item_idx)
        if y.min() > 0:  # positives only: add sampled negatives
            reps = np.repeat(np.arange(len(y)), cfg.negatives)
            ctx += [ctx[i] for i in reps]
            item_idx = np.concatenate([item_idx, rng.integers(0, len(self.items), len(reps))])
            y = np.concatenate([y, np.zeros(len(reps), dtype=np.float32)])
            pos = np.concatenate([pos, pos[reps]])
            aff = torch.cat([aff, torch.zeros(len(reps))])
        self._net = _Net(len(self._ctx_vocab), len(self.items), self._n_item_tok, self._item_num.shape[1], 10, cfg.dim)
        net = self._net
        unique_ctx, ctx_rows = _unique(ctx)
        ctx_tok, ctx_off = _bag(unique_ctx)
        rows_t = torch.from_numpy(ctx_rows)
        items_t = torch.from_numpy(item_idx.astype(np.int64))
        pos_t = torch.from_numpy(pos.astype(np.int64))
        y_t = torch.from_numpy(y)
        rate = float(y.mean())
        with torch.no_grad():
            net.global_bias.fill_(float(np.log(max(rate, 1e-4) / max(1 - rate, 1e-4))))
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        for _ in range(cfg.epochs):
            opt.zero_grad()
            logits = self._logits(ctx_tok, ctx_off, rows_t, items_t, pos_t, aff)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y_t)
            penalty = cfg.l2_factors * (net.ctx.weight.pow(2).sum() + net.item.weight.pow(2).sum()
                                        + net.item_tok.weight.pow(2).sum() + net.item_num.weight.pow(2).sum())
            penalty = penalty + cfg.l2_bias * net.item_bias.weight.pow(2).sum()
            (loss + penalty).backward()
            opt.step()
        self._pos_mean = float(net.pos_bias.weight[1:4].detach().mean()) if pos.max() > 0 else 0.0
        log.info("implicit model: %d rows, %d positives, %d items, %d context tokens, final loss %.4f",
                 len(y), int(y.sum()), len(self.items), len(self._ctx_vocab), loss.item())
        return self

    def _logits(self, ctx_tok, ctx_off, rows_t, items_t, pos_t, aff) -> torch.Tensor:
        net = self._net
        users = net.user_vectors(ctx_tok, ctx_off)[rows_t]
        item_vecs = net.item_vectors(self._item_tok, self._item_off, self._item_num)[items_t]
        return ((users * item_vecs).sum(1) + net.item_bias(items_t).squeeze(1) + net.global_bias
                + net.pos_bias(pos_t).squeeze(1) + net.w_aff * aff)

    # scoring
    @torch.no_grad()
    def predict_matrix(self, contexts: InteractionLog) -> np.ndarray:
        """(n_rows, n_items) click probabilities of every catalogue item for each row's context."""
        if self._net is None:
            raise RuntimeError("the model is not fitted; call fit() first")
        net = self._net
        unique_ctx, ctx_rows = _unique(self._ctx_tokens(contexts, grow=False))
        ctx_tok, ctx_off = _bag(unique_ctx)
        users = net.user_vectors(ctx_tok, ctx_off)[torch.from_numpy(ctx_rows)]
        items = net.item_vectors(self._item_tok, self._item_off, self._item_num)
        logits = users @ items.T + net.item_bias.weight.T + net.global_bias + self._pos_mean
        logits = logits + net.w_aff * self._affinity(contexts, None)
        return torch.sigmoid(logits).numpy().astype(np.float64)


def log_from_store(frame: pd.DataFrame, tasks: list) -> InteractionLog:
    """An ``InteractionLog`` of stored task events (``InteractionStore.frame()``), with task content
    (tags, difficulty) as item features, so the model learns from the game's own users."""
    from gaiverse.personalization.interaction_log import DEFAULT_REWARD

    events = frame[frame["item_id"].notna() & (frame["event"] != "message")].reset_index(drop=True)
    reward = events["reward"].where(events["reward"].notna(), events["event"].map(DEFAULT_REWARD).fillna(0.0))
    normalised = pd.DataFrame({
        "ts": pd.to_datetime(events["ts"], utc=True), "user_id": events["user_id"].astype(str),
        "session_id": events["session_id"], "event": events["event"], "modality": events["modality"],
        "item_id": events["item_id"].astype(str), "text": events["text"].fillna(""), "reward": reward.astype(float),
        "propensity": events["propensity"].astype(float), "position": events["position"].astype("Int64"),
        "features": [{} for _ in range(len(events))], "media_key": events["media_key"],
        "row": events["interaction_id"].astype(int)})
    items = pd.DataFrame({"tags": ["|".join(t.tags) for t in tasks], "difficulty": [float(t.difficulty) for t in tasks]},
                         index=pd.Index([t.task_id for t in tasks], name="item_id"))
    return InteractionLog(normalised, "interaction store", "gaiverse", pd.DataFrame(index=normalised.index),
                          item_context=items)


def learned_scorer(model: ImplicitFeedbackModel):
    """A ``LearnedScorer`` for the recommender: (user_id, task_ids) -> engagement probabilities.

    Tasks the model has not seen get the user's mean probability (neutral). Implements PER-c1/PER-e2.
    """
    def score(user_id: str, task_ids) -> np.ndarray:
        ctx = InteractionLog(pd.DataFrame({"user_id": [user_id]}), "live", "gaiverse", pd.DataFrame(index=[0]))
        probs = model.predict_matrix(ctx)[0]
        index = {item: i for i, item in enumerate(model.items)}
        return np.array([probs[index[t]] if t in index else probs.mean() for t in task_ids])

    return score
