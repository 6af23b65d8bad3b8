"""A user's assets: list, metadata, download (presigned redirect), and same-origin content for the viewer.

Ownership is the catalog's ``asset_owners`` table. An asset that is not yours answers 404
exactly like one that does not exist. ``/download`` redirects to a presigned URL on the object
store (the API never proxies big files for clients that can follow it); ``/content`` streams
the bytes through the API for the web terminal, because a browser script cannot read a
cross-origin S3 response without CORS, which the embedded S3 server does not send.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Iterator

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import RedirectResponse, StreamingResponse
from minio.error import S3Error

from gaiverse.api.deps import CurrentUser, Services, ServicesDep
from gaiverse.api.errors import AUTH_ERRORS, error_responses
from gaiverse.api.keys import User
from gaiverse.api.schemas import AssetOut, AssetUrlOut
from storage.objectstore import CHUNK, parse_key

log = logging.getLogger(__name__)

router = APIRouter(tags=["assets"], responses=AUTH_ERRORS)

URL_EXPIRES_S = 3600
ASSET_NOT_FOUND = "no asset {key!r} among your assets"
KIND_PATTERN = r"^[a-z][a-z0-9_/-]{0,200}$"
KindQuery = Annotated[str | None, Query(pattern=KIND_PATTERN, description="kind or kind prefix")]


@router.get("/assets", response_model=list[AssetOut])
def get_assets(
    services: ServicesDep, user: CurrentUser,
    kind: KindQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AssetOut]:
    """Your assets, newest first (admins see every asset)."""
    where, params = [], []
    if not user.is_admin:
        where.append("key IN (SELECT key FROM asset_owners WHERE owner = ?)")
        params.append(user.user_id)
    if kind:
        where.append("(kind = ? OR starts_with(kind, ?))")
        params += [kind.rstrip("/"), kind.rstrip("/") + "/"]
    sql = "SELECT * FROM assets" + (" WHERE " + " AND ".join(where) if where else "")
    rows = services.catalog.query(sql + " ORDER BY created_at DESC, key LIMIT ?", [*params, limit])
    return [AssetOut(**row) for row in rows]


@router.get("/assets/{key:path}/download", response_class=RedirectResponse, status_code=307,
            responses={307: {"description": "Redirect to a presigned URL on the object store"},
                       **error_responses(404)})
def download_asset(key: str, services: ServicesDep, user: CurrentUser) -> RedirectResponse:
    """Redirect (307) to a presigned, time-limited URL of one of your assets."""
    visible_asset(services, user, key)
    return RedirectResponse(presigned_url(services, key), status_code=307)


@router.get("/assets/{key:path}/url", response_model=AssetUrlOut, responses=error_responses(404))
def asset_url(key: str, services: ServicesDep, user: CurrentUser) -> AssetUrlOut:
    """The presigned URL /download redirects to, as JSON (for pages that open it themselves)."""
    visible_asset(services, user, key)
    return AssetUrlOut(url=presigned_url(services, key), expires_s=URL_EXPIRES_S)


@router.get("/assets/{key:path}/content", response_class=StreamingResponse,
            responses={200: {"description": "The asset's bytes", "content": {"application/octet-stream": {}}},
                       **error_responses(404)})
def asset_content(key: str, services: ServicesDep, user: CurrentUser) -> StreamingResponse:
    """The asset's bytes through the API (same origin, for the web terminal's viewer)."""
    row = visible_asset(services, user, key)
    try:
        response = services.store.client.get_object(services.store.bucket, key)
    except S3Error as err:
        if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
            raise HTTPException(404, f"asset {key!r} is in the catalog but not in the object store") from err
        raise
    return StreamingResponse(
        _stream(response), media_type=row["content_type"],
        headers={"Content-Length": str(row["bytes"]), "Cache-Control": "private, max-age=86400, immutable"},
    )


@router.get("/assets/{key:path}", response_model=AssetOut, responses=error_responses(404))
def get_asset(key: str, services: ServicesDep, user: CurrentUser) -> AssetOut:
    """Metadata of one of your assets, with the keys it was made from."""
    row = visible_asset(services, user, key)
    inputs = services.catalog.query(
        "SELECT input_key FROM lineage WHERE output_key = ? ORDER BY input_key", [key]
    )
    return AssetOut(**row, inputs=[r["input_key"] for r in inputs])


def visible_asset(services: Services, user: User, key: str) -> dict[str, Any]:
    """The catalog row of an asset this user owns (any asset for admins); 404 otherwise.

    Part of PER-f1: one user's data is never visible to another, not even its existence.
    """
    try:
        parse_key(key)
    except ValueError:
        raise HTTPException(404, ASSET_NOT_FOUND.format(key=key[:200])) from None
    row = services.catalog.asset(key)
    if row is None or not (user.is_admin or services.catalog.can_read_asset(key, user.user_id)):
        raise HTTPException(404, ASSET_NOT_FOUND.format(key=key))
    return row


def presigned_url(services: Services, key: str) -> str:
    _, sha, ext = parse_key(key)
    return services.store.presigned_get(key, expires_s=URL_EXPIRES_S, filename=f"{sha[:16]}.{ext}")


def _stream(response) -> Iterator[bytes]:
    try:
        yield from response.stream(CHUNK)
    finally:
        response.close()
        response.release_conn()

