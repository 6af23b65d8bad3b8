"""The live avatar player (gaiverse/web/avatar_player.js) and the in-browser lip-sync in headless chromium.

The page is served with the web terminal's own static mounts (``gaiverse.api.web.mount_web``: /web and
/vendor/three) by ``benchmarks.avatar_browser.serve_player`` — the player needs no API service. Audio is a
real GRID talker; the fake microphone plays the same soundtrack. Checked:

* parity: the JS lip-sync (lipsync.js + /web/lipsync_model.json) gives the Python model's output on the
  same samples, batch and streaming in 20 ms chunks;
* voice: the glb's "talk" clip (gaiverse.avatar.animation.talk_clip) follows audio.currentTime, so the face weight at every sampled moment is the
  clip's value at the audio's time;
* microphone: the network runs live on 16 kHz microphone audio and opens the mouth with the speech, its
  outputs tracking the Python model's on the same recording.
Screenshots: tests/artifacts/avatar-player-*.png.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from benchmarks.avatar_browser import CHROMIUM_ARGS, open_page, serve_player
from gaiverse.avatar.lipsync_model import LipsyncModel
from gaiverse.avatar.lipsync_targets import load_targets
from gaiverse.avatar.lipsync_training import DEFAULT_TARGETS
from gaiverse.character import build_character
from gaiverse.config import REPO_ROOT
from gaiverse.speech.wav import float_to_pcm16, pcm16_wav
from tests.browser import chromium

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium, pytest.mark.clause("AV-c1")]

CLIP = REPO_ROOT / "data" / "avatar" / "grid" / "bbaf2n.mpg"


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    """The first GRID talker (3 s), 16 kHz float32."""
    return load_targets(DEFAULT_TARGETS)[0].audio[:48_000].astype(np.float32)


@pytest.fixture(scope="module")
def model() -> LipsyncModel:
    return LipsyncModel.load()


@pytest.fixture(scope="module")
def talking_glb(voice) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The character with the animation engine's "talk" clip for ``voice`` (lip-sync mouth, nods, blinks).

    Returns (glb, key times, jawOpen keys) so the test knows the face weight at any time of the audio."""
    from gaiverse.avatar.animation import talk_clip

    character = build_character()
    clip = talk_clip(voice, 16_000)
    character.clips.append(clip)
    times = np.asarray([t for t, _ in clip.morph_keys])
    jaw = np.asarray([w.get("jawOpen", 0.0) for _, w in clip.morph_keys])
    return character.glb("avatar"), times, jaw


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake-mic") / "microphone.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(CLIP), "-ac", "1", "-ar", "48000",
                    "-c:a", "pcm_s16le", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def page(microphone_wav, talking_glb, voice):
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone_wav}"]
    files = {"avatar.glb": talking_glb[0], "voice.wav": pcm16_wav(float_to_pcm16(voice), 16_000),
             "no-talk-clip.glb": build_character().glb("npc")}
    with chromium(args) as browser, serve_player(files) as base:
        context = browser.new_context(viewport={"width": 720, "height": 540})
        context.grant_permissions(["microphone"], origin=base)
        tab = context.new_page()
        problems: list[str] = []
        tab.on("pageerror", lambda err: problems.append(str(err)))
        open_page(tab, base + "/player/index.html")
        tab.base_url = base
        yield tab
        context.close()
        assert not problems, problems


def test_js_lipsync_gives_the_python_models_output(page, voice, model):
    """Same samples in, same mouth out: features, network and blendshape mapping all match."""
    js = page.evaluate("""async (samples) => {
        const model = await window.loadLipsync();
        const data = Float32Array.from(samples);
        const batch = model.predict(data);
        const streamer = model.streamer();
        for (let i = 0; i < data.length; i += 320) streamer.push(data.subarray(i, i + 320));
        streamer.flush();
        return {batch, stream: streamer.outputs, weights: batch.map((m) => Object.values(model.weightsByName(m))),
                parameters: model.spec.parameters};
    }""", voice.tolist())
    expected = model.predict(voice)
    batch, stream = np.asarray(js["batch"]), np.asarray(js["stream"])
    assert batch.shape == expected.shape and len(batch) == len(voice) // 160 > 250
    print(f"\nJS vs Python lip-sync: max |diff| {np.abs(batch - expected).max():.2e} (measures), "
          f"{np.abs(np.asarray(js['weights']) - model.predict_blendshapes(voice)).max():.2e} (blendshapes)")
    assert np.abs(batch - expected).max() < 1e-4
    assert np.abs(stream - expected).max() < 1e-4  # live (20 ms chunks) equals batch, as in Python
    assert np.abs(np.asarray(js["weights"]) - model.predict_blendshapes(voice)).max() < 1e-4
    assert js["parameters"] == model.n_parameters()
    assert expected[:, 0].std() > 0.01  # real speech: the mouth does move


def test_voice_plays_with_the_talk_clip_in_sync(page, talking_glb, artifacts_dir):
    _, times, jaw = talking_glb
    stats = page.evaluate("window.avatarPlayerStats")
    assert "talk" in stats["clips"] and stats["morphTargets"] >= 60
    page.screenshot(path=str(artifacts_dir / "avatar-player-idle.png"))
    page.evaluate("window.player.play()")
    # paused and sought to the widest-open moment: the face shows the clip's weight at that audio time
    widest = float(times[np.argmax(jaw)])
    page.evaluate(f"window.player.audio.pause(); window.player.audio.currentTime = {widest}")
    page.wait_for_function(f"Math.abs(avatarPlayerStats.talkTime - {widest}) < 0.01")
    drawn = page.evaluate("avatarPlayerStats.frames")
    page.wait_for_function(f"avatarPlayerStats.frames >= {drawn + 2}")  # the sought pose has been drawn
    assert abs(page.evaluate("avatarPlayerStats.weights.jawOpen") - jaw.max()) < 0.02
    page.screenshot(path=str(artifacts_dir / "avatar-player-voice.png"))
    # then played from the start: (talk time, jawOpen) recorded in the page every frame until it ends
    samples = page.evaluate("""async () => {
        const stats = window.avatarPlayerStats, out = [], start = performance.now();
        window.player.audio.currentTime = 0;
        await window.player.audio.play();
        while (stats.mode === 'voice' && performance.now() - start < 8000) {
            await new Promise((resolve) => requestAnimationFrame(resolve));
            if (stats.mode === 'voice') out.push([stats.talkTime, stats.weights.jawOpen]);
        }
        return out;
    }""")
    assert len(samples) >= 5, samples
    t, got = np.asarray(samples).T
    assert np.ptp(t) > 1.0  # the audio clock advanced
    expected = np.interp(t, times, jaw)
    assert np.abs(got - expected).max() < 0.02, list(zip(t, got, expected))
    fps = page.evaluate("avatarPlayerStats.fps")
    print(f"\nplayer: {fps} fps while talking (SwiftShader WebGL)")
    assert fps > 0
    page.evaluate("window.player.stop()")


def test_microphone_drives_the_mouth_live(page, model, microphone_wav, artifacts_dir):
    page.evaluate("window.player.startMicrophone()")
    page.wait_for_function("document.querySelector('#player').dataset.mode === 'microphone'")
    page.wait_for_function("avatarPlayerStats.lipsyncFrames > 250 && avatarPlayerStats.jawOpenMax > 0.2",
                           timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "avatar-player-microphone.png"))
    outputs = np.asarray(page.evaluate("window.player.streamer.outputs"))
    inference = page.evaluate("avatarPlayerStats.inferenceMs")
    page.evaluate("window.player.stop()")
    print(f"\nJS lip-sync: median {np.median(inference):.2f} ms per 20 ms chunk")
    # the live opening tracks the Python model on the recording (chromium resamples 48 kHz -> 16 kHz and
    # starts the fake microphone at an unknown point of the loop: best correlation over offsets)
    from gaiverse.vision.video import decode_audio

    once = model.predict(decode_audio(CLIP))[:, 0]
    reference = np.tile(once, 2)  # the fake microphone loops the file
    live = outputs[-200:, 0]
    best = max(np.corrcoef(live, reference[k:k + live.size])[0, 1] for k in range(once.size))
    assert best > 0.9, best


def test_gesture_clip_replaces_the_idle_and_returns_to_it(page, artifacts_dir):
    hand_above_head = ("(() => { const p = new window.THREE_VECTOR(); const y = (n) => "
                       "window.player.gltf.scene.getObjectByName(n).getWorldPosition(p).y; "
                       "return y('rightHand') - y('head'); })()")
    page.evaluate("async () => { window.THREE_VECTOR = (await import('three')).Vector3; window.player.frame('body'); }")
    assert page.evaluate(hand_above_head) < -0.3  # idle: arms down
    duration = page.evaluate("window.player.playClip('wave')")
    # the clip's own clock, not the wall clock: a busy machine draws fewer frames (dt is capped per frame)
    page.wait_for_function("avatarPlayerStats.clipTime > 0.6", timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "avatar-player-wave.png"))
    assert page.evaluate(hand_above_head) > 0.0  # waving above the head
    page.wait_for_function("avatarPlayerStats.clip === null", timeout=int(duration * 1000) + 20_000)
    page.wait_for_function(f"{hand_above_head} < -0.3", timeout=30_000)  # the idle fades back in: arms down
    assert page.evaluate(hand_above_head) < -0.3
    with pytest.raises(Exception, match="no clip"):
        page.evaluate("window.player.playClip('moonwalk')")


def test_voice_without_talk_clip_runs_the_model_on_the_audio(page, voice, model):
    """A glb without a "talk" clip (an NPC character): the JS model listens to the <audio> element itself."""
    page.goto(page.base_url + "/player/index.html?glb=no-talk-clip.glb")
    page.wait_for_selector("body[data-ready='true']")
    assert "talk" not in page.evaluate("avatarPlayerStats.clips")
    page.evaluate("async () => { await window.player.play(); window.listening = window.player.streamer; }")
    page.wait_for_function("avatarPlayerStats.mode === 'idle'", timeout=60_000)  # the voice ended
    outputs = np.asarray(page.evaluate("window.listening.outputs"))[:, 0]
    expected = model.predict(voice)[:, 0]
    n = 200
    # the model listened from before the audio started: best match over that lead-in
    best = max(np.corrcoef(outputs[k:k + n], expected[:n])[0, 1] for k in range(outputs.size - n))
    assert best > 0.95, best
    assert page.evaluate("avatarPlayerStats.jawOpenMax") > 0.2
