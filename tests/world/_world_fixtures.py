"""A small synthetic world state for the versions and editing tests (real models are loaded where needed)."""

from __future__ import annotations

import numpy as np

from gaiverse.world.suggestions import LayoutControls
from gaiverse.world.world_state import Building, WorldState


def small_state(size: int = 64, cell_m: float = 8.0, seed: int = 0) -> WorldState:
    """A size x size world: smooth random relief, one minor road across, a lake in the south-west, two buildings."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(size, size))
    kernel = np.ones(9) / 9
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 1, noise)
    smooth = np.apply_along_axis(lambda c: np.convolve(c, kernel, "same"), 0, smooth)
    heights = (smooth - smooth.min()) / np.ptp(smooth) * 40.0
    roads = np.zeros((2, size, size), dtype=bool)
    roads[1, size // 2, :] = True  # minor road west-east through the middle
    water = np.zeros((size, size), dtype=bool)
    water[-8:, :8] = True  # lake in the south-west corner
    heights[water] = 0.0
    top = size * cell_m
    buildings = [
        Building("b1", [[40.0, top - 40.0], [60.0, top - 40.0], [60.0, top - 24.0], [40.0, top - 24.0]], 9.0,
                 {"levels": 3}),
        Building("b2", [[200.0, top - 40.0], [216.0, top - 40.0], [216.0, top - 28.0], [200.0, top - 28.0]], 6.0),
    ]
    return WorldState(heights.astype(np.float32), roads, water, cell_m, 0.5,
                      LayoutControls(size_m=(size * cell_m, size * cell_m)), seed, "a test world", buildings)
