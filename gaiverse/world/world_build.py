"""Steps of a world build over the geometry and buildings libraries, and the files of a world version.

Thin adapters: the road graph (`road_graph`), building placement (`buildings_layout`) and meshes
(`buildings_mesh`), and assembly (`assemble.assemble_world`: carved terrain, road meshes,
vegetation, .glb) are other modules; this one converts between them and the editable
`WorldState`, so a build and every edit render a version the same way. Implements the world
output of 8.2 (ENV-a2 layouts into ENV-d1 assembled worlds) for ENV-a3 versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from gaiverse.world.layout import Layout
from gaiverse.world.training import PROJECT_ROOT
from gaiverse.world.world_state import Building, WorldState, heightmap_png, map_image, png_bytes

log = logging.getLogger(__name__)

BUILDING_MODEL = PROJECT_ROOT / "checkpoints" / "buildings" / "buildings_model.json"

_PLACED_FIELDS = ("shape_class", "levels", "base_z", "roof_shape", "facade_colour", "roof_colour", "block_id",
                  "parcel", "road_angle")


def checkpoint_id(directory: str | Path | None = None) -> dict[str, str]:
    """Identity of a layout checkpoint folder: its path and a sha256 over its configs and weights (first 16 hex).

    Recorded in every version's manifest, and part of the layout actor's name, so a retrained
    checkpoint is picked up by the next build or scheduled rebuild.
    """
    from gaiverse.world.training import DEFAULT_CHECKPOINT

    root = Path(directory) if directory else DEFAULT_CHECKPOINT
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".bin"))
    if not files:
        raise FileNotFoundError(f"`checkpoint` {root} holds no layout checkpoint files")
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return {"path": str(root), "sha256": digest.hexdigest()[:16]}


def road_network(layout: Layout):
    """The cleaned road graph of a layout (what buildings front onto and roads are meshed from)."""
    from gaiverse.world.road_graph import build_road_network

    return build_road_network(layout.roads, layout.cell_m, layout.water)


def place_buildings(layout: Layout, network, prompt: str, seed: int) -> list[Building]:
    """Buildings placed by the learned building model along the network; [] when it is not installed."""
    try:
        from gaiverse.world.buildings_layout import BuildingControls, SceneInput, generate_building_layout
        from gaiverse.world.buildings_model import BuildingModel
    except ImportError as err:
        log.warning("no buildings: building modules not importable (%s)", err)
        return []
    if not BUILDING_MODEL.is_file():
        log.warning("no buildings: no building model at %s", BUILDING_MODEL)
        return []
    if not network.polylines:
        return []
    scene = SceneInput(layout.heights, layout.cell_m, list(network.polylines), list(network.classes), layout.water)
    placed = generate_building_layout(scene, BuildingModel.load(BUILDING_MODEL),
                                      BuildingControls.from_suggestion(layout.controls, prompt), seed=seed)
    return [Building(id=str(b.id), footprint=np.round(np.asarray(b.footprint, float), 3).tolist(),
                     height_m=float(b.height_m), attrs={k: _plain(getattr(b, k)) for k in _PLACED_FIELDS})
            for b in placed.buildings]


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _placed(building: Building, state: WorldState):
    """A buildings_layout.PlacedBuilding for meshing, with the base height taken from the (edited) terrain."""
    from gaiverse.world.buildings_layout import PlacedBuilding

    poly = np.asarray(building.footprint, dtype=np.float64)
    h, w = state.shape
    cols = np.clip((poly[:, 0] / state.cell_m).astype(int), 0, w - 1)
    rows = np.clip(h - 1 - (poly[:, 1] / state.cell_m).astype(int), 0, h - 1)
    a = building.attrs
    return PlacedBuilding(
        id=building.id, footprint=poly, shape_class=str(a.get("shape_class", "rect")), levels=int(a.get("levels", 2)),
        height_m=float(building.height_m), base_z=float(state.heights[rows, cols].min()),
        roof_shape=str(a.get("roof_shape", "flat")), facade_colour=tuple(a.get("facade_colour", (200, 190, 170))),
        roof_colour=tuple(a.get("roof_colour", (150, 80, 60))), block_id=int(a.get("block_id", 0)),
        parcel=np.asarray(a.get("parcel", poly[:4].tolist()), dtype=np.float64),
        road_angle=float(a.get("road_angle", 0.0)))


def building_inputs(state: WorldState) -> list[Any]:
    """What assemble_world takes for the state's buildings: detailed meshes when `buildings_mesh` exists,
    else the Building objects themselves (assemble extrudes footprints)."""
    try:
        from gaiverse.world.buildings_mesh import building_parts
        from gaiverse.world.glb import MeshPart
    except ImportError:
        return list(state.buildings)
    out: list[Any] = []
    for building in state.buildings:
        parts = building_parts(_placed(building, state), seed=state.seed)
        for name in ("walls", "windows", "balconies"):
            mesh = getattr(parts, name)
            if mesh is None:
                continue
            part = MeshPart.from_trimesh(mesh, f"building_{building.id}_{name}")
            part.extras = {**part.extras, "id": building.id, "part": name}
            part.colours = _per_vertex(part.colours, len(part.vertices))
            part.footprint = np.asarray(building.footprint, dtype=np.float64)  # read by assemble for checks
            out.append(part)
    return out


def _per_vertex(colours: np.ndarray | None, n: int) -> np.ndarray:
    """One RGBA per vertex: MeshPart.from_trimesh keeps a single colour for textured (window) meshes,
    which glTF refuses (COLOR_0 count must equal POSITION count)."""
    glass = np.array([40, 55, 70, 255], dtype=np.uint8)
    colours = None if colours is None else np.asarray(colours, dtype=np.uint8)
    if colours is None or colours.ndim != 2 or colours.shape[1] != 4 or len(colours) == 0:
        return np.tile(glass, (n, 1))
    return colours if len(colours) == n else np.tile(colours[0], (n, 1))


def render(state: WorldState, checkpoints: dict[str, str] | None = None):
    """Assemble the state into a WorldScene (terrain, roads, buildings, vegetation, .glb)."""
    from gaiverse.world.assemble import WorldConfig, assemble_world

    return assemble_world(state.to_layout(), buildings=building_inputs(state), config=WorldConfig(buildings="none"),
                          checkpoints=checkpoints, prompt=state.prompt)


def version_files(state: WorldState, scene=None) -> dict[str, tuple[bytes, str, str]]:
    """Files of a version besides the state: .glb, heightmap PNG, top-down map PNG, scene manifest.

    Without a scene (the geometry library missing) only the PNGs made from the state are returned.
    """
    if scene is None:
        return {"heightmap_png": (heightmap_png(state.heights), "world/heightmap", "png"),
                "map_png": (png_bytes(map_image(state)), "world/map", "png")}
    scene_manifest = scene.manifest()
    return {"glb": (scene.glb_bytes(), "world/glb", "glb"),
            "heightmap_png": (scene.heightmap_png(), "world/heightmap", "png"),
            "map_png": (scene.topdown_png(metres_per_px=max(1.0, state.size_m[0] / 1024)), "world/map", "png"),
            "scene_json": (json.dumps(scene_manifest, sort_keys=True, default=float).encode(), "world/scene", "json"),
            # files beside the .glb (window interiors' colour + depth maps), named by their path relative to it
            **{path: (data, "world/interior", path.rsplit(".", 1)[-1]) for path, data in scene.assets.items()}}
