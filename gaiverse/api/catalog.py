"""Read-only catalog queries, always scoped to the caller: versions, task runs and validations.

Fixed queries with bound parameters only (no SQL from clients): each endpoint is one question
a user or the web terminal asks about their own runs and collections.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.keys import User
from gaiverse.api.schemas import TaskRunOut, ValidationOut, VersionOut

router = APIRouter(tags=["catalog"], responses=AUTH_ERRORS)

RunId = Annotated[str, Query(min_length=1, max_length=100, description="flow run id")]


@router.get("/versions/{collection}", response_model=list[VersionOut], responses=error_responses(404))
def get_versions(collection: Annotated[str, Path(min_length=1, max_length=200)], services: ServicesDep,
                 user: CurrentUser) -> list[VersionOut]:
    """Published versions of a collection (e.g. a world) that you authored, oldest first; admins see all."""
    sql = ("SELECT collection, version, parent_version, manifest_key, message, author, created_at "
           "FROM versions WHERE collection = ?")
    params: list[Any] = [collection]
    if not user.is_admin:
        sql += " AND author = ?"
        params.append(user.user_id)
    rows = services.catalog.query(sql + " ORDER BY version", params)
    if not rows:
        raise HTTPException(404, f"no versions of collection {collection!r} among yours")
    return [VersionOut(**row) for row in rows]


@router.get("/catalog/task_runs", response_model=list[TaskRunOut], responses=error_responses(404))
def get_task_runs(run_id: RunId, services: ServicesDep, user: CurrentUser) -> list[TaskRunOut]:
    """Task runs the flow recorded for one of your runs (duration, retries, state, host), in start order."""
    _check_run(services, user, run_id)
    rows = services.catalog.query(
        "SELECT * FROM task_runs WHERE flow_run_id = ? ORDER BY started_at NULLS LAST, task_name", [run_id]
    )
    return [TaskRunOut(**row) for row in rows]


@router.get("/catalog/validations", response_model=list[ValidationOut], responses=error_responses(404))
def get_validations(run_id: RunId, services: ServicesDep, user: CurrentUser) -> list[ValidationOut]:
    """Validation results (Great Expectations suites) recorded for one of your runs."""
    _check_run(services, user, run_id)
    rows = services.catalog.query(
        "SELECT * FROM validations WHERE flow_run_id = ? ORDER BY created_at, suite", [run_id]
    )
    for row in rows:
        if isinstance(row.get("details"), str):
            row["details"] = json.loads(row["details"])
    return [ValidationOut(**row) for row in rows]


def _check_run(services: Services, user: User, run_id: str) -> None:
    """404 unless the run is in the catalog and is the caller's (admins: any id)."""
    if user.is_admin:
        return
    row = services.catalog.run(run_id)
    if row is None or row.get("owner") != user.user_id:
        raise HTTPException(404, f"no run {run_id!r} among your runs")
