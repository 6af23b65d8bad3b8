"""Engine benchmark (issue 5, ENV-d2): frame times of the web engine in headless chromium and simulation time.

A 1 km² world (shipped layout checkpoints) with 200 vehicles and 500 pedestrians is simulated in Python
(timed), exported (.glb sizes), then drawn by the real web engine (`gaiverse/web/viewer.js` + `engine.js`,
served statically) on a 1280x720 canvas in headless chromium on the software renderer (SwiftShader).
Frame times come from requestAnimationFrame timestamps. Baseline in the same run: the same world
and view with every agent hidden (weather and world only). Usage:
    python benchmarks/engine.py [--quick] [--seconds 10]
--quick uses a 512 m world.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks.report import Report  # noqa: E402

ROOT = _HERE.parent
ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script type="importmap">{"imports": {"three": "/vendor/three/build/three.module.js", "three/addons/": "/vendor/three/jsm/"}}</script>
<style>body { margin: 0 } canvas { width: 1280px; height: 720px; display: block }</style></head>
<body><canvas id="view"></canvas><script type="module">
import { createViewer } from '/web/viewer.js';
import { createEngine } from '/web/engine.js';
const viewer = createViewer(document.getElementById('view'));
const engine = createEngine(viewer);
window.engine = engine;
const world = await viewer.load('/bench/world.glb');
engine.attach(world.scene, await viewer.fetchGltf('/bench/dynamics.glb'));
const query = new URLSearchParams(location.search);
const share = Number(query.get('agents') ?? 1);
engine.set({ weather: query.get('weather') || 'clear', hour: 12, traffic: share, pedestrians: share });
window.ready = true;
</script></body></html>"""


def build(size_m: float, report: Report) -> tuple[bytes, bytes]:
    """World .glb and dynamics .glb; simulation and export timed."""
    from gaiverse.world.assemble import assemble_world
    from gaiverse.world.dynamics.export import dynamics_glb
    from gaiverse.world.dynamics.simulate import DynamicsConfig, scene_dynamics
    from gaiverse.world.layout import LayoutGenerator, LayoutGeneratorConfig
    from gaiverse.world.suggestions import parse_suggestion

    controls = parse_suggestion("a flat town with a dense centre")
    controls.size_m = (size_m, size_m)
    layout = LayoutGenerator.from_checkpoint(None, LayoutGeneratorConfig(ddim_steps=4)).generate(controls, seed=1)
    scene = assemble_world(layout, buildings=[])
    started = time.perf_counter()
    dyn = scene_dynamics(scene, DynamicsConfig(seed=1))
    sim_s = time.perf_counter() - started
    simulated = dyn.config.duration_s + dyn.config.warmup_s
    report.add(f"simulation: {len(dyn.vehicles)} vehicles + {len(dyn.pedestrians)} people, {simulated:.0f} s at "
               f"dt {dyn.config.dt_s} s, wall", [sim_s], unit="s", scale=1, lane_km=dyn.stats["lane_km"],
               real_time_factor=round(simulated / sim_s, 2))
    started = time.perf_counter()
    glb = dynamics_glb(dyn)
    report.add("export of the animated .glb", [time.perf_counter() - started], unit="ms")
    report.add("dynamics .glb size", [len(glb)], unit="MB", scale=1e-6)
    report.meta["agents"] = {"vehicles": len(dyn.vehicles), "pedestrians": len(dyn.pedestrians),
                             "requested": [200, 500], "world_m": size_m}
    return scene.glb_bytes(), glb


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def frame_times(browser, url: str, seconds: float) -> list[float]:
    """requestAnimationFrame intervals (ms) over `seconds` after the page is ready and warmed up."""
    page = browser.new_page(viewport={"width": 1280, "height": 720}, device_scale_factor=1)
    page.goto(url)
    page.wait_for_function("() => window.ready === true", timeout=600_000)
    page.evaluate("() => window.engine.focus(0, 60)")
    page.wait_for_timeout(2000)
    page.evaluate("() => { window.engine.state.frameTimes.length = 0; }")
    page.wait_for_timeout(int(seconds * 1000))
    times = page.evaluate("() => window.engine.state.frameTimes.slice()")
    page.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    report = Report("engine", "numpy", "scipy", "playwright")
    world, dynamics = build(512.0 if args.quick else 1000.0, report)
    report.add("world .glb size", [len(world)], unit="MB", scale=1e-6)
    site = Path(tempfile.mkdtemp(prefix="gaiverse-engine-bench-"))
    try:
        (site / "web").symlink_to(ROOT / "gaiverse" / "web")
        (site / "vendor" / "three").mkdir(parents=True)
        (site / "vendor" / "three" / "build").symlink_to(ROOT / "node_modules" / "three" / "build")
        (site / "vendor" / "three" / "jsm").symlink_to(ROOT / "node_modules" / "three" / "examples" / "jsm")
        (site / "bench").mkdir()
        (site / "bench" / "world.glb").write_bytes(world)
        (site / "bench" / "dynamics.glb").write_bytes(dynamics)
        (site / "bench" / "index.html").write_text(PAGE)
        server, base = serve(site)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            static = frame_times(browser, f"{base}/bench/index.html?agents=0", args.seconds)
            for weather in ("clear", "rain"):
                times = frame_times(browser, f"{base}/bench/index.html?weather={weather}", args.seconds)
                report.add(f"engine frame time, 200 vehicles + 500 people, {weather}, 1280x720 (SwiftShader)", times,
                           unit="ms", scale=1, goal="<= 33.3 ms (>= 30 fps)", baseline=static,
                           baseline_name="same view, agents hidden", fps=round(1000 / max(sorted(times)[len(times) // 2], 1e-9), 1))
            browser.close()
        server.shutdown()
    finally:
        shutil.rmtree(site, ignore_errors=True)
    report.finish()


if __name__ == "__main__":
    main()
