"""Road-network statistics on synthetic masks with known answers (ENV-a2)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.world import road_metrics as rm

pytestmark = pytest.mark.clause("ENV-a2")


def test_a_crossroads_has_one_degree_four_junction_and_no_dead_end():
    m = np.zeros((32, 32), bool)
    m[16, :] = m[:, 16] = True
    s = rm.road_stats(m[None], cell_m=8.0)
    assert s.intersection_density[0] == pytest.approx(1 / (32 * 32 * 64 / 1e6))
    assert s.dead_end_share[0] == 0.0
    assert s.degree_hist.tolist() == [0.0, 0.0, 1.0]


def test_a_t_junction_with_a_cul_de_sac_counts_dead_ends():
    m = np.zeros((32, 32), bool)
    m[16, 4:28] = True
    m[4:16, 10] = True
    g = rm.skeleton_graph(rm.thin(m))
    assert sorted(g.node_degree) == [1, 1, 1, 3]
    s = rm.road_stats(m[None], 8.0)
    assert s.dead_end_share[0] == pytest.approx(0.75)


def test_thinning_a_wide_road_gives_a_one_pixel_line():
    m = np.zeros((20, 20), bool)
    m[8:11, 2:18] = True
    sk = rm.thin(m)
    assert sk.sum() >= 12 and sk.any(axis=0).sum() == sk.sum()


def test_orientation_entropy_grid_vs_uniform():
    assert rm.orientation_entropy(np.array([0.0, 90.0])) == pytest.approx(np.log(4))
    assert rm.orientation_entropy(np.arange(0, 360, 10.0)) == pytest.approx(np.log(36))


def test_baselines_reach_the_requested_density():
    grid = np.stack([rm.grid_baseline((64, 64), 10.0, 8.0, s) for s in range(6)])
    rand = np.stack([rm.random_baseline((64, 64), 10.0, 8.0, s) for s in range(6)])
    assert rm.road_stats(grid, 8.0).road_density.mean() == pytest.approx(10.0, rel=0.35)
    assert rm.road_stats(rand, 8.0).road_density.mean() == pytest.approx(10.0, rel=0.35)
    assert np.nanmean(rm.road_stats(grid, 8.0).orientation_entropy) < np.nanmean(rm.road_stats(rand, 8.0).orientation_entropy)


def test_identical_sets_have_zero_distance():
    masks = np.stack([rm.grid_baseline((32, 32), 12.0, 8.0, s) for s in range(4)])
    s = rm.road_stats(masks, 8.0)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in rm.compare_roads(s, s).values() if v == v)


def test_thinning_many_masks_at_once_equals_thinning_each():
    masks = np.stack([rm.grid_baseline((24, 24), d, 8.0, s) | rm.random_baseline((24, 24), d, 8.0, s)
                      for s, d in enumerate((4.0, 10.0, 18.0))])
    masks[:, 5:8, 3:20] = True                # a wide road, so thinning has work to do
    assert (rm.thin_many(masks) == np.stack([rm.thin(m) for m in masks])).all()
    assert rm.thin_many(masks).sum() < masks.sum()
