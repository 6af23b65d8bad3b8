"""Interior-mapping atlases for building windows: NeRF colour + depth maps of rooms from several viewpoints (ENV-c2).

An atlas is a directory written by `build_atlas` (shipped examples: ``data/interiors/<name>/``; rebuild
them from a checkpoint with ``gaiverse interiors atlas --out DIR``). Contents:

``atlas.json`` (format ``gaiverse-interior-atlas-1``)::

    {
      "format": "gaiverse-interior-atlas-1",
      "tile_size": 256,                      # every room map is tile_size x tile_size pixels
      "grid": [cols, rows],                  # layout of the rooms in the two sheet images
      "colour_sheet": "atlas_colour.png",    # RGB 8-bit sRGB, all rooms tiled row-major
      "depth_sheet": "atlas_depth.png",      # 8-bit grayscale, same tiling
      "depth_encoding": "...",               # the rule below, in words
      "source": {"checkpoint", "scene", "images", "licence"},
      "rooms": [{
          "id": 0,
          "tile": [col, row],                # position in the sheets
          "uv_rect": [u0, v0, u1, v1],       # the tile in sheet UVs, origin top-left, v down (image order)
          "colour": "room_00_colour.png",    # the same tile as its own file
          "depth": "room_00_depth.png",
          "depth_min": 0.9, "depth_max": 4.2,  # metres (world units of the capture) of depth value 0 and 255
          "fov_y_deg": 60.0,                 # vertical = horizontal field of view of the square camera
          "viewpoint": {"view", "yaw_deg", "pitch_deg", "dolly"},
          "variation": {"hue_shift_deg", "saturation", "brightness", "warmth"}
      }, ...]
    }

Depth encoding: the value v in [0, 255] of a depth pixel maps linearly to z-depth along the camera axis,
``z = depth_min + v / 255 * (depth_max - depth_min)`` (world units; metres for metric captures).
``depth_min``/``depth_max`` are the 2nd/98th percentiles of the rendered depth of that room (values
outside are clamped), and pixels the NeRF left empty (opacity < 0.5) are written as 255 (far wall).
To use a room in a parallax shader: sample colour at the window UV offset by the view direction scaled
by the decoded depth relative to the window plane (the window sits at ``depth_min``); ``fov_y_deg``
gives the camera that produced the maps if an exact reprojection is wanted.

Different buildings get different rooms: rooms combine training viewpoints (turned by a few degrees,
moved along the axis) with seeded colour variations (hue, saturation, brightness, warm/cool light), so
the same capture furnishes a street of different-looking interiors.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from gaiverse.interiors.model_card import LICENCE_NOTE
from gaiverse.interiors.render import RenderedView, render_view, to_uint8
from gaiverse.interiors.training import NerfModel, load_checkpoint
from gaiverse.world.tiles import file_sha256

log = logging.getLogger(__name__)

ATLAS_FORMAT = "gaiverse-interior-atlas-1"
DEPTH_ENCODING = ("z = depth_min + v / 255 * (depth_max - depth_min), z-depth along the camera axis in world units; "
                  "v = 255 where the NeRF is empty (opacity < 0.5)")


@dataclass
class Viewpoint:
    """A camera derived from training camera `view`: turned by yaw/pitch (degrees) and moved `dolly` along its axis."""

    view: int = 0
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    dolly: float = 0.0


@dataclass
class ColourVariation:
    hue_shift_deg: float = 0.0
    saturation: float = 1.0
    brightness: float = 1.0
    warmth: float = 0.0
    """> 0 warmer (more red, less blue) light, < 0 cooler."""


@dataclass
class RoomMaps:
    colour: np.ndarray
    """(s, s, 3) float32 RGB in [0, 1]."""
    depth: np.ndarray
    """(s, s) float32 z-depth, world units."""
    opacity: np.ndarray
    fov_y_deg: float
    viewpoint: Viewpoint


def viewpoint_camera(meta: dict, viewpoint: Viewpoint, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(K, c2w, fov) of a square `size` camera at `viewpoint`; the field of view is the training camera's narrower one."""
    h, w = meta["hw"]
    K_train = np.asarray(meta["K"][viewpoint.view])
    fov = 2 * min(math.atan(w / 2 / K_train[0, 0]), math.atan(h / 2 / K_train[1, 1]))
    f = size / 2 / math.tan(fov / 2)
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=np.float64)
    yaw, pitch = math.radians(viewpoint.yaw_deg), math.radians(viewpoint.pitch_deg)
    turn_y = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    turn_x = np.array([[1, 0, 0], [0, math.cos(pitch), math.sin(pitch)], [0, -math.sin(pitch), math.cos(pitch)]])
    c2w = np.array(meta["c2w"][viewpoint.view], dtype=np.float64, copy=True)
    c2w[:3, :3] = c2w[:3, :3] @ turn_y @ turn_x  # camera axes: y down, so +pitch looks up
    c2w[:3, 3] += c2w[:3, 2] * viewpoint.dolly
    return K, c2w, math.degrees(fov)


def render_maps(model: NerfModel, meta: dict, viewpoint: Viewpoint, size: int = 256) -> RoomMaps:
    """Colour and depth of a square `size` view (256 for the window atlas)."""
    if not 0 <= viewpoint.view < len(meta["images"]):
        raise ValueError(f"`view` must be in 0..{len(meta['images']) - 1}, got {viewpoint.view}")
    K, c2w, fov = viewpoint_camera(meta, viewpoint, size)
    view: RenderedView = render_view(model, K, c2w, (size, size))
    return RoomMaps(colour=view.rgb, depth=view.depth, opacity=view.opacity, fov_y_deg=fov, viewpoint=viewpoint)


def vary_colour(rgb: np.ndarray, variation: ColourVariation) -> np.ndarray:
    """Hue rotation, saturation, brightness and warm/cool tint of an RGB image in [0, 1]."""
    hsv = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2HSV)  # H in degrees for float input
    hsv[..., 0] = (hsv[..., 0] + variation.hue_shift_deg) % 360
    hsv[..., 1] = np.clip(hsv[..., 1] * variation.saturation, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * variation.brightness, 0, 1)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    tint = np.array([1 + variation.warmth, 1.0, 1 - variation.warmth], dtype=np.float32)
    return np.clip(out * tint, 0, 1)


def encode_depth(depth: np.ndarray, opacity: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(8-bit depth image, depth_min, depth_max) with the linear encoding of the module docstring."""
    solid = opacity >= 0.5
    values = depth[solid] if solid.any() else depth.ravel()
    lo, hi = float(np.percentile(values, 2)), float(np.percentile(values, 98))
    hi = hi if hi > lo else lo + 1e-3
    code = np.clip((depth - lo) / (hi - lo), 0, 1)
    code[~solid] = 1.0
    return (code * 255).round().astype(np.uint8), lo, hi


def decode_depth(code: np.ndarray, depth_min: float, depth_max: float) -> np.ndarray:
    """Inverse of `encode_depth` (world units)."""
    return depth_min + code.astype(np.float32) / 255 * (depth_max - depth_min)


def write_maps(maps: RoomMaps, out_dir: Path, stem: str, variation: ColourVariation | None = None) -> dict:
    """``<stem>_colour.png``, ``<stem>_depth.png`` and ``<stem>_depth.json`` (metric range); returns their paths and range."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colour = vary_colour(maps.colour, variation) if variation else maps.colour
    code, lo, hi = encode_depth(maps.depth, maps.opacity)
    paths = {"colour": out_dir / f"{stem}_colour.png", "depth": out_dir / f"{stem}_depth.png",
             "depth_json": out_dir / f"{stem}_depth.json"}
    cv2.imwrite(str(paths["colour"]), cv2.cvtColor(to_uint8(colour), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(paths["depth"]), code)
    paths["depth_json"].write_text(json.dumps({"depth_min": lo, "depth_max": hi, "encoding": DEPTH_ENCODING,
                                               "fov_y_deg": maps.fov_y_deg, "viewpoint": asdict(maps.viewpoint)}))
    return {**paths, "depth_min": lo, "depth_max": hi}


def room_plan(n_views: int, rooms: int, seed: int) -> list[tuple[Viewpoint, ColourVariation]]:
    """`rooms` (viewpoint, colour variation) pairs: cycle through the cameras, small seeded turns, one neutral room first."""
    rng = np.random.default_rng(seed)
    plan = []
    for i in range(rooms):
        viewpoint = Viewpoint(view=i % n_views, yaw_deg=0.0 if i < n_views else float(rng.uniform(-12, 12)),
                              pitch_deg=0.0 if i < n_views else float(rng.uniform(-5, 5)))
        variation = ColourVariation() if i == 0 else ColourVariation(
            hue_shift_deg=float(rng.uniform(-40, 40)), saturation=float(rng.uniform(0.8, 1.6)),
            brightness=float(rng.uniform(0.75, 1.15)), warmth=float(rng.uniform(-0.15, 0.2)))
        plan.append((viewpoint, variation))
    return plan


def _licence(meta: dict) -> str:
    """The renderings inherit the photos' licence: the checkpoint's own note, else the shipped kapture samples'
    (every shipped scene is one); a user's room has no licence line (it is theirs, sealed with their key)."""
    if meta.get("licence"):
        return meta["licence"]
    return LICENCE_NOTE if str(meta.get("scene", "")).startswith("kapture_") else ""


def build_atlas(checkpoint: Path, out_dir: Path, rooms: int = 6, size: int = 256, seed: int = 0) -> Path:
    """Render `rooms` rooms from the checkpoint into `out_dir` (per-room PNGs, two sheets, atlas.json); returns atlas.json."""
    if rooms < 1:
        raise ValueError(f"`rooms` must be >= 1, got {rooms}")
    model, meta = load_checkpoint(checkpoint)
    cols = min(rooms, 4)
    rows = math.ceil(rooms / cols)
    colour_sheet = np.zeros((rows * size, cols * size, 3), np.uint8)
    depth_sheet = np.full((rows * size, cols * size), 255, np.uint8)
    entries = []
    for i, (viewpoint, variation) in enumerate(room_plan(len(meta["images"]), rooms, seed)):
        maps = render_maps(model, meta, viewpoint, size)
        written = write_maps(maps, out_dir, f"room_{i:02d}", variation)
        col, row = i % cols, i // cols
        colour_sheet[row * size:(row + 1) * size, col * size:(col + 1) * size] = cv2.imread(str(written["colour"]))
        depth_sheet[row * size:(row + 1) * size, col * size:(col + 1) * size] = cv2.imread(
            str(written["depth"]), cv2.IMREAD_GRAYSCALE)
        written["depth_json"].unlink()  # the atlas.json carries the range
        entries.append({"id": i, "tile": [col, row],
                        "uv_rect": [col / cols, row / rows, (col + 1) / cols, (row + 1) / rows],
                        "colour": written["colour"].name, "depth": written["depth"].name,
                        "depth_min": written["depth_min"], "depth_max": written["depth_max"],
                        "fov_y_deg": maps.fov_y_deg, "viewpoint": asdict(viewpoint), "variation": asdict(variation)})
        log.info("room %d: view %d, depth %.2f..%.2f", i, viewpoint.view, written["depth_min"], written["depth_max"])
    cv2.imwrite(str(out_dir / "atlas_colour.png"), colour_sheet)
    cv2.imwrite(str(out_dir / "atlas_depth.png"), depth_sheet)
    atlas = {"format": ATLAS_FORMAT, "tile_size": size, "grid": [cols, rows], "colour_sheet": "atlas_colour.png",
             "depth_sheet": "atlas_depth.png", "depth_encoding": DEPTH_ENCODING,
             "source": {"checkpoint": Path(checkpoint).name, "checkpoint_sha256": file_sha256(checkpoint),
                        "scene": meta["scene"], "images": list(meta["images"]), "licence": _licence(meta)},
             "rooms": entries}
    path = out_dir / "atlas.json"
    path.write_text(json.dumps(atlas, indent=1))
    return path
