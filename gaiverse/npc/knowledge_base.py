"""The NPC knowledge base: passages with source, domain, owner and embeddings in one DuckDB file.

Implements NPC-a1 (a prior knowledge base of professional domains and general knowledge) and
NPC-a2 (users extend and customise it). Every passage has an owner, stored as two columns:

- ``user_id`` NULL and ``npc_id`` NULL: prior knowledge, visible to everyone;
- ``user_id`` NULL and ``npc_id`` set: the NPC's own knowledge (e.g. its backstory), visible to
  everyone talking to that NPC;
- ``user_id`` set: a user's addition, visible only to that user (for every NPC, or, with
  ``npc_id``, only when talking to that NPC). Another user never sees it, whatever they ask.

Retrieval is hybrid: cosine similarity of all-MiniLM-L6-v2 vectors (``FLOAT[384]``,
``array_cosine_similarity``, or the vss HNSW index) fused with BM25 keyword scores computed in
SQL over a term table, plus a bonus when the question names a passage's subject.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import duckdb
import numpy as np
import pandas as pd

from gaiverse.npc.chunking import ChunkingConfig, Passage, check_domain, chunk_document
from gaiverse.npc.embedding import DIM, Embedder, default_embedder
from gaiverse.npc.kb_schema import SCHEMA, scope_sql
from gaiverse.npc.prior import embedding_text
from gaiverse.npc.text import terms

log = logging.getLogger(__name__)


class PassageNotFound(LookupError):
    """No passage or document with that id is visible to (and owned by) the caller."""


@dataclass(frozen=True)
class Scope:
    """Who is asking: decides which passages are visible (NPC-a2 owner scoping)."""

    user_id: str | None = None
    """The user talking; their own additions become visible. None = an anonymous user."""
    npc_id: str | None = None
    """The NPC answering; its own knowledge and user additions scoped to it become visible."""
    include_prior: bool = True
    """Include the shared prior knowledge."""


@dataclass
class KnowledgeBaseConfig:
    """Retrieval weights and index choice."""

    vector_weight: float = 0.5
    """Weight of cosine similarity in the fused score."""
    keyword_weight: float = 0.3
    """Weight of BM25 (normalised by the best BM25 score of the query) in the fused score."""
    entity_weight: float = 0.25
    """Bonus for passages whose subject (entity) the question names."""
    bm25_k1: float = 1.2
    """BM25 term-frequency saturation."""
    bm25_b: float = 0.75
    """BM25 length normalisation."""
    candidates: int = 60
    """Candidates re-ranked per query."""
    index: Literal["exact", "hnsw"] = "exact"
    """``exact``: brute-force cosine (fast enough below ~100k passages); ``hnsw``: the vss index."""
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    """How uploaded documents are cut into passages."""


@dataclass
class Hit:
    """One retrieved passage with the scores that ranked it."""

    id: int
    text: str
    domain: str
    entity: str
    source: str
    user_id: str | None
    npc_id: str | None
    cosine: float
    """Cosine similarity of question and passage embeddings, -1..1."""
    keyword: float
    """BM25 score divided by the query's best BM25 score, 0..1."""
    entity_match: float
    """1 when the question names the passage's subject in full, partial credit for part of it."""
    score: float
    """The fused ranking score."""


@dataclass
class PassageRecord:
    """A stored passage as listed to its owner."""

    id: int
    doc_id: str
    text: str
    domain: str
    entity: str
    source: str
    user_id: str | None
    npc_id: str | None


class KnowledgeBase:
    """A DuckDB-backed passage store with hybrid retrieval; one instance per DuckDB file."""

    def __init__(self, path: Path | str, embedder: Embedder | None = None,
                 config: KnowledgeBaseConfig | None = None, read_only: bool = False):
        self.path = Path(path)
        self.config = config or KnowledgeBaseConfig()
        self.embedder = embedder or default_embedder()
        if self.embedder.dim != DIM:
            raise ValueError(f"`embedder.dim` must be {DIM} (FLOAT[{DIM}] column), got {self.embedder.dim}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.con = duckdb.connect(str(self.path), read_only=read_only)
        if not read_only:
            self.con.execute(SCHEMA)
        self._entities: dict[str, tuple[str, str]] | None = None
        if self.config.index == "hnsw":
            self._ensure_hnsw()

    def close(self) -> None:
        with self._lock:
            self.con.close()

    def __enter__(self) -> "KnowledgeBase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- writing

    def _insert(self, passages: Sequence[Passage], doc_id: str, user_id: str | None, npc_id: str | None,
                vectors: np.ndarray) -> list[int]:
        """Insert passages, their vectors and their terms; the caller holds the transaction."""
        n = len(passages)
        ids = [r[0] for r in self.con.execute("SELECT nextval('kb_chunk_seq') FROM range(?)", [n]).fetchall()]
        term_rows: list[tuple[int, str, int]] = []
        n_terms = []
        for cid, p in zip(ids, passages):
            toks = terms(f"{p.entity} {p.text}")
            n_terms.append(len(toks))
            counts: dict[str, int] = {}
            for t in toks:
                counts[t] = counts.get(t, 0) + 1
            term_rows.extend((cid, t, c) for t, c in counts.items())
        chunks = pd.DataFrame({
            "id": ids, "doc_id": doc_id, "user_id": user_id, "npc_id": npc_id,
            "domain": [p.domain for p in passages], "entity": [p.entity for p in passages],
            "source": [p.source for p in passages], "text": [p.text for p in passages],
            "n_terms": n_terms, "embedding": list(vectors.astype(np.float32)),
        })
        self.con.register("new_chunks", chunks)
        self.con.execute(
            "INSERT INTO kb_chunks (id, doc_id, user_id, npc_id, domain, entity, source, text, n_terms, embedding) "
            "SELECT id, doc_id, user_id, npc_id, domain, entity, source, text, n_terms, "
            "embedding::FLOAT[384] FROM new_chunks")
        self.con.unregister("new_chunks")
        if term_rows:
            self.con.register("new_terms", pd.DataFrame(term_rows, columns=["chunk_id", "term", "tf"]))
            self.con.execute("INSERT INTO kb_terms SELECT chunk_id, term, tf FROM new_terms")
            self.con.unregister("new_terms")
        self._entities = None
        return ids

    def add_passages(self, passages: Sequence[Passage], doc_id: str, user_id: str | None = None,
                     npc_id: str | None = None, name: str = "", embedder: Embedder | None = None) -> list[int]:
        """Embed and store passages under one document id, replacing that document if it exists.

        ``embedder`` overrides the store's (the prior build passes one backed by the shipped cache).
        """
        if not passages:
            raise ValueError("`passages` must not be empty")
        for p in passages:
            check_domain(p.domain)
            if not p.text.strip():
                raise ValueError(f"passage text must not be empty (document {doc_id!r})")
        vectors = (embedder or self.embedder).embed([embedding_text(p) for p in passages])
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                self._delete_doc_rows(doc_id)
                ids = self._insert(passages, doc_id, user_id, npc_id, vectors)
                self.con.execute(
                    "INSERT INTO kb_docs (doc_id, user_id, npc_id, name, n_chunks) VALUES (?, ?, ?, ?, ?)",
                    [doc_id, user_id, npc_id, name or doc_id, len(ids)])
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise
        log.info("stored %d passages as %s (user=%s npc=%s)", len(ids), doc_id, user_id, npc_id)
        return ids

    def add_document(self, name: str, data: bytes | str, user_id: str, domain: str = "general",
                     npc_id: str | None = None) -> str:
        """Chunk, embed and store a user's document; returns its document id. Implements NPC-a2.

        The document id is derived from user, NPC scope and file name, so uploading the same file
        again replaces the earlier version. A bad document raises ``DocumentError`` and stores nothing.
        """
        _check_id("user_id", user_id)
        passages = chunk_document(name, data, domain=domain, config=self.config.chunking)
        doc_id = "doc_" + hashlib.sha256(f"{user_id}\x00{npc_id}\x00{name}".encode()).hexdigest()[:16]
        self.add_passages(passages, doc_id, user_id=user_id, npc_id=npc_id, name=name)
        return doc_id

    def add_fact(self, text: str, user_id: str, domain: str = "general", npc_id: str | None = None,
                 entity: str = "") -> int:
        """Store one fact sentence for a user; returns the passage id. Implements NPC-a2."""
        _check_id("user_id", user_id)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"`text` must be a non-empty sentence, got {text!r}")
        doc_id = "fact_" + hashlib.sha256(f"{user_id}\x00{npc_id}\x00{text}".encode()).hexdigest()[:16]
        return self.add_passages([Passage(" ".join(text.split()), check_domain(domain), entity, "user")],
                                 doc_id, user_id=user_id, npc_id=npc_id, name="fact")[0]

    def edit(self, passage_id: int, text: str, user_id: str, domain: str | None = None) -> None:
        """Replace the text (and optionally the domain) of one of the user's own passages."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"`text` must be a non-empty sentence, got {text!r}")
        row = self._owned(passage_id, user_id)
        passage = Passage(" ".join(text.split()), check_domain(domain or row.domain), row.entity, row.source)
        vector = self.embedder.embed([passage.text])
        toks = terms(f"{passage.entity} {passage.text}")
        counts = pd.Series(toks, dtype=object).value_counts() if toks else pd.Series(dtype=int)
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                self.con.execute(
                    "UPDATE kb_chunks SET text = ?, domain = ?, n_terms = ?, embedding = ?::FLOAT[384], "
                    "updated_at = now() WHERE id = ?",
                    [passage.text, passage.domain, len(toks), vector[0].tolist(), passage_id])
                self.con.execute("DELETE FROM kb_terms WHERE chunk_id = ?", [passage_id])
                if len(counts):
                    self.con.register("new_terms", pd.DataFrame(
                        {"chunk_id": passage_id, "term": counts.index.astype(str), "tf": counts.values}))
                    self.con.execute("INSERT INTO kb_terms SELECT chunk_id, term, tf FROM new_terms")
                    self.con.unregister("new_terms")
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise

    def delete(self, passage_id: int, user_id: str) -> None:
        """Delete one of the user's own passages (prior knowledge cannot be deleted by users)."""
        row = self._owned(passage_id, user_id)
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            self.con.execute("DELETE FROM kb_terms WHERE chunk_id = ?", [passage_id])
            self.con.execute("DELETE FROM kb_chunks WHERE id = ?", [passage_id])
            self.con.execute("UPDATE kb_docs SET n_chunks = n_chunks - 1 WHERE doc_id = ?", [row.doc_id])
            self.con.execute("DELETE FROM kb_docs WHERE doc_id = ? AND n_chunks <= 0", [row.doc_id])
            self.con.execute("COMMIT")
        self._entities = None

    def delete_document(self, doc_id: str, user_id: str) -> int:
        """Delete all passages of one of the user's documents; returns how many were removed."""
        with self._lock:
            owner = self.con.execute("SELECT user_id FROM kb_docs WHERE doc_id = ?", [doc_id]).fetchone()
            if owner is None or owner[0] != user_id:
                raise PassageNotFound(f"document {doc_id!r} not found for user {user_id!r}")
            self.con.execute("BEGIN TRANSACTION")
            n = self._delete_doc_rows(doc_id)
            self.con.execute("COMMIT")
        return n

    def _delete_doc_rows(self, doc_id: str) -> int:
        n = self.con.execute("SELECT count(*) FROM kb_chunks WHERE doc_id = ?", [doc_id]).fetchone()[0]
        self.con.execute("DELETE FROM kb_terms WHERE chunk_id IN (SELECT id FROM kb_chunks WHERE doc_id = ?)", [doc_id])
        self.con.execute("DELETE FROM kb_chunks WHERE doc_id = ?", [doc_id])
        self.con.execute("DELETE FROM kb_docs WHERE doc_id = ?", [doc_id])
        self._entities = None
        return n

    def _owned(self, passage_id: int, user_id: str) -> PassageRecord:
        rows = self.list(Scope(user_id=user_id, include_prior=False), ids=[int(passage_id)], own_only=True)
        if not rows:
            raise PassageNotFound(f"passage {passage_id} not found for user {user_id!r}")
        return rows[0]

    # ---------------------------------------------------------------- reading

    def list(self, scope: Scope, domain: str | None = None, ids: Sequence[int] | None = None,
             own_only: bool = False, limit: int = 1000) -> list[PassageRecord]:
        """Passages visible in ``scope`` (``own_only``: only the user's own additions)."""
        where, params = scope_sql(scope)
        if own_only:
            where, params = "user_id = ?", [scope.user_id]
        if domain:
            where += " AND domain = ?"
            params.append(domain)
        if ids is not None:
            where += f" AND id IN ({','.join(str(int(i)) for i in ids) or 'NULL'})"
        with self._lock:
            rows = self.con.execute(
                f"SELECT id, doc_id, text, domain, entity, source, user_id, npc_id FROM kb_chunks "
                f"WHERE {where} ORDER BY id LIMIT {int(limit)}", params).fetchall()
        return [PassageRecord(*r) for r in rows]

    def count(self, scope: Scope | None = None) -> int:
        where, params = scope_sql(scope or Scope())
        with self._lock:
            return self.con.execute(f"SELECT count(*) FROM kb_chunks WHERE {where}", params).fetchone()[0]

    def domains(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.con.execute("SELECT DISTINCT domain FROM kb_chunks ORDER BY 1").fetchall()]

    def entities(self) -> dict[str, tuple[str, str]]:
        """Normalised subject name -> (name, domain) over all passages: the entity lexicon.

        Names come from every owner; callers only use them to recognise words in a question,
        never to reveal another user's text.
        """
        if self._entities is None:
            with self._lock:
                rows = self.con.execute(
                    "SELECT entity, any_value(domain) FROM kb_chunks WHERE entity <> '' GROUP BY entity").fetchall()
            self._entities = {" ".join(terms(name)): (name, domain) for name, domain in rows if terms(name)}
        return self._entities

    def idf(self, words: Sequence[str]) -> dict[str, float]:
        """BM25 inverse document frequency of each term over the whole store (unknown words score highest).

        Counted over all passages: the statistic reveals no text, and keeps an answer's grounding
        gate the same for every user.
        """
        words = sorted(set(words))
        if not words:
            return {}
        with self._lock:
            n = self.con.execute("SELECT count(*) FROM kb_chunks").fetchone()[0]
            df = dict(self.con.execute("SELECT term, count(*) FROM kb_terms WHERE term IN "
                                       "(SELECT unnest(?::VARCHAR[])) GROUP BY term", [words]).fetchall())
        return {w: float(np.log(1 + (n - df.get(w, 0) + 0.5) / (df.get(w, 0) + 0.5))) for w in words}

    def search(self, query: str, scope: Scope | None = None, domains: Sequence[str] | None = None,
               k: int = 5) -> list[Hit]:
        """The ``k`` best passages for ``query`` visible in ``scope``, optionally within ``domains``.

        Implements NPC-a1 hybrid retrieval (vector + BM25 + subject match) with owner filters (NPC-a2).
        """
        from gaiverse.npc.kb_search import hybrid_search

        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"`query` must be a non-empty question, got {query!r}")
        return hybrid_search(self, query, scope or Scope(), domains, k)

    # ---------------------------------------------------------------- prior

    def build_prior(self, root: Path | None = None, cache_path: Path | None = None) -> int:
        """Load the shipped prior knowledge (SRD + GeoNames); a no-op when it is already current. NPC-a1.

        See ``gaiverse.npc.prior.build_prior``. Returns the number of prior passages.
        """
        from gaiverse.npc.prior import build_prior

        count = build_prior(self, root, cache_path)
        if self.config.index == "hnsw":
            self._ensure_hnsw()
        return count

    def _ensure_hnsw(self) -> None:
        """Create the vss HNSW cosine index (bundled extension; persistence is experimental in vss)."""
        from duckdb_extensions import import_extension

        with self._lock:
            import_extension("vss", con=self.con)
            self.con.execute("LOAD vss")
            self.con.execute("SET hnsw_enable_experimental_persistence = true")
            self.con.execute("CREATE INDEX IF NOT EXISTS kb_hnsw ON kb_chunks USING HNSW (embedding) "
                             "WITH (metric = 'cosine')")


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValueError(f"`{name}` must be a non-empty id, got {value!r}")
