"""The body mesh from proportions: torso, neck, arms, hands, legs and feet as smooth skinned tubes.

Each limb is one continuous tube along its bone chain; rings near a joint blend the two bones'
weights (smoothstep over ``BLEND`` of the bone length), so elbows and knees bend without
tearing. Clothing is a material split along rings (sleeves, trousers, shoes), so the surface
stays one piece. Head and face are built by ``face.py``.
"""

from __future__ import annotations

import numpy as np

from gaiverse.character.geometry import Part, merge, tube
from gaiverse.character.params import BodyParams, Dimensions
from gaiverse.character.skeleton import Skeleton, arm_direction

BLEND = 0.22
"""Share of a bone's length over which its weight hands over to the next bone at a joint."""
MATERIALS = ("skin", "top", "bottom", "shoes", "hair", "eye_white", "iris", "lips", "mouth")


def _smooth(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def chain_weights(skeleton: Skeleton, joints: list[str], s: np.ndarray) -> np.ndarray:
    """Weights (M, J) of rings at chain parameter ``s`` (0 .. len(joints)-1, one unit per bone)."""
    out = np.zeros((len(s), len(skeleton.names)))
    for k, value in enumerate(s):
        bone = min(int(np.floor(value)), len(joints) - 1)
        frac = value - bone
        j = skeleton.index(joints[bone])
        if bone + 1 < len(joints) and frac > 1 - BLEND:
            t = 0.5 * _smooth((frac - (1 - BLEND)) / BLEND)  # 0 -> 0.5 approaching the joint
            out[k, j] += 1 - t
            out[k, skeleton.index(joints[bone + 1])] += t
        elif bone > 0 and frac < BLEND:
            t = 0.5 + 0.5 * _smooth(frac / BLEND)  # 0.5 -> 1 leaving the joint
            out[k, j] += t
            out[k, skeleton.index(joints[bone - 1])] += 1 - t
        else:
            out[k, j] = 1.0
    return out


def torso(skeleton: Skeleton, dims: Dimensions) -> Part:
    """Torso from crotch to neck base; elliptical rings whose width/depth follow a body profile."""
    p, h, g = dims.params, dims.height, dims.girth
    crotch = skeleton["leftUpperLeg"][1] - 0.045 * h
    neck_base = skeleton["neck"][1]
    hip_w = 0.5 * p.hip_width * h * (0.85 + 0.15 * g)
    sh_w = 0.5 * p.shoulder_width * h
    # (height fraction from crotch to neck base, half width, half depth)
    profile = np.array([
        (0.00, 0.80 * hip_w, 0.060 * h * g),
        (0.10, 0.98 * hip_w, 0.068 * h * g),
        (0.22, 1.00 * hip_w, 0.070 * h * g),
        (0.40, 0.84 * hip_w * (0.9 + 0.2 * p.build), 0.064 * h * g),
        (0.62, 0.80 * sh_w * (0.92 + 0.1 * g), 0.070 * h * g),
        (0.80, 0.90 * sh_w, 0.064 * h * g),
        (0.92, 0.78 * sh_w, 0.052 * h * g),
        (1.00, 0.36 * sh_w, 0.040 * h * g),
    ])
    f = np.linspace(0.0, 1.0, 14)
    ys = crotch + f * (neck_base - crotch)
    half_w = np.interp(f, profile[:, 0], profile[:, 1])
    half_d = np.interp(f, profile[:, 0], profile[:, 2])
    centers = np.stack([np.zeros_like(ys), ys, np.interp(ys, [crotch, neck_base], [0.004 * h, -0.006 * h])], 1)
    hips_y, spine_y, chest_y = skeleton["hips"][1], skeleton["spine"][1], skeleton["chest"][1]
    s = np.interp(ys, [crotch, hips_y, spine_y, chest_y, neck_base], [0.0, 0.0, 1.0, 2.0, 2.6])
    weights = chain_weights(skeleton, ["hips", "spine", "chest"], np.minimum(s, 2.0))
    # the reference -Z makes u = +X (width) and v = +Z (depth) for a tube going up
    part = tube(centers, half_w, half_d, weights, "top", reference=(0.0, 0.0, -1.0), segments=16)
    _shoulder_blend(part, skeleton, chest_y, neck_base, sh_w)
    ring_y = part.positions[:, 1]
    part.materials = ["top" if ring_y[face].mean() > skeleton["hips"][1] - 0.01 * h else "bottom"
                      for face in part.faces]
    return part


def _shoulder_blend(part: Part, skeleton: Skeleton, chest_y: float, top_y: float, half_width: float) -> None:
    """Upper-torso vertices far from the centre line follow the shoulders (shrugs lift them)."""
    x, y = part.positions[:, 0], part.positions[:, 1]
    lateral = _smooth((np.abs(x) / half_width - 0.35) / 0.5)
    vertical = _smooth((y - chest_y) / max(top_y - chest_y, 1e-6))
    share = 0.8 * lateral * vertical
    for side, sign in (("left", 1.0), ("right", -1.0)):
        mask = (np.sign(x) == sign) & (share > 0)
        j = skeleton.index(f"{side}Shoulder")
        part.weights[mask] *= (1 - share[mask])[:, None]
        part.weights[mask, j] += share[mask]


def neck(skeleton: Skeleton, dims: Dimensions) -> Part:
    h = dims.height
    base, head = skeleton["neck"], skeleton["head"]
    top = head + np.array([0.0, 0.02 * h, -0.004 * h])
    centers = np.linspace(base - [0.0, 0.02 * h, 0.0], top, 5)
    r = 0.034 * h * (0.85 + 0.2 * dims.params.build)
    weights = chain_weights(skeleton, ["neck", "head"], np.linspace(0.3, 1.1, 5))
    return tube(centers, np.full(5, r), np.full(5, r * 0.95), weights, "skin", reference=(0.0, 0.0, -1.0),
                segments=12)


def arm(skeleton: Skeleton, dims: Dimensions, side: str) -> Part:
    """Upper arm, forearm and hand as one tube (hand flattened); sleeves set the materials."""
    p, h, g = dims.params, dims.height, dims.girth
    names = [f"{side}UpperArm", f"{side}LowerArm", f"{side}Hand"]
    start, elbow, wrist = (skeleton[n] for n in names)
    tip = skeleton.tips[f"{side}Hand"]
    direction = arm_direction(side, p.arm_droop_deg)
    shoulder_r = 0.040 * h * g
    # chain parameter s per ring: 0..1 upper arm, 1..2 forearm, 2..2.9 hand
    s = np.concatenate([np.linspace(-0.12, 0.9, 6), np.linspace(1.0, 1.9, 5), [1.97, 2.2, 2.5, 2.8]])
    seg = [(start, elbow), (elbow, wrist), (wrist, tip)]
    centers = []
    for value in s:
        bone = int(np.clip(np.floor(value), 0, 2))
        a, b = seg[bone]
        centers.append(a + (value - bone) * (b - a))
    centers = np.asarray(centers)
    width = np.interp(s, [-0.12, 0.0, 0.5, 1.0, 1.6, 2.0, 2.2, 2.6, 2.8],
                      [0.62, 0.86, 0.76, 0.62, 0.60, 0.40, 0.55, 0.56, 0.40]) * shoulder_r
    depth = np.interp(s, [-0.12, 0.0, 0.5, 1.0, 1.6, 2.0, 2.2, 2.6, 2.8],
                      [0.62, 0.86, 0.78, 0.62, 0.58, 0.40, 0.24, 0.22, 0.18]) * shoulder_r
    weights = chain_weights(skeleton, names, np.clip(s, 0.0, 2.99))
    # reference +Z: u lies in the arm's plane, v = +-Z; the hand is wide along Z (palm faces the thigh)
    part = tube(centers, depth, width, weights, "skin", reference=(0.0, 0.0, 1.0), segments=12)
    sleeve_end = 1.75 if p.sleeves == "long" else 0.55
    along = (part.positions - start) @ direction
    bone_len = np.linalg.norm(elbow - start)
    part.materials = ["top" if along[face].mean() < sleeve_end * bone_len else "skin" for face in part.faces]
    return part


def thumb(skeleton: Skeleton, dims: Dimensions, side: str) -> Part:
    h = dims.height
    wrist, tip = skeleton[f"{side}Hand"], skeleton.tips[f"{side}Hand"]
    start = wrist + 0.25 * (tip - wrist)
    end = start + 0.45 * (tip - wrist) + np.array([0.0, 0.0, 0.03 * h])
    centers = np.linspace(start, end, 3)
    w = np.zeros((3, len(skeleton.names)))
    w[:, skeleton.index(f"{side}Hand")] = 1.0
    r = 0.009 * h * dims.girth
    return tube(centers, np.full(3, r), np.full(3, r), w, "skin", reference=(1.0, 0.0, 0.0), segments=6)


def leg(skeleton: Skeleton, dims: Dimensions, side: str) -> Part:
    """Thigh and shin as one tube from inside the pelvis to the ankle."""
    h, g = dims.height, dims.girth
    names = [f"{side}UpperLeg", f"{side}LowerLeg", f"{side}Foot"]
    hip, knee, ankle = (skeleton[n] for n in names)
    s = np.concatenate([np.linspace(-0.1, 0.9, 6), np.linspace(1.0, 1.95, 6)])
    centers = np.asarray([hip + v * (knee - hip) if v < 1 else knee + (v - 1) * (ankle - knee) for v in s])
    thigh_r = 0.050 * h * g
    radius = np.interp(s, [-0.1, 0.0, 0.6, 1.0, 1.3, 1.95], [0.95, 1.0, 0.78, 0.62, 0.68, 0.44]) * thigh_r
    weights = chain_weights(skeleton, names, np.clip(s, 0.0, 2.0))
    return tube(centers, radius, radius * 1.02, weights, "bottom", reference=(0.0, 0.0, 1.0), segments=12)


def foot(skeleton: Skeleton, dims: Dimensions, side: str) -> Part:
    """A shoe from heel to toe tip along +Z, rings in the XY plane."""
    h = dims.height
    ankle, toes, tip = skeleton[f"{side}Foot"], skeleton[f"{side}Toes"], skeleton.tips[f"{side}Toes"]
    heel_z = ankle[2] - 0.045 * h
    z = np.linspace(heel_z, tip[2], 7)
    y = np.interp(z, [heel_z, ankle[2], toes[2], tip[2]], [0.03 * h, 0.036 * h, 0.022 * h, 0.016 * h])
    centers = np.stack([np.full_like(z, ankle[0]), y, z], 1)
    half_w = np.interp(z, [heel_z, toes[2], tip[2]], [0.024 * h, 0.032 * h, 0.022 * h]) * dims.girth ** 0.5
    half_h = np.interp(z, [heel_z, ankle[2], toes[2], tip[2]], [0.028 * h, 0.036 * h, 0.020 * h, 0.014 * h])
    s = np.interp(z, [heel_z, toes[2] - 0.02 * h, toes[2] + 0.02 * h, tip[2]], [0.0, 0.0, 1.0, 1.0])
    weights = np.zeros((len(z), len(skeleton.names)))
    weights[:, skeleton.index(f"{side}Foot")] = 1 - s
    weights[:, skeleton.index(f"{side}Toes")] = s
    return tube(centers, half_w, half_h, weights, "shoes", reference=(0.0, 1.0, 0.0), segments=10)


def build_body(skeleton: Skeleton, params: BodyParams) -> Part:
    """The whole body below the head (one Part; materials per face from ``MATERIALS``)."""
    dims = Dimensions(params)
    parts = [torso(skeleton, dims), neck(skeleton, dims)]
    for side in ("left", "right"):
        parts += [arm(skeleton, dims, side), thumb(skeleton, dims, side), leg(skeleton, dims, side),
                  foot(skeleton, dims, side)]
    return merge(parts)
