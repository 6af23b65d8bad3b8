"""The pattern every model-stage actor follows: load once in ``__init__``, serve idempotent calls.

A subclass loads its model in ``__init__`` (Ray re-runs it when the actor restarts after a
crash) and exposes methods that are safe to run twice, because Ray replays a call that
was in flight when the actor died (``max_task_retries``). Wrapping the work in
``self.serving()`` keeps the ``info()`` probe honest: it answers while a call runs
(``max_concurrency=2``) and says where the actor lives.

Prefect tasks never hold a handle across runs; they call ``get_or_create(...)`` each time,
which returns the live named actor (or creates it) on the configured cluster.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, TypeVar

import ray

from gaiverse.config import Settings
from ray_actors.cluster import ActorPolicy, actor_options, connect

log = logging.getLogger(__name__)

T = TypeVar("T", bound="StageActor")


class StageActor:
    """Base class of model-stage actors (plain class; ``get_or_create`` applies ``ray.remote``)."""

    device: str = "cpu"
    """Where the loaded model lives; subclasses set it in ``__init__``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._calls = 0
        self._loaded_at = time.time()

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Mark one model call as in flight (for ``info()``) for the duration of the block."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                self._calls += 1

    def info(self) -> dict[str, Any]:
        """Where this actor runs and what it is doing; answers while a model call is in flight."""
        context = ray.get_runtime_context()
        return {
            "actor_id": context.get_actor_id(),
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self.device,
            "in_flight": self._in_flight,
            "calls": self._calls,
            "loaded_at": self._loaded_at,
        }


def get_or_create(
    cls: type[T], name: str, *args: Any, settings: Settings | None = None,
    policy: ActorPolicy = ActorPolicy(), **kwargs: Any,
) -> "ray.actor.ActorHandle":
    """The live actor called ``name`` in the gaiverse namespace, created from ``cls(*args, **kwargs)`` if absent.

    Connects to Ray first (``connect`` is a no-op when connected). ``get_if_exists`` makes
    concurrent callers race safely: one creates, the others get the same actor.
    """
    if not (isinstance(cls, type) and issubclass(cls, StageActor)):
        raise TypeError(f"`cls` must be a StageActor subclass, got {cls!r}")
    connect(settings)
    options = actor_options(name, settings=settings, policy=policy)
    handle = ray.remote(cls).options(**options).remote(*args, **kwargs)
    log.debug("actor %s ready to call (%s)", name, options)
    return handle
