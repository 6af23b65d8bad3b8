"""The NeRF interior training flow for a few steps on a real indoor scene: checkpoint, model card, artifacts."""

from __future__ import annotations

import pytest

from _flowhelpers import task_runs_of

pytestmark = pytest.mark.slow


def test_train_interior_flow_writes_checkpoint_card_and_artifacts(stack, catalog, tmp_path):
    import torch
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.train_interior import DEFAULT_SCENE, train_interior_flow
    from gaiverse.interiors.training import load_checkpoint

    torch.set_num_threads(1)
    out = tmp_path / "run" / "nerf.pt"
    result = train_interior_flow(scene_dir=str(DEFAULT_SCENE), steps=6, long_side=32, seed=4, checkpoint=str(out))
    model, meta = load_checkpoint(out, device="cpu")
    assert meta["scene"] == DEFAULT_SCENE.name and meta["seed"] == 4 and len(meta["images"]) == 6
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert "NAVER" in card and '"steps": 6' in card and "frame_000000001.jpg" in card
    rows = task_runs_of(catalog, result["flow_run_id"])
    assert set(rows) == {"train-interior", "report-interior"} and all(r["state"] == "COMPLETED" for r in rows.values())
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[result["flow_run_id"]])))
    assert {"interior-psnr-curve", "interior-views", "interior-rendered-views"} <= {a.key for a in artifacts}


def test_train_interior_flow_rejects_a_missing_scene(stack, tmp_path):
    from flows.train_interior import train_interior_flow

    with pytest.raises(ValueError, match="scene_dir"):
        train_interior_flow(scene_dir=str(tmp_path / "nowhere"), steps=1)
