"""Customising an avatar (AV-c3): slider values and named presets -> new ``AvatarParams``.

The terminal's sliders and preset buttons send a ``CustomiseRequest``; ``apply_customisation`` turns it
into the parameters of a new version, starting from the version the user was looking at
(``base_version``). Each slider has one range, declared once in ``SLIDERS`` (the range the decision
policy's ``apply_action`` also clips to), so the API, the page and the checks agree; a value outside it
is refused, never clipped (only presets, which are relative changes, are clipped into the ranges).
Presets are data (``PRESETS``): a description and what they set, add or multiply.

``customise`` runs synchronously in the API request, not as a Prefect run, because
- it needs no decoding, face mesh, ASR or decision: only the engines, from the sealed creation source,
  and the voice only when a voice setting changed (else the base version's sample is reused). Measured
  on 2 cores shared with other jobs (load ~12): 3-4 s without a voice change (portrait 0.9-1.8 s,
  clips + .glb/VRM 0.6-0.9 s, turntable PNG 0.4-1.2 s), ~10-40 s with one (Piper + the WORLD timbre
  fit); a Prefect run would add its scheduling and runner polling, and the user is waiting for it;
- the slider values (colours, voice) stay between the API and the vault: a run's parameters live in
  Prefect's database, which erasure does not reach (docs/PRIVACY.md);
- the one slow product, the turntable MP4 (~4 s of rendering), is left out: the page plays the avatar
  live, and ``GET /avatars/{id}/turntable.mp4`` of a customised version renders it on request.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from gaiverse.avatar.colour import srgb_to_lab
from gaiverse.avatar.decision import AvatarParams
from gaiverse.avatar.preferences import HAIR_STYLES, STYLES

HEX_COLOUR = r"^#[0-9a-fA-F]{6}$"
COLOUR_FIELDS = {"skin_colour": "skin_lab", "hair_colour": "hair_lab", "eye_colour": "eye_lab"}
"""Colour slider -> the AvatarParams field it sets (CIELAB, converted from the sRGB hex the page sends)."""


@dataclass(frozen=True)
class Slider:
    """One numeric slider: its range, unit and step (the page builds its <input type=range> from this)."""

    minimum: float
    maximum: float
    step: float
    unit: str
    label: str

    def range_text(self) -> str:
        return f"{self.minimum:g}..{self.maximum:g}{' ' + self.unit if self.unit else ''}"


SLIDERS: dict[str, Slider] = {
    "height_m": Slider(1.2, 2.3, 0.01, "m", "height"),
    "build": Slider(0.0, 1.0, 0.05, "", "build (slim .. broad)"),
    "pitch_semitones": Slider(-12.0, 18.0, 0.5, "semitones", "voice pitch"),
    "pitch_range_scale": Slider(0.3, 3.0, 0.05, "x", "pitch range"),
    "speaking_rate": Slider(0.5, 2.0, 0.05, "x", "speaking rate"),
    "expressiveness": Slider(0.0, 1.0, 0.05, "", "expressiveness"),
}
"""Numeric sliders, named as the AvatarParams fields they set (the ranges ``decision.apply_action`` clips to)."""
CHOICES: dict[str, tuple[str, ...]] = {"style": STYLES, "hair_style": HAIR_STYLES}


class CustomisationError(ValueError):
    """A customisation names an unknown field or preset, or a value outside its range (answered as 422)."""


def _params_model() -> type[BaseModel]:
    """The request model of the sliders, built from ``SLIDERS``/``CHOICES`` (one place for the ranges)."""
    fields: dict[str, Any] = {name: (str | None, Field(default=None, pattern=HEX_COLOUR, description="sRGB hex"))
                              for name in COLOUR_FIELDS}
    for name, options in CHOICES.items():
        fields[name] = (Literal[options] | None, None)  # type: ignore[valid-type]
    for name, s in SLIDERS.items():
        fields[name] = (float | None, Field(default=None, ge=s.minimum, le=s.maximum,
                                            description=f"{s.label}, {s.range_text()}"))
    return create_model("ParamsIn", __config__=ConfigDict(extra="forbid"), **fields)


ParamsIn = _params_model()
"""Slider values; every field is optional, unknown fields are refused."""


class CustomiseRequest(BaseModel):
    """``POST /avatars/{id}/customise``: a preset and/or slider values, applied to ``base_version``."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(default=None, max_length=40, description="one of GET /avatars/presets")
    params: ParamsIn = Field(default_factory=ParamsIn)  # type: ignore[valid-type]
    base_version: int | None = Field(default=None, ge=1, description="the version to change (default: latest)")
    message: str | None = Field(default=None, max_length=300)


@dataclass(frozen=True)
class Preset:
    """A named change: absolute values (``set``), additions (``add``) and factors (``scale``)."""

    label: str
    description: str
    set: dict[str, Any] = field(default_factory=dict)
    add: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    captured: bool = False
    """Start from the parameters first decided from the capture (version 1), not the base version."""


PRESETS: dict[str, Preset] = {
    "as-captured": Preset("as captured", "back to what was decided from your capture", captured=True),
    "realistic": Preset("realistic", "realistic style", set={"style": "realistic"}),
    "cartoon": Preset("cartoon", "cartoon style, a little livelier", set={"style": "cartoon"},
                      add={"expressiveness": 0.15}),
    "anime": Preset("anime", "anime style", set={"style": "anime"}),
    "deeper-voice": Preset("deeper voice", "three semitones lower", add={"pitch_semitones": -3.0}),
    "higher-voice": Preset("higher voice", "three semitones higher", add={"pitch_semitones": 3.0}),
    "taller": Preset("taller", "8 % taller", scale={"height_m": 1.08}),
    "shorter": Preset("shorter", "7 % shorter", scale={"height_m": 0.93}),
    "calm": Preset("calm", "calmer and a little slower", set={"expressiveness": 0.2},
                   scale={"speaking_rate": 0.9, "pitch_range_scale": 0.8}),
    "lively": Preset("lively", "livelier and a little faster", set={"expressiveness": 0.85},
                     scale={"speaking_rate": 1.1, "pitch_range_scale": 1.2}),
}
"""Named presets shown as buttons in the terminal (GET /avatars/presets)."""


@dataclass(frozen=True)
class Customised:
    """The parameters of the new version and what changed (for its message)."""

    params: AvatarParams
    changed: list[str]
    message: str


def parse_request(body: Any) -> CustomiseRequest:
    """The validated request, or ``CustomisationError`` naming the field and its allowed values."""
    try:
        request = CustomiseRequest.model_validate(body)
    except ValidationError as err:
        raise CustomisationError(explain(err)) from None
    if request.preset is not None and request.preset not in PRESETS:
        raise CustomisationError(f"unknown `preset` {request.preset!r}: choose one of {', '.join(PRESETS)}")
    if request.preset is None and not request.params.model_dump(exclude_none=True):
        raise CustomisationError("nothing to change: send a `preset` and/or slider values in `params` "
                                 f"({', '.join(ParamsIn.model_fields)})")
    return request


def explain(err: ValidationError) -> str:
    """One line naming the first invalid field and what it accepts."""
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    name = loc[-1] if loc else "body"
    given = first.get("input")
    if first.get("type") == "extra_forbidden":
        allowed = ParamsIn.model_fields if loc[:1] == ["params"] else CustomiseRequest.model_fields
        return f"unknown field `{'.'.join(loc)}`: allowed are {', '.join(allowed)}"
    if name in SLIDERS:
        return f"`params.{name}` must be a number in {SLIDERS[name].range_text()}, got {given!r}"
    if name in CHOICES:
        return f"`params.{name}` must be one of {', '.join(CHOICES[name])}, got {given!r}"
    if name in COLOUR_FIELDS:
        return f"`params.{name}` must be an sRGB hex colour like #a0522d, got {given!r}"
    return f"`{'.'.join(loc) or 'body'}`: {first.get('msg', 'invalid')}"


def params_from_json(data: dict[str, Any]) -> AvatarParams:
    """AvatarParams from its ``to_json()`` (the derived ``colours`` are dropped)."""
    known = {k: v for k, v in data.items() if k in AvatarParams.__dataclass_fields__}
    for key in ("skin_lab", "hair_lab", "eye_lab"):
        if key in known:
            known[key] = tuple(float(v) for v in known[key])
    return AvatarParams(**known)


def _hex_to_lab(value: str) -> tuple[float, float, float]:
    rgb = np.array([int(value[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return tuple(round(float(v), 2) for v in srgb_to_lab(rgb))


def _clip(name: str, value: float) -> float:
    slider = SLIDERS[name]
    return float(np.clip(value, slider.minimum, slider.maximum))


def apply_customisation(request: CustomiseRequest, base: AvatarParams, captured: AvatarParams) -> Customised:
    """New parameters: the preset (from ``captured`` when it says so, else from ``base``), then the sliders."""
    preset = PRESETS[request.preset] if request.preset else None
    start = captured if preset is not None and preset.captured else base
    values = {**asdict(start), "reasons": list(start.reasons)}
    changed: list[str] = []
    if preset is not None:
        for name, value in preset.set.items():
            values[name] = value
        for name, delta in preset.add.items():
            values[name] = _clip(name, values[name] + delta)
        for name, factor in preset.scale.items():
            values[name] = _clip(name, values[name] * factor)
        changed.append(f"preset {request.preset}")
    for name, value in request.params.model_dump(exclude_none=True).items():
        if name in COLOUR_FIELDS:
            values[COLOUR_FIELDS[name]] = _hex_to_lab(value)
        else:
            values[name] = value
        changed.append(name)
    values["reasons"] = [*start.reasons, f"customised by you: {', '.join(changed)}"]
    params = AvatarParams(**values)
    return Customised(params=params, changed=changed, message=request.message or "customised: " + ", ".join(changed))


def presets_json() -> dict[str, Any]:
    """Presets and sliders for the terminal (GET /avatars/presets)."""
    return {"presets": [{"name": name, "label": p.label, "description": p.description}
                        for name, p in PRESETS.items()],
            "sliders": [{"name": name, **asdict(s)} for name, s in SLIDERS.items()],
            "choices": {name: list(options) for name, options in CHOICES.items()},
            "colours": list(COLOUR_FIELDS)}


def params_summary(params: dict[str, Any]) -> dict[str, Any]:
    """The figures a version list shows (style, hair, height, build, voice, colours)."""
    keys = ("style", "hair_style", "height_m", "build", "pitch_semitones", "pitch_range_scale", "speaking_rate",
            "expressiveness")
    out = {k: round(v, 3) if isinstance(v, float) else v for k, v in params.items() if k in keys}
    out["colours"] = params.get("colours")
    return out


class NotCustomisable(RuntimeError):
    """The avatar was made without a creation source (before the engines ran): answered as 409."""


def customise(repo, capture_id: str, request: CustomiseRequest, text: str | None = None):
    """Rebuild the avatar from its sealed creation source with the customised parameters and publish it.

    ``repo`` is the owner's ``AvatarVersions``. Returns (the new Version, the Creation). The new version's
    parent is the base version; it reuses the base's source and preview objects (and its voice sample
    when no voice setting changed) and seals new ones for what the engines made.
    """
    from gaiverse.avatar.creation import GREETING, CreationSource, create, read_voice, same_voice

    versions = repo.versions(capture_id)
    base = repo.version(capture_id, request.base_version)
    manifest = repo.manifest(base)
    if "source" not in manifest["assets"]:
        raise NotCustomisable(f"avatar {capture_id!r} v{base.version} was made before avatars kept their creation "
                              "source: make a new capture to customise it")
    result = repo.result(manifest)
    captured = repo.result(repo.manifest(versions[0]))["params"]
    custom = apply_customisation(request, params_from_json(result["params"]), params_from_json(captured))
    base_params = params_from_json(result["params"])
    keep_voice = text is None and same_voice(custom.params, base_params) and "voice" in manifest["assets"]
    made = create(CreationSource.from_bytes(repo.open(manifest, "source")), custom.params, text or GREETING,
                  mp4=False, extras={"avatar_id": capture_id, "base_version": base.version},
                  voice=read_voice(repo.open(manifest, "voice")) if keep_voice else None)
    record = {**result, "params": custom.params.to_json(), "flow_run_id": None,
              "customisation": {"base_version": base.version, "preset": request.preset, "changed": custom.changed,
                                "values": request.params.model_dump(exclude_none=True)},
              "engines": {"stats": made.stats, "timings_ms": made.timings_ms}}
    objects = {"avatar": json.dumps(record, indent=1, sort_keys=True, default=str).encode(), **made.objects()}
    kept = ("source", "preview", "voice") if keep_voice else ("source", "preview")
    reuse = {name: manifest["assets"][name] for name in kept if name in manifest["assets"]}
    objects = {name: data for name, data in objects.items() if name not in reuse}
    version = repo.publish(capture_id, objects, reuse=reuse, message=custom.message, parent_version=base.version,
                           meta={k: v for k, v in manifest.items() if k == "capture_manifest"})
    return version, made
