"""Hybrid retrieval over the NPC knowledge base: cosine + BM25 (in SQL) + subject match, fused.

Cosine similarity finds paraphrases ("how tough is it" ~ "hit points"); BM25 finds rare exact
words (names, game terms) that small embedding models blur; the subject bonus makes "the armor
class of a goblin" prefer the goblin's passage over every other passage about armor class.
Candidates from all three are unioned, then re-ranked by the weighted sum. Implements NPC-a1.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from gaiverse.npc.kb_schema import scope_sql
from gaiverse.npc.text import terms

if TYPE_CHECKING:
    from gaiverse.npc.knowledge_base import Hit, KnowledgeBase, Scope

log = logging.getLogger(__name__)


def match_entities(query_terms: Sequence[str], lexicon: dict[str, tuple[str, str]],
                   max_len: int = 6) -> dict[str, float]:
    """Subject names the question mentions: name -> 1.0 when named in full, else the share of its words named.

    Full matches are contiguous n-grams of the question's content terms; partial matches
    ("goblin" for "Goblin Warrior") get half the share of the name's words present.
    """
    out: dict[str, float] = {}
    n = len(query_terms)
    for size in range(min(max_len, n), 0, -1):
        for i in range(n - size + 1):
            key = " ".join(query_terms[i:i + size])
            if key in lexicon:
                out[lexicon[key][0]] = 1.0
    qset = set(query_terms)
    for key, (name, _) in _partial_candidates(qset, lexicon):
        if name in out:
            continue
        parts = key.split()
        share = sum(p in qset for p in parts) / len(parts)
        if share > 0:
            out[name] = max(out.get(name, 0.0), 0.5 * share)
    return out


_INDEX_CACHE: dict[int, dict[str, list[str]]] = {}


def _partial_candidates(qset: set[str], lexicon: dict[str, tuple[str, str]]):
    """Lexicon entries sharing a word with the question (via a word -> names index cached per lexicon)."""
    index = _INDEX_CACHE.get(id(lexicon))
    if index is None:
        index = {}
        for key in lexicon:
            for part in set(key.split()):
                index.setdefault(part, []).append(key)
        _INDEX_CACHE.clear()
        _INDEX_CACHE[id(lexicon)] = index
    seen = set()
    for term in qset:
        keys = index.get(term, [])
        if len(keys) > 80:  # a word in very many names ("dragon", "city") says little about which one
            continue
        for key in keys:
            if key not in seen:
                seen.add(key)
                yield key, lexicon[key]


def hybrid_search(kb: "KnowledgeBase", query: str, scope: "Scope", domains: Sequence[str] | None,
                  k: int) -> list["Hit"]:
    """The fused top-``k`` passages; see the module docstring for the scoring."""
    from gaiverse.npc.knowledge_base import Hit

    cfg = kb.config
    qterms = terms(query)
    entities = match_entities(qterms, kb.entities())
    full_entities = [name for name, s in entities.items() if s >= 1.0]
    qvec = kb.embedder.embed([query])[0].tolist()

    where, params = scope_sql(scope)
    if domains:
        where += f" AND domain IN ({','.join('?' for _ in domains)})"
        params += list(domains)
    n = int(cfg.candidates)
    if cfg.index == "hnsw":
        # the index answers an unfiltered top-N; visibility is applied after it
        vec_cte = (f"vec AS (SELECT v.id AS chunk_id FROM (SELECT id FROM kb_chunks "
                   f"ORDER BY array_cosine_distance(embedding, $qvec::FLOAT[384]) LIMIT {4 * n}) v "
                   f"SEMI JOIN vis ON vis.id = v.id)")
    else:
        vec_cte = (f"vec AS (SELECT id AS chunk_id FROM vis "
                   f"ORDER BY array_cosine_similarity(embedding, $qvec::FLOAT[384]) DESC LIMIT {n})")
    # scope parameters are positional ('?'); rename them to named ones for one statement
    named = {f"p{i}": v for i, v in enumerate(params)}
    for i in range(len(params)):
        where = where.replace("?", f"$p{i}", 1)
    sql = f"""
    WITH vis AS (SELECT id, n_terms, entity, embedding FROM kb_chunks WHERE {where}),
    st AS (SELECT count(*)::DOUBLE AS n, coalesce(avg(n_terms), 1)::DOUBLE AS avgdl FROM vis),
    tt AS (SELECT t.chunk_id, t.term, t.tf, v.n_terms FROM kb_terms t JOIN vis v ON v.id = t.chunk_id
           WHERE t.term IN (SELECT unnest($qterms::VARCHAR[]))),
    df AS (SELECT term, count(*)::DOUBLE AS df FROM tt GROUP BY term),
    bm AS (SELECT tt.chunk_id, sum(ln(1 + (st.n - df.df + 0.5) / (df.df + 0.5))
                  * tt.tf * ({cfg.bm25_k1} + 1)
                  / (tt.tf + {cfg.bm25_k1} * (1 - {cfg.bm25_b} + {cfg.bm25_b} * tt.n_terms / st.avgdl))) AS bm25
           FROM tt JOIN df USING (term) CROSS JOIN st GROUP BY tt.chunk_id),
    {vec_cte},
    bmtop AS (SELECT chunk_id FROM bm ORDER BY bm25 DESC LIMIT {n}),
    ent AS (SELECT id AS chunk_id FROM vis WHERE entity IN (SELECT unnest($ents::VARCHAR[])) LIMIT {n}),
    cand AS (SELECT chunk_id FROM vec UNION SELECT chunk_id FROM bmtop UNION SELECT chunk_id FROM ent)
    SELECT c.id, c.text, c.domain, c.entity, c.source, c.user_id, c.npc_id,
           array_cosine_similarity(c.embedding, $qvec::FLOAT[384]) AS cos,
           coalesce(bm.bm25, 0) AS bm25, (SELECT max(bm25) FROM bm) AS bmmax
    FROM cand JOIN kb_chunks c ON c.id = cand.chunk_id LEFT JOIN bm ON bm.chunk_id = c.id
    """
    named.update({"qvec": qvec, "qterms": sorted(set(qterms)) or [""], "ents": full_entities or [""]})
    with kb._lock:
        rows = kb.con.execute(sql, named).fetchall()
    hits = []
    for cid, text, domain, entity, source, user_id, npc_id, cos, bm25, bmmax in rows:
        keyword = float(bm25) / float(bmmax) if bmmax else 0.0
        ent = entities.get(entity, 0.0)
        score = cfg.vector_weight * float(cos) + cfg.keyword_weight * keyword + cfg.entity_weight * ent
        hits.append(Hit(cid, text, domain, entity, source, user_id, npc_id, float(cos), keyword, ent, score))
    hits.sort(key=lambda h: (-h.score, h.id))
    return hits[:k]
