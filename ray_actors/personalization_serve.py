"""Recommendation replicas on Ray Serve: the scale-out path of PER-g1.

Each replica holds a read-only ``RecommendationSnapshot`` of the personalization file — task index,
interactions, consents, profiles — loaded once in ``__init__`` and reloaded when the single writer's
version token changes. Replicas never write, so any number of them can serve next to the API that
owns the writer; requests carry the user's pseudonym (the API authenticates and maps the account
to it, exactly as for its own routes) and every answer names the replica that served it.

Serve's HTTP proxy binds 127.0.0.1 only (``start``): the route takes a pseudonym without a key,
so it must never be reachable from outside the host; across machines, put the API (which
authenticates) in front and call the deployment through its ``DeploymentHandle``.
Whoever starts the process owns ``ray.init`` (``ray_actors/cluster.connect`` or a test fixture).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ray import serve
from starlette.requests import Request

from gaiverse.personalization.snapshot import RecommendationSnapshot, recommendation_json
from gaiverse.privacy import KeyRing

log = logging.getLogger(__name__)

APP_NAME = "personalization"
ROUTE_PREFIX = "/recommendations"


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32,
                  health_check_period_s=10)
class RecommendationReplica:
    """One replica: the snapshot in memory, ``recommend`` over it. Implements PER-g1 (scale-out)."""

    def __init__(self, db_path: str, keys_dir: str, privacy_key: str | None = None) -> None:
        self.snapshot = RecommendationSnapshot(db_path, KeyRing.load(Path(keys_dir), privacy_key))
        context = serve.get_replica_context()
        self.replica_id = context.replica_id.unique_id
        log.info("recommendation replica %s ready (pid %d)", self.replica_id, os.getpid())

    def recommend(self, subject: str, k: int = 10) -> dict[str, Any]:
        """The user's recommendations, the snapshot version they were made from and this replica's id."""
        recs = self.snapshot.recommend(subject, k)
        return {"replica": self.replica_id, "pid": os.getpid(), "version": self.snapshot.version,
                "items": [recommendation_json(r) for r in recs]}

    async def __call__(self, request: Request) -> dict[str, Any]:
        """HTTP: ``GET /recommendations?subject=u-...&k=10`` on the local proxy."""
        subject = request.query_params.get("subject", "")
        try:
            k = int(request.query_params.get("k", "10"))
            return self.recommend(subject, k)
        except ValueError as err:
            return {"error": str(err).splitlines()[0], "replica": self.replica_id}


def build(db_path: str | Path, keys_dir: str | Path, privacy_key: str | None = None, replicas: int = 2):
    """The Serve application of ``replicas`` recommendation replicas over ``db_path``."""
    if replicas < 1:
        raise ValueError(f"`replicas` must be >= 1, got {replicas}")
    return RecommendationReplica.options(num_replicas=replicas).bind(str(db_path), str(keys_dir), privacy_key)


def start(db_path: str | Path, keys_dir: str | Path, port: int, *, privacy_key: str | None = None,
          replicas: int = 2):
    """Start Serve with its proxy on 127.0.0.1:``port`` and run the application; returns its handle."""
    serve.start(http_options={"host": "127.0.0.1", "port": int(port)})
    return serve.run(build(db_path, keys_dir, privacy_key, replicas), name=APP_NAME, route_prefix=ROUTE_PREFIX)


def start_from_settings(settings, port: int | None = None, replicas: int = 2):
    """``start`` for an installation's settings (file, key ring; port defaults to API port + 1)."""
    secret = settings.privacy_key.get_secret_value() if settings.privacy_key is not None else None
    return start(settings.personalization_path, settings.personal_keys_dir, port or settings.api_port + 1,
                 privacy_key=secret, replicas=replicas)
