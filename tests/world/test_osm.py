"""OSM road reading and rasterisation on the shipped extracts (ENV-a1)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.world.osm import ROAD_CLASSES, OsmReadError, rasterize_roads, read_roads, road_mask_to_png
from gaiverse.world.training import PROJECT_ROOT

OSM = PROJECT_ROOT / "data" / "osm"

pytestmark = pytest.mark.clause("ENV-a1")


def test_reads_helsinki_drivable_roads_in_metres():
    net = read_roads(OSM / "Helsinki.osm.pbf")
    assert set(net.classes) == set(ROAD_CLASSES)
    # ways whose nodes all lie outside the extract have no locations and are dropped
    assert 130 <= net.highway_counts["primary"] <= 145 and 230 <= net.highway_counts["residential"] <= 243
    assert "footway" not in net.highway_counts
    width, height = net.extent_m
    assert 900 < width < 1100 and 1550 < height < 1750  # 0.018 x 0.015 degrees at 60.17 N
    assert 25_000 < net.length_m() < 40_000


@pytest.mark.parametrize("name", ["test.osm.pbf", "West-Oakland.osm.bz2", "planet_10.068_48.135_10.071_48.137.osm"])
def test_reads_pbf_xml_and_bz2(name):
    net = read_roads(OSM / name)
    assert len(net.polylines) > 0 and all(line.shape[1] == 2 for line in net.polylines)


def test_rasterise_draws_each_class_in_its_channel():
    net = read_roads(OSM / "Helsinki.osm.pbf")
    raster = rasterize_roads(net, cell_m=8.0)
    assert raster.shape == (2, int(np.ceil(net.extent_m[1] / 8)), int(np.ceil(net.extent_m[0] / 8)))
    assert raster[0].sum() > 500 and raster[1].sum() > 500
    label = road_mask_to_png(raster)
    assert set(np.unique(label)) == {0, 1, 2}
    assert (label == 2).sum() == raster[0].sum()


def test_bad_osm_input_raises_naming_the_file(tmp_path):
    bad = tmp_path / "bad.osm.pbf"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(OsmReadError, match="bad.osm.pbf"):
        read_roads(bad)
    with pytest.raises(OsmReadError, match="unknown OSM file type"):
        read_roads(OSM / "README.md")
