"""The FastAPI app: ``create_app(settings)`` wires the services and routers; ``main()`` serves it.

Run it with ``python -m gaiverse.api`` (host/port from settings) or
``uvicorn --factory gaiverse.api.app:create_app --host 127.0.0.1 --port 8400``.
Start-up makes sure the bucket exists (when the object store is up), migrates the catalog and
creates the admin key on the first start (see ``gaiverse.api.keys``).
"""

from __future__ import annotations

import gc
import logging
import time

from fastapi import FastAPI

from gaiverse import __version__
from gaiverse.api import assets, auth, catalog, health, knowledge, npc_live, npcs, personalization, runs, uploads
from gaiverse.api import avatars, interiors, worlds
from gaiverse.api.deps import Services
from gaiverse.api.errors import install_error_handlers
from gaiverse.api.keys import ensure_admin
from gaiverse.api.personal_data import start_personalization
from gaiverse.api.prefect_gateway import PrefectGateway
from gaiverse.api.web import mount_web
from gaiverse.config import Settings, get_settings
from storage.catalog import Catalog
from storage.objectstore import ObjectStore

log = logging.getLogger(__name__)

DESCRIPTION = """\
Trigger gaiverse flows (Prefect deployments), follow their runs and logs, and read your assets
and catalog records. Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`;
the admin key is created on the first start (`<data_dir>/admin.key`) and creates users.
Errors are `{"detail": "<one line reason>"}`. Another user's runs and assets answer 404.
`/personalization` holds your interactions, profile, recommendations and quests, with consent
per purpose, export and erasure (docs/PRIVACY.md); it only ever shows your own data.
`/knowledge` extends the NPC knowledge base with your documents and facts; nobody else sees them.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready app for ``settings`` (default: the process settings from the environment)."""
    settings = settings or get_settings()
    store = ObjectStore.from_settings(settings)
    try:
        store.ensure_bucket()
    except Exception as err:  # noqa: BLE001 - the API still starts; /health reports the store
        log.warning("object store at %s unavailable at start: %s", settings.s3_address, err)
    cat = Catalog(settings.catalog_path)
    ensure_admin(settings, cat)

    services = Services(settings=settings, store=store, catalog=cat)
    services.extras["prefect"] = PrefectGateway(settings.prefect_url)
    services.extras["health_store"] = ObjectStore.from_settings(settings, timeout_s=3.0)
    services.extras["personalization"] = start_personalization(settings, store)
    services.extras["knowledge"] = knowledge.start_knowledge(settings)
    app = build_app()
    app.state.services = services
    services.web_status = mount_web(app)
    if settings.server_timing:
        app.add_middleware(ServerTiming)
    # Everything loaded so far (indexes over millions of interactions, tasks, keys) lives as long as the
    # process: move it out of the collector's reach, or each full collection walks it all (~100+ ms
    # pauses of every request at once, PER-g1).
    gc.collect()
    gc.freeze()
    return app


class ServerTiming:
    """Pure ASGI middleware adding ``Server-Timing: app;dur=<ms>`` (request in -> response start), so the
    load benchmark can separate time in the app from queueing and the client's own time (PER-g1)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def timed_send(message) -> None:
            if message["type"] == "http.response.start":
                dur = f"app;dur={(time.perf_counter() - began) * 1e3:.3f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", dur)]}
            await send(message)

        await self.app(scope, receive, timed_send)


def build_app() -> FastAPI:
    """The routes and error handlers without any services: what the OpenAPI schema is made of."""
    app = FastAPI(title="gaiverse API", version=__version__, description=DESCRIPTION)
    install_error_handlers(app)
    for module in (health, auth, runs, assets, catalog, uploads, personalization, knowledge, npc_live, npcs,
                   worlds, avatars, interiors):
        app.include_router(module.router)
    return app


def openapi_schema() -> dict:
    """The API's OpenAPI schema, built without touching any service (for docs and the fuzz tests)."""
    return build_app().openapi()


def main() -> None:
    """Serve the API on settings.api_host:api_port until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


if __name__ == "__main__":
    main()
