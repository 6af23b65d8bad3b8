"""The parameters of a generated humanoid: proportions, build, colours and style, with plausibility limits.

Proportions are fractions of standing height, the way anthropometric tables give them
(shoulder breadth ~0.23-0.26 H, hip breadth ~0.19-0.21 H, arm length ~0.44 H, hip-joint height
~0.50-0.53 H). ``check`` refuses values outside what a plausible person of any SRD species has,
so a generator bug or a hostile hint cannot produce a stick figure or a blob.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

RGB = tuple[float, float, float]
HairStyle = Literal["short", "long", "bald", "bun", "curly"]
Sleeves = Literal["long", "short"]
Ears = Literal["round", "pointed"]

LIMITS: dict[str, tuple[float, float]] = {
    "height_m": (0.6, 2.6),
    "shoulder_width": (0.19, 0.31),
    "hip_width": (0.16, 0.27),
    "arm_length": (0.38, 0.49),
    "leg_length": (0.40, 0.57),
    "build": (0.0, 1.0),
    "head_scale": (0.85, 1.35),
    "arm_droop_deg": (50.0, 80.0),
}
"""Closed ranges of the numeric parameters (fractions of height unless named otherwise)."""


@dataclass
class BodyParams:
    """Everything the body, face and skeleton builders need; defaults are an average adult human."""

    height_m: float = 1.75
    """Standing height to the top of the head, metres."""
    shoulder_width: float = 0.245
    """Shoulder (biacromial) breadth / height."""
    hip_width: float = 0.20
    """Hip breadth / height."""
    arm_length: float = 0.44
    """Shoulder joint to fingertip / height."""
    leg_length: float = 0.50
    """Hip-joint height / height."""
    build: float = 0.5
    """Girth: 0 slim, 0.5 average, 1 heavy."""
    head_scale: float = 1.0
    """Head size relative to an adult human's (small folk have larger heads for their height)."""
    arm_droop_deg: float = 66.0
    """Rest pose: arms hang this many degrees below horizontal (an A-pose)."""
    skin_rgb: RGB = (0.80, 0.62, 0.50)
    hair_rgb: RGB = (0.25, 0.16, 0.10)
    eye_rgb: RGB = (0.30, 0.22, 0.12)
    top_rgb: RGB = (0.35, 0.42, 0.55)
    bottom_rgb: RGB = (0.28, 0.25, 0.22)
    shoes_rgb: RGB = (0.18, 0.12, 0.08)
    hair_style: HairStyle = "short"
    beard: bool = False
    sleeves: Sleeves = "long"
    ears: Ears = "round"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BodyParams":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown body parameters {sorted(unknown)}; known: {sorted(known)}")
        values = {k: tuple(v) if k.endswith("_rgb") else v for k, v in data.items()}
        return check(cls(**values))


def check(params: BodyParams) -> BodyParams:
    """``params`` when every value is plausible; ValueError naming the first that is not."""
    for name, (low, high) in LIMITS.items():
        value = getattr(params, name)
        if not isinstance(value, (int, float)) or not low <= float(value) <= high:
            raise ValueError(f"`{name}` must be within {low}..{high}, got {value!r}")
    for name in ("skin_rgb", "hair_rgb", "eye_rgb", "top_rgb", "bottom_rgb", "shoes_rgb"):
        value = getattr(params, name)
        if len(value) != 3 or not all(0.0 <= float(c) <= 1.0 for c in value):
            raise ValueError(f"`{name}` must be three values within 0..1, got {value!r}")
    for name, allowed in (("hair_style", HairStyle), ("sleeves", Sleeves), ("ears", Ears)):
        if getattr(params, name) not in allowed.__args__:  # type: ignore[attr-defined]
            raise ValueError(f"`{name}` must be one of {allowed.__args__}, got {getattr(params, name)!r}")  # type: ignore[attr-defined]
    return params


@dataclass
class Dimensions:
    """Absolute sizes in metres derived from ``BodyParams`` (what the builders actually use)."""

    params: BodyParams = field(default_factory=BodyParams)

    @property
    def height(self) -> float:
        return self.params.height_m

    @property
    def head_height(self) -> float:
        """Chin to crown."""
        return 0.128 * self.height * self.params.head_scale

    @property
    def girth(self) -> float:
        """Multiplier of limb and torso radii: 0.8 (slim) .. 1.3 (heavy)."""
        return 0.8 + 0.5 * self.params.build
