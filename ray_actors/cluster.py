"""Connecting to Ray and the resources a model-stage actor asks for.

The one way for each kind of compute (the rest of gaiverse follows it, never a mix):

* **Stages that hold a loaded model** (diffusion UNet, NeRF, dialogue LM, TTS...) are Ray
  actors (``ray_actors/base.py``): the model is loaded once in ``__init__`` and calls are
  served from it. Prefect tasks call them through a named handle (``get_or_create``), so
  every task run and every process finds the same warm actor. Actors get
  ``num_gpus=1`` only where the cluster has GPUs, plus ``settings.ray_stage_resources``
  (e.g. ``{"gpu_stage": 1}``) to pin them to the nodes meant for model stages, and
  ``max_restarts``/``max_task_retries`` so a killed actor comes back and the in-flight call
  is replayed (methods are idempotent).
* **Stateless heavy tasks** (batch preprocessing, a one-off training epoch) run as Prefect
  tasks on prefect-ray's ``RayTaskRunner`` with ``remote_options(num_gpus=...)``:
  ``@flow(task_runner=ray_task_runner())`` and ``with remote_options(**stage_remote_options()):
  heavy_task.submit(...)``. Nothing holds state between calls there.

``connect()`` is idempotent and owns ``ray.init``: a local Ray in this process by default
(``include_dashboard=False``, ``num_cpus`` from settings), or the cluster at
``settings.ray_address`` / ``RAY_ADDRESS`` (``host:port`` of a ``ray start --head`` or
``ray://`` for Ray Client) — the same code path a user with a real cluster takes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import ray

from gaiverse.config import Settings, get_settings

log = logging.getLogger(__name__)

NAMESPACE = "gaiverse"
"""Ray namespace of every named gaiverse actor, so all drivers of one installation see the same ones."""


@dataclass(frozen=True)
class ActorPolicy:
    """How model-stage actors survive faults."""

    max_restarts: int = 3
    """Times Ray recreates a dead actor (re-running ``__init__``, i.e. reloading the model)."""
    max_task_retries: int = 2
    """Times Ray replays a call that was in flight when the actor died."""
    max_concurrency: int = 2
    """Calls served at once: one model call plus ``info()`` probes while it runs."""


def ray_address(settings: Settings | None = None) -> str | None:
    """The cluster to join: ``settings.ray_address``, else Ray's own ``RAY_ADDRESS``, else None (local).

    ``RAY_ADDRESS`` is Ray's variable, honoured here exactly as ``ray.init`` would.
    """
    settings = settings or get_settings()
    return settings.ray_address or os.environ.get("RAY_ADDRESS") or None


def connect(settings: Settings | None = None, *, log_to_driver: bool = False) -> dict[str, Any]:
    """Join the configured Ray cluster, or start a local Ray in this process; no-op when connected.

    Local mode passes ``address="local"``: without it ``ray.init()`` silently joins whatever
    cluster the last ``ray start`` on this machine recorded in /tmp/ray.
    """
    settings = settings or get_settings()
    if not ray.is_initialized():
        address = ray_address(settings)
        kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": log_to_driver}
        if address is None:
            kwargs.update(address="local", include_dashboard=False)
            if settings.ray_num_cpus is not None:
                kwargs["num_cpus"] = settings.ray_num_cpus
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
        log.info("ray connected (%s)", address or "local")
    return describe()


def describe() -> dict[str, Any]:
    """Where this driver is connected and what the cluster offers (for status lines and logs)."""
    context = ray.get_runtime_context()
    return {
        "address": context.gcs_address,
        "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
        "resources": ray.cluster_resources(),
        "namespace": context.namespace,
    }


def cluster_has_gpus() -> bool:
    """True when some node of the connected cluster offers a GPU (Ray counts them per node)."""
    return ray.cluster_resources().get("GPU", 0) >= 1


def stage_remote_options(settings: Settings | None = None) -> dict[str, Any]:
    """Resources a model stage requests: one GPU only where GPUs exist, plus the stage resources."""
    settings = settings or get_settings()
    options: dict[str, Any] = {}
    if cluster_has_gpus():
        options["num_gpus"] = 1
    if settings.ray_stage_resources:
        options["resources"] = dict(settings.ray_stage_resources)
    return options


def actor_options(
    name: str, *, settings: Settings | None = None, policy: ActorPolicy = ActorPolicy(),
    detached: bool = True,
) -> dict[str, Any]:
    """``.options(...)`` for a named model-stage actor.

    detached : Ray garbage-collects a non-detached actor, named or not, as soon as the
    task that created it drops its handle, so the next task would reload the model.
    Detached actors live as long as the Ray instance: the cluster, or for a local Ray the
    process that started it. (A detached actor keeps the code it was created with: after
    a deploy, ``ray.kill`` it or restart the cluster.)
    """
    if not name or len(name) > 100:
        raise ValueError(f"`name` must be 1-100 characters, got {name!r}")
    settings = settings or get_settings()
    options: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "max_restarts": policy.max_restarts,
        "max_task_retries": policy.max_task_retries,
        "max_concurrency": policy.max_concurrency,
        **stage_remote_options(settings),
    }
    if detached:
        options["lifetime"] = "detached"
    return options


def ray_task_runner(settings: Settings | None = None):
    """A prefect-ray ``RayTaskRunner`` on the configured cluster (for stateless heavy tasks)."""
    from prefect_ray.task_runners import RayTaskRunner

    settings = settings or get_settings()
    address = ray_address(settings)
    init_kwargs: dict[str, Any] = {"namespace": NAMESPACE}
    if address is None:  # prefect-ray calls ray.init(**init_kwargs): force a local instance as connect() does
        init_kwargs.update(address="local", include_dashboard=False)
        if settings.ray_num_cpus is not None:
            init_kwargs["num_cpus"] = settings.ray_num_cpus
    return RayTaskRunner(address=address, init_kwargs=init_kwargs)
