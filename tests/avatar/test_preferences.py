"""The avatar wish parser: colours bound to parts, directions, styles, negation."""

import numpy as np
import pytest

from gaiverse.avatar.colour import delta_e, lab_to_srgb, srgb_to_lab
from gaiverse.avatar.preferences import COLOURS, PREFERENCE_DIM, parse_preferences


def test_issue_examples():
    prefs = parse_preferences("Blue hair, a deeper voice, cartoon style, and make me taller")
    assert prefs.colours == {"hair": COLOURS["blue"]}
    assert (prefs.pitch, prefs.style, prefs.height) == (-1, "cartoon", 1)


@pytest.mark.parametrize("text, part, colour", [
    ("green-eyed please", "eyes", "green"), ("hair that is silver", "hair", "silver"),
    ("I'd love purple coloured hair", "hair", "purple"), ("with blue eyes", "eyes", "blue")])
def test_colour_is_bound_to_the_part_it_describes(text, part, colour):
    assert parse_preferences(text).colours == {part: COLOURS[colour]}


def test_negation_and_voice_words():
    prefs = parse_preferences("not anime, a higher voice, speak slower, short hair")
    assert prefs.avoid_styles == ("anime",) and prefs.style is None
    assert (prefs.pitch, prefs.rate, prefs.hair_style, prefs.height) == (1, -1, "short", 0)
    assert parse_preferences("my voice should not be deeper").pitch == 1


def test_nothing_asked_gives_a_neutral_vector():
    prefs = parse_preferences("hello there, nice weather today")
    vec = prefs.vector()
    assert vec.shape == (PREFERENCE_DIM,) and not vec.any() and prefs.matched == []


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="`text` must be a string"):
        parse_preferences(None)  # type: ignore[arg-type]


def test_lab_round_trip_and_white():
    rgb = np.random.default_rng(0).random((50, 3))
    assert np.allclose(lab_to_srgb(srgb_to_lab(rgb)), rgb, atol=1e-6)
    assert np.allclose(srgb_to_lab(np.ones(3)), [100, 0, 0], atol=1e-3)
    assert delta_e(srgb_to_lab(np.array([1, 0, 0.])), srgb_to_lab(np.array([0, 0, 1.]))) > 100
