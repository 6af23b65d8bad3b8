"""One error shape for the whole API: ``{"detail": "<one line reason>"}`` with the right 4xx.

FastAPI's own validation errors are a list of dicts; clients (the CLI, the web terminal)
print ``detail`` as it is, so every error is flattened to one line here, and the OpenAPI
schema declares that shape for every status a route can return (schemathesis checks it).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    """Every error response."""

    detail: str
    """One line saying what was wrong, naming the argument and the value."""


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring ErrorOut for each status code."""
    reasons = {
        400: "Malformed request",
        401: "Missing or invalid API key",
        403: "Admin key required",
        404: "Not found (or not yours)",
        409: "Conflicts with an existing resource",
        413: "Upload larger than the limit",
        415: "File type not allowed",
        422: "Invalid parameters",
        502: "An upstream service (Prefect, object store) failed",
        503: "A service this endpoint needs is unavailable",
    }
    return {code: {"model": ErrorOut, "description": reasons.get(code, "Error")} for code in codes}


AUTH_ERRORS = error_responses(400, 401, 422)
"""What every authenticated route can answer besides its success."""


class UpstreamError(RuntimeError):
    """A service the API depends on (Prefect, S3) failed; answered as 502 with its reason."""


def one_line(text: Any, limit: int = 300) -> str:
    """Collapse whitespace so a reason is one line, and cap it."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _validation_reason(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body",)) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"`{where}`: {first.get('msg', 'invalid')}{more}")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through ErrorOut."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": one_line(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_reason(exc)}, status_code=422)

    @app.exception_handler(UpstreamError)
    async def _upstream(request: Request, exc: UpstreamError) -> JSONResponse:
        log.warning("upstream failure on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": one_line(exc)}, status_code=502)
