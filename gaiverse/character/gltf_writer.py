"""A small glTF 2.0 binary (.glb) writer: buffers, accessors, skinned meshes, morph targets, animations.

Hand-built rather than through a library so every detail the Khronos validator checks is under
our control: 4-byte aligned buffer views, min/max on every POSITION and animation input,
sparse (or omitted, i.e. all-zero) morph target accessors, normalised skin weights, and
skinned meshes on root nodes without transforms.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from gaiverse.avatar.colour import srgb_to_linear

FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
COMPONENT = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UNSIGNED_BYTE,
             np.dtype(np.uint16): UNSIGNED_SHORT, np.dtype(np.uint32): UNSIGNED_INT}
GLB_MAGIC, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942


class GltfBuilder:
    """Accumulates one binary buffer and the glTF JSON that indexes it."""

    def __init__(self, generator: str = "gaiverse.character"):
        self.gltf: dict[str, Any] = {"asset": {"version": "2.0", "generator": generator}, "buffers": [],
                                     "bufferViews": [], "accessors": []}
        self.blob = bytearray()

    def _view(self, data: bytes, target: int | None = None, stride: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        if stride is not None:
            view["byteStride"] = stride
        self.blob.extend(data)
        self.gltf["bufferViews"].append(view)
        return len(self.gltf["bufferViews"]) - 1

    def accessor(self, array: np.ndarray, target: int | None = None, minmax: bool = False,
                 normalized: bool = False) -> int:
        """Store ``array`` ((N,) or (N, k); (N, 4, 4) matrices are written column-major) as an accessor."""
        array = np.ascontiguousarray(array)
        if array.ndim == 3:  # row-major 4x4 -> glTF column-major
            array = np.ascontiguousarray(np.transpose(array, (0, 2, 1)).reshape(len(array), 16))
        width = 1 if array.ndim == 1 else array.shape[1]
        accessor: dict[str, Any] = {
            "bufferView": self._view(array.tobytes(), target), "componentType": COMPONENT[array.dtype],
            "count": int(array.shape[0]), "type": TYPES[width],
        }
        if normalized:
            accessor["normalized"] = True
        if minmax:
            flat = array.reshape(len(array), width)
            accessor["min"] = [_num(v) for v in flat.min(axis=0)]
            accessor["max"] = [_num(v) for v in flat.max(axis=0)]
        self.gltf["accessors"].append(accessor)
        return len(self.gltf["accessors"]) - 1

    def sparse_vec3(self, values: np.ndarray, threshold: float = 1e-6) -> int:
        """A VEC3 float accessor that is zero except where ``values`` exceeds ``threshold`` (a morph target).

        All-zero targets get no buffer data at all (glTF initialises such accessors with zeros).
        """
        values = np.asarray(values, dtype=np.float32)
        moved = np.nonzero(np.abs(values).max(axis=1) > threshold)[0]
        accessor: dict[str, Any] = {"componentType": FLOAT, "count": int(len(values)), "type": "VEC3"}
        if len(moved):
            kept = np.zeros_like(values)
            kept[moved] = values[moved]
            accessor["min"] = [_num(v) for v in kept.min(axis=0)]
            accessor["max"] = [_num(v) for v in kept.max(axis=0)]
            index_type = np.uint16 if len(values) < 65536 else np.uint32
            accessor["sparse"] = {
                "count": int(len(moved)),
                "indices": {"bufferView": self._view(moved.astype(index_type).tobytes()),
                            "componentType": COMPONENT[np.dtype(index_type)]},
                "values": {"bufferView": self._view(np.ascontiguousarray(values[moved]).tobytes())},
            }
        else:
            accessor["min"] = [0.0, 0.0, 0.0]
            accessor["max"] = [0.0, 0.0, 0.0]
        self.gltf["accessors"].append(accessor)
        return len(self.gltf["accessors"]) - 1

    def add(self, kind: str, item: dict[str, Any]) -> int:
        """Append ``item`` to the top-level array ``kind`` (nodes, meshes, materials, ...); returns its index."""
        self.gltf.setdefault(kind, []).append(item)
        return len(self.gltf[kind]) - 1

    def to_glb(self) -> bytes:
        """The GLB container: header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
        while len(self.blob) % 4:
            self.blob.append(0)
        self.gltf["buffers"] = [{"byteLength": len(self.blob)}]
        text = json.dumps(self.gltf, separators=(",", ":"), allow_nan=False).encode()
        text += b" " * (-len(text) % 4)
        total = 12 + 8 + len(text) + 8 + len(self.blob)
        return (struct.pack("<III", GLB_MAGIC, 2, total) + struct.pack("<II", len(text), JSON_CHUNK) + text
                + struct.pack("<II", len(self.blob), BIN_CHUNK) + bytes(self.blob))


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(glTF JSON, BIN chunk) of a .glb; ValueError when it is not one."""
    if len(data) < 20 or struct.unpack_from("<I", data, 0)[0] != GLB_MAGIC:
        raise ValueError("not a .glb file (bad magic)")
    length, kind = struct.unpack_from("<II", data, 12)
    if kind != JSON_CHUNK:
        raise ValueError("first GLB chunk is not JSON")
    gltf = json.loads(data[20:20 + length])
    rest = 20 + length
    blob = b""
    if rest + 8 <= len(data):
        blen, bkind = struct.unpack_from("<II", data, rest)
        if bkind == BIN_CHUNK:
            blob = data[rest + 8:rest + 8 + blen]
    return gltf, blob


def read_accessor(gltf: dict[str, Any], blob: bytes, index: int) -> np.ndarray:
    """Dense values of accessor ``index`` (sparse accessors resolved), as (count, width) or (count,)."""
    acc = gltf["accessors"][index]
    dtype = {FLOAT: np.float32, UNSIGNED_BYTE: np.uint8, UNSIGNED_SHORT: np.uint16, UNSIGNED_INT: np.uint32}
    width = {v: k for k, v in TYPES.items()}[acc["type"]]
    dt = dtype[acc["componentType"]]
    out = np.zeros((acc["count"], width), dtype=dt)
    if "bufferView" in acc:
        view = gltf["bufferViews"][acc["bufferView"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        out = np.frombuffer(blob, dtype=dt, count=acc["count"] * width, offset=start).reshape(-1, width).copy()
    if "sparse" in acc:
        sp = acc["sparse"]
        iv, vv = gltf["bufferViews"][sp["indices"]["bufferView"]], gltf["bufferViews"][sp["values"]["bufferView"]]
        idx = np.frombuffer(blob, dtype=dtype[sp["indices"]["componentType"]], count=sp["count"],
                            offset=iv.get("byteOffset", 0))
        vals = np.frombuffer(blob, dtype=dt, count=sp["count"] * width, offset=vv.get("byteOffset", 0))
        out[idx.astype(np.int64)] = vals.reshape(-1, width)
    return out[:, 0] if width == 1 else out


def _num(value: Any) -> float | int:
    value = value.item() if hasattr(value, "item") else value
    return float(value) if isinstance(value, float) else int(value)


# ------------------------------------------------------------------ the character as one .glb


def material_colours(params) -> dict[str, tuple[float, float, float]]:
    """Base colour of each material name used by ``body.MATERIALS`` for these parameters."""
    skin = np.asarray(params.skin_rgb)
    return {"skin": params.skin_rgb, "top": params.top_rgb, "bottom": params.bottom_rgb,
            "shoes": params.shoes_rgb, "hair": params.hair_rgb, "eye_white": (0.93, 0.93, 0.9),
            "iris": params.eye_rgb, "lips": tuple(float(c) for c in np.clip(skin * [0.86, 0.55, 0.55], 0, 1)),
            "mouth": (0.22, 0.05, 0.06), "face": params.skin_rgb}


def character_glb(character, name: str = "npc", extras: dict[str, Any] | None = None) -> bytes:
    """The rigged character as .glb bytes: joint nodes, one skin, a body and a head mesh, clips, materials.

    ``character`` is a ``gaiverse.character.Character``. ``extras`` (JSON-ready) is stored on
    the scene and on the body node, next to the rig description (humanoid bone map, morph
    target names, viseme map, clip names) so clients can drive it without guessing.
    """
    from gaiverse.character.animation import tracks
    from gaiverse.character.face import MORPH_TARGETS, VISEME_TARGETS
    from gaiverse.character.geometry import vertex_normals
    from gaiverse.character.skeleton import MIXAMO, normalise_weights

    sk, params = character.skeleton, character.params
    b = GltfBuilder()
    colours = material_colours(params)
    material_index: dict[str, int] = {}

    head = character.head
    textured = getattr(head, "texture", None) is not None and getattr(head, "uv", None) is not None

    def material(mat: str) -> int:
        if mat not in material_index:
            # glTF's baseColorFactor is linear (glTF 2.0 3.9.2) while the parameters and the face photo are
            # sRGB: unconverted, the skin showed lighter than the photo's edge
            linear = [float(v) for v in srgb_to_linear(colours[mat])]
            pbr: dict[str, Any] = {"baseColorFactor": [*linear, 1.0], "metallicFactor": 0.0,
                                   "roughnessFactor": 0.35 if mat in ("eye_white", "iris") else 0.85}
            if mat == "face" and textured:  # the projected photo: white factor, the texture gives the colour
                pbr["baseColorFactor"] = [1.0, 1.0, 1.0, 1.0]
                pbr["baseColorTexture"] = {"index": face_texture(), "texCoord": 0}
            material_index[mat] = b.add("materials", {"name": mat, "pbrMetallicRoughness": pbr})
        return material_index[mat]

    def face_texture() -> int:
        image = b.add("images", {"bufferView": b._view(head.texture), "mimeType": head.texture_mime})
        sampler = b.add("samplers", {"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071})
        return b.add("textures", {"source": image, "sampler": sampler})

    # joints: node index = joint index (joints come first)
    local = sk.local_translations
    for j, joint in enumerate(sk.names):
        node: dict[str, Any] = {"name": joint, "translation": [float(v) for v in local[j]]}
        children = [k for k, p in enumerate(sk.parents) if p == j]
        if children:
            node["children"] = children
        b.add("nodes", node)
    ibm = b.accessor(sk.inverse_bind_matrices.astype(np.float32))
    skin = b.add("skins", {"name": "humanoid", "joints": list(range(len(sk.names))), "inverseBindMatrices": ibm,
                           "skeleton": 0})

    def mesh(part, mesh_name: str, targets: dict[str, np.ndarray] | None = None, uv: np.ndarray | None = None) -> int:
        positions = part.positions.astype(np.float32)
        joints, weights = normalise_weights(part.weights)
        attributes = {
            "POSITION": b.accessor(positions, ARRAY_BUFFER, minmax=True),
            "NORMAL": b.accessor(vertex_normals(part.positions, part.faces), ARRAY_BUFFER),
            "JOINTS_0": b.accessor(joints, ARRAY_BUFFER),
            "WEIGHTS_0": b.accessor(weights, ARRAY_BUFFER),
        }
        if uv is not None:
            attributes["TEXCOORD_0"] = b.accessor(np.asarray(uv, dtype=np.float32), ARRAY_BUFFER)
        target_list = [{"POSITION": b.sparse_vec3(targets[t])} for t in MORPH_TARGETS] if targets else None
        index_type = np.uint16 if len(positions) < 65536 else np.uint32
        primitives = []
        mats = np.asarray(part.materials)
        for mat in dict.fromkeys(part.materials):
            faces = part.faces[mats == mat].astype(index_type).reshape(-1)
            prim: dict[str, Any] = {"attributes": attributes, "indices": b.accessor(faces, ELEMENT_ARRAY_BUFFER),
                                    "material": material(mat), "mode": 4}
            if target_list:
                prim["targets"] = target_list
            primitives.append(prim)
        item: dict[str, Any] = {"name": mesh_name, "primitives": primitives}
        if targets:
            item["weights"] = [0.0] * len(MORPH_TARGETS)
            item["extras"] = {"targetNames": list(MORPH_TARGETS)}
        return b.add("meshes", item)

    rig = {"humanoid": {"humanBones": {joint: {"node": j} for j, joint in enumerate(sk.names)}},
           "mixamo": MIXAMO, "morphTargets": list(MORPH_TARGETS), "visemes": VISEME_TARGETS,
           "clips": [c.name for c in character.clips], "facing": "+Z", "units": "m"}
    meta = {"rig": rig, **(extras or {})}
    body_node = b.add("nodes", {"name": f"{name}_body", "mesh": mesh(character.body, "body"), "skin": skin,
                                "extras": meta})
    head_node = b.add("nodes", {"name": f"{name}_head",
                                "mesh": mesh(head.part, "head", head.targets, head.uv if textured else None),
                                "skin": skin, "extras": {"targetNames": list(MORPH_TARGETS)}})
    b.gltf["scene"] = b.add("scenes", {"name": name, "nodes": [0, body_node, head_node], "extras": meta})

    for clip in character.clips:
        samplers, channels = [], []
        times = b.accessor(np.asarray(clip.times, dtype=np.float32), minmax=True)
        for joint, keys in tracks(clip).items():
            samplers.append({"input": times, "output": b.accessor(keys), "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": sk.index(joint), "path": "rotation"}})
        if clip.hips_offsets is not None:
            moved = np.asarray([local[0] + off for off in clip.hips_offsets], dtype=np.float32)
            samplers.append({"input": times, "output": b.accessor(moved), "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": 0, "path": "translation"}})
        if clip.morph_keys:
            key_times = b.accessor(np.asarray([t for t, _ in clip.morph_keys], dtype=np.float32), minmax=True)
            values = np.zeros((len(clip.morph_keys), len(MORPH_TARGETS)), dtype=np.float32)
            for k, (_, weights) in enumerate(clip.morph_keys):
                for target, w in weights.items():
                    values[k, MORPH_TARGETS.index(target)] = w
            samplers.append({"input": key_times, "output": b.accessor(values.reshape(-1)), "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": head_node, "path": "weights"}})
        b.add("animations", {"name": clip.name, "samplers": samplers, "channels": channels})
    return b.to_glb()
