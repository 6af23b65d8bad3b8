"""Typer sub-apps for NPCs: ``eval npc`` and ``kb build|add|list|edit|delete|ingest-world`` (mounted by gaiverse.cli).

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

from gaiverse.cli_support import configure_logging, fail

log = logging.getLogger(__name__)
NOISY = ("sentence_transformers", "transformers", "httpx")
"""Libraries whose INFO lines would drown the command's own."""

eval_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evaluate NPC dialogue")
kb_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The NPC knowledge base")
app = typer.Typer(add_completion=False, no_args_is_help=True, help="NPC commands")
app.add_typer(eval_app, name="eval")
app.add_typer(kb_app, name="kb")


def _emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result, allow_nan=False, default=str, ensure_ascii=False) + "\n")


def default_kb_path() -> Path:
    """``<data_dir>/npc/kb.duckdb`` of the installation's settings."""
    from gaiverse.config import get_settings
    from gaiverse.npc.kb_shared import kb_path_for

    return kb_path_for(get_settings().data_dir)


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

    configure_logging(verbose, quiet=NOISY)
    if not qa.is_file():
        fail(f"--qa {qa}: no such file")
    if gguf is None and generator in ("llm", "auto"):
        from gaiverse.npc.llm import find_gguf

        gguf = find_gguf(default_model_dir())
    try:
        result = eval_npc(qa, kb or default_kb_path(), generator=generator, gguf=gguf, limit=limit)  # type: ignore[arg-type]
    except EvalDataError as err:
        fail(str(err))
    _emit(result)


def _open(kb: Optional[Path], build: bool = False):
    """The knowledge base, locked against the API and the flows until closed (``SharedKnowledgeBase``);
    ``build`` also loads the prior (user edits do not need it loaded)."""
    from gaiverse.npc.kb_shared import SharedKnowledgeBase

    store = SharedKnowledgeBase(kb or default_kb_path()).open_exclusive()
    if build:
        store.build_prior()
    return store


@kb_app.command("build")
def kb_build_cmd(kb: Optional[Path] = KB_OPT, verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Create or refresh the prior knowledge (SRD 5e + GeoNames) in the knowledge base."""
    configure_logging(verbose, quiet=NOISY)
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

    configure_logging(verbose, quiet=NOISY)
    if (file is None) == (fact is None):
        fail("give exactly one of --file or --fact")
    store = _open(kb)
    try:
        if file is not None:
            try:
                data = file.read_bytes()
            except OSError as err:
                fail(f"--file {file}: {err.strerror}")
            doc_id = store.add_document(file.name, data, user_id=user, domain=domain, npc_id=npc)
            rows = [r for r in store.list(_scope(user, npc), own_only=True) if r.doc_id == doc_id]
            _emit({"doc_id": doc_id, "passages": [r.id for r in rows]})
        else:
            pid = store.add_fact(fact, user_id=user, domain=domain, npc_id=npc)  # type: ignore[arg-type]
            _emit({"passage": pid})
    except (DocumentError, ValueError) as err:
        fail(str(err))
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
    configure_logging(False, quiet=NOISY)
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

    configure_logging(False, quiet=NOISY)
    store = _open(kb)
    try:
        store.edit(passage, text, user_id=user)
    except (PassageNotFound, ValueError) as err:
        fail(str(err).strip("'\""))
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

    configure_logging(False, quiet=NOISY)
    if (passage is None) == (doc is None):
        fail("give exactly one of a passage id or --doc")
    store = _open(kb)
    try:
        if doc is not None:
            n = store.delete_document(doc, user_id=user)
            _emit({"doc_id": doc, "deleted": n})
        else:
            store.delete(passage, user_id=user)  # type: ignore[arg-type]
            _emit({"passage": passage, "deleted": 1})
    except PassageNotFound as err:
        fail(str(err).strip("'\""))
    finally:
        store.close()


@kb_app.command("ingest-world")
def kb_ingest_world_cmd(
    world_id: str = typer.Argument(..., help="World id (as `gaiverse world build` printed it)"),
    version: Optional[int] = typer.Option(None, "--version", min=1, help="Version to ingest (default the latest)"),
    user: Optional[str] = typer.Option(None, "--user", help="Ingest only if this user owns the world "
                                       "(default: as the operator, for the world's owner)"),
    kb: Optional[Path] = KB_OPT,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """(Re)ingest what NPCs know of a world: places, roads, buildings, water and NPCs (owner-scoped, NPC-a1)."""
    from gaiverse.config import get_settings
    from gaiverse.npc.kb_ingest import IngestError
    from gaiverse.npc.kb_shared import SharedKnowledgeBase
    from gaiverse.npc.world_knowledge import WorldKnowledgeError, ingest_world
    from gaiverse.world.versions import WorldNotFound
    from storage.catalog import Catalog
    from storage.objectstore import ObjectStore

    configure_logging(verbose, quiet=NOISY)
    settings = get_settings()
    try:
        result = ingest_world(SharedKnowledgeBase(kb or default_kb_path()), ObjectStore.from_settings(settings),
                              Catalog(settings.catalog_path), world_id, version, user_id=user, admin=user is None)
    except (WorldNotFound, WorldKnowledgeError, IngestError, ValueError) as err:
        fail(str(err).strip("'\""))
    _emit(result)


def main() -> None:  # pragma: no cover - `python -m gaiverse.npc.cli` for use before the main CLI mounts it
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


def _world_places(world_id: str, user: str):
    """The named places of one of ``user``'s worlds on this installation (exit 2 when it is not theirs)."""
    from gaiverse.config import get_settings
    from gaiverse.npc.world_knowledge import world_places
    from gaiverse.world.versions import WorldNotFound
    from storage.catalog import Catalog
    from storage.objectstore import ObjectStore

    settings = get_settings()
    try:
        return world_places(ObjectStore.from_settings(settings), Catalog(settings.catalog_path), world_id, user)
    except WorldNotFound as err:
        fail(f"--world: {str(err).strip(chr(39) + chr(34))}")


def create_cmd(
    out: Path = typer.Option(..., "--out", help="Directory for <npc_id>.glb, <npc_id>.json and <npc_id>.png"),
    name: Optional[str] = typer.Option(None, "--name"),
    role: Optional[str] = typer.Option(None, "--role", help="e.g. blacksmith, town guard, archmage"),
    trait: list[str] = typer.Option([], "--trait", help="Personality trait (repeatable)"),
    domain: list[str] = typer.Option([], "--domain", help="Knowledge domain, e.g. weapons, spells (repeatable)"),
    background: Optional[str] = typer.Option(None, "--background"),
    hint: list[str] = typer.Option([], "--hint", help="Appearance hint: tall, heavy, red hair, beard ... (repeatable)"),
    species: Optional[str] = typer.Option(None, "--species", help="SRD species: human, dwarf, elf-high, ..."),
    sex: Optional[str] = typer.Option(None, "--sex", help="female | male | nonbinary"),
    age: Optional[int] = typer.Option(None, "--age"),
    template: Optional[str] = typer.Option(None, "--template", help="Character template id (srd:guard, user:...)"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    user: str = typer.Option("local", "--user", help="Owner (their knowledge and templates are used)"),
    world: Optional[str] = typer.Option(None, "--world", help="One of the owner's worlds: the NPC's day is spent "
                                        "at its real places"),
    kb: Optional[Path] = KB_OPT,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Generate an NPC locally (NPC-b1/b2): profile + rigged .glb + preview, validated; prints one JSON object.

    The same steps as the `npc-generate` flow without publishing; use the API (POST /npcs) to publish.
    """
    from pydantic import ValidationError

    from gaiverse.config import get_settings
    from gaiverse.npc.character_repository import CharacterRepository, TemplateNotFound, repository_path
    from gaiverse.npc.generation import NpcSettings, appearance_glb, generate_profile
    from gaiverse.npc.kb_shared import SharedKnowledgeBase
    from gaiverse.npc.knowledge_base import Scope

    configure_logging(verbose, quiet=NOISY)
    raw = {"name": name, "role": role, "traits": trait, "domains": domain, "background": background,
           "appearance": hint, "species": species, "sex": sex, "age": age, "template": template, "seed": seed,
           "world_id": world}
    try:
        settings = NpcSettings.model_validate({k: v for k, v in raw.items() if v not in (None, [])})
        chosen = (CharacterRepository(repository_path(get_settings().data_dir)).get(template, user)
                  if template else None)
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"--{first['loc'][0] if first['loc'] else 'settings'}: {first['msg']}")
    except TemplateNotFound as err:
        fail(str(err).strip("'\""))
    places = _world_places(settings.world_id, user) if settings.world_id else None
    shared = SharedKnowledgeBase(kb or default_kb_path())
    shared.ensure(prior=True)
    with shared.reading() as store:
        profile = generate_profile(settings, chosen, store, Scope(user_id=user), user_id=user, places=places)
    glb = appearance_glb(profile)
    from gaiverse.character import build_character
    from validation.gltf import validate_glb

    report = validate_glb(glb)
    out.mkdir(parents=True, exist_ok=True)
    files = {"glb": out / f"{profile.npc_id}.glb", "profile": out / f"{profile.npc_id}.json",
             "preview": out / f"{profile.npc_id}.png"}
    files["glb"].write_bytes(glb)
    files["profile"].write_text(json.dumps(profile.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    files["preview"].write_bytes(build_character(profile.body_params()).preview_png((None, "wave")))
    _emit({"npc_id": profile.npc_id, "name": profile.name, "role": profile.role, "species": profile.species,
           "style": profile.dialogue_style["style"], "height_m": round(profile.appearance["height_m"], 3),
           "citations": [c["source"] for c in profile.citations], "gltf_errors": len(report.errors),
           "gltf_warnings": len(report.warnings), "files": {k: str(v) for k, v in files.items()}})
    if report.errors:
        raise typer.Exit(1)
