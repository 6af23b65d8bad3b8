"""OpenStreetMap road networks: read highways with pyosmium, project to metres, rasterise by class.

Implements ENV-a1 (real road-network data the layout diffusion model learns from).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaiverse.world.dem import metres_per_degree

log = logging.getLogger(__name__)

#: Road classes, in channel order of rasterised road tiles.
ROAD_CLASSES: tuple[str, ...] = ("major", "minor")
#: OSM `highway=*` values per road class; other values (footways, cycleways, tracks...) are skipped.
HIGHWAY_CLASS: dict[str, str] = {
    **{v: "major" for v in ("motorway", "trunk", "primary", "secondary", "tertiary")},
    **{f"{v}_link": "major" for v in ("motorway", "trunk", "primary", "secondary", "tertiary")},
    **{v: "minor" for v in ("residential", "unclassified", "service", "living_street", "road")},
}
#: Rasterised line width per class, in pixels.
CLASS_WIDTH_PX: dict[str, int] = {"major": 2, "minor": 1}
OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz")


class OsmReadError(ValueError):
    """An OSM file could not be read; the message names the file and the reason."""


@dataclass
class RoadNetwork:
    """Road polylines of one OSM extract in a local metric frame.

    Each polyline is an (n, 2) float64 array of (x east, y north) metres from the origin,
    which is the south-west corner of the roads' bounding box.
    """

    polylines: list[np.ndarray]
    """(n_i, 2) float64 metres per way, in way-node order."""
    classes: list[str]
    """Road class per polyline, one of ROAD_CLASSES."""
    origin_lonlat: tuple[float, float]
    """(lon, lat) of the local origin (south-west corner of the bounding box)."""
    extent_m: tuple[float, float]
    """(width east, height north) of the bounding box in metres."""
    source: str
    """Path the network was read from."""
    highway_counts: dict[str, int] = field(default_factory=dict)
    """Number of ways per OSM highway value kept."""

    def length_m(self, road_class: str | None = None) -> float:
        """Total polyline length in metres (of one class, or all)."""
        total = 0.0
        for line, cls in zip(self.polylines, self.classes):
            if road_class is None or cls == road_class:
                total += float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum())
        return total


def read_roads(path: str | Path) -> RoadNetwork:
    """Read the drivable road network (ways with a `highway` value in HIGHWAY_CLASS).

    Coordinates are projected with a local equirectangular projection about the extract's
    centre latitude (error < 0.1 % over a few km). Implements ENV-a1.
    """
    import osmium

    path = Path(path)
    if not path.is_file():
        raise OsmReadError(f"{path}: no such file")
    if not any(path.name.lower().endswith(s) for s in OSM_SUFFIXES):
        raise OsmReadError(f"{path}: unknown OSM file type; expected one of {', '.join(OSM_SUFFIXES)}")
    lonlat: list[np.ndarray] = []
    classes: list[str] = []
    counts: dict[str, int] = {}
    try:
        processor = osmium.FileProcessor(str(path)).with_locations().with_filter(osmium.filter.KeyFilter("highway"))
        for obj in processor:
            if not obj.is_way():
                continue
            value = obj.tags.get("highway", "")
            cls = HIGHWAY_CLASS.get(value)
            if cls is None:
                continue
            coords = [(n.lon, n.lat) for n in obj.nodes if n.location.valid()]
            if len(coords) < 2:
                continue
            lonlat.append(np.asarray(coords, dtype=np.float64))
            classes.append(cls)
            counts[value] = counts.get(value, 0) + 1
    except (RuntimeError, OSError, ValueError) as err:
        raise OsmReadError(f"{path}: not a readable OSM file ({err})") from err
    if not lonlat:
        raise OsmReadError(f"{path}: no drivable highway ways found")
    allpts = np.concatenate(lonlat)
    lon0, lat0 = float(allpts[:, 0].min()), float(allpts[:, 1].min())
    m_lon, m_lat = metres_per_degree(float(allpts[:, 1].mean()))
    lines = [np.column_stack([(ll[:, 0] - lon0) * m_lon, (ll[:, 1] - lat0) * m_lat]) for ll in lonlat]
    extent = ((float(allpts[:, 0].max()) - lon0) * m_lon, (float(allpts[:, 1].max()) - lat0) * m_lat)
    log.debug("read %s: %d ways, extent %.0f x %.0f m", path, len(lines), *extent)
    return RoadNetwork(lines, classes, (lon0, lat0), extent, str(path), counts)


def _draw_line(mask: np.ndarray, p0: np.ndarray, p1: np.ndarray, width_px: int) -> None:
    """Set pixels along segment p0->p1 (pixel coords: col, row) with a square brush."""
    n = int(math.ceil(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1])) * 2)) + 1
    t = np.linspace(0.0, 1.0, n)
    cols = np.floor(p0[0] + (p1[0] - p0[0]) * t).astype(np.int64)
    rows = np.floor(p0[1] + (p1[1] - p0[1]) * t).astype(np.int64)
    half = (width_px - 1) // 2
    for dr in range(-half, width_px - half):
        for dc in range(-half, width_px - half):
            r, c = rows + dr, cols + dc
            ok = (r >= 0) & (r < mask.shape[0]) & (c >= 0) & (c < mask.shape[1])
            mask[r[ok], c[ok]] = True


def rasterize_roads(network: RoadNetwork, cell_m: float = 8.0,
                    bounds_m: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Rasterise a road network into one boolean channel per road class.

    Returns (len(ROAD_CLASSES), rows, cols) bool; row 0 is the northern edge. `bounds_m` =
    (x_min, y_min, x_max, y_max) in the network's metres (default: its bounding box).
    Lines are drawn CLASS_WIDTH_PX wide. Implements ENV-a1.
    """
    if cell_m <= 0:
        raise ValueError(f"`cell_m` must be positive, got {cell_m}")
    x0, y0, x1, y1 = bounds_m if bounds_m is not None else (0.0, 0.0, *network.extent_m)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"`bounds_m` must have x_max > x_min and y_max > y_min, got {bounds_m}")
    cols, rows = max(1, int(math.ceil((x1 - x0) / cell_m))), max(1, int(math.ceil((y1 - y0) / cell_m)))
    out = np.zeros((len(ROAD_CLASSES), rows, cols), dtype=bool)
    for line, cls in zip(network.polylines, network.classes):
        px = np.column_stack([(line[:, 0] - x0) / cell_m, (y1 - line[:, 1]) / cell_m])
        channel = out[ROAD_CLASSES.index(cls)]
        for a, b in zip(px[:-1], px[1:]):
            _draw_line(channel, a, b, CLASS_WIDTH_PX[cls])
    return out


def road_mask_to_png(channels: np.ndarray) -> np.ndarray:
    """(C, h, w) road channels (bool or [0, 1]) -> (h, w) uint8 label image (0 none, 1 minor, 2 major...).

    A pixel holds len(ROAD_CLASSES) - index of the most important class present (major = 2,
    minor = 1, none = 0), so the PNG keeps the class and thresholding at > 0 gives all roads.
    """
    channels = np.asarray(channels)
    if channels.ndim != 3 or channels.shape[0] != len(ROAD_CLASSES):
        raise ValueError(f"`channels` must have shape ({len(ROAD_CLASSES)}, h, w), got {channels.shape}")
    label = np.zeros(channels.shape[1:], dtype=np.uint8)
    # paint the least important class first so more important ones overwrite it
    for idx in reversed(range(len(ROAD_CLASSES))):
        label[channels[idx] > 0.5] = len(ROAD_CLASSES) - idx
    return label
