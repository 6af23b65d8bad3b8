"""`eval terrain`, `eval roads` and `layout sample` commands: JSON shape, outputs, errors (ENV-a2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gaiverse.world.cli import app
from gaiverse.world.training import PROJECT_ROOT

pytestmark = pytest.mark.clause("ENV-a2")
runner = CliRunner()
HELD_OUT_DEM = PROJECT_ROOT / "data" / "terrain" / "landlab_west_bijou_escarpment_snippet.asc"
HELD_OUT_OSM = PROJECT_ROOT / "data" / "osm" / "test.osm.pbf"


def _json(result) -> dict:
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    return json.loads(lines[0])


def test_eval_terrain_prints_the_eval_md_json(tmp_path):
    out = _json(runner.invoke(app, ["eval", "terrain", "--real", str(HELD_OUT_DEM), "--samples", "4",
                                    "--steps", "5", "--json", "--out", str(tmp_path)]))
    assert out["eval"] == "terrain" and out["n"] == 4 and out["data"] == [str(HELD_OUT_DEM)]
    assert set(out["metrics"]) == set(out["lower_is_better"]) == set(out["baseline"]) - {"name", "beta"}
    assert out["baseline"]["name"] == "fbm" and out["reference"]["name"] == "real_vs_real"
    assert out["items"][0]["file"] == str(HELD_OUT_DEM) and "metrics" in out["items"][0]
    assert {"diversity", "memorisation", "seconds", "checkpoint"} <= set(out)
    assert out["sampling"]["ddim_steps"] == 5 and "steepness" in out["sampling"]["steered_to"]
    assert out["overlap_with_training"] == []
    assert np.load(tmp_path / "terrain_000.npy").shape == (32, 32)


def test_eval_roads_prints_the_eval_md_json():
    out = _json(runner.invoke(app, ["eval", "roads", "--osm", str(HELD_OUT_OSM), "--samples", "4", "--steps", "5"]))
    assert out["eval"] == "roads" and out["baseline"]["name"] == "grid" and "random" in out["baselines"]
    assert set(out["metrics"]) == set(out["lower_is_better"])
    assert out["reference"]["regions"] and "kotka" not in out["reference"]["regions"]


def test_unreadable_data_exits_non_zero_with_one_line(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_text("not a tiff")
    result = runner.invoke(app, ["eval", "terrain", "--real", str(bad), "--samples", "2"])
    assert result.exit_code != 0 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "broken.tif" in result.stderr


def test_layout_sample_writes_heights_in_metres_and_road_pngs(tmp_path):
    out = _json(runner.invoke(app, ["layout", "sample", "--n", "1", "--prompt", "a hilly town, 256 m x 256 m",
                                    "--out", str(tmp_path), "--steps", "6"]))
    heights = np.load(tmp_path / "heights_000.npy")
    assert heights.dtype == np.float32 and np.ptp(heights) == pytest.approx(120.0, rel=1e-4)
    assert set(np.unique(np.array(Image.open(tmp_path / "roads_000.png")))) <= {0, 1, 2}
    assert len(out["files"]) == 4


def test_layout_sample_refuses_an_empty_prompt(tmp_path):
    result = runner.invoke(app, ["layout", "sample", "--prompt", "", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "empty" in result.stderr
