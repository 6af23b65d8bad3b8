"""The world engine in headless chromium (ENV-d2): traffic and people moving, clear weather, rain and night.

A real 512 m world (shipped layout checkpoints) with its simulated dynamics is published for a user the
way a build publishes it; the world page loads it, the engine replays the vehicles and pedestrians as
instanced meshes and renders the weather. The world is rebuilt for drawing (world_render.js: terrain tiles,
merged draw calls): every semantic id of the .glb must still be there, and picking the road under a vehicle
must name it. Screenshots: tests/artifacts/engine-clear.png, engine-rain.png, engine-night.png.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gaiverse.character.gltf_writer import read_glb
from gaiverse.world import world_build
from gaiverse.world.assemble import WorldConfig, assemble_world
from gaiverse.world.dynamics.export import dynamics_glb
from gaiverse.world.dynamics.pedestrians import PedestrianConfig
from gaiverse.world.dynamics.simulate import DynamicsConfig, scene_dynamics
from gaiverse.world.dynamics.traffic import TrafficConfig
from gaiverse.world.layout import LayoutGenerator, LayoutGeneratorConfig
from gaiverse.world.suggestions import LayoutControls
from gaiverse.world.versions import WorldVersions
from gaiverse.world.world_state import WorldState
from tests.api.conftest import _make_user, admin, admin_key, api_server  # noqa: F401 - fixtures of the API tests
from tests.browser import HEADLESS, WEBGL, chromium

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium, pytest.mark.clause("ENV-d2")]
ARGS = [*HEADLESS, *WEBGL]
CONTROLS = LayoutControls(size_m=(512.0, 512.0), relief_m=30.0, water_level=0.1, road_density=12.0,
                          settlement_radius_m=200.0)


@pytest.fixture(scope="module")
def engine_world(api_server, admin, store, catalog, terrain_model, roads_model):  # noqa: F811
    """A user and a 512 m world of theirs whose version 1 carries the dynamics .glb and JSON."""
    user = _make_user(api_server, admin, "engine")
    layout = LayoutGenerator(terrain_model, roads_model, LayoutGeneratorConfig(ddim_steps=4)).generate(CONTROLS, seed=2)
    state = WorldState.from_layout(layout, "a town for the engine test", [])
    scene = assemble_world(layout, buildings=[], config=WorldConfig())
    dyn = scene_dynamics(scene, DynamicsConfig(seed=1, duration_s=10.0, warmup_s=4.0,
                                               traffic=TrafficConfig(vehicles=200),
                                               pedestrians=PedestrianConfig(pedestrians=500)))
    files = {**world_build.version_files(state, scene), "dynamics_glb": (dynamics_glb(dyn), "world/dynamics", "glb")}
    world_id = "eng-" + user.user["user_id"][:8]
    WorldVersions(store, catalog).publish(world_id, state, author=user.user["user_id"], message="engine test",
                                          derived=files, new_world=True)
    yield user, world_id, dyn, _glb_ids(files["glb"][0])
    user.close()


def _glb_ids(glb: bytes) -> set[str]:
    """Ids of the roads, junctions, buildings and plants (instance ids) in a world .glb's node extras."""
    ids: set[str] = set()
    for node in read_glb(glb)[0]["nodes"]:
        extras = node.get("extras") or {}
        if extras.get("type") in ("road", "junction", "building"):
            ids.add(extras["id"])
        ids.update(extras.get("instance_ids", []))
    return ids


MERGED_IDS = """() => [...new Set(window.gaiverseEngine.state.root.children.filter((m) => m.userData.pieces)
  .flatMap((m) => m.userData.pieces.map((p) => p.info.id)))]"""


def _shot(page, path) -> np.ndarray:
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    png = page.locator("#world-view").screenshot(path=str(path))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def test_engine_plays_traffic_in_clear_rain_and_night(engine_world, api_server, artifacts_dir):  # noqa: F811
    user, world_id, dyn, glb_ids = engine_world
    with chromium(ARGS) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        problems: list[str] = []
        page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        page.goto(api_server + "/")
        page.evaluate("key => sessionStorage.setItem('gaiverse.apiKey', key)", user.key)
        page.goto(f"{api_server}/web/world.html?world={world_id}")
        page.wait_for_selector("#world-view[data-dynamics]", timeout=300_000)
        assert page.get_attribute("#world-view", "data-dynamics") == "running", problems
        # full resolution for the screenshots: the adaptive scale follows the machine's load, the look does not
        page.evaluate("() => { const e = window.gaiverseEngine; e.setResolution(1); e.set({ weather: 'clear', hour: 12, "
                      "traffic: 1, pedestrians: 1 }); e.focus(0, 40); }")
        counts = page.evaluate("() => window.gaiverseEngine.counts()")
        drawn_counts = page.evaluate("() => window.gaiverseEngine.drawnCounts()")  # those inside the view frustum
        road = page.evaluate("() => window.gaiverseEngine.pickAt(0, 0)")  # focus() looks at vehicle 0 on its road
        merged_ids = set(page.evaluate(MERGED_IDS))
        drawn = page.evaluate("() => ({ ...window.gaiverseEngine.renderStats(), instanced: window.gaiverseEngine.state"
                              ".meshes.map((m) => m.isInstancedMesh) })")
        start = page.evaluate("() => window.gaiverseEngine.state.played")
        before = page.evaluate("() => Array.from(window.gaiverseEngine.state.meshes[0].instanceMatrix.array.slice(0, 64))")
        clear = _shot(page, artifacts_dir / "engine-clear.png")
        page.wait_for_function(f"() => window.gaiverseEngine.state.played > {start} + 1", timeout=120_000)
        after = page.evaluate("() => Array.from(window.gaiverseEngine.state.meshes[0].instanceMatrix.array.slice(0, 64))")
        page.evaluate("() => window.gaiverseEngine.set({ weather: 'rain', hour: 12 })")
        rain = _shot(page, artifacts_dir / "engine-rain.png")
        particles = page.evaluate("() => window.gaiverseEngine.state.precipitation?.geometry.attributes.position.count || 0")
        page.evaluate("() => window.gaiverseEngine.set({ weather: 'clear', hour: 23 })")
        night = _shot(page, artifacts_dir / "engine-night.png")
        page.select_option("#engine-weather", "snow")
        snow_kind = page.evaluate("() => window.gaiverseEngine.state.precipitation?.userData.kind")
        page.close()
    assert before != after  # the vehicles moved
    assert drawn["instanced"] == [True, True, True], drawn  # bodies, cabins, people: one draw call per class
    assert drawn["world"]["terrainTiles"] > 1 and drawn["world"]["mergedMeshes"] < drawn["world"]["before"]["meshes"], drawn
    assert merged_ids == glb_ids, (len(merged_ids), len(glb_ids), sorted(glb_ids ^ merged_ids)[:10])
    assert road and road["type"] in ("road", "junction") and road["id"] in glb_ids, road
    assert counts == {"vehicles": len(dyn.vehicles), "pedestrians": len(dyn.pedestrians)}, counts
    assert 0 < drawn_counts["vehicles"] <= counts["vehicles"], drawn_counts  # vehicle 0 is in view
    assert particles > 1000 and snow_kind == "snow"
    assert night.mean() < 0.6 * clear.mean(), (night.mean(), clear.mean())  # night is dark
    assert np.abs(rain - clear).mean() > 5.0  # rain greys the sky, dims the sun and falls
    assert not problems, problems
