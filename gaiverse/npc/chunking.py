"""Documents -> passages for the NPC knowledge base: plain text, Markdown, JSON and CSV.

Users extend an NPC's knowledge by uploading documents (NPC-a2). Each document becomes short
passages (a few sentences, under ``max_chars``) that keep their subject (``entity``: a Markdown
heading, a JSON record's name, a CSV row's first column), so retrieval can match on it. A
document that cannot be read raises ``DocumentError`` naming the file and the problem, before
anything is stored.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gaiverse.npc.text import sentences

log = logging.getLogger(__name__)

DocKind = Literal["text", "markdown", "json", "csv"]
SUFFIXES: dict[str, DocKind] = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
                                ".json": "json", ".jsonl": "json", ".csv": "csv"}
DOMAIN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class DocumentError(ValueError):
    """A document that cannot become passages; the message is one line naming the file and the reason."""


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of knowledge."""

    text: str
    """A few self-contained sentences."""
    domain: str
    """Knowledge domain: monsters, spells, items, conditions, species, backgrounds, geography, general, ..."""
    entity: str = ""
    """What the passage is about (a name or heading); empty when unknown."""
    source: str = ""
    """Where it came from: a file name, ``srd:monsters/aboleth``, ``geonames:FR``, ``user``."""


@dataclass
class ChunkingConfig:
    """How documents are cut into passages."""

    max_chars: int = 600
    """Longest passage; longer paragraphs are split between sentences."""
    min_chars: int = 80
    """Short neighbouring paragraphs are merged up to this size so a passage has context."""
    max_bytes: int = 5_000_000
    """Largest accepted document."""
    max_passages: int = 5_000
    """Most passages one document may produce."""


def check_domain(domain: str) -> str:
    """Domains are short lower-case identifiers, so filters and the CLI stay predictable."""
    if not isinstance(domain, str) or not DOMAIN.match(domain):
        raise ValueError(f"`domain` must be a lower-case identifier like 'monsters', got {domain!r}")
    return domain


def kind_of(name: str) -> DocKind:
    """Document kind from the file name's suffix."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(f"{name}: unsupported document type {suffix or '(none)'!r}; "
                            f"use one of {sorted(SUFFIXES)}")
    return SUFFIXES[suffix]


def chunk_document(name: str, data: bytes | str, domain: str = "general",
                   config: ChunkingConfig | None = None) -> list[Passage]:
    """Passages of one document; ``name`` gives its type (``notes.md``) and becomes the source.

    Raises ``DocumentError`` for an unsupported type, undecodable or empty content, malformed
    JSON/CSV, or a document with no text. Implements NPC-a2.
    """
    config = config or ChunkingConfig()
    check_domain(domain)
    kind = kind_of(name)
    if isinstance(data, bytes):
        if len(data) > config.max_bytes:
            raise DocumentError(f"{name}: {len(data)} bytes is over the limit of {config.max_bytes}")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise DocumentError(f"{name}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not data.strip():
        raise DocumentError(f"{name}: the document is empty")
    if "\x00" in data:
        raise DocumentError(f"{name}: binary content (NUL bytes) in a {kind} document")
    chunker = {"text": chunk_text, "markdown": chunk_markdown, "json": chunk_json, "csv": chunk_csv}[kind]
    passages = chunker(data, name=name, domain=domain, config=config)
    if not passages:
        raise DocumentError(f"{name}: no text found to store")
    if len(passages) > config.max_passages:
        raise DocumentError(f"{name}: {len(passages)} passages is over the limit of {config.max_passages}")
    log.info("%s: %d passages (%s)", name, len(passages), kind)
    return passages


def _pack(paragraphs: list[str], config: ChunkingConfig) -> list[str]:
    """Merge short paragraphs and split long ones at sentence ends, each result <= max_chars."""
    out: list[str] = []
    current = ""
    for para in paragraphs:
        para = " ".join(para.split())
        if not para:
            continue
        pieces = [para] if len(para) <= config.max_chars else _split_long(para, config.max_chars)
        for piece in pieces:
            if current and len(current) < config.min_chars and len(current) + len(piece) + 1 <= config.max_chars:
                current = f"{current} {piece}"
            else:
                if current:
                    out.append(current)
                current = piece
    if current:
        out.append(current)
    return out


def _split_long(text: str, max_chars: int) -> list[str]:
    out, current = [], ""
    for sent in sentences(text):
        while len(sent) > max_chars:  # a run-on "sentence": cut at a word boundary
            cut = sent.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            if current:
                out.append(current)
                current = ""
            out.append(sent[:cut].strip())
            sent = sent[cut:].strip()
        if current and len(current) + len(sent) + 1 > max_chars:
            out.append(current)
            current = sent
        else:
            current = f"{current} {sent}".strip()
    if current:
        out.append(current)
    return out


def chunk_text(text: str, name: str, domain: str, config: ChunkingConfig) -> list[Passage]:
    """Plain text: paragraphs (blank-line separated) packed into passages."""
    return [Passage(p, domain, "", name) for p in _pack(re.split(r"\n\s*\n", text), config)]


HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def chunk_markdown(text: str, name: str, domain: str, config: ChunkingConfig) -> list[Passage]:
    """Markdown: each section's paragraphs become passages whose entity is the nearest heading."""
    out: list[Passage] = []
    heading, paragraphs, in_code = "", [], False

    def flush():
        for piece in _pack(paragraphs, config):
            out.append(Passage(piece, domain, heading, name))
        paragraphs.clear()

    block: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match:
            paragraphs.append("\n".join(block))
            block = []
            flush()
            heading = match.group(2).strip()
        elif not line.strip():
            paragraphs.append("\n".join(block))
            block = []
        else:
            # list bullets and emphasis carry no meaning for retrieval
            block.append(re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", line).replace("**", "").replace("__", ""))
    paragraphs.append("\n".join(block))
    flush()
    return out


NAME_KEYS = ("name", "title", "entity", "subject", "id")


def chunk_json(text: str, name: str, domain: str, config: ChunkingConfig) -> list[Passage]:
    """JSON (or JSON lines): strings become passages; records become "key is value" sentences.

    Accepted shapes: a string, a list of strings or records, an object of records keyed by name,
    one record, or ``{"facts": [...]}``.
    """
    try:
        if name.lower().endswith(".jsonl"):
            doc: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DocumentError(f"{name}: invalid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if isinstance(doc, dict) and set(doc) <= {"facts", "passages", "domain"} and doc:
        doc = doc.get("facts") or doc.get("passages") or []
    if isinstance(doc, dict) and doc and all(isinstance(v, dict) for v in doc.values()):
        records = [(str(k), v) for k, v in doc.items()]
    elif isinstance(doc, dict):
        records = [("", doc)]
    elif isinstance(doc, list):
        records = [("", r) for r in doc]
    else:
        records = [("", doc)]
    out: list[Passage] = []
    for key, record in records:
        if isinstance(record, str):
            out.extend(Passage(p, domain, "", name) for p in _pack([record], config))
        elif isinstance(record, dict):
            entity = next((str(record[k]) for k in NAME_KEYS if isinstance(record.get(k), (str, int))), key)
            sents = _record_sentences(entity, record)
            out.extend(Passage(p, domain, entity, name) for p in _pack([" ".join(sents)], config))
        elif record is not None:
            raise DocumentError(f"{name}: JSON items must be strings or objects, got {type(record).__name__}")
    return out


def _record_sentences(entity: str, record: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in record.items():
        if key in NAME_KEYS and str(value) == entity:
            continue
        label = f"{prefix}{str(key).replace('_', ' ')}"
        subject = f"The {label} of {entity}" if entity else f"The {label}"
        if isinstance(value, dict):
            out.extend(_record_sentences(entity, value, prefix=f"{label} "))
        elif isinstance(value, list):
            if value:
                out.append(f"{subject} is {', '.join(str(v) for v in value if not isinstance(v, (dict, list)))}.")
        elif value is not None and str(value).strip():
            text = str(value).strip()
            # long free text reads better as itself than as "The description of X is ..."
            out.append(text if len(text) > 80 else f"{subject} is {text}.")
    return out


def chunk_csv(text: str, name: str, domain: str, config: ChunkingConfig) -> list[Passage]:
    """CSV with a header row: each row becomes one passage about its first column's value."""
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DocumentError(f"{name}: a CSV needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if not all(header) or len(set(header)) != len(header):
        raise DocumentError(f"{name}: the CSV header must name every column once, got {header}")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DocumentError(f"{name}: row {lineno} has {len(row)} fields, the header has {len(header)}")
        record = {h: c.strip() for h, c in zip(header, row)}
        name_col = next((h for h in header if h.lower() in NAME_KEYS), header[0])
        entity = record.pop(name_col)
        sents = _record_sentences(entity, record)
        if sents:
            out.extend(Passage(p, domain, entity, name) for p in _pack([" ".join(sents)], config))
    return out
