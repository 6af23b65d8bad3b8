"""Layout diffusion training smoke runs, reproducibility, persistence (ENV-a1)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gaiverse.world import terrain_metrics as tm
from gaiverse.world.layout_model import (ControlScaler, LayoutDiffusion, LayoutModelConfig, steer_steepness,
                                         tile_steepness, train_layout_model)
from gaiverse.world.tiles import terrain_tiles
from gaiverse.world.training import PRESETS, PROJECT_ROOT, select_guidance, train_layout

pytestmark = pytest.mark.clause("ENV-a1")
SMALL = LayoutModelConfig(kind="terrain", block_out_channels=(8, 16, 16), train_steps=2, batch_size=4)


@pytest.fixture(scope="module")
def small_tiles():
    return terrain_tiles([PROJECT_ROOT / "data" / "terrain" / "landlab_new_mexico_DEM_10m.asc"], 32, 16)


def _weights(model: LayoutDiffusion) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.unet.parameters()])


def test_two_step_training_runs_on_cpu_and_logs_a_loss_curve(small_tiles):
    model, curve = train_layout_model(small_tiles, SMALL, log_every=1)
    assert [step for step, _ in curve] == [1, 2] and all(np.isfinite(loss) for _, loss in curve)
    out = model.sample(model.scaler.raw(small_tiles.attrs)[:2], seed=0, steps=2)
    assert out.shape == (2, 1, 32, 32) and np.isfinite(out).all()


def test_training_is_seeded(small_tiles):
    a, _ = train_layout_model(small_tiles, SMALL)
    b, _ = train_layout_model(small_tiles, SMALL)
    assert torch.equal(_weights(a), _weights(b))


def test_save_pretrained_round_trip_samples_identically(small_tiles, tmp_path):
    model, _ = train_layout_model(small_tiles, SMALL)
    model.save_pretrained(tmp_path)
    again = LayoutDiffusion.from_pretrained(tmp_path)
    controls = model.scaler.raw(small_tiles.attrs)[:2]
    assert np.array_equal(model.sample(controls, seed=3, steps=3), again.sample(controls, seed=3, steps=3))
    assert not np.array_equal(model.sample(controls, seed=3, steps=3), model.sample(controls, seed=4, steps=3))


def test_inpainting_keeps_known_cells(small_tiles):
    model, _ = train_layout_model(small_tiles, SMALL)
    known = np.zeros((1, 1, 32, 32), np.float32) + 0.25
    mask = np.zeros_like(known)
    mask[..., :8] = 1
    out = model.sample(model.scaler.raw(small_tiles.attrs)[:1], steps=3, known=known, known_mask=mask)
    assert np.allclose(out[..., :8], 0.25)


def test_control_scaler_names_bad_controls():
    scaler = ControlScaler.for_kind("terrain")
    assert scaler.names == ["relief_m", "cell_m", "roughness", "steepness"]
    scaler.mean, scaler.std = [0.0] * 4, [1.0] * 4
    with pytest.raises(ValueError, match="relief_m"):
        scaler(np.array([[-5.0, 10.0, 0.01, 1.2]]))
    with pytest.raises(ValueError, match="shape"):
        scaler(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="slope_deg"):
        ControlScaler.for_kind("terrain", ("relief_m", "slope_deg"))


def test_control_vector_orders_clips_and_names_missing_controls(small_tiles):
    model, _ = train_layout_model(small_tiles, SMALL)
    model.meta["control_ranges"] = {"relief_m": [5.0, 50.0]}
    got = model.control_vector({"steepness": 1.5, "roughness": 0.01, "cell_m": 8.0, "relief_m": 500.0, "extra": 3.0})
    assert got.tolist() == [50.0, 8.0, 0.01, 1.5]
    with pytest.raises(ValueError, match="steepness"):
        model.control_vector({"relief_m": 10.0, "cell_m": 8.0, "roughness": 0.01})


def test_warm_start_adds_a_control_without_changing_the_model(small_tiles):
    """A model fine-tuned with a new control starts exactly where the old one was (zero weights for it)."""
    old, _ = train_layout_model(small_tiles, replace(SMALL, controls=("relief_m", "cell_m", "roughness")))
    new, _ = train_layout_model(small_tiles, replace(SMALL, train_steps=1, learning_rate=0.0), init=old)
    assert new.scaler.names == old.scaler.names + ["steepness"]
    raw = old.scaler.raw(small_tiles.attrs)[:2]
    for steepness in (0.8, 2.5):
        with_new = np.column_stack([raw, np.full(len(raw), steepness)])
        assert np.allclose(new.sample(with_new, seed=5, steps=3), old.sample(raw, seed=5, steps=3), atol=1e-5)
    with pytest.raises(ValueError, match="predicts"):
        train_layout_model(small_tiles, replace(SMALL, prediction_type="v_prediction"), init=old)


def test_guidance_is_selected_on_training_tiles(small_tiles):
    model, _ = train_layout_model(small_tiles, SMALL)
    chosen = select_guidance(model, small_tiles, (1.0, 2.0), n=4, steps=2)
    assert chosen in (1.0, 2.0) and model.config.guidance_scale == chosen
    assert set(model.meta["guidance_selection"]["scores"]) == {"1.0", "2.0"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_has_a_reduced_smoke_run(preset, tmp_path):
    path = train_layout(preset, tmp_path / preset, steps=2, batch_size=2, preview_steps=2)
    doc = json.loads((path / "layout_config.json").read_text())
    held = set(doc["meta"]["holdout_regions"])
    assert held and not held & {f["region"] for f in doc["meta"]["training_files"]}
    assert (path / "unet" / "config.json").is_file() and (path / "samples.png").is_file()


def test_steepness_steering_reaches_targets_and_keeps_the_landform(small_tiles):
    """Real New Mexico tiles smoothed or sharpened to 0.8x / 1.3x their steepness: the metric used by the
    evaluation agrees, and each tile keeps its own large-scale shape (no new landform is painted in)."""
    real = torch.from_numpy(small_tiles.tiles[:16].astype(np.float32))
    own = tile_steepness(real)
    assert np.allclose(own.numpy(), [tm.steepness(t[0], 10.0) for t in real.numpy()], rtol=1e-4)
    for factor in (0.8, 1.3):
        steered = steer_steepness(real, own * factor)
        got = np.array([tm.steepness(t[0], 10.0) for t in steered.numpy()])
        reached = np.abs(np.log(got / (own.numpy() * factor))) < 0.02
        assert reached.mean() >= 0.8, f"x{factor}: {np.round(got / own.numpy(), 2)}"
        corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(real.numpy(), steered.numpy())]
        assert min(corr) > 0.8
    assert torch.allclose(steer_steepness(real, own), real, atol=1e-3)
