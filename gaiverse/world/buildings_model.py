"""A generative model of buildings fitted to real OpenStreetMap buildings (3D object modelling).

Footprint and placement: a Gaussian mixture over the joint vector [context; attributes], with
context = log(1 + local road density km/km2) and attributes = log area, log aspect, orientation
to the nearest road, log setback from the road, log nearest-neighbour spacing. Sampling
conditions the mixture on the context analytically (Gaussian conditioning per component), so a
denser street network gives the sizes, setbacks and spacings seen there in real cities. Each
component also carries a categorical shape-class distribution (rect, L, T, U, complex) from its
soft assignments. Height: a second conditional mixture of log levels given context and log area,
fitted on the buildings that carry `building:levels`. Roof shape and colours: the few tagged
values plus a documented prior. Saved as one small JSON file. Implements ENV-b1.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gaiverse.world.buildings_data import SHAPE_CLASSES, BuildingSet

log = logging.getLogger(__name__)

#: The shipped checkpoint (fitted by `python -m gaiverse.world.buildings_eval`).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "buildings"
ATTRS: tuple[str, ...] = ("log_area", "log_aspect", "orient01", "log_setback", "log_spacing")
ROOF_SHAPES: tuple[str, ...] = ("flat", "gabled", "hipped")
#: Prior pseudo-counts of roof shapes per levels band (<=2, 3-5, >=6), documented in the model card:
#: low houses mostly pitched, mid-rise mixed, high-rise flat (as in the European extracts we ship).
ROOF_PRIOR: dict[str, list[float]] = {"low": [2.0, 5.0, 3.0], "mid": [4.0, 4.0, 2.0], "high": [8.0, 1.0, 1.0]}
#: Facade palette (sRGB 0..255) used as prior when few colours are tagged: plaster, brick, timber, stone.
FACADE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (236, 228, 210), (222, 196, 160), (200, 120, 90), (170, 80, 60), (230, 210, 150), (190, 190, 185),
    (245, 245, 240), (160, 150, 135), (210, 170, 120), (140, 95, 70), (200, 215, 220), (225, 185, 175))
ROOF_PALETTE: tuple[tuple[int, int, int], ...] = (
    (120, 60, 45), (90, 90, 95), (60, 60, 65), (150, 75, 55), (110, 115, 110), (70, 55, 50), (180, 201, 179))
NAMED_COLOURS = {"white": (245, 245, 240), "gray": (150, 150, 150), "grey": (150, 150, 150), "brown": (130, 85, 60),
                 "red": (175, 60, 50), "green": (110, 150, 110), "yellow": (230, 205, 120), "black": (30, 30, 30),
                 "beige": (225, 205, 170), "orange": (220, 140, 70), "blue": (110, 140, 180)}


@dataclass
class BuildingModelConfig:
    """How the building model is fitted."""

    components: tuple[int, ...] = (2, 3, 4, 6, 8, 10, 12)
    """Mixture sizes tried; the one with the lowest BIC on the training buildings is kept."""
    levels_components: int = 3
    """Mixture size of the levels model."""
    seed: int = 0
    """Seed of the mixture fits."""
    min_area_m2: float = 10.0
    """Footprints smaller than this (sheds, kiosks, mapping errors) are not learned."""


@dataclass
class Mixture:
    """A full-covariance Gaussian mixture with analytic conditioning on its first `n_ctx` dimensions."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    n_ctx: int

    @classmethod
    def fit(cls, data: np.ndarray, n_ctx: int, components: tuple[int, ...], seed: int) -> tuple[Mixture, np.ndarray]:
        """Fit, keeping the component count with the lowest BIC; returns (mixture, responsibilities)."""
        from sklearn.mixture import GaussianMixture

        best, best_bic = None, math.inf
        for k in components:
            if k > 1 and k * (data.shape[1] + 1) * 3 > len(data):
                continue  # too few points for k full covariances; one component is always tried
            gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=seed, n_init=2).fit(data)
            bic = gm.bic(data)
            if bic < best_bic:
                best, best_bic = gm, bic
        if best is None or len(data) < data.shape[1] + 2:
            raise ValueError(f"too few buildings ({len(data)}) to fit a mixture over {data.shape[1]} dimensions")
        return cls(best.weights_, best.means_, best.covariances_, n_ctx), best.predict_proba(data)

    def condition(self, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For contexts (m, n_ctx): (weights (m, K), means (m, K, d), covs (K, d, d)) of p(x | ctx)."""
        c = self.n_ctx
        mc, mx = self.means[:, :c], self.means[:, c:]
        scc, sxc, sxx = self.covs[:, :c, :c], self.covs[:, c:, :c], self.covs[:, c:, c:]
        inv = np.linalg.inv(scc)
        gain = np.einsum("kij,kjl->kil", sxc, inv)
        diff = ctx[:, None, :] - mc[None]
        means = mx[None] + np.einsum("kij,mkj->mki", gain, diff)
        covs = sxx - np.einsum("kij,klj->kil", gain, sxc)
        maha = np.einsum("mki,kij,mkj->mk", diff, inv, diff)
        logw = np.log(self.weights)[None] - 0.5 * maha - 0.5 * np.log(np.linalg.det(scc))[None]
        w = np.exp(logw - logw.max(1, keepdims=True))
        return w / w.sum(1, keepdims=True), means, covs

    def sample(self, ctx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(samples (m, d), component index (m,)) from p(x | ctx)."""
        w, means, covs = self.condition(ctx)
        comp = np.array([rng.choice(len(self.weights), p=row) for row in w])
        chol = np.linalg.cholesky(covs + 1e-9 * np.eye(covs.shape[1]))
        z = rng.standard_normal((len(ctx), covs.shape[1]))
        return means[np.arange(len(ctx)), comp] + np.einsum("mij,mj->mi", chol[comp], z), comp

    def to_json(self) -> dict:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(), "covs": self.covs.tolist(),
                "n_ctx": self.n_ctx}

    @classmethod
    def from_json(cls, doc: dict) -> Mixture:
        return cls(np.array(doc["weights"]), np.array(doc["means"]), np.array(doc["covs"]), int(doc["n_ctx"]))


def context_of(road_density: np.ndarray) -> np.ndarray:
    """(m, 1) model context from local road density (km/km2)."""
    return np.log1p(np.clip(np.asarray(road_density, dtype=np.float64), 0.0, 200.0))[:, None]


def attributes_of(bset: BuildingSet) -> np.ndarray:
    """(n, len(ATTRS)) learned attributes of measured buildings."""
    c = bset.cols
    return np.column_stack([np.log(c["area_m2"]), np.log(c["aspect"]), c["orient_deg"] / 90.0,
                            np.log1p(c["road_dist_m"]), np.log(np.maximum(c["spacing_m"], 1.0))])


@dataclass
class BuildingSamples:
    """Sampled building attributes, one row per building."""

    area_m2: np.ndarray
    aspect: np.ndarray
    orient_deg: np.ndarray
    setback_m: np.ndarray
    spacing_m: np.ndarray
    shape_class: np.ndarray
    levels: np.ndarray
    roof_shape: np.ndarray


@dataclass
class BuildingModel:
    """Fitted building model: footprint/placement mixture, levels mixture, roof and colour priors."""

    footprint: Mixture
    shape_probs: np.ndarray
    """(K, len(SHAPE_CLASSES)) shape-class probabilities per footprint component."""
    levels: Mixture
    roof_counts: dict[str, list[float]]
    facade_colours: list[list[int]]
    roof_colours: list[list[int]]
    ranges: dict[str, list[float]]
    """1st..99th percentile of each attribute in the training data (samples are clipped to it)."""
    meta: dict = field(default_factory=dict)

    # --- sampling ---------------------------------------------------------------------------
    def sample(self, road_density: np.ndarray, rng: np.random.Generator | int = 0,
               max_levels: float | None = None, levels_boost: np.ndarray | float = 0.0) -> BuildingSamples:
        """Sample one building per context. Implements ENV-b1 (generation from the learned patterns).

        road_density : (m,) km/km2 around each building site. max_levels caps heights (a low-rise
        village); levels_boost (m,) adds log-levels (a dense centre), applied before the cap.
        """
        rng = np.random.default_rng(rng)
        ctx = context_of(road_density)
        x, comp = self.footprint.sample(ctx, rng)
        lo, hi = np.array([self.ranges[a] for a in ATTRS]).T
        x = np.clip(x, lo, hi)
        shape = np.array([SHAPE_CLASSES[rng.choice(len(SHAPE_CLASSES), p=self.shape_probs[k])] for k in comp])
        lv, _ = self.levels.sample(np.column_stack([ctx[:, 0], x[:, 0]]), rng)
        lv = lv[:, 0] + np.broadcast_to(np.asarray(levels_boost, dtype=np.float64), lv[:, 0].shape)
        levels = np.clip(np.round(np.exp(np.clip(lv, *self.ranges["log_levels"]))), 1, None)
        if max_levels is not None:
            levels = np.minimum(levels, max_levels)
        roofs = np.array([self._roof(int(n), rng) for n in levels])
        return BuildingSamples(np.exp(x[:, 0]), np.exp(x[:, 1]), x[:, 2] * 90.0, np.expm1(x[:, 3]),
                               np.exp(x[:, 4]), shape, levels, roofs)

    def _roof(self, levels: int, rng: np.random.Generator) -> str:
        band = "low" if levels <= 2 else "mid" if levels <= 5 else "high"
        p = np.array(self.roof_counts[band], dtype=np.float64)
        return ROOF_SHAPES[rng.choice(len(ROOF_SHAPES), p=p / p.sum())]

    def colours(self, n: int, rng: np.random.Generator | int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(facade (n, 3), roof (n, 3)) uint8 colours: a learned/palette base jittered per building."""
        rng = np.random.default_rng(rng)

        def draw(palette: list[list[int]], spread: float) -> np.ndarray:
            base = np.array(palette, dtype=np.float64)[rng.integers(len(palette), size=n)]
            shade = rng.normal(1.0, spread, (n, 1)) + rng.normal(0.0, spread / 2, (n, 3))
            return np.clip(base * shade, 0, 255).astype(np.uint8)

        return draw(self.facade_colours, 0.08), draw(self.roof_colours, 0.1)

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        doc = {"footprint": self.footprint.to_json(), "shape_probs": self.shape_probs.tolist(),
               "levels": self.levels.to_json(), "roof_counts": self.roof_counts,
               "facade_colours": self.facade_colours, "roof_colours": self.roof_colours,
               "ranges": self.ranges, "meta": self.meta, "attrs": list(ATTRS), "shape_classes": list(SHAPE_CLASSES)}
        path = directory / "buildings_model.json"
        path.write_text(json.dumps(doc, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> BuildingModel:
        """Load a saved model (a folder holding buildings_model.json, or the file); default: the shipped one."""
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        if path.is_dir():
            path = path / "buildings_model.json"
        doc = json.loads(path.read_text())
        if tuple(doc.get("attrs", ())) != ATTRS:
            raise ValueError(f"{path}: attributes {doc.get('attrs')} do not match this code's {list(ATTRS)}")
        return cls(Mixture.from_json(doc["footprint"]), np.array(doc["shape_probs"]), Mixture.from_json(doc["levels"]),
                   doc["roof_counts"], doc["facade_colours"], doc["roof_colours"], doc["ranges"], doc.get("meta", {}))


def _parse_colour(value: str) -> list[int] | None:
    value = value.strip().lower()
    if value in NAMED_COLOURS:
        return list(NAMED_COLOURS[value])
    if len(value) == 7 and value.startswith("#"):
        try:
            return [int(value[i:i + 2], 16) for i in (1, 3, 5)]
        except ValueError:
            return None
    return None


def fit_building_model(train: BuildingSet, config: BuildingModelConfig | None = None) -> BuildingModel:
    """Fit the building model on measured real buildings. Implements ENV-b1.

    Buildings need a road and a neighbour for their context (NaN rows are dropped). Roof shapes
    and colours tagged in the data are added to the documented priors as counts / palette entries.
    """
    cfg = config or BuildingModelConfig()
    x = attributes_of(train)
    ctx = context_of(train.cols["road_density"])
    ok = np.isfinite(x).all(1) & np.isfinite(ctx[:, 0]) & (train.cols["area_m2"] >= cfg.min_area_m2)
    if ok.sum() < 30:
        raise ValueError(f"need at least 30 measured buildings with a road nearby to fit, got {int(ok.sum())}")
    footprint, resp = Mixture.fit(np.column_stack([ctx[ok], x[ok]]), 1, cfg.components, cfg.seed)
    onehot = (train.shape_class[ok][:, None] == np.array(SHAPE_CLASSES)[None]).astype(np.float64)
    shape_probs = resp.T @ onehot + 0.5
    shape_probs /= shape_probs.sum(1, keepdims=True)
    lv = train.cols["levels"]
    has = ok & np.isfinite(lv)
    levels_data = np.column_stack([ctx[has, 0], x[has, 0], np.log(lv[has])])
    if len(levels_data) < 5:
        raise ValueError(f"need at least 5 buildings tagged with building:levels to fit heights, got {len(levels_data)}")
    levels, _ = Mixture.fit(levels_data, 2, (cfg.levels_components, 2, 1), cfg.seed)
    roof_counts = {k: list(v) for k, v in ROOF_PRIOR.items()}
    for shape, n in zip(train.tags["roof_shape"][ok], lv[ok]):
        if shape in ROOF_SHAPES:
            band = "low" if not np.isfinite(n) or n <= 2 else "mid" if n <= 5 else "high"
            roof_counts[band][ROOF_SHAPES.index(shape)] += 1
    tagged_facade = [c for c in map(_parse_colour, train.tags["colour"][ok]) if c]
    tagged_roof = [c for c in map(_parse_colour, train.tags["roof_colour"][ok]) if c]
    ranges = {a: np.quantile(x[ok, i], [0.01, 0.99]).tolist() for i, a in enumerate(ATTRS)}
    ranges["log_levels"] = [0.0, float(np.log(np.quantile(lv[has], 0.99)))]
    meta = {"n_train": int(ok.sum()), "n_levels": int(has.sum()), "footprint_components": len(footprint.weights),
            "levels_components": len(levels.weights), "tagged_facade_colours": len(tagged_facade),
            "tagged_roof_colours": len(tagged_roof), "config": asdict(cfg)}
    log.info("fitted building model: %d buildings, %d footprint components, %d with levels",
             meta["n_train"], meta["footprint_components"], meta["n_levels"])
    return BuildingModel(footprint, shape_probs, levels, roof_counts,
                         [list(c) for c in FACADE_PALETTE] + tagged_facade,
                         [list(c) for c in ROOF_PALETTE] + tagged_roof, ranges, meta)


def uniform_baseline(model: BuildingModel, n: int, rng: np.random.Generator | int = 0) -> BuildingSamples:
    """The uniform-random baseline: every attribute uniform over the model's training range, independently."""
    rng = np.random.default_rng(rng)
    r = model.ranges
    u = {a: rng.uniform(*r[a], size=n) for a in ATTRS}
    levels = np.round(np.exp(rng.uniform(*r["log_levels"], size=n))).clip(1)
    return BuildingSamples(np.exp(u["log_area"]), np.exp(u["log_aspect"]), u["orient01"] * 90.0,
                           np.expm1(u["log_setback"]), np.exp(u["log_spacing"]),
                           np.array(SHAPE_CLASSES)[rng.integers(len(SHAPE_CLASSES), size=n)], levels,
                           np.array(ROOF_SHAPES)[rng.integers(len(ROOF_SHAPES), size=n)])
