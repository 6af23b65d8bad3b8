"""Digital elevation model readers: ESRI ASCII grids and GeoTIFFs, with nodata and metres per cell.

Implements ENV-a1 (the real-world terrain data the layout diffusion model learns from).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

#: Mean Earth radius used to turn degrees into metres (WGS84 authalic radius), metres.
EARTH_RADIUS_M = 6_371_007.2
#: Suffixes this module reads.
DEM_SUFFIXES = (".asc", ".tif", ".tiff")

CrsKind = Literal["auto", "geographic", "projected"]


class DemReadError(ValueError):
    """A DEM file could not be read; the message names the file and the reason."""


@dataclass
class Dem:
    """A DEM grid read from one file.

    heights : (rows, cols) float32, metres above the source's vertical datum; NaN where nodata.
    Row 0 is the northern edge (as stored in ESRI ASCII grids and north-up GeoTIFFs).
    """

    heights: np.ndarray
    """(rows, cols) float32 heights in metres, NaN marks nodata cells."""
    cell_x_m: float
    """Cell width (west-east) in metres, at the grid's centre latitude for geographic grids."""
    cell_y_m: float
    """Cell height (north-south) in metres."""
    geographic: bool
    """True when the grid is in lon/lat degrees (cell sizes converted to metres)."""
    origin: tuple[float, float]
    """(x, y) of the north-west corner in the file's own coordinates (degrees or projected units)."""
    cell_native: tuple[float, float]
    """(dx, dy) cell size in the file's own units."""
    source: str
    """Path the grid was read from."""
    crs: str = ""
    """CRS as far as the file states it (e.g. "EPSG:4326"); empty when not stored."""
    meta: dict = field(default_factory=dict)
    """Reader-specific extras (nodata value, dtype, count of nodata cells)."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.heights.shape  # type: ignore[return-value]

    @property
    def nodata_fraction(self) -> float:
        return float(np.isnan(self.heights).mean())


def metres_per_degree(lat_deg: float) -> tuple[float, float]:
    """Metres per degree of longitude and of latitude at `lat_deg` (spherical Earth).

    Returns (m_per_deg_lon, m_per_deg_lat); accurate to ~0.5 % against the ellipsoid.
    """
    if not -90.0 <= lat_deg <= 90.0:
        raise ValueError(f"`lat_deg` must be within [-90, 90], got {lat_deg}")
    m_lat = math.pi * EARTH_RADIUS_M / 180.0
    return m_lat * math.cos(math.radians(lat_deg)), m_lat


def _looks_geographic(x0: float, y0: float, dx: float, dy: float, cols: int, rows: int) -> bool:
    """Coordinates inside lon/lat bounds with sub-0.1-degree cells: a geographic grid."""
    x1, y1 = x0 + dx * cols, y0 + dy * rows
    inside = -180.0 <= min(x0, x1) and max(x0, x1) <= 180.0 and -90.0 <= min(y0, y1) and max(y0, y1) <= 90.0
    return inside and 0 < dx < 0.1 and 0 < dy < 0.1


def _cell_metres(geographic: bool, dx: float, dy: float, centre_lat: float) -> tuple[float, float]:
    if not geographic:
        return float(dx), float(dy)
    m_lon, m_lat = metres_per_degree(centre_lat)
    return float(dx * m_lon), float(dy * m_lat)


def read_ascii_grid(path: str | Path, crs: CrsKind = "auto") -> Dem:
    """Read an ESRI ASCII grid (`.asc`): 6-line header, then rows north to south.

    Cells equal to NODATA_value become NaN. `crs` says whether the coordinates are degrees
    (the format does not store it); "auto" decides from the coordinate ranges.
    Implements ENV-a1.
    """
    path = Path(path)
    header: dict[str, float] = {}
    try:
        with path.open("r", encoding="ascii", errors="strict") as fh:
            for _ in range(6):
                key, value = fh.readline().split()
                header[key.lower()] = float(value)
            values = np.loadtxt(fh, dtype=np.float64, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DemReadError(f"{path}: not a readable ESRI ASCII grid ({err})") from err
    for key in ("ncols", "nrows", "cellsize"):
        if key not in header:
            raise DemReadError(f"{path}: ESRI ASCII header lacks `{key}`")
    rows, cols = int(header["nrows"]), int(header["ncols"])
    if values.shape != (rows, cols):
        raise DemReadError(f"{path}: header says {rows}x{cols} cells, found {values.shape[0]}x{values.shape[1]}")
    cell = header["cellsize"]
    x_ll = header.get("xllcorner", header.get("xllcenter", 0.0))
    y_ll = header.get("yllcorner", header.get("yllcenter", 0.0))
    nodata = header.get("nodata_value")
    heights = values.astype(np.float32)
    if nodata is not None:
        heights[values == nodata] = np.nan
    geographic = _geographic_choice(crs, x_ll, y_ll, cell, cell, cols, rows, path)
    centre_lat = y_ll + cell * rows / 2
    cx, cy = _cell_metres(geographic, cell, cell, centre_lat)
    n_nodata = int(np.isnan(heights).sum())
    log.debug("read %s: %dx%d, cell %.2f x %.2f m, %d nodata", path, rows, cols, cx, cy, n_nodata)
    return Dem(heights, cx, cy, geographic, (x_ll, y_ll + cell * rows), (cell, cell), str(path),
               crs="EPSG:4326 (assumed)" if geographic else "",
               meta={"nodata": nodata, "nodata_cells": n_nodata, "format": "esri-ascii"})


def _geographic_choice(crs: CrsKind, x0: float, y0: float, dx: float, dy: float,
                       cols: int, rows: int, path: Path) -> bool:
    if crs not in ("auto", "geographic", "projected"):
        raise ValueError(f"`crs` must be 'auto', 'geographic' or 'projected', got {crs!r}")
    if crs == "auto":
        return _looks_geographic(x0, y0, dx, dy, cols, rows)
    return crs == "geographic"


# GeoTIFF tags (GeoTIFF 1.1 spec): ModelPixelScale, ModelTiepoint, GeoKeyDirectory, GDAL_NODATA.
_TAG_SCALE, _TAG_TIEPOINT, _TAG_GEOKEYS, _TAG_NODATA = 33550, 33922, 34735, 42113
# GeoKey ids: GTModelTypeGeoKey (2 = geographic), ProjectedCSTypeGeoKey, GeographicTypeGeoKey.
_KEY_MODEL_TYPE, _KEY_PROJECTED_CS, _KEY_GEOGRAPHIC_CS = 1024, 3072, 2048


def _geokeys(values: tuple) -> dict[int, int]:
    """Short-valued keys of a GeoKeyDirectory (location 0 = value stored inline)."""
    keys: dict[int, int] = {}
    for i in range(4, len(values) - 3, 4):
        key, location, _count, value = values[i:i + 4]
        if location == 0:
            keys[int(key)] = int(value)
    return keys


def read_geotiff(path: str | Path, crs: CrsKind = "auto") -> Dem:
    """Read a single-band north-up GeoTIFF DEM with tifffile (LZW/deflate via imagecodecs).

    The GDAL_NODATA tag value becomes NaN. Geographic grids (EPSG:4326 and other lon/lat
    models) get metres per cell at their centre latitude. Implements ENV-a1.
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            raw = page.asarray()
            tags = {tag.code: tag.value for tag in page.tags.values()}
    except Exception as err:  # tifffile raises several types for corrupt or non-TIFF input
        raise DemReadError(f"{path}: not a readable GeoTIFF ({err})") from err
    if raw.ndim == 3:
        if raw.shape[-1] != 1 and raw.shape[0] != 1:
            raise DemReadError(f"{path}: expected a single-band DEM, got array of shape {raw.shape}")
        raw = raw.reshape(raw.shape[0], raw.shape[1]) if raw.shape[-1] == 1 else raw[0]
    if raw.ndim != 2:
        raise DemReadError(f"{path}: expected a 2-D raster, got shape {raw.shape}")
    if _TAG_SCALE not in tags or _TAG_TIEPOINT not in tags:
        raise DemReadError(f"{path}: TIFF has no GeoTIFF georeferencing (ModelPixelScale/ModelTiepoint tags)")
    dx, dy = float(tags[_TAG_SCALE][0]), float(tags[_TAG_SCALE][1])
    tie = tags[_TAG_TIEPOINT]
    x0 = float(tie[3]) - float(tie[0]) * dx
    y0 = float(tie[4]) + float(tie[1]) * dy
    heights = raw.astype(np.float32)
    nodata = _parse_nodata(tags.get(_TAG_NODATA))
    if nodata is not None:
        # float32 files often store -3.4028230e38 as nodata: compare with a relative tolerance
        heights[np.isclose(raw.astype(np.float64), nodata, rtol=1e-6, atol=0.0)] = np.nan
    heights[~np.isfinite(heights)] = np.nan
    keys = _geokeys(tuple(tags.get(_TAG_GEOKEYS, ())))
    rows, cols = heights.shape
    if crs == "auto" and _KEY_MODEL_TYPE in keys:
        geographic = keys[_KEY_MODEL_TYPE] == 2
    else:
        geographic = _geographic_choice(crs, x0, y0 - dy * rows, dx, dy, cols, rows, path)
    epsg = keys.get(_KEY_GEOGRAPHIC_CS if geographic else _KEY_PROJECTED_CS)
    cx, cy = _cell_metres(geographic, dx, dy, y0 - dy * rows / 2)
    n_nodata = int(np.isnan(heights).sum())
    log.debug("read %s: %dx%d, cell %.2f x %.2f m, %d nodata", path, rows, cols, cx, cy, n_nodata)
    return Dem(heights, cx, cy, geographic, (x0, y0), (dx, dy), str(path),
               crs=f"EPSG:{epsg}" if epsg and epsg != 32767 else "",
               meta={"nodata": nodata, "nodata_cells": n_nodata, "format": "geotiff", "dtype": str(raw.dtype)})


def _parse_nodata(value) -> float | None:
    if value is None:
        return None
    try:
        return float(str(value).strip().strip("\x00"))
    except ValueError:
        log.warning("ignoring unparseable GDAL_NODATA value %r", value)
        return None


def read_dem(path: str | Path, crs: CrsKind = "auto") -> Dem:
    """Read a DEM by its suffix (`.asc`, `.tif`, `.tiff`). Implements ENV-a1.

    Raises DemReadError (a ValueError) naming the file when it is missing, of an unknown
    type, corrupt, or holds no valid height.
    """
    path = Path(path)
    if not path.is_file():
        raise DemReadError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".asc":
        dem = read_ascii_grid(path, crs)
    elif suffix in (".tif", ".tiff"):
        dem = read_geotiff(path, crs)
    else:
        raise DemReadError(f"{path}: unknown DEM type {suffix!r}; expected one of {', '.join(DEM_SUFFIXES)}")
    if not np.isfinite(dem.heights).any():
        raise DemReadError(f"{path}: every cell is nodata")
    return dem


def resample_square(dem: Dem, cell_m: float | None = None) -> tuple[np.ndarray, float]:
    """Resample a DEM to square cells (bilinear), keeping NaN nodata masks.

    heights out : (rows', cols') float32 metres; returns (heights, cell_m). `cell_m`
    defaults to the geometric mean of the two cell sides (few cells gained or lost).
    """
    from scipy import ndimage

    if cell_m is None:
        cell_m = math.sqrt(dem.cell_x_m * dem.cell_y_m)
    if cell_m <= 0:
        raise ValueError(f"`cell_m` must be positive, got {cell_m}")
    zy, zx = dem.cell_y_m / cell_m, dem.cell_x_m / cell_m
    if abs(zy - 1) < 1e-3 and abs(zx - 1) < 1e-3:
        return dem.heights.copy(), float(cell_m)
    valid = np.isfinite(dem.heights)
    filled = np.where(valid, dem.heights, np.nanmean(dem.heights)).astype(np.float64)
    out = ndimage.zoom(filled, (zy, zx), order=1, mode="nearest", grid_mode=True)
    mask = ndimage.zoom(valid.astype(np.float32), (zy, zx), order=1, mode="nearest", grid_mode=True)
    out[mask < 0.999] = np.nan
    return out.astype(np.float32), float(cell_m)
