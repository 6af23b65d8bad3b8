"""Terrain realism statistics, distribution distances, an fBm baseline, diversity and memorisation.

Implements ENV-a2 (measuring that generated layouts are realistic and diverse).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

log = logging.getLogger(__name__)

#: Relative elevations at which the hypsometric curve is sampled.
HYPSO_LEVELS = np.linspace(0.0, 1.0, 21)
#: Flow accumulation (cells) from which a cell counts as part of the drainage network.
CHANNEL_CELLS = 16


def _check_heights(heights: np.ndarray, name: str = "heights") -> np.ndarray:
    heights = np.asarray(heights, dtype=np.float64)
    if heights.ndim != 2 or min(heights.shape) < 3:
        raise ValueError(f"`{name}` must be a 2-D grid of at least 3x3 cells, got shape {heights.shape}")
    if not np.isfinite(heights).all():
        raise ValueError(f"`{name}` must not contain NaN or inf (fill or crop nodata first)")
    return heights


def slope_deg(heights: np.ndarray, cell_m: float) -> np.ndarray:
    """Slope angle per cell. heights : (h, w) metres; cell_m : metres; returns (h, w) degrees."""
    heights = _check_heights(heights)
    if cell_m <= 0:
        raise ValueError(f"`cell_m` must be positive, got {cell_m}")
    gy, gx = np.gradient(heights, cell_m)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def curvature(heights: np.ndarray, cell_m: float) -> np.ndarray:
    """Total curvature (Laplacian of height) on interior cells: (h-2, w-2) in 1/m.

    Positive in valleys (concave up), negative on ridges.
    """
    heights = _check_heights(heights)
    lap = (heights[:-2, 1:-1] + heights[2:, 1:-1] + heights[1:-1, :-2] + heights[1:-1, 2:]
           - 4 * heights[1:-1, 1:-1])
    return lap / cell_m**2


def hypsometric_curve(heights: np.ndarray) -> np.ndarray:
    """Fraction of area at or above each relative elevation in HYPSO_LEVELS: (21,) in [0, 1].

    Its mean over the levels approximates the hypsometric integral (Strahler 1952).
    """
    heights = _check_heights(heights)
    rel = (heights - heights.min()) / max(float(np.ptp(heights)), 1e-9)
    return np.array([(rel >= level).mean() for level in HYPSO_LEVELS])


def hypsometric_integral(heights: np.ndarray) -> float:
    """(mean - min) / (max - min) of the heights, dimensionless in [0, 1]."""
    heights = _check_heights(heights)
    return float((heights.mean() - heights.min()) / max(float(np.ptp(heights)), 1e-9))


def psd_slope(heights: np.ndarray) -> float:
    """Exponent beta of the radially averaged power spectrum, P(k) ~ k^-beta (positive number).

    A best-fit plane is removed and a Hann window applied before the FFT; the fit uses the
    radial bins from 2 cycles per tile to 1/4 cycle per cell. fBm surfaces with Hurst exponent
    H have beta = 2H + 2; real landscapes are mostly 2..4.
    """
    heights = _check_heights(heights)
    h, w = heights.shape
    yy, xx = np.mgrid[0:h, 0:w]
    design = np.column_stack([np.ones(h * w), yy.ravel(), xx.ravel()])
    coef, *_ = np.linalg.lstsq(design, heights.ravel(), rcond=None)
    detrended = heights - (design @ coef).reshape(h, w)
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fftshift(np.fft.fft2(detrended * window))) ** 2
    ky = np.fft.fftshift(np.fft.fftfreq(h))
    kx = np.fft.fftshift(np.fft.fftfreq(w))
    k = np.hypot(*np.meshgrid(ky, kx, indexing="ij"))
    edges = np.geomspace(2.0 / min(h, w), 0.25, 10)
    idx = np.digitize(k.ravel(), edges)
    logk, logp = [], []
    for b in range(1, len(edges)):
        sel = idx == b
        if sel.any():
            logk.append(np.log(k.ravel()[sel].mean()))
            logp.append(np.log(power.ravel()[sel].mean() + 1e-30))
    if len(logk) < 3:
        return float("nan")
    slope, _ = np.polyfit(logk, logp, 1)
    return float(-slope)


def to_metres(norm: np.ndarray, relief: np.ndarray) -> list[np.ndarray]:
    """Rescale each (px, px) tile to span exactly its relief in metres (base 0): how generated and
    baseline tiles are compared with real tiles of that relief."""
    return [(s - s.min()) / max(float(np.ptp(s)), 1e-9) * r for s, r in zip(norm, relief)]


def steepness(heights: np.ndarray, cell_m: float) -> float:
    """Mean gradient x tile width / relief: how steep a tile is for its relief (a model control).

    Dimensionless, so a user's "gentle" / "rugged" does not fight the relief control: a plane
    ramp is about 1, a single escarpment or a smooth hill 1-2, many steep ridges 3 and more.
    The slope distribution of a tile rescaled to a relief follows from it, which is what
    the realism evaluation measures.
    """
    heights = _check_heights(heights)
    width_m = (max(heights.shape) - 1) * cell_m
    gradient = np.tan(np.radians(slope_deg(heights, cell_m)))
    return float(gradient.mean() * width_m / max(float(np.ptp(heights)), 1e-9))


def roughness_m(heights: np.ndarray) -> float:
    """Standard deviation of the residual from a 3x3 mean filter, in the heights' unit (m)."""
    heights = _check_heights(heights)
    return float((heights - ndimage.uniform_filter(heights, 3, mode="nearest"))[1:-1, 1:-1].std())


def roughness_ratio(heights: np.ndarray) -> float:
    """roughness_m / relief: dimensionless high-frequency share of a tile's relief (a model control)."""
    heights = _check_heights(heights)
    return roughness_m(heights) / max(float(np.ptp(heights)), 1e-9)


def flow_accumulation(heights: np.ndarray) -> np.ndarray:
    """D8 flow accumulation (O'Callaghan & Mark 1984): (h, w) count of cells draining through each cell.

    Each cell passes its water to its steepest-descent neighbour (diagonal drops / sqrt 2);
    pits and edge cells keep it.
    """
    heights = _check_heights(heights)
    h, w = heights.shape
    padded = np.pad(heights, 1, mode="constant", constant_values=np.inf)
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    drops = np.stack([(heights - padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]) / np.hypot(dy, dx)
                      for dy, dx in offsets])
    best = drops.argmax(axis=0)
    has_outlet = drops.max(axis=0) > 0
    rows, cols = np.mgrid[0:h, 0:w]
    dy = np.array([o[0] for o in offsets])[best]
    dx = np.array([o[1] for o in offsets])[best]
    receiver = np.where(has_outlet, (rows + dy) * w + (cols + dx), -1).ravel()
    acc = np.ones(h * w)
    for cell in np.argsort(-heights.ravel(), kind="stable"):
        target = receiver[cell]
        if target >= 0:
            acc[target] += acc[cell]
    return acc.reshape(h, w)


def drainage_fraction(heights: np.ndarray, channel_cells: int = CHANNEL_CELLS) -> float:
    """Share of cells whose D8 accumulation reaches `channel_cells`: a drainage-density proxy."""
    return float((flow_accumulation(heights) >= channel_cells).mean())


def fbm(shape: tuple[int, int], beta: float = 3.0, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Fractional Brownian motion surface by spectral synthesis, normalised to [-1, 1].

    shape : (h, w) cells; beta : spectral exponent (P(k) ~ k^-beta, beta = 2H + 2 for Hurst H).
    The classic Perlin-style procedural terrain baseline. Returns (h, w) float32.
    """
    if beta <= 0:
        raise ValueError(f"`beta` must be positive, got {beta}")
    rng = np.random.default_rng(rng)
    h, w = shape
    # synthesise on a 2x larger periodic grid and crop, so the tile itself is not periodic
    H, W = 2 * h, 2 * w
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(H), np.fft.fftfreq(W), indexing="ij"))
    k[0, 0] = 1.0
    amplitude = k ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    spectrum = amplitude * (rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W)))
    field = np.real(np.fft.ifft2(spectrum))[:h, :w]
    field = 2 * (field - field.min()) / max(float(np.ptp(field)), 1e-12) - 1
    return field.astype(np.float32)


#: Spectral exponents searched when an fBm tile must reach a target steepness.
FBM_BETAS = tuple(np.round(np.arange(1.0, 8.01, 0.125), 3))


def fbm_with_steepness(shape: tuple[int, int], target: float, seed: int, phases: int = 4) -> tuple[np.ndarray, float]:
    """An fBm tile whose steepness is nearest `target` (log scale).

    Gives the baseline the same steepness information a conditioned model gets: steepness
    falls as the spectral exponent rises, so every exponent in FBM_BETAS is tried with
    `phases` random phase sets (seeded from `seed`; one set alone cannot reach every target).
    Returns ((h, w) float32 in [-1, 1], chosen exponent).
    """
    if target <= 0:
        raise ValueError(f"`target` steepness must be positive, got {target}")
    best, best_err = (np.zeros(shape, np.float32), FBM_BETAS[0]), np.inf
    for phase in range(phases):
        for beta in FBM_BETAS:
            tile = fbm(shape, beta, seed * phases + phase)
            err = abs(np.log(steepness(tile, 1.0) / target))
            if err < best_err:
                best, best_err = (tile, float(beta)), err
    return best


@dataclass
class TerrainStats:
    """Statistics of a set of terrain tiles (heights in metres)."""

    slope: np.ndarray
    """Pooled slope of every cell, degrees."""
    curvature: np.ndarray
    """Pooled Laplacian curvature of interior cells, 1/m."""
    hypso: np.ndarray
    """(n_tiles, 21) hypsometric curves."""
    hypso_integral: np.ndarray
    """(n_tiles,) hypsometric integrals."""
    psd_slope: np.ndarray
    """(n_tiles,) power-spectrum exponents beta."""
    roughness: np.ndarray
    """(n_tiles,) 3x3 residual standard deviation, metres."""
    drainage: np.ndarray
    """(n_tiles,) share of cells with D8 accumulation >= CHANNEL_CELLS."""
    mean_slope: np.ndarray
    """(n_tiles,) mean slope per tile, degrees."""


def terrain_stats(tiles_m: list[np.ndarray] | np.ndarray, cells_m: list[float] | np.ndarray) -> TerrainStats:
    """Compute TerrainStats for tiles (each (h, w) metres) with their cell sizes (metres)."""
    tiles_m = [_check_heights(t, "tiles_m[i]") for t in tiles_m]
    cells_m = np.broadcast_to(np.asarray(cells_m, dtype=np.float64), (len(tiles_m),))
    if not tiles_m:
        raise ValueError("`tiles_m` must hold at least one tile")
    slopes = [slope_deg(t, c) for t, c in zip(tiles_m, cells_m)]
    return TerrainStats(
        slope=np.concatenate([s.ravel() for s in slopes]),
        curvature=np.concatenate([curvature(t, c).ravel() for t, c in zip(tiles_m, cells_m)]),
        hypso=np.stack([hypsometric_curve(t) for t in tiles_m]),
        hypso_integral=np.array([hypsometric_integral(t) for t in tiles_m]),
        psd_slope=np.array([psd_slope(t) for t in tiles_m]),
        roughness=np.array([roughness_m(t) for t in tiles_m]),
        drainage=np.array([drainage_fraction(t) for t in tiles_m]),
        mean_slope=np.array([s.mean() for s in slopes]),
    )


#: Distances reported by compare_terrain, all lower-is-better.
TERRAIN_METRICS = ("slope_w1", "slope_ks", "curvature_w1", "curvature_ks", "hypsometric_l1",
                   "hypsometric_integral_w1", "psd_slope_abs_err", "psd_slope_w1", "roughness_w1",
                   "drainage_w1", "mean_slope_w1")


def compare_terrain(gen: TerrainStats, real: TerrainStats) -> dict[str, float]:
    """Distribution distances between generated and real terrain statistics (lower is better).

    Wasserstein-1 (`_w1`, in the statistic's unit) and Kolmogorov-Smirnov statistics (`_ks`)
    for pooled slope and curvature; L1 between mean hypsometric curves; absolute error of the
    median PSD exponent; W1 of per-tile hypsometric integral, PSD exponent, roughness (m),
    drainage share and mean slope (degrees).
    """
    def finite(a: np.ndarray) -> np.ndarray:
        return a[np.isfinite(a)]

    return {
        "slope_w1": float(stats.wasserstein_distance(gen.slope, real.slope)),
        "slope_ks": float(stats.ks_2samp(gen.slope, real.slope).statistic),
        "curvature_w1": float(stats.wasserstein_distance(gen.curvature, real.curvature)),
        "curvature_ks": float(stats.ks_2samp(gen.curvature, real.curvature).statistic),
        "hypsometric_l1": float(np.abs(gen.hypso.mean(0) - real.hypso.mean(0)).mean()),
        "hypsometric_integral_w1": float(stats.wasserstein_distance(gen.hypso_integral, real.hypso_integral)),
        "psd_slope_abs_err": float(abs(np.median(finite(gen.psd_slope)) - np.median(finite(real.psd_slope)))),
        "psd_slope_w1": float(stats.wasserstein_distance(finite(gen.psd_slope), finite(real.psd_slope))),
        "roughness_w1": float(stats.wasserstein_distance(gen.roughness, real.roughness)),
        "drainage_w1": float(stats.wasserstein_distance(gen.drainage, real.drainage)),
        "mean_slope_w1": float(stats.wasserstein_distance(gen.mean_slope, real.mean_slope)),
    }


def _flat(tiles: np.ndarray) -> np.ndarray:
    tiles = np.asarray(tiles, dtype=np.float64)
    if tiles.ndim < 2:
        raise ValueError(f"`tiles` must be (n, ...) with n >= 1, got shape {tiles.shape}")
    return tiles.reshape(len(tiles), -1)


def pairwise_rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) RMS differences between tiles of a (n, ...) and b (m, ...) of the same tile shape."""
    fa, fb = _flat(a), _flat(b)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"tiles differ in size: {a.shape[1:]} vs {b.shape[1:]}")
    sq = (fa**2).sum(1)[:, None] + (fb**2).sum(1)[None, :] - 2 * fa @ fb.T
    return np.sqrt(np.maximum(sq, 0.0) / fa.shape[1])


def diversity(tiles: np.ndarray) -> float:
    """Mean pairwise RMS distance between tiles (normalised units); 0 for identical samples."""
    d = pairwise_rms(tiles, tiles)
    n = len(d)
    if n < 2:
        return 0.0
    return float(d[~np.eye(n, dtype=bool)].mean())


def nearest_distance(samples: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(n,) RMS distance from each sample to its nearest reference tile (memorisation check)."""
    return pairwise_rms(samples, reference).min(axis=1)
