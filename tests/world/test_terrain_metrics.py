"""Terrain statistics on synthetic cases with known answers (ENV-a2)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.world import terrain_metrics as tm

pytestmark = pytest.mark.clause("ENV-a2")


def test_a_plane_has_zero_slope_and_curvature():
    flat = np.full((16, 16), 100.0)
    assert tm.slope_deg(flat, 10.0).max() == 0.0
    assert np.abs(tm.curvature(flat, 10.0)).max() == 0.0


def test_an_inclined_plane_has_its_analytic_slope():
    yy, xx = np.mgrid[0:20, 0:20]
    plane = 0.5 * xx * 2.0  # rises 0.5 m per metre with 2 m cells
    assert np.allclose(tm.slope_deg(plane, 2.0), np.degrees(np.arctan(0.5)))
    assert np.allclose(tm.curvature(plane, 2.0), 0.0)


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_fbm_with_known_exponent_gives_that_psd_slope(beta):
    measured = np.median([tm.psd_slope(tm.fbm((64, 64), beta, seed)) for seed in range(12)])
    assert measured == pytest.approx(beta, abs=0.35)


def test_hypsometry_of_a_uniform_ramp_is_one_half():
    ramp = np.tile(np.linspace(0, 1, 101), (10, 1))
    assert tm.hypsometric_integral(ramp) == pytest.approx(0.5, abs=1e-6)
    curve = tm.hypsometric_curve(ramp)
    assert curve[0] == 1.0 and curve[10] == pytest.approx(0.5, abs=0.01) and curve[-1] == pytest.approx(1 / 101)
    assert np.all(np.diff(curve) <= 0)


def test_flow_accumulation_on_a_tilted_plane_collects_whole_columns():
    yy, _ = np.mgrid[0:10, 0:6]
    plane = (10 - yy).astype(float)  # falls to the south
    acc = tm.flow_accumulation(plane)
    assert np.allclose(acc[-1], 10.0) and np.allclose(acc[0], 1.0)


def test_roughness_is_zero_for_planes_and_grows_with_noise():
    yy, xx = np.mgrid[0:32, 0:32]
    rng = np.random.default_rng(0)
    assert tm.roughness_m(1.0 * xx + 2.0 * yy) == pytest.approx(0.0, abs=1e-9)
    assert tm.roughness_m(xx + rng.normal(0, 1, xx.shape)) > tm.roughness_m(xx + rng.normal(0, 0.1, xx.shape))


def test_distances_are_zero_for_identical_sets_and_positive_otherwise():
    tiles = [tm.fbm((32, 32), 3.0, s) * 50 for s in range(4)]
    same = tm.terrain_stats(tiles, 10.0)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in tm.compare_terrain(same, same).values())
    other = tm.terrain_stats([t * 3 for t in tiles], 10.0)
    assert tm.compare_terrain(other, same)["slope_w1"] > 1.0


def test_diversity_and_memorisation():
    a = np.stack([tm.fbm((16, 16), 3.0, s) for s in range(5)])
    assert tm.diversity(np.repeat(a[:1], 4, axis=0)) == pytest.approx(0.0, abs=1e-6)
    assert tm.diversity(a) > 0.1
    assert np.allclose(tm.nearest_distance(a[:2], a), 0.0, atol=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        tm.slope_deg(np.full((4, 4), np.nan), 1.0)
    with pytest.raises(ValueError, match="cell_m"):
        tm.slope_deg(np.zeros((4, 4)), 0.0)


def test_steepness_of_a_ramp_is_one_and_ignores_scale():
    ramp = np.tile(np.linspace(0.0, 30.0, 32), (32, 1))
    assert tm.steepness(ramp, 10.0) == pytest.approx(1.0, rel=1e-6)
    assert tm.steepness(ramp * 7, 3.0) == pytest.approx(1.0, rel=1e-6)
    ridges = np.tile(np.abs(np.sin(np.linspace(0, 4 * np.pi, 32))), (32, 1))
    assert tm.steepness(ridges, 1.0) > 3.0


@pytest.mark.parametrize("target", [0.9, 1.5, 2.5])
def test_fbm_baseline_reaches_a_requested_steepness(target):
    tile, beta = tm.fbm_with_steepness((32, 32), target, seed=4)
    assert tm.steepness(tile, 1.0) == pytest.approx(target, rel=0.12)
    assert beta in tm.FBM_BETAS
    with pytest.raises(ValueError, match="steepness"):
        tm.fbm_with_steepness((32, 32), 0.0, seed=4)
