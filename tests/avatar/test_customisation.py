"""Customisation requests (AV-c3): validation names the field and its range, presets and sliders make the
parameters of a new version, and the slider ranges are the ranges the decision policy clips to."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from gaiverse.avatar.colour import lab_to_srgb
from gaiverse.avatar.customisation import (
    PRESETS, SLIDERS, CustomisationError, apply_customisation, params_from_json, parse_request, presets_json,
)
from gaiverse.avatar.decision import AvatarParams, apply_action

CAPTURED = AvatarParams(style="realistic", height_m=1.74, pitch_semitones=2.0, expressiveness=0.4,
                        reasons=["measured"])


@pytest.mark.clause("AV-c3")
@pytest.mark.parametrize(("body", "words"), [
    ({"params": {"height_m": 3.0}}, "`params.height_m` must be a number in 1.2..2.3 m, got 3.0"),
    ({"params": {"pitch_semitones": -20}}, "-12..18 semitones"),
    ({"params": {"build": "broad"}}, "`params.build` must be a number in 0..1"),
    ({"params": {"style": "gothic"}}, "`params.style` must be one of realistic, stylized, cartoon, anime"),
    ({"params": {"hair_colour": "blue"}}, "`params.hair_colour` must be an sRGB hex colour"),
    ({"params": {"nose": 2}}, "unknown field `params.nose`: allowed are skin_colour"),
    ({"colour": "#ffffff"}, "unknown field `colour`: allowed are preset, params, base_version, message"),
    ({"preset": "zombie"}, "unknown `preset` 'zombie': choose one of as-captured"),
    ({}, "nothing to change"),
    ({"preset": "taller", "base_version": 0}, "`base_version`"),
    ([1, 2], "`body`"),
])
def test_invalid_requests_name_the_field_and_what_it_accepts(body, words):
    with pytest.raises(CustomisationError) as err:
        parse_request(body)
    assert words in str(err.value)


@pytest.mark.clause("AV-c3")
def test_sliders_set_values_and_colours_and_record_what_changed():
    request = parse_request({"params": {"height_m": 1.9, "hair_colour": "#2050e0", "style": "anime"},
                             "message": "blue hair"})
    made = apply_customisation(request, CAPTURED, CAPTURED)
    assert made.params.height_m == 1.9 and made.params.style == "anime"
    assert made.changed == ["hair_colour", "style", "height_m"] and made.message == "blue hair"
    rgb = np.round(lab_to_srgb(np.array(made.params.hair_lab)) * 255)
    assert np.abs(rgb - [0x20, 0x50, 0xE0]).max() <= 1  # the hex round-trips through CIELAB
    assert made.params.pitch_semitones == CAPTURED.pitch_semitones  # untouched fields kept
    assert made.params.reasons[-1] == "customised by you: hair_colour, style, height_m"


@pytest.mark.clause("AV-c3")
def test_presets_are_relative_clipped_and_as_captured_restores_version_1():
    base = AvatarParams(**{**asdict(CAPTURED), "height_m": 2.25, "pitch_semitones": -11.0, "style": "cartoon"})
    taller = apply_customisation(parse_request({"preset": "taller"}), base, CAPTURED).params
    assert taller.height_m == SLIDERS["height_m"].maximum  # 2.25 x 1.08 clipped into the slider's range
    deeper = apply_customisation(parse_request({"preset": "deeper-voice"}), base, CAPTURED).params
    assert deeper.pitch_semitones == SLIDERS["pitch_semitones"].minimum
    back = apply_customisation(parse_request({"preset": "as-captured"}), base, CAPTURED).params
    assert (back.style, back.height_m, back.pitch_semitones) == ("realistic", 1.74, 2.0)
    both = apply_customisation(parse_request({"preset": "cartoon", "params": {"expressiveness": 0.1}}), CAPTURED,
                               CAPTURED).params
    assert both.style == "cartoon" and both.expressiveness == 0.1  # sliders win over the preset


@pytest.mark.clause("AV-c3")
def test_every_preset_applies_and_stays_within_the_slider_ranges():
    for name in PRESETS:
        params = apply_customisation(parse_request({"preset": name}), CAPTURED, CAPTURED).params
        for field, slider in SLIDERS.items():
            assert slider.minimum <= getattr(params, field) <= slider.maximum, (name, field)
    shown = presets_json()
    assert [p["name"] for p in shown["presets"]] == list(PRESETS)
    assert {s["name"] for s in shown["sliders"]} == set(SLIDERS)


def test_slider_ranges_are_the_ranges_the_policy_clips_to():
    """An extreme policy action lands on the slider bounds: the two never disagree on what is plausible."""
    base = AvatarParams(height_m=1.7, build=0.5, pitch_semitones=0.0, pitch_range_scale=1.0, speaking_rate=1.0,
                        expressiveness=0.5)
    for sign in (-1, 1):
        p = apply_action(base, np.full(15, 1e3 * sign), 0, 0)
        bound = "maximum" if sign > 0 else "minimum"
        for field, slider in SLIDERS.items():
            assert getattr(p, field) == pytest.approx(getattr(slider, bound)), (field, bound)


def test_params_round_trip_through_json():
    params = apply_customisation(parse_request({"preset": "lively"}), CAPTURED, CAPTURED).params
    assert params_from_json(params.to_json()) == params
