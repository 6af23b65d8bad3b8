"""Fixtures for the world layout tests: shipped data paths and the shipped layout checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaiverse.world.training import DEFAULT_CHECKPOINT, PROJECT_ROOT

DATA = PROJECT_ROOT / "data"
TERRAIN = DATA / "terrain"
OSM = DATA / "osm"


@pytest.fixture(scope="session")
def terrain_model():
    from gaiverse.world.layout_model import LayoutDiffusion

    return LayoutDiffusion.from_pretrained(DEFAULT_CHECKPOINT / "terrain")


@pytest.fixture(scope="session")
def roads_model():
    from gaiverse.world.layout_model import LayoutDiffusion

    return LayoutDiffusion.from_pretrained(DEFAULT_CHECKPOINT / "roads")


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    return DEFAULT_CHECKPOINT
