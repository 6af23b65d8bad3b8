"""``GET /health``: can this API do its work right now? One probe per service it depends on.

No authentication: the stack launcher and load balancers poll it. Each probe is bounded by a
short timeout so a dead service makes the answer 'error' instead of a hung request.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gaiverse import __version__
from gaiverse.api.deps import Services, ServicesDep
from gaiverse.api.errors import one_line
from gaiverse.api.schemas import ComponentOut, HealthOut
from storage.objectstore import ObjectStore

router = APIRouter(tags=["health"])
PROBE_TIMEOUT_S = 3.0


def _probe_store(store: ObjectStore) -> ComponentOut:
    if not store.client.bucket_exists(store.bucket):
        return ComponentOut(status="error", detail=f"bucket {store.bucket!r} does not exist")
    return ComponentOut(status="ok", detail="ok")


def _probe_catalog(services: Services) -> ComponentOut:
    rows = services.catalog.query("SELECT max(version) AS v FROM schema_migrations")
    return ComponentOut(status="ok", detail=f"ok (schema version {rows[0]['v']})")


async def _probe_prefect(services: Services) -> ComponentOut:
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
        response = await client.get(services.prefect_api + "/health")
    if response.status_code != 200:
        reason = f"{services.prefect_api}/health answered {response.status_code}"
        return ComponentOut(status="error", detail=reason)
    return ComponentOut(status="ok", detail="ok")


async def _guarded(name: str, probe) -> tuple[str, ComponentOut]:
    try:
        return name, await asyncio.wait_for(probe, PROBE_TIMEOUT_S + 1)
    except asyncio.TimeoutError:
        return name, ComponentOut(status="error", detail=f"no answer within {PROBE_TIMEOUT_S:.0f} s")
    except Exception as err:  # noqa: BLE001 - any failure of a probe is that component's status
        return name, ComponentOut(status="error", detail=one_line(f"{type(err).__name__}: {err}"))


@router.get("/health", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "degraded"}})
async def get_health(services: ServicesDep):
    """Status of the object store, the catalog, the Prefect API and the web terminal files."""
    results = await asyncio.gather(
        _guarded("object_store", asyncio.to_thread(_probe_store, services.extras["health_store"])),
        _guarded("catalog", asyncio.to_thread(_probe_catalog, services)),
        _guarded("prefect", _probe_prefect(services)),
    )
    components = dict(results)
    web_ok = services.web_status == "ok"
    components["web"] = ComponentOut(status="ok" if web_ok else "error", detail=services.web_status)
    healthy = all(c.status == "ok" for c in components.values())
    body = HealthOut(status="ok" if healthy else "degraded", version=__version__, components=components)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if healthy else 503)
