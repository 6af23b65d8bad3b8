"""The room NeRF stage: an actor that trains the compact NeRF (gaiverse.interiors.training) on a posed capture.

Training is the model step of the room-capture flow (minutes on 2 CPU cores, seconds on a GPU), so it
runs where the cluster puts model stages. The actor may live on another node than the flow, so the
posed workspace travels as a tar (selected frames + COLMAP sparse model, a few MB) and the checkpoint
comes back as bytes. Progress: ``train`` records (step, PSNR) at every log point under its job id and
``progress(job)`` answers while training runs (the actor serves several calls at once), which the flow
task polls and forwards to the run's progress artifact. ``train`` is idempotent: the same workspace,
steps and seed give the same weights on the same device, so Ray may replay it after a crash.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from gaiverse.config import Settings
from ray_actors.base import StageActor, get_or_create
from ray_actors.cluster import ActorPolicy

ACTOR_NAME = "interior-nerf-training"
WORKSPACE_PARTS = ("images", "sparse/0")
"""What training reads of a room-capture workspace (gaiverse.interiors.poses.load_scene)."""


def pack_workspace(workspace: str | Path) -> bytes:
    """The frames and the COLMAP model of a workspace as an uncompressed tar (JPEGs do not compress)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for part in WORKSPACE_PARTS:
            tar.add(str(Path(workspace) / part), arcname=part)
    return buffer.getvalue()


class InteriorTrainer(StageActor):
    """Trains room NeRFs; holds no model between calls (each capture is its own scene)."""

    def __init__(self, threads: int = 2):
        super().__init__()
        import torch

        from gaiverse.interiors.nerf import pick_device

        torch.set_num_threads(threads)
        self.device = str(pick_device("auto"))
        self._progress: dict[str, dict[str, Any]] = {}
        self._progress_lock = threading.Lock()

    def train(self, job: str, workspace_tar: bytes, steps: int, long_side: int, seed: int,
              log_every: int) -> dict[str, Any]:
        """{"checkpoint": .pt bytes, "curve": [(step, psnr)], "views", "seconds", **info()} for one posed capture."""
        from gaiverse.interiors.poses import load_scene
        from gaiverse.interiors.training import TrainConfig, save_checkpoint, train_nerf

        with self.serving(), tempfile.TemporaryDirectory(prefix="gaiverse-room-train-") as tmp:
            with tarfile.open(fileobj=io.BytesIO(workspace_tar), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            scene = load_scene(Path(tmp), long_side=long_side)
            self._report(job, {"step": 0, "steps": steps, "psnr": None, "views": len(scene)})

            def on_log(step: int, value: float, _model) -> None:
                self._report(job, {"step": step, "steps": steps, "psnr": round(value, 2), "views": len(scene)})

            result = train_nerf(scene, TrainConfig(steps=steps, log_every=log_every), seed=seed,
                                device=self.device, on_log=on_log)
            path = save_checkpoint(result, scene, Path(tmp) / "nerf.pt", extra={"source": "room capture"})
            checkpoint = path.read_bytes()
        return {"checkpoint": checkpoint, "curve": [(s, round(p, 2)) for s, p in result.curve],
                "views": len(scene), "seconds": round(result.seconds, 1), **self.info()}

    def _report(self, job: str, state: dict[str, Any]) -> None:
        with self._progress_lock:
            self._progress[job] = state

    def progress(self, job: str) -> dict[str, Any] | None:
        """The last log point of training job `job` (None before it started on this actor)."""
        with self._progress_lock:
            return dict(self._progress[job]) if job in self._progress else None


def interior_trainer(settings: Settings | None = None):
    """Handle of the named training actor (created on first use). Four concurrent calls: a training and the
    progress polls of its flow, plus a second capture's."""
    return get_or_create(InteriorTrainer, ACTOR_NAME, settings=settings, policy=ActorPolicy(max_concurrency=4))
