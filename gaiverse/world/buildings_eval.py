"""Training and evaluation of the building model on real OSM buildings (EVAL.md JSON).

Training (`train_buildings`): the shipped OSM extracts, each split into a western training part
and an eastern held-out strip (`spatial_split`); the split is recorded in the checkpoint so an
evaluation on a shipped file scores only its held-out strip. Evaluation (`eval_buildings`): for
every real building of the given files the model samples a building for the same context (local
road density; levels also given the real footprint area), and the distributions of area, aspect,
orientation to the road, setback, spacing, levels and shape-class mix are compared with the real
ones (Wasserstein-1 and KS), against a uniform-random baseline in the same run. A layout-level
check places buildings with `generate_building_layout` on the real roads of each file and
measures the same statistics on what was placed. Implements ENV-b1 and ENV-b2 (measured).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import ks_2samp, wasserstein_distance

from gaiverse.world.buildings_data import SHAPE_CLASSES, BuildingSet, OsmBuildings, read_osm_buildings, spatial_split
from gaiverse.world.buildings_layout import BuildingControls, SceneInput, generate_building_layout
from gaiverse.world.buildings_model import (DEFAULT_CHECKPOINT, BuildingModel, BuildingModelConfig, BuildingSamples, fit_building_model,
                                            uniform_baseline)
from gaiverse.world.osm import OsmReadError
from gaiverse.world.training import PROJECT_ROOT

log = logging.getLogger(__name__)

TRAIN_FILES = tuple(PROJECT_ROOT / "data" / "osm" / f for f in (
    "Helsinki.osm.pbf", "test.osm.pbf", "West-Oakland.osm.bz2", "planet_10.068_48.135_10.071_48.137.osm"))
HOLDOUT_SHARE = 0.3


class BuildingDataError(ValueError):
    """Evaluation data or checkpoint cannot be read; the message is the one-line reason."""


def _read(path: str | Path) -> OsmBuildings:
    try:
        return read_osm_buildings(path)
    except OsmReadError as err:
        raise BuildingDataError(str(err)) from err


def train_buildings(out: str | Path | None = None, files: tuple[Path, ...] = TRAIN_FILES,
                    holdout_share: float = HOLDOUT_SHARE, config: BuildingModelConfig | None = None) -> BuildingModel:
    """Fit the building model on the western parts of `files` and save it to `out`. Implements ENV-b1."""
    t0 = time.perf_counter()
    train_parts, split = [], []
    for path in files:
        data = _read(path)
        held, threshold = spatial_split(data.buildings, holdout_share)
        train_parts.append(data.buildings.subset(~held))
        rel = Path(path).relative_to(PROJECT_ROOT) if Path(path).is_relative_to(PROJECT_ROOT) else Path(path)
        split.append({"path": str(rel),
                      "sha256": data.sha256, "holdout_x_min_m": threshold, "n_train": int((~held).sum()),
                      "n_holdout": int(held.sum())})
    model = fit_building_model(BuildingSet.concat(train_parts), config)
    model.meta.update({"training_files": split, "holdout_share": holdout_share,
                       "fit_seconds": round(time.perf_counter() - t0, 1)})
    if out is not None:
        model.save(out)
    return model


def load_model(checkpoint: str | Path | None = None) -> BuildingModel:
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    try:
        return BuildingModel.load(path)
    except (OSError, ValueError, KeyError) as err:
        raise BuildingDataError(f"cannot load building checkpoint {path}: {err}") from err


def _stats(s: BuildingSamples | BuildingSet) -> dict[str, np.ndarray]:
    """The compared statistics, in the units the distances are reported in."""
    if isinstance(s, BuildingSet):
        c = s.cols
        return {"log_area": np.log(c["area_m2"]), "aspect": c["aspect"], "orient_deg": c["orient_deg"],
                "setback_m": c["road_dist_m"], "spacing_m": c["spacing_m"], "levels": c["levels"],
                "shape": s.shape_class}
    return {"log_area": np.log(s.area_m2), "aspect": s.aspect, "orient_deg": s.orient_deg, "setback_m": s.setback_m,
            "spacing_m": s.spacing_m, "levels": s.levels, "shape": s.shape_class}


def compare(gen: dict[str, np.ndarray], real: dict[str, np.ndarray]) -> dict[str, float]:
    """W1 and KS per continuous statistic, total-variation distance of the shape-class mix."""
    out = {}
    for key in ("log_area", "aspect", "orient_deg", "setback_m", "spacing_m", "levels"):
        g, r = np.asarray(gen[key], float), np.asarray(real[key], float)
        g, r = g[np.isfinite(g)], r[np.isfinite(r)]
        if len(g) and len(r):
            out[f"{key}_w1"] = float(wasserstein_distance(g, r))
            out[f"{key}_ks"] = float(ks_2samp(g, r).statistic)
    shares = [np.array([np.mean(np.asarray(x) == c) for c in SHAPE_CLASSES]) for x in (gen["shape"], real["shape"])]
    out["shape_mix_tv"] = float(0.5 * np.abs(shares[0] - shares[1]).sum())
    return out


def eval_buildings(osm: list[str | Path], checkpoint: str | Path | None = None, seed: int = 0,
                   layout_check: bool = True, out_dir: str | Path | None = None) -> dict:
    """Distribution distances between generated and real buildings vs a uniform baseline (EVAL.md JSON)."""
    t0 = time.perf_counter()
    if not osm:
        raise BuildingDataError("no --osm files given")
    model = load_model(checkpoint)
    trained = {f["sha256"]: f for f in model.meta.get("training_files", [])}
    rng = np.random.default_rng(seed)
    reals, items, layout_real, layout_gen, overlap = [], [], [], [], []
    for path in osm:
        data = _read(path)
        b = data.buildings
        if data.sha256 in trained:  # a shipped training file: score only its held-out strip
            keep = b.cols["x"] >= trained[data.sha256]["holdout_x_min_m"]
            overlap.append(str(path))
        else:
            keep = np.ones(len(b), dtype=bool)
        keep &= np.isfinite(b.cols["road_density"]) & np.isfinite(b.cols["spacing_m"])
        part = b.subset(keep)
        if len(part) < 5:
            raise BuildingDataError(f"{path}: fewer than 5 usable held-out buildings ({len(part)})")
        reals.append(part)
        items.append({"file": str(path), "n_real": len(part), "held_out_strip_only": data.sha256 in trained})
        if layout_check:
            placed, real_ctx = _layout_on_real_roads(data, keep, model, seed)
            placed_u, _ = _layout_on_real_roads(data, keep, _UniformModel(model), seed)
            layout_gen.append((placed, placed_u))
            layout_real.append(real_ctx)
            items[-1]["n_placed_on_real_roads"] = len(placed)
            items[-1]["n_placed_uniform"] = len(placed_u)
    real = BuildingSet.concat(reals)
    gen = model.sample(real.cols["road_density"], rng)
    tagged = np.isfinite(real.cols["levels"])  # levels are compared where the real building carries them
    gen.levels = np.where(tagged, _levels_given_area(model, real, rng), np.nan)
    base = uniform_baseline(model, len(real), rng)
    base.levels = np.where(tagged, base.levels, np.nan)
    real_stats = _stats(real)
    metrics, baseline = compare(_stats(gen), real_stats), compare(_stats(base), real_stats)
    result = {"eval": "buildings", "data": [str(p) for p in osm], "n": len(real), "metrics": metrics,
              "baseline": {"name": "uniform", **baseline}, "lower_is_better": {k: True for k in metrics},
              "model_beats_baseline": {"count": sum(metrics[k] < baseline[k] for k in metrics), "of": len(metrics)},
              "real_summary": _summary(real_stats), "generated_summary": _summary(_stats(gen)),
              "overlap_with_training": overlap, "items": items}
    if layout_check and all(len(g) and len(u) for g, u in layout_gen):
        real_all = BuildingSet.concat(layout_real)
        placed = BuildingSet.concat([g for g, _ in layout_gen])
        placed_u = BuildingSet.concat([u for _, u in layout_gen])
        result["layout_on_real_roads"] = {
            "n_real": len(real_all), "n_placed": len(placed), "n_placed_uniform": len(placed_u),
            "metrics": compare(_stats(placed), _stats(real_all)),
            "baseline": {"name": "uniform attributes, same placer", **compare(_stats(placed_u), _stats(real_all))}}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "generated_buildings.npz", **{k: np.asarray(v) for k, v in vars(gen).items()})
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["checkpoint"] = str(Path(checkpoint or DEFAULT_CHECKPOINT) / "model_card.md")
    return result


def _levels_given_area(model: BuildingModel, real: BuildingSet, rng: np.random.Generator) -> np.ndarray:
    """Levels for the real footprints' own context and area (tagged buildings are a biased, larger subset)."""
    from gaiverse.world.buildings_model import context_of

    ctx = np.column_stack([context_of(real.cols["road_density"])[:, 0], np.log(real.cols["area_m2"])])
    lv, _ = model.levels.sample(ctx, rng)
    return np.clip(np.round(np.exp(np.clip(lv[:, 0], *model.ranges["log_levels"]))), 1, None)


class _UniformModel:
    """The uniform baseline behind the BuildingModel sampling interface (same placer, same colours)."""

    def __init__(self, model: BuildingModel):
        self.model = model

    def sample(self, road_density, rng=0, max_levels=None, levels_boost=0.0) -> BuildingSamples:
        return uniform_baseline(self.model, len(road_density), rng)

    def colours(self, n, rng=0):
        return self.model.colours(n, rng)


def _layout_on_real_roads(data: OsmBuildings, keep: np.ndarray, model: BuildingModel, seed: int):
    """Place buildings on the file's real roads inside the held-out buildings' box; measure both sides."""
    b = data.buildings
    xy = np.column_stack([b.cols["x"], b.cols["y"]])[keep]
    lo, hi = xy.min(0) - 20.0, xy.max(0) + 20.0
    size = hi - lo
    cell = 4.0
    shape = (max(2, int(np.ceil(size[1] / cell))), max(2, int(np.ceil(size[0] / cell))))
    lines, classes = [], []
    for line, cls in zip(data.roads.polylines, data.roads.classes):
        inside = np.all((line >= lo - 200) & (line <= hi + 200), axis=1)
        if inside.sum() >= 2:
            lines.append(line[inside] - lo)
            classes.append(cls)
    scene = SceneInput(np.zeros(shape), cell, lines, classes)
    layout = generate_building_layout(scene, model, BuildingControls(settlement_radius_m=0.0), seed=seed)
    from gaiverse.world.buildings_data import RoadLines

    placed = layout.measured(RoadLines(lines, classes))
    return placed, b.subset(keep)


def _summary(stats: dict[str, np.ndarray]) -> dict:
    out = {}
    for key, v in stats.items():
        if key == "shape":
            out["shape_mix"] = {c: round(float(np.mean(np.asarray(v) == c)), 3) for c in SHAPE_CLASSES}
            continue
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        if len(v):
            out[key] = {"median": round(float(np.median(v)), 3), "p10": round(float(np.quantile(v, 0.1)), 3),
                        "p90": round(float(np.quantile(v, 0.9)), 3), "n": int(len(v))}
    return out


def _table(metrics: dict, baseline: dict, names: list[str]) -> list[str]:
    rows = ["| metric (lower is better) | model | uniform | model better |", "|---|---|---|---|"]
    for k in names:
        if k in metrics and k in baseline:
            rows.append(f"| {k} | {metrics[k]:.4g} | {baseline[k]:.4g} | {'yes' if metrics[k] < baseline[k] else 'no'} |")
    return rows


def write_model_card(checkpoint: str | Path, held_out: dict, cross_region: dict | None, command: str,
                     notes: str = "") -> Path:
    """checkpoints/buildings/model_card.md from the model's metadata and eval results (EVAL.md JSON)."""
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    meta = model.meta
    files = "; ".join(f"`{f['path']}` ({f['n_train']} train / {f['n_holdout']} held out east of x = "
                      f"{f['holdout_x_min_m']:.0f} m)" for f in meta["training_files"])
    names = list(held_out["lower_is_better"])
    parts = ["# Building model (ENV-b1)", "",
             "A fitted generative model of buildings (`gaiverse/world/buildings_model.py`): a full-covariance Gaussian "
             "mixture over [log(1 + local road density); log area, log aspect, orientation to the nearest road, "
             "log setback, log nearest-neighbour spacing], sampled conditioned on the context; a shape-class "
             "distribution per component; a conditional mixture of log storeys given context and log area; roof "
             "shapes and colours from the few tagged values plus documented priors. One JSON file "
             f"({(checkpoint / 'buildings_model.json').stat().st_size // 1024} KB).", "",
             f"- Data (OSM, ODbL, `data/osm/LICENSE.md`): {files}.",
             f"- Fitted on {meta['n_train']} buildings ({meta['n_levels']} with `building:levels`); "
             f"{meta['footprint_components']} footprint components (BIC over {list(meta['config']['components'])}), "
             f"{meta['levels_components']} levels components; {meta['tagged_facade_colours']} facade and "
             f"{meta['tagged_roof_colours']} roof colours tagged; fit {meta['fit_seconds']} s on 2 shared CPU cores.",
             f"- Reproduce: `{command}`",
             f"- Evaluate: `gaiverse eval buildings --osm {' --osm '.join(held_out['data'])} --json`", ""]
    if notes:
        parts += [notes, ""]
    parts += [f"## Held-out strips of the shipped extracts (n = {held_out['n']} real buildings, "
              f"{held_out['seconds']:.0f} s)", "",
              f"The model beats the uniform baseline on {held_out['model_beats_baseline']['count']} of "
              f"{held_out['model_beats_baseline']['of']} distances.", "", *_table(held_out["metrics"], held_out["baseline"], names), ""]
    lay = held_out.get("layout_on_real_roads")
    if lay:
        parts += [f"Layout on the real roads of the same strips ({lay['n_placed']} placed by the model, "
                  f"{lay['n_placed_uniform']} with uniform attributes, {lay['n_real']} real):", "",
                  *_table(lay["metrics"], lay["baseline"], names), ""]
    if cross_region:
        parts += [f"## Another city: model fitted without Helsinki, evaluated on all of Helsinki (n = {cross_region['n']})",
                  "", f"Beats the uniform baseline on {cross_region['model_beats_baseline']['count']} of "
                  f"{cross_region['model_beats_baseline']['of']}.", "",
                  *_table(cross_region["metrics"], cross_region["baseline"], names), ""]
    path = checkpoint / "model_card.md"
    path.write_text("\n".join(parts))
    return path


def main(argv: list[str] | None = None) -> None:
    """`python -m gaiverse.world.buildings_eval --out checkpoints/buildings`: fit and save the shipped model."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    model = train_buildings(args.out, config=BuildingModelConfig(seed=args.seed))
    sys.stdout.write(json.dumps({"checkpoint": str(args.out), **model.meta}, default=str) + "\n")


if __name__ == "__main__":
    main()
