"""Window interiors in the world .glb: every window gets a NeRF room material with a baked texture, the colour +
depth maps ship beside the .glb and are named in `extras`, the Khronos validator reports no error, and the
assignment is deterministic per building but varied across buildings."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gaiverse.interiors.windows import (
    InteriorLibrary, check_windows, furnish, furnish_scene, glb_document, window_variation,
)
from gaiverse.world import world_build
from tests.interiors.rooms import nerf_room_library
from tests.world._world_fixtures import small_state

pytestmark = pytest.mark.clause("ENV-c3")


@pytest.fixture(scope="module")
def library() -> InteriorLibrary:
    return nerf_room_library()


@pytest.fixture(scope="module")
def furnished(library):
    scene = world_build.render(small_state())
    bare = scene.glb_bytes()
    stats = furnish_scene(scene, library)
    return scene, bare, stats


def test_room_views_come_from_the_nerf(library):
    view = library.views[0]
    assert view.source.get("atlas") and view.source.get("viewpoint") is not None, view.source
    assert view.colour.std() > 5, "a rendered room is not a flat colour"
    assert view.depth_max > view.depth_min * 1.1 and np.ptp(view.depth_code) > 50, "the NeRF depth map has depth"
    assert 0 < view.window_plane_m < view.depth_min


@pytest.mark.slow
def test_every_window_has_an_interior_material_and_the_glb_validates(furnished, tmp_path):
    from validation.gltf import validate_glb

    scene, bare, stats = furnished
    assert not check_windows(bare)["ok"], "the unfurnished world has glass windows, not interiors"
    glb = scene.glb_bytes()
    check = check_windows(glb, scene.assets)
    assert check["ok"] and check["window_nodes"] == stats["window_parts"] >= 2, check
    report = validate_glb(glb)
    assert report.errors == [], report.summary()
    doc = glb_document(glb)
    materials = [m for m in doc["materials"] if "interior" in m.get("extras", {})]
    assert len(materials) == stats["room_views_used"] and len(doc["images"]) == len(materials)
    for material in materials:  # the files named in extras are real PNGs of the announced encodings
        extras = material["extras"]["interior"]
        colour = Image.open(io.BytesIO(scene.assets[extras["colour"]]))
        depth = Image.open(io.BytesIO(scene.assets[extras["depth"]]))
        assert colour.mode == "RGB" and depth.mode == "L" and colour.size == depth.size
        assert extras["depth_max"] > extras["depth_min"] > extras["window_plane_m"] > 0
    files = scene.write(tmp_path / "world")
    assert all((tmp_path / "world" / path).is_file() for path in scene.assets)
    assert files["glb"].read_bytes() == glb
    print(f"interiors: {stats}; glb {len(glb)} bytes (bare {len(bare)}), assets {stats['asset_bytes']} bytes")


def test_rooms_are_deterministic_per_building_and_varied_across(library):
    ids = [f"b{k}" for k in range(40)]
    first = [library.for_building(i).name for i in ids]
    assert first == [library.for_building(i).name for i in ids]
    assert len(set(first)) >= min(4, len(library.views))
    a, b = window_variation("b7", 12), window_variation("b7", 12)
    assert np.array_equal(a.mirrored, b.mirrored) and np.array_equal(a.light, b.light)
    assert 0 < a.mirrored.sum() < 12 and np.ptp(a.light) > 0.05


def test_rooms_vary_in_viewpoint_and_colour(library):
    assert len(library.views) >= 4
    views = {str(v.source.get("viewpoint")) for v in library.views}
    colours = {tuple(np.round(v.colour.reshape(-1, 3).mean(0))) for v in library.views}
    assert len(views) >= 2 and len(colours) == len(library.views)


def test_non_quad_window_parts_are_refused(furnished, library):
    scene, _, _ = furnished
    window = next(p for p in scene.buildings if p.extras.get("part") == "windows")
    broken = type(window)(window.name, window.vertices[:-1], window.faces[:-1], None, dict(window.extras))
    with pytest.raises(ValueError, match="must be quads"):
        furnish([broken], library)
