"""Expectations on an assembled world before it is published (ENV-d1, world output).

The frames come from `gaiverse.world.world_checks` (via `WorldScene.check_frames()`): one row per
building (does it touch a road, stand in water, overlap another building), one row per road
edge (is it in the network's main component), and one summary row (triangles vs budget, height
range vs the requested relief, mesh nodes without semantic extras). A failure names the
building or road ids, so the flow's error says which object broke which rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from validation.metrics import ValidationReport, expect, run_suite, validate_frame

if TYPE_CHECKING:
    from gaiverse.world.assemble import WorldScene
    from storage.catalog import Catalog

BUILDINGS_SUITE = "world.buildings"
ROADS_SUITE = "world.roads"
SUMMARY_SUITE = "world.summary"

BUILDING_EXPECTATIONS = (
    expect("column_values_to_be_in_set", column="on_road", value_set=[False]),
    expect("column_values_to_be_in_set", column="on_water", value_set=[False]),
    expect("column_values_to_be_in_set", column="overlaps_building", value_set=[False]),
    expect("column_values_to_be_unique", column="id"),
)
ROAD_EXPECTATIONS = (
    expect("column_values_to_be_in_set", column="connected", value_set=[True]),
    expect("column_values_to_be_in_set", column="cls", value_set=["major", "minor"]),
    expect("column_values_to_be_between", column="length_m", min_value=0.5),
    expect("column_values_to_be_between", column="width_m", min_value=2.0, max_value=30.0),
    expect("column_values_to_be_unique", column="id"),
)
SUMMARY_EXPECTATIONS = (
    expect("table_row_count_to_equal", value=1),
    expect("column_values_to_be_in_set", column="within_budget", value_set=[True]),
    expect("column_values_to_be_in_set", column="relief_within_controls", value_set=[True]),
    expect("column_values_to_be_between", column="nodes_missing_extras", min_value=0, max_value=0),
)


def validate_world(scene: WorldScene, *, asset_key: str | None = None, catalog: Catalog | None = None,
                   flow_run_id: str | None = None, raise_on_failure: bool = True) -> list[ValidationReport]:
    """Run the three world suites; raises ValidationFailed on the first failing suite (after recording it)."""
    buildings, roads, summary = scene.check_frames()
    reports = []
    for suite, frame, expectations in ((SUMMARY_SUITE, summary, SUMMARY_EXPECTATIONS),
                                       (ROADS_SUITE, roads, ROAD_EXPECTATIONS),
                                       (BUILDINGS_SUITE, buildings, BUILDING_EXPECTATIONS)):
        if suite == BUILDINGS_SUITE and frame.empty:
            continue  # a world without buildings has nothing to check here
        if catalog is None and not raise_on_failure:
            reports.append(run_suite(suite, frame, expectations, asset_column="id", asset_key=asset_key))
            continue
        reports.append(validate_frame(suite, frame, expectations, asset_key=asset_key, asset_column="id",
                                      catalog=catalog, flow_run_id=flow_run_id, raise_on_failure=raise_on_failure))
    return reports
