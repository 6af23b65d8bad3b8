"""Request and response bodies of the API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ComponentOut(BaseModel):
    status: Literal["ok", "error"]
    detail: str
    """'ok', or why the component is unavailable."""


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    """'ok' only when every component is ok (then the status code is 200, else 503)."""
    version: str
    components: dict[str, ComponentOut]
    """object_store, catalog, prefect, web."""


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    is_admin: bool = False


class UserOut(BaseModel):
    user_id: str
    name: str
    is_admin: bool
    key_prefix: str
    """First characters of the user's key, to tell keys apart; the key itself is never stored."""
    created_at: datetime


class UserCreated(UserOut):
    key: str
    """The new API key. Shown only in this response: store it now."""


class RunCreate(BaseModel):
    flow: str = Field(min_length=1, max_length=300, examples=["selfcheck", "selfcheck/selfcheck"])
    """A flow name (when it has one deployment) or 'flow/deployment'."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Checked against the deployment's parameter schema before anything is created."""


class RunOut(BaseModel):
    id: str
    flow_name: str
    deployment: str | None
    state: str
    """Prefect state type: SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED, PAUSED…"""
    state_name: str | None
    """Prefect state name (e.g. 'Late', 'Retrying')."""
    owner: str | None
    parameters: dict[str, Any]
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    message: str | None
    ui_url: str
    """The run in the Prefect UI."""


class LogOut(BaseModel):
    timestamp: datetime
    level: int
    level_name: str
    name: str
    message: str
    task_run_id: str | None


class DeploymentOut(BaseModel):
    name: str
    """'flow/deployment': what POST /runs takes as `flow`."""
    flow_name: str
    deployment: str
    id: str
    description: str | None
    tags: list[str]
    paused: bool
    parameter_schema: dict[str, Any]
    """The deployment's parameter_openapi_schema (JSON Schema)."""


class AssetOut(BaseModel):
    key: str
    kind: str
    sha256: str
    bytes: int
    content_type: str
    created_at: datetime
    producer_task_run: str | None
    inputs: list[str] = Field(default_factory=list)
    """Keys this asset was made from (lineage)."""


class AssetUrlOut(BaseModel):
    url: str
    """Presigned GET URL on the object store; needs no credentials until it expires."""
    expires_s: int


class VersionOut(BaseModel):
    collection: str
    version: int
    parent_version: int | None
    manifest_key: str
    message: str
    author: str
    created_at: datetime


class TaskRunOut(BaseModel):
    task_run_id: str
    flow_run_id: str | None
    task_name: str
    parameters_hash: str
    state: str
    retries: int
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    host: str | None
    message: str | None


class ValidationOut(BaseModel):
    validation_id: str
    suite: str
    asset_key: str | None
    flow_run_id: str | None
    success: bool
    details: Any
    created_at: datetime
