"""Training tiles: normalisation, attributes, provenance, region hold-out (ENV-a1)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.world.dem import read_dem, resample_square
from gaiverse.world.osm import ROAD_CLASSES
from gaiverse.world.tiles import TileSet, file_sha256, road_tiles, terrain_tiles
from gaiverse.world.training import PROJECT_ROOT

pytestmark = pytest.mark.clause("ENV-a1")
TERRAIN = PROJECT_ROOT / "data" / "terrain"
OSM = PROJECT_ROOT / "data" / "osm"
FILES = [TERRAIN / "landlab_new_mexico_DEM_10m.asc", TERRAIN / "landlab_west_bijou_escarpment_snippet.asc"]


@pytest.fixture(scope="module")
def tiles() -> TileSet:
    return terrain_tiles(FILES, tile_px=32, stride=16)


def test_terrain_tiles_are_normalised_and_keep_relief_in_metres(tiles):
    assert tiles.tiles.shape[1:] == (1, 32, 32)
    assert np.allclose(tiles.tiles.min(axis=(1, 2, 3)), -1) and np.allclose(tiles.tiles.max(axis=(1, 2, 3)), 1)
    for key in ("relief_m", "base_m", "cell_m", "roughness", "mean_slope_deg", "psd_slope"):
        assert tiles.attrs[key].shape == (len(tiles),)
    assert (tiles.attrs["relief_m"] > 0).all()


def test_provenance_points_back_to_the_exact_window(tiles):
    for i in (0, len(tiles) - 1):
        prov = tiles.provenance[i]
        path = TERRAIN / prov["source"]
        assert prov["sha256"] == file_sha256(path)
        grid, cell = resample_square(read_dem(path))
        r, c, h, w = prov["window"]
        assert prov["cell_m"] == pytest.approx(cell)
        assert np.allclose(grid[r:r + h, c:c + w], tiles.heights_m()[i], atol=1e-3 * tiles.attrs["relief_m"][i])


def test_regions_split_cleanly(tiles):
    train, held = tiles.split(["west_bijou"])
    assert set(held.regions) == {"west_bijou"} and "west_bijou" not in set(train.regions)
    assert len(train) + len(held) == len(tiles)


def test_save_and_load_round_trip(tiles, tmp_path):
    path = tiles.save(tmp_path / "tiles")
    again = TileSet.load(path)
    assert np.array_equal(again.tiles, tiles.tiles) and again.provenance == tiles.provenance
    assert np.allclose(again.attrs["relief_m"], tiles.attrs["relief_m"])


def test_road_tiles_have_one_channel_per_class_and_density():
    roads = road_tiles([OSM / "Helsinki.osm.pbf"], tile_px=32, cell_m=8.0, stride=32)
    assert roads.tiles.shape[1:] == (len(ROAD_CLASSES), 32, 32)
    assert set(np.unique(roads.tiles)) <= {-1.0, 1.0}
    assert roads.attrs["road_density"].max() > 10  # km/km2 in Helsinki's centre
    assert {p["region"] for p in roads.provenance} == {"helsinki"}


def test_bad_tiling_arguments_are_refused():
    with pytest.raises(ValueError, match="stride"):
        terrain_tiles(FILES, tile_px=32, stride=40)
