"""Task of the world flows' dynamics step: simulate traffic and pedestrians, check them, export and validate.

The simulation, checks and export are plain functions in `gaiverse.world.dynamics`; this task runs
them on the assembled scene, validates the checks (GX suite `world.dynamics`: no vehicle off the road
or overlapping another or speeding, routes on the road graph, people on walkways) and the exported
.glb (Khronos validator, no error), and returns the files that become objects of the world version
(`dynamics_glb`, `dynamics_json`). The weather / time-of-day schedule is the one given (validated) or
one drawn from the seed. Deterministic given the world's seed, so a retry gives the same files.
Edited versions reroute these objects (`gaiverse.world.version_outputs`). Implements ENV-d2 in the
world service flow.
"""

from __future__ import annotations

from typing import Any

from gaiverse.world.dynamics.checks import check_dynamics, check_frame
from gaiverse.world.dynamics.schedule import DynamicsSchedule
from gaiverse.world.dynamics.simulate import DynamicsConfig, scene_dynamics
from gaiverse.world.version_outputs import dynamics_files
from tasks.artifacts import table_artifact, validate_in_run
from tasks.common import gaiverse_task
from validation.metrics import expect

DYNAMICS_SUITE = "world.dynamics"
DYNAMICS_EXPECTATIONS = (
    expect("column_values_to_be_in_set", column="ok", value_set=[True]),
    expect("column_values_to_be_unique", column="check"),
)
"""Every check within its allowance (`checks.check_frame`): none for vehicles, routes and the glTF; 5% of
people's samples."""


@gaiverse_task(cache="none", retries=1, timeout_seconds=1800)
def simulate_dynamics(scene, seed: int, schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    """Traffic, pedestrians and the weather schedule of an assembled world; validated files for its version.

    schedule : a `DynamicsSchedule` as JSON (hourly weather, traffic and pedestrian shares); default drawn
    from the seed. ValueError naming the field when it is malformed."""
    from validation.gltf import validate_glb

    plan = DynamicsSchedule.from_json(schedule) if schedule is not None else None
    dyn = scene_dynamics(scene, DynamicsConfig(seed=seed), plan)
    check = check_dynamics(dyn)
    files = dynamics_files(dyn, check)
    gltf = validate_glb(files["dynamics_glb"][0])
    frame = check_frame(dyn, check, len(gltf.errors))
    table_artifact("world-dynamics", frame.to_dict("records"), title=f"Dynamics: {len(dyn.vehicles)} vehicles, "
                   f"{len(dyn.pedestrians)} people, {dyn.stats['simulation_s']} s simulation")
    validate_in_run(DYNAMICS_SUITE, frame, DYNAMICS_EXPECTATIONS, asset_column="check")
    return {"vehicles": len(dyn.vehicles), "pedestrians": len(dyn.pedestrians), "checks": check.counts,
            "files": files}
