"""Fixtures of the vision tests: the shipped real face photo and talking-face clip, and rendered text."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from gaiverse.config import REPO_ROOT

VISION_DATA = REPO_ROOT / "data" / "vision"
GRID_CLIP = VISION_DATA / "id2_vcd_swwp2s.mpg"
"""GRID talker saying "set white with p two soon": 360x288, 25 fps, 3 s, MP2 audio."""


@pytest.fixture(scope="session")
def portrait() -> bytes:
    """Eileen Collins (NASA, public domain), smiling, 512x512 JPEG."""
    return (VISION_DATA / "astronaut.jpg").read_bytes()


def render_text(lines: list[str], size: int = 32, fg=(20, 20, 20), bg=(250, 248, 240)) -> bytes:
    """PNG of text lines in Pillow's bundled scalable font (no system fonts needed)."""
    font = ImageFont.load_default(size=size)
    image = Image.new("RGB", (40 + size * max(len(s) for s in lines) * 3 // 5, 30 + len(lines) * size * 3 // 2), bg)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((20, 15 + i * size * 3 // 2), line, fill=fg, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="session")
def whisper_dir(settings):
    """Whisper base joined into the session's data dir (once; shared with tests/speech)."""
    from gaiverse.speech.asr import assemble_whisper_base

    return assemble_whisper_base()
