"""The API's only door to Prefect: resolve deployments, check parameters, create and read flow runs.

The API never runs a flow itself: it asks the Prefect server to schedule a run of a served
deployment, and a runner/worker executes it. Failures are exceptions the routes map
to status codes: ``NotFound`` (404), ``AmbiguousFlow`` and ``InvalidParameters`` (422), and
``UpstreamError`` (502).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Sequence
from uuid import UUID

import httpx
import jsonschema
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterId,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, Log
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.sorting import LogSort
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from gaiverse.api.errors import UpstreamError, one_line

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 15.0


class NotFound(LookupError):
    """No such deployment or flow run (the message is the one-line reason)."""


class AmbiguousFlow(ValueError):
    """A flow name that has several deployments: the caller must name one (answered as 422)."""


class InvalidParameters(ValueError):
    """Parameters that do not match the deployment's schema (the message names the parameter)."""


class PrefectGateway:
    """Short-lived Prefect clients on one API URL (a client per call keeps no state between requests)."""

    def __init__(self, api_url: str):
        self.api_url = api_url.rstrip("/")

    @asynccontextmanager
    async def client(self) -> AsyncIterator[PrefectClient]:
        try:
            async with PrefectClient(self.api_url, httpx_settings={"timeout": REQUEST_TIMEOUT_S}) as client:
                yield client
        except (httpx.HTTPError, PrefectHTTPStatusError) as err:
            raise UpstreamError(f"Prefect API at {self.api_url} failed: {type(err).__name__}: {err}") from err

    # deployments -------------------------------------------------------------------------
    async def deployments(self) -> list[tuple[str, DeploymentResponse]]:
        """Every deployment with its flow's name, sorted by 'flow/deployment'."""
        async with self.client() as client:
            deployments = await client.read_deployments(limit=200)
            flow_ids = list({d.flow_id for d in deployments})
            flows = await client.read_flows(
                flow_filter=FlowFilter(id=FlowFilterId(any_=flow_ids)), limit=200
            ) if deployments else []
        names = {flow.id: flow.name for flow in flows}
        pairs = [(names.get(d.flow_id, "?"), d) for d in deployments]
        return sorted(pairs, key=lambda pair: f"{pair[0]}/{pair[1].name}")

    async def resolve(self, flow: str) -> tuple[str, DeploymentResponse]:
        """The deployment named by ``flow``: 'flow/deployment', or a flow with exactly one deployment."""
        parts = flow.split("/")
        if len(parts) > 2 or not all(parts):
            raise NotFound(f"`flow` must be 'flow' or 'flow/deployment', got {flow!r}")
        flow_name = parts[0]
        deployment_filter = (
            DeploymentFilter(name=DeploymentFilterName(any_=[parts[1]])) if len(parts) == 2 else None
        )
        async with self.client() as client:
            found = await client.read_deployments(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                deployment_filter=deployment_filter, limit=50,
            )
        if not found:
            raise NotFound(f"no deployment named {flow!r}: GET /deployments lists what can be triggered")
        if len(found) > 1:
            choices = ", ".join(sorted(f"{flow_name}/{d.name}" for d in found))
            raise AmbiguousFlow(f"flow {flow_name!r} has {len(found)} deployments ({choices}): "
                                "name one as 'flow/deployment'")
        return flow_name, found[0]

    # runs --------------------------------------------------------------------------------
    async def create_run(self, deployment: DeploymentResponse, parameters: dict[str, Any],
                         tags: Sequence[str]) -> FlowRun:
        async with self.client() as client:
            try:
                return await client.create_flow_run_from_deployment(
                    deployment.id, parameters=parameters, tags=list(tags)
                )
            except PrefectHTTPStatusError as err:
                status = err.response.status_code
                if status in (409, 422):  # the server's own parameter check refused them
                    reason = one_line(f"Prefect refused the parameters: {err.response.text}")
                    raise InvalidParameters(reason) from err
                if status == 404:
                    raise NotFound(f"deployment {deployment.name!r} disappeared") from err
                raise

    async def delete_run(self, flow_run_id: UUID) -> None:
        async with self.client() as client:
            try:
                await client.delete_flow_run(flow_run_id)
            except ObjectNotFound:
                pass

    async def read_run(self, flow_run_id: UUID) -> FlowRun | None:
        async with self.client() as client:
            try:
                return await client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                return None

    async def read_runs(self, flow_run_ids: Sequence[UUID]) -> dict[str, FlowRun]:
        """Flow runs by id (missing ids are left out)."""
        if not flow_run_ids:
            return {}
        async with self.client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(flow_run_ids))),
                limit=len(flow_run_ids),
            )
        return {str(run.id): run for run in runs}

    async def read_logs(self, flow_run_id: UUID, limit: int, offset: int) -> list[Log]:
        async with self.client() as client:
            return await client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=limit, offset=offset, sort=LogSort.TIMESTAMP_ASC,
            )


def check_parameters(schema: dict[str, Any] | None, parameters: dict[str, Any]) -> None:
    """Check ``parameters`` against a deployment's parameter_openapi_schema.

    Raises InvalidParameters naming the first bad parameter. Unknown names are refused too:
    the flow would only fail on them later, after a run had been created.
    """
    schema = schema or {"type": "object", "properties": {}}
    known = schema.get("properties") or {}
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise InvalidParameters(f"unknown parameter `{unknown[0]}` (this deployment takes: {allowed})")
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as err:
        raise UpstreamError(f"the deployment's parameter schema is invalid: {one_line(err.message)}") from err
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(parameters))
    if error is None:
        return
    if error.path:
        name = str(error.path[0])
        where = "".join(f"[{p!r}]" for p in list(error.path)[1:])
        raise InvalidParameters(one_line(f"parameter `{name}`{where}: {error.message}"))
    if error.validator == "required":
        missing = [n for n in error.validator_value if n not in parameters]
        raise InvalidParameters(f"missing required parameter `{missing[0] if missing else '?'}`")
    raise InvalidParameters(one_line(f"parameters: {error.message}"))
