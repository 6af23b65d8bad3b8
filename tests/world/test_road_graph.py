"""Road raster -> cleaned, connected road graph (ENV-d1; road cleaning for ENV-a1/a2 layouts)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from gaiverse.world import road_metrics as rm
from gaiverse.world.layout_model import LayoutModelConfig, decode_roads, density_thresholds, encode_tiles
from gaiverse.world.osm import ROAD_CLASSES
from gaiverse.world.road_graph import (RoadGraphConfig, build_road_network, clean_road_masks, simplify_path,
                                       trace_skeleton, xy_to_rc, rc_to_xy)

CELL = 8.0
MAJOR, MINOR = ROAD_CLASSES.index("major"), ROAD_CLASSES.index("minor")


def fragmented_raster() -> np.ndarray:
    """A major east-west road, a minor north-south road with a 3-px gap, a second separate street,
    a 2-px spur and an isolated speck: the defects the road model's rasters show."""
    roads = np.zeros((len(ROAD_CLASSES), 64, 64), dtype=bool)
    roads[MAJOR, 30:33, 4:60] = True          # wide major road
    roads[MINOR, 6:26, 20] = True             # minor road north of it, gap of 4 px
    roads[MINOR, 34:58, 20] = True            # continues south
    roads[MINOR, 50, 34:60] = True            # separate street in the south-east, not touching anything
    roads[MINOR, 27:30, 44] = True            # short spur hanging off the major road
    roads[MINOR, 10, 50] = True               # a one-pixel speck
    return roads


@pytest.mark.clause("ENV-d1")
def test_cleaning_gives_one_connected_network_with_metrics():
    net = build_road_network(fragmented_raster(), CELL)
    before, after = net.metrics_before, net.metrics_after
    assert before["components"] >= 3
    assert after["components"] == 1 and net.is_connected()
    assert after["dead_end_share"] < before["dead_end_share"]
    assert after["cleaning"]["links"] + after["cleaning"]["joined_dead_ends"] >= 2
    assert after["cleaning"]["pruned_spurs"] >= 1
    # the speck is gone: no node near (row 10, col 50)
    speck = rc_to_xy(np.array([[10, 50]]), (64, 64), CELL)[0]
    assert min(np.linalg.norm(d["xy"] - speck) for _, d in net.graph.nodes(data=True)) > 3 * CELL
    records = net.records()
    assert {r["component"] for r in records} == {0}
    assert len({r["id"] for r in records}) == len(records)


@pytest.mark.clause("ENV-d1")
def test_classes_follow_the_raster_channel():
    net = build_road_network(fragmented_raster(), CELL)
    classes = {}
    for path, cls in zip(net.polylines, net.classes):
        rc = xy_to_rc(path, (64, 64), CELL)
        classes.setdefault("ew" if np.ptp(rc[:, 1]) > 4 * np.ptp(rc[:, 0]) and rc[:, 0].mean() < 35 else "other",
                           set()).add(cls)
    assert "major" in classes["ew"]
    assert net.classes.count("minor") >= 2
    assert all(w > 0 for w in (r["width_m"] for r in net.records()))


@pytest.mark.clause("ENV-d1")
def test_links_avoid_water_and_flag_bridges():
    roads = np.zeros((2, 40, 40), dtype=bool)
    roads[MINOR, 20, 2:14] = True
    roads[MINOR, 20, 26:38] = True
    water = np.zeros((40, 40), dtype=bool)
    water[:, 17:23] = True                    # a river between the two roads
    net = build_road_network(roads, CELL, water=water)
    assert net.is_connected() and len(net.records()) >= 3
    assert any(r["bridge"] for r in net.records())
    largest = build_road_network(roads, CELL, water=water, config=RoadGraphConfig(connect="largest"))
    assert largest.metrics_after["components"] == 1 and largest.length_m() < net.length_m()


def test_trace_and_simplify():
    sk = np.zeros((20, 20), dtype=bool)
    sk[10, 2:18] = True
    sk[2:10, 9] = True
    g = trace_skeleton(sk, 1.0)
    assert sorted(d for _, d in g.degree()) == [1, 1, 1, 3]
    assert nx.is_connected(g)
    line = np.column_stack([np.arange(20.0), 0.01 * np.sin(np.arange(20.0))])
    assert len(simplify_path(line, 0.5)) == 2


def test_empty_and_bad_input():
    net = build_road_network(np.zeros((2, 16, 16), bool), CELL)
    assert net.graph.number_of_nodes() == 0 and net.is_connected() and net.polylines == []
    with pytest.raises(ValueError, match="`roads` must have shape"):
        build_road_network(np.zeros((16, 16), bool), CELL)
    with pytest.raises(ValueError, match="`cell_m` must be positive"):
        build_road_network(np.zeros((2, 16, 16), bool), 0)
    with pytest.raises(ValueError, match="`water` must have shape"):
        build_road_network(np.zeros((2, 16, 16), bool), CELL, water=np.zeros((8, 8), bool))


def test_dead_end_pointing_at_a_road_is_joined_when_enabled():
    roads = np.zeros((2, 40, 40), dtype=bool)
    roads[MINOR, 30, 2:38] = True             # an east-west street
    roads[MINOR, 4:24, 20] = True             # a street from the north that stops 6 px short of it
    roads[MINOR, 4, 2:38] = True
    off = build_road_network(roads, CELL)
    on = build_road_network(roads, CELL, config=RoadGraphConfig(join_m=80.0))
    assert on.metrics_after["cleaning"]["joined_dead_ends"] == 1
    assert on.metrics_after["dead_ends"] < off.metrics_after["dead_ends"] or off.metrics_after["cleaning"]["links"] == 1


@pytest.mark.clause("ENV-a2")
def test_tile_cleaning_keeps_roads_leaving_the_tile_and_drops_spurs_and_specks():
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 16, :] = True                     # a street crossing the tile
    mask[0, 0:16, 10] = True                  # a side street leaving through the northern edge
    mask[0, 13:16, 24] = True                 # a 3-px (24 m) spur: a thinning artefact
    mask[0, 28, 28] = True                    # a speck
    lines = clean_road_masks(mask, CELL)[0]
    assert lines[0:3, 9:12].any() and lines[16, 0] and lines[16, 31]    # both streets reach the tile edge
    assert not lines[13:15, 23:26].any() and not lines[27:30, 27:30].any()
    assert clean_road_masks(np.zeros((2, 32, 32), bool), CELL).sum() == 0
    with pytest.raises(ValueError, match="`masks` must have shape"):
        clean_road_masks(np.zeros((32, 32), bool), CELL)


@pytest.mark.clause("ENV-a2")
def test_density_matched_decoding_honours_the_requested_density():
    """Distance-encoded grids of two densities, decoded at the requested density: the cleaned road
    length follows the request, and a denser request never gets a lower threshold on the same tile."""
    cfg = LayoutModelConfig(kind="roads", channels=2, road_encoding="distance")
    masks = np.stack([rm.grid_baseline((32, 32), d, CELL, s) for s, d in enumerate([6.0, 14.0, 6.0, 14.0])])
    tiles = np.where(np.stack([masks, np.zeros_like(masks)], axis=1), 1.0, -1.0)
    values = encode_tiles(tiles, cfg)
    wanted = rm.road_stats(clean_road_masks(masks, CELL), CELL).road_density
    thresholds = density_thresholds(values, cfg, wanted, CELL)
    got = rm.road_stats(clean_road_masks(decode_roads(values, cfg, thresholds[:, None, None, None]).any(1), CELL),
                        CELL).road_density
    assert np.abs(got - wanted).max() < 0.25 * wanted.max()
    # a clear street and a faint one (its ramp peaks as if 1.2 px away): one street's density keeps
    # the faint one out, twice that brings it in
    rows = np.arange(32)[:, None] * np.ones((1, 32))
    faint = np.maximum(1 - 2 * np.minimum(np.abs(rows - 10) / 3, 1), 1 - 2 * np.minimum((np.abs(rows - 22) + 1.2) / 3, 1))
    field = np.stack([faint, np.full_like(faint, -1.0)])[None]
    one_street = 32 * CELL / 1000 / (32 * 32 * (CELL / 1000) ** 2)
    low, high = (density_thresholds(field, cfg, np.array([d]), CELL)[0] for d in (one_street, 2 * one_street))
    assert low < 1.2 < high
    assert decode_roads(field, cfg, high).any(1)[0, 22].all() and not decode_roads(field, cfg, low).any(1)[0, 22].any()
    with pytest.raises(ValueError, match="n = len"):
        density_thresholds(values, cfg, wanted[:2], CELL)
