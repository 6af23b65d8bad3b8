"""Expectations on a user's document before it enters the NPC knowledge base (NPC-a2).

The frame has one row per passage as it will be stored: text, domain, owner and its embedding's
size and finiteness. The suite checks what retrieval and owner scoping rely on: every passage has
text, the domain is one of the known domains, the owner is set (a passage without one would be
shared prior knowledge, visible to everyone), and each embedding is a finite 384-dim vector.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gaiverse.embedding import DIM
from gaiverse.npc.kb_ingest import DOMAINS, PreparedDocument
from validation.metrics import expect

KNOWLEDGE_SUITE = "npc.knowledge_ingest"

KNOWLEDGE_EXPECTATIONS = (
    expect("table_row_count_to_be_between", min_value=1),
    expect("column_values_to_not_be_null", column="text"),
    expect("column_values_to_be_between", column="text_chars", min_value=1),
    expect("column_values_to_be_in_set", column="domain", value_set=list(DOMAINS)),
    expect("column_values_to_not_be_null", column="owner"),
    expect("column_values_to_be_between", column="owner_chars", min_value=1),
    expect("column_values_to_be_between", column="embedding_dims", min_value=DIM, max_value=DIM),
    expect("column_values_to_be_in_set", column="embedding_finite", value_set=[True]),
    expect("column_values_to_be_unique", column="passage"),
)


def knowledge_frame(doc: PreparedDocument) -> pd.DataFrame:
    """One row per passage of ``doc``, with the derived columns the suite checks."""
    vectors = np.asarray(doc.vectors)
    n = len(doc.passages)
    dims = vectors.shape[1] if vectors.ndim == 2 and len(vectors) == n else 0
    return pd.DataFrame({
        "passage": [f"{doc.doc_id}#{i}" for i in range(n)],
        "text": [p.text for p in doc.passages],
        "text_chars": [len(p.text.strip()) for p in doc.passages],
        "domain": [p.domain for p in doc.passages],
        "owner": [doc.user_id or None] * n,
        "owner_chars": [len((doc.user_id or "").strip())] * n,
        "embedding_dims": [dims] * n,
        "embedding_finite": (np.isfinite(vectors).all(axis=1).tolist() if dims else [False] * n),
    })
