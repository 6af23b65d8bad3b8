"""Erasure audit: find traces of a user (ids, pseudonyms, plaintext) in every cell of a DuckDB database and in
raw file bytes. Used to verify erasure (PER-f1) in tests and by operators after a data-subject request."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import duckdb


def scan_duckdb(con: duckdb.DuckDBPyConnection, needles: Iterable[str]) -> list[str]:
    """'table.column ~ needle' for every cell (cast to text) that contains a needle."""
    needles = [n for n in needles if n]
    found = []
    tables = con.execute("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'").fetchall()
    for (table,) in tables:
        columns = con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                              [table]).fetchall()
        for (column,) in columns:
            for needle in needles:
                hit = con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                                  [f"%{needle}%"]).fetchone()[0]
                if hit:
                    found.append(f"{table}.{column} ~ {needle!r} ({hit} rows)")
    return found


def scan_bytes(paths: Iterable[Path], needles: Iterable[bytes]) -> list[str]:
    """'file ~ needle' for every file under ``paths`` whose raw bytes contain a needle."""
    needles = [n for n in needles if n]
    found = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            found += [f"{path} ~ {needle[:24]!r}" for needle in needles if needle in data]
    return found
