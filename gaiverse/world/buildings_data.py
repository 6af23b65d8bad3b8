"""Real buildings from OpenStreetMap: footprints in metres and the attributes the building model learns.

One pass of pyosmium over an extract reads building areas (closed ways and multipolygons) and
drivable roads into one local metric frame; `measure` then gives every building its footprint
statistics (area, aspect, orientation, shape class), tags (levels, height, roof shape, type,
colours) and context (distance and angle to the nearest road, nearest-neighbour spacing, local
road density, distance to the centre). Implements ENV-b1 (learn from real-world building data).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from gaiverse.world import buildings_geometry as geo
from gaiverse.world.dem import metres_per_degree
from gaiverse.world.osm import HIGHWAY_CLASS, OSM_SUFFIXES, OsmReadError

log = logging.getLogger(__name__)

SHAPE_CLASSES: tuple[str, ...] = ("rect", "L", "T", "U", "complex")
#: Radius of the window in which local road density is measured, metres.
DENSITY_RADIUS_M = 200.0
#: Step of the densified road polylines used for distance look-ups, metres.
ROAD_STEP_M = 1.0
#: Numeric columns of a BuildingSet (NaN where unknown).
COLUMNS = ("x", "y", "area_m2", "length_m", "width_m", "aspect", "angle_rad", "rectangularity", "n_vertices",
           "levels", "height_m", "road_dist_m", "orient_deg", "spacing_m", "road_density", "centre_dist_m")


@dataclass
class RoadLines:
    """Drivable road polylines in the same metric frame as the buildings."""

    polylines: list[np.ndarray]
    """(n_i, 2) metres per way."""
    classes: list[str]
    """'major' or 'minor' per polyline."""

    def samples(self, step: float = ROAD_STEP_M) -> tuple[np.ndarray, np.ndarray]:
        """(points (m, 2), unit directions (m, 2)) every `step` metres along all polylines."""
        pts, dirs = [], []
        for line in self.polylines:
            for a, b in zip(line[:-1], line[1:]):
                seg = b - a
                length = float(np.linalg.norm(seg))
                if length < 1e-6:
                    continue
                t = np.arange(0.0, length, step) / length
                pts.append(a + t[:, None] * seg)
                dirs.append(np.repeat((seg / length)[None], len(t), axis=0))
        if not pts:
            return np.zeros((0, 2)), np.zeros((0, 2))
        return np.concatenate(pts), np.concatenate(dirs)

    def length_m(self) -> float:
        return float(sum(np.linalg.norm(np.diff(p, axis=0), axis=1).sum() for p in self.polylines))


@dataclass
class BuildingSet:
    """Buildings of one or more extracts with their measured attributes (one row per building)."""

    polygons: list[np.ndarray]
    """(n_i, 2) counter-clockwise outer rings, metres."""
    cols: dict[str, np.ndarray]
    """Numeric columns (see COLUMNS), float64, NaN where unknown."""
    shape_class: np.ndarray
    """Shape class per building, one of SHAPE_CLASSES."""
    tags: dict[str, np.ndarray] = field(default_factory=dict)
    """Text tags per building: building, roof_shape, colour, roof_colour ('' where missing)."""
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    """File name each building came from."""

    def __len__(self) -> int:
        return len(self.polygons)

    def subset(self, mask: np.ndarray) -> BuildingSet:
        idx = np.flatnonzero(mask)
        return BuildingSet([self.polygons[i] for i in idx], {k: v[idx] for k, v in self.cols.items()},
                           self.shape_class[idx], {k: v[idx] for k, v in self.tags.items()}, self.source[idx])

    @staticmethod
    def concat(sets: list[BuildingSet]) -> BuildingSet:
        sets = [s for s in sets if len(s)]
        if not sets:
            raise ValueError("`sets` holds no buildings")
        return BuildingSet(sum((s.polygons for s in sets), []),
                           {k: np.concatenate([s.cols[k] for s in sets]) for k in COLUMNS},
                           np.concatenate([s.shape_class for s in sets]),
                           {k: np.concatenate([s.tags[k] for s in sets]) for k in sets[0].tags},
                           np.concatenate([s.source for s in sets]))


@dataclass
class OsmBuildings:
    """One extract: its buildings (measured) and its drivable roads, sharing one metric frame."""

    buildings: BuildingSet
    roads: RoadLines
    path: str
    sha256: str


def _levels(value: str) -> float:
    """'3', '3;4', '2.5' -> a float; anything unreadable or out of 1..150 -> NaN."""
    match = re.match(r"\s*(\d+(?:\.\d+)?)", value or "")
    v = float(match.group(1)) if match else math.nan
    return v if 1 <= v <= 150 else math.nan


def _height(value: str) -> float:
    match = re.match(r"\s*(\d+(?:\.\d+)?)\s*(m)?\s*$", value or "")
    v = float(match.group(1)) if match else math.nan
    return v if 2 <= v <= 500 else math.nan


def read_osm_buildings(path: str | Path) -> OsmBuildings:
    """Read building areas and drivable roads of an OSM extract and measure every building. Implements ENV-b1.

    Coordinates: local equirectangular projection about the extract's mean latitude, origin at the
    south-west corner of everything read. Raises OsmReadError naming the file on unreadable data or
    when it holds no buildings.
    """
    import osmium

    path = Path(path)
    if not path.is_file():
        raise OsmReadError(f"{path}: no such file")
    if not any(path.name.lower().endswith(s) for s in OSM_SUFFIXES):
        raise OsmReadError(f"{path}: unknown OSM file type; expected one of {', '.join(OSM_SUFFIXES)}")
    rings, area_ll, tag_rows, roads_ll, road_cls = [], [], [], [], []
    try:
        proc = osmium.FileProcessor(str(path)).with_areas().with_filter(osmium.filter.KeyFilter("building", "highway"))
        for obj in proc:
            if obj.is_way() and obj.tags.get("highway") in HIGHWAY_CLASS:
                coords = [(n.lon, n.lat) for n in obj.nodes if n.location.valid()]
                if len(coords) >= 2:
                    roads_ll.append(np.asarray(coords))
                    road_cls.append(HIGHWAY_CLASS[obj.tags["highway"]])
            elif obj.is_area() and obj.tags.get("building", "no") != "no":
                outers = list(obj.outer_rings())
                if not outers:
                    continue
                outer = max(outers, key=lambda r: len(r))
                ring = np.asarray([(n.lon, n.lat) for n in outer])
                inners = [np.asarray([(n.lon, n.lat) for n in inner]) for inner in obj.inner_rings(outer)]
                rings.append(ring)
                area_ll.append(inners)
                t = obj.tags
                tag_rows.append({"building": t.get("building", ""), "levels": t.get("building:levels", ""),
                                 "height": t.get("height", ""), "roof_shape": t.get("roof:shape", ""),
                                 "colour": t.get("building:colour", ""), "roof_colour": t.get("roof:colour", "")})
    except (RuntimeError, OSError, ValueError) as err:
        raise OsmReadError(f"{path}: not a readable OSM file ({err})") from err
    if not rings:
        raise OsmReadError(f"{path}: no building areas found")
    allpts = np.concatenate(rings + roads_ll)
    lon0, lat0 = float(allpts[:, 0].min()), float(allpts[:, 1].min())
    m_lon, m_lat = metres_per_degree(float(allpts[:, 1].mean()))

    def proj(ll: np.ndarray) -> np.ndarray:
        return np.column_stack([(ll[:, 0] - lon0) * m_lon, (ll[:, 1] - lat0) * m_lat])

    polys, holes = [geo.as_ccw(proj(r)) for r in rings], [[proj(h) for h in hs] for hs in area_ll]
    roads = RoadLines([proj(r) for r in roads_ll], road_cls)
    keep = [i for i, p in enumerate(polys) if len(p) >= 3 and geo.signed_area(p) >= 4.0]
    hole_area = np.array([sum(abs(geo.signed_area(h)) for h in holes[i]) for i in keep])
    numeric = {"levels": np.array([_levels(tag_rows[i]["levels"]) for i in keep]),
               "height_m": np.array([_height(tag_rows[i]["height"]) for i in keep])}
    text = {k: np.array([tag_rows[i][k].strip().lower() for i in keep], dtype=object)
            for k in ("building", "roof_shape", "colour", "roof_colour")}
    bset = measure([polys[i] for i in keep], roads, numeric, text, hole_area=hole_area)
    bset.source = np.array([path.name] * len(bset), dtype=object)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    log.info("%s: %d buildings, %d road ways (%.1f km)", path.name, len(bset), len(roads.polylines), roads.length_m() / 1000)
    return OsmBuildings(bset, roads, str(path), sha)


def shape_class(poly: np.ndarray, rectangularity: float) -> tuple[str, int]:
    """(class, vertex count after simplification) of a footprint: rect, L, T, U or complex.

    Simplification drops vertices within max(0.5 m, 2 % of the footprint size) of their
    neighbours' line. A rectilinear ring (corners within 15 degrees of square) with 6 vertices
    is an L; with 8 vertices and two reflex corners it is a U when they are adjacent, else a T.
    """
    size = math.sqrt(abs(geo.signed_area(poly)))
    s = geo.simplify(poly, max(0.5, 0.02 * size))
    n = len(s)
    if (n == 4 and rectangularity > 0.85) or rectangularity >= 0.96:
        return "rect", n
    e1 = s - np.roll(s, 1, axis=0)
    e2 = np.roll(s, -1, axis=0) - s
    cosang = (e1 * e2).sum(1) / np.maximum(np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1), 1e-9)
    rectilinear = bool(np.all(np.abs(cosang) < math.sin(math.radians(15))))
    concave = np.flatnonzero(geo.concave_flags(s))
    if rectilinear and n == 6 and len(concave) == 1:
        return "L", n
    if rectilinear and n == 8 and len(concave) == 2:
        gap = (concave[1] - concave[0]) % n
        return ("U" if gap in (1, n - 1) else "T"), n
    return "complex", n


def measure(polygons: list[np.ndarray], roads: RoadLines, numeric: dict[str, np.ndarray] | None = None,
            text: dict[str, np.ndarray] | None = None, hole_area: np.ndarray | None = None,
            centre: np.ndarray | None = None) -> BuildingSet:
    """Footprint statistics and road/neighbour context of footprints (real or generated). Implements ENV-b1.

    polygons : list of (n_i, 2) rings in metres. roads : drivable roads in the same frame.
    orient_deg is the angle between the footprint's long axis and the nearest road, folded to
    0..90 (0 = long side parallel to the road). road_density is km of road per km2 within
    DENSITY_RADIUS_M of the centroid. centre defaults to the median centroid.
    """
    n = len(polygons)
    polygons = [geo.as_ccw(p) for p in polygons]
    cols = {k: np.full(n, np.nan) for k in COLUMNS}
    classes = np.empty(n, dtype=object)
    for i, p in enumerate(polygons):
        area = abs(geo.signed_area(p)) - (0.0 if hole_area is None else float(hole_area[i]))
        length, width, angle = geo.min_rotated_rect(p)
        rectangularity = area / max(length * width, 1e-9)
        cls, nv = shape_class(p, rectangularity)
        c = geo.centroid(p)
        cols["x"][i], cols["y"][i] = c
        cols["area_m2"][i], cols["length_m"][i], cols["width_m"][i] = area, length, width
        cols["aspect"][i], cols["angle_rad"][i] = length / max(width, 1e-6), angle
        cols["rectangularity"][i], cols["n_vertices"][i] = min(rectangularity, 1.0), nv
        classes[i] = cls
    centroids = np.column_stack([cols["x"], cols["y"]]) if n else np.zeros((0, 2))
    # context: roads (nearest distance, direction, local density), neighbours, centre
    pts, dirs = roads.samples()
    if len(pts) and n:
        tree = cKDTree(pts)
        for i, p in enumerate(polygons):
            dense = _densify(p, 1.0)
            d, j = tree.query(dense)
            k = int(np.argmin(d))
            cols["road_dist_m"][i] = max(float(d[k]) - 0.5 * ROAD_STEP_M, 0.0) if not _road_inside(p, pts) else 0.0
            road_ang = math.atan2(dirs[j[k], 1], dirs[j[k], 0])
            diff = abs((cols["angle_rad"][i] - road_ang) % math.pi)
            cols["orient_deg"][i] = math.degrees(min(diff, math.pi - diff))
        counts = np.array([len(x) for x in tree.query_ball_point(centroids, DENSITY_RADIUS_M)])
        cols["road_density"] = counts * ROAD_STEP_M / 1000.0 / (math.pi * (DENSITY_RADIUS_M / 1000.0) ** 2)
    if n >= 2:
        d, _ = cKDTree(centroids).query(centroids, k=2)
        cols["spacing_m"] = d[:, 1]
    if n:
        centre = np.median(centroids, axis=0) if centre is None else np.asarray(centre, dtype=np.float64)
        cols["centre_dist_m"] = np.linalg.norm(centroids - centre, axis=1)
    for key, values in (numeric or {}).items():
        cols[key] = np.asarray(values, dtype=np.float64)
    text = text or {}
    tags = {k: np.asarray(text.get(k, np.array([""] * n, dtype=object)), dtype=object)
            for k in ("building", "roof_shape", "colour", "roof_colour")}
    return BuildingSet(polygons, cols, classes, tags, np.array([""] * n, dtype=object))


def _densify(poly: np.ndarray, step: float) -> np.ndarray:
    ring = np.vstack([poly, poly[:1]])
    out = [poly]
    for a, b in zip(ring[:-1], ring[1:]):
        k = int(np.linalg.norm(b - a) // step)
        if k > 1:
            out.append(a + np.linspace(0, 1, k + 1)[1:-1, None] * (b - a))
    return np.concatenate(out)


def _road_inside(poly: np.ndarray, pts: np.ndarray) -> bool:
    lo, hi = poly.min(0), poly.max(0)
    near = pts[np.all((pts >= lo) & (pts <= hi), axis=1)]
    return bool(len(near) and geo.points_in_polygon(near, poly).any())


def spatial_split(bset: BuildingSet, holdout_share: float = 0.3) -> tuple[np.ndarray, float]:
    """(held-out mask, x threshold): the eastern `holdout_share` of the buildings by centroid x.

    A contiguous strip, not a random sample, so held-out buildings are a region the model did not
    see (neighbouring buildings are near-copies of each other).
    """
    if not 0 < holdout_share < 1:
        raise ValueError(f"`holdout_share` must be within (0, 1), got {holdout_share}")
    threshold = float(np.quantile(bset.cols["x"], 1 - holdout_share))
    return bset.cols["x"] >= threshold, threshold


def coverage_profile(bset: BuildingSet, roads: RoadLines, by: str = "road", bins: np.ndarray | None = None,
                     cell_m: float = 4.0) -> dict[str, list[float]]:
    """Built-up share (footprint cover) per distance band to the nearest road (`by='road'`) or the centre.

    Sampled on a cell_m grid over the buildings' bounding box; answers "density vs distance to roads".
    """
    if by not in ("road", "centre"):
        raise ValueError(f"`by` must be 'road' or 'centre', got {by!r}")
    bins = np.asarray(bins if bins is not None else ([0, 5, 10, 20, 40, 80, 160] if by == "road" else
                                                     [0, 100, 200, 400, 800, 1600]), dtype=np.float64)
    allp = np.concatenate(bset.polygons)
    lo, hi = allp.min(0), allp.max(0)
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0], cell_m), np.arange(lo[1], hi[1], cell_m))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    built = np.zeros(len(grid), dtype=bool)
    for p in bset.polygons:
        plo, phi = p.min(0), p.max(0)
        cand = np.flatnonzero(np.all((grid >= plo) & (grid <= phi), axis=1))
        if len(cand):
            built[cand[geo.points_in_polygon(grid[cand], p)]] = True
    if by == "road":
        pts, _ = roads.samples()
        dist = cKDTree(pts).query(grid)[0] if len(pts) else np.full(len(grid), np.inf)
    else:
        dist = np.linalg.norm(grid - np.median(np.column_stack([bset.cols["x"], bset.cols["y"]]), 0), axis=1)
    band = np.digitize(dist, bins) - 1
    share = [float(built[band == b].mean()) if np.any(band == b) else 0.0 for b in range(len(bins) - 1)]
    return {"bins_m": bins.tolist(), "built_share": share}
