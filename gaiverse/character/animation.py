"""Named animation clips for the humanoid rig: the gestures the NPC dialogue emits, plus idle and walk.

Clip names are ``gaiverse.npc.expression.GESTURES`` + ``walk``, so a dialogue ``expression``
event's gesture plays by name. Poses are authored as directions of the limbs in the torso's
frame (``aim``), turned into local joint rotations by shortest-arc quaternions down each chain;
spine and head take small Euler rotations. One-shot gestures start and end in the rest pose,
``idle`` and ``walk`` loop. ``idle`` also blinks through the head's morph weights.
Implements the gesture half of NPC-b1 (animatable appearance) used by NPC-d1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gaiverse.character.skeleton import Skeleton, arm_direction
from gaiverse.character.transforms import IDENTITY, between, euler, inverse, multiply, rotate, slerp
from gaiverse.npc.expression import GESTURES

CLIPS = tuple(GESTURES) + ("walk",)
"""Every clip the rig carries."""
LOOPING = ("idle", "walk")

Pose = dict[str, np.ndarray]
"""Joint name -> local rotation quaternion (x, y, z, w); missing joints are at rest."""


@dataclass
class Clip:
    name: str
    times: list[float]
    poses: list[Pose]
    loop: bool = False
    hips_offsets: list[np.ndarray] | None = None
    """Optional hips translation offset (metres) per key, for bobbing."""
    morph_keys: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    """(time, {morph target: weight}) keys of the head's morph weights."""

    @property
    def duration(self) -> float:
        return self.times[-1]

    def joints(self) -> list[str]:
        return sorted({j for pose in self.poses for j in pose})


class Poser:
    """Turns limb directions (in the torso's frame) into local joint rotations for one skeleton."""

    def __init__(self, skeleton: Skeleton, droop_deg: float):
        self.skeleton = skeleton
        self.droop = droop_deg

    def arm(self, side: str, upper, fore, hand=None, shoulder: np.ndarray = IDENTITY) -> Pose:
        """Upper arm along ``upper``, forearm along ``fore`` (torso frame; +Z forward, +X the left)."""
        rest = arm_direction(side, self.droop)
        rest_in_shoulder = rest
        u_world = between(rest_in_shoulder, upper)
        f_world = multiply(between(rotate(u_world, rest), fore), u_world)
        h_world = f_world if hand is None else multiply(between(rotate(f_world, rest), hand), f_world)
        return {f"{side}Shoulder": shoulder,
                f"{side}UpperArm": multiply(inverse(shoulder), u_world),
                f"{side}LowerArm": multiply(inverse(u_world), f_world),
                f"{side}Hand": multiply(inverse(f_world), h_world)}

    def rest_arm(self, side: str) -> list[np.ndarray]:
        return [arm_direction(side, self.droop)] * 2


def _d(x: float, y: float, z: float) -> np.ndarray:
    v = np.array([x, y, z], dtype=np.float64)
    return v / np.linalg.norm(v)


def _mirror(v: np.ndarray) -> np.ndarray:
    return v * [-1.0, 1.0, 1.0]


def build_clips(skeleton: Skeleton, droop_deg: float) -> list[Clip]:
    """Every clip of ``CLIPS`` for this skeleton."""
    P = Poser(skeleton, droop_deg)
    rest: Pose = {}
    clips: list[Clip] = []

    def gesture(name: str, keys: list[tuple[float, Pose]]) -> None:
        end = keys[-1][0] + 0.35
        clips.append(Clip(name, [0.0] + [t for t, _ in keys] + [end], [rest] + [p for _, p in keys] + [rest]))

    # idle: breathing, a slow look around, one blink
    idle_keys = []
    for t in np.linspace(0.0, 4.0, 9):
        phase = 2 * np.pi * t / 4.0
        idle_keys.append((float(t), {"chest": euler(x=1.5 * np.sin(2 * phase)), "head": euler(y=6 * np.sin(phase), x=2 * np.sin(2 * phase)),
                                     **P.arm("left", _d(0.42, -0.9, 0.04 * np.sin(phase)), _d(0.38, -0.92, 0.1)),
                                     **P.arm("right", _d(-0.42, -0.9, -0.04 * np.sin(phase)), _d(-0.38, -0.92, 0.1))}))
    idle_keys[-1] = (4.0, idle_keys[0][1])
    blink = [(0.0, {}), (1.5, {}), (1.58, {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}), (1.7, {}), (4.0, {})]
    clips.append(Clip("idle", [t for t, _ in idle_keys], [p for _, p in idle_keys], loop=True, morph_keys=blink))

    up = _d(-0.45, 0.85, 0.15)
    wave_a, wave_b = _d(-0.05, 1.0, 0.1), _d(-0.65, 0.72, 0.15)
    gesture("wave", [(0.35, P.arm("right", up, wave_a)), (0.6, P.arm("right", up, wave_b)),
                     (0.85, P.arm("right", up, wave_a)), (1.1, P.arm("right", up, wave_b)),
                     (1.35, P.arm("right", up, wave_a))])
    bye = [(0.4, {**P.arm("right", up, wave_a), "head": euler(z=-5)})]
    for i in range(4):
        bye.append((0.7 + 0.3 * i, {**P.arm("right", up, wave_b if i % 2 == 0 else wave_a), "head": euler(z=-5)}))
    gesture("wave_goodbye", bye)
    gesture("nod", [(0.25, {"head": euler(x=14), "neck": euler(x=4)}), (0.5, {"head": euler(x=-3)}),
                    (0.75, {"head": euler(x=12), "neck": euler(x=3)}), (1.0, {"head": euler(x=0)})])
    gesture("shake_head", [(0.25, {"head": euler(y=22)}), (0.55, {"head": euler(y=-22)}),
                           (0.85, {"head": euler(y=18)}), (1.1, {"head": euler(y=-12)})])
    bow = {"spine": euler(x=14), "chest": euler(x=18), "head": euler(x=10)}
    gesture("bow", [(0.6, bow), (1.2, bow)])
    shrug = {"head": euler(z=8),
             **P.arm("left", _d(0.55, -0.8, 0.25), _d(0.6, 0.1, 0.8), shoulder=euler(z=12)),
             **P.arm("right", _d(-0.55, -0.8, 0.25), _d(-0.6, 0.1, 0.8), shoulder=euler(z=-12))}
    gesture("shrug", [(0.4, shrug), (0.9, shrug)])
    point = {**P.arm("right", _d(-0.2, 0.05, 1.0), _d(-0.15, 0.05, 1.0)), "head": euler(y=-8), "chest": euler(y=-8)}
    gesture("point", [(0.4, point), (1.2, point)])
    beck_low = P.arm("right", _d(-0.3, -0.4, 0.85), _d(-0.15, 0.1, 1.0))
    beck_up = P.arm("right", _d(-0.3, -0.4, 0.85), _d(-0.1, 0.75, 0.65))
    gesture("beckon", [(0.35, beck_low), (0.6, beck_up), (0.85, beck_low), (1.1, beck_up), (1.35, beck_low)])
    receive = {**P.arm("left", _d(0.22, -0.65, 0.72), _d(0.12, -0.1, 1.0)),
               **P.arm("right", _d(-0.22, -0.65, 0.72), _d(-0.12, -0.1, 1.0)), "chest": euler(x=5)}
    gesture("receive", [(0.45, receive), (1.2, receive)])
    hand_over = {**P.arm("right", _d(-0.2, -0.3, 0.93), _d(-0.08, -0.05, 1.0)), "chest": euler(x=4, y=-6)}
    gesture("hand_over", [(0.45, hand_over), (1.2, hand_over)])
    think = {**P.arm("right", _d(-0.15, -0.8, 0.55), _d(0.25, 0.85, 0.45)),
             **P.arm("left", _d(0.2, -0.9, 0.35), _d(-0.85, 0.2, 0.45)), "head": euler(x=8, z=-6)}
    gesture("think", [(0.5, think), (1.8, think)])
    open_ = {**P.arm("left", _d(0.3, -0.8, 0.45), _d(0.5, 0.05, 0.86)),
             **P.arm("right", _d(-0.3, -0.8, 0.45), _d(-0.5, 0.05, 0.86))}
    closed = {**P.arm("left", _d(0.25, -0.8, 0.5), _d(0.12, 0.15, 1.0)),
              **P.arm("right", _d(-0.25, -0.8, 0.5), _d(-0.12, 0.15, 1.0)), "head": euler(y=5)}
    gesture("explain", [(0.4, open_), (0.8, closed), (1.2, open_), (1.6, closed), (2.0, open_)])
    cross = {**P.arm("left", _d(0.3, -0.85, 0.42), _d(-0.9, 0.15, 0.4)),
             **P.arm("right", _d(-0.3, -0.85, 0.45), _d(0.9, 0.22, 0.38)), "head": euler(x=-4)}
    gesture("cross_arms", [(0.5, cross), (1.8, cross)])
    clips.append(_walk(P))
    by_name = {c.name: c for c in clips}
    return [by_name[name] for name in CLIPS]


def _walk(P: Poser) -> Clip:
    """An in-place walk cycle of 1 s: legs swing +-24 deg, knees flex, arms counter-swing, hips bob."""
    times, poses, bob = [], [], []
    height = P.skeleton.tips["head"][1]
    for t in np.linspace(0.0, 1.0, 9):
        phase = 2 * np.pi * t
        swing = 24 * np.sin(phase)
        pose = {"leftUpperLeg": euler(x=-swing), "rightUpperLeg": euler(x=swing),
                "leftLowerLeg": euler(x=30 * max(0.0, np.sin(phase + np.pi / 2 + np.pi)) + 5),
                "rightLowerLeg": euler(x=30 * max(0.0, np.sin(phase + np.pi / 2)) + 5),
                "leftFoot": euler(x=8 * np.sin(phase)), "rightFoot": euler(x=-8 * np.sin(phase)),
                "spine": euler(y=4 * np.sin(phase)), "chest": euler(y=-6 * np.sin(phase), x=3)}
        arm = 0.35 * np.sin(phase)
        pose.update(P.arm("left", _d(0.4, -0.9, arm), _d(0.35, -0.85, arm + 0.25)))
        pose.update(P.arm("right", _d(-0.4, -0.9, -arm), _d(-0.35, -0.85, -arm + 0.25)))
        times.append(float(t))
        poses.append(pose)
        bob.append(np.array([0.0, -0.012 * height * abs(np.cos(phase)), 0.0]))
    poses[-1], bob[-1] = poses[0], bob[0]
    return Clip("walk", times, poses, loop=True, hips_offsets=bob)


def tracks(clip: Clip) -> dict[str, np.ndarray]:
    """Joint -> (K, 4) float32 quaternion keys with consecutive keys in the same hemisphere."""
    out = {}
    for joint in clip.joints():
        keys = [pose.get(joint, IDENTITY) for pose in clip.poses]
        fixed = [np.asarray(keys[0], dtype=np.float64)]
        for q in keys[1:]:
            q = np.asarray(q, dtype=np.float64)
            fixed.append(-q if np.dot(q, fixed[-1]) < 0 else q)
        arr = np.asarray(fixed)
        out[joint] = (arr / np.linalg.norm(arr, axis=1, keepdims=True)).astype(np.float32)
    return out


def sample(clip: Clip, t: float) -> Pose:
    """Local rotations of every animated joint at time ``t`` (linear interpolation, as in glTF)."""
    t = float(np.clip(t, 0.0, clip.duration))
    k = int(np.searchsorted(clip.times, t, side="right") - 1)
    k = min(max(k, 0), len(clip.times) - 2)
    f = (t - clip.times[k]) / max(clip.times[k + 1] - clip.times[k], 1e-9)
    return {j: slerp(q[k].astype(np.float64), q[k + 1].astype(np.float64), f) for j, q in tracks(clip).items()}


def world_transforms(skeleton: Skeleton, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """(J, 4) world rotations and (J, 3) world positions of the joints in ``pose``."""
    local_t = skeleton.local_translations
    rots = np.zeros((len(skeleton.names), 4))
    pos = np.zeros((len(skeleton.names), 3))
    for j, parent in enumerate(skeleton.parents):
        q = np.asarray(pose.get(skeleton.names[j], IDENTITY), dtype=np.float64)
        if parent < 0:
            rots[j], pos[j] = q, local_t[j]
        else:
            rots[j] = multiply(rots[parent], q)
            pos[j] = pos[parent] + rotate(rots[parent], local_t[j])
    return rots, pos


def skin(skeleton: Skeleton, pose: Pose, positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Linear-blend-skinned vertex positions (V, 3) for ``pose`` (dense weights (V, J))."""
    rots, pos = world_transforms(skeleton, pose)
    out = np.zeros_like(positions)
    total = weights.sum(axis=1, keepdims=True)
    for j in range(len(skeleton.names)):
        w = weights[:, j]
        if not w.any():
            continue
        moved = rotate(rots[j], positions - skeleton.positions[j]) + pos[j]
        out += w[:, None] * moved
    return out / np.maximum(total, 1e-12)
