"""Text in user images (OCR) with Tesseract 5 (Debian ``tesseract-ocr``) through pytesseract.

A user who photographs a sign or a note ("I love fishing") tells the platform something; the text
goes to the interaction store as ``ocr_text`` and from there into preference analysis (PER-a1, PER-c1).
Small images are upscaled first: Tesseract reads best with letters ~30 px tall.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

MIN_CONFIDENCE = 30.0
"""Words Tesseract is less sure of (0..100) are dropped from ``text`` (kept in ``words``)."""
MIN_EDGE_PX = 1000
"""Images whose long edge is shorter are upscaled to this before recognition."""


@dataclass
class OcrWord:
    """One recognised word, its confidence (0..100) and box (x, y, w, h) in input pixels."""

    text: str
    confidence: float
    box: tuple[int, int, int, int]


@dataclass
class OcrResult:
    """Recognised text (lines joined by newlines) and the words it was built from."""

    text: str
    words: list[OcrWord] = field(default_factory=list)

    @property
    def mean_confidence(self) -> float | None:
        return float(np.mean([w.confidence for w in self.words])) if self.words else None


def _open(image: bytes | np.ndarray):
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(f"`image` array must be (h, w) or (h, w, 3) uint8, got shape {image.shape}")
        return Image.fromarray(image.astype(np.uint8)).convert("L")
    if not isinstance(image, (bytes, bytearray)) or not image:
        raise ValueError("`image` must be non-empty encoded image bytes or an RGB array")
    try:
        return Image.open(io.BytesIO(bytes(image))).convert("L")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"`image` is not an image PIL can read ({len(image)} bytes)") from err


def read_text(image: bytes | np.ndarray, language: str = "eng",
              min_confidence: float = MIN_CONFIDENCE) -> OcrResult:
    """Words and text lines Tesseract finds in ``image`` (encoded bytes or an RGB/grey uint8 array).

    Implements the OCR part of PER-a1. RuntimeError when the tesseract binary is not installed.
    """
    import pytesseract
    from PIL import Image

    gray = _open(image)
    scale = max(1.0, MIN_EDGE_PX / max(gray.size))
    if scale > 1.0:
        gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.LANCZOS)
    try:
        data = pytesseract.image_to_data(gray, lang=language, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError as err:
        raise RuntimeError("OCR needs the tesseract binary: apt-get install tesseract-ocr") from err
    except pytesseract.TesseractError as err:
        raise RuntimeError(f"tesseract failed (language {language!r} installed?): {err}") from err
    words: list[OcrWord] = []
    lines: dict[tuple[int, int, int], list[str]] = {}
    for i, raw in enumerate(data["text"]):
        word, conf = raw.strip(), float(data["conf"][i])
        if not word or conf < 0:
            continue
        if word == "|":  # Tesseract's usual reading of a capital I standing alone ("| love fishing")
            word = "I"
        box = tuple(int(round(data[k][i] / scale)) for k in ("left", "top", "width", "height"))
        words.append(OcrWord(word, conf, box))
        if conf >= min_confidence:
            lines.setdefault((data["block_num"][i], data["par_num"][i], data["line_num"][i]), []).append(word)
    text = "\n".join(" ".join(ws) for _, ws in sorted(lines.items()))
    return OcrResult(text=text, words=words)
