"""Typer sub-apps for NPCs: ``eval npc`` and ``kb build|add|list|edit|delete`` (mounted by gaiverse.cli).

Eval prints exactly one JSON object on stdout (EVAL.md); logs go to stderr; unreadable data
exits 2 with a one-line reason. ``kb`` commands let a user extend and customise the NPC
knowledge base from the command line (NPC-a2); the API and web terminal call the same functions.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

log = logging.getLogger(__name__)

eval_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evaluate NPC dialogue")
kb_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The NPC knowledge base")
app = typer.Typer(add_completion=False, no_args_is_help=True, help="NPC commands")
app.add_typer(eval_app, name="eval")
app.add_typer(kb_app, name="kb")


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("sentence_transformers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(reason: str) -> None:
    typer.echo(f"error: {reason}", err=True)
    raise typer.Exit(2)


def _emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result, allow_nan=False, default=str, ensure_ascii=False) + "\n")


def default_kb_path() -> Path:
    """``<data_dir>/npc/kb.duckdb`` of the installation's settings."""
    from gaiverse.config import get_settings

    return get_settings().data_dir / "npc" / "kb.duckdb"


def default_model_dir() -> Path:
    from gaiverse.config import get_settings

    return get_settings().data_dir / "models"


KB_OPT = typer.Option(None, "--kb", help="DuckDB file of the knowledge base (default <data_dir>/npc/kb.duckdb)")


@eval_app.command("npc")
def eval_npc_cmd(
    qa: Path = typer.Option(..., "--qa", help="JSON lines of {question, expected, accept: [...], npc?}"),
    kb: Optional[Path] = KB_OPT,
    generator: str = typer.Option("extractive", "--generator", help="extractive | llm | auto"),
    gguf: Optional[Path] = typer.Option(None, "--gguf", help="GGUF model for --generator llm/auto "
                                        "(default: the packaged Qwen2.5 0.5B, assembled under <data_dir>/models)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N items"),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print the JSON result (always on)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Accuracy, hallucination, refusals and latency of NPC answers vs the retrieval-only baseline."""
    from gaiverse.npc.evaluate import EvalDataError, eval_npc

    _logging(verbose)
    if not qa.is_file():
        _fail(f"--qa {qa}: no such file")
    if gguf is None and generator in ("llm", "auto"):
        from gaiverse.npc.llm import find_gguf

        gguf = find_gguf(default_model_dir())
    try:
        result = eval_npc(qa, kb or default_kb_path(), generator=generator, gguf=gguf, limit=limit)  # type: ignore[arg-type]
    except EvalDataError as err:
        _fail(str(err))
    _emit(result)


def _open(kb: Optional[Path], build: bool = False):
    """The knowledge base; ``build`` also loads the prior (user edits do not need it loaded)."""
    from gaiverse.npc.knowledge_base import KnowledgeBase

    store = KnowledgeBase(kb or default_kb_path())
    if build:
        store.build_prior()
    return store


@kb_app.command("build")
def kb_build_cmd(kb: Optional[Path] = KB_OPT, verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Create or refresh the prior knowledge (SRD 5e + GeoNames) in the knowledge base."""
    _logging(verbose)
    store = _open(kb, build=True)
    _emit({"kb": str(store.path), "passages": store.count(), "domains": store.domains()})
    store.close()


@kb_app.command("add")
def kb_add_cmd(
    user: str = typer.Option(..., "--user", help="Owner of the addition (only this user will see it)"),
    file: Optional[Path] = typer.Option(None, "--file", help="A .txt, .md, .json, .jsonl or .csv document"),
    fact: Optional[str] = typer.Option(None, "--fact", help="A single fact sentence"),
    domain: str = typer.Option("general", "--domain", help="Knowledge domain, e.g. monsters, geography, general"),
    npc: Optional[str] = typer.Option(None, "--npc", help="Scope the addition to one NPC"),
    kb: Optional[Path] = KB_OPT,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Add a user's document or fact (NPC-a2); a bad document exits 2 and stores nothing."""
    from gaiverse.npc.chunking import DocumentError

    _logging(verbose)
    if (file is None) == (fact is None):
        _fail("give exactly one of --file or --fact")
    store = _open(kb)
    try:
        if file is not None:
            try:
                data = file.read_bytes()
            except OSError as err:
                _fail(f"--file {file}: {err.strerror}")
            doc_id = store.add_document(file.name, data, user_id=user, domain=domain, npc_id=npc)
            rows = [r for r in store.list(_scope(user, npc), own_only=True) if r.doc_id == doc_id]
            _emit({"doc_id": doc_id, "passages": [r.id for r in rows]})
        else:
            pid = store.add_fact(fact, user_id=user, domain=domain, npc_id=npc)  # type: ignore[arg-type]
            _emit({"passage": pid})
    except (DocumentError, ValueError) as err:
        _fail(str(err))
    finally:
        store.close()


def _scope(user: str, npc: Optional[str]):
    from gaiverse.npc.knowledge_base import Scope

    return Scope(user_id=user, npc_id=npc, include_prior=False)


@kb_app.command("list")
def kb_list_cmd(
    user: str = typer.Option(..., "--user", help="List this user's own additions"),
    domain: Optional[str] = typer.Option(None, "--domain"),
    kb: Optional[Path] = KB_OPT,
) -> None:
    """List a user's own passages (one JSON object with a `passages` array)."""
    _logging(False)
    store = _open(kb)
    rows = store.list(_scope(user, None), domain=domain, own_only=True)
    _emit({"user": user, "passages": [r.__dict__ for r in rows]})
    store.close()


@kb_app.command("edit")
def kb_edit_cmd(
    passage: int = typer.Argument(..., help="Passage id (from kb list)"),
    text: str = typer.Option(..., "--text"),
    user: str = typer.Option(..., "--user"),
    kb: Optional[Path] = KB_OPT,
) -> None:
    """Replace the text of one of the user's passages."""
    from gaiverse.npc.knowledge_base import PassageNotFound

    _logging(False)
    store = _open(kb)
    try:
        store.edit(passage, text, user_id=user)
    except (PassageNotFound, ValueError) as err:
        _fail(str(err).strip("'\""))
    finally:
        store.close()
    _emit({"passage": passage, "edited": True})


@kb_app.command("delete")
def kb_delete_cmd(
    passage: Optional[int] = typer.Argument(None, help="Passage id (from kb list)"),
    doc: Optional[str] = typer.Option(None, "--doc", help="Delete a whole document instead"),
    user: str = typer.Option(..., "--user"),
    kb: Optional[Path] = KB_OPT,
) -> None:
    """Delete one of the user's passages, or a whole document with --doc."""
    from gaiverse.npc.knowledge_base import PassageNotFound

    _logging(False)
    if (passage is None) == (doc is None):
        _fail("give exactly one of a passage id or --doc")
    store = _open(kb)
    try:
        if doc is not None:
            n = store.delete_document(doc, user_id=user)
            _emit({"doc_id": doc, "deleted": n})
        else:
            store.delete(passage, user_id=user)  # type: ignore[arg-type]
            _emit({"passage": passage, "deleted": 1})
    except PassageNotFound as err:
        _fail(str(err).strip("'\""))
    finally:
        store.close()


def main() -> None:  # pragma: no cover - `python -m gaiverse.npc.cli` for use before the main CLI mounts it
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
