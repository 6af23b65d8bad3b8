"""DEM readers on the shipped files (ENV-a1)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.world.dem import DemReadError, metres_per_degree, read_dem, resample_square
from gaiverse.world.training import PROJECT_ROOT

TERRAIN = PROJECT_ROOT / "data" / "terrain"

pytestmark = pytest.mark.clause("ENV-a1")


@pytest.mark.parametrize("name, shape, zmin, zmax", [
    ("landlab_SRTMGL3_40.09_-105.55_40.21_-105.35.asc", (144, 240), 1943.0, 3286.0),
    ("landlab_new_mexico_DEM_10m.asc", (53, 67), 1660.0, 1711.0),
    ("landlab_west_bijou_escarpment_snippet.asc", (67, 129), 1690.0, 1807.0),
    ("lidar_dem.tif", (400, 400), 379.66, 410.76),
    ("rmnp-dem.tif", (187, 152), 2281.0, 4261.0),
])
def test_reads_shipped_dems_with_their_documented_shape_and_range(name, shape, zmin, zmax):
    dem = read_dem(TERRAIN / name)
    assert dem.shape == shape
    assert np.nanmin(dem.heights) == pytest.approx(zmin, abs=0.01)
    assert np.nanmax(dem.heights) == pytest.approx(zmax, abs=0.01)


def test_nodata_cells_become_nan():
    dem = read_dem(TERRAIN / "landlab_west_bijou_gully.asc")
    assert int(np.isnan(dem.heights).sum()) == 2739
    assert np.nanmin(dem.heights) == pytest.approx(1680.78, abs=0.01)


def test_geographic_grid_gets_metres_per_cell_at_its_latitude():
    srtm = read_dem(TERRAIN / "landlab_SRTMGL3_40.09_-105.55_40.21_-105.35.asc")
    assert srtm.geographic
    assert srtm.cell_x_m == pytest.approx(70.8, abs=0.5)  # 3 arc-sec of longitude at 40.15 N
    assert srtm.cell_y_m == pytest.approx(92.7, abs=0.5)
    rmnp = read_dem(TERRAIN / "rmnp-dem.tif")
    assert rmnp.geographic and rmnp.crs == "EPSG:4326"
    assert 225 < rmnp.cell_x_m < 245 and 225 < rmnp.cell_y_m < 245


def test_projected_geotiff_keeps_its_cell_size_and_epsg():
    dem = read_dem(TERRAIN / "lidar_dem.tif")
    assert not dem.geographic
    assert (dem.cell_x_m, dem.cell_y_m) == (1.0, 1.0)
    assert dem.crs == "EPSG:26915"


def test_resample_square_makes_square_cells_and_keeps_heights():
    dem = read_dem(TERRAIN / "landlab_SRTMGL3_40.09_-105.55_40.21_-105.35.asc")
    grid, cell = resample_square(dem)
    assert cell == pytest.approx(np.sqrt(dem.cell_x_m * dem.cell_y_m))
    assert grid.shape[0] * cell == pytest.approx(dem.shape[0] * dem.cell_y_m, rel=0.02)
    assert np.nanmin(grid) >= 1943.0 - 1e-3 and np.nanmax(grid) <= 3286.0 + 1e-3


def test_metres_per_degree_at_equator_and_bad_latitude():
    m_lon, m_lat = metres_per_degree(0.0)
    assert m_lon == pytest.approx(111_195, rel=1e-3) and m_lat == pytest.approx(m_lon)
    with pytest.raises(ValueError, match="lat_deg"):
        metres_per_degree(91.0)


def test_unreadable_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_text("not a tiff")
    with pytest.raises(DemReadError, match="broken.tif"):
        read_dem(bad)
    with pytest.raises(DemReadError, match="unknown DEM type"):
        read_dem(TERRAIN / "README.md")
    with pytest.raises(DemReadError, match="no such file"):
        read_dem(tmp_path / "missing.asc")
