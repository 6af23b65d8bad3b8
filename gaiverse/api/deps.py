"""What every route needs: the services of this installation and the user behind the request.

Routes get them through FastAPI dependencies so that no module keeps a global client: the
app factory builds one ``Services`` per app (tests build several apps in one process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from gaiverse.api.keys import NEEDS_RELOAD, User, cached_user_by_key, find_user_by_key
from gaiverse.config import Settings
from storage.catalog import Catalog
from storage.objectstore import ObjectStore


@dataclass
class Services:
    """The clients one API process uses; built once in ``create_app``."""

    settings: Settings
    store: ObjectStore
    catalog: Catalog
    web_status: str = "ok"
    """'ok', or why the web terminal cannot be served (three.js missing)."""
    extras: dict = field(default_factory=dict)

    @property
    def prefect_api(self) -> str:
        return self.settings.prefect_url.rstrip("/")

    @property
    def prefect_ui(self) -> str:
        """Base URL of the Prefect UI (the API URL without its /api suffix)."""
        base = self.prefect_api
        return base[: -len("/api")] if base.endswith("/api") else base


async def get_services(request: Request) -> Services:
    # async: a plain ``def`` dependency costs every request a worker-thread hop (PER-g1)
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer gv_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: gv_...`")

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def current_user(
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_header)],
) -> User:
    """The user whose key came with the request; 401 when it is missing or unknown."""
    key = header_key or (bearer.credentials if bearer is not None else None)
    if not key:
        raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>` or `X-API-Key`",
                            headers=UNAUTHORIZED)
    user = cached_user_by_key(services.catalog, key)  # from memory, no thread hop (PER-g1)
    if user is NEEDS_RELOAD:
        user = await run_in_threadpool(find_user_by_key, services.catalog, key)
    if user is None:
        raise HTTPException(401, "invalid API key", headers=UNAUTHORIZED)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(403, f"user {user.name!r} is not an admin: this needs the admin key")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
