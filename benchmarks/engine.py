"""Engine benchmark (issue 5, ENV-d2): frame times of the web engine in headless chromium and simulation time.

A 1 km² world (shipped layout and building checkpoints) with 200 vehicles and 500 pedestrians is simulated in
Python (timed), exported (.glb sizes), then drawn by the real web engine (`gaiverse/web/viewer.js` +
`engine.js` + `world_render.js`, served statically) on a 1280x720 canvas in headless chromium on the software
renderer (SwiftShader). Frame times come from requestAnimationFrame timestamps. Rows, all in one run:
- the engine as shipped (adaptive resolution on) at full load in clear weather, rain and at night, with the
  internal resolution it settled to;
- the same at a fixed full resolution (adaptive off): what the rebuilt world costs without lowering pixels;
- the same view with every agent hidden (baseline: weather and world only);
- the previous rendering path (`createEngine(viewer, { optimise: false, adaptive: false })`, MSAA on: the
  .glb drawn as loaded) at full load, clear, with the ratio new / old;
- the whole world in view (the viewer's framing on load), new path vs previous path.
The street views look at the first vehicle from 60 m.
Usage:
    python benchmarks/engine.py [--quick] [--seconds 10] [--no-buildings]
--quick uses a 512 m world; --no-buildings draws terrain, roads and plants only (the world of earlier runs).
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
const query = new URLSearchParams(location.search);
const legacy = query.get('legacy') === '1';
const viewer = createViewer(document.getElementById('view'), { antialias: legacy ? true : 'auto' });
const engine = createEngine(viewer, legacy ? { optimise: false, adaptive: false } : { adaptive: query.get('adaptive') !== '0' });
window.engine = engine;
const world = await viewer.load('/bench/world.glb');
engine.attach(world.scene, await viewer.fetchGltf('/bench/dynamics.glb'));
const share = Number(query.get('agents') ?? 1);
engine.set({ weather: query.get('weather') || 'clear', hour: Number(query.get('hour') ?? 12), traffic: share, pedestrians: share });
const gl = viewer.renderer.getContext();
const info = gl.getExtension('WEBGL_debug_renderer_info');
window.renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
window.ready = true;
</script></body></html>"""


def build(size_m: float, report: Report, buildings: bool = True) -> tuple[bytes, bytes]:
    """World .glb and dynamics .glb; simulation and export timed."""
    from gaiverse.world.assemble import assemble_world
    from gaiverse.world.dynamics.export import dynamics_glb
    from gaiverse.world.dynamics.simulate import DynamicsConfig, scene_dynamics
    from gaiverse.world.layout import LayoutGenerator, LayoutGeneratorConfig
    from gaiverse.world.suggestions import parse_suggestion

    controls = parse_suggestion("a flat town with a dense centre")
    controls.size_m = (size_m, size_m)
    layout = LayoutGenerator.from_checkpoint(None, LayoutGeneratorConfig(ddim_steps=4)).generate(controls, seed=1)
    scene = assemble_world(layout, buildings=None if buildings else [])  # None: placed by the shipped model
    report.meta["world"] = {"size_m": size_m, "buildings": len(scene.footprints), "triangles": scene.triangles}
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


def frame_times(browser, url: str, seconds: float, street: bool = True) -> tuple[list[float], dict]:
    """requestAnimationFrame intervals (ms) over `seconds` after the page is ready and warmed up (the adaptive
    resolution has settled), and the renderer's state at the end (internal resolution, draw calls).
    street: look at the first vehicle from 60 m (else the whole world, as the viewer frames it on load)."""
    page = browser.new_page(viewport={"width": 1280, "height": 720}, device_scale_factor=1)
    page.goto(url)
    page.wait_for_function("() => window.ready === true", timeout=600_000)
    if street:
        page.evaluate("() => window.engine.focus(0, 60)")
    page.wait_for_timeout(8000)
    page.evaluate("() => { window.engine.state.frameTimes.length = 0; }")
    page.wait_for_timeout(int(seconds * 1000))
    times = page.evaluate("() => window.engine.state.frameTimes.slice()")
    state = page.evaluate("() => ({ ...window.engine.renderStats(), renderer: window.renderer })")
    page.close()
    return times, state


def fps(times: list[float]) -> float:
    return round(1000 / max(sorted(times)[len(times) // 2], 1e-9), 1)


def drawn(state: dict) -> dict:
    """The row extras that say what was drawn: internal resolution, scale, draw calls, triangles."""
    return {"internal_resolution": f"{state['width']}x{state['height']}", "resolution_scale": state["scale"],
            "draw_calls": state["calls"], "triangles": state["triangles"]}


def measure(browser, base: str, seconds: float, report: Report) -> None:
    page = f"{base}/bench/index.html"
    goal = "<= 33.3 ms (>= 30 fps)"
    load = "200 vehicles + 500 people"
    static, static_state = frame_times(browser, f"{page}?agents=0", seconds)
    legacy, legacy_state = frame_times(browser, f"{page}?legacy=1", seconds)
    report.meta["renderer"] = legacy_state["renderer"]
    report.meta["world_render"] = static_state["world"]
    for weather, hour in (("clear", 12), ("rain", 12), ("clear", 23)):
        label = "night" if hour == 23 else weather
        times, state = frame_times(browser, f"{page}?weather={weather}&hour={hour}", seconds)
        report.add(f"engine frame time, {load}, {label}, 1280x720 canvas, adaptive resolution", times, unit="ms",
                   scale=1, goal=goal, baseline=static, baseline_name="same view, agents hidden", fps=fps(times),
                   **drawn(state))
        if label == "clear":
            report.add(f"engine frame time, {load}, clear (as above) vs the previous rendering path", times, unit="ms",
                       scale=1, goal=goal, baseline=legacy, baseline_name="previous path (MSAA, .glb as loaded)",
                       fps=fps(times), previous_fps=fps(legacy), previous=drawn(legacy_state))
    fixed, fixed_state = frame_times(browser, f"{page}?adaptive=0", seconds)
    report.add(f"engine frame time, {load}, clear, fixed full resolution (adaptive off)", fixed, unit="ms", scale=1,
               goal=goal, baseline=legacy, baseline_name="previous path", fps=fps(fixed), **drawn(fixed_state))
    report.add(f"previous rendering path, {load}, clear (MSAA, .glb as loaded)", legacy, unit="ms", scale=1,
               fps=fps(legacy), **drawn(legacy_state))
    report.add("same view, agents hidden (adaptive resolution)", static, unit="ms", scale=1, fps=fps(static),
               **drawn(static_state))
    whole_old, whole_old_state = frame_times(browser, f"{page}?legacy=1", seconds, street=False)
    whole, whole_state = frame_times(browser, page, seconds, street=False)
    report.add(f"whole world in view (as framed on load), {load}, clear, adaptive resolution", whole, unit="ms",
               scale=1, goal=goal, baseline=whole_old, baseline_name="previous path, same view", fps=fps(whole),
               previous_fps=fps(whole_old), previous=drawn(whole_old_state), **drawn(whole_state))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-buildings", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    report = Report("engine", "numpy", "scipy", "playwright")
    world, dynamics = build(512.0 if args.quick else 1000.0, report, buildings=not args.no_buildings)
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
            measure(browser, base, args.seconds, report)
            browser.close()
        server.shutdown()
    finally:
        shutil.rmtree(site, ignore_errors=True)
    report.finish()
    for row in report.rows:
        if "internal_resolution" in row.extra:
            print(f"{row.measure}: {row.extra['fps']} fps, internal resolution {row.extra['internal_resolution']} "
                  f"(scale {row.extra['resolution_scale']}), {row.extra['draw_calls']} draw calls, {row.extra['triangles']} triangles")
    print(f"renderer: {report.meta.get('renderer')}; world: {report.meta.get('world')}; "
          f"rebuilt for drawing: {report.meta.get('world_render')}")


if __name__ == "__main__":
    main()
