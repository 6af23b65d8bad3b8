"""Task of the world flows' dynamics step: simulate traffic and pedestrians, check them, export and validate.

The simulation, checks and export are plain functions in `gaiverse.world.dynamics`; this task runs
them on the assembled scene, validates the checks (GX suite `world.dynamics`: no vehicle off the road
or overlapping another or speeding, routes on the road graph, people on walkways) and the exported
.glb (Khronos validator, no error), and returns the files that become objects of the world version
(`dynamics_glb`, `dynamics_json`). Deterministic given the world's seed, so a retry gives the same
files. Implements ENV-d2 in the world service flow.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from gaiverse.world.dynamics.checks import DynamicsCheck, check_dynamics
from gaiverse.world.dynamics.export import dynamics_glb
from gaiverse.world.dynamics.simulate import Dynamics, DynamicsConfig, scene_dynamics
from tasks.artifacts import table_artifact, validate_in_run
from tasks.common import gaiverse_task
from validation.metrics import expect

DYNAMICS_SUITE = "world.dynamics"
DYNAMICS_EXPECTATIONS = (
    expect("column_values_to_be_in_set", column="ok", value_set=[True]),
    expect("column_values_to_be_unique", column="check"),
)
"""Every check within its allowance: none for vehicles, routes and the glTF; 5% of people's samples."""
PEDESTRIAN_OFF_WALKWAY_SHARE = 0.05
"""Share of pedestrian samples allowed off the walkways (sidewalk offsets at the raster roads' tightest kinks)."""


def dynamics_frame(dyn: Dynamics, check: DynamicsCheck, gltf_errors: int) -> pd.DataFrame:
    """One row per check: violations, what is allowed, ok."""
    frame = check.frame()
    frame.loc[len(frame)] = {"check": "gltf_errors", "violations": gltf_errors}
    samples = dyn.pedestrians.xyz[..., 0].size
    frame["allowed"] = [int(PEDESTRIAN_OFF_WALKWAY_SHARE * samples) if c == "pedestrian_samples_off_walkways" else 0
                        for c in frame["check"]]
    frame["ok"] = frame["violations"] <= frame["allowed"]
    return frame


@gaiverse_task(cache="none", retries=1, timeout_seconds=1800)
def simulate_dynamics(scene, seed: int) -> dict[str, Any]:
    """Traffic, pedestrians and the weather schedule of an assembled world; validated files for its version."""
    from validation.gltf import validate_glb

    dyn = scene_dynamics(scene, DynamicsConfig(seed=seed))
    check = check_dynamics(dyn)
    glb = dynamics_glb(dyn)
    gltf = validate_glb(glb)
    frame = dynamics_frame(dyn, check, len(gltf.errors))
    table_artifact("world-dynamics", frame.to_dict("records"), title=f"Dynamics: {len(dyn.vehicles)} vehicles, "
                   f"{len(dyn.pedestrians)} people, {dyn.stats['simulation_s']} s simulation")
    validate_in_run(DYNAMICS_SUITE, frame, DYNAMICS_EXPECTATIONS, asset_column="check")
    summary = {**dyn.summary(), "checks": check.counts, "check_metrics": check.metrics}
    return {"vehicles": len(dyn.vehicles), "pedestrians": len(dyn.pedestrians), "checks": check.counts,
            "files": {"dynamics_glb": (glb, "world/dynamics", "glb"),
                      "dynamics_json": (json.dumps(summary, sort_keys=True, default=float).encode(),
                                        "world/dynamics", "json")}}
