"""Simulated dynamics -> one glTF 2.0 .glb: an animated node per vehicle and pedestrian, weather in `extras`.

Layout of the file (frame as the world .glb: X east, Y up, Z south, metres; time in seconds):

- root node `dynamics` with `extras`:
  - `type`: "dynamics", `format`: "gaiverse.dynamics/1", `seed`, `duration_s`, `sample_hz`, `loop`: true
    (the recording is meant to be replayed in a loop), `driving_side`, `counts` {vehicles, pedestrians};
  - `weather`: {`presets`: name -> {cloud_cover 0..1, fog_density (exponential-squared per metre),
    precipitation "none" | "rain" | "snow", precipitation_mm_h, wind_mps, description},
    `schedule`: {latitude_deg, day_of_year, entries: [{hour 0..23, weather, traffic 0..1 (share of the
    vehicles shown), pedestrians 0..1}]}, `lighting`: hour "0".."23" -> the lighting at that hour under the
    scheduled weather (sun_direction as a unit vector x east, y north, z up; sun_colour / sky_colour /
    fog_colour linear RGB 0..1; sun_intensity, ambient_intensity, fog_density, daylight 0..1, street_lights)}.
- child groups `vehicles` and `pedestrians`; under them one node per agent named by its id
  (`vehicle_12`, `pedestrian_7`) with a low-poly mesh (shared by agents of the same kind and colour)
  and `extras` {type: "vehicle" | "pedestrian", id, kind, length_m, width_m, colour}.
- one animation `traffic`: per agent a LINEAR translation channel and a LINEAR rotation channel
  (yaw about +Y), keyframes at `sample_hz` over `duration_s`; the times accessor is shared.

Any glTF engine (Blender, Godot, Unity, three.js) plays the animation as it is; the web engine reads the
same keyframes into instanced meshes. Implements ENV-d2 (traffic and pedestrian paths exported as glTF
animations, weather as documented extras).
"""

from __future__ import annotations

import numpy as np

from gaiverse.world.dynamics.simulate import AgentTracks, Dynamics
from gaiverse.world.glb import FLOAT, GlbWriter, MeshPart, to_gltf_frame


def _box(x0, x1, y0, y1, z0, z1) -> tuple[np.ndarray, np.ndarray]:
    """A closed axis-aligned box (world frame), 12 triangles counter-clockwise from outside."""
    v = np.array([[x, y, z] for z in (z0, z1) for y in (y0, y1) for x in (x0, x1)], dtype=np.float64)
    f = [[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4], [2, 6, 3], [3, 6, 7],
         [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]]
    return v, np.array(f)


def _part(name: str, boxes: list[tuple[tuple, tuple[int, int, int]]], extras: dict) -> MeshPart:
    """Boxes with flat colours -> one MeshPart (each face its own vertices, so colours stay flat)."""
    vs, fs, cs, n = [], [], [], 0
    for bounds, colour in boxes:
        v, f = _box(*bounds)
        tri = v[f].reshape(-1, 3)
        vs.append(tri)
        fs.append(np.arange(len(tri)).reshape(-1, 3) + n)
        cs.append(np.tile([*colour, 255], (len(tri), 1)))
        n += len(tri)
    return MeshPart(name, np.vstack(vs), np.vstack(fs), np.vstack(cs).astype(np.uint8), extras)


def vehicle_mesh(kind: str, length: float, width: float, colour) -> MeshPart:
    """A low-poly vehicle facing +x (east) in its own frame, wheels on z = 0."""
    hl, hw = length / 2, width / 2
    glass = (60, 80, 100)
    cabin = (-0.35 * length, 0.2 * length) if kind == "car" else (-hl + 0.1, 0.3 * length)
    return _part(f"{kind}_{'_'.join(map(str, colour))}", [
        ((-hl, hl, -hw, hw, 0.25, 0.95), tuple(colour)),
        ((cabin[0], cabin[1], -hw + 0.08, hw - 0.08, 0.95, 1.5 if kind == "car" else 1.9), glass),
        ((-hl + 0.5, -hl + 1.1, -hw - 0.02, hw + 0.02, 0.0, 0.5), (25, 25, 25)),
        ((hl - 1.1, hl - 0.5, -hw - 0.02, hw + 0.02, 0.0, 0.5), (25, 25, 25)),
    ], {"type": "vehicle_mesh"})


def person_mesh(colour) -> MeshPart:
    """A low-poly person (legs, torso in the clothing colour, head) facing +x, feet on z = 0."""
    return _part(f"person_{'_'.join(map(str, colour))}", [
        ((-0.12, 0.12, -0.18, 0.18, 0.0, 0.85), (50, 50, 60)),
        ((-0.14, 0.14, -0.22, 0.22, 0.85, 1.45), tuple(colour)),
        ((-0.11, 0.11, -0.11, 0.11, 1.47, 1.72), (225, 190, 160)),
    ], {"type": "person_mesh"})


def _yaw_quaternions(yaw: np.ndarray) -> np.ndarray:
    """(T,) yaw (counter-clockwise from east, world frame) -> (T, 4) glTF rotations about +Y, sign-continuous."""
    half = np.unwrap(yaw) / 2
    return np.column_stack([np.zeros_like(half), np.sin(half), np.zeros_like(half), np.cos(half)])


def _agents(writer: GlbWriter, tracks: AgentTracks, kind: str, parent: int, times_acc: int,
            channels: list, samplers: list) -> None:
    meshes: dict[tuple, MeshPart] = {}
    for a, agent_id in enumerate(tracks.ids):
        colour = tuple(int(c) for c in tracks.colours[a])
        key = (tracks.kinds[a], colour)
        if key not in meshes:
            meshes[key] = (person_mesh(colour) if kind == "pedestrian" else
                           vehicle_mesh(tracks.kinds[a], *map(float, tracks.size_m[a]), colour))
        length, width = (round(float(x), 3) for x in tracks.size_m[a])
        node = writer.add_node(agent_id, meshes[key], {"type": kind, "id": agent_id, "kind": tracks.kinds[a],
                                                       "length_m": length, "width_m": width, "colour": list(colour)},
                               parent=parent, translation=tracks.xyz[0, a], yaw=float(tracks.yaw[0, a]))
        for path, values, atype in (("translation", to_gltf_frame(tracks.xyz[:, a]), "VEC3"),
                                    ("rotation", _yaw_quaternions(tracks.yaw[:, a]), "VEC4")):
            samplers.append({"input": times_acc, "output": writer.accessor(values, FLOAT, atype),
                             "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": path}})


def dynamics_extras(dyn: Dynamics) -> dict:
    """The root node's extras: counts, timing and the weather (presets, schedule, lighting by hour)."""
    summary = dyn.summary()
    lighting = {str(h): dyn.schedule.at(float(h)) for h in range(24)}
    return {"type": "dynamics", "id": "dynamics", "format": summary["format"], "seed": summary["seed"],
            "duration_s": summary["duration_s"], "sample_hz": summary["sample_hz"], "loop": True,
            "driving_side": summary["driving_side"], "counts": summary["counts"],
            "weather": {"presets": summary["weather_presets"], "schedule": summary["schedule"], "lighting": lighting}}


def dynamics_glb(dyn: Dynamics) -> bytes:
    """The animated .glb of a simulation (layout in the module docstring). Implements ENV-d2."""
    if len(dyn.times) < 2:
        raise ValueError(f"need at least 2 samples to animate, got {len(dyn.times)}")
    writer = GlbWriter("dynamics", dynamics_extras(dyn))
    times_acc = writer.accessor(dyn.times.astype(np.float32), FLOAT, "SCALAR", bounds=True)
    channels: list = []
    samplers: list = []
    for name, tracks, kind in (("vehicles", dyn.vehicles, "vehicle"), ("pedestrians", dyn.pedestrians, "pedestrian")):
        group = writer.add_node(name, extras={"type": f"{kind}_group", "count": len(tracks)})
        _agents(writer, tracks, kind, group, times_acc, channels, samplers)
    if channels:
        writer.doc["animations"] = [{"name": "traffic", "channels": channels, "samplers": samplers}]
    return writer.to_bytes()
