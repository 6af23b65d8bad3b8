"""Prefect artifacts for gaiverse runs: markdown tables, PNG previews (stored, linked by presigned URL), validation reports.

Artifacts are what a user sees on a run's page in the Prefect UI. Images are not embedded:
the PNG goes into the object store (content-addressed, like every output) and the
artifact links it through a presigned GET URL; the description names the object key so
the API can sign a fresh URL after this one expires.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence
from uuid import UUID

import pandas as pd
from prefect.artifacts import create_image_artifact, create_markdown_artifact

from storage.objectstore import AssetRef, ObjectStore
from tasks.common import current_run_ids, get_catalog, get_store
from validation.metrics import Expect, ValidationFailed, ValidationReport, validate_frame

log = logging.getLogger(__name__)

ARTIFACT_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
PRESIGN_S = 7 * 24 * 3600
"""Lifetime of preview links: the longest S3 allows."""


def check_artifact_key(key: str) -> str:
    if not ARTIFACT_KEY_RE.match(key):
        raise ValueError(f"`key` must be lowercase letters, digits and dashes (Prefect artifact key), got {key!r}")
    return key


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (columns default to the first row's keys)."""
    if not rows:
        return "_(no rows)_"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(row.get(column, "")).replace("|", "\\|").replace("\n", " ") for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_artifact(key: str, rows: Sequence[dict[str, Any]], *, title: str | None = None,
                   columns: Sequence[str] | None = None, description: str | None = None) -> UUID:
    """Attach a markdown table to the current run (works in flows and tasks)."""
    body = (f"### {title}\n\n" if title else "") + markdown_table(rows, columns)
    return create_markdown_artifact(markdown=body, key=check_artifact_key(key), description=description)


def png_artifact(key: str, png: bytes, *, kind: str = "preview", description: str | None = None,
                 store: ObjectStore | None = None) -> AssetRef:
    """Store ``png`` in the object store and attach it to the current run as an image artifact.

    Returns the stored object's ref (content-addressed: the same preview is stored once).
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"`png` is not a PNG image (starts with {png[:8]!r})")
    check_artifact_key(key)
    store = store or get_store()
    ref = store.put_bytes(png, kind=kind, ext="png")
    _, task_run_id = current_run_ids()
    get_catalog().record_asset(ref, task_run_id=task_run_id)  # every stored object has its catalog row
    url = store.presigned_get(ref.key, expires_s=PRESIGN_S)
    create_image_artifact(image_url=url, key=key, description=f"{description or 'preview'} (object `{ref.key}`)")
    log.info("attached preview %s as artifact %s", ref.key, key)
    return ref


def attach_validation(report: ValidationReport) -> UUID:
    """Attach a validation report (one row per expectation) to the current run."""
    key = check_artifact_key("validation-" + re.sub(r"[^a-z0-9]+", "-", report.suite.lower()).strip("-"))
    return create_markdown_artifact(markdown=report.to_markdown(), key=key,
                                    description=f"Great Expectations suite {report.suite}")


def validate_in_run(suite: str, frame: pd.DataFrame, expectations: Sequence[Expect], *,
                    asset_key: str | None = None, asset_column: str | None = "key") -> ValidationReport:
    """``validate_frame`` for flows: recorded in the catalog with this flow run's id, attached as an artifact.

    The artifact is attached before a failure is raised, so a failed run shows what failed.
    """
    flow_run_id, _ = current_run_ids()
    try:
        report = validate_frame(suite, frame, expectations, asset_key=asset_key, asset_column=asset_column,
                                catalog=get_catalog(), flow_run_id=flow_run_id)
    except ValidationFailed as failure:
        attach_validation(failure.report)
        raise
    attach_validation(report)
    return report
