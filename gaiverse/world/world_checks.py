"""Geometric checks of an assembled world, as plain tables: buildings vs roads, water and each other;
road connectivity; triangle budget; height range against the controls.

`check_frames` returns pandas frames that `validation/world.py` runs Great Expectations on (the
flow's gate); `check_world` gives the same verdicts without GX, with one clear message per
failure, for the library and tests. Implements ENV-d1 (validated procedural elements).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gaiverse.world.road_graph import ROAD_HALF_WIDTH_M


@dataclass
class WorldCheckResult:
    """Verdicts of check_world."""

    ok: bool
    failures: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


def _inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    a, b = poly, np.roll(poly, -1, axis=0)
    cross = (a[:, 1] > y) != (b[:, 1] > y)
    dy = np.where(b[:, 1] == a[:, 1], 1e-12, b[:, 1] - a[:, 1])
    return (cross & (x < a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy)).sum(axis=1) % 2 == 1


def _dist_to_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """(n,) distance from points to the polygon's boundary (0 inside)."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(((points[:, None, :] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    d = np.linalg.norm(points[:, None, :] - (a + t[..., None] * ab), axis=-1).min(1)
    return np.where(_inside(points, poly), 0.0, d)


def _samples(line: np.ndarray, step: float = 1.0) -> np.ndarray:
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))])
    t = np.arange(0, s[-1] + 1e-9, step)
    return np.column_stack([np.interp(t, s, line[:, 0]), np.interp(t, s, line[:, 1])])


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """z of the 2-D cross product, broadcasting over rows."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _polygons_overlap(p: np.ndarray, q: np.ndarray) -> bool:
    """True when two simple polygons share area (a vertex inside the other or crossing edges)."""
    if _inside(p, q).any() or _inside(q, p).any():
        return True
    for a, b in zip(p, np.roll(p, -1, axis=0)):
        c, d = q, np.roll(q, -1, axis=0)
        d1 = _cross(b - a, c - a)
        d2 = _cross(b - a, d - a)
        d3 = _cross(d - c, a - c)
        d4 = _cross(d - c, b - c)
        if ((d1 * d2 < 0) & (d3 * d4 < 0)).any():
            return True
    return False


def building_frame(footprints: dict[str, np.ndarray], roads: list[tuple[np.ndarray, str]],
                   water: np.ndarray, cell_m: float) -> pd.DataFrame:
    """One row per building: on_road / on_water / overlaps (other building ids) / area.

    footprints : id -> (n, 2) polygon metres; roads : (polyline, class) pairs.
    """
    samples = [(_samples(line), ROAD_HALF_WIDTH_M[cls]) for line, cls in roads]
    ids = list(footprints)
    rows = []
    h, w = water.shape
    for i, bid in enumerate(ids):
        poly = np.asarray(footprints[bid], dtype=np.float64)
        on_road = [k for k, (pts, half) in enumerate(samples) if (_dist_to_polygon(pts, poly) < half - 1e-6).any()]
        probe = np.vstack([poly, poly.mean(0)[None]])
        rr = np.clip((h - probe[:, 1] / cell_m).astype(int), 0, h - 1)
        cc = np.clip((probe[:, 0] / cell_m).astype(int), 0, w - 1)
        centre, radius = poly.mean(0), np.linalg.norm(poly - poly.mean(0), axis=1).max()
        overlaps = []
        for other in ids[:i] + ids[i + 1:]:
            q = np.asarray(footprints[other], dtype=np.float64)
            if np.linalg.norm(q.mean(0) - centre) <= radius + np.linalg.norm(q - q.mean(0), axis=1).max() \
                    and _polygons_overlap(poly, q):
                overlaps.append(other)
        rows.append({"id": bid, "on_road": bool(on_road), "roads_hit": ",".join(f"road_{k}" for k in on_road),
                     "on_water": bool(water[rr, cc].any()), "overlaps_building": bool(overlaps),
                     "overlapping": ",".join(overlaps)})
    return pd.DataFrame(rows, columns=["id", "on_road", "roads_hit", "on_water", "overlaps_building", "overlapping"])


def road_frame(records: list[dict]) -> pd.DataFrame:
    """One row per road edge with `connected` = in the network's main component."""
    frame = pd.DataFrame(records, columns=["id", "cls", "width_m", "kind", "bridge", "length_m", "component", "u", "v"])
    main = frame["component"].mode().iloc[0] if len(frame) else 0
    frame["connected"] = frame["component"] == main
    frame["id"] = "road_" + frame["id"].astype(str)
    return frame


def summary_frame(triangles: int, budget: int, heights: np.ndarray, relief_m: float, tolerance: float = 0.05,
                  missing_extras: int = 0, slack_m: float = 3.0) -> pd.DataFrame:
    """One row with the scene-wide figures: triangles vs budget, height range vs the requested relief
    (with `tolerance` and `slack_m` for the water bed dug under the water plane)."""
    relief = float(np.ptp(heights))
    return pd.DataFrame([{"id": "world", "triangles": int(triangles), "budget": int(budget),
                          "within_budget": triangles <= budget, "relief_m": relief, "requested_relief_m": relief_m,
                          "relief_within_controls": relief <= relief_m * (1 + tolerance) + slack_m,
                          "min_height_m": float(heights.min()), "nodes_missing_extras": int(missing_extras)}])


def check_world(buildings: pd.DataFrame, roads: pd.DataFrame, summary: pd.DataFrame) -> WorldCheckResult:
    """The suite's verdicts without Great Expectations; each failure names the objects and values."""
    fails = []
    for col, what, detail in (("on_road", "intersects a road", "roads_hit"), ("on_water", "stands in water", None),
                              ("overlaps_building", "overlaps another building", "overlapping")):
        bad = buildings[buildings[col]] if len(buildings) else buildings
        for _, row in bad.iterrows():
            fails.append(f"building {row['id']} {what}" + (f" ({row[detail]})" if detail else ""))
    for _, row in roads[~roads["connected"]].iterrows():
        fails.append(f"{row['id']} is not connected to the road network (component {row['component']})")
    s = summary.iloc[0]
    if not s["within_budget"]:
        fails.append(f"triangle count {s['triangles']} exceeds the budget of {s['budget']}")
    if not s["relief_within_controls"]:
        fails.append(f"height range {s['relief_m']:.1f} m exceeds the requested relief of {s['requested_relief_m']:.1f} m")
    if s["nodes_missing_extras"]:
        fails.append(f"{s['nodes_missing_extras']} mesh nodes carry no extras (type, id)")
    return WorldCheckResult(not fails, fails, {"buildings": len(buildings), "roads": len(roads)})
