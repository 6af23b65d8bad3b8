"""An interior-atlas room library for the window tests: the shipped atlases (data/interiors) when present, else an
atlas built here (gaiverse.interiors.atlas.build_atlas) from a NeRF trained for a few hundred steps on the real
floor2 corridor photos (data/multiview)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from gaiverse.interiors.windows import InteriorLibrary, load_library
from gaiverse.world.training import PROJECT_ROOT

FLOOR2 = PROJECT_ROOT / "data" / "multiview" / "kapture_indoor_floor2"


@functools.lru_cache(maxsize=1)
def nerf_room_library() -> InteriorLibrary:
    """Made once per test process (the window tests and the browser test share it)."""
    try:
        return load_library()
    except FileNotFoundError:
        pass
    import torch

    from gaiverse.interiors.atlas import build_atlas
    from gaiverse.interiors.poses import load_scene
    from gaiverse.interiors.training import TrainConfig, save_checkpoint, train_nerf

    torch.set_num_threads(2)
    workdir = Path(tempfile.mkdtemp(prefix="gaiverse-rooms-"))
    scene = load_scene(FLOOR2, long_side=64)
    result = train_nerf(scene, TrainConfig(steps=200, log_every=100), seed=0)
    checkpoint = save_checkpoint(result, scene, workdir / "floor2_nerf.pt")
    build_atlas(checkpoint, workdir / "floor2", rooms=4, size=64)
    return load_library(workdir / "floor2")
