"""The self-check's plain functions (gaiverse/selfcheck.py) and the pure helpers of the task layer."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from gaiverse.selfcheck import (
    array_to_npy, build_field_model, build_mesh, check_glb, fit_surface_field, load_glb, mesh_to_glb,
    npy_to_array, preview_png,
)


def test_mesh_round_trips_through_glb():
    mesh = build_mesh(2, seed=1)
    data = mesh_to_glb(mesh)
    check = check_glb(data)
    assert (check.vertices, check.faces, check.watertight) == (162, 320, True)
    loaded = load_glb(data)
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    assert (loaded.visual.vertex_colors == mesh.visual.vertex_colors).all()


def test_seed_changes_the_bytes_and_bad_arguments_are_named():
    assert mesh_to_glb(build_mesh(1, seed=1)) != mesh_to_glb(build_mesh(1, seed=2))
    with pytest.raises(ValueError, match="`subdivisions` must be in \\[0, 5\\], got 9"):
        build_mesh(9)
    with pytest.raises(ValueError, match="not a glTF binary"):
        check_glb(b"PK\x03\x04 not a glb")


def test_fit_halves_the_loss_and_is_idempotent():
    mesh = build_mesh(1, seed=3)
    model = build_field_model(seed=0)
    first = fit_surface_field(model, mesh.vertices, mesh.vertex_normals, steps=150, device="cpu")
    second = fit_surface_field(model, mesh.vertices, mesh.vertex_normals, steps=150, device="cpu")
    assert first.final_loss < 0.5 * first.initial_loss
    np.testing.assert_array_equal(first.values, second.values)  # the held model is never changed
    assert first.values.shape == (len(mesh.vertices),) and first.slice.shape == (64, 64)
    with pytest.raises(ValueError, match="`normals` must match"):
        fit_surface_field(model, mesh.vertices, mesh.vertex_normals[:5])


def test_preview_is_a_png_with_both_panels():
    mesh = build_mesh(1, seed=4)
    image = Image.open(io.BytesIO(preview_png(mesh, np.zeros((64, 64), np.float32), size_px=128)))
    assert image.format == "PNG" and image.size == (256, 128)


def test_npy_round_trip():
    values = np.linspace(-1, 1, 7, dtype=np.float32)
    np.testing.assert_array_equal(npy_to_array(array_to_npy(values)), values)


def test_stable_hash_sees_every_array_element():
    from tasks.common import stable_hash

    big = np.zeros(10_000)
    other = big.copy()
    other[5_000] = 1.0
    assert str(big) == str(other)  # what json.dumps(default=str) would hash
    assert stable_hash({"a": big}) != stable_hash({"a": other})
    assert stable_hash({"x": 1, "y": b"z"}) == stable_hash({"y": b"z", "x": 1})


def test_asset_refs_are_found_inside_results():
    from storage.objectstore import AssetRef
    from tasks.common import iter_asset_refs

    ref = AssetRef("k/" + "0" * 64 + ".png", "k", "0" * 64, 1, "image/png")
    assert list(iter_asset_refs({"a": [ref, {"b": (ref,)}], "c": 3})) == [ref, ref]


def test_markdown_table_escapes_cells():
    from tasks.artifacts import check_artifact_key, markdown_table

    table = markdown_table([{"name": "store", "ok": True, "detail": "a|b\nc"}])
    assert table.splitlines() == ["| name | ok | detail |", "|---|---|---|", "| store | True | a\\|b c |"]
    with pytest.raises(ValueError, match="Prefect artifact key"):
        check_artifact_key("Selfcheck_Steps")


def test_unknown_expectation_is_named():
    import pandas as pd

    from validation.metrics import expect, run_suite

    with pytest.raises(ValueError, match="expect_values_to_sparkle"):
        run_suite("s", pd.DataFrame({"a": [1]}), [expect("values_to_sparkle", column="a")])


def test_validation_report_serialises_for_the_catalog():
    import pandas as pd

    from validation.metrics import expect, run_suite

    report = run_suite("s", pd.DataFrame({"key": ["a", "b"], "n": [1, 2]}),
                       [expect("column_values_to_be_between", column="n", min_value=2)])
    assert not report.success and report.failures[0].assets == ["a"]
    assert json.loads(json.dumps(report.to_dict(), default=str))["outcomes"][0]["observed"] == [1]
