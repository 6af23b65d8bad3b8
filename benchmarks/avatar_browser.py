"""Benchmark of the live avatar in the browser: frames per second and JS lip-sync inference per 20 ms chunk.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.avatar_browser [--seconds 10]`` (about 40 s). Headless
Debian chromium (WebGL on SwiftShader: a CPU rasteriser, so these are the numbers of a machine without a
GPU) loads gaiverse/web/avatar_player.js on a character .glb and plays its voice with the "talk" clip;
requestAnimationFrame intervals over ``--seconds`` give the frame time (median, p95) and fps. Baseline
in the same run: the same .glb in the plain viewer (viewer.js: no mixer, no morphs). The in-browser
lip-sync (lipsync.js) streams 10 s of a real GRID soundtrack in 20 ms chunks; baseline: Python's
``LipsyncStreamer`` on the same chunks.

``serve_player`` and ``PLAYER_PAGE`` are also used by tests/api/test_avatar_player_browser.py;
``measure`` is what benchmarks/avatar.py calls (returns the rows as a dict).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required",
                 "--disable-renderer-backgrounding", "--disable-background-timer-throttling"]
CHUNK = 320
CHROMIUM = "/usr/bin/chromium"

PLAYER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>avatar player</title><link rel="icon" href="data:,">
<script type="importmap">
{"imports": {"three": "/vendor/three/build/three.module.js", "three/addons/": "/vendor/three/jsm/"}}
</script>
<style>body { margin: 0; background: #0c0f14; } #player { width: 100vw; height: 100vh; }</style>
</head><body>
<div id="player"></div>
<script type="module">
import { mountAvatarPlayer } from '/web/avatar_player.js';
import { createViewer } from '/web/viewer.js';
import { loadLipsync } from '/web/lipsync.js';
window.loadLipsync = loadLipsync;
const params = new URLSearchParams(location.search);
const element = document.getElementById('player');
try {
  if (params.get('viewer') === 'plain') {
    const canvas = document.createElement('canvas');
    canvas.style.width = '100%'; canvas.style.height = '100%';
    element.append(canvas);
    const viewer = createViewer(canvas);
    await viewer.load('/player/avatar.glb');
    const frameMs = [];
    let last = performance.now();
    const loop = (now) => { frameMs.push(now - last); last = now; if (frameMs.length > 600) frameMs.shift(); };
    viewer.renderer.setAnimationLoop((now) => { loop(now); viewer.controls.update(); viewer.renderer.render(viewer.scene, viewer.camera); });
    window.avatarPlayerStats = { frameMs };
  } else {
    window.player = await mountAvatarPlayer(element, { glbUrl: `/player/${params.get('glb') || 'avatar.glb'}`,
      audioUrl: params.get('audio') === 'none' ? null : '/player/voice.wav', framing: params.get('framing') || 'head' });
  }
  document.body.dataset.ready = 'true';
} catch (err) {
  document.body.dataset.ready = 'error';
  document.body.dataset.error = String(err && err.stack || err);
}
</script></body></html>
"""


@contextmanager
def serve_player(files: dict[str, bytes]) -> Iterator[str]:
    """Base URL of a local server with the web terminal's static files (/web, /vendor/three) and
    ``files`` under /player/ (plus /player/index.html, the page above). No API services are needed.

    Files are served from a temporary folder by StaticFiles, which answers Range requests: an <audio>
    element can only seek in media served that way."""
    import tempfile

    import uvicorn
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from gaiverse.api.web import mount_web
    from gaiverse.proc import free_port, wait_until

    with tempfile.TemporaryDirectory(prefix="gaiverse-player-") as tmp:
        for name, data in {**files, "index.html": PLAYER_PAGE.encode()}.items():
            (Path(tmp) / name).write_bytes(data)
        app = FastAPI()
        app.mount("/player", StaticFiles(directory=tmp), name="player")
        status = mount_web(app)
        if status != "ok":
            raise RuntimeError(status)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: server.started, 30, "player test server")
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)


def grid_audio(seconds: float = 10.0) -> np.ndarray:
    """``seconds`` of real speech at 16 kHz: the GRID soundtracks shipped for lip-sync training, joined."""
    from gaiverse.avatar.lipsync_targets import load_targets
    from gaiverse.avatar.lipsync_training import DEFAULT_TARGETS

    audio = np.concatenate([clip.audio for clip in load_targets(DEFAULT_TARGETS)]).astype(np.float32)
    return np.resize(audio, int(seconds * 16_000))


def frame_times(page, seconds: float) -> list[float]:
    """requestAnimationFrame intervals (ms) the page records over ``seconds`` (after a 1 s warm-up)."""
    page.wait_for_timeout(1000)
    page.evaluate("window.avatarPlayerStats.frameMs.length = 0")
    samples: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # the page keeps the last 600 intervals: collect them in slices
        page.wait_for_timeout(min(2000, max(1, int((end - time.monotonic()) * 1000))))
        samples += page.evaluate("window.avatarPlayerStats.frameMs.splice(0)")
    return samples


def js_inference(page, audio: np.ndarray) -> list[float]:
    """Milliseconds per 20 ms push of the JS streamer over ``audio``, measured in the page."""
    return page.evaluate("""async (samples) => {
        const model = await window.loadLipsync();
        const streamer = model.streamer();
        const data = Float32Array.from(samples);
        for (let i = 0; i + 320 <= data.length; i += 320) streamer.push(data.subarray(i, i + 320));
        return streamer.computeMs;
    }""", audio.tolist())


def python_inference(audio: np.ndarray) -> list[float]:
    from gaiverse.avatar.lipsync_model import LipsyncModel, LipsyncStreamer

    streamer = LipsyncStreamer(LipsyncModel.load())
    for i in range(0, audio.size - CHUNK + 1, CHUNK):
        streamer.push(audio[i:i + CHUNK])
    return [s * 1000 for s in streamer.compute_s]


def avatar_files(glb: bytes | None = None, voice_wav: bytes | None = None) -> dict[str, bytes]:
    """The .glb and voice to play: given, or the default character speaking 6 s of GRID audio."""
    from gaiverse.speech.wav import float_to_pcm16, pcm16_wav

    if glb is None:
        from gaiverse.character import build_character

        glb = build_character().glb("avatar")
    if voice_wav is None:
        voice_wav = pcm16_wav(float_to_pcm16(grid_audio(6.0)), 16_000)
    return {"avatar.glb": glb, "voice.wav": voice_wav}


def measure(glb: bytes | None = None, voice_wav: bytes | None = None, seconds: float = 10.0,
            viewport: tuple[int, int] = (960, 720)) -> dict[str, Any]:
    """Browser fps of the avatar player (and the plain viewer baseline) and JS vs Python lip-sync timing.

    Returns {"player_frame_ms": [...], "viewer_frame_ms": [...], "js_lipsync_ms": [...],
    "python_lipsync_ms": [...], "summary": {...}} (raw samples in ms plus medians/p95 and fps).
    """
    from playwright.sync_api import sync_playwright

    files = avatar_files(glb, voice_wav)
    audio = grid_audio(10.0)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            with serve_player(files) as base:
                page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
                open_page(page, base + "/player/index.html?viewer=plain")
                viewer_ms = frame_times(page, seconds)
                open_page(page, base + "/player/index.html")
                page.evaluate("async () => { await window.player.play(); window.player.audio.loop = true; }")
                player_ms = frame_times(page, seconds)
                renderer = page.evaluate(WEBGL_RENDERER)
                js_ms = js_inference(page, audio)
        finally:
            browser.close()
    py_ms = python_inference(audio)
    return {"player_frame_ms": player_ms, "viewer_frame_ms": viewer_ms, "js_lipsync_ms": js_ms,
            "python_lipsync_ms": py_ms, "summary": {**summary(player_ms, viewer_ms, js_ms, py_ms),
                                                    "webgl_renderer": renderer, "viewport": list(viewport)}}


WEBGL_RENDERER = """() => {
    const gl = (window.player ? window.player.viewer.renderer : null)?.getContext();
    const info = gl && gl.getExtension('WEBGL_debug_renderer_info');
    return info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : 'unknown';
}"""


def open_page(page, url: str) -> None:
    """Load the player page and wait until it mounted (RuntimeError with the page's error otherwise)."""
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=120_000)
    if page.get_attribute("body", "data-ready") != "true":
        raise RuntimeError(f"player page failed: {page.get_attribute('body', 'data-error')}")


def main() -> None:
    parser = argparse.ArgumentParser(description="avatar player fps and JS lip-sync in headless chromium")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of rAF timing per scene")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 120:
        parser.error(f"--seconds must be 1..120, got {args.seconds}")
    from benchmarks.report import Report

    report = Report("avatar_browser", "playwright", "numpy", "torch", "moderngl")
    result = measure(seconds=args.seconds)
    add_rows(report, result)
    add_offscreen_rows(report, measure_offscreen())
    report.finish()


def measure_offscreen(glb: bytes | None = None, repeats: int = 12) -> dict[str, list[float]]:
    """Seconds per server-side preview frame (EGL, 512x512, with and without 4x MSAA), per turntable PNG
    sheet and per 4 s turntable MP4; baseline: the character's PIL painter's-algorithm preview per view."""
    from gaiverse.avatar import render
    from gaiverse.character import build_character
    from gaiverse.character.gltf_writer import material_colours
    from gaiverse.character.preview import render_views as pil_views

    character = build_character()
    glb = glb or character.glb("avatar")
    scene = render.GlbScene.from_glb(glb)
    out: dict[str, list[float]] = {"msaa": [], "plain": [], "pose": [], "pil": [], "png": [], "mp4": []}
    for antialias, key in ((True, "msaa"), (False, "plain")):
        r = render.renderer((512, 512), antialias)
        posed = scene.pose()
        camera = render.Camera.framing(posed, "body", (512, 512))
        r.draw(posed, camera, 0.0)  # warm-up (shader compile)
        for k in range(repeats):
            start = time.perf_counter()
            r.draw(posed, camera, 30.0 * k)
            out[key].append(time.perf_counter() - start)
    for k in range(repeats):
        start = time.perf_counter()
        scene.pose("idle", 0.3 * k)
        out["pose"].append(time.perf_counter() - start)
    positions, faces, materials = character.posed()
    colours = material_colours(character.params)
    rgb = np.asarray([colours[m] for m in materials])
    for k in range(repeats):
        start = time.perf_counter()
        pil_views(positions, faces, rgb, 512, views=(30.0 * k,))
        out["pil"].append(time.perf_counter() - start)
    for _ in range(3):
        start = time.perf_counter()
        render.turntable_png(glb)
        out["png"].append(time.perf_counter() - start)
    start = time.perf_counter()
    render.turntable_mp4(glb, 4.0)
    out["mp4"].append(time.perf_counter() - start)
    return out


def add_offscreen_rows(report, out: dict[str, list[float]]) -> None:
    report.add("EGL frame 512x512, 4x MSAA (draw + read back)", out["msaa"],
               baseline=out["pil"], baseline_name="PIL painter's preview, 1 view")
    report.add("EGL frame 512x512, no MSAA", out["plain"], baseline=out["pil"],
               baseline_name="PIL painter's preview, 1 view")
    report.add("pose a clip frame (skinning + morphs, numpy)", out["pose"])
    report.add("turntable_png (8 views 256x320, MSAA)", out["png"])
    report.add("turntable_mp4 (4 s, 24 fps, 384x512, idle clip)", out["mp4"], goal="part of < 60 s end to end")


def add_rows(report, result: dict[str, Any]) -> None:
    """The browser rows of ``result`` (from ``measure``) on a ``benchmarks.report.Report``."""
    s = result["summary"]
    report.add("browser frame time (avatar player, talking)", [v / 1000 for v in result["player_frame_ms"]],
               goal=">= 30 fps", baseline=[v / 1000 for v in result["viewer_frame_ms"]],
               baseline_name="plain viewer (static glb)", fps_median=s["player_fps"],
               renderer=s["webgl_renderer"])
    report.add("JS lip-sync per 20 ms push (features + net)", [v / 1000 for v in result["js_lipsync_ms"]],
               goal="< 20 ms (real time)", baseline=[v / 1000 for v in result["python_lipsync_ms"]],
               baseline_name="Python LipsyncStreamer")


def summary(player: list[float], viewer: list[float], js: list[float], py: list[float]) -> dict[str, float]:
    from benchmarks.report import percentile

    def fps(ms: list[float]) -> float:
        return round(1000 / statistics.median(ms), 1) if ms else 0.0

    return {"player_fps": fps(player), "viewer_fps": fps(viewer),
            "player_frame_ms_median": round(statistics.median(player), 2) if player else None,
            "player_frame_ms_p95": round(percentile(player, 95), 2) if player else None,
            "js_lipsync_ms_median": round(statistics.median(js), 3),
            "js_lipsync_ms_p95": round(percentile(js, 95), 3),
            "python_lipsync_ms_median": round(statistics.median(py), 3)}


if __name__ == "__main__":
    main()
