"""Building layouts on a generated scene: blocks from the road network, parcels along the frontage,
footprints from the learned building model, oriented to the nearest road, never on roads, water
or each other. Implements ENV-b2.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from gaiverse.world import buildings_geometry as geo
from gaiverse.world.buildings_data import BuildingSet, RoadLines, measure
from gaiverse.world.buildings_model import BuildingModel

log = logging.getLogger(__name__)

ROAD_HALF_WIDTH_M: dict[str, float] = {"major": 5.0, "minor": 3.0}
"""Half the carriageway (+ sidewalk) width per road class, metres; footprints keep clear of it."""


@dataclass
class SceneInput:
    """The generated scene a building layout is made for (x east, y north, metres; raster row 0 = north)."""

    heights: np.ndarray
    """(h, w) float terrain heights, metres."""
    cell_m: float
    """Metres per raster cell."""
    roads: list[np.ndarray]
    """Road polylines, (n_i, 2) metres in the world frame (origin at the south-west corner)."""
    road_classes: list[str]
    """'major' or 'minor' per polyline."""
    water: np.ndarray | None = None
    """(h, w) bool, True under water."""

    def __post_init__(self) -> None:
        self.heights = np.asarray(self.heights, dtype=np.float64)
        if self.heights.ndim != 2 or min(self.heights.shape) < 2:
            raise ValueError(f"`heights` must be a 2-D array of at least 2 x 2, got shape {self.heights.shape}")
        if not self.cell_m > 0:
            raise ValueError(f"`cell_m` must be positive, got {self.cell_m}")
        if len(self.roads) != len(self.road_classes):
            raise ValueError(f"`roads` ({len(self.roads)}) and `road_classes` ({len(self.road_classes)}) differ in length")
        bad = sorted(set(self.road_classes) - set(ROAD_HALF_WIDTH_M))
        if bad:
            raise ValueError(f"`road_classes` has unknown classes {bad}; expected {sorted(ROAD_HALF_WIDTH_M)}")
        if self.water is not None and np.shape(self.water) != self.heights.shape:
            raise ValueError(f"`water` shape {np.shape(self.water)} differs from `heights` {self.heights.shape}")

    @property
    def size_m(self) -> tuple[float, float]:
        return self.heights.shape[1] * self.cell_m, self.heights.shape[0] * self.cell_m

    def cell_of(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) raster cells of points, clipped to the grid."""
        h, w = self.heights.shape
        cols = np.clip((pts[:, 0] / self.cell_m).astype(int), 0, w - 1)
        rows = np.clip(h - 1 - (pts[:, 1] / self.cell_m).astype(int), 0, h - 1)
        return rows, cols

    @classmethod
    def from_layout(cls, layout) -> SceneInput:
        """From a gaiverse.world.layout.Layout: road rasters are thinned and traced into short polylines."""
        from gaiverse.world.osm import ROAD_CLASSES

        lines, classes = [], []
        for k, name in enumerate(ROAD_CLASSES):
            for line in raster_to_segments(layout.roads[k], layout.cell_m):
                lines.append(line)
                classes.append(name)
        return cls(layout.heights, layout.cell_m, lines, classes, layout.water)


def raster_to_segments(mask: np.ndarray, cell_m: float) -> list[np.ndarray]:
    """Thin a road mask (row 0 north) and join 8-neighbouring skeleton cells by 2-point segments, metres."""
    from gaiverse.world.road_metrics import thin

    sk = thin(mask)
    h = sk.shape[0]
    rows, cols = np.nonzero(sk)
    out = []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        ok = (rows + dr < h) & (cols + dc >= 0) & (cols + dc < sk.shape[1])
        r, c = rows[ok], cols[ok]
        hit = sk[r + dr, c + dc]
        for r0, c0 in zip(r[hit], c[hit]):
            a = ((c0 + 0.5) * cell_m, (h - r0 - 0.5) * cell_m)
            b = ((c0 + dc + 0.5) * cell_m, (h - r0 - dr - 0.5) * cell_m)
            out.append(np.array([a, b]))
    return out


@dataclass
class BuildingControls:
    """The user's controls of the building layout (from the world's suggestion)."""

    density: float = 1.0
    """Multiplier of building density: spacing is divided by it (0.3 .. 3)."""
    dense_centre: bool = False
    """More, larger and taller buildings towards the centre of the settlement."""
    max_levels: int | None = None
    """Cap on storeys (e.g. 2 for a low-rise village); None = as learned."""
    settlement_radius_m: float = 400.0
    """Built-up radius around the world centre; beyond it buildings thin out (0 = everywhere)."""
    centre_levels_factor: float = 2.5
    """With dense_centre: storeys at the very centre are multiplied by this (fading to 1 at the radius)."""

    def __post_init__(self) -> None:
        if not 0.3 <= self.density <= 3.0:
            raise ValueError(f"`density` must be within 0.3 .. 3, got {self.density}")
        if self.max_levels is not None and self.max_levels < 1:
            raise ValueError(f"`max_levels` must be >= 1, got {self.max_levels}")
        if self.settlement_radius_m < 0:
            raise ValueError(f"`settlement_radius_m` must be >= 0, got {self.settlement_radius_m}")

    @classmethod
    def from_suggestion(cls, controls, prompt: str = "") -> BuildingControls:
        """From LayoutControls (+ the prompt for words the layout parser ignores: low-rise, high-rise)."""
        text = (prompt or "").lower()
        low = bool(re.search(r"\blow[- ]rise\b|\bvillage\b|\bhamlet\b|\brural\b|\bcountryside\b", text))
        sparse = bool(re.search(r"\bsparse\b|\bscattered\b|\bspread out\b", text))
        return cls(density=0.6 if sparse else 1.0, dense_centre=bool(controls.dense_centre),
                   max_levels=2 if low else None, settlement_radius_m=float(controls.settlement_radius_m))


@dataclass
class LayoutConfig:
    """How candidate sites are laid out and checked."""

    site_step_m: float = 3.0
    """Distance between candidate frontage sites along the roads."""
    gap_m: float = 1.0
    """Minimum clearance between two footprints and between a footprint and a road edge."""
    max_footprint_relief_m: float = 6.0
    """Sites whose terrain varies more than this under the footprint are skipped."""
    storey_m: float = 3.0
    """Storey height (ground floors of buildings over 3 storeys get +0.8 m)."""
    max_buildings: int = 5000
    """Upper bound on buildings per layout (triangle and time budget)."""


@dataclass
class PlacedBuilding:
    """One building of a layout."""

    id: str
    footprint: np.ndarray
    """(n, 2) counter-clockwise ring, metres."""
    shape_class: str
    levels: int
    height_m: float
    base_z: float
    """Terrain height under the lowest footprint corner, metres (the mesh starts here)."""
    roof_shape: str
    facade_colour: tuple[int, int, int]
    roof_colour: tuple[int, int, int]
    block_id: int
    parcel: np.ndarray
    """(4, 2) parcel quadrilateral along the frontage, metres."""
    road_angle: float
    """Direction of the nearest road, radians (facades face it)."""


@dataclass
class BuildingLayout:
    """All buildings of a scene with the blocks they stand in."""

    buildings: list[PlacedBuilding]
    blocks: np.ndarray
    """(h, w) int block label per raster cell (0 = road or water)."""
    controls: BuildingControls
    seed: int
    stats: dict = field(default_factory=dict)

    def manifest(self) -> dict:
        return {"n_buildings": len(self.buildings), "n_blocks": int(self.blocks.max()), "seed": self.seed,
                "controls": asdict(self.controls), **self.stats,
                "buildings": [{"id": b.id, "shape": b.shape_class, "levels": b.levels, "height_m": round(b.height_m, 2),
                               "roof": b.roof_shape, "block": b.block_id,
                               "footprint": np.round(b.footprint, 2).tolist()} for b in self.buildings]}

    def measured(self, roads: RoadLines, centre: np.ndarray | None = None) -> BuildingSet:
        """The same attributes as measured on real OSM buildings (for evaluation)."""
        levels = np.array([b.levels for b in self.buildings], dtype=np.float64)
        return measure([b.footprint for b in self.buildings], roads, {"levels": levels}, centre=centre)


def footprint_outline(shape: str, length: float, width: float, rng: np.random.Generator) -> np.ndarray:
    """Counter-clockwise outline of a footprint of `shape` in its own frame (long axis along x), centred."""
    hl, hw = length / 2, width / 2
    a, b = rng.uniform(0.3, 0.55), rng.uniform(0.35, 0.6)
    if shape == "L":
        x, y = hl - 2 * hl * a, hw - 2 * hw * b
        pts = [(-hl, -hw), (hl, -hw), (hl, y), (x, y), (x, hw), (-hl, hw)]
    elif shape == "T":
        s = hl * a
        pts = [(-s, -hw), (s, -hw), (s, hw - 2 * hw * b), (hl, hw - 2 * hw * b), (hl, hw), (-hl, hw),
               (-hl, hw - 2 * hw * b), (-s, hw - 2 * hw * b)]
    elif shape == "U":
        s, d = hl * (1 - a * 0.8), 2 * hw * b
        pts = [(-hl, -hw), (hl, -hw), (hl, hw), (s, hw), (s, hw - d), (-s, hw - d), (-s, hw), (-hl, hw)]
    elif shape == "complex":  # a plus-shaped (cross) plan: four cut corners, 12 vertices
        cx, cy = hl * a * 0.6, hw * b * 0.6
        pts = [(-hl + cx, -hw), (hl - cx, -hw), (hl - cx, -hw + cy), (hl, -hw + cy), (hl, hw - cy), (hl - cx, hw - cy),
               (hl - cx, hw), (-hl + cx, hw), (-hl + cx, hw - cy), (-hl, hw - cy), (-hl, -hw + cy), (-hl + cx, -hw + cy)]
    else:
        pts = [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]
    return geo.as_ccw(np.array(pts, dtype=np.float64))


def _place(outline: np.ndarray, centre: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return outline @ np.array([[c, s], [-s, c]]) + centre


def _smoothed_directions(pts: np.ndarray, radius: float = 12.0) -> np.ndarray:
    """Unit road direction at each sample: principal axis of the road samples within `radius`."""
    tree = cKDTree(pts)
    out = np.zeros_like(pts)
    for i, nb in enumerate(tree.query_ball_point(pts, radius)):
        q = pts[nb] - pts[nb].mean(0)
        if len(nb) < 2:
            out[i] = (1.0, 0.0)
            continue
        _, vecs = np.linalg.eigh(q.T @ q)
        out[i] = vecs[:, -1]
    return out


def generate_building_layout(scene: SceneInput, model: BuildingModel, controls: BuildingControls | None = None,
                             seed: int = 0, config: LayoutConfig | None = None) -> BuildingLayout:
    """Place buildings along the scene's roads with the learned model. Implements ENV-b2.

    Candidate sites sit on both sides of every road every `site_step_m`; each gets attributes
    sampled from the model for its local road density. A dense centre packs sites closer and adds
    storeys towards the centre; max_levels caps storeys; density scales the spacing. A site is
    kept when its footprint stays inside the world, off water, `gap_m` clear of every road edge
    and every earlier footprint, its centroid at least the sampled spacing from other centroids,
    and the terrain under it flat enough. Same inputs and seed -> same layout.
    """
    controls, cfg = controls or BuildingControls(), config or LayoutConfig()
    rng = np.random.default_rng(seed)
    roads = RoadLines(list(scene.roads), list(scene.road_classes))
    width_m, height_m = scene.size_m
    centre = np.array([width_m / 2, height_m / 2])
    blocks = _blocks(scene)
    if not roads.polylines:
        return BuildingLayout([], blocks, controls, seed, {"candidates": 0})
    pts, _ = roads.samples(0.5)
    half = np.concatenate([np.full(len(RoadLines([p], [c]).samples(0.5)[0]), ROAD_HALF_WIDTH_M[c])
                           for p, c in zip(roads.polylines, roads.classes)])
    road_tree = cKDTree(pts)
    # 1. candidate frontage sites, both sides of every road
    idx = np.arange(0, len(pts), max(1, int(cfg.site_step_m / 0.5)))
    site, sdir, shalf = pts[idx], _smoothed_directions(pts[idx]), half[idx]
    site, sdir, shalf = np.repeat(site, 2, 0), np.repeat(sdir, 2, 0), np.repeat(shalf, 2)
    side = np.tile([1.0, -1.0], len(idx))
    normal = np.column_stack([-sdir[:, 1], sdir[:, 0]]) * side[:, None]
    # 2. context: local road density (+ dense centre), settlement fall-off
    road_density = np.array([len(n) for n in road_tree.query_ball_point(site, 200.0)]) * 0.5 / 1000 / (math.pi * 0.04)
    dist_c = np.linalg.norm(site - centre, axis=1)
    radius = controls.settlement_radius_m
    closeness = np.clip(1 - dist_c / radius, 0, 1) if radius > 0 else np.zeros(len(site))
    boost = np.log(controls.centre_levels_factor) * closeness if controls.dense_centre else 0.0
    attrs = model.sample(road_density, rng, max_levels=controls.max_levels, levels_boost=boost)
    keep_p = np.ones(len(site))
    if radius > 0:  # outside the settlement, buildings thin out over ~150 m
        keep_p = np.where(dist_c <= radius, 1.0, np.exp(-(dist_c - radius) / 150.0))
    # a dense centre packs buildings closer (spacing down to half) on top of the learned spacing
    spacing = attrs.spacing_m / controls.density * (1 - 0.5 * closeness if controls.dense_centre else 1.0)
    facade, roof = model.colours(len(site), rng)
    order = rng.permutation(len(site))
    if controls.dense_centre:  # fill the centre first so its denser packing is not blocked by later sites
        order = order[np.argsort(dist_c[order] + rng.uniform(0, 60, len(order)), kind="stable")]
    placed: list[PlacedBuilding] = []
    tris: list[np.ndarray] = []
    cents: list[np.ndarray] = []
    stats = {"candidates": int(len(site)), "rejected": {"settlement": 0, "world": 0, "water": 0, "road": 0,
                                                          "building": 0, "spacing": 0, "slope": 0}}
    for i in order:
        if len(placed) >= cfg.max_buildings:
            break
        if rng.random() > keep_p[i]:
            stats["rejected"]["settlement"] += 1
            continue
        reason, result = _try_site(i, scene, attrs, site, sdir, normal, shalf, spacing, road_tree, half,
                                   tris, cents, cfg, rng)
        if reason:
            stats["rejected"][reason] += 1
            continue
        poly, base_z, angle, frontage, depth_off = result
        n_lv = int(attrs.levels[i])
        height = n_lv * cfg.storey_m + (0.8 if n_lv > 3 else 0.0) + rng.uniform(-0.2, 0.3)
        parcel = np.array([site[i] - sdir[i] * frontage / 2, site[i] + sdir[i] * frontage / 2,
                           site[i] + sdir[i] * frontage / 2 + normal[i] * depth_off,
                           site[i] - sdir[i] * frontage / 2 + normal[i] * depth_off])
        r, c = scene.cell_of(geo.centroid(poly)[None])
        placed.append(PlacedBuilding(f"b{len(placed):05d}", poly, str(attrs.shape_class[i]), n_lv, float(height), base_z,
                                     str(attrs.roof_shape[i]), tuple(int(v) for v in facade[i]),
                                     tuple(int(v) for v in roof[i]), int(blocks[r[0], c[0]]), geo.as_ccw(parcel),
                                     float(math.atan2(sdir[i, 1], sdir[i, 0]))))
        tris.append(poly[geo.triangulate(poly)])
        cents.append(geo.centroid(poly))
    stats["placed"] = len(placed)
    log.info("building layout: %d of %d sites, rejected %s", len(placed), len(site), stats["rejected"])
    return BuildingLayout(placed, blocks, controls, seed, stats)


def _try_site(i, scene, attrs, site, sdir, normal, shalf, spacing, road_tree, half, tris, cents, cfg, rng):
    """(rejection reason or '', (polygon, base_z, angle, frontage, depth)) for candidate site i."""
    area, aspect = float(attrs.area_m2[i]), float(attrs.aspect[i])
    length = math.sqrt(area * aspect)
    width = area / length
    outline = footprint_outline(str(attrs.shape_class[i]), length, width, rng)
    outline *= math.sqrt(area / abs(geo.signed_area(outline)))  # cut-outs shrink the area: restore it
    road_angle = math.atan2(sdir[i, 1], sdir[i, 0])
    orient = math.radians(float(attrs.orient_deg[i]))
    angle = road_angle + (orient if rng.random() < 0.5 else -orient)
    rotated = _place(outline, np.zeros(2), angle)
    depth = float((rotated @ normal[i]).max() - (rotated @ normal[i]).min())
    frontage = float((rotated @ sdir[i]).max() - (rotated @ sdir[i]).min())
    offset = shalf[i] + cfg.gap_m + float(attrs.setback_m[i]) + depth / 2
    centre = site[i] + normal[i] * offset
    poly = rotated + centre
    width_m, height_m = scene.size_m
    if poly.min() < 0 or poly[:, 0].max() > width_m or poly[:, 1].max() > height_m:
        return "world", None
    if cents and np.min(np.linalg.norm(np.array(cents) - centre, axis=1)) < spacing[i]:
        return "spacing", None
    dense = _dense_points(poly, min(2.0, scene.cell_m / 2))
    rows, cols = scene.cell_of(dense)
    if scene.water is not None and scene.water[rows, cols].any():
        return "water", None
    d, j = road_tree.query(dense)
    if np.any(d - 0.25 < half[j] + cfg.gap_m):
        return "road", None
    z = scene.heights[rows, cols]
    if float(z.max() - z.min()) > cfg.max_footprint_relief_m:
        return "slope", None
    if cents:  # exact test (separating axes on triangles) only where bounding boxes come within gap_m
        lo, hi = poly.min(0) - cfg.gap_m, poly.max(0) + cfg.gap_m
        boxes = np.array([(t.reshape(-1, 2).min(0), t.reshape(-1, 2).max(0)) for t in tris])
        near = np.flatnonzero(np.all(boxes[:, 0] <= hi, axis=1) & np.all(boxes[:, 1] >= lo, axis=1))
        mine = poly[geo.triangulate(poly)]
        for k in near:
            if any(geo.convex_overlap(a, b, cfg.gap_m) for a in mine for b in tris[k]):
                return "building", None
    return "", (poly, float(z.min()), angle, frontage, offset + depth / 2)


def _dense_points(poly: np.ndarray, step: float) -> np.ndarray:
    """Boundary points every `step` m plus an interior grid: what must be free of roads and water."""
    ring = np.vstack([poly, poly[:1]])
    pts = [poly]
    for a, b in zip(ring[:-1], ring[1:]):
        k = max(1, int(np.linalg.norm(b - a) / step))
        pts.append(a + np.linspace(0, 1, k + 1)[:, None] * (b - a))
    lo, hi = poly.min(0), poly.max(0)
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    if len(grid):
        pts.append(grid[geo.points_in_polygon(grid, poly)])
    return np.concatenate(pts)


def _blocks(scene: SceneInput) -> np.ndarray:
    """City blocks: connected raster regions enclosed by roads (and water), labelled 1..n (0 = road/water)."""
    h, w = scene.heights.shape
    blocked = np.zeros((h, w), dtype=bool) if scene.water is None else np.asarray(scene.water, dtype=bool).copy()
    roads = RoadLines(list(scene.roads), list(scene.road_classes))
    pts, _ = roads.samples(min(1.0, scene.cell_m / 2))
    if len(pts):
        r, c = scene.cell_of(pts)
        blocked[r, c] = True
    labels, _ = ndimage.label(~blocked)
    return labels
