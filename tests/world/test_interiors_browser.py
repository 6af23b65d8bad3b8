"""Window interiors in the web terminal's viewer (headless chromium): a world whose windows show NeRF rooms
through gaiverse/web/interior_material.js, seen from two camera positions.

The page loads the furnished world's .glb with viewer.js, swaps the window materials for the interior shader
(depth maps fetched beside the .glb, as world.js does) and frames one window from 35 degrees left and right
at the same distance. Both screenshots are sampled in the window's own plane coordinates (a grid of points
on the quad, projected with each camera): a flat texture would give the same colours in both, a room with
depth does not. The wall ring around the window (same plane) is the control. The baked fallback (the
.glb's own texture, no shader) is measured the same way and must stay flat. Screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from gaiverse.config import REPO_ROOT
from gaiverse.interiors.windows import check_windows, furnish_scene
from gaiverse.world import world_build
from tests.browser import HEADLESS, WEBGL, chromium
from tests.interiors.rooms import nerf_room_library
from tests.world._world_fixtures import small_state

pytestmark = [pytest.mark.slow, pytest.mark.clause("ENV-c3")]

ARGS = [*HEADLESS, *WEBGL]
PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script type="importmap">{"imports": {"three": "/three/build/three.module.js", "three/addons/": "/three/examples/jsm/"}}</script>
<style>body{margin:0;background:#000} canvas{width:640px;height:480px;display:block}</style></head>
<body><canvas id="view"></canvas><script type="module">
import * as THREE from 'three';
import { createViewer } from '/web/viewer.js';
import { applyInteriors } from '/web/interior_material.js';
import { createEngine } from '/web/engine.js';
const canvas = document.getElementById('view');
const viewer = createViewer(canvas);
viewer.controls.enabled = false;
viewer.controls.enableDamping = false;
const gltf = await viewer.load('/world/world.glb');
const shader = new URLSearchParams(location.search).get('shader') !== '0';
if (shader) await applyInteriors(gltf.scene, (path) => '/world/' + path);
gltf.scene.updateMatrixWorld(true);
// the first window quad of the first building: corners from its UVs (glTF: v down the image)
let win = null;
gltf.scene.traverse((o) => { if (!win && o.isMesh && o.userData.interior) win = o; });
const pos = win.geometry.getAttribute('position'), uv = win.geometry.getAttribute('uv');
const corner = {};
for (let i = 0; i < 4; i++) corner[`${Math.round(uv.getX(i))}${Math.round(uv.getY(i))}`] =
  new THREE.Vector3().fromBufferAttribute(pos, i).applyMatrix4(win.matrixWorld);
const P00 = corner['00'], U = corner['10'].clone().sub(P00), V = corner['01'].clone().sub(P00);
const centre = P00.clone().addScaledVector(U, 0.5).addScaledVector(V, 0.5);
let normal = U.clone().cross(V).normalize();
const inside = new THREE.Vector3(); new THREE.Box3().setFromObject(gltf.scene.getObjectByName(win.name.replace('windows', 'walls')) || win).getCenter(inside);
if (normal.dot(centre.clone().sub(inside)) < 0) normal.negate();
const at = (u, v) => P00.clone().addScaledVector(U, u).addScaledVector(V, v);
window.facts = { material: win.material.type, interiors: gltf.scene.userData.interiors || null,
                 width_m: U.length(), height_m: V.length() };
if (new URLSearchParams(location.search).get('engine') === '1') {  // the world as the engine draws it: merged per tile
  const engine = createEngine(viewer, { adaptive: false });
  engine.set({ weather: 'clear', hour: 12 });
  engine.prepare(gltf.scene);
  viewer.renderer.render(viewer.scene, viewer.camera);
  window.facts.world = engine.state.world.stats;
  window.facts.windowMaterial = () => engine.state.root.children.find((m) => m.userData.pieces?.some((p) => p.info.name === win.name))?.material.type;
}
window.look = (degrees, distance) => {
  const side = U.clone().normalize();
  const a = THREE.MathUtils.degToRad(degrees);
  const eye = centre.clone().addScaledVector(normal, distance * Math.cos(a)).addScaledVector(side, distance * Math.sin(a));
  viewer.camera.position.copy(eye);
  viewer.camera.near = 0.05; viewer.camera.far = 5000; viewer.camera.fov = 40;
  viewer.camera.updateProjectionMatrix();
  viewer.controls.target.copy(centre);
  viewer.camera.lookAt(centre);
  viewer.renderer.render(viewer.scene, viewer.camera);
};
// colours at plane points (u, v) of the window (inside: 0..1) as seen by the current camera
window.sample = (points) => {
  const gl = viewer.renderer.getContext();
  const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
  const pixels = new Uint8Array(w * h * 4);
  viewer.renderer.render(viewer.scene, viewer.camera);
  gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, pixels);
  return points.map(([u, v]) => {
    const p = at(u, v).project(viewer.camera);
    const x = Math.round((p.x + 1) / 2 * (w - 1)), y = Math.round((p.y + 1) / 2 * (h - 1));
    if (x < 0 || y < 0 || x >= w || y >= h) return null;
    const i = 4 * (y * w + x);
    return [pixels[i], pixels[i + 1], pixels[i + 2]];
  });
};
window.ready = true;
</script></body></html>"""

INSIDE = [(u, v) for u in np.linspace(0.08, 0.92, 15) for v in np.linspace(0.08, 0.92, 15)]
RING = [(u, v) for u in np.linspace(-0.35, 1.35, 18) for v in np.linspace(-0.3, 1.3, 17)
        if not (-0.12 < u < 1.12 and -0.12 < v < 1.12)]
VIEWS = (-35.0, 35.0)
DISTANCE_M = 4.0


@pytest.fixture(scope="module")
def interior_library():
    return nerf_room_library()


@pytest.fixture(scope="module")
def furnished_world(tmp_path_factory, interior_library):
    """The small test world rendered as the world flow does, with its windows furnished from the NeRF library."""
    scene = world_build.render(small_state())
    stats = furnish_scene(scene, interior_library)
    out = tmp_path_factory.mktemp("world")
    scene.write(out)
    return scene, stats, out


@pytest.fixture(scope="module")
def site(furnished_world, tmp_path_factory):
    _, _, world_dir = furnished_world
    root = tmp_path_factory.mktemp("interiors-site")
    (root / "web").symlink_to(REPO_ROOT / "gaiverse" / "web")
    (root / "three").symlink_to(REPO_ROOT / "node_modules" / "three")
    (root / "world").symlink_to(world_dir)
    (root / "index.html").write_text(PAGE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102 - keep the test output to the measurements
        pass


def _views(browser, url: str, artifacts_dir, tag: str) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    page = browser.new_page(viewport={"width": 640, "height": 480})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    page.wait_for_function("window.ready === true", timeout=90_000)
    facts = page.evaluate("({ ...window.facts, windowMaterial: undefined })")
    inside, ring = [], []
    for k, degrees in enumerate(VIEWS):
        page.evaluate(f"window.look({degrees}, {DISTANCE_M})")
        facts[f"material_view{k + 1}"] = page.evaluate("window.facts.windowMaterial?.()")
        inside.append(page.evaluate("(p) => window.sample(p)", INSIDE))
        ring.append(page.evaluate("(p) => window.sample(p)", RING))
        page.screenshot(path=str(artifacts_dir / f"interiors-{tag}-view{k + 1}.png"))
    page.evaluate("window.look(0, 300)")  # a few pixels wide from 300 m: the baked room is enough
    facts["material_far"] = page.evaluate("window.facts.windowMaterial?.()")
    page.close()
    assert not errors, errors
    return facts, inside, ring


def _mean_difference(a: list, b: list) -> float:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    assert len(pairs) > 0.8 * len(a), f"only {len(pairs)} of {len(a)} sample points on screen in both views"
    return float(np.mean([np.abs(np.subtract(x, y, dtype=float)).mean() for x, y in pairs]))


def test_windows_show_rooms_with_parallax(site, furnished_world, artifacts_dir):
    scene, stats, world_dir = furnished_world
    assert check_windows(scene.glb_bytes(), scene.assets)["ok"]
    assert all((world_dir / path).is_file() for path in scene.assets)
    with chromium(ARGS) as browser:
        facts, inside, ring = _views(browser, site + "/index.html", artifacts_dir, "shader")
        _, baked_inside, baked_ring = _views(browser, site + "/index.html?shader=0", artifacts_dir, "baked")
    assert facts["material"] == "ShaderMaterial" and facts["interiors"]["switched"] >= 2, facts
    parallax = _mean_difference(*inside)
    wall = _mean_difference(*ring)
    baked = _mean_difference(*baked_inside)
    print(f"window interior difference between views: shader {parallax:.1f}, wall ring {wall:.1f}, "
          f"baked texture {baked:.1f} (0-255 per channel)")
    assert parallax > 2.0 * wall + 3.0, (parallax, wall)
    assert parallax > 2.0 * baked + 3.0, (parallax, baked)
    assert stats["windows"] > 0 and stats["room_views_used"] >= 1


def test_windows_keep_their_parallax_in_the_engines_merged_world(site, artifacts_dir):
    """engine.prepare merges walls and windows per tile (world_render.js); a near window keeps the room shader."""
    with chromium(ARGS) as browser:
        facts, inside, ring = _views(browser, site + "/index.html?engine=1", artifacts_dir, "engine")
    assert facts["world"]["windowMeshes"] >= 1, facts
    assert facts["material_view1"] == facts["material_view2"] == "ShaderMaterial", facts
    assert facts["material_far"] == "MeshBasicMaterial", facts
    parallax, wall = _mean_difference(*inside), _mean_difference(*ring)
    print(f"merged world: window interior difference between views {parallax:.1f}, wall ring {wall:.1f}")
    assert parallax > 2.0 * wall + 3.0, (parallax, wall)
