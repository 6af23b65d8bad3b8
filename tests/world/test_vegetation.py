"""Poisson-disk vegetation driven by slope, elevation, water and land use; low-poly species (ENV-d1)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from gaiverse.world.terrain_mesh import HeightField
from gaiverse.world.vegetation import SPECIES, VegetationConfig, place_vegetation, poisson_disk, species_parts

CELL = 8.0


@pytest.mark.clause("ENV-d1")
def test_poisson_disk_keeps_the_radius_and_fills_the_plane():
    pts = poisson_disk((300.0, 200.0), 5.0, np.random.default_rng(1))
    d, _ = cKDTree(pts).query(pts, k=2)
    assert d[:, 1].min() >= 5.0 - 1e-9
    assert (pts >= 0).all() and (pts[:, 0] <= 300).all() and (pts[:, 1] <= 200).all()
    # near-maximal: at least half the density of a hexagonal packing of r/2 discs
    assert len(pts) > 0.5 * 300 * 200 / (np.sqrt(3) / 2 * 5.0**2) * 0.6
    with pytest.raises(ValueError, match="`radius`"):
        poisson_disk((10.0, 10.0), 0.0, np.random.default_rng(0))


def _world():
    """West half flat, east half a 60-degree cliff band; a lake in the north-west; a road and a house."""
    n = 50
    heights = np.zeros((n, n))
    heights[:, 30:] = np.linspace(0, 20 * 8.0 * 1.7, 20)[None, :]
    water = np.zeros((n, n), bool)
    water[2:12, 2:12] = True
    road = np.array([[0.0, 200.0], [240.0, 200.0]])
    house = np.array([[60.0, 100.0], [90.0, 100.0], [90.0, 130.0], [60.0, 130.0]])
    return HeightField.from_cells(heights, CELL), water, road, house


@pytest.mark.clause("ENV-d1")
def test_plants_avoid_roads_buildings_water_and_steep_slopes():
    ground, water, road, house = _world()
    veg = place_vegetation(ground, water, CELL, [road], [3.0], [house], config=VegetationConfig(seed=3))
    assert len(veg) > 50
    xy = veg.xy
    assert (np.abs(xy[:, 1] - 200.0)[xy[:, 0] <= 240] >= 3.0 + 2.0 - 1e-6).all()
    inside_house = (xy[:, 0] > 57.5) & (xy[:, 0] < 92.5) & (xy[:, 1] > 97.5) & (xy[:, 1] < 132.5)
    assert not inside_house.any()
    lake = (xy[:, 0] < 12 * CELL) & (xy[:, 0] > 2 * CELL) & (xy[:, 1] > (50 - 12) * CELL) & (xy[:, 1] < (50 - 2) * CELL)
    assert not lake.any()
    flat, steep = (xy[:, 0] < 30 * CELL - 10).sum(), (xy[:, 0] > 30 * CELL + 10).sum()
    assert flat > 3 * steep  # equal areas, density falls with slope
    assert np.allclose(veg.z, ground.height_at(xy) - 0.2)
    again = place_vegetation(ground, water, CELL, [road], [3.0], [house], config=VegetationConfig(seed=3))
    assert np.array_equal(again.xy, veg.xy) and np.array_equal(again.species, veg.species)
    assert sum(veg.counts().values()) == len(veg) and veg.stats["candidates"] > len(veg)


@pytest.mark.clause("ENV-d1")
def test_max_instances_and_species_meshes():
    ground, water, road, house = _world()
    veg = place_vegetation(ground, water, CELL, config=VegetationConfig(max_instances=40))
    assert len(veg) == 40
    parts = species_parts()
    assert set(parts) == set(SPECIES)
    for name, part in parts.items():
        assert 20 <= part.n_triangles <= 200, name  # low-poly
        assert part.vertices[:, 2].min() >= -1e-9 and part.extras["species"] == name
        assert part.colours.shape == (len(part.vertices), 4)
