"""DuckDB schema of the NPC knowledge base and the SQL of its owner scoping (NPC-a1, NPC-a2).

Kept apart from the store so the visibility rule — the one place that decides whether a user
can ever see a passage — is short enough to read in one go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gaiverse.npc.knowledge_base import Scope

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS kb_chunk_seq START 1;
CREATE TABLE IF NOT EXISTS kb_chunks (
    id         BIGINT NOT NULL,      -- passage id (no PRIMARY KEY: DuckDB rejects delete+insert of a key in one transaction)
    doc_id     VARCHAR NOT NULL,     -- 'prior', 'doc_<hash>' (an uploaded document) or 'fact_<hash>'
    user_id    VARCHAR,              -- NULL: not a user's addition
    npc_id     VARCHAR,              -- NULL: every NPC
    domain     VARCHAR NOT NULL,     -- monsters, spells, items, conditions, species, backgrounds, geography, general, ...
    entity     VARCHAR NOT NULL,     -- the subject of the passage ('' when unknown)
    source     VARCHAR NOT NULL,     -- srd:monsters/aboleth, geonames:FR, a file name, 'user'
    text       VARCHAR NOT NULL,
    n_terms    INTEGER NOT NULL,     -- BM25 document length
    embedding  FLOAT[384] NOT NULL,  -- all-MiniLM-L6-v2, unit length
    created_at TIMESTAMP DEFAULT now(),
    updated_at TIMESTAMP DEFAULT now()
);
CREATE TABLE IF NOT EXISTS kb_terms (chunk_id BIGINT NOT NULL, term VARCHAR NOT NULL, tf INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kb_docs (
    doc_id     VARCHAR NOT NULL,
    user_id    VARCHAR,
    npc_id     VARCHAR,
    name       VARCHAR NOT NULL,
    n_chunks   INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT now()
);
CREATE TABLE IF NOT EXISTS kb_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE OR REPLACE VIEW kb_owners AS
    SELECT id, coalesce(user_id, npc_id) AS owner,
           CASE WHEN user_id IS NOT NULL THEN 'user' WHEN npc_id IS NOT NULL THEN 'npc' ELSE 'prior' END AS owner_kind
    FROM kb_chunks;
"""


def scope_sql(scope: "Scope", alias: str = "") -> tuple[str, list]:
    """WHERE clause (and its parameters) selecting the passages visible to ``scope``.

    Visible: prior knowledge (if included); the NPC's own knowledge; the user's own additions
    that are global or scoped to this NPC. Nothing else — in particular no other user's rows.
    """
    a = f"{alias}." if alias else ""
    parts, params = [], []
    if scope.include_prior:
        parts.append(f"({a}user_id IS NULL AND {a}npc_id IS NULL)")
    if scope.npc_id is not None:
        parts.append(f"({a}user_id IS NULL AND {a}npc_id = ?)")
        params.append(scope.npc_id)
    if scope.user_id is not None:
        if scope.npc_id is not None:
            parts.append(f"({a}user_id = ? AND ({a}npc_id IS NULL OR {a}npc_id = ?))")
            params += [scope.user_id, scope.npc_id]
        else:
            parts.append(f"({a}user_id = ? AND {a}npc_id IS NULL)")
            params.append(scope.user_id)
    return ("(" + " OR ".join(parts) + ")") if parts else "FALSE", params
