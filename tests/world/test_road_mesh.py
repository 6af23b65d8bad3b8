"""Roads graded to the terrain, ground carved to them, bridges over water, meshes by class (ENV-d1)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.world.glb import to_gltf_frame
from gaiverse.world.osm import ROAD_CLASSES
from gaiverse.world.road_graph import ROAD_WIDTH_M, build_road_network
from gaiverse.world.road_mesh import RoadMeshConfig, carve_ground, grade_roads, road_meshes
from gaiverse.world.terrain_mesh import ground_field, water_at

CELL = 8.0


def steep_world():
    """A 40 x 40 cell slope rising 25 % eastwards with a major road across it and a minor road
    crossing a north-south river."""
    heights = np.tile(np.linspace(0, 80, 40), (40, 1))
    roads = np.zeros((2, 40, 40), bool)
    roads[ROAD_CLASSES.index("major"), 10, 2:38] = True
    roads[ROAD_CLASSES.index("minor"), 11:38, 20] = True
    roads[ROAD_CLASSES.index("minor"), 30, 2:19] = True
    water = np.zeros((40, 40), bool)
    water[26:34, 8:12] = True
    heights[water] = 5.0
    return heights, roads, water


def _setup(config=None):
    heights, roads, water = steep_world()
    net = build_road_network(roads, CELL, water)
    ground = ground_field(heights, CELL, water, 6.0, terrain_cell_m=4.0)
    wet = lambda xy: water_at(water, CELL, np.atleast_2d(xy))  # noqa: E731
    graded = grade_roads(net, ground, wet, 6.0, config)
    return net, ground, graded


@pytest.mark.clause("ENV-d1")
def test_grades_are_limited_and_the_ground_is_carved_to_the_road():
    cfg = RoadMeshConfig(max_grade=0.10)
    net, ground, graded = _setup(cfg)
    for road in graded:
        ds = np.linalg.norm(np.diff(road.xy, axis=0), axis=1)
        grade = np.abs(np.diff(road.z)) / np.maximum(ds, 1e-9)
        # ends are pinned to the junction heights; the inner profile respects the limit
        assert np.percentile(grade, 90) <= 0.10 + 1e-6
    assert max(r.cut_m for r in graded) > 1.0  # the 25 % slope forces cuts
    carved = carve_ground(ground, graded, cfg)
    major = next(r for r in graded if r.cls == "major")
    on_land = ~major.bridge
    assert np.abs(carved.height_at(major.xy[on_land]) - major.z[on_land]).max() < 0.5
    assert not np.allclose(carved.corners, ground.corners)


@pytest.mark.clause("ENV-d1")
def test_water_crossing_becomes_a_bridge_above_the_water():
    net, ground, graded = _setup()
    bridges = [r for r in graded if r.bridge.any()]
    assert bridges, "the minor road over the river must be a bridge"
    for r in bridges:
        assert (r.z[r.bridge] >= 6.0 + RoadMeshConfig().clearance_m - 1e-6).all()
    parts = road_meshes(net, graded, carve_ground(ground, graded))
    flagged = [p for p in parts if p.extras.get("bridge")]
    assert flagged and all(p.extras["type"] == "road" for p in flagged)


@pytest.mark.clause("ENV-d1")
def test_meshes_have_width_by_class_sidewalks_junctions_and_face_up():
    net, ground, graded = _setup()
    parts = road_meshes(net, graded, carve_ground(ground, graded))
    roads = [p for p in parts if p.extras["type"] == "road"]
    junctions = [p for p in parts if p.extras["type"] == "junction"]
    assert len(roads) == len(graded) and junctions
    assert {p.extras["class"] for p in roads} == {"major", "minor"}
    for p in roads:
        assert p.extras["width_m"] == ROAD_WIDTH_M[p.extras["class"]] and p.extras["sidewalk_m"] > 0
        v = to_gltf_frame(p.vertices)
        f = p.faces.astype(np.int64)
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        flat = np.abs(n[:, 1]) > 0.9 * np.linalg.norm(n, axis=1)
        assert (n[flat, 1] > 0).all()  # carriageway and sidewalks face the sky
        assert len(np.unique(p.colours[:, :3], axis=0)) >= 3  # asphalt, kerb, sidewalk
    assert len({p.name for p in parts}) == len(parts)
