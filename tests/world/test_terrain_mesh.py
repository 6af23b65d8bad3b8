"""Heightmap -> terrain mesh within a triangle budget, vertex colours, water bed and plane (ENV-d1)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.world.glb import to_gltf_frame, vertex_normals
from gaiverse.world.terrain_mesh import (HeightField, TerrainMeshConfig, grid_for_budget, ground_field, terrain_mesh,
                                         water_plane)


def hill(n: int = 40, cell: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n]
    return 50.0 * np.exp(-((yy - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 5) ** 2))


@pytest.mark.clause("ENV-d1")
def test_mesh_covers_the_world_faces_up_and_samples_its_own_surface():
    heights, water = hill(), np.zeros((40, 40), bool)
    ground = ground_field(heights, 8.0, water, -1.0, terrain_cell_m=4.0)
    assert ground.corners.shape == (81, 81)
    part, field = terrain_mesh(ground, -1.0)
    assert part.n_triangles == 2 * 80 * 80
    assert np.allclose(part.vertices[:, :2].min(0), 0) and np.allclose(part.vertices[:, :2].max(0), 320)
    normals = vertex_normals(to_gltf_frame(part.vertices), part.faces.astype(np.int64))
    assert (normals[:, 1] > 0).all()  # glTF +Y is up: every vertex normal points to the sky
    corner = part.vertices[1234]
    assert field.height_at(corner[None, :2])[0] == pytest.approx(corner[2], abs=1e-6)
    assert part.extras["type"] == "terrain" and part.colours.shape == (len(part.vertices), 4)


@pytest.mark.clause("ENV-d1")
def test_budget_coarsens_the_grid():
    assert grid_for_budget(100, 50, 1_000_000) == (100, 50)
    rows, cols = grid_for_budget(100, 50, 2000)
    assert 2 * rows * cols <= 2000 and rows == 2 * cols
    ground = ground_field(hill(), 8.0, np.zeros((40, 40), bool), -1.0)
    part, field = terrain_mesh(ground, -1.0, TerrainMeshConfig(max_triangles=800))
    assert part.n_triangles <= 800 and field.corners.shape[0] < 41
    with pytest.raises(ValueError, match="`max_triangles`"):
        grid_for_budget(10, 10, 1)


@pytest.mark.clause("ENV-d1")
def test_water_bed_is_below_the_plane_and_coloured():
    heights = np.tile(np.linspace(0, 30, 40), (40, 1))
    water = heights < 6
    ground = ground_field(heights, 8.0, water, 6.0, depth_m=1.5)
    xs, ys = ground.grid_xy()
    wet_cols = xs < 6 * 8.0 - 8
    assert (ground.corners[wet_cols] <= 4.5 + 1e-9).all()
    part, _ = terrain_mesh(ground, 6.0)
    low = part.vertices[:, 2] < 4
    assert (part.colours[low][:, 2] < part.colours[low][:, 1] + 40).all()  # sand / bed, not blue grass
    plane = water_plane((320.0, 320.0), 6.0)
    assert plane.material == "water" and np.allclose(plane.vertices[:, 2], 6.0)
    assert water_plane((320.0, 320.0), -1.0) is None


def test_heightfield_resample_and_validation():
    f = HeightField.from_cells(hill(), 8.0)
    g = f.resampled(10, 10)
    assert g.corners.shape == (11, 11)
    assert g.height_at(np.array([[160.0, 160.0]]))[0] == pytest.approx(f.height_at(np.array([[160.0, 160.0]]))[0], rel=0.1)
    with pytest.raises(ValueError, match="same shape|one shape"):
        ground_field(hill(), 8.0, np.zeros((4, 4), bool), -1.0)
