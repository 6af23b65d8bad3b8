"""Building data, the fitted building model and `gaiverse eval buildings` on real OSM buildings (ENV-b1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gaiverse.world import buildings_geometry as geo
from gaiverse.world.buildings_data import SHAPE_CLASSES, read_osm_buildings, shape_class, spatial_split
from gaiverse.world.buildings_eval import DEFAULT_CHECKPOINT, eval_buildings
from gaiverse.world.buildings_model import BuildingModel, BuildingModelConfig, fit_building_model
from gaiverse.world.cli import app
from gaiverse.world.osm import OsmReadError
from gaiverse.world.training import PROJECT_ROOT

pytestmark = pytest.mark.clause("ENV-b1")
OSM = PROJECT_ROOT / "data" / "osm"
KIRCHBERG = OSM / "planet_10.068_48.135_10.071_48.137.osm"
KOTKA = OSM / "test.osm.pbf"


@pytest.fixture(scope="module")
def helsinki():
    return read_osm_buildings(OSM / "Helsinki.osm.pbf")


@pytest.fixture(scope="module")
def shipped() -> BuildingModel:
    return BuildingModel.load(DEFAULT_CHECKPOINT)


def test_reads_real_buildings_in_metres_with_their_context():
    data = read_osm_buildings(KIRCHBERG)
    b = data.buildings
    assert len(b) == 30 and data.roads.polylines
    assert np.all(b.cols["area_m2"] > 4) and np.all(b.cols["aspect"] >= 1)
    assert np.all((b.cols["orient_deg"] >= 0) & (b.cols["orient_deg"] <= 90))
    assert np.all(b.cols["spacing_m"] > 0) and np.all(b.cols["road_dist_m"] >= 0)
    assert set(b.shape_class) <= set(SHAPE_CLASSES)
    assert np.nanmedian(b.cols["levels"]) == 2  # the tagged houses of this block have 2 storeys
    assert 20 < np.median(b.cols["area_m2"]) < 400  # detached houses, not degrees squared


@pytest.mark.parametrize("poly, expected", [
    ([(0, 0), (20, 0), (20, 10), (0, 10)], "rect"),
    ([(0, 0), (20, 0), (20, 5), (8, 5), (8, 12), (0, 12)], "L"),
    ([(6, 0), (12, 0), (12, 8), (18, 8), (18, 14), (0, 14), (0, 8), (6, 8)], "T"),
    ([(0, 0), (20, 0), (20, 14), (15, 14), (15, 6), (5, 6), (5, 14), (0, 14)], "U"),
    ([(0, 0), (10, 3), (20, 0), (18, 10), (20, 20), (10, 16), (0, 20), (3, 10)], "complex"),
])
def test_shape_classes_of_known_footprints(poly, expected):
    p = geo.as_ccw(np.array(poly, dtype=float))
    length, width, _ = geo.min_rotated_rect(p)
    assert shape_class(p, abs(geo.signed_area(p)) / (length * width))[0] == expected


def test_unreadable_osm_names_the_file(tmp_path):
    bad = tmp_path / "broken.osm"
    bad.write_text("<osm><node id='1'")
    with pytest.raises(OsmReadError, match="broken.osm"):
        read_osm_buildings(bad)


def test_model_learns_size_from_context(shipped):
    """Denser street networks (city centre) -> larger, taller buildings, as in the real data."""
    n = 3000
    sparse = shipped.sample(np.full(n, 6.0), rng=1)
    dense = shipped.sample(np.full(n, 28.0), rng=1)
    assert np.median(dense.area_m2) > 2 * np.median(sparse.area_m2)
    assert np.mean(dense.levels) > np.mean(sparse.levels)
    assert set(np.unique(sparse.shape_class)) <= set(SHAPE_CLASSES)


def test_shipped_model_beats_uniform_baseline_on_held_out_strip(shipped):
    result = eval_buildings([KOTKA], layout_check=False, seed=3)
    assert result["overlap_with_training"] == [str(KOTKA)] and result["items"][0]["held_out_strip_only"]
    assert result["n"] == shipped.meta["training_files"][1]["n_holdout"] == 652
    m, b = result["metrics"], result["baseline"]
    for key in ("log_area_w1", "aspect_w1", "orient_deg_w1", "setback_m_w1", "spacing_m_w1", "shape_mix_tv"):
        assert m[key] < 0.6 * b[key], key


@pytest.mark.slow
def test_fit_save_load_round_trip(helsinki, tmp_path):
    held, _ = spatial_split(helsinki.buildings, 0.3)
    model = fit_building_model(helsinki.buildings.subset(~held), BuildingModelConfig(components=(2, 4)))
    model.save(tmp_path)
    again = BuildingModel.load(tmp_path)
    a, b = model.sample(np.full(50, 10.0), rng=7), again.sample(np.full(50, 10.0), rng=7)
    np.testing.assert_allclose(a.area_m2, b.area_m2)
    assert list(a.shape_class) == list(b.shape_class)
    assert (tmp_path / "buildings_model.json").stat().st_size < 200_000


def test_eval_buildings_cli_prints_eval_md_json():
    result = CliRunner().invoke(app, ["eval", "buildings", "--osm", str(KIRCHBERG), "--json"])
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    out = json.loads(lines[-1]) if len(lines) == 1 else pytest.fail(f"expected one JSON line, got {len(lines)}")
    assert out["eval"] == "buildings" and out["baseline"]["name"] == "uniform"
    assert set(out["metrics"]) == set(out["lower_is_better"]) == set(out["baseline"]) - {"name"}
    assert out["layout_on_real_roads"]["n_placed"] > 0 and out["items"][0]["n_real"] == 9
    assert out["checkpoint"].endswith("model_card.md")


def test_eval_buildings_cli_refuses_unreadable_data(tmp_path):
    bad = tmp_path / "nothing.osm.pbf"
    bad.write_bytes(b"\x00garbage")
    result = CliRunner().invoke(app, ["eval", "buildings", "--osm", str(bad)])
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "nothing.osm.pbf" in result.stderr
