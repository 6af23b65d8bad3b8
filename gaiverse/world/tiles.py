"""Preprocessing of real DEMs and OSM road networks into normalised training tiles with provenance.

Implements ENV-a1 (the training data of the layout diffusion model). Every tile keeps where it
came from (file, sha256, region, window, cell size) so a catalog can record it and evaluation
can hold whole regions out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from gaiverse.world import terrain_metrics as tm
from gaiverse.world.dem import read_dem, resample_square
from gaiverse.world.osm import ROAD_CLASSES, rasterize_roads, read_roads
from gaiverse.world.road_metrics import thin

log = logging.getLogger(__name__)

#: Region of each shipped file; regions are the unit that evaluation holds out.
REGIONS: dict[str, str] = {
    "landlab_SRTMGL3_40.09_-105.55_40.21_-105.35.asc": "front_range",
    "rmnp-dem.tif": "front_range",
    "landlab_west_bijou_escarpment_snippet.asc": "west_bijou",
    "landlab_west_bijou_gully.asc": "west_bijou",
    "lidar_dem.tif": "minnesota",
    "landlab_new_mexico_DEM_10m.asc": "new_mexico",
    "Helsinki.osm.pbf": "helsinki",
    "test.osm.pbf": "kotka",
    "West-Oakland.osm.bz2": "west_oakland",
    "planet_10.068_48.135_10.071_48.137.osm": "kirchberg",
}
#: Scalar attributes kept per tile.
TERRAIN_ATTRS = ("relief_m", "base_m", "cell_m", "roughness", "mean_slope_deg", "psd_slope", "steepness")
ROAD_ATTRS = ("road_density", "major_share", "cell_m")


def region_of(path: str | Path) -> str:
    """Region name of a data file: from REGIONS, else the file name without suffixes."""
    name = Path(path).name
    return REGIONS.get(name, name.split(".")[0])


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class TileSet:
    """Normalised training tiles of one kind with their scalar attributes and provenance.

    tiles : (n, channels, px, px) float32 in [-1, 1]. Terrain: one channel, heights mapped
    linearly from [base_m, base_m + relief_m] to [-1, 1]. Roads: one channel per ROAD_CLASSES
    entry, +1 where a road of that class is, -1 elsewhere.
    """

    kind: Literal["terrain", "roads"]
    """What the tiles hold."""
    tiles: np.ndarray
    """(n, channels, px, px) float32 normalised tiles."""
    attrs: dict[str, np.ndarray]
    """Scalar attributes, each (n,) float64 (TERRAIN_ATTRS or ROAD_ATTRS)."""
    provenance: list[dict] = field(default_factory=list)
    """Per tile: source, sha256, region, window [row, col, h, w] on the (resampled) grid, cell_m."""

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def regions(self) -> np.ndarray:
        return np.array([p["region"] for p in self.provenance])

    def subset(self, index: np.ndarray) -> TileSet:
        """Tiles selected by a boolean mask or integer index."""
        index = np.asarray(index)
        idx = np.nonzero(index)[0] if index.dtype == bool else index
        return TileSet(self.kind, self.tiles[idx], {k: v[idx] for k, v in self.attrs.items()},
                       [self.provenance[i] for i in idx])

    def split(self, holdout_regions: list[str] | tuple[str, ...]) -> tuple[TileSet, TileSet]:
        """(training tiles, held-out tiles): whole regions go to the held-out side."""
        held = np.isin(self.regions, list(holdout_regions))
        return self.subset(~held), self.subset(held)

    def heights_m(self) -> np.ndarray:
        """Terrain tiles back in metres: (n, px, px) float64."""
        if self.kind != "terrain":
            raise ValueError(f"heights_m needs a terrain TileSet, this one is {self.kind!r}")
        relief, base = self.attrs["relief_m"][:, None, None], self.attrs["base_m"][:, None, None]
        return (self.tiles[:, 0].astype(np.float64) + 1.0) / 2.0 * relief + base

    def save(self, path: str | Path) -> Path:
        """Write `<path>.npz` (tiles + attributes) and `<path>.json` (kind + provenance)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path.with_suffix(".npz"), tiles=self.tiles, **{f"attr_{k}": v for k, v in self.attrs.items()})
        path.with_suffix(".json").write_text(json.dumps({"kind": self.kind, "provenance": self.provenance}, indent=1))
        return path.with_suffix(".npz")

    @classmethod
    def load(cls, path: str | Path) -> TileSet:
        path = Path(path)
        data = np.load(path.with_suffix(".npz"))
        meta = json.loads(path.with_suffix(".json").read_text())
        attrs = {k[5:]: data[k] for k in data.files if k.startswith("attr_")}
        return cls(meta["kind"], data["tiles"], attrs, meta["provenance"])


def normalise_heights(heights: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(h, w) metres -> ((h, w) float32 in [-1, 1], base_m, relief_m)."""
    base, relief = float(heights.min()), float(np.ptp(heights))
    norm = 2.0 * (heights - base) / max(relief, 1e-9) - 1.0
    return norm.astype(np.float32), base, relief


def terrain_attributes(heights: np.ndarray, cell_m: float) -> dict[str, float]:
    """Scalar attributes of one tile in metres: relief, base, cell size, roughness ratio, mean slope, PSD exponent."""
    return {
        "relief_m": float(np.ptp(heights)),
        "base_m": float(heights.min()),
        "cell_m": float(cell_m),
        "roughness": tm.roughness_ratio(heights),
        "mean_slope_deg": float(tm.slope_deg(heights, cell_m).mean()),
        "psd_slope": tm.psd_slope(heights),
        "steepness": tm.steepness(heights, cell_m),
    }


def _windows(shape: tuple[int, int], tile_px: int, stride: int):
    rows, cols = shape
    for r in range(0, rows - tile_px + 1, stride):
        for c in range(0, cols - tile_px + 1, stride):
            yield r, c


def _check_tiling(tile_px: int, stride: int) -> None:
    if tile_px < 8:
        raise ValueError(f"`tile_px` must be at least 8, got {tile_px}")
    if not 1 <= stride <= tile_px:
        raise ValueError(f"`stride` must be within [1, tile_px={tile_px}], got {stride}")


def terrain_tiles(paths: list[str | Path], tile_px: int = 32, stride: int = 16,
                  min_relief_m: float = 0.1) -> TileSet:
    """Cut DEM files into normalised terrain tiles at their native resolution (square cells).

    Geographic grids are resampled to square cells first; windows touching nodata or flatter
    than `min_relief_m` are skipped. Implements ENV-a1.
    """
    _check_tiling(tile_px, stride)
    tiles, prov = [], []
    attrs: dict[str, list[float]] = {k: [] for k in TERRAIN_ATTRS}
    for path in paths:
        dem = read_dem(path)
        grid, cell = resample_square(dem)
        sha, region, kept = file_sha256(path), region_of(path), 0
        for r, c in _windows(grid.shape, tile_px, stride):
            window = grid[r:r + tile_px, c:c + tile_px].astype(np.float64)
            if not np.isfinite(window).all() or np.ptp(window) < min_relief_m:
                continue
            norm, _, _ = normalise_heights(window)
            tiles.append(norm[None])
            for key, value in terrain_attributes(window, cell).items():
                attrs[key].append(value)
            prov.append({"kind": "terrain", "source": Path(path).name, "sha256": sha, "region": region,
                         "window": [r, c, tile_px, tile_px], "cell_m": cell,
                         "native_cell_m": [dem.cell_x_m, dem.cell_y_m], "resampled": grid.shape != dem.shape})
            kept += 1
        log.info("%s: %d terrain tiles (%s, %.1f m cells)", Path(path).name, kept, region, cell)
    if not tiles:
        raise ValueError(f"no {tile_px}x{tile_px} tile without nodata in {[str(p) for p in paths]}")
    return TileSet("terrain", np.stack(tiles), {k: np.array(v) for k, v in attrs.items()}, prov)


def road_attributes(channels: np.ndarray, cell_m: float) -> dict[str, float]:
    """Road density (skeleton km per km2) and major-road share of road pixels for one (C, h, w) tile."""
    union = channels.any(axis=0)
    area_km2 = union.size * (cell_m / 1000.0) ** 2
    n_road = max(int(union.sum()), 1)
    return {"road_density": float(thin(union).sum() * cell_m / 1000.0 / area_km2),
            "major_share": float(channels[ROAD_CLASSES.index("major")].sum() / n_road),
            "cell_m": float(cell_m)}


def road_tiles(paths: list[str | Path], tile_px: int = 32, cell_m: float = 8.0, stride: int = 16,
               max_empty_share: float = 0.1, seed: int = 0) -> TileSet:
    """Rasterise OSM road networks by class and cut them into tiles (values -1 / +1 per class channel).

    Tiles without any road are kept up to `max_empty_share` of the tiles of a file (chosen
    with `seed`). Implements ENV-a1.
    """
    _check_tiling(tile_px, stride)
    if not 0.0 <= max_empty_share <= 1.0:
        raise ValueError(f"`max_empty_share` must be within [0, 1], got {max_empty_share}")
    rng = np.random.default_rng(seed)
    tiles, prov = [], []
    attrs: dict[str, list[float]] = {k: [] for k in ROAD_ATTRS}
    for path in paths:
        network = read_roads(path)
        raster = rasterize_roads(network, cell_m)
        sha, region = file_sha256(path), region_of(path)
        full, empty = [], []
        for r, c in _windows(raster.shape[1:], tile_px, stride):
            (full if raster[:, r:r + tile_px, c:c + tile_px].any() else empty).append((r, c))
        n_empty = min(len(empty), int(max_empty_share * len(full)))
        chosen = full + [empty[i] for i in rng.choice(len(empty), n_empty, replace=False)] if empty else full
        for r, c in chosen:
            window = raster[:, r:r + tile_px, c:c + tile_px]
            tiles.append(np.where(window, 1.0, -1.0).astype(np.float32))
            for key, value in road_attributes(window, cell_m).items():
                attrs[key].append(value)
            prov.append({"kind": "roads", "source": Path(path).name, "sha256": sha, "region": region,
                         "window": [r, c, tile_px, tile_px], "cell_m": cell_m,
                         "origin_lonlat": list(network.origin_lonlat)})
        log.info("%s: %d road tiles (%s)", Path(path).name, len(chosen), region)
    if not tiles:
        raise ValueError(f"no {tile_px}x{tile_px} road tile in {[str(p) for p in paths]}")
    return TileSet("roads", np.stack(tiles), {k: np.array(v) for k, v in attrs.items()}, prov)
