"""Serves the web terminal (``gaiverse/web``) at ``/`` and three.js from npm under ``/vendor/three/``.

three.js is installed by setup with ``npm ci`` from the committed package.json/lock (no CDN);
the page imports it through an importmap. When it is missing the API still serves its JSON
endpoints, ``/`` answers 503 with the command that fixes it, and /health reports web: error.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from gaiverse.config import REPO_ROOT

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
THREE_CANDIDATES = (WEB_DIR / "vendor" / "three", REPO_ROOT / "node_modules" / "three")
"""A copy bundled into the package (wheel builds), else the repository's node_modules."""
THREE_REQUIRED = ("build/three.module.js", "build/three.core.js", "examples/jsm/loaders/GLTFLoader.js",
                  "examples/jsm/controls/OrbitControls.js")


def find_three() -> Path | None:
    for root in THREE_CANDIDATES:
        if all((root / part).is_file() for part in THREE_REQUIRED):
            return root
    return None


def missing_three_reason() -> str:
    return (f"three.js is not installed (looked in {', '.join(str(c) for c in THREE_CANDIDATES)}): "
            f"run `npm ci` in {REPO_ROOT} (./gaiverse.sh setup does it)")


def mount_web(app: FastAPI) -> str:
    """Mount the terminal and three.js; returns 'ok' or the reason the terminal cannot work."""
    three = find_three()
    status = "ok" if three is not None else missing_three_reason()
    if three is None:
        log.error("web terminal disabled: %s", status)
    else:
        app.mount("/vendor/three/build", StaticFiles(directory=three / "build"), name="three-build")
        app.mount("/vendor/three/jsm", StaticFiles(directory=three / "examples" / "jsm"), name="three-jsm")
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    @app.get("/", include_in_schema=False)
    def index():
        if three is None:
            return HTMLResponse(
                "<!doctype html><title>gaiverse</title><h1>gaiverse web terminal unavailable</h1>"
                f"<p>{html.escape(status)}</p><p>The HTTP API works: see <a href='/docs'>/docs</a>.</p>",
                status_code=503,
            )
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return status
