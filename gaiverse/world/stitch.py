"""Seamless worlds from fixed-size diffusion tiles: overlapping outpainting plus cross-fade blending.

Tiles are generated in anti-diagonal waves; each tile is conditioned (inpainting) on the cells
already generated in its overlap, then blended in with complementary linear ramps, so there is
no step at tile borders. Implements ENV-a2 (layouts at the requested world size).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from gaiverse.world.layout_model import LayoutDiffusion

log = logging.getLogger(__name__)


@dataclass
class TileGrid:
    """Placement of overlapping tiles on a canvas."""

    tile_px: int
    """Tile edge, pixels."""
    overlap: int
    """Pixels shared by neighbouring tiles."""
    rows: int
    """Tiles along y."""
    cols: int
    """Tiles along x."""

    @property
    def stride(self) -> int:
        return self.tile_px - self.overlap

    @property
    def shape(self) -> tuple[int, int]:
        """Canvas (height, width) in pixels."""
        return (self.tile_px + (self.rows - 1) * self.stride, self.tile_px + (self.cols - 1) * self.stride)

    def origin(self, i: int, j: int) -> tuple[int, int]:
        return i * self.stride, j * self.stride

    def edge_lines(self, axis: int) -> list[int]:
        """Pixel indices along rows (axis 0) or columns (axis 1) where an overlap starts or ends: the line
        lies between index - 1 and index (where seams would show)."""
        n = self.rows if axis == 0 else self.cols
        return sorted({k * self.stride + d for k in range(1, n) for d in (0, self.overlap)})

    @classmethod
    def covering(cls, height_px: int, width_px: int, tile_px: int, overlap: int) -> TileGrid:
        """The smallest grid whose canvas is at least height_px x width_px."""
        if not 0 <= overlap < tile_px:
            raise ValueError(f"`overlap` must be within [0, tile_px={tile_px}), got {overlap}")
        if height_px < 1 or width_px < 1:
            raise ValueError(f"canvas must be at least 1x1 px, got {height_px}x{width_px}")
        stride = tile_px - overlap
        n = lambda px: max(1, math.ceil(max(px - tile_px, 0) / stride) + 1)  # noqa: E731
        return cls(tile_px, overlap, n(height_px), n(width_px))


def _ramp_weights(grid: TileGrid, i: int, j: int) -> np.ndarray:
    """(px, px) blending weights: complementary linear ramps over overlaps with neighbours, 1 elsewhere."""
    px, ov = grid.tile_px, grid.overlap
    wy, wx = np.ones(px), np.ones(px)
    if ov:
        up = (np.arange(ov) + 0.5) / ov
        if i > 0:
            wy[:ov] = up
        if i < grid.rows - 1:
            wy[-ov:] = up[::-1]
        if j > 0:
            wx[:ov] = up
        if j < grid.cols - 1:
            wx[-ov:] = up[::-1]
    return np.outer(wy, wx)


def stitch_tiles(model: LayoutDiffusion, grid: TileGrid, controls_at: Callable[[int, int], np.ndarray],
                 seed: int = 0, steps: int | None = None, guidance_scale: float | None = None,
                 condition_on_neighbours: bool = True, steepness: float | None = None,
                 soften_seams_px: float = 0.0) -> np.ndarray:
    """Generate a seamless (C, H, W) canvas of normalised values from a tile grid.

    controls_at(i, j) -> (k,) raw controls of tile (i, j), so controls may vary over the
    world (e.g. road density falling off from a dense centre). With
    `condition_on_neighbours`, each tile is inpainted against the cells its earlier
    neighbours produced, then the shared cells are pasted back and the step at the mask
    boundary is spread into the new area by a harmonic correction (inpainting without
    resampling leaves such a step). Blending always uses complementary ramps. `steepness`:
    terrain tiles are steered to it (`LayoutDiffusion.sample`). `soften_seams_px`: see `soften_seams`.
    Implements ENV-a2.
    """
    c, px = model.config.channels, grid.tile_px
    if px != model.config.tile_px:
        raise ValueError(f"`grid.tile_px` ({px}) must equal the model's tile_px ({model.config.tile_px})")
    h, w = grid.shape
    acc = np.zeros((c, h, w))
    wsum = np.zeros((h, w))
    for wave in range(grid.rows + grid.cols - 1):
        cells = [(i, wave - i) for i in range(grid.rows) if 0 <= wave - i < grid.cols]
        controls = np.stack([np.asarray(controls_at(i, j), dtype=np.float64) for i, j in cells])
        known = mask = None
        if condition_on_neighbours and wave > 0:
            known = np.zeros((len(cells), c, px, px), np.float32)
            mask = np.zeros_like(known)
            for k, (i, j) in enumerate(cells):
                r, q = grid.origin(i, j)
                ws = wsum[r:r + px, q:q + px]
                filled = ws > 0
                known[k][:, filled] = (acc[:, r:r + px, q:q + px][:, filled] / ws[filled])
                mask[k][:, filled] = 1.0
        tiles = model.sample(controls, seed=seed * 1_000_003 + wave, steps=steps, guidance_scale=guidance_scale,
                             known=known, known_mask=mask, paste_known=False,
                             steepness=None if steepness is None else np.full(len(cells), steepness))
        if known is not None:
            tiles = np.stack([_harmonic_fit(t, kn, mk) for t, kn, mk in zip(tiles, known, mask)])
        for k, (i, j) in enumerate(cells):
            r, q = grid.origin(i, j)
            wt = _ramp_weights(grid, i, j)
            acc[:, r:r + px, q:q + px] += tiles[k] * wt
            wsum[r:r + px, q:q + px] += wt
        log.debug("wave %d: %d tiles", wave, len(cells))
    canvas = (acc / wsum).astype(np.float32)
    return soften_seams(canvas, grid, soften_seams_px) if soften_seams_px > 0 else canvas


def _seam_distance(grid: TileGrid) -> np.ndarray:
    """(H, W) distance in pixels to the nearest line where an overlap starts or ends."""
    def dist(size: int, axis: int) -> np.ndarray:
        at = np.array(grid.edge_lines(axis), dtype=float)
        if not len(at):
            return np.full(size, np.inf)
        return np.abs(np.arange(size)[:, None] + 0.5 - at[None]).min(axis=1)

    h, w = grid.shape
    return np.minimum(dist(h, 0)[:, None], dist(w, 1)[None, :])


def soften_seams(canvas: np.ndarray, grid: TileGrid, band_px: float = 3.0, sigma_px: float = 1.5) -> np.ndarray:
    """Blend a (C, H, W) canvas towards its Gaussian blur in bands along the overlap edges.

    Why: inpainting without resampling keeps values continuous across a tile's mask edge but not
    slopes, and a slope kink along a straight line shows as a ridge line in a shaded terrain. The
    weight falls off as a Gaussian (`band_px`) from those lines and is 0 beyond 3 `band_px`, so the
    rest is untouched.
    """
    from scipy import ndimage

    distance = _seam_distance(grid)[: canvas.shape[-2], : canvas.shape[-1]]
    weight = np.where(distance <= 3 * band_px, np.exp(-distance ** 2 / (2 * band_px ** 2)), 0.0)
    blurred = np.stack([ndimage.gaussian_filter(c.astype(np.float64), sigma_px, mode="nearest") for c in canvas])
    return ((1 - weight) * canvas + weight * blurred).astype(np.float32)


def seam_kink_ratio(canvas: np.ndarray, grid: TileGrid) -> float:
    """Mean |second difference| at the overlap edge lines / the same elsewhere (about 1 = no kink lines).

    canvas : (H, W) one channel. A line between pixels r-1 and r is scored by the second
    differences centred on r-1 and r, across the line.
    """
    canvas = np.asarray(canvas, dtype=np.float64)
    d2y, d2x = np.abs(np.diff(canvas, 2, axis=0)), np.abs(np.diff(canvas, 2, axis=1))
    at_y, at_x = np.zeros(d2y.shape, bool), np.zeros(d2x.shape, bool)
    for line in grid.edge_lines(0):
        at_y[max(line - 2, 0):min(line, d2y.shape[0]), :] = True
    for line in grid.edge_lines(1):
        at_x[:, max(line - 2, 0):min(line, d2x.shape[1])] = True
    seam = np.concatenate([d2y[at_y], d2x[at_x]])
    rest = np.concatenate([d2y[~at_y], d2x[~at_x]])
    return float(seam.mean() / max(rest.mean(), 1e-12)) if len(seam) else 1.0


def _harmonic_fit(tile: np.ndarray, known: np.ndarray, mask: np.ndarray, iterations: int = 400) -> np.ndarray:
    """Paste the known cells into a new tile (C, px, px) without a step at the mask boundary.

    The mismatch between each known cell and the nearest new cell is spread into the new area
    as a harmonic (Laplace) correction with free (Neumann) tile borders, so the result equals
    `known` on known cells and keeps the new tile's own relief, smoothly offset, elsewhere.
    """
    from scipy import ndimage

    out = tile.astype(np.float64).copy()
    for c in range(tile.shape[0]):
        fixed_known = mask[c] > 0
        if not fixed_known.any() or fixed_known.all():
            continue
        _, (ri, ci) = ndimage.distance_transform_edt(fixed_known, return_indices=True)
        residual = np.where(fixed_known, known[c] - tile[c][ri, ci], 0.0)
        corr = residual.copy()
        for _ in range(iterations):  # Jacobi relaxation of the Laplace equation
            p = np.pad(corr, 1, mode="edge")
            corr = 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])
            corr[fixed_known] = residual[fixed_known]
        out[c] = np.where(fixed_known, known[c], tile[c] + corr)
    return out.astype(np.float32)


def seam_jump_ratio(canvas: np.ndarray, grid: TileGrid) -> float:
    """Largest step across a tile border / 99th percentile of steps inside tiles (about 1 = seamless).

    canvas : (H, W) one channel. Compares |value(x+1) - value(x)| at the columns and rows where
    a tile's exclusive area starts with the same differences elsewhere.
    """
    canvas = np.asarray(canvas, dtype=np.float64)
    dx = np.abs(np.diff(canvas, axis=1))
    dy = np.abs(np.diff(canvas, axis=0))
    bc = [line - 1 for line in grid.edge_lines(1) if 0 <= line - 1 < dx.shape[1]]
    br = [line - 1 for line in grid.edge_lines(0) if 0 <= line - 1 < dy.shape[0]]
    inner_x = np.delete(dx, bc, axis=1)
    inner_y = np.delete(dy, br, axis=0)
    typical = np.percentile(np.concatenate([inner_x.ravel(), inner_y.ravel()]), 99)
    border = max(dx[:, bc].max() if bc else 0.0, dy[br, :].max() if br else 0.0)
    return float(border / max(typical, 1e-12))
