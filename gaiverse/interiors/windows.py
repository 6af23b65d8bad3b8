"""Rooms behind the windows of generated buildings: assign NeRF interior rooms to windows, bake the fallback
texture and ship the colour + depth maps beside the .glb. Implements ENV-c3.

Rooms come from interior atlases (gaiverse/interiors/atlas.py, format ``gaiverse-interior-atlas-1``:
square colour + 8-bit depth maps rendered by the interior NeRF from several viewpoints with colour
variations). A `RoomView` is one such room as a window shows it: the window quad lies in the room
camera's image plane at `window_plane_m` (just before the room's nearest depth) and covers the central
`WINDOW_INSET` of the view, so seen straight on it shows that central crop (the baked texture other
engines use), and seen at an angle the web shader (gaiverse/web/interior_material.js) marches the view
ray, bent at the glass (`RAY_BENDING`), through the depth map for parallax.

Each building gets one room from a hash of its id (a rebuild or an edit keeps a building's rooms), and
each of its windows a mirror flag and a light level from the hash of (building id, window index),
carried by the window's UVs and vertex colours so the fallback texture shows the same variation.

Files beside the .glb, per room used (paths relative to the .glb, listed in the material's `extras`):
``interiors/<room>_colour.png`` (8-bit sRGB) and ``interiors/<room>_depth.png`` (8-bit grey, the atlas
encoding: z = depth_min + v / 255 * (depth_max - depth_min), z-depth along the room camera's axis).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from gaiverse.character.preview import png_bytes
from gaiverse.world.glb import MeshPart

log = logging.getLogger(__name__)

ASSET_DIR = "interiors"
MATERIAL_PREFIX = "interior_"
WINDOW_INSET = 0.8
"""The window shows the central 80 % of the room view at the glass: oblique views see the margin."""
RAY_BEND = 0.6
RAY_BENDING = ("ray through window point q (room camera frame, z = window_plane_m): direction "
               "q / z + s * ray_bend * tan(fov / 2) / (1 + |s|), s = the viewer's lateral slope behind the glass")
"""How the shader bends view rays at the glass: straight on it shows the room as rendered; off axis far
surfaces shift against near ones, while rays stay (nearly) inside the one frustum a perspective view knows."""


@dataclass
class RoomView:
    """One room of an interior atlas, as a window shows it."""

    name: str
    """Library name, [A-Za-z0-9_-] (file and material names derive from it)."""
    colour: np.ndarray
    """(s, s, 3) uint8 sRGB."""
    depth_code: np.ndarray
    """(s, s) uint8 depth in the atlas encoding."""
    depth_min: float
    depth_max: float
    fov_y_deg: float
    """Field of view of the square camera that rendered the room (horizontal = vertical)."""
    source: dict[str, Any] = field(default_factory=dict)
    """Atlas, NeRF checkpoint, scene, viewpoint and colour variation of the room."""

    def __post_init__(self) -> None:
        if self.colour.ndim != 3 or self.colour.shape[2] != 3 or self.colour.dtype != np.uint8:
            raise ValueError(f"room {self.name!r}: colour must be (s, s, 3) uint8, got {self.colour.shape} "
                             f"{self.colour.dtype}")
        if self.depth_code.shape != self.colour.shape[:2] or self.depth_code.dtype != np.uint8:
            raise ValueError(f"room {self.name!r}: depth must be uint8 of the colour's size {self.colour.shape[:2]}, "
                             f"got {self.depth_code.shape} {self.depth_code.dtype}")
        if not 0 < self.depth_min < self.depth_max:
            raise ValueError(f"room {self.name!r}: need 0 < depth_min < depth_max, got {self.depth_min}, "
                             f"{self.depth_max}")
        if not 1.0 < self.fov_y_deg < 170.0:
            raise ValueError(f"room {self.name!r}: fov_y_deg must be within 1..170, got {self.fov_y_deg}")

    @property
    def depth_m(self) -> np.ndarray:
        """(s, s) float32 z-depth in the capture's units."""
        from gaiverse.interiors.atlas import decode_depth

        return decode_depth(self.depth_code, self.depth_min, self.depth_max)

    @property
    def window_plane_m(self) -> float:
        """Where the glass sits: just before the nearest depth, so nothing of the room pokes through it."""
        return 0.95 * self.depth_min

    def baked(self) -> np.ndarray:
        """The room seen straight through the window: the central WINDOW_INSET of the colour map, full size."""
        s = self.colour.shape[0]
        margin = int(round(s * (1 - WINDOW_INSET) / 2))
        crop = Image.fromarray(self.colour[margin:s - margin, margin:s - margin])
        return np.asarray(crop.resize((s, s), Image.BICUBIC))

    def files(self) -> dict[str, bytes]:
        """Colour and depth PNGs keyed by their path relative to the .glb."""
        prefix = f"{ASSET_DIR}/{self.name}"
        return {f"{prefix}_colour.png": _png(self.colour), f"{prefix}_depth.png": _png(self.depth_code)}

    def extras(self) -> dict[str, Any]:
        """The material `extras` block: files, depth encoding and the camera the shader re-projects with."""
        from gaiverse.interiors.atlas import DEPTH_ENCODING

        prefix = f"{ASSET_DIR}/{self.name}"
        return {"atlas": self.name, "colour": f"{prefix}_colour.png", "depth": f"{prefix}_depth.png",
                "depth_encoding": DEPTH_ENCODING, "depth_min": round(self.depth_min, 5),
                "depth_max": round(self.depth_max, 5), "fov_y_deg": round(self.fov_y_deg, 4),
                "fov_x_deg": round(self.fov_y_deg, 4), "window_plane_m": round(self.window_plane_m, 5),
                "window_inset": WINDOW_INSET, "ray_bend": RAY_BEND, "ray_bending": RAY_BENDING,
                "size": list(self.colour.shape[1::-1]), "source": self.source}


def _png(array: np.ndarray) -> bytes:
    return png_bytes(Image.fromarray(array))


def _hash01(*keys: object) -> float:
    digest = hashlib.sha256("|".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


@dataclass
class InteriorLibrary:
    """The rooms windows choose from."""

    views: list[RoomView]

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError("an interior library needs at least one room")
        names = [v.name for v in self.views]
        if len(set(names)) != len(names):
            raise ValueError(f"room names must be unique, got {names}")

    def for_building(self, building_id: str) -> RoomView:
        """Deterministic per building id (stable across rebuilds and edits)."""
        return self.views[int(_hash01("room", building_id) * len(self.views))]


def material_name(view: RoomView) -> str:
    return f"{MATERIAL_PREFIX}{view.name}"


def material_for(view: RoomView) -> tuple[str, dict[str, Any], bytes]:
    """(material name, glTF material, baked base-colour PNG) of a room: what other engines show is the room
    seen straight on, matte and non-metallic so the interior reads at any sun angle."""
    name = material_name(view)
    material = {"name": name, "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0,
                                                       "roughnessFactor": 0.35},
                "extras": {"type": "window_interior", "interior": view.extras()}}
    return name, material, _png(view.baked())


@dataclass
class WindowVariation:
    """Per-window variation of one building's room."""

    mirrored: np.ndarray
    """(n_windows,) bool: the room seen mirrored left-right."""
    light: np.ndarray
    """(n_windows,) float in (0, 1]: light level (vertex colour multiplying the room)."""


def window_variation(building_id: str, n_windows: int) -> WindowVariation:
    keys = [(building_id, k) for k in range(n_windows)]
    mirrored = np.array([_hash01("mirror", *key) < 0.5 for key in keys], dtype=bool)
    light = np.array([0.55 + 0.45 * _hash01("light", *key) for key in keys], dtype=np.float64)
    return WindowVariation(mirrored, light)


def window_quads_uv(n_windows: int, mirrored: np.ndarray) -> np.ndarray:
    """(4 n, 2) glTF UVs of window quads built as buildings_mesh does (corners bottom-left, bottom-right,
    top-right, top-left; the image's top row at the top of the window), mirrored where asked."""
    base = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    uv = np.tile(base, (n_windows, 1)).reshape(n_windows, 4, 2)
    uv[mirrored, :, 0] = 1.0 - uv[mirrored, :, 0]
    return uv.reshape(-1, 2)


def is_window_part(part: MeshPart) -> bool:
    return part.extras.get("part") == "windows" or part.extras.get("type") == "window"


def furnish_windows(part: MeshPart, view: RoomView) -> MeshPart:
    """Give one building's window part the room view's material, per-window UVs and light levels."""
    n = len(part.vertices) // 4
    if n * 4 != len(part.vertices) or len(part.faces) != 2 * n:
        raise ValueError(f"window part {part.name!r} must be quads (4 vertices, 2 triangles each), got "
                         f"{len(part.vertices)} vertices and {len(part.faces)} triangles")
    bid = str(part.extras.get("id", part.name))
    variation = window_variation(bid, n)
    colours = np.full((n, 4), 255, dtype=np.uint8)
    colours[:, :3] = np.round(variation.light * 255).astype(np.uint8)[:, None]
    name = material_name(view)
    extras = {**part.extras, "interior": {"atlas": view.name, "material": name,
                                          "mirrored_windows": int(variation.mirrored.sum())}}
    return replace(part, uv=window_quads_uv(n, variation.mirrored), colours=np.repeat(colours, 4, axis=0),
                   material=name, extras=extras)


@dataclass
class Furnished:
    """What furnishing a world's windows produced."""

    parts: list[MeshPart]
    """The building parts with window parts replaced (others unchanged)."""
    materials: dict[str, tuple[dict[str, Any], bytes]]
    """Material name -> (glTF material, baked PNG) for GlbWriter.add_material."""
    assets: dict[str, bytes]
    """Files beside the .glb (colour + depth maps of the room views used)."""
    stats: dict[str, Any]


def furnish(parts: Sequence[MeshPart], library: InteriorLibrary) -> Furnished:
    """Every window part of `parts` gets its building's room view. Implements ENV-c3."""
    out, used = [], {}
    windows = 0
    for part in parts:
        if not is_window_part(part):
            out.append(part)
            continue
        view = library.for_building(str(part.extras.get("id", part.name)))
        furnished = furnish_windows(part, view)
        used[view.name] = view
        windows += len(part.vertices) // 4
        out.append(furnished)
    materials, assets = {}, {}
    for view in used.values():
        name, material, png = material_for(view)
        materials[name] = (material, png)
        assets.update(view.files())
    stats = {"windows": windows, "window_parts": sum(1 for p in out if is_window_part(p)),
             "room_views_used": len(used), "room_views_available": len(library.views),
             "asset_bytes": sum(len(b) for b in assets.values()),
             "baked_bytes": sum(len(png) for _, png in materials.values())}
    log.info("interiors: %d windows in %d parts use %d of %d room views", windows, stats["window_parts"], len(used),
             len(library.views))
    return Furnished(out, materials, assets, stats)


# ------------------------------------------------------------------------------------------------ checks

def glb_document(glb: bytes) -> dict[str, Any]:
    """The JSON chunk of a .glb."""
    if glb[:4] != b"glTF":
        raise ValueError("not a .glb (missing glTF magic)")
    n = int.from_bytes(glb[12:16], "little")
    return json.loads(glb[20:20 + n])


def check_windows(glb: bytes, assets: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Every window node has a textured interior material with TEXCOORD_0, and every file its extras name is
    among `assets` (when given). Returns counts and the list of problems (empty when valid)."""
    doc = glb_document(glb)
    problems: list[str] = []
    windows = 0
    for node in doc.get("nodes", []):
        extras = node.get("extras", {})
        if "mesh" not in node or not (extras.get("part") == "windows" or extras.get("type") == "window"):
            continue
        windows += 1
        for primitive in doc["meshes"][node["mesh"]]["primitives"]:
            problems += _primitive_problems(doc, node["name"], primitive, assets)
    return {"window_nodes": windows, "problems": problems, "ok": windows > 0 and not problems}


def _primitive_problems(doc: dict, node: str, primitive: dict, assets: dict[str, bytes] | None) -> list[str]:
    if "material" not in primitive:
        return [f"{node}: no material"]
    material = doc["materials"][primitive["material"]]
    interior = material.get("extras", {}).get("interior")
    problems = []
    if interior is None:
        problems.append(f"{node}: material {material.get('name')!r} has no interior extras")
    if "baseColorTexture" not in material.get("pbrMetallicRoughness", {}):
        problems.append(f"{node}: material {material.get('name')!r} has no baked texture")
    if "TEXCOORD_0" not in primitive.get("attributes", {}):
        problems.append(f"{node}: no TEXCOORD_0")
    if interior is not None and assets is not None:
        problems += [f"{node}: {interior[k]} not shipped" for k in ("colour", "depth")
                     if interior.get(k) not in assets]
    return problems


def furnish_scene(scene, library: InteriorLibrary) -> dict[str, Any]:
    """Furnish an assembled WorldScene in place (its .glb is re-made on next use); returns the stats."""
    furnished = furnish(scene.buildings, library)
    scene.buildings = furnished.parts
    scene.materials = {**scene.materials, **furnished.materials}
    scene.assets = {**scene.assets, **furnished.assets}
    scene._glb = None
    return furnished.stats


# ----------------------------------------------------------------------------------- atlas libraries

def default_library_dir() -> Path:
    """Shipped interior atlases (data/interiors/<atlas>/atlas.json)."""
    from gaiverse.world.training import PROJECT_ROOT

    return PROJECT_ROOT / "data" / "interiors"


def atlas_rooms(atlas_json: Path) -> list[RoomView]:
    """The rooms of one atlas directory (gaiverse/interiors/atlas.py format)."""
    from gaiverse.interiors.atlas import ATLAS_FORMAT

    atlas = json.loads(atlas_json.read_text())
    if atlas.get("format") != ATLAS_FORMAT:
        raise ValueError(f"{atlas_json}: format {atlas.get('format')!r} is not {ATLAS_FORMAT}")
    rooms = []
    for room in atlas["rooms"]:
        colour = np.asarray(Image.open(atlas_json.parent / room["colour"]).convert("RGB"))
        depth = np.asarray(Image.open(atlas_json.parent / room["depth"]).convert("L"))
        source = {"atlas": atlas_json.parent.name, "room": room["id"], "viewpoint": room.get("viewpoint"),
                  "variation": room.get("variation"), **{k: v for k, v in atlas.get("source", {}).items()
                                                         if k in ("checkpoint", "scene", "licence")}}
        rooms.append(RoomView(f"{atlas_json.parent.name}_room_{int(room['id']):02d}", colour, depth,
                              float(room["depth_min"]), float(room["depth_max"]), float(room["fov_y_deg"]), source))
    return rooms


def load_library(directory: str | Path | None = None) -> InteriorLibrary:
    """Every room of the atlases in `directory` (an atlas directory, or a folder of them; default data/interiors).
    FileNotFoundError when there is none (flows/train_interior.py + `gaiverse interiors atlas` make them)."""
    root = Path(directory) if directory else default_library_dir()
    found = [root / "atlas.json"] if (root / "atlas.json").is_file() else sorted(root.glob("*/atlas.json"))
    if not found:
        raise FileNotFoundError(f"no interior atlas (atlas.json) in {root} or its subfolders")
    return InteriorLibrary([room for path in found for room in atlas_rooms(path)])
