"""Heightmap -> terrain grid mesh with vertex colours (elevation, slope, water), a triangle budget, and a water plane.

The mesh is a regular grid of vertices at the corners of the layout's cells (so it covers
exactly [0, width] x [0, height] metres), coarsened evenly until it fits the triangle budget.
`HeightField` samples the surface the mesh actually shows, so roads, trees and buildings
placed with it sit on the rendered ground. Implements ENV-d1 (the terrain that procedural
elements are placed on) for the world export.

Frame: x east, y north, z up, metres; `glb` converts to glTF's y-up when writing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gaiverse.world.glb import MeshPart

log = logging.getLogger(__name__)


@dataclass
class TerrainMeshConfig:
    """How the terrain is meshed and coloured."""

    max_triangles: int = 160_000
    """Triangle budget of the terrain grid; the grid is coarsened evenly to fit."""
    beach_m: float = 1.5
    """Height band above the water level coloured as sand."""
    rock_slope_deg: float = 32.0
    """Slopes steeper than this are coloured as rock."""
    snow_share: float = 0.93
    """Share of the height range above which the ground is coloured as snow (only with > 300 m relief)."""


@dataclass
class HeightField:
    """Heights at the corners of a regular grid, sampled bilinearly (the terrain mesh's surface)."""

    corners: np.ndarray
    """(rows + 1, cols + 1) float64 metres; corners[0] is the northern edge."""
    extent_m: tuple[float, float]
    """(width east, height north), metres."""

    @classmethod
    def from_cells(cls, heights: np.ndarray, cell_m: float) -> HeightField:
        """Corner heights as the mean of the (up to four) cells around each corner."""
        h = np.pad(np.asarray(heights, dtype=np.float64), 1, mode="edge")
        corners = 0.25 * (h[:-1, :-1] + h[1:, :-1] + h[:-1, 1:] + h[1:, 1:])
        return cls(corners, (heights.shape[1] * cell_m, heights.shape[0] * cell_m))

    @property
    def spacing_m(self) -> tuple[float, float]:
        """(dx, dy) between corner columns / rows, metres."""
        return (self.extent_m[0] / (self.corners.shape[1] - 1), self.extent_m[1] / (self.corners.shape[0] - 1))

    def resampled(self, rows: int, cols: int) -> HeightField:
        """The same surface on a coarser (rows + 1) x (cols + 1) corner grid (bilinear)."""
        r = np.linspace(0, self.corners.shape[0] - 1, rows + 1)
        c = np.linspace(0, self.corners.shape[1] - 1, cols + 1)
        rr, cc = np.meshgrid(r, c, indexing="ij")
        return HeightField(ndimage.map_coordinates(self.corners, [rr, cc], order=1, mode="nearest"), self.extent_m)

    def height_at(self, xy: np.ndarray) -> np.ndarray:
        """Heights (n,) at points (n, 2) metres (x east, y north), clamped to the grid."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        dx, dy = self.spacing_m
        col = np.clip(xy[:, 0] / dx, 0, self.corners.shape[1] - 1)
        row = np.clip((self.extent_m[1] - xy[:, 1]) / dy, 0, self.corners.shape[0] - 1)
        return ndimage.map_coordinates(self.corners, [row, col], order=1, mode="nearest")

    def grid_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of every corner, each (rows + 1, cols + 1)."""
        rows, cols = self.corners.shape
        x = np.linspace(0, self.extent_m[0], cols)
        y = np.linspace(self.extent_m[1], 0, rows)
        return np.meshgrid(x, y)


def ground_field(heights: np.ndarray, cell_m: float, water: np.ndarray, water_level_m: float,
                 terrain_cell_m: float | None = None, depth_m: float = 1.5) -> HeightField:
    """The ground surface of a layout: corner heights, refined to `terrain_cell_m` (bilinear) and with
    every corner under water at least `depth_m` below the water surface (a bed under the water plane).

    heights : (h, w) metres at cell centres; water : (h, w) bool.
    """
    heights = np.asarray(heights, dtype=np.float64)
    if heights.ndim != 2 or heights.shape != np.shape(water):
        raise ValueError(f"`heights` and `water` must be 2-D of one shape, got {heights.shape} and {np.shape(water)}")
    field = HeightField.from_cells(heights, cell_m)
    if terrain_cell_m is not None and terrain_cell_m < cell_m:
        if terrain_cell_m <= 0:
            raise ValueError(f"`terrain_cell_m` must be positive, got {terrain_cell_m}")
        field = field.resampled(max(1, round(field.extent_m[1] / terrain_cell_m)),
                                max(1, round(field.extent_m[0] / terrain_cell_m)))
    if water_level_m >= 0 and np.any(water):
        xs, ys = field.grid_xy()
        wet = water_at(np.asarray(water, bool), cell_m, np.column_stack([xs.ravel(), ys.ravel()])).reshape(xs.shape)
        field.corners = np.where(wet, np.minimum(field.corners, water_level_m - depth_m), field.corners)
    return field


def water_at(water: np.ndarray, cell_m: float, xy: np.ndarray) -> np.ndarray:
    """(n,) bool: is the layout cell under each point (n, 2) metres water?"""
    h, w = water.shape
    col = np.clip((xy[:, 0] / cell_m).astype(int), 0, w - 1)
    row = np.clip((h - xy[:, 1] / cell_m).astype(int), 0, h - 1)
    return water[row, col]


def grid_for_budget(rows: int, cols: int, max_triangles: int) -> tuple[int, int]:
    """The largest (rows, cols) cell grid with the same aspect whose 2*rows*cols triangles fit the budget."""
    if max_triangles < 2:
        raise ValueError(f"`max_triangles` must be >= 2, got {max_triangles}")
    if 2 * rows * cols <= max_triangles:
        return rows, cols
    f = math.sqrt(max_triangles / (2.0 * rows * cols))
    return max(1, int(rows * f)), max(1, int(cols * f))


def terrain_colours(field: HeightField, water_level_m: float, config: TerrainMeshConfig) -> np.ndarray:
    """(rows + 1, cols + 1, 4) uint8 colours by elevation, slope and water: grass -> forest green -> rock -> snow."""
    z = field.corners
    dx, dy = field.spacing_m
    gy, gx = np.gradient(z, dy, dx)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    lo, span = float(z.min()), max(float(np.ptp(z)), 1e-6)
    t = (z - lo) / span
    grass, upland = np.array([96, 140, 62.0]), np.array([120, 128, 80.0])
    rock, snow = np.array([128, 122, 112.0]), np.array([236, 238, 242.0])
    sand, bed = np.array([206, 190, 140.0]), np.array([90, 100, 90.0])
    rgb = grass + (upland - grass) * t[..., None]
    steep = np.clip((slope - config.rock_slope_deg + 8) / 16, 0, 1)[..., None]
    rgb = rgb * (1 - steep) + rock * steep
    if span > 300:
        snowy = np.clip((t - config.snow_share) / 0.04, 0, 1)[..., None]
        rgb = rgb * (1 - snowy) + snow * snowy
    if water_level_m >= 0:
        rgb = np.where((z <= water_level_m + config.beach_m)[..., None], sand, rgb)
        rgb = np.where((z < water_level_m - 0.2)[..., None], bed, rgb)
    out = np.empty(z.shape + (4,), np.uint8)
    out[..., :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    out[..., 3] = 255
    return out


def terrain_mesh(field: HeightField, water_level_m: float,
                 config: TerrainMeshConfig | None = None) -> tuple[MeshPart, HeightField]:
    """Mesh a ground surface within the triangle budget. Implements ENV-d1 (terrain for the world).

    field : the ground (from `ground_field`, carved by roads). Returns the terrain part and the
    HeightField of exactly the surface it shows (coarser than `field` when over budget).
    """
    cfg = config or TerrainMeshConfig()
    rows, cols = (n - 1 for n in field.corners.shape)
    fit = grid_for_budget(rows, cols, cfg.max_triangles)
    if fit != (rows, cols):
        log.warning("terrain %dx%d cells over the budget of %d triangles: coarsened to %dx%d",
                    rows, cols, cfg.max_triangles, *fit)
        field = field.resampled(*fit)
        rows, cols = fit
    xs, ys = field.grid_xy()
    vertices = np.column_stack([xs.ravel(), ys.ravel(), field.corners.ravel()])
    colours = terrain_colours(field, water_level_m, cfg).reshape(-1, 4)
    faces = grid_faces(rows + 1, cols + 1)
    log.info("terrain mesh: %dx%d cells, %d triangles (budget %d)", rows, cols, len(faces), cfg.max_triangles)
    part = MeshPart("terrain", vertices, faces, colours, extras={
        "type": "terrain", "id": "terrain", "cells": [rows, cols], "cell_m": round(field.spacing_m[0], 4)}, smooth=True)
    return part, field


def grid_faces(n_rows: int, n_cols: int) -> np.ndarray:
    """(2 (n_rows-1)(n_cols-1), 3) counter-clockwise (seen from above) triangles of a vertex grid in row-major order."""
    r, c = np.meshgrid(np.arange(n_rows - 1), np.arange(n_cols - 1), indexing="ij")
    a = (r * n_cols + c).ravel()
    b, d, e = a + 1, a + n_cols, a + n_cols + 1
    # rows run southwards, so (a, d, b) turns counter-clockwise seen from +z
    return np.concatenate([np.column_stack([a, d, b]), np.column_stack([b, d, e])]).astype(np.uint32)


def water_plane(extent_m: tuple[float, float], water_level_m: float) -> MeshPart | None:
    """One quad over the whole world at the water surface (None when the world has no water)."""
    if water_level_m < 0:
        return None
    w, h = extent_m
    vertices = np.array([[0, 0, water_level_m], [w, 0, water_level_m], [w, h, water_level_m], [0, h, water_level_m]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.uint32)
    colours = np.tile(np.array([[52, 104, 170, 255]], np.uint8), (4, 1))
    return MeshPart("water", vertices, faces, colours, extras={"type": "water", "id": "water", "level_m": water_level_m},
                    material="water")
