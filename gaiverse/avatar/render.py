"""Server-side previews of an avatar (or any character) .glb: offscreen OpenGL through EGL (AV-c1 rendering).

The avatar flow attaches turntable PNG/MP4 previews to its Prefect run, so they are rendered on the server
without a display or a GPU: moderngl on an EGL surfaceless context (Mesa llvmpipe on Debian). The .glb is
read with ``gaiverse.character.gltf_writer.read_glb``; the node hierarchy, skins, morph targets and
animations are evaluated here in numpy (rest pose, or a clip sampled at a time, as glTF defines it), and
only the posed triangles go to the GPU. Materials: base colour factor and texture (TEXCOORD_0, sRGB),
alpha MASK/BLEND; lighting is a key/fill/rim rig fixed to the camera, so a turntable shows every side
equally lit. ``turntable_mp4`` and ``talking_mp4`` pipe raw frames into Debian's ffmpeg.

Public API: ``render_views``, ``turntable_png``, ``turntable_mp4``, ``talking_mp4`` (+ ``GlbScene``,
``Camera`` and ``renderer`` for callers that draw many poses of one model, ``release`` to free a thread's
context, ``RenderUnavailable`` when EGL or moderngl is missing).
"""

from __future__ import annotations

import io
import logging
import math
import subprocess
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gaiverse.character.gltf_writer import read_accessor, read_glb
from gaiverse.character.preview import png_bytes
from gaiverse.character.transforms import matrix as quaternion_matrix

log = logging.getLogger(__name__)

BACKGROUND = (0.11, 0.13, 0.17)
"""Linear RGB of the empty background (the web terminal's dark blue-grey)."""
FOV_DEG = 30.0
MAX_SIDE = 4096
MAX_SECONDS = 120.0
EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri"


class RenderUnavailable(RuntimeError):
    """Offscreen rendering cannot start here (no moderngl, no EGL, no Mesa driver)."""


# ---------------------------------------------------------------------------------------- the glb, evaluated


@dataclass
class Material:
    colour: np.ndarray
    """Linear RGBA base colour factor."""
    texture: np.ndarray | None = None
    """(H, W, 4) uint8 sRGB base colour texture (glTF orientation: first row is v = 0)."""
    alpha_mode: str = "OPAQUE"
    alpha_cutoff: float = 0.5


@dataclass
class Primitive:
    """Triangles of one material; ``attributes`` is shared with the mesh's other primitives."""

    attributes: int
    """Index into ``MeshNode.attribute_sets``."""
    indices: np.ndarray
    material: Material


@dataclass
class AttributeSet:
    positions: np.ndarray
    normals: np.ndarray
    uv: np.ndarray | None
    joints: np.ndarray | None
    weights: np.ndarray | None
    morph_positions: list[np.ndarray]
    morph_normals: list[np.ndarray | None]


@dataclass
class MeshNode:
    node: int
    skin: int | None
    attribute_sets: list[AttributeSet]
    primitives: list[Primitive]
    target_names: list[str]
    default_weights: np.ndarray


@dataclass
class Channel:
    node: int
    path: str
    times: np.ndarray
    values: np.ndarray
    """(K, width) keys; CUBICSPLINE keys keep only their value (tangents dropped: linear in between)."""
    step: bool


@dataclass
class Posed:
    """World-space triangles of one pose, ready to draw."""

    positions: list[np.ndarray]
    normals: list[np.ndarray]
    parts: list[tuple[MeshNode, int]]
    """Per entry: the mesh and the index of its attribute set the positions/normals belong to."""

    def bounds(self, only_morphed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        chosen = [p for p, (m, _) in zip(self.positions, self.parts) if m.target_names or not only_morphed]
        points = np.concatenate(chosen or self.positions)
        return points.min(axis=0), points.max(axis=0)


@dataclass
class GlbScene:
    """A parsed .glb: node rest transforms, meshes, skins and named clips, evaluated at any pose."""

    gltf: dict[str, Any]
    parents: list[int]
    rest: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Per node (translation, rotation quaternion xyzw, scale)."""
    meshes: list[MeshNode]
    skins: list[tuple[list[int], np.ndarray]]
    """Per skin (joint nodes, (J, 4, 4) inverse bind matrices)."""
    clips: dict[str, list[Channel]] = field(default_factory=dict)

    @classmethod
    def from_glb(cls, glb: bytes) -> "GlbScene":
        if not isinstance(glb, (bytes, bytearray, memoryview)):
            raise ValueError(f"`glb` must be the bytes of a .glb file, got {type(glb).__name__}")
        gltf, blob = read_glb(bytes(glb))
        nodes = gltf.get("nodes", [])
        parents = [-1] * len(nodes)
        for i, node in enumerate(nodes):
            for child in node.get("children", []):
                parents[child] = i
        rest = [_node_trs(node) for node in nodes]
        materials = [_material(gltf, blob, m) for m in range(len(gltf.get("materials", [])))]
        default = Material(np.array([0.8, 0.8, 0.8, 1.0]))
        meshes = [_mesh_node(gltf, blob, i, node, materials, default)
                  for i, node in enumerate(nodes) if "mesh" in node]
        if not meshes:
            raise ValueError("`glb` has no mesh to render")
        skins = [(list(s["joints"]), read_accessor(gltf, blob, s["inverseBindMatrices"]).reshape(-1, 4, 4)
                  .transpose(0, 2, 1).astype(np.float64) if "inverseBindMatrices" in s
                  else np.tile(np.eye(4), (len(s["joints"]), 1, 1))) for s in gltf.get("skins", [])]
        clips = {a.get("name", f"clip{k}"): _channels(gltf, blob, a)
                 for k, a in enumerate(gltf.get("animations", []))}
        return cls(gltf, parents, rest, meshes, skins, clips)

    @property
    def morph_names(self) -> set[str]:
        return {name for m in self.meshes for name in m.target_names}

    def clip_duration(self, clip: str) -> float:
        channels = self._clip(clip)
        return float(max((c.times[-1] for c in channels), default=0.0))

    def _clip(self, clip: str) -> list[Channel]:
        if clip not in self.clips:
            raise ValueError(f"`clip` must be one of {sorted(self.clips)}, got {clip!r}")
        return self.clips[clip]

    def pose(self, clip: str | None = None, t: float | None = None,
             morphs: dict[str, float] | None = None) -> Posed:
        """World-space triangles at rest, or at time ``t`` of ``clip``; ``morphs`` override clip weights."""
        trs = [list(x) for x in self.rest]
        weights = {m.node: m.default_weights.copy() for m in self.meshes}
        if clip is not None:
            t = 0.0 if t is None else _finite(t, "t")
            for channel in self._clip(clip):
                value = _sample(channel, t)
                if channel.path == "weights":
                    if channel.node in weights:
                        n = len(weights[channel.node])
                        weights[channel.node] = value[:n] if value.size >= n else np.resize(value, n)
                else:
                    trs[channel.node][{"translation": 0, "rotation": 1, "scale": 2}[channel.path]] = value
        self._check_morphs(morphs)
        for mesh in self.meshes:
            for name, w in (morphs or {}).items():
                if name in mesh.target_names:
                    weights[mesh.node][mesh.target_names.index(name)] = float(w)
        world = self._world([_trs_matrix(*x) for x in trs])
        positions, normals, parts = [], [], []
        for mesh in self.meshes:
            for k, attrs in enumerate(mesh.attribute_sets):
                p, n = self._deform(mesh, attrs, weights[mesh.node], world)
                positions.append(p)
                normals.append(n)
                parts.append((mesh, k))
        return Posed(positions, normals, parts)

    def _check_morphs(self, morphs: dict[str, float] | None) -> None:
        if not morphs:
            return
        unknown = sorted(set(morphs) - self.morph_names)
        if unknown:
            raise ValueError(f"`morphs` names {unknown} are not morph targets of this glb "
                             f"(it has {len(self.morph_names)}: {sorted(self.morph_names)[:12]}...)")
        for name, w in morphs.items():
            _finite(w, f"morphs[{name!r}]")

    def _world(self, local: list[np.ndarray]) -> list[np.ndarray]:
        world: list[np.ndarray | None] = [None] * len(local)

        def resolve(i: int) -> np.ndarray:
            if world[i] is None:
                p = self.parents[i]
                world[i] = local[i] if p < 0 else resolve(p) @ local[i]
            return world[i]  # type: ignore[return-value]

        return [resolve(i) for i in range(len(local))]

    def _deform(self, mesh: MeshNode, attrs: AttributeSet, weights: np.ndarray,
                world: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Morph, then skin (or apply the node transform): (V, 3) world positions and unit normals."""
        pos = attrs.positions.astype(np.float64)
        nor = attrs.normals.astype(np.float64)
        for k, w in enumerate(weights):
            if w != 0.0 and k < len(attrs.morph_positions):
                pos = pos + w * attrs.morph_positions[k]
                if attrs.morph_normals[k] is not None:
                    nor = nor + w * attrs.morph_normals[k]
        if mesh.skin is not None and attrs.joints is not None and attrs.weights is not None:
            joints, ibm = self.skins[mesh.skin]
            mats = np.stack([world[j] for j in joints]) @ ibm  # (J, 4, 4)
            per_vertex = mats[attrs.joints.astype(np.int64)]  # (V, 4, 4, 4)
            blend = np.einsum("vk,vkij->vij", attrs.weights.astype(np.float64), per_vertex)
            pos = np.einsum("vij,vj->vi", blend[:, :3, :3], pos) + blend[:, :3, 3]
            nor = np.einsum("vij,vj->vi", blend[:, :3, :3], nor)
        else:
            m = world[mesh.node]
            pos = pos @ m[:3, :3].T + m[:3, 3]
            nor = nor @ np.linalg.inv(m[:3, :3])
        length = np.linalg.norm(nor, axis=1, keepdims=True)
        return pos.astype(np.float32), (nor / np.maximum(length, 1e-12)).astype(np.float32)


def _finite(value: Any, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return out


def _node_trs(node: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if "matrix" in node:  # decompose (no shear in glTF): translation, rotation, scale
        m = np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T
        scale = np.linalg.norm(m[:3, :3], axis=0)
        return m[:3, 3].copy(), _matrix_quaternion(m[:3, :3] / scale), scale
    return (np.asarray(node.get("translation", [0, 0, 0]), np.float64),
            np.asarray(node.get("rotation", [0, 0, 0, 1]), np.float64),
            np.asarray(node.get("scale", [1, 1, 1]), np.float64))


def _matrix_quaternion(r: np.ndarray) -> np.ndarray:
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return np.array([x, y, z, w])


def _trs_matrix(t: np.ndarray, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.float64)
    out = np.eye(4)
    out[:3, :3] = quaternion_matrix(q / max(np.linalg.norm(q), 1e-12)) * np.asarray(s, np.float64)
    out[:3, 3] = t
    return out


def _material(gltf: dict[str, Any], blob: bytes, index: int) -> Material:
    spec = gltf["materials"][index]
    pbr = spec.get("pbrMetallicRoughness", {})
    texture = None
    if "baseColorTexture" in pbr:
        texture = _image(gltf, blob, gltf["textures"][pbr["baseColorTexture"]["index"]].get("source"))
    return Material(np.asarray(pbr.get("baseColorFactor", [1, 1, 1, 1]), np.float64), texture,
                    spec.get("alphaMode", "OPAQUE"), float(spec.get("alphaCutoff", 0.5)))


def _image(gltf: dict[str, Any], blob: bytes, source: int | None) -> np.ndarray | None:
    """RGBA pixels of an embedded image (bufferView or data: URI); None when it cannot be decoded."""
    import base64

    from PIL import Image

    if source is None:
        return None
    image = gltf["images"][source]
    if "bufferView" in image:
        view = gltf["bufferViews"][image["bufferView"]]
        start = view.get("byteOffset", 0)
        data = blob[start:start + view["byteLength"]]
    elif image.get("uri", "").startswith("data:"):
        data = base64.b64decode(image["uri"].split(",", 1)[1])
    else:
        log.warning("skipping external texture %s (previews read embedded images only)", image.get("uri"))
        return None
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def _mesh_node(gltf: dict[str, Any], blob: bytes, node_index: int, node: dict[str, Any],
               materials: list[Material], default: Material) -> MeshNode:
    spec = gltf["meshes"][node["mesh"]]
    sets: dict[str, int] = {}
    attribute_sets: list[AttributeSet] = []
    primitives = []
    for prim in spec["primitives"]:
        if prim.get("mode", 4) != 4:
            continue  # previews draw triangles only (lines/points carry no surface)
        key = repr(sorted(prim["attributes"].items())) + repr(prim.get("targets"))
        if key not in sets:
            sets[key] = len(attribute_sets)
            attribute_sets.append(_attributes(gltf, blob, prim))
        count = len(attribute_sets[sets[key]].positions)
        indices = (read_accessor(gltf, blob, prim["indices"]) if "indices" in prim
                   else np.arange(count)).astype(np.uint32).reshape(-1)
        material = materials[prim["material"]] if "material" in prim else default
        primitives.append(Primitive(sets[key], indices, material))
    names = list((spec.get("extras") or {}).get("targetNames", []))
    n_targets = max((len(p.get("targets", [])) for p in spec["primitives"]), default=0)
    names += [f"target{k}" for k in range(len(names), n_targets)]
    weights = np.zeros(n_targets)
    weights[:len(spec.get("weights", []))] = spec.get("weights", [])[:n_targets]
    return MeshNode(node_index, node.get("skin"), attribute_sets, primitives, names[:n_targets], weights)


def _attributes(gltf: dict[str, Any], blob: bytes, prim: dict[str, Any]) -> AttributeSet:
    a = prim["attributes"]
    positions = read_accessor(gltf, blob, a["POSITION"]).astype(np.float32)
    normals = (read_accessor(gltf, blob, a["NORMAL"]).astype(np.float32) if "NORMAL" in a
               else np.tile(np.float32([0, 1, 0]), (len(positions), 1)))
    uv = read_accessor(gltf, blob, a["TEXCOORD_0"]).astype(np.float32) if "TEXCOORD_0" in a else None
    joints = read_accessor(gltf, blob, a["JOINTS_0"]) if "JOINTS_0" in a else None
    weights = None
    if "WEIGHTS_0" in a:
        acc = gltf["accessors"][a["WEIGHTS_0"]]
        raw = read_accessor(gltf, blob, a["WEIGHTS_0"]).astype(np.float64)
        scale = {5121: 255.0, 5123: 65535.0}.get(acc["componentType"], 1.0)
        weights = raw / scale
    targets = prim.get("targets", [])
    morph_positions = [read_accessor(gltf, blob, t["POSITION"]).astype(np.float64) if "POSITION" in t
                       else np.zeros((len(positions), 3)) for t in targets]
    morph_normals = [read_accessor(gltf, blob, t["NORMAL"]).astype(np.float64) if "NORMAL" in t else None
                     for t in targets]
    return AttributeSet(positions, normals, uv, joints, weights, morph_positions, morph_normals)


def _channels(gltf: dict[str, Any], blob: bytes, animation: dict[str, Any]) -> list[Channel]:
    out = []
    for channel in animation.get("channels", []):
        target = channel["target"]
        if "node" not in target or target["path"] not in ("translation", "rotation", "scale", "weights"):
            continue
        sampler = animation["samplers"][channel["sampler"]]
        times = read_accessor(gltf, blob, sampler["input"]).astype(np.float64).reshape(-1)
        values = read_accessor(gltf, blob, sampler["output"]).astype(np.float64).reshape(len(times) * (
            3 if sampler.get("interpolation") == "CUBICSPLINE" else 1), -1)
        if sampler.get("interpolation") == "CUBICSPLINE":
            values = values.reshape(len(times), 3, -1)[:, 1]
        step = sampler.get("interpolation") == "STEP"
        out.append(Channel(target["node"], target["path"], times, values, step))
    return out


def _sample(channel: Channel, t: float) -> np.ndarray:
    """Channel value at ``t`` (clamped to the keys): step, or linear (normalised lerp for rotations)."""
    times, values = channel.times, channel.values
    if t <= times[0] or len(times) == 1:
        return values[0].copy()
    if t >= times[-1]:
        return values[-1].copy()
    k = int(np.searchsorted(times, t, side="right") - 1)
    if channel.step:
        return values[k].copy()
    f = (t - times[k]) / max(times[k + 1] - times[k], 1e-12)
    a, b = values[k], values[k + 1]
    if channel.path == "rotation":
        b = -b if np.dot(a, b) < 0 else b
        q = a * (1 - f) + b * f
        return q / max(np.linalg.norm(q), 1e-12)
    return a * (1 - f) + b * f


# ------------------------------------------------------------------------------------------ OpenGL side

VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
uniform mat4 model_view;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_normal;
out vec2 v_uv;
void main() {
    gl_Position = mvp * vec4(in_position, 1.0);
    v_normal = mat3(model_view) * in_normal;
    v_uv = in_uv;
}
"""
FRAGMENT_SHADER = """
#version 330
uniform vec4 base_colour;
uniform bool has_texture;
uniform sampler2D base_texture;
uniform float alpha_cutoff;
in vec3 v_normal;
in vec2 v_uv;
out vec4 colour;
const vec3 KEY = normalize(vec3(-0.45, 0.55, 0.70));
const vec3 FILL = normalize(vec3(0.6, 0.2, 0.5));
const vec3 RIM = normalize(vec3(0.1, 0.5, -0.9));
void main() {
    vec4 albedo = base_colour;
    if (has_texture) {
        vec4 texel = texture(base_texture, v_uv);
        albedo *= vec4(pow(texel.rgb, vec3(2.2)), texel.a);  // sRGB texture -> linear
    }
    if (albedo.a < alpha_cutoff) discard;
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;
    float sky = 0.5 + 0.5 * n.y;
    vec3 ambient = mix(vec3(0.16, 0.15, 0.14), vec3(0.30, 0.33, 0.38), sky);
    vec3 light = ambient + 0.95 * max(dot(n, KEY), 0.0) + 0.30 * max(dot(n, FILL), 0.0)
               + 0.35 * pow(max(dot(n, RIM), 0.0), 2.0);
    vec3 lit = albedo.rgb * light;
    colour = vec4(pow(clamp(lit, 0.0, 1.0), vec3(1.0 / 2.2)), albedo.a);  // linear -> sRGB
}
"""


class GlContext:
    """One thread's EGL OpenGL context with the shader and a few textures (shared by every image size)."""

    MAX_TEXTURES = 8

    def __init__(self) -> None:
        try:
            import moderngl
        except ImportError as err:
            raise RenderUnavailable(f"offscreen rendering needs the Python package moderngl ({err}); "
                                    "install requirements/requirements-extra.txt") from err
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as err:  # noqa: BLE001 - glcontext raises bare Exceptions (no libEGL/driver)
            raise RenderUnavailable(f"no EGL OpenGL 3.3 context ({err}); install the Debian packages "
                                    f"{EGL_PACKAGES} (requirements/apt.txt)") from err
        self.moderngl = moderngl
        self.program = self.ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=FRAGMENT_SHADER)
        self.name = self.ctx.info.get("GL_RENDERER", "unknown")
        self._textures: OrderedDict[int, tuple[np.ndarray, Any]] = OrderedDict()

    def texture(self, pixels: np.ndarray):
        """The GPU texture of ``pixels``; cached by identity while the array is held here (so an id is
        never reused for other pixels), the least recently used one released beyond ``MAX_TEXTURES``."""
        key = id(pixels)
        if key in self._textures:
            self._textures.move_to_end(key)
            return self._textures[key][1]
        data = np.ascontiguousarray(pixels)
        tex = self.ctx.texture((data.shape[1], data.shape[0]), 4, data.tobytes())
        tex.build_mipmaps()
        tex.filter = (self.moderngl.LINEAR_MIPMAP_LINEAR, self.moderngl.LINEAR)
        self._textures[key] = (pixels, tex)
        while len(self._textures) > self.MAX_TEXTURES:
            self._textures.popitem(last=False)[1][1].release()
        return tex


class Renderer:
    """Framebuffers of one size on this thread's context; draws ``Posed`` geometry from any yaw."""

    def __init__(self, gl: GlContext, size: tuple[int, int], antialias: bool = True):
        self.gl, self.ctx, self.moderngl, self.program = gl, gl.ctx, gl.moderngl, gl.program
        self.size = size
        samples = min(4, self.ctx.max_samples) if antialias else 0  # 4x MSAA costs ~5x on llvmpipe
        self.msaa = self.ctx.framebuffer(color_attachments=[self.ctx.renderbuffer(size, 4, samples=samples)],
                                         depth_attachment=self.ctx.depth_renderbuffer(size, samples=samples))
        self.resolved = self.ctx.framebuffer(color_attachments=[self.ctx.renderbuffer(size, 4)])
        self.renderer_name = gl.name

    def draw(self, posed: Posed, camera: "Camera", yaw_degrees: float | Sequence[float],
             background: Sequence[float] = BACKGROUND) -> np.ndarray | list[np.ndarray]:
        """(H, W, 3) uint8 sRGB image of ``posed`` turned by ``yaw_degrees`` about the vertical axis
        (a list of images for a list of yaws: the geometry is uploaded once)."""
        batch = isinstance(yaw_degrees, (list, tuple))
        buffers, items = self._upload(posed)
        try:
            yaws = yaw_degrees if batch else [yaw_degrees]
            images = [self._draw(items, camera, yaw, background) for yaw in yaws]
        finally:
            for item in buffers:
                item.release()
        return images if batch else images[0]

    def _upload(self, posed: Posed) -> tuple[list[Any], list[list[tuple[Any, Material]]]]:
        """GPU buffers of the posed triangles: (everything to release, [opaque, blended] (vao, material))."""
        ctx, buffers, passes = self.ctx, [], [[], []]
        for positions, normals, (mesh, k) in zip(posed.positions, posed.normals, posed.parts):
            uv = mesh.attribute_sets[k].uv
            uv = uv if uv is not None else np.zeros((len(positions), 2), np.float32)
            vbo = ctx.buffer(np.hstack([positions, normals, uv]).astype("f4").tobytes())
            buffers.append(vbo)
            for prim in mesh.primitives:
                if prim.attributes != k:
                    continue
                ibo = ctx.buffer(prim.indices.tobytes())
                vao = ctx.vertex_array(self.program, [(vbo, "3f 3f 2f", "in_position", "in_normal", "in_uv")],
                                       index_buffer=ibo, index_element_size=4)
                buffers += [vao, ibo]
                passes[prim.material.alpha_mode == "BLEND"].append((vao, prim.material))
        return buffers, passes

    def _draw(self, passes: list[list[tuple[Any, Material]]], camera: "Camera", yaw_degrees: float,
              background: Sequence[float]) -> np.ndarray:
        ctx, gl = self.ctx, self.moderngl
        self.msaa.use()
        bg = np.clip(np.asarray(background, np.float64), 0, 1) ** (1 / 2.2)
        self.msaa.clear(*bg, 0.0, depth=1.0)
        ctx.enable(gl.DEPTH_TEST)
        ctx.disable(gl.CULL_FACE)
        model, view = camera.turn(yaw_degrees), camera.view()
        self.program["mvp"].write((camera.projection(self.size) @ view @ model).T.astype("f4").tobytes())
        self.program["model_view"].write((view @ model).T.astype("f4").tobytes())
        for blended, items in enumerate(passes):
            if blended:
                ctx.enable(gl.BLEND)
                ctx.depth_mask = False
            for vao, material in items:
                self._set_material(material)
                vao.render(gl.TRIANGLES)
        ctx.disable(gl.BLEND)
        ctx.depth_mask = True
        ctx.copy_framebuffer(self.resolved, self.msaa)
        raw = self.resolved.read(components=3, alignment=1)
        image = np.frombuffer(raw, np.uint8).reshape(self.size[1], self.size[0], 3)
        return np.ascontiguousarray(image[::-1])  # OpenGL rows start at the bottom

    def _set_material(self, material: Material) -> None:
        self.program["base_colour"].value = tuple(float(c) for c in material.colour)
        self.program["alpha_cutoff"].value = material.alpha_cutoff if material.alpha_mode == "MASK" else 0.0
        has_texture = material.texture is not None
        self.program["has_texture"].value = has_texture
        if has_texture:
            self.gl.texture(material.texture).use(0)
            self.program["base_texture"].value = 0


@dataclass
class Camera:
    """A perspective camera on the +Z side looking at ``target``; the model turns about the vertical axis."""

    target: np.ndarray
    distance: float
    pivot: np.ndarray
    """Point on the vertical turn axis (the model's horizontal centre)."""
    elevation_deg: float = 8.0

    @classmethod
    def framing(cls, posed: Posed, framing: str = "body", size: tuple[int, int] = (512, 512)) -> "Camera":
        """Fit the whole body (every yaw), or the head (meshes with morph targets: the face), to ``size``."""
        if framing not in ("body", "head"):
            raise ValueError(f"`framing` must be 'body' or 'head', got {framing!r}")
        lo, hi = posed.bounds()
        pivot = np.array([(lo[0] + hi[0]) / 2, 0.0, (lo[2] + hi[2]) / 2])
        if framing == "head":
            has_face = any(m.target_names for m, _ in posed.parts)
            lo, hi = posed.bounds(only_morphed=True) if has_face else (
                np.array([lo[0], hi[1] - 0.15 * (hi[1] - lo[1]), lo[2]]), hi)
        points = np.concatenate(posed.positions)
        inside = np.all((points >= lo - 1e-6) & (points <= hi + 1e-6), axis=1)
        horizontal = float(np.linalg.norm((points[inside] - pivot)[:, [0, 2]], axis=1).max())
        half_height = float(hi[1] - lo[1]) / 2
        margin = 1.08 if framing == "body" else 1.2
        tan_v = math.tan(math.radians(FOV_DEG) / 2)
        tan_h = tan_v * size[0] / size[1]
        distance = horizontal + margin * max(half_height / tan_v, horizontal / tan_h)
        target = np.array([pivot[0], (lo[1] + hi[1]) / 2, pivot[2]])
        return cls(target, distance, pivot, 6.0 if framing == "body" else 3.0)

    def turn(self, yaw_degrees: float) -> np.ndarray:
        a = math.radians(yaw_degrees)
        rot = np.eye(4)
        rot[[0, 0, 2, 2], [0, 2, 0, 2]] = [math.cos(a), math.sin(a), -math.sin(a), math.cos(a)]
        to, back = np.eye(4), np.eye(4)
        to[:3, 3], back[:3, 3] = -self.pivot, self.pivot
        return back @ rot @ to

    def eye(self) -> np.ndarray:
        e = math.radians(self.elevation_deg)
        return self.target + self.distance * np.array([0.0, math.sin(e), math.cos(e)])

    def view(self) -> np.ndarray:
        eye = self.eye()
        f = self.target - eye
        f /= np.linalg.norm(f)
        s = np.cross(f, [0.0, 1.0, 0.0])
        s /= np.linalg.norm(s)
        u = np.cross(s, f)
        out = np.eye(4)
        out[0, :3], out[1, :3], out[2, :3] = s, u, -f
        out[:3, 3] = -out[:3, :3] @ eye
        return out

    def projection(self, size: tuple[int, int]) -> np.ndarray:
        aspect = size[0] / size[1]
        near, far = self.distance / 50, self.distance * 4
        f = 1 / math.tan(math.radians(FOV_DEG) / 2)
        out = np.zeros((4, 4))
        out[0, 0], out[1, 1] = f / aspect, f
        out[2, 2], out[2, 3] = (far + near) / (near - far), 2 * far * near / (near - far)
        out[3, 2] = -1.0
        return out


_LOCAL = threading.local()


def renderer(size: tuple[int, int], antialias: bool = True) -> Renderer:
    """This thread's renderer for ``size`` (an EGL context is current in the thread that made it)."""
    if getattr(_LOCAL, "gl", None) is None:
        _LOCAL.gl, _LOCAL.renderers = GlContext(), {}
        log.info("EGL OpenGL context: %s", _LOCAL.gl.name)
    key = (*size, bool(antialias))
    if key not in _LOCAL.renderers:
        _LOCAL.renderers[key] = Renderer(_LOCAL.gl, size, antialias)
    return _LOCAL.renderers[key]


def release() -> None:
    """Free this thread's OpenGL context (a worker thread that is done rendering keeps none alive)."""
    gl = getattr(_LOCAL, "gl", None)
    if gl is not None:
        gl.ctx.release()
        _LOCAL.gl, _LOCAL.renderers = None, {}


def _size(size: Sequence[int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"`size` must be (width, height) in pixels, got {size!r}") from None
    if not (16 <= w <= MAX_SIDE and 16 <= h <= MAX_SIDE):
        raise ValueError(f"`size` sides must be 16..{MAX_SIDE} pixels, got {size!r}")
    return w, h


def _yaws(yaw_degrees: Sequence[float]) -> list[float]:
    given = yaw_degrees if isinstance(yaw_degrees, (list, tuple)) else []
    yaws = [_finite(y, "yaw_degrees") for y in given]
    if not yaws:
        raise ValueError(f"`yaw_degrees` must be a non-empty list of angles in degrees, got {yaw_degrees!r}")
    return yaws


# ----------------------------------------------------------------------------------------------- the API


def render_views(glb: bytes, yaw_degrees: list[float], size: tuple[int, int] = (512, 512),
                 morphs: dict[str, float] | None = None, clip: str | None = None, t: float | None = None,
                 framing: str = "body", background: Sequence[float] = BACKGROUND,
                 antialias: bool = True) -> list[np.ndarray]:
    """One (H, W, 3) uint8 RGB image per yaw (degrees; 0 faces the camera, positive turns the model to its
    left), at rest or at ``t`` seconds of ``clip``, with ``morphs`` ({target name: weight}) applied.

    The camera is fitted once for all yaws, so the silhouette turns and does not rescale.
    """
    yaws, size = _yaws(yaw_degrees), _size(size)
    scene = GlbScene.from_glb(glb)
    posed = scene.pose(clip, t, morphs)
    unmorphed = scene.pose(clip, t) if morphs else posed  # frame without them: an open jaw must not zoom out
    camera = Camera.framing(unmorphed, framing, size)
    return renderer(size, antialias).draw(posed, camera, yaws, background)


def turntable_png(glb: bytes, n_views: int = 8, size: tuple[int, int] = (256, 320), columns: int = 4,
                  morphs: dict[str, float] | None = None, clip: str | None = None,
                  t: float | None = None) -> bytes:
    """A contact sheet of ``n_views`` yaws evenly around the model (front first), labelled, as PNG bytes."""
    from PIL import Image, ImageDraw

    if not isinstance(n_views, int) or not 1 <= n_views <= 64:
        raise ValueError(f"`n_views` must be an integer 1..64, got {n_views!r}")
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"`columns` must be a positive integer, got {columns!r}")
    yaws = [360.0 * k / n_views for k in range(n_views)]
    views = render_views(glb, yaws, size, morphs, clip, t)
    cols = min(columns, n_views)
    rows = math.ceil(n_views / cols)
    sheet = Image.new("RGB", (cols * size[0], rows * size[1]))
    draw = ImageDraw.Draw(sheet)
    for k, (yaw, view) in enumerate(zip(yaws, views)):
        x, y = (k % cols) * size[0], (k // cols) * size[1]
        sheet.paste(Image.fromarray(view), (x, y))
        draw.text((x + 6, y + 4), f"{yaw:.0f} deg", fill=(200, 206, 216))
    return png_bytes(sheet)  # not optimize=True: 3 % smaller, 4x slower


def turntable_mp4(glb: bytes, seconds: float = 4.0, fps: int = 24, size: tuple[int, int] = (384, 512),
                  clip: str | None = "idle", framing: str = "body", antialias: bool = False) -> bytes:
    """H.264 MP4 of one full turn in ``seconds``; ``clip`` (default idle, if the glb has it) loops meanwhile.

    No MSAA by default: on a CPU rasteriser it costs ~5x per frame, and H.264 softens the edges anyway."""
    seconds = _finite(seconds, "seconds")
    if not 0.2 <= seconds <= MAX_SECONDS:
        raise ValueError(f"`seconds` must be 0.2..{MAX_SECONDS}, got {seconds}")
    fps = _fps(fps)
    size = _size(size)
    scene = GlbScene.from_glb(glb)
    clip = clip if clip in scene.clips else None
    duration = scene.clip_duration(clip) if clip else 0.0
    camera = Camera.framing(scene.pose(), framing, size)
    r = renderer(size, antialias)
    n = max(1, round(seconds * fps))
    frames = (r.draw(scene.pose(clip, (k / fps) % duration if duration > 0 else 0.0), camera, 360.0 * k / n)
              for k in range(n))
    return encode_mp4(frames, size, fps)


def talking_mp4(glb: bytes, audio: np.ndarray, sr: int, fps: int = 25, size: tuple[int, int] = (384, 384),
                clip: str | None = "talk", framing: str = "head", antialias: bool = False) -> bytes:
    """MP4 of the avatar speaking ``audio`` (mono float, ``sr`` Hz), with the audio muxed in (AAC).

    The face follows ``clip`` (the glb's "talk" clip, made from this same voice sample) when the glb has it;
    otherwise (or with ``clip=None``) the lip-sync model predicts the mouth from ``audio`` directly.
    """
    audio = np.asarray(audio, np.float32).reshape(-1)
    sr = int(sr)
    if sr < 8000 or sr > 96000:
        raise ValueError(f"`sr` must be 8000..96000 Hz, got {sr}")
    if audio.size == 0 or not np.isfinite(audio).all():
        raise ValueError("`audio` must be a non-empty finite mono signal")
    if audio.size / sr > MAX_SECONDS:
        raise ValueError(f"`audio` is {audio.size / sr:.1f} s long; at most {MAX_SECONDS:.0f} s")
    fps, size = _fps(fps), _size(size)
    scene = GlbScene.from_glb(glb)
    n = max(1, int(math.ceil(audio.size / sr * fps)))
    camera = Camera.framing(scene.pose(), framing, size)
    r = renderer(size, antialias)
    if clip is not None and clip in scene.clips:
        frames = (r.draw(scene.pose(clip, k / fps), camera, 0.0) for k in range(n))
    else:
        mouth = _lipsync_morphs(audio, sr, scene.morph_names)
        frames = (r.draw(scene.pose(morphs=mouth(k / fps)), camera, 0.0) for k in range(n))
    with tempfile.TemporaryDirectory(prefix="gaiverse-talk-") as tmp:
        from gaiverse.speech.wav import float_to_pcm16, write_wav

        wav = write_wav(Path(tmp) / "voice.wav", float_to_pcm16(audio), sr)
        return encode_mp4(frames, size, fps, audio_path=wav)


def _lipsync_morphs(audio: np.ndarray, sr: int, available: set[str]):
    """t -> {ARKit name: weight} from the trained lip-sync model (100 predictions per second)."""
    from gaiverse.avatar.lipsync_model import SAMPLE_RATE, LipsyncModel
    from gaiverse.avatar.lipsync_targets import BLENDSHAPES

    if sr != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(sr, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, sr // g).astype(np.float32)
    weights = LipsyncModel.load().predict_blendshapes(audio)
    names = [(k, name) for k, name in enumerate(BLENDSHAPES) if name in available]

    def at(t: float) -> dict[str, float]:
        i = min(int(round(t * 100)), len(weights) - 1)
        return {name: float(weights[i, k]) for k, name in names} if i >= 0 else {}

    return at


def _fps(fps: Any) -> int:
    if not isinstance(fps, int) or not 1 <= fps <= 60:
        raise ValueError(f"`fps` must be an integer 1..60, got {fps!r}")
    return fps


def encode_mp4(frames, size: tuple[int, int], fps: int, audio_path: Path | None = None) -> bytes:
    """H.264 (yuv420p, faststart) MP4 of RGB ``frames`` piped raw into ffmpeg, optionally with AAC audio."""
    import shutil

    if shutil.which("ffmpeg") is None:
        raise RenderUnavailable("encoding MP4 needs ffmpeg (Debian package ffmpeg, requirements/apt.txt)")
    with tempfile.TemporaryDirectory(prefix="gaiverse-mp4-") as tmp:
        out = Path(tmp) / "out.mp4"
        command = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "-"]
        if audio_path is not None:
            command += ["-i", str(audio_path), "-c:a", "aac", "-b:a", "96k"]
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                    "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-movflags", "+faststart", str(out)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdin is not None
        try:
            for frame in frames:
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
        finally:
            process.stdin.close()
        error = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.wait() != 0:
            raise RuntimeError(f"ffmpeg failed to encode the MP4: {error.strip()[-400:]}")
        return out.read_bytes()
