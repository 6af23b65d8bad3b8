"""The humanoid joint hierarchy: VRM 1.0 humanoid bone names, rest positions from proportions, skin weights.

Joints carry translations only (identity rest rotations), so a joint's local axes are the
model's axes in the rest pose: +Y up, +Z forward (the character faces +Z, as VRM 1.0
requires), +X the character's left. Animation clips can then be written as plain rotations.
Inverse bind matrices are the inverse rest transforms. ``MIXAMO`` maps every joint to its
Mixamo name for retargeting tools.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaiverse.character.params import BodyParams, Dimensions

JOINTS: tuple[tuple[str, str | None], ...] = (
    ("hips", None), ("spine", "hips"), ("chest", "spine"), ("neck", "chest"), ("head", "neck"),
    ("leftShoulder", "chest"), ("leftUpperArm", "leftShoulder"), ("leftLowerArm", "leftUpperArm"),
    ("leftHand", "leftLowerArm"),
    ("rightShoulder", "chest"), ("rightUpperArm", "rightShoulder"), ("rightLowerArm", "rightUpperArm"),
    ("rightHand", "rightLowerArm"),
    ("leftUpperLeg", "hips"), ("leftLowerLeg", "leftUpperLeg"), ("leftFoot", "leftLowerLeg"),
    ("leftToes", "leftFoot"),
    ("rightUpperLeg", "hips"), ("rightLowerLeg", "rightUpperLeg"), ("rightFoot", "rightLowerLeg"),
    ("rightToes", "rightFoot"),
)
"""(joint, parent) in VRM 1.0 humanoid bone names, parents before children."""
JOINT_NAMES = tuple(name for name, _ in JOINTS)
REQUIRED_VRM_BONES = ("hips", "spine", "chest", "neck", "head", "leftUpperArm", "leftLowerArm", "leftHand",
                      "rightUpperArm", "rightLowerArm", "rightHand", "leftUpperLeg", "leftLowerLeg", "leftFoot",
                      "rightUpperLeg", "rightLowerLeg", "rightFoot")
MIXAMO = {
    "hips": "mixamorig:Hips", "spine": "mixamorig:Spine", "chest": "mixamorig:Spine2", "neck": "mixamorig:Neck",
    "head": "mixamorig:Head",
    **{f"{s}{part}": f"mixamorig:{s.capitalize()}{mixamo}" for s in ("left", "right") for part, mixamo in (
        ("Shoulder", "Shoulder"), ("UpperArm", "Arm"), ("LowerArm", "ForeArm"), ("Hand", "Hand"),
        ("UpperLeg", "UpLeg"), ("LowerLeg", "Leg"), ("Foot", "Foot"), ("Toes", "ToeBase"))},
}


@dataclass
class Skeleton:
    """Rest-pose joints of one character."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    """Parent index per joint, -1 for the root."""
    positions: np.ndarray
    """(J, 3) float64 rest positions in model space, metres."""
    tips: dict[str, np.ndarray]
    """End points of the terminal bones: 'head' (crown), 'leftHand'/'rightHand' (fingertips), toes."""

    def index(self, name: str) -> int:
        return self.names.index(name)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.positions[self.index(name)]

    @property
    def local_translations(self) -> np.ndarray:
        """(J, 3) translation of each joint relative to its parent."""
        out = self.positions.copy()
        for j, p in enumerate(self.parents):
            if p >= 0:
                out[j] = self.positions[j] - self.positions[p]
        return out

    @property
    def inverse_bind_matrices(self) -> np.ndarray:
        """(J, 4, 4) row-major inverses of the rest world transforms (pure translations)."""
        out = np.tile(np.eye(4), (len(self.names), 1, 1))
        out[:, :3, 3] = -self.positions
        return out


def arm_direction(side: str, droop_deg: float) -> np.ndarray:
    """Unit direction of a hanging arm in the rest A-pose (``side`` 'left' is +X)."""
    a = np.radians(droop_deg)
    sign = 1.0 if side == "left" else -1.0
    return np.array([sign * np.cos(a), -np.sin(a), 0.0])


def build_skeleton(params: BodyParams) -> Skeleton:
    """Joint positions from proportions (fractions of height, see ``BodyParams``)."""
    d = Dimensions(params)
    h = d.height
    crown = h
    chin = crown - d.head_height
    neck_base = chin - 0.05 * h
    hip_y = params.leg_length * h
    ankle_y = 0.045 * h
    pos: dict[str, np.ndarray] = {}
    pos["hips"] = np.array([0.0, hip_y + 0.02 * h, 0.0])
    pos["spine"] = np.array([0.0, hip_y + 0.27 * (neck_base - hip_y), -0.005 * h])
    pos["chest"] = np.array([0.0, hip_y + 0.62 * (neck_base - hip_y), -0.004 * h])
    pos["neck"] = np.array([0.0, neck_base, -0.006 * h])
    pos["head"] = np.array([0.0, chin + 0.02 * h, 0.0])
    tips = {"head": np.array([0.0, crown, 0.0])}
    arm_len = params.arm_length * h
    shoulder_y = neck_base - 0.012 * h
    upper_x = 0.5 * params.shoulder_width * h - 0.035 * h * d.girth
    foot_len = 0.15 * h
    for side, sign in (("left", 1.0), ("right", -1.0)):
        direction = arm_direction(side, params.arm_droop_deg)
        pos[f"{side}Shoulder"] = np.array([sign * 0.022 * h, shoulder_y, -0.006 * h])
        pos[f"{side}UpperArm"] = np.array([sign * upper_x, shoulder_y - 0.012 * h, -0.006 * h])
        pos[f"{side}LowerArm"] = pos[f"{side}UpperArm"] + direction * 0.42 * arm_len
        pos[f"{side}Hand"] = pos[f"{side}LowerArm"] + direction * 0.34 * arm_len
        tips[f"{side}Hand"] = pos[f"{side}Hand"] + direction * 0.24 * arm_len
        leg_x = sign * 0.25 * params.hip_width * h
        pos[f"{side}UpperLeg"] = np.array([leg_x, hip_y, 0.0])
        pos[f"{side}LowerLeg"] = np.array([leg_x, ankle_y + 0.5 * (hip_y - ankle_y), 0.006 * h])
        pos[f"{side}Foot"] = np.array([leg_x, ankle_y, -0.004 * h])
        pos[f"{side}Toes"] = np.array([leg_x, 0.012 * h, 0.72 * foot_len - 0.25 * foot_len])
        tips[f"{side}Toes"] = np.array([leg_x, 0.012 * h, 0.75 * foot_len])
    names = JOINT_NAMES
    parents = tuple(-1 if parent is None else names.index(parent) for _, parent in JOINTS)
    return Skeleton(names, parents, np.stack([pos[n] for n in names]), tips)


# ------------------------------------------------------------------ skin weights

def normalise_weights(dense: np.ndarray, max_influences: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Dense per-joint weights (V, J) -> glTF JOINTS_0 (V, 4) uint16 and WEIGHTS_0 (V, 4) float32.

    Keeps the ``max_influences`` largest weights per vertex and renormalises them to sum 1.
    Unused slots get weight 0 and joint index 0 (the Khronos validator warns about a non-zero
    joint index with zero weight).
    """
    dense = np.asarray(dense, dtype=np.float64)
    if dense.ndim != 2 or (dense < 0).any():
        raise ValueError("`dense` must be a (V, J) array of non-negative weights")
    v, j = dense.shape
    order = np.argsort(-dense, axis=1, kind="stable")[:, :max_influences]
    weights = np.take_along_axis(dense, order, axis=1)
    total = weights.sum(axis=1, keepdims=True)
    if (total <= 0).any():
        raise ValueError(f"{int((total <= 0).sum())} vertices have no joint weight")
    weights = weights / total
    weights[weights < 1e-4] = 0.0
    weights = weights / weights.sum(axis=1, keepdims=True)
    weights = weights.astype(np.float32)
    # float32 rounding: put the remainder on the largest weight so each row sums to 1 exactly enough
    weights[:, 0] += 1.0 - weights.sum(axis=1)
    order[weights == 0] = 0
    return order.astype(np.uint16), weights
