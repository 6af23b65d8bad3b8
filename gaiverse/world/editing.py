"""Edits of a world layout, each mapping one WorldState to a new one (which `versions` publishes).

raise / lower / flatten a region, draw a road, delete roads in a region, move a building, and
regenerate a region with new controls by diffusion inpainting. Every edit leaves every cell
outside its region bit-identical (checked before the new state is returned), and a region
regeneration samples only the tiles over the region with few DDIM steps, so an edit of a
1 km² world takes well under 2 s on CPU. Implements ENV-a4 (users adjust generated layouts)
and the real-time modification of ENV-a3.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gaiverse.world.layout_model import LayoutDiffusion, decode_roads, density_thresholds, encode_tiles
from gaiverse.world.osm import ROAD_CLASSES
from gaiverse.world.stitch import _harmonic_fit
from gaiverse.world.world_state import WorldState, building_cells, cell_centres

log = logging.getLogger(__name__)

MAX_REGION_TILES = 16
"""A regeneration covering more tiles than this is a rebuild, not an interactive edit."""


class EditError(ValueError):
    """The edit cannot apply to this world (region outside it, unknown building, collision...)."""


class Region(BaseModel):
    """An axis-aligned rectangle in world metres (x east, y north, origin at the south-west corner)."""

    model_config = ConfigDict(extra="forbid")
    x0_m: float = Field(ge=0)
    y0_m: float = Field(ge=0)
    x1_m: float = Field(gt=0)
    y1_m: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Region:
        if self.x1_m <= self.x0_m or self.y1_m <= self.y0_m:
            raise ValueError(f"region must have x0_m < x1_m and y0_m < y1_m, got "
                             f"({self.x0_m}, {self.y0_m}, {self.x1_m}, {self.y1_m})")
        return self

    def cells(self, state: WorldState) -> np.ndarray:
        """(h, w) bool cells whose centres are inside; EditError when the region misses the world."""
        width, height = state.size_m
        if self.x0_m >= width or self.y0_m >= height:
            raise EditError(f"region starts at ({self.x0_m}, {self.y0_m}) m, outside the "
                            f"{width:.0f} m x {height:.0f} m world")
        xc, yc = cell_centres(state.shape, state.cell_m)
        mask = ((yc >= self.y0_m) & (yc < self.y1_m))[:, None] & ((xc >= self.x0_m) & (xc < self.x1_m))[None, :]
        if not mask.any():
            raise EditError(f"region ({self.x0_m}, {self.y0_m}, {self.x1_m}, {self.y1_m}) m covers no cell "
                            f"(cells are {state.cell_m} m)")
        return mask

    def weights(self, state: WorldState, feather_m: float) -> np.ndarray:
        """(h, w) float weights: 1 inside, falling linearly to 0 over `feather_m` towards the border, 0 outside."""
        mask = self.cells(state)
        if feather_m <= 0:
            return mask.astype(np.float64)
        xc, yc = cell_centres(state.shape, state.cell_m)
        dy = np.minimum(yc - self.y0_m, self.y1_m - yc)[:, None]
        dx = np.minimum(xc - self.x0_m, self.x1_m - xc)[None, :]
        inner = np.clip(np.minimum(dx, dy) / feather_m, 0.0, 1.0)
        return np.where(mask, np.maximum(inner, 1e-3), 0.0)


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RaiseEdit(_Edit):
    """Raise (or with op "lower", lower) the terrain in a region by `amount_m`, feathered at its border."""

    op: Literal["raise", "lower"]
    region: Region
    amount_m: float = Field(gt=0, le=500)
    feather_m: float = Field(default=24.0, ge=0, le=500)


class FlattenEdit(_Edit):
    """Flatten a region to `target_m` (default: the region's mean height), feathered at its border."""

    op: Literal["flatten"]
    region: Region
    target_m: float | None = Field(default=None, ge=-1000, le=10000)
    feather_m: float = Field(default=16.0, ge=0, le=500)


class DrawRoadEdit(_Edit):
    """Draw a road along a polyline of [x_m, y_m] points; buildings it crosses are removed."""

    op: Literal["draw_road"]
    points: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(min_length=2, max_length=200)
    road_class: Literal["major", "minor"] = "minor"
    width_m: float = Field(default=8.0, gt=0, le=60)


class DeleteRoadsEdit(_Edit):
    """Delete the roads (of one class, or all) inside a region."""

    op: Literal["delete_roads"]
    region: Region
    road_class: Literal["major", "minor", "all"] = "all"


class MoveBuildingEdit(_Edit):
    """Move a building by (dx_m, dy_m) and rotate it about its centroid; refused if it would hit a road, water or another building."""

    op: Literal["move_building"]
    building_id: str = Field(min_length=1, max_length=100)
    dx_m: float = Field(default=0.0, ge=-5000, le=5000)
    dy_m: float = Field(default=0.0, ge=-5000, le=5000)
    rotate_deg: float = Field(default=0.0, ge=-360, le=360)


class RegenerateControls(BaseModel):
    """Controls of a regenerated region (unset ones keep the world's)."""

    model_config = ConfigDict(extra="forbid")
    relief_m: float | None = Field(default=None, gt=0, le=3000)
    roughness: float | None = Field(default=None, gt=0, le=0.2)
    road_density: float | None = Field(default=None, ge=0, le=40)
    major_share: float | None = Field(default=None, ge=0, le=1)


class RegenerateEdit(_Edit):
    """Change controls and regenerate a region by diffusion inpainting (everything outside it is kept)."""

    op: Literal["regenerate"]
    region: Region
    controls: RegenerateControls = Field(default_factory=RegenerateControls)
    layers: list[Literal["terrain", "roads"]] = Field(default_factory=lambda: ["terrain", "roads"], min_length=1)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    steps: int = Field(default=8, ge=2, le=50)


Edit = Annotated[Union[RaiseEdit, FlattenEdit, DrawRoadEdit, DeleteRoadsEdit, MoveBuildingEdit, RegenerateEdit],
                 Field(discriminator="op")]


class EditRequest(BaseModel):
    """What the API and the CLI accept: one edit (by `op`) and the version it applies to."""

    model_config = ConfigDict(extra="forbid")
    edit: Edit
    base_version: int | None = Field(default=None, ge=1, description="version the edit applies to (default latest)")
    message: str | None = Field(default=None, max_length=500)


@dataclass
class EditResult:
    """A new state and what the edit did (recorded in the new version's manifest)."""

    state: WorldState
    summary: dict[str, Any] = field(default_factory=dict)
    region: np.ndarray | None = None
    """(h, w) bool cells the edit was allowed to change."""


@dataclass
class LayoutModels:
    """The diffusion models a region regeneration samples from."""

    terrain: LayoutDiffusion
    roads: LayoutDiffusion

    @classmethod
    def from_checkpoint(cls, directory=None) -> LayoutModels:
        from pathlib import Path

        from gaiverse.world.training import DEFAULT_CHECKPOINT

        root = Path(directory) if directory else DEFAULT_CHECKPOINT
        return cls(LayoutDiffusion.from_pretrained(root / "terrain"), LayoutDiffusion.from_pretrained(root / "roads"))


def apply_edit(state: WorldState, edit: Edit, models: LayoutModels | None = None) -> EditResult:
    """Apply one edit to a copy of `state`; the input is never modified. Implements ENV-a4 and ENV-a3.

    Raises EditError when the edit does not fit the world. Cells outside the edit's region are
    bit-identical in the result (verified here).
    """
    started = time.perf_counter()
    handler = _HANDLERS.get(edit.op)
    if handler is None:
        raise EditError(f"unknown edit `op` {edit.op!r}")
    if edit.op == "regenerate" and models is None:
        raise EditError("a `regenerate` edit needs the layout models (none were given)")
    result = handler(state, edit, models) if edit.op == "regenerate" else handler(state, edit)
    if result.region is not None:
        _check_outside_unchanged(state, result.state, result.region)
    result.summary = {"op": edit.op, "edit": edit.model_dump(mode="json"), **result.summary,
                      "seconds": round(time.perf_counter() - started, 4)}
    log.info("edit %s: %s", edit.op, {k: v for k, v in result.summary.items() if k != "edit"})
    return result


def _check_outside_unchanged(old: WorldState, new: WorldState, region: np.ndarray) -> None:
    outside = ~region
    for name in ("heights", "water"):
        if not np.array_equal(getattr(old, name)[outside], getattr(new, name)[outside]):
            raise AssertionError(f"edit changed `{name}` outside its region")
    if not np.array_equal(old.roads[:, outside], new.roads[:, outside]):
        raise AssertionError("edit changed `roads` outside its region")


def _water_in(state: WorldState, region: np.ndarray) -> None:
    """Re-derive water inside the region from the water level (rivers stay where heights stay low)."""
    if state.water_level_m >= 0:
        state.water[region] = state.heights[region] <= state.water_level_m
        state.roads[:, region & state.water] = False


def _raise(state: WorldState, edit: RaiseEdit) -> EditResult:
    new = state.copy()
    weights = edit.region.weights(state, edit.feather_m)
    region = weights > 0
    sign = 1.0 if edit.op == "raise" else -1.0
    new.heights[region] = (state.heights[region] + sign * edit.amount_m * weights[region]).astype(np.float32)
    _water_in(new, region)
    return EditResult(new, {"changed_cells": int(region.sum()), "amount_m": sign * edit.amount_m}, region)


def _flatten(state: WorldState, edit: FlattenEdit) -> EditResult:
    new = state.copy()
    weights = edit.region.weights(state, edit.feather_m)
    region = weights > 0
    target = float(state.heights[edit.region.cells(state)].mean()) if edit.target_m is None else edit.target_m
    new.heights[region] = ((1 - weights[region]) * state.heights[region] + weights[region] * target).astype(np.float32)
    _water_in(new, region)
    return EditResult(new, {"changed_cells": int(region.sum()), "target_m": round(target, 3)}, region)


def _draw_road(state: WorldState, edit: DrawRoadEdit) -> EditResult:
    width, height = state.size_m
    pts = np.asarray(edit.points, dtype=np.float64)
    if (pts < 0).any() or (pts[:, 0] > width).any() or (pts[:, 1] > height).any():
        raise EditError(f"road points must lie inside the {width:.0f} m x {height:.0f} m world, got {edit.points}")
    xc, yc = cell_centres(state.shape, state.cell_m)
    yy, xx = np.meshgrid(yc, xc, indexing="ij")
    half = max(edit.width_m / 2.0, state.cell_m / 2.0)
    band = np.zeros(state.shape, dtype=bool)
    for a, b in zip(pts[:-1], pts[1:]):
        band |= _segment_distance(xx, yy, a, b) <= half
    band &= ~state.water
    if not band.any():
        raise EditError("the road would lie entirely on water")
    new = state.copy()
    new.roads[ROAD_CLASSES.index(edit.road_class)][band] = True
    removed = _drop_buildings_on(new, band)
    length = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
    return EditResult(new, {"changed_cells": int(band.sum()), "length_m": round(length, 1),
                            "buildings_removed": removed}, band)


def _segment_distance(xx: np.ndarray, yy: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((xx - a[0]) * ab[0] + (yy - a[1]) * ab[1]) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.hypot(xx - (a[0] + t * ab[0]), yy - (a[1] + t * ab[1]))


def _delete_roads(state: WorldState, edit: DeleteRoadsEdit) -> EditResult:
    region = edit.region.cells(state)
    new = state.copy()
    classes = range(len(ROAD_CLASSES)) if edit.road_class == "all" else [ROAD_CLASSES.index(edit.road_class)]
    removed = 0
    for k in classes:
        removed += int((new.roads[k] & region).sum())
        new.roads[k][region] = False
    return EditResult(new, {"road_cells_removed": removed}, region)


def _drop_buildings_on(state: WorldState, cells: np.ndarray) -> list[str]:
    """Remove buildings that overlap `cells` and now stand on a road or on water; returns their ids."""
    blocked = state.roads.any(0) | state.water
    kept, removed = [], []
    for building in state.buildings:
        footprint = building_cells(building, state.shape, state.cell_m)
        if (footprint & cells).any() and (footprint & blocked).any():
            removed.append(building.id)
        else:
            kept.append(building)
    state.buildings = kept
    return removed


def _move_building(state: WorldState, edit: MoveBuildingEdit) -> EditResult:
    index = next((i for i, b in enumerate(state.buildings) if b.id == edit.building_id), None)
    if index is None:
        raise EditError(f"no building {edit.building_id!r} in this world")
    new = state.copy()
    building = new.buildings[index]
    poly = np.asarray(building.footprint, dtype=np.float64)
    centre = poly.mean(axis=0)
    angle = math.radians(edit.rotate_deg)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = (poly - centre) @ rot.T + centre + np.array([edit.dx_m, edit.dy_m])
    width, height = state.size_m
    if (moved < 0).any() or (moved[:, 0] > width).any() or (moved[:, 1] > height).any():
        raise EditError(f"building {edit.building_id!r} would leave the {width:.0f} m x {height:.0f} m world")
    building.footprint = moved.round(3).tolist()
    cells = building_cells(building, state.shape, state.cell_m)
    if (cells & state.roads.any(0)).any():
        raise EditError(f"building {edit.building_id!r} would stand on a road there")
    if (cells & state.water).any():
        raise EditError(f"building {edit.building_id!r} would stand in water there")
    for other in new.buildings:
        if other.id != building.id and (building_cells(other, state.shape, state.cell_m) & cells).any():
            raise EditError(f"building {edit.building_id!r} would overlap building {other.id!r}")
    return EditResult(new, {"building_id": building.id, "moved_m": round(math.hypot(edit.dx_m, edit.dy_m), 3),
                            "rotate_deg": edit.rotate_deg}, np.zeros(state.shape, dtype=bool))


def _regenerate(state: WorldState, edit: RegenerateEdit, models: LayoutModels) -> EditResult:
    region = edit.region.cells(state)
    new = state.copy()
    c = edit.controls
    summary: dict[str, Any] = {"changed_cells": int(region.sum())}
    if "terrain" in edit.layers:
        relief = c.relief_m if c.relief_m is not None else state.controls.relief_m * 0.5
        roughness = c.roughness if c.roughness is not None else state.controls.roughness
        controls = models.terrain.control_vector({"relief_m": relief, "cell_m": state.cell_m, "roughness": roughness,
                                                  "steepness": state.controls.steepness})
        new.heights, tiles = _inpaint_terrain(new.heights, region, models.terrain, controls, edit.seed, edit.steps,
                                              target_relief=c.relief_m, steepness=state.controls.steepness)
        _water_in(new, region)
        summary["terrain_tiles"] = tiles
    if "roads" in edit.layers:
        density = c.road_density if c.road_density is not None else state.controls.road_density
        share = c.major_share if c.major_share is not None else state.controls.major_share
        controls = models.roads.control_vector({"road_density": density, "major_share": share})
        new.roads, tiles = _inpaint_roads(new.roads, region, models.roads, controls, edit.seed + 7919, edit.steps,
                                          state.cell_m)
        new.roads[:, region & new.water] = False
        summary["road_tiles"] = tiles
    summary["buildings_removed"] = _drop_buildings_on(new, region)
    return EditResult(new, summary, region)


def _windows(region: np.ndarray, px: int, overlap: int = 8) -> list[tuple[int, int]]:
    """Origins of px x px windows (inside the padded canvas) covering the region's bounding box."""
    rows, cols = np.nonzero(region)
    h, w = region.shape
    stride = px - overlap

    def starts(lo: int, hi: int, size: int) -> list[int]:
        first = min(max(lo - overlap // 2, 0), max(size - px, 0))
        out = [first]
        while out[-1] + px <= hi:
            out.append(min(out[-1] + stride, max(size - px, 0)))
            if out[-1] == out[-2]:
                break
        return out

    ys = starts(int(rows.min()), int(rows.max()), max(h, px))
    xs = starts(int(cols.min()), int(cols.max()), max(w, px))
    if len(ys) * len(xs) > MAX_REGION_TILES:
        raise EditError(f"the region spans {len(ys) * len(xs)} tiles of {px} cells; an interactive regeneration "
                        f"allows {MAX_REGION_TILES}: pick a smaller region or rebuild the world")
    return [(y, x) for y in ys for x in xs]


def _padded(array: np.ndarray, px: int) -> np.ndarray:
    """Edge-pad the last two axes up to px (worlds smaller than one tile)."""
    h, w = array.shape[-2:]
    pad = [(0, 0)] * (array.ndim - 2) + [(0, max(px - h, 0)), (0, max(px - w, 0))]
    return np.pad(array, pad, mode="edge")


def _inpaint_terrain(heights: np.ndarray, region: np.ndarray, model: LayoutDiffusion, controls: np.ndarray,
                     seed: int, steps: int, target_relief: float | None,
                     steepness: float | None = None) -> tuple[np.ndarray, int]:
    """Regenerate heights inside `region`, one tile after another, each conditioned on what is known around it
    (and steered to the world's `steepness`, as the build's tiles are)."""
    px = model.config.tile_px
    h, w = heights.shape
    canvas = _padded(heights.astype(np.float64), px)
    todo = _padded(region, px)
    todo[h:, :] = False
    todo[:, w:] = False
    windows = _windows(region, px)
    for k, (r, q) in enumerate(windows):
        win, need = canvas[r:r + px, q:q + px], todo[r:r + px, q:q + px]
        if not need.any():
            continue
        known_cells = ~need
        base = float(win[known_cells].min()) if known_cells.any() else float(win.min())
        relief = max(float(np.ptp(win[known_cells])) if known_cells.any() else 0.0, target_relief or 0.0, 1e-3)
        norm = (2.0 * (win - base) / relief - 1.0).astype(np.float32)[None, None]
        mask = known_cells.astype(np.float32)[None, None]
        tile = model.sample(controls[None], seed=seed * 1009 + k, steps=steps, known=norm, known_mask=mask,
                            paste_known=False, steepness=None if steepness is None else np.array([steepness]))[0]
        tile = _harmonic_fit(tile, norm[0], mask[0], iterations=150)[0]
        fresh = (tile.astype(np.float64) + 1.0) / 2.0 * relief + base
        win[need] = fresh[need]
        need[:] = False
    out = heights.copy()
    out[region] = canvas[:h, :w][region].astype(np.float32)
    return out, len(windows)


def _inpaint_roads(roads: np.ndarray, region: np.ndarray, model: LayoutDiffusion, controls: np.ndarray,
                   seed: int, steps: int, cell_m: float) -> tuple[np.ndarray, int]:
    """Regenerate road masks inside `region` from the roads model, conditioned on the roads around it; each
    window is decoded at the threshold that gives the requested road density (`controls[0]`), as a build does."""
    px = model.config.tile_px
    h, w = region.shape
    canvas = _padded(roads.copy(), px)
    todo = _padded(region, px)
    todo[h:, :] = False
    todo[:, w:] = False
    for k, (r, q) in enumerate(_windows(region, px)):
        need = todo[r:r + px, q:q + px]
        if not need.any():
            continue
        win = canvas[:, r:r + px, q:q + px]
        known = encode_tiles(np.where(win, 1.0, -1.0)[None].astype(np.float32), model.config)
        mask = np.broadcast_to((~need).astype(np.float32), known.shape[1:])[None].copy()
        tile = model.sample(controls[None], seed=seed * 1009 + k, steps=steps, known=known, known_mask=mask)[0]
        threshold = (density_thresholds(tile[None], model.config, controls[:1], cell_m)[0]
                     if model.config.road_encoding == "distance" else None)
        fresh = decode_roads(tile, model.config, threshold)
        win[:, need] = fresh[:, need]
        need[:] = False
    out = roads.copy()
    out[:, region] = canvas[:, :h, :w][:, region]
    return out, len(_windows(region, px))


_HANDLERS = {"raise": _raise, "lower": _raise, "flatten": _flatten, "draw_road": _draw_road,
             "delete_roads": _delete_roads, "move_building": _move_building, "regenerate": _regenerate}
