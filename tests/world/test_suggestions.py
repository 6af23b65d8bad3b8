"""Suggestion parser: good and bad input (ENV-a2)."""

from __future__ import annotations

import pytest

from gaiverse.world.suggestions import SuggestionError, parse_suggestion

pytestmark = pytest.mark.clause("ENV-a2")


def test_the_issue_example_becomes_explicit_controls():
    c = parse_suggestion("a hilly coastal town with a river and a dense centre, 1 km x 1 km")
    assert c.size_m == (1000.0, 1000.0)
    assert c.relief_m == 120.0 and c.coast and c.river and c.water_level > 0
    assert c.dense_centre and c.road_density == 10.0 and c.settlement_radius_m == 400.0


def test_sizes_in_metres_and_areas():
    assert parse_suggestion("flat village, 800 m by 600 m").size_m == (800.0, 600.0)
    assert parse_suggestion("a city of 2 km2").size_m == pytest.approx((1414.2, 1414.2), abs=0.1)


def test_words_change_the_controls_in_the_expected_direction():
    flat, mountains = parse_suggestion("flat plains"), parse_suggestion("mountainous wilderness")
    assert mountains.relief_m > flat.relief_m and mountains.road_density == 0.0
    assert parse_suggestion("rugged hills").roughness > parse_suggestion("smooth hills").roughness
    assert parse_suggestion("dense city").road_density > parse_suggestion("sparse city").road_density
    assert parse_suggestion("hilly, relief 300 m").relief_m == 300.0


@pytest.mark.parametrize("prompt, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("purple elephants dancing", "could not understand"),
    ("a flat mountainous town", "contradictory"),
    ("a hilly town, 50 km x 50 km", "world size"),
])
def test_bad_input_gets_a_clear_error(prompt, message):
    with pytest.raises(SuggestionError, match=message):
        parse_suggestion(prompt)


def test_steepness_words_set_the_steepness_control():
    gentle, steep = parse_suggestion("gentle hills"), parse_suggestion("steep hills")
    assert gentle.relief_m == steep.relief_m == 120.0
    assert steep.steepness > parse_suggestion("hills").steepness > gentle.steepness
    assert parse_suggestion("rugged mountains").steepness > parse_suggestion("smooth mountains").steepness
    plains = parse_suggestion("rolling plains")  # one phrase, not "rolling" + "plains"
    assert plains.relief_m == 20.0 and plains.relief_m < parse_suggestion("rolling").relief_m
    assert plains.steepness < parse_suggestion("a town").steepness  # the default when nothing is said
    with pytest.raises(SuggestionError, match="steepness"):
        parse_suggestion("gentle and steep hills")
