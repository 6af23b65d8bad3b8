"""Trigger deployments and follow their runs; a user sees only the runs they started (admins see all).

A run's owner is the catalog row written when the API created it (and the ``owner:<id>`` tag
on the Prefect run). Someone else's run answers 404 exactly like a run that does not exist,
so ids cannot be probed.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from prefect.client.schemas.objects import FlowRun
from starlette.concurrency import run_in_threadpool

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, UpstreamError, error_responses
from gaiverse.api.keys import User
from gaiverse.api.prefect_gateway import (
    AmbiguousFlow,
    InvalidParameters,
    NotFound,
    PrefectGateway,
    check_parameters,
)
from gaiverse.api.schemas import DeploymentOut, LogOut, RunCreate, RunOut

log = logging.getLogger(__name__)

router = APIRouter(tags=["runs"], responses={**AUTH_ERRORS, **error_responses(502)})

RUN_NOT_FOUND = "no run {id!r} among your runs"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def gateway(services: Services) -> PrefectGateway:
    return services.extras["prefect"]


@router.get("/deployments", response_model=list[DeploymentOut])
async def get_deployments(services: ServicesDep, user: CurrentUser) -> list[DeploymentOut]:
    """What POST /runs can trigger, with each deployment's parameter schema."""
    return [
        DeploymentOut(
            name=f"{flow_name}/{d.name}", flow_name=flow_name, deployment=d.name, id=str(d.id),
            description=d.description, tags=list(d.tags), paused=bool(d.paused),
            parameter_schema=d.parameter_openapi_schema or {},
        )
        for flow_name, d in await gateway(services).deployments()
    ]


@router.post("/runs", status_code=201, response_model=RunOut, responses=error_responses(404, 503))
async def post_run(body: RunCreate, services: ServicesDep, user: CurrentUser) -> RunOut:
    """Start a run of a deployment. Nothing is created unless the deployment exists and the parameters fit."""
    row, flow_run = await start_run(services, user, body.flow, body.parameters)
    return _run_out(services, row, flow_run)


async def start_run(services: Services, user: User, deployment_name: str, parameters: dict[str, Any],
                    tags: tuple[str, ...] = (), not_deployed: str | None = None) -> tuple[dict[str, Any], Any]:
    """Create a run of ``deployment_name`` owned by ``user`` and record it in the catalog.

    Shared by POST /runs and the capability endpoints (worlds, NPCs) so every run is created the
    same way: 404 when the deployment is not served here (``not_deployed`` explains why), 422 when
    the parameters do not fit, and no run left behind when the catalog row cannot be written.
    Returns the catalog row and the Prefect flow run.
    """
    prefect = gateway(services)
    try:
        flow_name, deployment = await prefect.resolve(deployment_name)
        check_parameters(deployment.parameter_openapi_schema, parameters)
        flow_run = await prefect.create_run(deployment, parameters, tags=[f"owner:{user.user_id}", "api", *tags])
    except NotFound as err:
        raise HTTPException(404, not_deployed or str(err)) from err
    except (AmbiguousFlow, InvalidParameters) as err:
        raise HTTPException(422, str(err)) from err
    full_name = f"{flow_name}/{deployment.name}"
    try:
        await run_in_threadpool(
            services.catalog.upsert_run, str(flow_run.id), flow_name=flow_name, state=_state_type(flow_run),
            parameters=parameters, deployment=full_name, owner=user.user_id,
        )
    except Exception as err:
        # the run must not exist without its owner row: take it back before it is picked up
        await prefect.delete_run(flow_run.id)
        log.exception("could not record run %s in the catalog; deleted it", flow_run.id)
        raise HTTPException(503, f"catalog unavailable, run not started: {type(err).__name__}") from err
    log.info("user %s started %s as run %s", user.name, full_name, flow_run.id)
    row = {"flow_run_id": str(flow_run.id), "flow_name": flow_name, "deployment": full_name,
           "owner": user.user_id, "parameters": parameters}
    return row, flow_run


@router.get("/runs", response_model=list[RunOut])
async def get_runs(services: ServicesDep, user: CurrentUser,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[RunOut]:
    """Your runs, newest first, with live state from Prefect (catalog state when Prefect is unreachable)."""
    if user.is_admin:
        sql, params = "SELECT * FROM runs", []
    else:
        sql, params = "SELECT * FROM runs WHERE owner = ?", [user.user_id]
    rows = await run_in_threadpool(
        services.catalog.query, sql + " ORDER BY started_at DESC NULLS FIRST, rowid DESC LIMIT ?",
        [*params, limit],
    )
    try:
        ids = [UUID(r["flow_run_id"]) for r in rows if _is_uuid(r["flow_run_id"])]
        live = await gateway(services).read_runs(ids)
    except UpstreamError as err:
        log.warning("listing runs without live state: %s", err)
        live = {}
    runs = [_run_out(services, row, live.get(row["flow_run_id"])) for row in rows]
    return sorted(runs, key=lambda r: _created(live.get(r.id)) or r.started_at or EPOCH, reverse=True)


@router.get("/runs/{run_id}", response_model=RunOut, responses=error_responses(404))
async def get_run(run_id: str, services: ServicesDep, user: CurrentUser) -> RunOut:
    """One of your runs: Prefect's live state merged with its catalog row."""
    row, flow_run = await _visible_run(services, user, run_id)
    return _run_out(services, row, flow_run)


@router.get("/runs/{run_id}/logs", response_model=list[LogOut], responses=error_responses(404))
async def get_run_logs(run_id: str, services: ServicesDep, user: CurrentUser,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                       offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[LogOut]:
    """Log lines Prefect recorded for one of your runs (flow and task loggers), oldest first."""
    await _visible_run(services, user, run_id)
    logs = await gateway(services).read_logs(UUID(run_id), limit=limit, offset=offset)
    return [
        LogOut(timestamp=entry.timestamp, level=entry.level, level_name=_level_name(entry.level),
               name=entry.name, message=entry.message,
               task_run_id=str(entry.task_run_id) if entry.task_run_id else None)
        for entry in logs
    ]


async def _visible_run(services: Services, user: User, run_id: str) -> tuple[dict[str, Any], FlowRun | None]:
    """(catalog row, Prefect run) of a run this user may see; 404 otherwise (PER-f1: no existence leak)."""
    if not _is_uuid(run_id):
        raise HTTPException(404, RUN_NOT_FOUND.format(id=run_id))
    run_id = str(UUID(run_id))
    row = await run_in_threadpool(services.catalog.run, run_id)
    if row is not None and not user.is_admin and row.get("owner") != user.user_id:
        row = None
    if row is None and not user.is_admin:
        raise HTTPException(404, RUN_NOT_FOUND.format(id=run_id))
    flow_run = await gateway(services).read_run(UUID(run_id))
    if row is None:  # admins also see runs started outside the API (Prefect UI, schedules)
        if flow_run is None:
            raise HTTPException(404, RUN_NOT_FOUND.format(id=run_id))
        row = {"flow_run_id": run_id, "flow_name": flow_run.name, "parameters": flow_run.parameters}
    return row, flow_run


def _run_out(services: Services, row: dict[str, Any], flow_run: FlowRun | None) -> RunOut:
    params = row.get("parameters")
    if isinstance(params, str):
        params = json.loads(params)
    state = flow_run.state if flow_run is not None else None
    total = flow_run.total_run_time.total_seconds() if flow_run is not None and flow_run.end_time else None
    return RunOut(
        id=row["flow_run_id"], flow_name=row["flow_name"], deployment=row.get("deployment"),
        state=state.type.value if state else row.get("state") or "UNKNOWN",
        state_name=state.name if state else None, owner=row.get("owner"),
        parameters=params if isinstance(params, dict) else {},
        started_at=(flow_run.start_time if flow_run is not None else None) or row.get("started_at"),
        ended_at=(flow_run.end_time if flow_run is not None else None) or row.get("ended_at"),
        duration_s=total if total is not None else row.get("duration_s"),
        message=(state.message if state else None) or row.get("message"),
        ui_url=f"{services.prefect_ui}/runs/flow-run/{row['flow_run_id']}",
    )


def _created(flow_run: FlowRun | None) -> datetime | None:
    return flow_run.created if flow_run is not None else None


def _state_type(flow_run: FlowRun) -> str:
    return flow_run.state.type.value if flow_run.state else "SCHEDULED"


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def _level_name(level: int) -> str:
    return logging.getLevelName(level) if isinstance(logging.getLevelName(level), str) else str(level)
