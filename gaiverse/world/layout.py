"""World layouts from controls: stitched terrain and road tiles, water, river, roads kept off water.

Service-flow step 3 of 7.2/8.2 for the layout: explicit controls (from `suggestions`) ->
a heightmap in metres and road masks by class on one grid. Implements ENV-a2.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gaiverse.world.layout_model import LayoutDiffusion, decode_roads, density_threshold_map
from gaiverse.world.osm import ROAD_CLASSES, road_mask_to_png
from gaiverse.world.stitch import TileGrid, stitch_tiles
from gaiverse.world.suggestions import LayoutControls, parse_suggestion

log = logging.getLogger(__name__)


@dataclass
class LayoutGeneratorConfig:
    """How tiles become a world."""

    overlap: int = 8
    """Pixels shared by neighbouring tiles (outpainting context and blending band)."""
    ddim_steps: int = 25
    """DDIM steps per tile."""
    soften_seams_px: float = 3.0
    """Terrain: width of the bands along tile overlap edges blended towards a blur (`stitch.soften_seams`)."""
    tile_relief_share: float = 0.5
    """Relief control of one tile as a share of the world's relief."""
    rural_road_density: float = 0.5
    """Road density outside the settlement, km/km2."""
    coast_strength: float = 0.6
    """Weight of the seaward tilt added to the terrain of coastal worlds (0..1)."""


@dataclass
class Layout:
    """A generated world layout on one grid (row 0 = north)."""

    heights: np.ndarray
    """(h, w) float32 metres above the lowest point."""
    roads: np.ndarray
    """(len(ROAD_CLASSES), h, w) bool road masks by class."""
    water: np.ndarray
    """(h, w) bool cells under water (sea, lake or river)."""
    cell_m: float
    """Metres per cell."""
    water_level_m: float
    """Height of the water surface, metres (NaN-free; -1 when there is no water)."""
    controls: LayoutControls
    """The controls the layout was generated from."""
    seed: int
    """Seed of the generation."""

    def manifest(self) -> dict:
        return {"cell_m": self.cell_m, "shape": list(self.heights.shape), "water_level_m": self.water_level_m,
                "relief_m": float(np.ptp(self.heights)), "road_classes": list(ROAD_CLASSES),
                "road_cells": {c: int(self.roads[k].sum()) for k, c in enumerate(ROAD_CLASSES)},
                "water_share": float(self.water.mean()), "seed": self.seed, "controls": asdict(self.controls)}


class LayoutGenerator:
    """Generates layouts with a terrain and a roads LayoutDiffusion model."""

    def __init__(self, terrain: LayoutDiffusion, roads: LayoutDiffusion, config: LayoutGeneratorConfig | None = None):
        self.terrain, self.roads = terrain, roads
        self.config = config or LayoutGeneratorConfig()
        self.cell_m = float(roads.meta.get("tiling", {}).get("road_cell_m", 8.0))

    @classmethod
    def from_checkpoint(cls, directory: str | Path | None = None,
                        config: LayoutGeneratorConfig | None = None) -> LayoutGenerator:
        from gaiverse.world.training import DEFAULT_CHECKPOINT

        directory = Path(directory) if directory else DEFAULT_CHECKPOINT
        return cls(LayoutDiffusion.from_pretrained(directory / "terrain"),
                   LayoutDiffusion.from_pretrained(directory / "roads"), config)

    def generate(self, controls: LayoutControls, seed: int = 0) -> Layout:
        """Generate the layout for `controls`; same controls and seed -> same layout. Implements ENV-a2."""
        cfg, cell = self.config, self.cell_m
        h_px, w_px = (max(8, math.ceil(s / cell)) for s in (controls.size_m[1], controls.size_m[0]))
        px = self.terrain.config.tile_px
        grid = TileGrid.covering(h_px, w_px, px, cfg.overlap)
        rng = np.random.default_rng(seed)

        # 1. terrain: stitched normalised field, rescaled to the requested relief
        tile_controls = self.terrain.control_vector({
            "relief_m": controls.relief_m * cfg.tile_relief_share, "cell_m": cell,
            "roughness": controls.roughness, "steepness": controls.steepness})
        field = stitch_tiles(self.terrain, grid, lambda i, j: tile_controls, seed=seed, steps=cfg.ddim_steps,
                             steepness=controls.steepness, soften_seams_px=cfg.soften_seams_px)[0]
        field = field[:h_px, :w_px].astype(np.float64)
        field = (field - field.min()) / max(float(np.ptp(field)), 1e-9)
        if controls.coast:
            field = (1 - cfg.coast_strength) * field + cfg.coast_strength * _ramp(field.shape, rng)
        water = np.zeros(field.shape, dtype=bool)
        level = -1.0
        if controls.water_level > 0:
            level = float(np.quantile(field, controls.water_level))
            water |= field <= level
        if controls.river:
            river = _river_mask(field.shape, rng)
            floor = level if level >= 0 else float(np.quantile(field, 0.02))
            field = np.where(river, np.minimum(field, floor), field)
            water |= river
            level = floor
        heights = (field - field.min()) * controls.relief_m / max(float(np.ptp(field)), 1e-9)
        water_level_m = float((level - field.min()) * controls.relief_m / max(float(np.ptp(field)), 1e-9)) if level >= 0 else -1.0

        # 2. roads: density falls off from the centre; none on water
        roads = np.zeros((len(ROAD_CLASSES), h_px, w_px), dtype=bool)
        if controls.road_density > 0:
            canvas = stitch_tiles(self.roads, grid, lambda i, j: self._road_controls(controls, grid, i, j),
                                  seed=seed + 7919, steps=cfg.ddim_steps)
            roads = decode_roads(canvas, self.roads.config, self._road_thresholds(canvas, controls, grid))[:, :h_px, :w_px]
            roads &= ~water[None]
        log.info("layout %dx%d px at %.1f m: relief %.0f m, water %.0f %%, road cells %d", h_px, w_px, cell,
                 float(np.ptp(heights)), 100 * water.mean(), int(roads.any(0).sum()))
        return Layout(heights.astype(np.float32), roads, water, cell, water_level_m, controls, seed)

    def _road_thresholds(self, canvas: np.ndarray, controls: LayoutControls, grid: TileGrid) -> np.ndarray | None:
        """Per-pixel decoding thresholds so each tile's cleaned roads have the density its control asks for."""
        if self.roads.config.road_encoding != "distance":
            return None
        tiles = [(i, j) for i in range(grid.rows) for j in range(grid.cols)]
        density = np.array([self._road_controls(controls, grid, i, j)[0] for i, j in tiles])
        return density_threshold_map(canvas, self.roads.config, [grid.origin(i, j) for i, j in tiles], density, self.cell_m)

    def _road_controls(self, controls: LayoutControls, grid: TileGrid, i: int, j: int) -> np.ndarray:
        r, c = grid.origin(i, j)
        centre = np.array(grid.shape) / 2.0
        dist_m = float(np.hypot(r + grid.tile_px / 2 - centre[0], c + grid.tile_px / 2 - centre[1])) * self.cell_m
        radius = controls.settlement_radius_m
        if radius > 0 and dist_m <= radius:
            density = controls.road_density * ((1.6 - 1.2 * dist_m / radius) if controls.dense_centre else 1.0)
        else:
            density = min(controls.road_density, self.config.rural_road_density)
        return self.roads.control_vector({"road_density": density, "major_share": controls.major_share})


def _ramp(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A 0..1 plane falling towards a random side of the world (the sea side)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h - 1, w - 1, 1)
    side = int(rng.integers(4))
    return [yy, 1 - yy, xx, 1 - xx][side]


def _river_mask(shape: tuple[int, int], rng: np.random.Generator, width_px: float = 1.6) -> np.ndarray:
    """A meandering band crossing the world between two opposite sides."""
    h, w = shape
    t = np.linspace(0, 1, 4 * max(h, w))
    phase, amp, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.15), rng.uniform(1.0, 2.5)
    across = 0.5 + amp * np.sin(2 * np.pi * freq * t + phase) + 0.05 * np.sin(7 * t + phase)
    vertical = bool(rng.integers(2))
    rows, cols = (t * (h - 1), across * (w - 1)) if vertical else (across * (h - 1), t * (w - 1))
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros(shape, dtype=bool)
    for r, c in zip(rows[::2], cols[::2]):
        mask |= (yy - r) ** 2 + (xx - c) ** 2 <= width_px**2
    return mask


def sample_layouts(n: int, out_dir: str | Path, prompt: str | None = None, seed: int = 0,
                   checkpoint: str | Path | None = None, steps: int | None = None) -> list[Path]:
    """Write n layouts: heights_<i>.npy (metres), roads_<i>.png (0 none, 1 minor, 2 major),
    water_<i>.png (255 water) and layout_<i>.json (manifest). Implements ENV-a2."""
    if n < 1:
        raise ValueError(f"`n` must be >= 1, got {n}")
    controls = parse_suggestion(prompt) if prompt is not None else LayoutControls(size_m=(512.0, 512.0))
    config = LayoutGeneratorConfig(ddim_steps=steps) if steps else None
    generator = LayoutGenerator.from_checkpoint(checkpoint, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i in range(n):
        layout = generator.generate(controls, seed=seed + i)
        np.save(out / f"heights_{i:03d}.npy", layout.heights)
        Image.fromarray(road_mask_to_png(layout.roads)).save(out / f"roads_{i:03d}.png")
        Image.fromarray((layout.water * 255).astype(np.uint8)).save(out / f"water_{i:03d}.png")
        (out / f"layout_{i:03d}.json").write_text(json.dumps({"prompt": prompt, **layout.manifest()}, indent=1))
        written += [out / f"{k}_{i:03d}.{e}" for k, e in (("heights", "npy"), ("roads", "png"), ("water", "png"),
                                                           ("layout", "json"))]
    return written
