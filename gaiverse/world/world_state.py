"""The editable state of one world version: layout rasters, buildings, controls, and their stored form.

A version of a world is this state (heights, roads by class, water, buildings, the controls
and prompt it came from) plus files derived from it (the .glb, a 16-bit heightmap PNG, a
top-down map PNG). Edits (`editing.py`) map a state to a new state; `versions.py` stores it.
Coordinates, as in `road_graph` and `buildings_layout`: metres, x east, y north, origin at the
south-west corner; raster row 0 is the northern edge, so cell (row, col) has its centre at
x = (col + 0.5) * cell_m, y = (h - row - 0.5) * cell_m. Implements ENV-a3 (the unit that
is versioned, diffed, backed up and restored).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from gaiverse.world.layout import Layout
from gaiverse.world.osm import ROAD_CLASSES
from gaiverse.world.suggestions import LayoutControls

log = logging.getLogger(__name__)

#: Raster objects of a state: name -> (kind in the object store, extension).
RASTERS: dict[str, tuple[str, str]] = {
    "heights": ("world/heights", "npy"),
    "roads": ("world/roads", "npy"),
    "water": ("world/water", "npy"),
}
STATE_OBJECTS = (*RASTERS, "buildings")
"""The names `WorldState.objects` stores: what a version's manifest lists for its state."""


@dataclass
class Building:
    """One building as the editor sees it: a footprint in world metres plus what meshing needs."""

    id: str
    """Stable id within the world (kept across edits, so a diff can tell moved from added)."""
    footprint: list[list[float]]
    """(n, 2) polygon corners [x_m, y_m], counter-clockwise, not closed."""
    height_m: float
    """Eave height above the ground, metres."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """Everything else the building model produced (levels, roof, colours...), carried through edits."""

    def centroid(self) -> np.ndarray:
        return np.asarray(self.footprint, dtype=np.float64).mean(axis=0)


@dataclass
class WorldState(Layout):
    """Everything an edit may change; the rest of a version (meshes, previews) is derived from it.

    A layout (heights above the lowest point of the original layout, road masks, water, controls the
    world was generated from — edited controls of regenerated regions are in the edit log) plus
    what the world adds to it.
    """

    prompt: str = ""
    """The user's suggestion the world was built from (what a rebuild re-parses)."""
    buildings: list[Building] = field(default_factory=list)
    """Buildings placed on the layout."""

    def __post_init__(self) -> None:
        self.heights = np.ascontiguousarray(self.heights, dtype=np.float32)
        self.roads = np.ascontiguousarray(self.roads, dtype=bool)
        self.water = np.ascontiguousarray(self.water, dtype=bool)
        h, w = self.heights.shape
        if self.roads.shape != (len(ROAD_CLASSES), h, w) or self.water.shape != (h, w):
            raise ValueError(f"rasters disagree: heights {self.heights.shape}, roads {self.roads.shape}, "
                             f"water {self.water.shape}")
        if not np.isfinite(self.heights).all():
            raise ValueError("`heights` must be finite")

    @classmethod
    def from_layout(cls, layout: Layout, prompt: str = "", buildings: list[Building] | None = None) -> WorldState:
        return cls(layout.heights, layout.roads, layout.water, layout.cell_m, layout.water_level_m,
                   layout.controls, layout.seed, prompt, list(buildings or []))

    @property
    def shape(self) -> tuple[int, int]:
        return self.heights.shape

    @property
    def size_m(self) -> tuple[float, float]:
        """(width east, height north) metres."""
        return self.shape[1] * self.cell_m, self.shape[0] * self.cell_m

    def copy(self) -> WorldState:
        return replace(self, heights=self.heights.copy(), roads=self.roads.copy(), water=self.water.copy(),
                       buildings=[replace(b, footprint=[list(p) for p in b.footprint], attrs=dict(b.attrs))
                                  for b in self.buildings])

    def to_layout(self) -> Layout:
        return Layout(self.heights, self.roads, self.water, self.cell_m, self.water_level_m, self.controls, self.seed)

    # ---- stored form ----
    def objects(self) -> dict[str, tuple[bytes, str, str]]:
        """name -> (bytes, kind, ext) of everything needed to restore this state exactly."""
        out = {name: (array_bytes(getattr(self, name)), kind, ext) for name, (kind, ext) in RASTERS.items()}
        out["buildings"] = (json.dumps([asdict(b) for b in self.buildings], sort_keys=True).encode(),
                            "world/buildings", "json")
        return out

    def describe(self) -> dict[str, Any]:
        """The state's scalars for the manifest (arrays are stored as objects)."""
        return {"prompt": self.prompt, "seed": self.seed, "cell_m": self.cell_m, "shape": list(self.shape),
                "size_m": list(self.size_m), "water_level_m": self.water_level_m,
                "controls": _jsonable(asdict(self.controls)), "road_classes": list(ROAD_CLASSES),
                "stats": self.stats()}

    def stats(self) -> dict[str, Any]:
        return {"relief_m": round(float(np.ptp(self.heights)), 3),
                "min_height_m": round(float(self.heights.min()), 3),
                "max_height_m": round(float(self.heights.max()), 3),
                "road_cells": {c: int(self.roads[k].sum()) for k, c in enumerate(ROAD_CLASSES)},
                "water_share": round(float(self.water.mean()), 4), "buildings": len(self.buildings)}

    @classmethod
    def from_objects(cls, describe: dict[str, Any], blobs: dict[str, bytes]) -> WorldState:
        """Inverse of (describe(), objects())."""
        controls = dict(describe["controls"])
        controls["size_m"] = tuple(controls["size_m"])
        buildings = [Building(**b) for b in json.loads(blobs["buildings"])]
        return cls(array_from_bytes(blobs["heights"]), array_from_bytes(blobs["roads"]),
                   array_from_bytes(blobs["water"]), float(describe["cell_m"]), float(describe["water_level_m"]),
                   LayoutControls(**controls), int(describe["seed"]), describe.get("prompt", ""), buildings)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def array_bytes(array: np.ndarray) -> bytes:
    """A .npy file in memory (exact round trip of dtype and shape; no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def heightmap_png(heights: np.ndarray) -> bytes:
    """16-bit greyscale PNG: 0 = lowest, 65535 = highest cell (the range is in the manifest)."""
    h = np.asarray(heights, dtype=np.float64)
    scaled = (h - h.min()) / max(float(np.ptp(h)), 1e-9) * 65535.0
    return png_bytes(scaled.round().astype(np.uint16))


def map_image(state: WorldState, scale: int = 4) -> np.ndarray:
    """(h*scale, w*scale, 3) uint8 top-down map: hill-shaded terrain, water, roads, building footprints."""
    h = state.heights.astype(np.float64)
    gy, gx = np.gradient(h, state.cell_m)
    shade = np.clip(0.75 + 0.25 * (-gx - gy) / np.sqrt(1 + gx**2 + gy**2), 0.4, 1.0)
    t = (h - h.min()) / max(float(np.ptp(h)), 1e-9)
    low, high = np.array([118, 160, 88]), np.array([196, 178, 140])
    rgb = (low[None, None] * (1 - t[..., None]) + high[None, None] * t[..., None]) * shade[..., None]
    rgb[state.water] = [70, 120, 190]
    rgb[state.roads[1]] = [235, 235, 225]
    rgb[state.roads[0]] = [250, 200, 90]
    image = np.kron(rgb.astype(np.uint8), np.ones((scale, scale, 1), dtype=np.uint8))
    for building in state.buildings:
        _fill_polygon(image, to_pixels(building.footprint, state.shape, state.cell_m, scale), (150, 60, 50))
    return image


def cell_centres(shape: tuple[int, int], cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(x of each column (w,), y of each row (h,)) of cell centres, metres (row 0 is north)."""
    h, w = shape
    return (np.arange(w) + 0.5) * cell_m, (h - np.arange(h) - 0.5) * cell_m


def to_pixels(points_xy, shape: tuple[int, int], cell_m: float, scale: float = 1.0) -> np.ndarray:
    """World metres (x east, y north) -> image pixel coordinates (x right, y down) at `scale` pixels per cell."""
    xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    return np.column_stack([xy[:, 0] / cell_m, shape[0] - xy[:, 1] / cell_m]) * scale


def _fill_polygon(image: np.ndarray, poly_px: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Fill a polygon given in (x, y) pixel coordinates (even-odd rule over its bounding box)."""
    x0, y0 = np.floor(poly_px.min(0)).astype(int)
    x1, y1 = np.ceil(poly_px.max(0)).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    inside = points_in_polygon(np.column_stack([xx.ravel(), yy.ravel()]), poly_px).reshape(xx.shape)
    image[y0:y1, x0:x1][inside] = colour


def points_in_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of (n, 2) points against one polygon (m, 2)."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), dtype=bool)
    px, py = poly[:, 0], poly[:, 1]
    for i in range(len(poly)):
        xa, ya, xb, yb = px[i - 1], py[i - 1], px[i], py[i]
        crosses = (ya > y) != (yb > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = xa + (y - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (x < x_at)
    return inside


def building_cells(building: Building, shape: tuple[int, int], cell_m: float) -> np.ndarray:
    """(h, w) bool raster cells whose centres lie inside the building's footprint."""
    poly = to_pixels(building.footprint, shape, cell_m)
    mask = np.zeros(shape, dtype=bool)
    x0, y0 = np.floor(poly.min(0)).astype(int)
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])
    if x1 <= x0 or y1 <= y0:
        return mask
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    inside = points_in_polygon(np.column_stack([xx.ravel(), yy.ravel()]), poly).reshape(xx.shape)
    mask[y0:y1, x0:x1] = inside
    return mask
