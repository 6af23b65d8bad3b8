"""Edits of a world layout: each changes its region only (bit-identical outside) and refuses what cannot apply."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from gaiverse.world.editing import (
    Edit, EditError, EditRequest, LayoutModels, Region, apply_edit,
)
from gaiverse.world.world_state import building_cells
from tests.world._world_fixtures import small_state

EDIT = TypeAdapter(Edit)
TOP = 64 * 8.0


def edit(**fields):
    return EDIT.validate_python(fields)


def outside_identical(old, new, region):
    outside = ~region
    return (np.array_equal(old.heights[outside], new.heights[outside])
            and np.array_equal(old.roads[:, outside], new.roads[:, outside])
            and np.array_equal(old.water[outside], new.water[outside]))


@pytest.fixture(scope="module")
def models():
    return LayoutModels.from_checkpoint()


def test_raise_changes_region_only_and_feathers():
    state = small_state()
    region = Region(x0_m=160, y0_m=160, x1_m=320, y1_m=320)
    result = apply_edit(state, edit(op="raise", region=region.model_dump(), amount_m=12, feather_m=32))
    cells = region.cells(state)
    delta = result.state.heights - state.heights
    assert outside_identical(state, result.state, cells)
    assert delta[cells].max() == pytest.approx(12, abs=1e-3)  # full amount in the core
    assert 0 < delta[cells].min() < 12  # feathered towards the border
    assert np.array_equal(state.heights, small_state().heights)  # the input state is untouched


def test_lower_and_flatten():
    state = small_state()
    region = Region(x0_m=100, y0_m=300, x1_m=260, y1_m=460)
    cells = region.cells(state)
    lowered = apply_edit(state, edit(op="lower", region=region.model_dump(), amount_m=5, feather_m=0)).state
    assert np.allclose(lowered.heights[cells], state.heights[cells] - 5, atol=1e-4)
    flat = apply_edit(state, edit(op="flatten", region=region.model_dump(), target_m=20, feather_m=0)).state
    assert np.allclose(flat.heights[cells], 20.0)
    assert outside_identical(state, flat, cells)


def test_lowering_below_the_water_level_floods():
    state = small_state()
    region = Region(x0_m=160, y0_m=160, x1_m=240, y1_m=240)
    result = apply_edit(state, edit(op="flatten", region=region.model_dump(), target_m=0.0, feather_m=0))
    assert result.state.water[region.cells(state)].all()


def test_draw_road_adds_cells_and_removes_crossed_buildings():
    state = small_state()
    result = apply_edit(state, edit(op="draw_road", points=[[50, 20], [50, TOP - 20]], road_class="major", width_m=10))
    new_cells = result.state.roads[0] & ~state.roads[0]
    assert new_cells.sum() > 50
    assert result.summary["buildings_removed"] == ["b1"]  # b1 spans x 40..60
    assert [b.id for b in result.state.buildings] == ["b2"]
    assert not (result.state.roads.any(0) & state.water).any()  # never on water


def test_delete_roads_in_region():
    state = small_state()
    region = Region(x0_m=0, y0_m=200, x1_m=256, y1_m=320)
    result = apply_edit(state, edit(op="delete_roads", region=region.model_dump()))
    assert result.summary["road_cells_removed"] == 32
    assert not result.state.roads[:, region.cells(state)].any()
    assert result.state.roads[1].sum() == 32  # the eastern half of the road is still there


def test_move_building_and_collisions():
    state = small_state()
    moved = apply_edit(state, edit(op="move_building", building_id="b2", dx_m=40, dy_m=-80)).state
    b2 = next(b for b in moved.buildings if b.id == "b2")
    assert np.allclose(b2.centroid() - next(b for b in state.buildings if b.id == "b2").centroid(), [40, -80])
    assert np.array_equal(moved.heights, state.heights)
    with pytest.raises(EditError, match="on a road"):
        apply_edit(state, edit(op="move_building", building_id="b1", dy_m=-224))
    with pytest.raises(EditError, match="overlap building 'b2'"):
        apply_edit(state, edit(op="move_building", building_id="b1", dx_m=156))
    with pytest.raises(EditError, match="in water"):
        apply_edit(state, edit(op="move_building", building_id="b1", dx_m=-30, dy_m=-(TOP - 80)))
    with pytest.raises(EditError, match="no building 'zz'"):
        apply_edit(state, edit(op="move_building", building_id="zz", dx_m=1))


def test_region_outside_world_and_bad_edits_are_refused():
    state = small_state()
    with pytest.raises(EditError, match="outside"):
        apply_edit(state, edit(op="raise", region={"x0_m": 600, "y0_m": 0, "x1_m": 700, "y1_m": 10}, amount_m=1))
    with pytest.raises(ValidationError, match="x0_m < x1_m"):
        edit(op="raise", region={"x0_m": 10, "y0_m": 0, "x1_m": 5, "y1_m": 10}, amount_m=1)
    with pytest.raises(ValidationError):
        edit(op="explode", region={"x0_m": 0, "y0_m": 0, "x1_m": 5, "y1_m": 10})
    with pytest.raises(ValidationError, match="amount_m"):
        edit(op="raise", region={"x0_m": 0, "y0_m": 0, "x1_m": 5, "y1_m": 10}, amount_m=-3)
    with pytest.raises(EditError, match="inside the"):
        apply_edit(state, edit(op="draw_road", points=[[0, 0], [900, 10]]))
    with pytest.raises(EditError, match="layout models"):
        apply_edit(state, edit(op="regenerate", region={"x0_m": 0, "y0_m": 0, "x1_m": 50, "y1_m": 50}))
    assert EditRequest.model_validate({"edit": {"op": "flatten", "region": {"x0_m": 0, "y0_m": 0, "x1_m": 5,
                                                                            "y1_m": 5}}}).base_version is None


def test_regenerate_region_is_bit_identical_outside_and_seamless(models):
    state = small_state()
    region = Region(x0_m=200, y0_m=200, x1_m=360, y1_m=360)
    cells = region.cells(state)
    result = apply_edit(state, edit(op="regenerate", region=region.model_dump(), controls={"relief_m": 80},
                                    seed=3, steps=4), models)
    new = result.state
    assert outside_identical(state, new, cells)
    assert not np.array_equal(new.heights[cells], state.heights[cells])
    assert result.summary["terrain_tiles"] >= 1 and result.summary["road_tiles"] >= 1
    # no cliff at the region border: the largest step across it stays within the steps the terrain has inside
    steps_inside = np.abs(np.diff(new.heights[cells.any(1)][:, cells.any(0)], axis=1))
    rows = np.nonzero(cells.any(1))[0]
    c0 = np.nonzero(cells.any(0))[0][0]
    border_step = np.abs(new.heights[rows, c0] - new.heights[rows, c0 - 1]).max()
    assert border_step <= max(3 * np.percentile(steps_inside, 99), 3.0)
    # same seed -> same result; another seed -> another result
    again = apply_edit(state, edit(op="regenerate", region=region.model_dump(), controls={"relief_m": 80},
                                   seed=3, steps=4), models).state
    other = apply_edit(state, edit(op="regenerate", region=region.model_dump(), layers=["terrain"], seed=4,
                                   steps=4), models).state
    assert np.array_equal(again.heights, new.heights)
    assert not np.array_equal(other.heights[cells], new.heights[cells])
    assert np.array_equal(other.roads, state.roads)  # only the terrain layer was regenerated


def test_regenerating_a_too_large_region_is_refused(models):
    state = small_state(size=160)
    with pytest.raises(EditError, match="spans"):
        apply_edit(state, edit(op="regenerate", region={"x0_m": 0, "y0_m": 0, "x1_m": 1280, "y1_m": 1280}), models)


def test_building_cells_follow_the_north_up_frame():
    state = small_state()
    b1 = state.buildings[0]  # y from TOP-40 to TOP-24: the northern rows
    rows, cols = np.nonzero(building_cells(b1, state.shape, state.cell_m))
    assert rows.min() >= 2 and rows.max() <= 5 and cols.min() >= 5 and cols.max() <= 7
