"""VRM 1.0 export of an avatar .glb and a structural check of VRM files (AV-c1 output formats).

A VRM 1.0 file is a .glb whose JSON carries the ``VRMC_vrm`` extension (vrm-c/vrm-specification,
``specification/VRMC_vrm-1.0``): ``specVersion`` "1.0", ``meta`` (name, authors, licenseUrl required;
usage permissions), ``humanoid.humanBones`` (bone name -> node; hips, spine, head, upper/lower arms,
hands, upper/lower legs and feet required, each a distinct node below its VRM parent bone),
``expressions.preset`` (aa ih ou ee oh lip sync, blink/blinkLeft/blinkRight, happy angry sad relaxed
surprised, lookUp/Down/Left/Right, each binding morph targets by node + target index), ``lookAt`` and
``firstPerson``. The character's joints already carry VRM humanoid names and its head mesh the ARKit
and viseme targets.

VRM 1.0 defines the rest pose as the "VRM T-pose" (``VRMC_vrm-1.0/tpose.md``): standing, facing +Z,
symmetric about X = 0, feet on Y = 0 pointing +Z, arms and hands straight along the X axis and level, palms
facing -Y. The character rests in an A-pose (arms ``arm_droop_deg`` ~66 deg below horizontal), so
``t_pose`` bakes a T-pose before the export: the upper arms turn about their joints onto +-X, the meshes
are re-skinned into that pose by linear blend skinning (positions, and morph target deltas through each
vertex's blended rotation; normals are recomputed from the new positions by the writer), joints keep
identity rest rotations (so the inverse bind matrices stay the inverse rest translations, now at the new
joint positions) and every clip is retargeted (``q' = R_parent q R_joint^-1`` with R the rest change), so
the glTF animations still play the same motion (VRM runtimes ignore glTF animations; they are kept for
plain glTF viewers — VRMC_vrm_animation is a separate format). ``check_vrm`` verifies the pose.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from gaiverse.character.gltf_writer import GltfBuilder, read_glb

SPEC_VERSION = "1.0"
LICENSE_URL = "https://vrm.dev/licenses/1.0/"
REQUIRED_BONES = ("hips", "spine", "head", "leftUpperArm", "leftLowerArm", "leftHand", "rightUpperArm",
                  "rightLowerArm", "rightHand", "leftUpperLeg", "leftLowerLeg", "leftFoot", "rightUpperLeg",
                  "rightLowerLeg", "rightFoot")
VRM_PARENT = {"spine": "hips", "chest": "spine", "neck": "chest", "head": "neck", "leftShoulder": "chest",
              "rightShoulder": "chest", "leftUpperArm": "leftShoulder", "rightUpperArm": "rightShoulder",
              "leftLowerArm": "leftUpperArm", "rightLowerArm": "rightUpperArm", "leftHand": "leftLowerArm",
              "rightHand": "rightLowerArm", "leftUpperLeg": "hips", "rightUpperLeg": "hips",
              "leftLowerLeg": "leftUpperLeg", "rightLowerLeg": "rightUpperLeg", "leftFoot": "leftLowerLeg",
              "rightFoot": "rightLowerLeg", "leftToes": "leftFoot", "rightToes": "rightFoot"}
"""Each humanoid bone's nearest VRM ancestor bone (optional ancestors fall back to theirs)."""
PRESETS: dict[str, dict[str, float]] = {
    "aa": {"viseme_aa": 1.0}, "ih": {"viseme_I": 1.0}, "ou": {"viseme_U": 1.0}, "ee": {"viseme_E": 1.0},
    "oh": {"viseme_O": 1.0},
    "blink": {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}, "blinkLeft": {"eyeBlinkLeft": 1.0},
    "blinkRight": {"eyeBlinkRight": 1.0},
    "happy": {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "cheekSquintLeft": 0.6, "cheekSquintRight": 0.6,
              "eyeSquintLeft": 0.3, "eyeSquintRight": 0.3},
    "angry": {"browDownLeft": 1.0, "browDownRight": 1.0, "mouthFrownLeft": 0.5, "mouthFrownRight": 0.5,
              "noseSneerLeft": 0.4, "noseSneerRight": 0.4},
    "sad": {"browInnerUp": 1.0, "mouthFrownLeft": 0.8, "mouthFrownRight": 0.8, "mouthShrugLower": 0.3},
    "relaxed": {"mouthSmileLeft": 0.4, "mouthSmileRight": 0.4, "eyeBlinkLeft": 0.25, "eyeBlinkRight": 0.25},
    "surprised": {"eyeWideLeft": 1.0, "eyeWideRight": 1.0, "browInnerUp": 0.8, "browOuterUpLeft": 0.8,
                  "browOuterUpRight": 0.8, "jawOpen": 0.35},
    "lookUp": {"eyeLookUpLeft": 1.0, "eyeLookUpRight": 1.0},
    "lookDown": {"eyeLookDownLeft": 1.0, "eyeLookDownRight": 1.0},
    "lookLeft": {"eyeLookOutLeft": 1.0, "eyeLookInRight": 1.0},
    "lookRight": {"eyeLookInLeft": 1.0, "eyeLookOutRight": 1.0},
    "neutral": {},
}
"""VRM preset expression -> ARKit / viseme morph targets of the head mesh and their weights."""
EMOTIONS = ("happy", "angry", "sad", "relaxed", "surprised")
META_ENUMS = {"avatarPermission": ("onlyAuthor", "onlySeparatelyLicensedPerson", "everyone"),
              "commercialUsage": ("personalNonProfit", "personalProfit", "corporation"),
              "creditNotation": ("required", "unnecessary"),
              "modification": ("prohibited", "allowModification", "allowModificationRedistribution")}
ANNOTATION_TYPES = ("auto", "both", "thirdPersonOnly", "firstPersonOnly")


def _head_node(gltf: dict[str, Any]) -> int:
    for i, node in enumerate(gltf["nodes"]):
        mesh = gltf.get("meshes", [])[node["mesh"]] if "mesh" in node else None
        if mesh and (mesh.get("extras") or {}).get("targetNames"):
            return i
    raise ValueError("the .glb has no mesh with morph targets named in extras.targetNames (no face to bind)")


def _local_matrix(node: dict[str, Any]) -> np.ndarray:
    """A glTF node's local 4x4 transform (``matrix`` or T * R * S)."""
    from gaiverse.character.transforms import matrix

    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
    out = np.eye(4)
    out[:3, :3] = matrix(np.asarray(node.get("rotation", [0.0, 0.0, 0.0, 1.0]), dtype=np.float64)) \
        * np.asarray(node.get("scale", [1.0, 1.0, 1.0]), dtype=np.float64)
    out[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return out


def _world_positions(gltf: dict[str, Any]) -> list[list[float]]:
    """Rest-pose world position of every node (translation, rotation, scale and matrix applied)."""
    parents = {c: i for i, n in enumerate(gltf["nodes"]) for c in n.get("children", [])}
    out = []
    for i in range(len(gltf["nodes"])):
        world, node = np.eye(4), i
        while node is not None:
            world = _local_matrix(gltf["nodes"][node]) @ world
            node = parents.get(node)
        out.append([float(v) for v in world[:3, 3]])
    return out


def vrm_extension(gltf: dict[str, Any], name: str, authors: list[str] | None = None,
                  eye_position: list[float] | None = None) -> dict[str, Any]:
    """The ``VRMC_vrm`` object for a character .glb's JSON (joints named as VRM humanoid bones)."""
    names = [n.get("name") for n in gltf["nodes"]]
    bones = {bone: {"node": names.index(bone)} for bone in VRM_PARENT.keys() | {"hips"} if bone in names}
    head_node = _head_node(gltf)
    targets = gltf["meshes"][gltf["nodes"][head_node]["mesh"]]["extras"]["targetNames"]
    preset = {}
    for expression, binds in PRESETS.items():
        preset[expression] = {
            "morphTargetBinds": [{"node": head_node, "index": targets.index(t), "weight": float(w)}
                                 for t, w in binds.items() if t in targets],
            "isBinary": False, "overrideBlink": "blend" if expression in EMOTIONS else "none",
            "overrideLookAt": "none", "overrideMouth": "blend" if expression in ("happy", "surprised") else "none"}
    world = _world_positions(gltf)
    head = world[names.index("head")]
    eyes = eye_position or [head[0], head[1] + 0.06, head[2] + 0.08]
    range_map = {"inputMaxValue": 90.0, "outputScale": 1.0}
    body_nodes = [i for i, n in enumerate(gltf["nodes"]) if "mesh" in n and i != head_node]
    return {
        "specVersion": SPEC_VERSION,
        "meta": {"name": name, "version": "1", "authors": authors or ["gaiverse"],
                 "copyrightInformation": "generated by gaiverse from the user's own capture",
                 "licenseUrl": LICENSE_URL, "avatarPermission": "onlyAuthor",
                 "allowExcessivelyViolentUsage": False, "allowExcessivelySexualUsage": False,
                 "commercialUsage": "personalNonProfit", "allowPoliticalOrReligiousUsage": False,
                 "allowAntisocialOrHateUsage": False, "creditNotation": "required", "allowRedistribution": False,
                 "modification": "prohibited"},
        "humanoid": {"humanBones": bones},
        "expressions": {"preset": preset},
        "lookAt": {"type": "expression", "offsetFromHeadBone": [round(e - h, 5) for e, h in zip(eyes, head)],
                   "rangeMapHorizontalInner": range_map, "rangeMapHorizontalOuter": range_map,
                   "rangeMapVerticalDown": range_map, "rangeMapVerticalUp": range_map},
        "firstPerson": {"meshAnnotations": [{"node": head_node, "type": "thirdPersonOnly"}]
                        + [{"node": i, "type": "both"} for i in body_nodes]},
    }


def glb_to_vrm(glb: bytes, name: str = "avatar", authors: list[str] | None = None,
               eye_position: list[float] | None = None) -> bytes:
    """``glb`` (a character/avatar .glb) with the ``VRMC_vrm`` extension added: a .vrm file's bytes."""
    if not name or not isinstance(name, str):
        raise ValueError(f"`name` must be a non-empty string, got {name!r}")
    gltf, blob = read_glb(glb)
    gltf.setdefault("extensions", {})["VRMC_vrm"] = vrm_extension(gltf, name, authors, eye_position)
    gltf["extensionsUsed"] = sorted(set(gltf.get("extensionsUsed", [])) | {"VRMC_vrm"})
    builder = GltfBuilder()
    builder.gltf, builder.blob = gltf, bytearray(blob)
    return builder.to_glb()


# ------------------------------------------------------------------ the VRM T-pose

T_POSE_TOLERANCE_DEG = 3.0
"""Largest angle between an arm bone and the X axis that ``check_vrm`` accepts as a T-pose."""
UPRIGHT_TOLERANCE_DEG = 12.0
"""Largest angle of the hips -> head line (and each leg) from the vertical."""


def t_pose_rotations(character) -> dict[str, np.ndarray]:
    """Local rest rotations taking the character's arms from its rest pose onto +-X (the VRM T-pose).

    Each upper arm turns by the shortest arc from its upper-arm -> hand direction onto +X (left) or -X
    (right); the forearm and hand follow, so the whole arm lies on the axis.
    """
    from gaiverse.character.transforms import between

    sk = character.skeleton
    out = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        upper, hand = sk[f"{side}UpperArm"], sk[f"{side}Hand"]
        out[f"{side}UpperArm"] = between(hand - upper, [sign, 0.0, 0.0])
    return out


def _retarget(clip, rest: np.ndarray, names: tuple[str, ...], parents: tuple[int, ...]):
    """``clip`` for the re-posed skeleton: the same world motion with the new rest (world rotations ``rest``)."""
    from gaiverse.character.transforms import IDENTITY, inverse, multiply

    moved = [j for j in range(len(names)) if abs(abs(float(rest[j][3])) - 1.0) > 1e-9]
    affected = set(moved) | {j for j, p in enumerate(parents) if p in moved}
    poses = []
    for pose in clip.poses:
        new = {k: np.asarray(v, dtype=np.float64) for k, v in pose.items()}
        for j in affected:
            q = np.asarray(pose.get(names[j], IDENTITY), dtype=np.float64)
            parent = rest[parents[j]] if parents[j] >= 0 else IDENTITY
            new[names[j]] = multiply(multiply(parent, q), inverse(rest[j]))
        poses.append(new)
    out = copy.copy(clip)
    out.poses = poses
    return out


def t_pose(character):
    """A copy of ``character`` (``gaiverse.character.Character``) re-posed into the VRM T-pose at rest."""
    from gaiverse.character.animation import skin, world_transforms
    from gaiverse.character.skeleton import Skeleton
    from gaiverse.character.transforms import matrix

    sk = character.skeleton
    pose = t_pose_rotations(character)
    rest, joints = world_transforms(sk, pose)

    def moved_tip(name: str, tip: np.ndarray) -> np.ndarray:
        from gaiverse.character.transforms import rotate

        j = sk.index(name)
        return rotate(rest[j], tip - sk.positions[j]) + joints[j]

    tips = {name: moved_tip(name, tip) for name, tip in sk.tips.items()}
    new_sk = Skeleton(sk.names, sk.parents, joints, tips)

    rotations = np.stack([matrix(q) for q in rest])  # (J, 3, 3)

    def reskin(part, targets=None):
        new_part = copy.copy(part)
        new_part.positions = skin(sk, pose, part.positions, part.weights)
        if targets is None:
            return new_part, None
        # LBS is affine per vertex: a morph delta turns by the vertex's blended rotation
        w = part.weights / np.maximum(part.weights.sum(1, keepdims=True), 1e-12)
        blended = np.einsum("vj,jab->vab", w, rotations)
        return new_part, {name: np.einsum("vab,vb->va", blended, d).astype(np.float32) for name, d in targets.items()}

    body, _ = reskin(character.body)
    head = copy.copy(character.head)
    head.part, head.targets = reskin(character.head.part, character.head.targets)
    clips = [_retarget(c, rest, sk.names, sk.parents) for c in character.clips]
    return type(character)(character.params, new_sk, body, head, clips)


# ------------------------------------------------------------------ structural check


def _descends(gltf: dict[str, Any], node: int, ancestor: int) -> bool:
    parents = {c: i for i, n in enumerate(gltf["nodes"]) for c in n.get("children", [])}
    while node in parents:
        node = parents[node]
        if node == ancestor:
            return True
    return False


def _check_meta(meta: Any) -> list[str]:
    if not isinstance(meta, dict):
        return ["meta is missing"]
    problems = []
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        problems.append("meta.name must be a non-empty string")
    authors = meta.get("authors")
    if not isinstance(authors, list) or not any(isinstance(a, str) and a for a in authors):
        problems.append("meta.authors must list at least one non-empty author")
    if not isinstance(meta.get("licenseUrl"), str) or not meta["licenseUrl"]:
        problems.append("meta.licenseUrl is required")
    for key, allowed in META_ENUMS.items():
        if key in meta and meta[key] not in allowed:
            problems.append(f"meta.{key} must be one of {allowed}, got {meta[key]!r}")
    return problems


def _check_bones(gltf: dict[str, Any], bones: Any) -> list[str]:
    if not isinstance(bones, dict):
        return ["humanoid.humanBones is missing"]
    n_nodes = len(gltf.get("nodes", []))
    problems = [f"required humanoid bone {b!r} is missing" for b in REQUIRED_BONES if b not in bones]
    nodes = {}
    for bone, value in bones.items():
        node = value.get("node") if isinstance(value, dict) else None
        if not isinstance(node, int) or not 0 <= node < n_nodes:
            problems.append(f"humanoid bone {bone!r} points at no node ({node!r})")
        else:
            nodes[bone] = node
    if len(set(nodes.values())) != len(nodes):
        problems.append("humanoid bones must be distinct nodes")
    for bone, node in nodes.items():
        parent = VRM_PARENT.get(bone)
        while parent is not None and parent not in nodes:
            parent = VRM_PARENT.get(parent)
        if parent is not None and not _descends(gltf, node, nodes[parent]):
            problems.append(f"humanoid bone {bone!r} is not below its parent bone {parent!r}")
    return problems


def _check_expressions(gltf: dict[str, Any], expressions: Any) -> list[str]:
    if expressions is None:
        return []
    problems = []
    meshes, nodes = gltf.get("meshes", []), gltf.get("nodes", [])
    for group in ("preset", "custom"):
        for name, expression in (expressions.get(group) or {}).items():
            if group == "preset" and name not in PRESETS:
                problems.append(f"unknown preset expression {name!r}")
            for bind in expression.get("morphTargetBinds", []):
                node = bind.get("node")
                if not isinstance(node, int) or not 0 <= node < len(nodes) or "mesh" not in nodes[node]:
                    problems.append(f"expression {name!r} binds node {node!r}, which has no mesh")
                    continue
                count = min(len(p.get("targets", [])) for p in meshes[nodes[node]["mesh"]]["primitives"])
                if not isinstance(bind.get("index"), int) or not 0 <= bind["index"] < count:
                    problems.append(f"expression {name!r} binds morph target {bind.get('index')!r} of node {node} "
                                    f"(it has {count})")
                if not 0 <= float(bind.get("weight", -1)) <= 1:
                    problems.append(f"expression {name!r} has a weight outside 0..1")
    return problems


def _angle_deg(v: np.ndarray, axis: tuple[float, float, float]) -> float:
    n = float(np.linalg.norm(v))
    return 180.0 if n < 1e-9 else float(np.degrees(np.arccos(np.clip(np.dot(v / n, axis), -1.0, 1.0))))


def check_t_pose(gltf: dict[str, Any], bones: dict[str, int]) -> list[str]:
    """Problems with the VRM T-pose of the rest pose (``bones``: humanoid bone -> node).

    Arms: upper arm -> lower arm -> hand within ``T_POSE_TOLERANCE_DEG`` of +X (left) / -X (right);
    spine: hips -> spine -> chest -> neck -> head within ``UPRIGHT_TOLERANCE_DEG`` of +Y, legs down -Y; facing +Z: the toes ahead of
    the feet and the eyes (lookAt offset) in front of the head; left bones at +X.
    """
    world = np.asarray(_world_positions(gltf))
    at = {bone: world[node] for bone, node in bones.items()}
    problems = []
    for side, axis in (("left", (1.0, 0.0, 0.0)), ("right", (-1.0, 0.0, 0.0))):
        chain = [f"{side}UpperArm", f"{side}LowerArm", f"{side}Hand"]
        for a, b in zip(chain, chain[1:]):
            if a in at and b in at:
                angle = _angle_deg(at[b] - at[a], axis)
                if angle > T_POSE_TOLERANCE_DEG:
                    problems.append(f"T-pose: {a} -> {b} is {angle:.1f} deg off {'+' if axis[0] > 0 else '-'}X "
                                    f"(limit {T_POSE_TOLERANCE_DEG})")
        for a, b in ((f"{side}UpperLeg", f"{side}LowerLeg"), (f"{side}LowerLeg", f"{side}Foot")):
            if a in at and b in at and _angle_deg(at[b] - at[a], (0.0, -1.0, 0.0)) > UPRIGHT_TOLERANCE_DEG:
                problems.append(f"T-pose: {a} -> {b} does not point down (-Y)")
        foot, toes = at.get(f"{side}Foot"), at.get(f"{side}Toes")
        if foot is not None and toes is not None and toes[2] - foot[2] <= 0:
            problems.append(f"T-pose: {side}Toes is not in front (+Z) of {side}Foot: the model does not face +Z")
    spine = [b for b in ("hips", "spine", "chest", "upperChest", "neck", "head") if b in at]
    for a, b in zip(spine, spine[1:]):
        if _angle_deg(at[b] - at[a], (0.0, 1.0, 0.0)) > UPRIGHT_TOLERANCE_DEG:
            problems.append(f"T-pose: {a} -> {b} does not point up (+Y)")
    if "leftUpperArm" in at and "rightUpperArm" in at and at["leftUpperArm"][0] <= at["rightUpperArm"][0]:
        problems.append("T-pose: leftUpperArm is not on the +X side (the model does not face +Z)")
    return problems


def check_vrm(glb: bytes) -> list[str]:
    """Structural problems of a VRM 1.0 file (empty list: none found)."""
    try:
        gltf, _ = read_glb(glb)
    except (ValueError, UnicodeDecodeError) as err:
        return [f"not a .glb: {err}"]
    ext = (gltf.get("extensions") or {}).get("VRMC_vrm")
    if ext is None:
        return ["no VRMC_vrm extension"]
    problems = [] if "VRMC_vrm" in gltf.get("extensionsUsed", []) else ["VRMC_vrm is not in extensionsUsed"]
    if ext.get("specVersion") != SPEC_VERSION:
        problems.append(f"specVersion must be {SPEC_VERSION!r}, got {ext.get('specVersion')!r}")
    problems += _check_meta(ext.get("meta"))
    bones = (ext.get("humanoid") or {}).get("humanBones")
    problems += _check_bones(gltf, bones)
    if isinstance(bones, dict):
        nodes = {b: v["node"] for b, v in bones.items() if isinstance(v, dict) and isinstance(v.get("node"), int)
                 and 0 <= v["node"] < len(gltf.get("nodes", []))}
        problems += check_t_pose(gltf, nodes)
    problems += _check_expressions(gltf, ext.get("expressions"))
    look = ext.get("lookAt")
    if look is not None and look.get("type") not in ("bone", "expression"):
        problems.append(f"lookAt.type must be 'bone' or 'expression', got {look.get('type')!r}")
    offset = (look or {}).get("offsetFromHeadBone")
    if isinstance(offset, list) and len(offset) == 3 and float(offset[2]) <= 0:
        problems.append("T-pose: the eyes (lookAt.offsetFromHeadBone) are not in front (+Z) of the head")
    for note in (ext.get("firstPerson") or {}).get("meshAnnotations", []):
        node = note.get("node")
        if not isinstance(node, int) or not 0 <= node < len(gltf["nodes"]) or "mesh" not in gltf["nodes"][node]:
            problems.append(f"firstPerson annotates node {node!r}, which has no mesh")
        if note.get("type") not in ANNOTATION_TYPES:
            problems.append(f"firstPerson annotation type {note.get('type')!r} is not one of {ANNOTATION_TYPES}")
    return problems
