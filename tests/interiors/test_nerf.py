"""The compact NeRF on a real scene for a few dozen steps: it learns, is seeded, renders depth, round-trips its
checkpoint; the evaluation protocol, metrics and the window atlas on top of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gaiverse.interiors.atlas import ATLAS_FORMAT, build_atlas, decode_depth, encode_depth
from gaiverse.interiors.evaluate import (
    HoldoutRule, camera_positions, colour_corrected, eval_nerf, holdout_indices, median_scene_depth, psnr, reproject,
    reproject_views, ssim, view_offset,
)
from gaiverse.interiors.nerf import Normalisation, contract
from gaiverse.interiors.poses import load_scene
from gaiverse.interiors.render import render_view
from gaiverse.interiors.training import (
    TrainConfig, load_checkpoint, patch_ssim, sample_batch, save_checkpoint, train_nerf, training_rays,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "multiview"
FACADE, T265 = DATA / "kapture_maupertuis_facade", DATA / "kapture_indoor_t265_fisheye"
pytestmark = pytest.mark.slow

TINY = dict(batch_rays=256, depth_rays=32, log_every=5)


@pytest.fixture(scope="module")
def facade():
    torch.set_num_threads(1)
    return load_scene(FACADE, long_side=40)


@pytest.fixture(scope="module")
def trained(facade):
    return train_nerf(facade, TrainConfig(steps=80, **TINY), seed=3)


def test_contraction_is_identity_inside_and_bounded_outside():
    x = torch.tensor([[0.5, -0.2, 0.9], [3.0, 0.0, 0.0], [1e6, -1e6, 5.0]])
    y = contract(x)
    assert torch.allclose(y[0], x[0]) and y.abs().max() < 2
    assert y[1, 0] == pytest.approx(2 - 1 / 3)


def test_training_learns_and_renders_depth_in_front_of_the_camera(facade, trained):
    curve = [value for _, value in trained.curve]
    assert np.mean(curve[-3:]) > np.mean(curve[:3])  # PSNR of the (noisy, small) training batches rises
    view = render_view(trained.model, facade.K[0], facade.c2w[0], facade.hw)
    assert view.rgb.shape == (*facade.hw, 3) and view.depth.shape == facade.hw
    assert np.isfinite(view.depth).all() and (view.depth > 0).all()
    flat = np.broadcast_to(facade.images[0][facade.masks[0]].mean(0), facade.images[0].shape)
    # better than the photo's own mean colour: the field has learnt structure, not just an average
    assert psnr(view.rgb, facade.images[0], facade.masks[0]) > psnr(flat, facade.images[0], facade.masks[0]) + 1.0


def test_same_seed_same_weights(facade):
    a = train_nerf(facade, TrainConfig(steps=6, **TINY), seed=11).model.state_dict()
    b = train_nerf(facade, TrainConfig(steps=6, **TINY), seed=11).model.state_dict()
    c = train_nerf(facade, TrainConfig(steps=6, **TINY), seed=12).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_round_trip_renders_the_same(facade, trained, tmp_path):
    path = save_checkpoint(trained, facade, tmp_path / "nerf.pt")
    assert path.stat().st_size < 20e6
    model, meta = load_checkpoint(path, device="cpu")
    assert meta["scene"] == facade.name and len(meta["images"]) == len(facade)
    before = render_view(trained.model, facade.K[1], facade.c2w[1], (24, 24))
    after = render_view(model, facade.K[1], facade.c2w[1], (24, 24))
    assert np.abs(before.rgb - after.rgb).max() < 0.02  # float16 factors
    assert np.allclose(before.depth, after.depth, rtol=0.05)


def test_metrics_and_reprojection_identities(facade):
    image, mask = facade.images[0], facade.masks[0]
    assert ssim(image, image, mask) == pytest.approx(1.0)
    assert psnr(image, image) > 90
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 0.1, image.shape), 0, 1)
    assert ssim(noisy, image) < 0.9 and 15 < psnr(noisy, image) < 25
    darker = image * 0.7 + 0.05  # an exposure change: colour correction removes it, raw PSNR sees it
    assert psnr(colour_corrected(darker, image, mask), image, mask) > 45 > 25 > psnr(darker, image, mask)
    depth = np.full(facade.hw, 2.0)
    same = reproject(image, depth, facade.K[0], facade.c2w[0], facade.K[0], facade.c2w[0], facade.hw)
    assert np.abs(same - image).max() <= 1 / 255 + 1e-6


def test_holdout_picks_central_cameras_and_validates_k(facade):
    assert len(camera_positions(facade)) == len(facade)  # four hand-held photos: four distinct positions
    assert holdout_indices(facade, 1) == [int(np.argmin(np.linalg.norm(facade.centres - facade.centres.mean(0), axis=1)))]
    with pytest.raises(ValueError, match="holdout"):
        holdout_indices(facade, 3)  # would leave one training photo


def test_holdout_never_leaves_a_near_duplicate_in_training():
    """The T265 rig stood still for 3 frames: the 3 frames of a sensor are one position and are held out together."""
    scene = load_scene(T265, long_side=32)
    rule = HoldoutRule()
    assert sorted(len(p) for p in camera_positions(scene, rule)) == [3, 3]
    test = holdout_indices(scene, 1, rule)
    train = [i for i in range(len(scene)) if i not in test]
    assert len(test) == 3 and len({scene.image_names[i].split("/")[0] for i in test}) == 1
    depth = median_scene_depth(scene)
    for i in test:
        for j in train:
            offset = view_offset(scene, i, j, depth)
            assert (offset["parallax_deg"] >= rule.duplicate_parallax_deg
                    or offset["rotation_deg"] >= rule.duplicate_rotation_deg)
    with pytest.raises(ValueError, match="2 distinct camera positions"):
        holdout_indices(scene, 2, rule)


def test_patch_batches_and_patch_ssim(facade):
    config = TrainConfig(steps=1, batch_rays=128, patch_size=4)
    rays = training_rays(facade, Normalisation((0.0, 0.0, 0.0), 1.0))
    ids = sample_batch(rays, facade.hw, config, torch.Generator().manual_seed(0))
    assert ids.shape == (8, 4, 4) and int(ids.max()) < rays["rgb"].shape[0]
    h, w = facade.hw
    # rows of a patch are consecutive pixels of one image row, and consecutive rows are one image row apart
    assert torch.equal(ids[:, :, 1:] - ids[:, :, :-1], torch.ones(8, 4, 3, dtype=ids.dtype))
    assert torch.equal(ids[:, 1:, :] - ids[:, :-1, :], torch.full((8, 3, 4), w, dtype=ids.dtype))
    patches = rays["rgb"][ids.reshape(-1)].reshape(8, 4, 4, 3)
    assert patch_ssim(patches, patches).item() == pytest.approx(1.0)
    assert patch_ssim(patches, patches.flip(1)).item() < 0.99
    with_ssim = train_nerf(facade, TrainConfig(steps=4, batch_rays=128, patch_size=8, ssim_weight=0.1, log_every=2))
    assert all(np.isfinite(value) for _, value in with_ssim.curve)


def test_two_view_reprojection_fills_the_first_views_holes(facade):
    image, K, c2w, hw = facade.images[0], facade.K[0], facade.c2w[0], facade.hw
    depth = np.full(hw, 2.0)
    half = np.zeros(hw, bool)
    half[:, : hw[1] // 2] = True
    left_only = reproject(image, depth, K, c2w, K, c2w, hw, mask=half)
    both = reproject_views([(image, depth, half, K, c2w), (image, depth, ~half, K, c2w)], K, c2w, hw, supersample=1)
    assert np.abs(both - image).max() <= 1 / 255 + 1e-6  # the second source fills exactly the first one's holes
    assert np.abs(left_only - image)[:, hw[1] // 2 + 4:].mean() > np.abs(both - image)[:, hw[1] // 2 + 4:].mean()


def test_eval_nerf_reports_eval_json(tmp_path):
    result = eval_nerf(FACADE, holdout=1, long_side=32, config=TrainConfig(steps=40, **TINY), out_dir=tmp_path,
                       curve_every=10)
    assert result["eval"] == "nerf" and result["n"] == 1
    assert set(result["metrics"]) == {"psnr", "ssim"} == set(result["lower_is_better"])
    assert set(result["baselines"]) == {"nearest-view", "reprojected"}
    item = result["items"][0]
    assert item["image"] != item["nearest_training_image"]
    assert item["nerf"]["psnr"] == pytest.approx(result["metrics"]["psnr"])
    assert item["closest_training_camera"]["distance"] > 0 and item["closest_training_camera"]["parallax_deg"] > 1.0
    assert "hold out" in result["holdout_rule"]
    # the held-out view (never trained on) gets better as training goes on
    curve = [value for _, _, value in result["heldout_psnr_curve"]]
    assert len(curve) == 4 and curve[-1] > curve[0] + 0.3  # 12.5 -> 13.0 dB at 32 px over 40 steps
    strip = next(tmp_path.glob("*_target_nerf_nearest_reprojected.png"))
    assert cv2.imread(str(strip)).shape[1] == 4 * result["scene"]["resolution"][0]
    json.dumps(result, allow_nan=False)


def test_eval_cli_fails_with_a_named_reason(tmp_path):
    run = subprocess.run([sys.executable, "-m", "gaiverse.cli", "eval", "nerf", "--scene", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "no kapture" in run.stderr
    run = subprocess.run([sys.executable, "-m", "gaiverse.cli", "eval", "nerf", "--scene", str(FACADE),
                          "--holdout", "3"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "holdout" in run.stderr


def test_atlas_files_and_depth_encoding(facade, trained, tmp_path):
    depth = np.linspace(1.0, 3.0, 64 * 64).reshape(64, 64).astype(np.float32)
    opacity = np.ones_like(depth)
    opacity[0, :4] = 0
    code, lo, hi = encode_depth(depth, opacity)
    assert code[0, 0] == 255 and lo < hi
    inner = (depth > lo) & (depth < hi) & (opacity > 0.5)
    assert np.abs(decode_depth(code, lo, hi) - depth)[inner].max() <= (hi - lo) / 255
    checkpoint = save_checkpoint(trained, facade, tmp_path / "nerf.pt")
    atlas_path = build_atlas(checkpoint, tmp_path / "atlas", rooms=3, size=32, seed=1)
    atlas = json.loads(atlas_path.read_text())
    assert atlas["format"] == ATLAS_FORMAT and len(atlas["rooms"]) == 3 and atlas["grid"] == [3, 1]
    sheet = cv2.imread(str(atlas_path.parent / atlas["colour_sheet"]))
    assert sheet.shape == (32, 96, 3)
    rooms = [cv2.imread(str(atlas_path.parent / room["colour"])) for room in atlas["rooms"]]
    assert not np.array_equal(rooms[0], rooms[1])  # different viewpoint and colour variation
    for room in atlas["rooms"]:
        assert room["depth_min"] < room["depth_max"]
        assert cv2.imread(str(atlas_path.parent / room["depth"]), cv2.IMREAD_UNCHANGED).dtype == np.uint8
