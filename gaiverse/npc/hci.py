"""Human-computer interaction signals from the web terminal -> validated ``HciSignal`` -> intent.

Implements the mouse/controller half of NPC-c1. The browser sends raw signals (a click on the
NPC or on an object, a hover, a Gamepad API button or stick, a key); this module checks them,
turns analogue sticks into discrete directions, drops repeats that would flood the dialogue
(hover jitter, a held button polled 60 times a second), and hands the rest to
``Understanding.from_signal``, which owns the signal -> intent table (``SignalMap``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from gaiverse.npc.understanding import GAMEPAD_NAMES, HciSignal

log = logging.getLogger(__name__)

KINDS = ("click", "hover", "gamepad", "key", "drop", "stick")
TARGET_KINDS = ("npc", "object", "item", "none")
STICK_INTENT = {"up": "follow", "down": "leave"}
"""Left stick pushed forward walks with the NPC (follow); pulled back walks away (leave)."""

Direction = Literal["up", "down", "left", "right"]


class SignalError(ValueError):
    """A signal the client sent is malformed; the message names the field."""


@dataclass
class HciConfig:
    """Thresholds that separate deliberate signals from noise."""

    stick_deadzone: float = 0.5
    """Stick deflection (0..1) below which a stick is at rest."""
    repeat_s: float = 0.6
    """The same signal within this many seconds is a repeat (held button, hover jitter) and ignored."""
    max_target_chars: int = 120
    """Longest object/item name accepted."""


def stick_direction(x: float, y: float, deadzone: float = 0.5) -> Direction | None:
    """Gamepad API axes (x right +, y down +) -> the dominant direction, or None inside the dead zone."""
    if math.hypot(x, y) < deadzone:
        return None
    if abs(y) >= abs(x):
        return "down" if y > 0 else "up"
    return "right" if x > 0 else "left"


def parse_signal(payload: dict[str, Any], config: HciConfig | None = None) -> HciSignal | None:
    """A client's signal message -> ``HciSignal``; None for a stick at rest. Raises ``SignalError``.

    ``payload``: {"kind": click|hover|gamepad|key|drop|stick, "target_kind"?: npc|object|item|none,
    "target"?: str, "button"?: int|str, "axes"?: [x, y]}. A stick becomes a gamepad signal whose
    button is the direction ("up", ...), which ``SignalMap`` resolves like any other button.
    """
    config = config or HciConfig()
    kind = payload.get("kind")
    if kind not in KINDS:
        raise SignalError(f"`kind` must be one of {', '.join(KINDS)}, got {kind!r}")
    target_kind = payload.get("target_kind") or "none"
    if target_kind not in TARGET_KINDS:
        raise SignalError(f"`target_kind` must be one of {', '.join(TARGET_KINDS)}, got {target_kind!r}")
    target = payload.get("target")
    if target is not None and (not isinstance(target, str) or not target.strip()
                               or len(target) > config.max_target_chars):
        raise SignalError(f"`target` must be a name of 1-{config.max_target_chars} characters, got {target!r}")
    button = payload.get("button")
    if kind == "stick":
        axes = payload.get("axes")
        if (not isinstance(axes, (list, tuple)) or len(axes) != 2
                or not all(isinstance(a, (int, float)) and -1.0 <= a <= 1.0 for a in axes)):
            raise SignalError(f"`axes` must be [x, y] with values in -1..1, got {axes!r}")
        direction = stick_direction(float(axes[0]), float(axes[1]), config.stick_deadzone)
        if direction is None:
            return None
        return HciSignal("gamepad", target_kind, target, direction)  # type: ignore[arg-type]
    if kind == "gamepad":
        if isinstance(button, bool) or not (isinstance(button, int) and 0 <= button <= 16
                                            or isinstance(button, str) and button.lower() in
                                            set(GAMEPAD_NAMES.values()) | set(STICK_INTENT)):
            raise SignalError(f"`button` must be a standard-mapping index 0..16 or a button name, got {button!r}")
    if kind == "key" and not (isinstance(button, str) and 0 < len(button) <= 20):
        raise SignalError(f"`button` must be the KeyboardEvent.key of the pressed key, got {button!r}")
    if kind in ("click", "hover") and target_kind == "none":
        raise SignalError(f"a {kind} needs `target_kind` npc, object or item")
    if kind in ("click", "hover") and target_kind in ("object", "item") and not target:
        raise SignalError(f"a {kind} on an {target_kind} needs its name as `target`")
    if kind == "drop" and not target:
        raise SignalError("a drop needs the dropped item's name as `target`")
    return HciSignal(kind, target_kind, target.strip() if target else None, button)  # type: ignore[arg-type]


@dataclass
class SignalFilter:
    """Drops repeats of the same polled signal (hover, gamepad button or stick) within ``repeat_s``.

    Clicks, drops and key presses are deliberate (the page already ignores auto-repeated keys),
    so they always pass. One filter per connection.
    """

    config: HciConfig = field(default_factory=HciConfig)
    _last: dict[tuple, float] = field(default_factory=dict)

    def accept(self, signal: HciSignal, now: float | None = None) -> bool:
        """True for a new signal, False for a repeat of one seen within ``repeat_s``."""
        if signal.kind in ("click", "drop", "key"):
            return True
        now = time.monotonic() if now is None else now
        key = (signal.kind, signal.target_kind, signal.target, signal.button)
        last = self._last.get(key)
        self._last[key] = now
        return last is None or now - last > self.config.repeat_s
