"""World assembly: layout -> road network -> graded roads and carved ground -> terrain, roads, buildings,
vegetation -> one glTF 2.0 .glb with semantic node extras, a 16-bit heightmap PNG, a top-down map PNG and
a JSON manifest.

`assemble_world(layout, ...)` is the API the world flow, the editor and the benchmarks call;
`build_world(prompt, ...)` adds parsing and layout sampling for the CLI. Buildings come from
the buildings helper's modules when they are present (`buildings_layout`, `buildings_mesh`)
or are given by the caller (meshes or footprints). Implements ENV-d1 and the world output.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from gaiverse.world.glb import GlbWriter, MeshPart
from gaiverse.world.layout import Layout
from gaiverse.world.road_graph import ROAD_HALF_WIDTH_M, ROAD_WIDTH_M, RoadGraphConfig, RoadNetwork, build_road_network
from gaiverse.world.road_mesh import GradedRoad, RoadMeshConfig, carve_ground, grade_roads, road_meshes
from gaiverse.world.terrain_mesh import (HeightField, TerrainMeshConfig, ground_field, terrain_colours, terrain_mesh,
                                         water_at, water_plane)
from gaiverse.world.vegetation import SPECIES, Vegetation, VegetationConfig, place_vegetation, species_parts
from gaiverse.world.world_checks import WorldCheckResult, building_frame, check_world, road_frame, summary_frame

log = logging.getLogger(__name__)


@dataclass
class WorldConfig:
    """How a layout becomes an engine-ready world."""

    terrain_cell_m: float = 4.0
    """Grid spacing of the terrain mesh (finer than the layout so roads sit cleanly on it)."""
    water_depth_m: float = 1.5
    """Ground under water is dug at least this far below the water plane."""
    max_triangles: int = 900_000
    """Budget of rendered triangles (instances counted), checked by the world suite."""
    instancing: Literal["gpu", "nodes"] = "gpu"
    """Vegetation as EXT_mesh_gpu_instancing (one node per species) or one node per plant reusing one mesh."""
    buildings: Literal["auto", "none"] = "auto"
    """"auto": place buildings with the buildings helper's model when none are given."""
    roads: RoadGraphConfig = field(default_factory=RoadGraphConfig)
    road_mesh: RoadMeshConfig = field(default_factory=RoadMeshConfig)
    terrain: TerrainMeshConfig = field(default_factory=TerrainMeshConfig)
    vegetation: VegetationConfig = field(default_factory=VegetationConfig)


@dataclass
class WorldScene:
    """Everything an assembled world is made of; exports to .glb, PNGs and a manifest."""

    layout: Layout
    network: RoadNetwork
    graded: list[GradedRoad]
    ground: HeightField
    """The carved ground the terrain mesh shows (x east, y north, z up)."""
    terrain: MeshPart
    water: MeshPart | None
    roads: list[MeshPart]
    buildings: list[MeshPart]
    footprints: dict[str, np.ndarray]
    """Building id -> (n, 2) footprint polygon, metres."""
    vegetation: Vegetation
    config: WorldConfig
    checkpoints: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    materials: dict[str, tuple[dict, bytes | None]] = field(default_factory=dict)
    """Extra glTF materials parts may name (window interiors: material, baked PNG); see GlbWriter.add_material."""
    assets: dict[str, bytes] = field(default_factory=dict)
    """Files shipped beside the .glb, keyed by their path relative to it (interior colour + depth maps)."""
    _glb: bytes | None = None
    _triangles: int = 0

    def glb_bytes(self) -> bytes:
        """The world as one .glb: root "world" > terrain, roads, buildings, vegetation groups."""
        if self._glb is not None:
            return self._glb
        w, h = self.network.extent_m
        writer = GlbWriter("world", {"type": "world", "seed": self.layout.seed, "size_m": [w, h],
                                     "frame": "X east, Y up, Z south; metres"})
        for name, (material, png) in self.materials.items():
            writer.add_material(name, material, png)
        group = {name: writer.add_node(name, extras={"type": f"{name}_group"}) for name in
                 ("terrain", "roads", "buildings", "vegetation")}
        for part in [self.terrain] + ([self.water] if self.water else []):
            writer.add_node(part.name, part, part.extras, parent=group["terrain"])
        for part in self.roads:
            writer.add_node(part.name, part, part.extras, parent=group["roads"])
        for part in self.buildings:
            writer.add_node(part.name, part, part.extras, parent=group["buildings"])
        meshes = species_parts()
        veg = self.vegetation
        for k, name in enumerate(SPECIES):
            sel = np.nonzero(veg.species == k)[0]
            if not len(sel):
                continue
            pos = np.column_stack([veg.xy[sel], veg.z[sel]])
            if self.config.instancing == "gpu":
                writer.add_node(f"vegetation_{name}", meshes[name], {
                    "type": "vegetation", "id": f"vegetation_{name}", "species": name, "count": int(len(sel)),
                    "instance_ids": [f"plant_{i}" for i in sel]}, parent=group["vegetation"],
                    instances={"translation": pos, "yaw": veg.yaw[sel], "scale": veg.scale[sel]})
            else:
                for i, p in zip(sel, pos):
                    writer.add_node(f"plant_{i}", meshes[name], {"type": "vegetation", "id": f"plant_{i}",
                                                                 "species": name}, parent=group["vegetation"],
                                    translation=p, yaw=float(veg.yaw[i]), scale=float(veg.scale[i]))
        self._glb, self._triangles = writer.to_bytes(), writer.triangles
        return self._glb

    @property
    def triangles(self) -> int:
        """Rendered triangles (every instance counted)."""
        self.glb_bytes()
        return self._triangles

    def heightmap_png(self) -> bytes:
        """16-bit greyscale PNG of the carved ground (row 0 north); metres = min + v / 65535 * (max - min)."""
        z = self.ground.corners
        lo, span = float(z.min()), max(float(np.ptp(z)), 1e-9)
        buf = io.BytesIO()
        Image.fromarray(np.round((z - lo) / span * 65535).astype(np.uint16)).save(buf, format="PNG")
        return buf.getvalue()

    def topdown_png(self, metres_per_px: float = 1.0) -> bytes:
        """A map: terrain colours, water, roads by width, buildings, trees (north up)."""
        w_m, h_m = self.network.extent_m
        size = (max(1, int(w_m / metres_per_px)), max(1, int(h_m / metres_per_px)))
        base = terrain_colours(self.ground, self.layout.water_level_m, self.config.terrain)[..., :3]
        img = Image.fromarray(base).resize(size, Image.BILINEAR)
        xs, ys = np.meshgrid((np.arange(size[0]) + 0.5) * metres_per_px, h_m - (np.arange(size[1]) + 0.5) * metres_per_px)
        wet = water_at(self.layout.water, self.layout.cell_m, np.column_stack([xs.ravel(), ys.ravel()]))
        arr = np.asarray(img).copy()
        arr.reshape(-1, 3)[wet] = (52, 104, 170)
        img = Image.fromarray(arr)
        draw = ImageDraw.Draw(img)
        px = lambda p: [(x / metres_per_px, (h_m - y) / metres_per_px) for x, y in p]  # noqa: E731
        for line, cls in zip(self.network.polylines, self.network.classes):
            draw.line(px(line), fill=(176, 172, 164), width=max(1, round(2 * ROAD_HALF_WIDTH_M[cls] / metres_per_px)))
        for line, cls in zip(self.network.polylines, self.network.classes):
            width = max(1, round(ROAD_WIDTH_M[cls] / metres_per_px))
            draw.line(px(line), fill=(60, 60, 64) if cls == "major" else (84, 84, 88), width=width)
        for poly in self.footprints.values():
            draw.polygon(px(poly), fill=(196, 120, 90), outline=(90, 50, 40))
        r = max(1.0, 1.8 / metres_per_px)
        for (x, y), s in zip(self.vegetation.xy, self.vegetation.species):
            cx, cy = x / metres_per_px, (h_m - y) / metres_per_px
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(30, 70 + 12 * int(s), 36))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    def check_frames(self):
        """(buildings, roads, summary) frames for the world suite (validation/world.py)."""
        b = building_frame(self.footprints, list(zip(self.network.polylines, self.network.classes)),
                           self.layout.water, self.layout.cell_m)
        r = road_frame(self.network.records())
        missing = sum(1 for n in json.loads(_glb_json(self.glb_bytes())).get("nodes", [])
                      if "mesh" in n and not {"type", "id"} <= set(n.get("extras", {})))
        s = summary_frame(self.triangles, self.config.max_triangles, self.ground.corners,
                          self.layout.controls.relief_m, missing_extras=missing,
                          slack_m=self.config.water_depth_m + 0.5)
        return b, r, s

    def check(self) -> WorldCheckResult:
        """The world checks without Great Expectations (the flow runs validation.world on the same frames)."""
        return check_world(*self.check_frames())

    def manifest(self) -> dict[str, Any]:
        """Controls, seed, checkpoints, counts, triangles, bounding box, road metrics, timings."""
        w, h = self.network.extent_m
        z = self.ground.corners
        bridges = sum(1 for p in self.roads if p.extras.get("bridge"))
        return {"seed": self.layout.seed, "controls": _plain(asdict(self.layout.controls)),
                "checkpoints": self.checkpoints, "size_m": [w, h], "cell_m": self.layout.cell_m,
                "water_level_m": self.layout.water_level_m,
                "bbox": {"frame": "x east, y north, z up (glTF: X, Y=z, Z=-y)", "min": [0.0, 0.0, float(z.min())],
                         "max": [w, h, max([float(z.max())] + [float(p.vertices[:, 2].max()) for p in self.buildings])]},
                "counts": {"roads": len(self.graded), "junctions": sum(1 for p in self.roads if p.extras["type"] == "junction"),
                           "bridges": bridges, "buildings": len(self.footprints), "building_parts": len(self.buildings),
                           "plants": len(self.vegetation),
                           "plants_by_species": self.vegetation.counts()},
                "triangles": self.triangles, "max_triangles": self.config.max_triangles,
                "instancing": self.config.instancing,
                "heightmap": {"min_m": float(z.min()), "max_m": float(z.max()), "shape": list(z.shape),
                              "spacing_m": list(self.ground.spacing_m), "encoding": "uint16 linear min..max, row 0 north"},
                "roads": {"before_cleaning": self.network.metrics_before,
                          "after_cleaning": {k: v for k, v in self.network.metrics_after.items() if k != "config"}},
                "vegetation": self.vegetation.stats, "timings_s": self.timings}

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write world.glb, heightmap.png, topdown.png and manifest.json into out_dir."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        files = {"glb": out / "world.glb", "heightmap": out / "heightmap.png", "topdown": out / "topdown.png",
                 "manifest": out / "manifest.json"}
        files["glb"].write_bytes(self.glb_bytes())
        files["heightmap"].write_bytes(self.heightmap_png())
        files["topdown"].write_bytes(self.topdown_png())
        for relative, data in self.assets.items():
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            (out / relative).write_bytes(data)
        self.timings["export"] = round(time.perf_counter() - t, 3)
        manifest = self.manifest()
        manifest["files"] = {k: p.name for k, p in files.items()}
        manifest["glb_bytes"] = files["glb"].stat().st_size
        files["manifest"].write_text(json.dumps(manifest, indent=1, default=float))
        return files


def _glb_json(glb: bytes) -> str:
    n = int.from_bytes(glb[12:16], "little")
    return glb[20:20 + n].decode()


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


# ---------------------------------------------------------------- assembly

BuildingInput = Any
"""A building given by the caller: a MeshPart, a trimesh.Trimesh (x east, y north, z up; `metadata["extras"]`),
or an object with `id`, `footprint` (n, 2) and `height_m` (e.g. buildings_layout.PlacedBuilding)."""


def assemble_world(layout: Layout, buildings: list[BuildingInput] | None = None, config: WorldConfig | None = None,
                   checkpoints: dict[str, str] | None = None, prompt: str = "") -> WorldScene:
    """Turn a layout into a WorldScene (roads, carved terrain, buildings, vegetation). Implements ENV-d1.

    buildings : None -> placed by the buildings helper's model when `config.buildings == "auto"`
    and its checkpoint exists; [] -> no buildings.
    """
    cfg = config or WorldConfig()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    network = build_road_network(layout.roads, layout.cell_m, layout.water, cfg.roads)
    lap("road_graph")
    wet = lambda xy: water_at(layout.water, layout.cell_m, np.atleast_2d(xy))  # noqa: E731
    ground = ground_field(layout.heights, layout.cell_m, layout.water, layout.water_level_m, cfg.terrain_cell_m,
                          cfg.water_depth_m)
    graded = grade_roads(network, ground, wet, layout.water_level_m, cfg.road_mesh)
    ground = carve_ground(ground, graded, cfg.road_mesh)
    terrain, ground = terrain_mesh(ground, layout.water_level_m, cfg.terrain)
    road_parts = road_meshes(network, graded, ground, cfg.road_mesh)
    lap("terrain_and_roads")
    if buildings is None and cfg.buildings == "auto":
        buildings = _generated_buildings(layout, network, prompt)
    building_parts, footprints = _building_parts(buildings or [], ground, layout.seed)
    lap("buildings")
    vegetation = place_vegetation(ground, layout.water, layout.cell_m, network.polylines,
                                  [ROAD_HALF_WIDTH_M[c] for c in network.classes], list(footprints.values()),
                                  layout.controls.settlement_radius_m, cfg.vegetation)
    lap("vegetation")
    scene = WorldScene(layout, network, graded, ground, terrain, water_plane(network.extent_m, layout.water_level_m),
                       road_parts, building_parts, footprints, vegetation, cfg, dict(checkpoints or {}), timings)
    scene.glb_bytes()
    lap("glb")
    log.info("world assembled: %d triangles, %d roads, %d buildings, %d plants in %.1f s", scene.triangles,
             len(graded), len(footprints), len(vegetation), sum(timings.values()))
    return scene


def _generated_buildings(layout: Layout, network: RoadNetwork, prompt: str) -> list[BuildingInput]:
    """Buildings from the buildings helper (layout model + meshes) when its code and checkpoint are present."""
    from gaiverse.world.training import PROJECT_ROOT

    model_path = PROJECT_ROOT / "checkpoints" / "buildings" / "buildings_model.json"
    try:
        from gaiverse.world.buildings_layout import (BuildingControls, SceneInput, generate_building_layout)
        from gaiverse.world.buildings_model import BuildingModel
    except ImportError as err:
        log.warning("buildings skipped: buildings modules not importable (%s)", err)
        return []
    if not model_path.is_file():
        log.warning("buildings skipped: no building model at %s", model_path)
        return []
    scene = SceneInput(layout.heights, layout.cell_m, network.polylines, network.classes, layout.water)
    placed = generate_building_layout(scene, BuildingModel.load(model_path),
                                      BuildingControls.from_suggestion(layout.controls, prompt), seed=layout.seed)
    return list(placed.buildings)


def _buildings_mesh():
    try:
        from gaiverse.world import buildings_mesh
    except ImportError:
        return None
    return buildings_mesh if hasattr(buildings_mesh, "building_parts") else None


def _meshed(b, ground: HeightField, seed: int) -> MeshPart:
    """One MeshPart (walls + roof, windows, balconies) from buildings_mesh.building_parts, set on our ground:
    the layout's base height is replaced by the carved ground's lowest point under the footprint."""
    parts = _buildings_mesh().building_parts(b, seed=seed)
    meshes = [m for m in (parts.walls, parts.windows, parts.balconies) if m is not None]
    pieces = [MeshPart.from_trimesh(m, b.id) for m in meshes]
    dz = float(ground.height_at(np.asarray(b.footprint, float)).min()) - 0.2 - float(b.base_z)
    v, f, c, n = [], [], [], 0
    for p in pieces:
        v.append(p.vertices + [0, 0, dz])
        f.append(np.asarray(p.faces) + n)
        c.append(p.colours if p.colours is not None else np.full((len(p.vertices), 4), 200, np.uint8))
        n += len(p.vertices)
    extras = {"type": "building", "id": b.id, "levels": int(b.levels), "height_m": round(float(b.height_m), 2),
              "roof": b.roof_shape, "shape": b.shape_class, "windows": int(parts.n_windows)}
    return MeshPart(f"building_{b.id}", np.vstack(v), np.vstack(f).astype(np.uint32), np.vstack(c), extras)


def _building_parts(buildings: list[BuildingInput], ground: HeightField,
                    seed: int = 0) -> tuple[list[MeshPart], dict[str, np.ndarray]]:
    """MeshParts and footprints of the given buildings (footprint-only inputs are extruded here)."""
    from gaiverse.world.buildings_geometry import as_ccw, convex_hull

    parts, footprints = [], {}
    for k, b in enumerate(buildings):
        if isinstance(b, MeshPart):
            part = b
        elif hasattr(b, "vertices") and hasattr(b, "faces"):
            extras = dict((getattr(b, "metadata", {}) or {}).get("extras", {}))
            part = MeshPart.from_trimesh(b, str(extras.get("id", f"building_{k}")))
        elif hasattr(b, "base_z") and _buildings_mesh() is not None:
            part = _meshed(b, ground, seed)
        else:
            part = _extrude(str(getattr(b, "id", f"building_{k}")), as_ccw(np.asarray(b.footprint, float)),
                            float(b.height_m), ground, getattr(b, "facade_colour", (200, 190, 170)),
                            getattr(b, "roof_colour", (150, 80, 60)))
        bid = str(part.extras.get("id", part.name))
        part.extras = {**part.extras, "type": "building", "id": bid}
        if not part.name.startswith("building"):  # parts of one building (walls, windows...) keep their names
            part.name = f"building_{bid}"
        footprint = getattr(b, "footprint", None)
        footprints[bid] = (as_ccw(np.asarray(footprint, float)) if footprint is not None
                           else convex_hull(part.vertices[:, :2]))
        parts.append(part)
    return parts, footprints


def _extrude(bid: str, footprint: np.ndarray, height_m: float, ground: HeightField, facade, roof) -> MeshPart:
    """A prism with a flat roof standing on the ground (used until building meshes are given)."""
    from gaiverse.world.buildings_geometry import triangulate

    n = len(footprint)
    base = float(ground.height_at(footprint).min()) - 0.3
    top = float(ground.height_at(footprint).max()) + height_m
    walls_v = np.vstack([np.column_stack([footprint, np.full(n, base)]), np.column_stack([footprint, np.full(n, top)])])
    walls_f = [[i, (i + 1) % n, n + (i + 1) % n] for i in range(n)] + [[i, n + (i + 1) % n, n + i] for i in range(n)]
    roof_v = np.column_stack([footprint, np.full(n, top)])
    roof_f = triangulate(footprint) + 2 * n
    v = np.vstack([walls_v, roof_v])
    f = np.vstack([np.array(walls_f), roof_f]).astype(np.uint32)
    c = np.vstack([np.tile([*facade[:3], 255], (2 * n, 1)), np.tile([*roof[:3], 255], (n, 1))]).astype(np.uint8)
    return MeshPart(f"building_{bid}", v, f, c, {"type": "building", "id": bid, "height_m": round(height_m, 2)})


def build_world(prompt: str, seed: int = 0, out_dir: str | Path | None = None, checkpoint: str | Path | None = None,
                steps: int | None = None, config: WorldConfig | None = None) -> tuple[WorldScene, dict[str, Path]]:
    """Prompt -> controls -> layout (diffusion) -> assembled world; writes the files when out_dir is given."""
    from gaiverse.world.layout import LayoutGenerator, LayoutGeneratorConfig
    from gaiverse.world.suggestions import parse_suggestion
    from gaiverse.world.training import DEFAULT_CHECKPOINT

    t = time.perf_counter()
    controls = parse_suggestion(prompt)
    ckpt = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    generator = LayoutGenerator.from_checkpoint(ckpt, LayoutGeneratorConfig(ddim_steps=steps) if steps else None)
    layout = generator.generate(controls, seed=seed)
    layout_s = time.perf_counter() - t
    scene = assemble_world(layout, config=config, prompt=prompt,
                           checkpoints={"terrain": str(ckpt / "terrain"), "roads": str(ckpt / "roads")})
    scene.timings = {"layout": round(layout_s, 3), **scene.timings}
    files = scene.write(out_dir) if out_dir is not None else {}
    return scene, files
