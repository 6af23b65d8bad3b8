"""Personalization flows: bulk import of interaction logs, the daily retention run, seeding the task repository.

import: read + validate + pseudonymise (per file) -> GX on what will be stored -> import in one
transaction -> manifest in the store and the catalog -> summary artifact. A file that fails
validation stops the flow before anything of it is stored.
retention: interactions and media older than ``retention_days`` are deleted (PER-f1), daily.
seed: the authored and SRD-derived tasks (PER-b1); the API also seeds an empty repository at start.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from tasks.artifacts import table_artifact
from tasks.common import flow_hooks
from tasks.personalization import apply_retention, import_log, read_log, record_import, seed_repository, validate_log

DEFAULT_LOG = "data/interactions/obd/bts/men/men.csv"


@flow(name="personalization-import", description="Validated bulk import of interaction logs (PER-a2).",
      **flow_hooks())
def import_interactions(
    paths: Annotated[list[str], Field(min_length=1, max_length=100)] = [DEFAULT_LOG],  # noqa: B006
    item_context: str | None = None,
) -> list[dict[str, Any]]:
    """Import each log (gaiverse or Open Bandit CSV; paths relative to the repository root or absolute).

    Returns one summary per file: source, format, rows, users, sha256, already_imported, manifest key.
    """
    summaries = []
    for path in paths:
        prepared, digest = read_log(path, item_context)
        validation = validate_log(prepared, digest)
        summary = import_log(prepared, digest)
        summaries.append({**summary, "manifest": record_import(summary, validation)})
    table_artifact("personalization-import", summaries, title="Imported interaction logs",
                   columns=["source", "format", "rows", "users", "already_imported", "manifest"])
    get_run_logger().info("imported %d logs, %d rows", len(summaries), sum(s["rows"] for s in summaries))
    return summaries


@flow(name="personalization-retention", description="Delete personal data past its retention limit (PER-f1).",
      **flow_hooks())
def enforce_retention(days: Annotated[int | None, Field(ge=1, le=36500)] = None) -> dict[str, Any]:
    """Delete interactions and their media older than ``days`` (default: the ``retention_days`` setting)."""
    result = apply_retention(days)
    table_artifact("personalization-retention", [result], title="Retention run",
                   columns=["cutoff", "interactions", "media_objects"])
    return result


@flow(name="personalization-seed", description="Seed the task repository with authored and SRD tasks (PER-b1).",
      **flow_hooks())
def seed_tasks(include_srd: bool = True) -> dict[str, int]:
    """Add the authored tasks and (optionally) the SRD-derived quests that are missing."""
    return seed_repository(include_srd)
