"""Evaluation of the layout models on real data they did not train on (EVAL.md JSON).

`eval_terrain`: generated heightmaps vs real DEM tiles, against an fBm baseline and a
real-vs-real reference from the training regions, all computed in the same run.
`eval_roads`: the same for road networks against grid and random baselines.
Generated tiles get the controls of the real tiles they are compared with (relief, cell size,
roughness / road density, major share), as a user's suggestion would give them; the fBm and
grid baselines get the same relief / density, and the reference uses training-region tiles
with the nearest controls. Implements ENV-a2 (realistic, diverse layouts, measured).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gaiverse.world import road_metrics as rm
from gaiverse.world import terrain_metrics as tm
from gaiverse.world.dem import DemReadError
from gaiverse.world.layout_model import LayoutDiffusion, decode_roads, density_thresholds
from gaiverse.world.osm import OsmReadError
from gaiverse.world.road_graph import clean_road_masks
from gaiverse.world.tiles import TileSet, file_sha256, road_tiles, terrain_tiles
from gaiverse.world.training import DEFAULT_CHECKPOINT, PROJECT_ROOT

log = logging.getLogger(__name__)
BATCH = 32


class DataError(ValueError):
    """Evaluation data or checkpoint cannot be read; the message is the one-line reason."""


def load_model(kind: str, checkpoint: str | Path | None = None) -> LayoutDiffusion:
    """The layout model of `kind` from a checkpoint dir (default: checkpoints/layout/<kind>)."""
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT / kind
    if (path / kind / "layout_config.json").is_file():
        path = path / kind
    try:
        model = LayoutDiffusion.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"cannot load {kind} checkpoint {path}: {err}") from err
    if model.config.kind != kind:
        raise DataError(f"checkpoint {path} is a {model.config.kind!r} model, expected {kind!r}")
    return model


def training_tiles(model: LayoutDiffusion) -> TileSet:
    """Re-create the model's training tiles from the shipped files named in its checkpoint."""
    meta = model.meta
    files = [PROJECT_ROOT / f["path"] if not Path(f["path"]).is_absolute() else Path(f["path"])
             for f in meta.get("training_files", [])]
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        raise DataError(f"training files of the checkpoint are missing: {missing or 'none recorded'}")
    tiling = meta["tiling"]
    if model.config.kind == "terrain":
        return terrain_tiles(files, tiling["tile_px"], tiling["stride"])
    return road_tiles(files, tiling["tile_px"], tiling["road_cell_m"], tiling["stride"])


def _sample_all(model: LayoutDiffusion, controls: np.ndarray, seed: int, steps: int | None,
                steepness: np.ndarray | None = None) -> np.ndarray:
    out = [model.sample(controls[i:i + BATCH], seed=seed + i, steps=steps,
                        steepness=None if steepness is None else steepness[i:i + BATCH])
           for i in range(0, len(controls), BATCH)]
    return np.concatenate(out)


def _pick(n_real: int, n: int) -> np.ndarray:
    """Indices of the real tiles whose controls the n samples get: evenly spread, cycling if n > n_real."""
    if n <= n_real:
        return np.linspace(0, n_real - 1, n).round().astype(int)
    return np.arange(n) % n_real


def _nearest_controls(model: LayoutDiffusion, train: TileSet, target: np.ndarray) -> np.ndarray:
    """Index of the training tile with the nearest standardised controls, per row of `target`."""
    a = model.scaler(model.scaler.raw(train.attrs))
    b = model.scaler(target)
    d = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    return d.argmin(axis=1)


def _clean(obj):
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _overlap(paths: list[Path], model: LayoutDiffusion) -> list[str]:
    trained = {f["sha256"] for f in model.meta.get("training_files", [])}
    return [str(p) for p in paths if file_sha256(p) in trained]


def eval_terrain(real: list[str | Path], n_samples: int = 64, checkpoint: str | Path | None = None,
                 seed: int = 0, steps: int | None = None, out_dir: str | Path | None = None) -> dict:
    """Terrain realism of the model vs fBm vs real-vs-real on real DEM files (EVAL.md JSON dict).

    Implements ENV-a2.
    """
    t0 = time.time()
    paths = [Path(p) for p in real]
    model = load_model("terrain", checkpoint)
    px = model.config.tile_px
    try:
        ev = terrain_tiles(paths, px, stride=px // 2)
    except (DemReadError, ValueError) as err:
        raise DataError(str(err).splitlines()[0]) from err
    train = training_tiles(model)
    idx = _pick(len(ev), n_samples)
    controls = model.scaler.raw(ev.attrs)[idx]
    relief, cells = ev.attrs["relief_m"][idx], ev.attrs["cell_m"][idx]
    log.info("terrain eval: %d real tiles from %d files, %d samples", len(ev), len(paths), n_samples)

    # 1. model samples, conditioned on the real tiles' controls and steered to their steepness
    gen_norm = _sample_all(model, controls, seed, steps, steepness=ev.attrs["steepness"][idx])[:, 0]
    gen = tm.to_metres(gen_norm, relief)
    # 2. fBm baseline with the training data's median spectral exponent and the same relief
    beta = float(np.nanmedian(train.attrs["psd_slope"]))
    rng = np.random.default_rng(seed)
    fbm_norm = np.stack([tm.fbm((px, px), beta, rng) for _ in idx])
    fbm = tm.to_metres(fbm_norm, relief)
    # 2b. fBm given the steepness too (spectral exponent chosen per tile to match it)
    matched = [tm.fbm_with_steepness((px, px), s, seed + i) for i, s in enumerate(ev.attrs["steepness"][idx])]
    fbm_s_norm = np.stack([m[0] for m in matched])
    fbm_s = tm.to_metres(fbm_s_norm, relief)
    # 3. real-vs-real: training-region tiles with the nearest controls, at the same relief
    near = _nearest_controls(model, train, controls)
    ref = tm.to_metres(train.tiles[near, 0], relief)
    ref_raw_idx = np.random.default_rng(seed).choice(len(train), size=min(len(train), max(n_samples, 64)), replace=False)

    real_m = list(ev.heights_m())
    real_stats = tm.terrain_stats(real_m, ev.attrs["cell_m"])
    metrics = tm.compare_terrain(tm.terrain_stats(gen, cells), real_stats)
    baseline = tm.compare_terrain(tm.terrain_stats(fbm, cells), real_stats)
    baseline_s = tm.compare_terrain(tm.terrain_stats(fbm_s, cells), real_stats)
    reference = tm.compare_terrain(tm.terrain_stats(ref, cells), real_stats)
    reference_raw = tm.compare_terrain(tm.terrain_stats(list(train.heights_m()[ref_raw_idx]),
                                                        train.attrs["cell_m"][ref_raw_idx]), real_stats)
    items = []
    sources = np.array([p["source"] for p in ev.provenance])
    for path in paths:
        sel_real = sources == path.name
        sel = sources[idx] == path.name
        if not sel_real.any() or not sel.any():
            items.append({"file": str(path), "tiles": int(sel_real.sum()), "note": "no complete tile or sample"})
            continue
        if sel_real.all():  # the only file with tiles: its figures are the overall ones
            items.append({"file": str(path), "tiles": int(sel_real.sum()), "samples": int(sel.sum()),
                          "cell_m": float(ev.attrs["cell_m"][0]), "metrics": metrics, "baseline": baseline,
                          "reference": reference})
            continue
        rs = tm.terrain_stats([real_m[i] for i in np.nonzero(sel_real)[0]], ev.attrs["cell_m"][sel_real])
        pick = lambda xs: [xs[i] for i in np.nonzero(sel)[0]]  # noqa: E731
        items.append({"file": str(path), "tiles": int(sel_real.sum()), "samples": int(sel.sum()),
                      "cell_m": float(ev.attrs["cell_m"][sel_real][0]),
                      "metrics": tm.compare_terrain(tm.terrain_stats(pick(gen), cells[sel]), rs),
                      "baseline": tm.compare_terrain(tm.terrain_stats(pick(fbm), cells[sel]), rs),
                      "reference": tm.compare_terrain(tm.terrain_stats(pick(ref), cells[sel]), rs)})
    wins = [k for k in tm.TERRAIN_METRICS if metrics[k] < baseline[k]]
    wins_s = [k for k in tm.TERRAIN_METRICS if metrics[k] < baseline_s[k]]
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i, h in enumerate(gen):
            np.save(out / f"terrain_{i:03d}.npy", h.astype(np.float32))
        (out / "controls.json").write_text(json.dumps({"names": model.scaler.names, "controls": controls.tolist(),
                                                       "cell_m": cells.tolist()}))
    train_flat = _dihedral_set(train.tiles[:, 0])
    result = {
        "eval": "terrain",
        "data": [str(p) for p in paths],
        "n": int(n_samples),
        "real_tiles": len(ev),
        "sampling": {"guidance_scale": model.config.guidance_scale, "ddim_steps": steps or model.config.ddim_steps,
                     "controls": model.scaler.names,
                     "steered_to": "each real tile's steepness (the fBm + steepness baseline gets it too)"},
        "metrics": metrics,
        "baseline": {"name": "fbm", "beta": beta, **baseline},
        "baselines": {"fbm_steepness": {
            "how": "fBm with each tile's steepness too: spectral exponent per tile chosen to match it",
            "beta_median": float(np.median([m[1] for m in matched])), **baseline_s}},
        "reference": {"name": "real_vs_real", "regions": sorted(set(train.regions.tolist())),
                      "how": "training-region tile with the nearest controls, rescaled to the same relief", **reference},
        "reference_raw": {"name": "real_vs_real_raw", "how": "random training-region tiles in their own metres",
                          **reference_raw},
        "lower_is_better": {k: True for k in tm.TERRAIN_METRICS},
        "model_beats_baseline": {"count": len(wins), "of": len(tm.TERRAIN_METRICS), "metrics": wins},
        "model_beats_fbm_steepness": {"count": len(wins_s), "of": len(tm.TERRAIN_METRICS), "metrics": wins_s},
        "diversity": {"model": tm.diversity(gen_norm), "fbm": tm.diversity(fbm_norm),
                      "fbm_steepness": tm.diversity(fbm_s_norm),
                      "real": tm.diversity(ev.tiles[:, 0])},
        "memorisation": {
            "model_nearest_train_rms_mean": float(tm.nearest_distance(gen_norm, train_flat).mean()),
            "model_nearest_train_rms_min": float(tm.nearest_distance(gen_norm, train_flat).min()),
            "real_eval_nearest_train_rms_mean": float(tm.nearest_distance(ev.tiles[:, 0], train_flat).mean()),
            "units": "RMS of tiles normalised to [-1, 1], nearest over the 8 rotations/flips of every training "
                     "tile; much smaller than the real-eval figure would suggest copying"},
        "overlap_with_training": _overlap(paths, model),
        "items": items,
        "seconds": round(time.time() - t0, 2),
        "checkpoint": _card_path(model),
    }
    return _clean(result)


def _dihedral_set(tiles: np.ndarray) -> np.ndarray:
    """(n, h, w) -> (8n, h, w): every rotation by k*90 degrees, with and without a flip (training augmentation)."""
    rots = [np.rot90(tiles, k, axes=(1, 2)) for k in range(4)]
    return np.concatenate(rots + [r[:, :, ::-1] for r in rots])


def _card_path(model: LayoutDiffusion) -> str:
    card = DEFAULT_CHECKPOINT / "model_card.md"
    return str(card.relative_to(PROJECT_ROOT)) if card.is_file() else ""


def _road_masks(tiles: np.ndarray) -> np.ndarray:
    """(n, C, px, px) +-1 road tiles (as TileSet stores them) -> (n, px, px) bool union of classes."""
    return (tiles > 0).any(axis=1)


def eval_roads(osm: list[str | Path], n_samples: int = 64, checkpoint: str | Path | None = None,
               seed: int = 0, steps: int | None = None, out_dir: str | Path | None = None,
               match_density: bool = True, cleaned: bool = True) -> dict:
    """Road-network realism of the model vs grid / random baselines vs real-vs-real on OSM files.

    match_density : decode each sample at the threshold whose cleaned road length matches its
    road_density control (`density_thresholds`, as the world does), else at the global threshold.
    cleaned : score every tile set (model, baselines, real) through the same cleaning the world
    applies (`clean_road_masks`); the raw-mask figures are also reported under "raw_masks".
    Implements ENV-a2.
    """
    t0 = time.time()
    paths = [Path(p) for p in osm]
    model = load_model("roads", checkpoint)
    px = model.config.tile_px
    cell = float(model.meta.get("tiling", {}).get("road_cell_m", 8.0))
    try:
        ev = road_tiles(paths, px, cell, stride=px // 2)
    except (OsmReadError, ValueError) as err:
        raise DataError(str(err).splitlines()[0]) from err
    train = training_tiles(model)
    idx = _pick(len(ev), n_samples)
    controls = model.scaler.raw(ev.attrs)[idx]
    density = ev.attrs["road_density"][idx]
    log.info("roads eval: %d real tiles from %d files, %d samples", len(ev), len(paths), n_samples)

    values = _sample_all(model, controls, seed, steps)
    thresholds = (density_thresholds(values, model.config, density, cell)
                  if match_density and model.config.road_encoding == "distance" else None)
    gen = decode_roads(values, model.config, None if thresholds is None else thresholds[:, None, None, None]).any(axis=1)
    rng = np.random.default_rng(seed)
    grid = np.stack([rm.grid_baseline((px, px), d, cell, rng) for d in density])
    rand = np.stack([rm.random_baseline((px, px), d, cell, rng) for d in density])
    ref = _road_masks(train.tiles[_nearest_controls(model, train, controls)])
    real_masks = _road_masks(ev.tiles)
    raw_masks = {k: rm.compare_roads(rm.road_stats(m, cell), rm.road_stats(real_masks, cell))
                 for k, m in (("model", gen), ("grid", grid), ("random", rand), ("real_vs_real", ref))}
    masks = {"gen": gen, "grid": grid, "rand": rand, "ref": ref, "real": real_masks}
    if cleaned:  # what the world meshes: the cleaned graph's centre lines, for every set alike
        masks = {k: clean_road_masks(m, cell) for k, m in masks.items()}
    gen_scored, grid, rand, ref, real_scored = (masks[k] for k in ("gen", "grid", "rand", "ref", "real"))

    real_stats = rm.road_stats(real_scored, cell)
    gen_stats = rm.road_stats(gen_scored, cell)
    metrics = rm.compare_roads(gen_stats, real_stats)
    baseline = rm.compare_roads(rm.road_stats(grid, cell), real_stats)
    random_b = rm.compare_roads(rm.road_stats(rand, cell), real_stats)
    reference = rm.compare_roads(rm.road_stats(ref, cell), real_stats)
    items = []
    sources = np.array([p["source"] for p in ev.provenance])
    for path in paths:
        sel_real, sel = sources == path.name, sources[idx] == path.name
        if not sel_real.any() or not sel.any():
            items.append({"file": str(path), "tiles": int(sel_real.sum()), "note": "no road tile or sample"})
            continue
        if sel_real.all():  # the only file with tiles: its figures are the overall ones
            items.append({"file": str(path), "tiles": int(sel_real.sum()), "samples": int(sel.sum()),
                          "metrics": metrics, "baseline": baseline, "reference": reference})
            continue
        rs = rm.road_stats(real_scored[sel_real], cell)
        items.append({"file": str(path), "tiles": int(sel_real.sum()), "samples": int(sel.sum()),
                      "metrics": rm.compare_roads(rm.road_stats(gen_scored[sel], cell), rs),
                      "baseline": rm.compare_roads(rm.road_stats(grid[sel], cell), rs),
                      "reference": rm.compare_roads(rm.road_stats(ref[sel], cell), rs)})
    wins = [k for k in rm.ROAD_METRICS if metrics[k] < baseline[k]]
    train_masks = _dihedral_set(_road_masks(train.tiles).astype(float))
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(gen):
            Image.fromarray((m * 255).astype(np.uint8)).save(out / f"roads_{i:03d}.png")
    summary = lambda s: {"intersection_density_mean": float(np.nanmean(s.intersection_density)),  # noqa: E731
                         "dead_end_share_mean": float(np.nanmean(s.dead_end_share)) if np.isfinite(s.dead_end_share).any() else None,
                         "road_density_mean": float(np.nanmean(s.road_density)),
                         "degree_hist_1_3_4plus": s.degree_hist.tolist()}
    result = {
        "eval": "roads",
        "data": [str(p) for p in paths],
        "n": int(n_samples),
        "real_tiles": len(ev),
        "cell_m": cell,
        "metrics": metrics,
        "baseline": {"name": "grid", **baseline},
        "baselines": {"random": random_b},
        "reference": {"name": "real_vs_real", "regions": sorted(set(train.regions.tolist())),
                      "how": "training-region tile with the nearest controls", **reference},
        "scoring": {"cleaned": cleaned, "match_density": thresholds is not None,
                    "how": "every tile set (model, baselines, real) is scored through road_graph.clean_road_masks "
                           "(the world's cleaning without linking components)" if cleaned else "raw road masks",
                    "thresholds_px_quartiles": None if thresholds is None else np.percentile(thresholds, [25, 50, 75]).tolist()},
        "raw_masks": raw_masks,
        "lower_is_better": {k: True for k in rm.ROAD_METRICS},
        "model_beats_baseline": {"count": len(wins), "of": len(rm.ROAD_METRICS), "metrics": wins},
        "summary": {"real": summary(real_stats), "model": summary(gen_stats)},
        "diversity": {"model": rm_diversity(gen), "real": rm_diversity(real_masks)},
        "memorisation": {
            "model_nearest_train_rms_mean": float(tm.nearest_distance(gen.astype(float), train_masks).mean()),
            "real_eval_nearest_train_rms_mean": float(tm.nearest_distance(real_masks.astype(float), train_masks).mean()),
            "units": "RMS between binary masks, nearest over the 8 rotations/flips of every training tile"},
        "overlap_with_training": _overlap(paths, model),
        "items": items,
        "seconds": round(time.time() - t0, 2),
        "checkpoint": _card_path(model),
    }
    return _clean(result)


def rm_diversity(masks: np.ndarray) -> float:
    """Mean pairwise RMS distance between binary road masks."""
    return tm.diversity(masks.astype(float))
