"""Users and their keys over HTTP: the admin creates users, everyone can ask who they are."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from gaiverse.api.deps import AdminUser, CurrentUser, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.keys import create_user
from gaiverse.api.schemas import UserCreate, UserCreated, UserOut

router = APIRouter(tags=["users"], responses=AUTH_ERRORS)


@router.post("/users", status_code=201, response_model=UserCreated, responses=error_responses(403, 409))
async def post_user(body: UserCreate, services: ServicesDep, admin: AdminUser) -> UserCreated:
    """Create a user (admin only). The response holds the user's API key, which is shown only once."""
    try:
        user, key = await run_in_threadpool(create_user, services.catalog, body.name, is_admin=body.is_admin)
    except LookupError as err:
        raise HTTPException(409, str(err)) from err
    except ValueError as err:
        raise HTTPException(422, str(err)) from err
    return UserCreated(**asdict(user), key=key)


@router.get("/me", response_model=UserOut)
async def get_me(user: CurrentUser) -> UserOut:
    """The user this key belongs to."""
    return UserOut(**asdict(user))
