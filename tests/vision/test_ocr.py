"""OCR: rendered text read back with Tesseract, word confidences and boxes, bad input, missing binary."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gaiverse.text_metrics import char_error_rate
from gaiverse.vision.ocr import read_text

from .conftest import render_text

LINES = ["I love fishing and exploring caves", "Meet me at the harbour at dawn", "Bring 3 apples, 2 ropes"]


def test_rendered_text_is_read_back():
    result = read_text(render_text(LINES))
    assert result.text.count("\n") == 2
    assert char_error_rate("\n".join(LINES), result.text) <= 0.05, result.text
    assert "I love fishing" in result.text
    assert result.mean_confidence > 80
    fishing = next(w for w in result.words if w.text == "fishing")
    x, y, w, h = fishing.box
    assert 60 < x < 400 and 0 < y < 60 and w > 50 and 15 < h < 50


def test_small_image_and_array_input():
    data = render_text(["Find the hidden cave"], size=14)
    assert "Find the hidden cave" in read_text(data).text  # upscaled before recognition
    import io

    array = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert read_text(array).text == read_text(data).text


def test_blank_image_has_no_text():
    import io

    out = io.BytesIO()
    Image.new("RGB", (300, 200), (30, 120, 200)).save(out, format="PNG")
    result = read_text(out.getvalue())
    assert result.text == "" and result.mean_confidence is None


@pytest.mark.parametrize("bad", [b"", b"definitely not a picture", np.zeros((0, 5), np.uint8), "a string"])
def test_bad_images_are_refused(bad):
    with pytest.raises(ValueError, match="`image`"):
        read_text(bad)


def test_missing_tesseract_is_named(monkeypatch):
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(RuntimeError, match="apt-get install tesseract-ocr"):
        read_text(render_text(["hello"]))
