"""A generated character in the web terminal's three.js viewer (gaiverse/web/viewer.js) in headless chromium.

The page is served from a temporary directory on loopback (viewer.js, three.js from node_modules,
the .glb); the test waits for the viewer to load the model, plays the 'wave' clip and a smile
through three.js's AnimationMixer and morphTargetDictionary (what the live dialogue page does),
and checks the canvas shows a figure taller than wide. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gaiverse.character import BodyParams, build_character
from gaiverse.config import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

from tests.browser import HEADLESS, WEBGL, chromium
ARGS = [*HEADLESS, *WEBGL]
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script type="importmap">{"imports": {"three": "/three/build/three.module.js", "three/addons/": "/three/examples/jsm/"}}</script>
<style>body{margin:0;background:#000} canvas{width:640px;height:720px;display:block}</style></head>
<body><canvas id="viewer"></canvas><script type="module">
import * as THREE from 'three';
import { createViewer } from '/web/viewer.js';
const canvas = document.getElementById('viewer');
const viewer = createViewer(canvas, { background: 0xffffff });
viewer.scene.children.filter((c) => c.type === 'GridHelper').forEach((g) => { g.visible = false; });
const gltf = await viewer.load('/npc.glb');
let head = null;
gltf.scene.traverse((o) => { if (o.morphTargetDictionary && 'jawOpen' in o.morphTargetDictionary) head = o; });
window.facts = { clips: gltf.animations.map((a) => a.name), morphs: head ? Object.keys(head.morphTargetDictionary).length : 0,
                 skinned: (() => { let n = 0; gltf.scene.traverse((o) => { if (o.isSkinnedMesh) n++; }); return n; })() };
window.pose = (clip, t, smile) => {
  const mixer = new THREE.AnimationMixer(gltf.scene);
  const action = mixer.clipAction(THREE.AnimationClip.findByName(gltf.animations, clip));
  action.play(); mixer.setTime(t);
  for (const [k, v] of Object.entries(smile)) head.morphTargetInfluences[head.morphTargetDictionary[k]] = v;
};
</script></body></html>"""
FIGURE_BOX = """() => {
  const src = document.getElementById('viewer'); const c = document.createElement('canvas');
  c.width = src.width; c.height = src.height; const ctx = c.getContext('2d'); ctx.drawImage(src, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data; let x0 = 1e9, x1 = -1, y0 = 1e9, y1 = -1, n = 0;
  for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
    const i = 4 * (y * c.width + x); if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) {
      n++; x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); } }
  return { n, w: x1 - x0, h: y1 - y0, total: c.width * c.height };
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    (root / "web").symlink_to(REPO_ROOT / "gaiverse" / "web")
    (root / "three").symlink_to(REPO_ROOT / "node_modules" / "three")
    (root / "index.html").write_text(PAGE)
    glb = build_character(BodyParams(hair_style="bun", top_rgb=(0.6, 0.2, 0.2))).glb("viewer-test")
    (root / "npc.glb").write_bytes(glb)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_character_loads_and_animates_in_the_web_viewer(site, artifacts_dir):
    with chromium(ARGS) as browser:
        page = browser.new_page(viewport={"width": 640, "height": 720})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(site + "/index.html")
        page.wait_for_function("document.getElementById('viewer').dataset.state === 'loaded' && window.facts",
                               timeout=60_000)
        facts = page.evaluate("window.facts")
        assert facts["skinned"] >= 2 and facts["morphs"] == 67 and "wave" in facts["clips"], facts
        page.wait_for_timeout(500)
        rest = page.evaluate(FIGURE_BOX)
        page.screenshot(path=str(artifacts_dir / "character-viewer-rest.png"))
        page.evaluate("window.pose('wave', 0.6, {mouthSmileLeft: 1, mouthSmileRight: 1})")
        page.wait_for_timeout(500)
        waving = page.evaluate(FIGURE_BOX)
        page.screenshot(path=str(artifacts_dir / "character-viewer-wave.png"))
        browser.close()
    assert not errors, errors
    assert rest["n"] > 0.03 * rest["total"] and rest["h"] > 1.5 * rest["w"], rest  # a standing figure
    assert waving["h"] > rest["h"] + 10, (rest, waving)  # the raised hand makes the figure taller
