"""A small glTF 2.0 binary (.glb) writer for world scenes: vertex-coloured meshes, named nodes with `extras`,
mesh reuse across nodes, EXT_mesh_gpu_instancing, and TEXCOORD_0 + materials with an embedded PNG
base-colour texture (the baked room behind each window, ENV-c3).

trimesh's exporter cannot put `extras` on nodes nor write GPU instancing, and worlds need both
(semantic types and ids per node; thousands of trees). Parts are given in the world frame
(x east, y north, z up, metres) and written in glTF's frame (X east, Y up, Z south), a proper
rotation, so triangle winding is kept. Supports ENV-d1 (engine-ready output of the world).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaiverse.jsonable import to_jsonable

FLOAT, UBYTE, USHORT, UINT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963

#: Materials every world uses; vertex colours multiply the base colour.
MATERIALS: dict[str, dict] = {
    "default": {"name": "vertex_colour", "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1],
                                                                  "metallicFactor": 0.0, "roughnessFactor": 0.9}},
    "water": {"name": "water", "alphaMode": "BLEND", "doubleSided": True,
              "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 0.78], "metallicFactor": 0.0, "roughnessFactor": 0.2}},
}


@dataclass
class MeshPart:
    """One mesh in the world frame with vertex colours and semantic extras."""

    name: str
    """Node / mesh name, e.g. "road_12"."""
    vertices: np.ndarray
    """(n, 3) float metres, x east, y north, z up."""
    faces: np.ndarray
    """(m, 3) vertex indices, counter-clockwise seen from outside."""
    colours: np.ndarray | None = None
    """(n, 4) uint8 RGBA per vertex (None: white)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Semantic type, id and attributes written to the node's `extras`."""
    material: str = "default"
    """Which of MATERIALS the mesh uses, or a name given to GlbWriter.add_material (textured window interiors)."""
    uv: np.ndarray | None = None
    """(n, 2) TEXCOORD_0 in glTF's convention ((0, 0) = top-left of the image); None: no texture coordinates."""
    smooth: bool = False
    """Write smooth vertex normals (terrain); without normals viewers shade flat (low-poly look)."""

    @property
    def n_triangles(self) -> int:
        return int(len(self.faces))

    @classmethod
    def from_trimesh(cls, mesh, name: str, extras: dict | None = None, z_up: bool = True) -> MeshPart:
        """A trimesh.Trimesh (x east, y north, z up; or glTF y-up with z_up=False) -> MeshPart.

        Face colours are kept by giving every face its own three vertices.
        """
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if not z_up:
            vertices = np.column_stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]])
        visual = mesh.visual
        uv = None
        if getattr(visual, "kind", None) == "texture":
            raw_uv = getattr(visual, "uv", None)  # trimesh keeps OpenGL's v-up; glTF's v runs down the image
            uv = None if raw_uv is None else np.column_stack([raw_uv[:, 0], 1.0 - raw_uv[:, 1]])
            visual = visual.to_color()
        colours = None
        if getattr(visual, "kind", None) == "face":
            fc = np.asarray(visual.face_colors, dtype=np.uint8)
            vertices, faces = vertices[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3)
            colours = np.repeat(fc, 3, axis=0)
            uv = None if uv is None else uv[np.asarray(mesh.faces)].reshape(-1, 2)
        elif getattr(visual, "kind", None) == "vertex":
            colours = np.asarray(visual.vertex_colors, dtype=np.uint8)
            if colours.shape != (len(vertices), 4):  # a texture reduced to one main colour
                colours = np.tile(colours.reshape(-1, 4)[:1], (len(vertices), 1))
        meta = dict(getattr(mesh, "metadata", {}) or {})
        merged = {**meta.get("extras", {}), **(extras or {})}
        return cls(name, vertices, faces, colours, merged, uv=uv)


def to_gltf_frame(v: np.ndarray) -> np.ndarray:
    """(n, 3) x east, y north, z up -> glTF (X east, Y up, Z south)."""
    v = np.asarray(v, dtype=np.float64)
    return np.column_stack([v[:, 0], v[:, 2], -v[:, 1]])


def vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals; isolated vertices get +Y."""
    n = np.zeros_like(v)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), [0.0, 1.0, 0.0])
    return n


class GlbWriter:
    """Accumulates meshes and nodes, then writes one .glb. Nodes form a tree under one root."""

    def __init__(self, root_name: str = "world", root_extras: dict | None = None):
        self.doc: dict[str, Any] = {"asset": {"version": "2.0", "generator": "gaiverse"}, "scene": 0,
                                    "scenes": [{"name": root_name, "nodes": [0]}], "nodes": [], "meshes": [],
                                    "accessors": [], "bufferViews": [], "buffers": [], "materials": []}
        self.blob = bytearray()
        self._materials: dict[str, int] = {}
        self._custom: dict[str, tuple[dict, bytes | None]] = {}
        self._meshes: dict[int, int] = {}
        self.triangles = 0
        self.add_node(root_name, extras=root_extras or {"type": "world"}, parent=None)

    def _view(self, data: bytes, target: int | None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob += data
        self.doc["bufferViews"].append(view)
        return len(self.doc["bufferViews"]) - 1

    def _accessor(self, array: np.ndarray, ctype: int, atype: str, target: int | None,
                  bounds: bool = False, normalized: bool = False) -> int:
        dtype = {FLOAT: np.float32, UBYTE: np.uint8, USHORT: np.uint16, UINT: np.uint32}[ctype]
        array = np.ascontiguousarray(array, dtype=dtype)
        acc: dict[str, Any] = {"bufferView": self._view(array.tobytes(), target), "componentType": ctype,
                               "count": int(len(array)), "type": atype}
        if normalized:
            acc["normalized"] = True
        if bounds:
            flat = array.reshape(len(array), -1)
            acc["min"], acc["max"] = flat.min(0).tolist(), flat.max(0).tolist()
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    def add_material(self, name: str, material: dict[str, Any], base_colour_png: bytes | None = None) -> None:
        """Register a material for parts whose `material` is `name`; written (with its PNG as an embedded
        baseColorTexture) only if a mesh uses it, so unused variants leave no unused objects behind."""
        if name in MATERIALS or name in self._custom:
            raise ValueError(f"material {name!r} is already defined")
        self._custom[name] = (material, base_colour_png)

    def _texture(self, png: bytes) -> int:
        for key in ("images", "textures", "samplers"):
            self.doc.setdefault(key, [])
        if not self.doc["samplers"]:
            self.doc["samplers"].append({"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071})
        self.doc["images"].append({"bufferView": self._view(png, None), "mimeType": "image/png"})
        self.doc["textures"].append({"sampler": 0, "source": len(self.doc["images"]) - 1})
        return len(self.doc["textures"]) - 1

    def accessor(self, array: np.ndarray, ctype: int, atype: str, bounds: bool = False) -> int:
        """Write a non-vertex accessor (animation times and values, instance attributes); returns its index."""
        return self._accessor(array, ctype, atype, None, bounds=bounds)

    def _material(self, name: str) -> int:
        if name not in self._materials:
            if name in MATERIALS:
                material = MATERIALS[name]
            elif name in self._custom:
                material, png = self._custom[name]
                material = json.loads(json.dumps(to_jsonable(material)))
                if png is not None:
                    material.setdefault("pbrMetallicRoughness", {})["baseColorTexture"] = {"index": self._texture(png)}
            else:
                raise ValueError(f"material {name!r} is neither built in ({', '.join(MATERIALS)}) nor added")
            self.doc["materials"].append(material)
            self._materials[name] = len(self.doc["materials"]) - 1
        return self._materials[name]

    def add_mesh(self, part: MeshPart) -> int:
        """Write a part's geometry once (the same part object reused -> the same glTF mesh)."""
        if id(part) in self._meshes:
            return self._meshes[id(part)]
        if len(part.faces) == 0:
            raise ValueError(f"mesh {part.name!r} has no triangles")
        v = to_gltf_frame(part.vertices).astype(np.float32)
        f = np.asarray(part.faces, dtype=np.uint32)
        if f.max() >= len(v):
            raise ValueError(f"mesh {part.name!r}: face index {int(f.max())} >= {len(v)} vertices")
        if part.colours is not None and np.shape(part.colours) != (len(v), 4):
            raise ValueError(f"mesh {part.name!r}: colours must have shape ({len(v)}, 4), got {np.shape(part.colours)}")
        attrs = {"POSITION": self._accessor(v, FLOAT, "VEC3", ARRAY_BUFFER, bounds=True)}
        if part.smooth:
            attrs["NORMAL"] = self._accessor(vertex_normals(v.astype(np.float64), f), FLOAT, "VEC3", ARRAY_BUFFER)
        if part.colours is not None:
            attrs["COLOR_0"] = self._accessor(part.colours, UBYTE, "VEC4", ARRAY_BUFFER, normalized=True)
        if part.uv is not None:
            if np.shape(part.uv) != (len(v), 2):
                raise ValueError(f"mesh {part.name!r}: uv must have shape ({len(v)}, 2), got {np.shape(part.uv)}")
            attrs["TEXCOORD_0"] = self._accessor(part.uv, FLOAT, "VEC2", ARRAY_BUFFER)
        ctype = USHORT if len(v) < 65535 else UINT
        indices = self._accessor(f.ravel(), ctype, "SCALAR", ELEMENT_ARRAY_BUFFER)
        self.doc["meshes"].append({"name": part.name, "primitives": [
            {"attributes": attrs, "indices": indices, "material": self._material(part.material), "mode": 4}]})
        self._meshes[id(part)] = len(self.doc["meshes"]) - 1
        return self._meshes[id(part)]

    def add_node(self, name: str, part: MeshPart | None = None, extras: dict | None = None,
                 parent: int | None = 0, translation: np.ndarray | None = None, yaw: float | None = None,
                 scale: float | None = None, instances: dict[str, np.ndarray] | None = None) -> int:
        """Add a node (optionally with a mesh) under `parent`; returns its index.

        translation : (3,) world frame; yaw : radians about up; scale : uniform. instances : {"translation": (k, 3) world frame,
        "yaw": (k,) radians about up, "scale": (k,)} -> EXT_mesh_gpu_instancing on this node.
        """
        node: dict[str, Any] = {"name": name}
        if part is not None:
            node["mesh"] = self.add_mesh(part)
            count = len(instances["translation"]) if instances is not None else 1
            self.triangles += part.n_triangles * count
        if extras:
            node["extras"] = to_jsonable(extras)
        if translation is not None:
            node["translation"] = to_gltf_frame(np.asarray(translation)[None])[0].tolist()
        if yaw is not None:
            node["rotation"] = [0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2)]
        if scale is not None:
            node["scale"] = [float(scale)] * 3
        if instances is not None:
            if part is None:
                raise ValueError(f"node {name!r}: instancing needs a mesh")
            t = to_gltf_frame(instances["translation"]).astype(np.float32)
            half = np.asarray(instances["yaw"], dtype=np.float64) / 2
            q = np.column_stack([np.zeros_like(half), np.sin(half), np.zeros_like(half), np.cos(half)])
            s = np.repeat(np.asarray(instances["scale"], dtype=np.float64)[:, None], 3, axis=1)
            node["extensions"] = {"EXT_mesh_gpu_instancing": {"attributes": {
                "TRANSLATION": self._accessor(t, FLOAT, "VEC3", None),
                "ROTATION": self._accessor(q, FLOAT, "VEC4", None),
                "SCALE": self._accessor(s, FLOAT, "VEC3", None)}}}
            used = self.doc.setdefault("extensionsUsed", [])
            if "EXT_mesh_gpu_instancing" not in used:
                used.append("EXT_mesh_gpu_instancing")
        self.doc["nodes"].append(node)
        index = len(self.doc["nodes"]) - 1
        if parent is not None:
            self.doc["nodes"][parent].setdefault("children", []).append(index)
        return index

    def to_bytes(self) -> bytes:
        while len(self.blob) % 4:
            self.blob.append(0)
        doc = dict(self.doc)
        doc["buffers"] = [{"byteLength": len(self.blob)}]
        for key in ("meshes", "accessors", "bufferViews", "materials", "images", "textures", "samplers"):
            if key in doc and not doc[key]:
                doc.pop(key)
        if not self.blob:
            doc.pop("buffers")
        text = json.dumps(doc, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
        if self.blob:
            chunks += struct.pack("<II", len(self.blob), 0x004E4942) + bytes(self.blob)
        return struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks


