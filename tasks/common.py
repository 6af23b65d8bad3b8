"""Task and flow conventions every gaiverse task uses: retries, timeouts, caching, run records.

``gaiverse_task`` wraps ``prefect.task`` so that every task:

* retries transient failures (I/O, remote calls) with exponential backoff and jitter, and
  does not retry deterministic ones (``ValueError``, ``TypeError``, ``KeyError``, a failed
  expectation): retrying a bug only delays its report;
* has a timeout;
* caches on its inputs + its code (the task's source and the source of the gaiverse modules
  it wraps), and for tasks returning stored objects (``cache="stored"``) reuses a cached
  result only while every ``AssetRef`` in it still exists in the object store;
* records its final state into the catalog's ``task_runs`` (state hooks).

``flow_hooks()`` gives flows the matching hooks that upsert the flow run into ``runs``.
Artifacts (markdown tables, PNG previews) live in ``tasks/artifacts.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE, CachePolicy
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects

from gaiverse.config import Settings, get_settings
from storage.catalog import Catalog
from storage.objectstore import AssetRef, ObjectStore

log = logging.getLogger(__name__)

CacheMode = Literal["inputs", "stored", "none"]

NON_RETRYABLE: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, AssertionError, NotImplementedError)
"""Exceptions that say the input or the code is wrong; retrying them cannot help."""


# shared clients ----------------------------------------------------------------------------
_STORES: dict[tuple, ObjectStore] = {}


def get_store(settings: Settings | None = None) -> ObjectStore:
    """The object store of this installation (bucket created on first use, client reused)."""
    settings = settings or get_settings()
    key = (settings.s3_address, settings.s3_secure, settings.s3_bucket, settings.s3_access_key,
           settings.s3_secret_key.get_secret_value())
    if key not in _STORES:
        store = ObjectStore.from_settings(settings)
        store.ensure_bucket()
        _STORES[key] = store
    return _STORES[key]


@lru_cache(maxsize=4)
def _catalog_at(path: Path) -> Catalog:
    return Catalog(path)


def get_catalog(settings: Settings | None = None) -> Catalog:
    """The catalog of this installation (migrated on first use)."""
    return _catalog_at((settings or get_settings()).catalog_path)


# hashing ----------------------------------------------------------------------------------
def stable_hash(value: Any) -> str:
    """sha256 of a value that is stable across processes, including bytes and numpy arrays.

    json.dumps(default=str) would abbreviate large arrays ("[1. 2. ... 9.]") and collide.
    """
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: "hashlib._Hash", value: Any) -> None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        digest.update(b"b%d:" % len(value))
        digest.update(value)
    elif isinstance(value, np.ndarray):
        digest.update(f"a{value.dtype.str}{value.shape}:".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        digest.update(b"d{")
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"l[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _feed(digest, {"__type__": type(value).__qualname__, **dataclasses.asdict(value)})
    elif hasattr(value, "model_dump"):
        _feed(digest, {"__type__": type(value).__qualname__, **value.model_dump(mode="json")})
    else:
        digest.update(json.dumps(value, sort_keys=True, default=repr).encode())


def iter_asset_refs(value: Any) -> Iterator[AssetRef]:
    """Every AssetRef inside a task result (nested in dicts, lists, tuples, dataclasses)."""
    if isinstance(value, AssetRef):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_asset_refs(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from iter_asset_refs(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from iter_asset_refs(getattr(value, item.name))


# cache policies ---------------------------------------------------------------------------
@dataclass
class ModuleSource(CachePolicy):
    """Key part from the source files of the modules a task wraps: editing them invalidates the cache.

    TASK_SOURCE only sees the thin wrapper's own lines; the algorithm is in gaiverse/.
    """

    modules: tuple[str, ...] = ()

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        return _modules_digest(self.modules) if self.modules else None


@lru_cache(maxsize=64)
def _modules_digest(modules: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise ValueError(f"`depends_on` names a module that cannot be found: {name!r}")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


@dataclass
class StoredObjectsExist(CachePolicy):
    """``base``'s key, but a cached result is reused only while all its AssetRefs exist in the store.

    When a cached result points at a deleted object, the key moves to a next generation
    (base key + generation number), so the task runs again and caches its new result there.
    If the store cannot be reached the task runs uncached (and its own I/O retries apply).
    """

    base: CachePolicy = field(default_factory=lambda: INPUTS + TASK_SOURCE)
    generations: int = 4

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        key = self.base.compute_key(task_ctx=task_ctx, inputs=inputs, flow_parameters=flow_parameters, **kwargs)
        if key is None:
            return None
        results = task_ctx.result_store
        try:
            for generation in range(self.generations):
                candidate = key if generation == 0 else hash_objects(key, generation)
                if not results.exists(candidate):
                    return candidate
                refs = list(iter_asset_refs(results.read(candidate).result))
                store = get_store()
                if all(store.exists(ref.key) for ref in refs):
                    return candidate
                log.info("cached result %s points at deleted objects; recomputing", candidate[:12])
        except Exception as exc:  # noqa: BLE001 - an unreachable store or unreadable record: run uncached
            log.warning("cache check failed (%s: %s); running uncached", type(exc).__name__, exc)
        return None


def cache_policy(mode: CacheMode, depends_on: Sequence[str] = ()) -> CachePolicy:
    """The cache policy for a mode: inputs + code version, + object existence for ``stored``."""
    if mode == "none":
        return NO_CACHE
    base = INPUTS + TASK_SOURCE
    if depends_on:
        base = base + ModuleSource(modules=tuple(depends_on))
    if mode == "inputs":
        return base
    if mode == "stored":
        return StoredObjectsExist(base=base)
    raise ValueError(f"`cache` must be 'inputs', 'stored' or 'none', got {mode!r}")


# retries ----------------------------------------------------------------------------------
def retry_transient(task, task_run, state) -> bool:
    """retry_condition_fn: retry unless the failure is deterministic (NON_RETRYABLE)."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if getattr(exc, "retryable", None) is False:  # e.g. validation.metrics.ValidationFailed
        return False
    return not isinstance(exc, NON_RETRYABLE)


# run records ------------------------------------------------------------------------------
def _task_parameters_hash(task_run) -> str:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is not None and context.task_run.id == task_run.id:
        return stable_hash(context.parameters or {})
    return stable_hash({})


def record_task_run(task, task_run, state) -> None:
    """on_completion / on_failure hook: one task_runs row (retries = run_count - 1, wall duration)."""
    started = task_run.start_time
    ended = task_run.end_time or state.timestamp
    row = {
        "task_run_id": str(task_run.id),
        "flow_run_id": str(task_run.flow_run_id) if task_run.flow_run_id else None,
        "task_name": task.name,
        "parameters_hash": _task_parameters_hash(task_run),
        "state": state.type.value,
        "retries": max(int(task_run.run_count or 1) - 1, 0),
        "started_at": started,
        "ended_at": ended,
        "duration_s": max((ended - started).total_seconds(), 0.0) if started and ended else None,
        "host": socket.gethostname(),
        "message": (state.message or "")[:2000] or None,
    }
    get_catalog().record_task_runs([row])
    log.info("task run %s %s %s after %d retries", task.name, str(task_run.id)[:8], row["state"], row["retries"])


def gaiverse_task(
    fn: Callable | None = None, *, name: str | None = None, retries: int = 3, backoff_s: float = 1.0,
    jitter: float = 0.5, timeout_seconds: float = 600, cache: CacheMode = "inputs",
    depends_on: Sequence[str] = (), tags: Sequence[str] = (),
) -> Any:
    """``prefect.task`` with gaiverse's conventions (see module docstring).

    backoff_s : delay before the first retry; it doubles for each next one (+ up to
    ``jitter`` x itself at random, so restarted clients do not retry in lockstep).
    depends_on : import names of the modules whose code the task wraps (part of the cache key).
    cache : "inputs" (inputs + code), "stored" (also check returned objects still exist),
    "none" (for tasks that take clients or actor handles, or whose point is to run).
    """
    if retries < 0:
        raise ValueError(f"`retries` must be >= 0, got {retries}")
    if timeout_seconds <= 0:
        raise ValueError(f"`timeout_seconds` must be > 0, got {timeout_seconds}")

    def decorate(func: Callable) -> Any:
        policy = cache_policy(cache, depends_on)
        return task(
            func,
            name=name or func.__name__.replace("_", "-"),
            retries=retries,
            retry_delay_seconds=exponential_backoff(backoff_factor=backoff_s)(retries) if retries else 0,
            retry_jitter_factor=jitter if retries else None,
            retry_condition_fn=retry_transient,
            timeout_seconds=timeout_seconds,
            cache_policy=policy,
            persist_result=cache != "none",
            tags=list(tags) or None,
            on_completion=[record_task_run],
            on_failure=[record_task_run],
        )

    return decorate(fn) if fn is not None else decorate


def _flow_started_at(flow_run) -> datetime | None:
    """The client-side flow_run does not carry start_time; the on_running hook recorded it."""
    if flow_run.start_time:
        return flow_run.start_time
    existing = get_catalog().run(str(flow_run.id))
    return existing["started_at"] if existing and existing["started_at"] else None


def _deployment_name(flow_run) -> str | None:
    if not flow_run.deployment_id:
        return None
    try:  # hooks also run in the runner process (on_crashed), where no run context exists
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return client.read_deployment(flow_run.deployment_id).name
    except Exception:  # noqa: BLE001 - the name is informative only
        return str(flow_run.deployment_id)


def record_flow_run(flow, flow_run, state) -> None:
    """Flow hook (running, completion, failure, crash, cancellation): upsert the run into ``runs``.

    The owner is taken from a ``owner:<user_id>`` tag, which the API puts on runs it triggers.
    """
    owner = next((tag.split(":", 1)[1] for tag in flow_run.tags or [] if tag.startswith("owner:")), None)
    final = state.is_final()
    message = (state.message or "")[:2000] or None
    get_catalog().upsert_run(
        str(flow_run.id), flow_name=flow.name, state=state.type.value, parameters=dict(flow_run.parameters or {}),
        deployment=_deployment_name(flow_run), owner=owner,
        started_at=state.timestamp if state.is_running() else _flow_started_at(flow_run),
        ended_at=state.timestamp if final else None,
        message=message if final else None,
    )
    log.info("flow run %s %s %s", flow.name, str(flow_run.id)[:8], state.type.value)


def flow_hooks() -> dict[str, list[Callable]]:
    """Keyword arguments for ``@flow``: every flow run is recorded in the catalog's ``runs``."""
    return {
        "on_running": [record_flow_run],
        "on_completion": [record_flow_run],
        "on_failure": [record_flow_run],
        "on_crashed": [record_flow_run],
        "on_cancellation": [record_flow_run],
    }


def current_run_ids() -> tuple[str | None, str | None]:
    """(flow_run_id, task_run_id) of the calling Prefect run, None outside one."""
    from prefect.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    flow_ctx = FlowRunContext.get()
    task_run_id = str(task_ctx.task_run.id) if task_ctx else None
    if task_ctx and task_ctx.task_run.flow_run_id:
        return str(task_ctx.task_run.flow_run_id), task_run_id
    return (str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None), task_run_id
