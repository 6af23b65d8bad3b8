"""The lip-sync model exported for the browser (gaiverse/avatar/lipsync_export.py -> /web/lipsync_model.json).

The shipped JSON must be the export of the shipped checkpoint (a retrained model without a re-export
would make the browser's mouth differ from the server's); the numbers round-trip exactly as float32.
Numerical parity of the JS code itself is checked in chromium (tests/api/test_avatar_player_browser.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaiverse.avatar import lipsync_export
from gaiverse.avatar.lipsync_model import SILENCE, LipsyncModel

pytestmark = pytest.mark.clause("AV-c1")


def test_shipped_json_is_the_export_of_the_shipped_checkpoint():
    fresh = lipsync_export.to_json(lipsync_export.export())
    assert lipsync_export.WEB_JSON.read_text() == fresh, \
        "gaiverse/web/lipsync_model.json is stale: run python -m gaiverse.avatar.lipsync_export"


def test_weights_round_trip_as_float32():
    spec = json.loads(lipsync_export.WEB_JSON.read_text())
    model = LipsyncModel.load()
    first = model.net.body[0]
    exported = np.asarray(spec["net"]["layers"][0]["weight"], np.float32).reshape(first.weight.shape)
    assert np.array_equal(exported, first.weight.detach().numpy())
    assert np.array_equal(np.asarray(spec["features"]["silence"], np.float32), SILENCE)
    assert spec["parameters"] == model.n_parameters()
    assert [layer["dilation"] for layer in spec["net"]["layers"]] == [1, 2, 4, 1]


def test_cli_check_and_errors(tmp_path, capsys):
    out = tmp_path / "model.json"
    assert lipsync_export.main(["--out", str(out), "--check"]) == 1  # missing file: stale
    assert lipsync_export.main(["--out", str(out)]) == 0
    assert lipsync_export.main(["--out", str(out), "--check"]) == 0
    assert lipsync_export.main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
