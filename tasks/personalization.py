"""Tasks of the personalization flows: thin wrappers over ``PersonalizationService`` and the platform pieces.

Every task takes and returns plain values; the service (DuckDB file, key ring, task index) is
built once per process from the settings. Reading a log is not cached (the file may change under
the same path); importing is idempotent by content (the store skips a log it imported before).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from gaiverse.config import REPO_ROOT, get_settings
from gaiverse.personalization.interaction_log import InteractionLog, read_interaction_log
from gaiverse.personalization.service import PersonalizationService
from gaiverse.privacy import RetentionPolicy
from storage.catalog import Catalog
from tasks.common import current_run_ids, gaiverse_task, get_catalog, get_store
from tasks.artifacts import validate_in_run
from validation.personalization import IMPORT_EXPECTATIONS, IMPORT_SUITE, import_frame


@lru_cache(maxsize=2)
def _service_at(path: Path) -> PersonalizationService:
    return PersonalizationService.from_settings(get_settings(), blobs=get_store())


def get_personalization() -> PersonalizationService:
    """The personalization service of this installation (one per process), current with other processes."""
    service = _service_at(get_settings().personalization_path)
    service.refresh()
    return service


def resolve_log_path(path: str) -> Path:
    """A log path as given, or relative to the repository root (where the shipped logs are)."""
    given = Path(path).expanduser()
    return given if given.is_absolute() else REPO_ROOT / given


@gaiverse_task(cache="none", retries=0)
def read_log(path: str, item_context: str | None = None) -> tuple[InteractionLog, str]:
    """Parse and validate one log (InteractionLogError names file, row and column), pseudonymise it."""
    resolved = resolve_log_path(path)
    parsed = read_interaction_log(resolved, resolve_log_path(item_context) if item_context else None)
    digest = hashlib.sha256(resolved.read_bytes()).hexdigest()
    prepared = get_personalization().pseudonymise_log(parsed)
    get_run_logger().info("read %d %s interactions from %s", len(prepared.frame), prepared.format, resolved.name)
    return prepared, digest


@gaiverse_task(cache="none", retries=1)
def validate_log(prepared: InteractionLog, digest: str) -> dict[str, Any]:
    """GX expectations over the frame that will be imported; recorded in the catalog and as an artifact."""
    report = validate_in_run(IMPORT_SUITE, import_frame(prepared), IMPORT_EXPECTATIONS,
                             asset_key=f"interaction-log:{digest[:16]}", asset_column="row")
    return {"suite": report.suite, "rows": report.rows, "success": report.success,
            "validation_id": report.validation_id}


@gaiverse_task(cache="none", retries=2, backoff_s=1.0)
def import_log(prepared: InteractionLog, digest: str) -> dict[str, Any]:
    """Store the validated log in one transaction (a log imported before is skipped)."""
    result = get_personalization().import_log(prepared, digest, pseudonymised=True)
    return {"source": Path(result.source).name, "format": result.format, "rows": result.rows,
            "users": result.users, "sha256": result.sha256, "already_imported": result.already_imported}


@gaiverse_task(cache="none", retries=3, backoff_s=1.0)
def record_import(summary: dict[str, Any], validation: dict[str, Any]) -> str:
    """A manifest of the import (no personal data: counts, hashes, validation) stored and catalogued."""
    flow_run_id, task_run_id = current_run_ids()
    manifest = {**summary, "validation": validation, "flow_run_id": flow_run_id}
    ref = get_store().put_bytes(json.dumps(manifest, sort_keys=True, indent=1).encode(),
                                kind="personalization/import", ext="json")
    get_catalog().record_asset(ref, task_run_id=task_run_id)
    return ref.key


@gaiverse_task(cache="none", retries=2, backoff_s=2.0)
def apply_retention(days: int | None = None) -> dict[str, Any]:
    """Delete interactions and media past the retention limit, then their catalog rows."""
    service = get_personalization()
    if days is not None:
        service.retention = RetentionPolicy(days)
    result = service.enforce_retention()
    forget_assets(get_catalog(), result.pop("media_keys"))
    return result


def forget_assets(catalog: Catalog, keys: list[str]) -> int:
    """Remove the catalog rows of deleted objects (assets, owners, lineage) in one transaction."""
    if not keys:
        return 0
    with catalog.write() as con:
        for key in keys:
            con.execute("DELETE FROM lineage WHERE output_key = ? OR input_key = ?", [key, key])
            con.execute("DELETE FROM asset_owners WHERE key = ?", [key])
            con.execute("DELETE FROM assets WHERE key = ?", [key])
    return len(keys)


@gaiverse_task(cache="none", retries=1)
def seed_repository(include_srd: bool = True) -> dict[str, int]:
    """Add the authored and SRD-derived tasks missing from the repository."""
    service = get_personalization()
    added = service.seed(include_srd)
    return {"added": added, "tasks": len(service.repository)}
