"""Fixtures for the flow tests: the shared real services, with Prefect pointed at the session server."""

from __future__ import annotations

import threading
from typing import Callable

import pytest


@pytest.fixture(scope="session")
def prefect_api(prefect_server):
    """The session Prefect server as this process's API.

    Prefect freezes its settings when ``prefect.context`` is first imported; if anything
    imported prefect before the server fixture exported PREFECT_API_URL, flows would start
    an ephemeral server instead. Refreshing the global settings context picks up the env.
    """
    import prefect.context
    from prefect.settings import PREFECT_API_URL, get_current_settings

    prefect.context.refresh_global_settings_context()
    assert PREFECT_API_URL.value() == prefect_server, get_current_settings().api.url
    yield prefect_server
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # send buffered run logs while the server is still up


@pytest.fixture(scope="session")
def stack(settings, store, catalog, prefect_api, ray_local):
    """Everything a flow needs: S3 + bucket, catalog, Prefect server, local Ray."""
    return {"settings": settings, "store": store, "catalog": catalog, "prefect": prefect_api, "ray": ray_local}


@pytest.fixture()
def background():
    """Run a function in a thread; the test joins it (and sees its exception) at the end."""
    threads: list[tuple[threading.Thread, list]] = []

    def start(fn: Callable[[], None]) -> threading.Thread:
        errors: list = []

        def target():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        threads.append((thread, errors))
        return thread

    yield start
    for thread, errors in threads:
        thread.join(timeout=120)
        if errors:
            raise errors[0]
