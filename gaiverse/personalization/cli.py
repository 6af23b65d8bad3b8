"""Typer sub-apps of the personalization stage, mounted by the main `gaiverse` CLI.

    gaiverse eval recommend --interactions PATH [--json]       train on the earlier part, report on the later
    gaiverse eval recommend --train PATH --test PATH [--json]  explicit split
    gaiverse tasks seed | list | search | generate             the task repository

Mount with ``register(app)``, or add ``recommend_command`` to an existing ``eval`` app.
`eval recommend --json` prints exactly one JSON object on stdout; logs go to stderr; unreadable data
exits 2 with a one-line reason.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gaiverse.cli_support import configure_logging, fail

log = logging.getLogger(__name__)
eval_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Offline evaluations on data not trained on")
tasks_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The task repository (PER-b1, PER-d2)")


@eval_app.callback()
def _eval_group() -> None:
    """Offline evaluations on data not trained on (EVAL.md)."""


@tasks_app.callback()
def _tasks_group() -> None:
    """The task repository (PER-b1, PER-d2)."""


def recommend_command(
    interactions: Path | None = typer.Option(None, "--interactions", help="one log: split by time"),
    train: Path | None = typer.Option(None, "--train", help="training log (with --test)"),
    test: Path | None = typer.Option(None, "--test", help="test log (with --train)"),
    items: Path | None = typer.Option(None, "--items", help="item features CSV (item_id + columns)"),
    k: int = typer.Option(10, "--k", min=1, help="cut-off of the ranking metrics"),
    train_fraction: float = typer.Option(0.7, "--train-fraction", help="share of rows (by time) to train on"),
    seed: int = typer.Option(0, "--seed"),
    validation_fraction: float = typer.Option(
        0.2, "--validation-fraction", help="latest share of the training rows used to choose the model (0 < f < 1)"),
    n_bootstrap: int = typer.Option(1000, "--bootstrap", min=10, help="bootstrap resamples for the 95 % intervals"),
    as_json: bool = typer.Option(False, "--json", help="print the EVAL.md JSON object on stdout"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Recall@k, NDCG@k, coverage, novelty (+ IPW/DR for bandit logs) vs popularity and random. PER-e1/e2."""
    from gaiverse.personalization.evaluate import RecommendEvalConfig, evaluate_recommend
    from gaiverse.personalization.implicit_feedback import RankingModelConfig
    from gaiverse.personalization.interaction_log import InteractionLogError

    configure_logging(verbose)
    if interactions is None and (train is None or test is None):
        fail("give --interactions PATH, or both --train PATH and --test PATH")
    if interactions is not None and (train is not None or test is not None):
        fail("give either --interactions or --train/--test, not both")
    if not 0.0 < validation_fraction < 1.0:
        fail(f"--validation-fraction must be in (0, 1), got {validation_fraction}")
    config = RecommendEvalConfig(k=k, train_fraction=train_fraction, seed=seed, n_bootstrap=n_bootstrap,
                                 model=RankingModelConfig(validation_fraction=validation_fraction, seed=seed))
    try:
        result = evaluate_recommend(interactions, train=train, test=test, item_context=items, config=config)
    except (InteractionLogError, OSError, ValueError) as err:
        fail(err)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title=f"recommend: {', '.join(result['data'])} ({result['n']} test events)")
    table.add_column("metric")
    for name in ("model", "popularity", "random"):
        table.add_column(name, justify="right")
    for metric, value in result["metrics"].items():
        table.add_row(metric, f"{value:.4f}", f"{result['baselines']['popularity'][metric]:.4f}",
                      f"{result['baselines']['random'][metric]:.4f}")
    Console().print(table)
    diff = result.get("ci95", {}).get("model_minus_popularity", {})
    for metric, est in diff.items():
        Console().print(f"model − popularity {metric}: {est['value']:+.4f} (95 % CI {est['ci95'][0]:+.4f}..{est['ci95'][1]:+.4f})")
    Console().print(f"model: {result['model']['selected']} — {result['model']['validation'].get('reason', '')}")
    if "logged_policy" in result:
        lp = result["logged_policy"]
        Console().print(f"logged policy click rate {lp['ctr']:.4f} (95 % CI {lp['ci95'][0]:.4f}..{lp['ci95'][1]:.4f})")


eval_app.command("recommend")(recommend_command)


def _path(db: Path | None) -> Path:
    """The personalization DuckDB file: ``--db`` or ``<data_dir>/personalization.duckdb`` (shared with the API)."""
    from gaiverse.config import get_settings

    return db or get_settings().personalization_path


def _repository(db: Path | None):
    from gaiverse.personalization.task_repository import TaskRepository

    return TaskRepository(_path(db))


@tasks_app.command("seed")
def seed_command(db: Path | None = typer.Option(None, "--db", help="the personalization DuckDB file"),
                 srd: bool = typer.Option(True, "--srd/--no-srd", help="also import the SRD-derived quests")) -> None:
    """Add the authored tasks and the SRD-derived quests (idempotent)."""
    from gaiverse.personalization.knowledge import load_knowledge
    from gaiverse.personalization.task_corpus import seed_repository

    repo = _repository(db)
    added = seed_repository(repo, load_knowledge(), include_srd=srd)
    typer.echo(f"added {added} tasks; repository holds {len(repo)}")


@tasks_app.command("list")
def list_command(db: Path | None = typer.Option(None, "--db"), tag: list[str] = typer.Option([], "--tag"),
                 provenance: str | None = typer.Option(None, "--provenance", help="authored, imported or generated"),
                 limit: int = typer.Option(20, "--limit", min=1)) -> None:
    """Tasks of the repository, optionally by tag and provenance."""
    from gaiverse.personalization.task_repository import TaskFilter

    flt = TaskFilter(require_tags=list(tag), provenance=[provenance] if provenance else None)  # type: ignore[list-item]
    shown = [t for t in _repository(db).all() if flt.accepts(t)][:limit]
    table = Table(show_lines=False)
    for col in ("task_id", "title", "tags", "difficulty", "provenance"):
        table.add_column(col)
    for t in shown:
        table.add_row(t.task_id, t.title, ", ".join(t.tags), str(t.difficulty), t.provenance.kind)
    Console().print(table)


@tasks_app.command("search")
def search_command(query: str, db: Path | None = typer.Option(None, "--db"), tag: list[str] = typer.Option([], "--tag"),
                   k: int = typer.Option(10, "--k", min=1)) -> None:
    """Hybrid search (text/vector + tags) over the repository. PER-b2."""
    for hit in _repository(db).search(query, tag, k=k):
        typer.echo(f"{hit.score:6.3f}  {hit.task.task_id}  {hit.task.title}")


@tasks_app.command("generate")
def generate_command(user: str = typer.Option(..., "--user", help="account id (user_id of `gaiverse` API users)"),
                     n: int = typer.Option(1, "--n", min=1)) -> None:
    """Generate quests for a user from their stored history; they are stored back. PER-d1, PER-d2.

    Goes through the personalization service, so the user's consent and encryption apply (PER-f1).
    """
    from gaiverse.config import get_settings
    from gaiverse.personalization.service import PersonalizationService
    from gaiverse.privacy import ConsentRequired

    service = PersonalizationService.from_settings(get_settings())
    try:
        quests = service.generate(user, n)
    except (ConsentRequired, ValueError) as err:
        fail(err)
    for quest in quests:
        typer.echo(f"{quest.task.task_id}  {quest.task.title}\n  {quest.task.description}")


def register(app: typer.Typer) -> None:
    """Mount ``eval`` and ``tasks`` on the main CLI."""
    app.add_typer(eval_app, name="eval")
    app.add_typer(tasks_app, name="tasks")
