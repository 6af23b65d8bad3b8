"""Building layouts on a scene (ENV-b2) and their meshes (ENV-b3): no overlaps, controls, valid meshes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from gaiverse.world import buildings_geometry as geo
from gaiverse.world.buildings_eval import DEFAULT_CHECKPOINT
from gaiverse.world.buildings_layout import (ROAD_HALF_WIDTH_M, BuildingControls, LayoutConfig, SceneInput,
                                             generate_building_layout)
from gaiverse.world.buildings_mesh import BuildingMeshConfig, building_parts, buildings_scene
from gaiverse.world.buildings_model import BuildingModel
from gaiverse.world.buildings_preview import render_3d, render_top_down
from gaiverse.world.suggestions import parse_suggestion

ARTIFACTS = __import__("pathlib").Path(__file__).resolve().parents[1] / "artifacts"
SIZE, CELL = 400.0, 4.0


def grid_scene() -> SceneInput:
    """400 m x 400 m: minor streets every 80 m, one major avenue, a lake in the north-east, a hill."""
    n = int(SIZE / CELL)
    yy, xx = np.mgrid[0:n, 0:n] * CELL
    heights = 5.0 * np.exp(-((xx - 80) ** 2 + (yy - 320) ** 2) / 60.0**2)
    water = (xx - 340) ** 2 + (yy - 60) ** 2 < 45.0**2  # rows from the north: y_north = SIZE - row*cell
    roads, classes = [], []
    for v in np.arange(40.0, SIZE, 80.0):
        roads += [np.array([[v, 0.0], [v, SIZE]]), np.array([[0.0, v], [SIZE, v]])]
        classes += ["minor", "minor"]
    roads.append(np.array([[0.0, 0.0], [SIZE, SIZE]]))
    classes.append("major")
    return SceneInput(heights, CELL, roads, classes, water)


@pytest.fixture(scope="module")
def model() -> BuildingModel:
    return BuildingModel.load(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def scene() -> SceneInput:
    return grid_scene()


@pytest.fixture(scope="module")
def layout(scene, model):
    return generate_building_layout(scene, model, BuildingControls(settlement_radius_m=0.0), seed=0)


def _centre_stats(lay, radius=110.0):
    c = np.array([SIZE / 2, SIZE / 2])
    near = [b for b in lay.buildings if np.linalg.norm(geo.centroid(b.footprint) - c) < radius]
    return len(near), float(np.mean([b.levels for b in near])) if near else 0.0


@pytest.mark.clause("ENV-b2")
def test_footprints_never_touch_roads_water_or_each_other(scene, layout):
    bs = layout.buildings
    assert len(bs) > 40
    road_pts = np.concatenate([np.linspace(p[0], p[1], 4000) for p in scene.roads])  # 0.1 m steps
    half = np.concatenate([np.full(4000, ROAD_HALF_WIDTH_M[c]) for c in scene.road_classes])
    tree = cKDTree(road_pts)
    for b in bs:
        ring = np.concatenate([np.linspace(b.footprint[i], b.footprint[(i + 1) % len(b.footprint)], 20)
                               for i in range(len(b.footprint))])
        for pts, near in zip(ring, tree.query_ball_point(ring, ROAD_HALF_WIDTH_M["major"] + 0.3)):
            assert not np.any(np.linalg.norm(road_pts[near] - pts, axis=1) < half[near] + 0.3), b.id
        rows, cols = scene.cell_of(ring)
        assert not scene.water[rows, cols].any(), b.id
    tris = [b.footprint[geo.triangulate(b.footprint)] for b in bs]
    cents = np.array([geo.centroid(b.footprint) for b in bs])
    for i in range(len(bs)):
        for j in np.flatnonzero(np.linalg.norm(cents - cents[i], axis=1) < 150)[:]:
            if j > i:
                assert not any(geo.convex_overlap(a, c) for a in tris[i] for c in tris[j]), (bs[i].id, bs[j].id)


@pytest.mark.clause("ENV-b2")
def test_layout_has_blocks_parcels_and_is_reproducible(scene, model, layout):
    assert layout.blocks.max() >= 20  # 5 x 5 street grid cut by the avenue
    assert all(b.block_id > 0 for b in layout.buildings)
    assert all(abs(geo.signed_area(b.parcel)) > 0 for b in layout.buildings)
    again = generate_building_layout(scene, model, BuildingControls(settlement_radius_m=0.0), seed=0)
    assert [b.id for b in again.buildings] == [b.id for b in layout.buildings]
    np.testing.assert_allclose(again.buildings[5].footprint, layout.buildings[5].footprint)
    manifest = layout.manifest()
    assert manifest["n_buildings"] == len(layout.buildings) and manifest["buildings"][0]["footprint"]


@pytest.mark.clause("ENV-b2")
def test_controls_dense_centre_and_low_rise_change_the_output(scene, model, layout):
    dense = generate_building_layout(scene, model, BuildingControls(dense_centre=True, settlement_radius_m=250.0), seed=0)
    n_plain, lv_plain = _centre_stats(layout)
    n_dense, lv_dense = _centre_stats(dense)
    assert n_dense > 1.2 * n_plain and lv_dense > 1.5 * lv_plain
    village = BuildingControls.from_suggestion(parse_suggestion("a low-rise village, 400 m x 400 m"),
                                               "a low-rise village, 400 m x 400 m")
    low = generate_building_layout(scene, model, village, seed=0)
    assert village.max_levels == 2 and max(b.levels for b in low.buildings) <= 2


def test_scene_input_validates_its_arguments():
    with pytest.raises(ValueError, match="`road_classes`"):
        SceneInput(np.zeros((4, 4)), 1.0, [np.zeros((2, 2))], ["highway"])
    with pytest.raises(ValueError, match="`water`"):
        SceneInput(np.zeros((4, 4)), 1.0, [], [], np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="`density`"):
        BuildingControls(density=10)


@pytest.mark.clause("ENV-b3")
def test_building_meshes_are_closed_solids_with_windows_and_variation(layout):
    colours = set()
    tall = [b for b in layout.buildings if b.levels >= 3][:10] + [b for b in layout.buildings if b.levels < 3][:10]
    assert tall
    for b in tall:
        parts = building_parts(b)
        assert parts.walls.is_watertight and parts.walls.is_winding_consistent and parts.walls.volume > 0
        assert parts.walls.bounds[1][2] >= b.base_z + b.height_m - 1e-6
        if parts.windows is not None:
            uv = parts.windows.visual.uv
            assert uv.min() == 0.0 and uv.max() == 1.0 and len(uv) == 4 * parts.n_windows
            assert parts.windows.metadata["type"] == "window" and parts.windows.metadata["count"] == parts.n_windows
        colours.add(tuple(b.facade_colour))
    assert len(colours) == len(tall)  # no two alike
    assert any(building_parts(b).n_windows > 0 for b in tall)
    assert any(building_parts(b).balconies is not None for b in layout.buildings if b.levels >= 3)


@pytest.mark.clause("ENV-b3")
def test_scene_respects_triangle_budget_and_exports_valid_glb(layout):
    from validation.gltf import validate_glb

    sub = replace(layout, buildings=layout.buildings[:40])
    full = buildings_scene(sub)
    n_full = sum(len(g.faces) for g in full.geometry.values())
    budget = n_full // 2
    capped = buildings_scene(sub, triangle_budget=budget)
    assert sum(len(g.faces) for g in capped.geometry.values()) <= budget
    with pytest.raises(ValueError, match="triangle_budget"):
        buildings_scene(sub, triangle_budget=10)
    report = validate_glb(capped.export(file_type="glb"))
    assert report.ok, report.summary()
    assert "building/b00000/walls" in capped.graph.nodes


@pytest.mark.clause("ENV-b3")
def test_previews_are_rendered(scene, layout):
    ARTIFACTS.mkdir(exist_ok=True)
    top = render_top_down(scene, layout, px_per_m=2.0)
    top.save(ARTIFACTS / "buildings_top_down.png")
    c = np.array([SIZE / 2, SIZE / 2])
    block = replace(layout, buildings=[b for b in layout.buildings if np.linalg.norm(geo.centroid(b.footprint) - c) < 90])
    view = render_3d(buildings_scene(block, BuildingMeshConfig()))
    view.save(ARTIFACTS / "buildings_block_3d.png")
    for img in (top, view):
        assert np.asarray(img).std() > 10  # not a blank canvas
    assert isinstance(trimesh.Scene(), trimesh.Scene)
