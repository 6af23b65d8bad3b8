"""Benchmark of the shared speech/vision layer: ASR speed and accuracy, TTS latency, prosody, OCR, faces, video.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.speech_vision`` (about 2 minutes on 2 cores). Baselines in
the same run: greedy Whisper decoding (beam 1) for ASR, whole-text synthesis for TTS streaming, WORLD
DIO (fast) for the Harvest pitch the prosody uses. Accuracy rows carry every item (reference and output) in ``extra``.
"""

from __future__ import annotations

import io
import statistics
import time

import numpy as np

from benchmarks.report import Report
from gaiverse.config import REPO_ROOT
from gaiverse.text_metrics import edit_rate, normalise_words

SENTENCES = [
    "I love exploring caves and fishing.",
    "The old mill lies two miles north of the village.",
    "Please bring me three apples and a loaf of bread.",
    "Can you tell me where the blacksmith lives?",
    "We sailed across the lake before the storm arrived.",
]
OCR_LINES = [["I love fishing and exploring caves", "Meet me at the harbour at dawn"],
             ["The dragon sleeps under the mountain", "Bring 3 apples, 2 ropes and a lamp"],
             ["Quest board: find the lost sheep", "Reward 40 gold coins"]]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_asr(report: Report, synth) -> None:
    from gaiverse.speech.asr import Transcriber, assemble_whisper_base, load_audio
    from gaiverse.speech.tts import to_wav_bytes

    _, join_s = timed(assemble_whisper_base)
    beam5, greedy = Transcriber(device="cpu"), Transcriber(device="cpu", beam_size=1)
    _, load_s = timed(lambda: beam5.model)
    report.add("whisper-base load (after join)", [load_s], goal="once per process", join_s=round(join_s, 2))
    clips = [(s, load_audio(to_wav_bytes(synth.synthesize(s)))) for s in SENTENCES]
    clips.append(((REPO_ROOT / "data/speech/jfk.txt").read_text().strip(), load_audio(REPO_ROOT / "data/speech/jfk_16k.flac")))
    rtf, rtf_greedy, cpu, wers, wers_greedy, items = [], [], [], [], [], []
    for reference, audio in clips:
        cpu_start = time.process_time()
        heard, seconds = timed(beam5.transcribe, audio)
        cpu.append((time.process_time() - cpu_start) / (len(audio) / 16000))
        fast, fast_s = timed(greedy.transcribe, audio)
        duration = len(audio) / 16000
        rtf.append(seconds / duration)
        rtf_greedy.append(fast_s / duration)
        wers.append(edit_rate(normalise_words(reference), normalise_words(heard.text)))
        wers_greedy.append(edit_rate(normalise_words(reference), normalise_words(fast.text)))
        items.append({"reference": reference, "beam5": heard.text, "greedy": fast.text, "audio_s": round(duration, 2)})
    report.add("ASR real-time factor (beam 5, int8 CPU)", rtf, unit="x", scale=1, goal="< 1",
               baseline=rtf_greedy, baseline_name="greedy")
    report.add("ASR CPU-seconds per audio second (beam 5, all threads)", cpu, unit="x", scale=1,
               note="less sensitive than wall time to other processes on a shared machine")
    report.add("ASR WER: 5 Piper sentences + JFK (real)", wers, unit="WER", scale=1, goal="<= 0.1",
               baseline=wers_greedy, baseline_name="greedy", items=items, mean=statistics.mean(wers))


def bench_tts(report: Report, synth) -> None:
    from gaiverse.speech.tts import Synthesizer, VoiceSettings

    texts = [" ".join(SENTENCES[i:i + 3]) for i in range(3)]
    first, whole, rtf = [], [], []
    for text in texts:
        first.append(synth.time_to_first_chunk(text))
        audio, seconds = timed(synth.synthesize, text)
        whole.append(seconds)
        rtf.append(seconds / audio.duration_s)
    report.add("TTS time to first chunk (3-sentence text)", first, goal="< 0.3 s", baseline=whole,
               baseline_name="whole text")
    report.add("TTS real-time factor (Piper joe medium)", rtf, unit="x", scale=1)
    shifted = Synthesizer(VoiceSettings(pitch_semitones=4.0, timbre_shift=2.0))
    world = []
    for text in texts:
        audio, seconds = timed(shifted.synthesize, text)
        world.append(seconds / audio.duration_s)
    report.add("TTS real-time factor with WORLD pitch+timbre shift", world, unit="x", scale=1, baseline=rtf,
               baseline_name="plain Piper")


def bench_prosody(report: Report, synth) -> None:
    from gaiverse.speech.asr import load_audio
    from gaiverse.speech.prosody import prosody

    dio, harvest, medians = [], [], []
    for name in ("librispeech_198-209-0000.ogg", "librispeech_3436-172162-0000.ogg", "jfk_16k.flac"):
        audio = load_audio(REPO_ROOT / "data/speech" / name)
        result, seconds = timed(prosody, audio, 16000)
        harvest.append(seconds / (len(audio) / 16000))
        fast, d_seconds = timed(prosody, audio, 16000, method="dio")
        dio.append(d_seconds / (len(audio) / 16000))
        medians.append({"clip": name, "harvest_median_hz": round(result["pitch_median_hz"], 1),
                        "dio_median_hz": round(fast["pitch_median_hz"], 1)})
    speech = synth.synthesize("Follow the river to the old stone bridge, then turn left.")
    medians.append({"clip": "piper joe (synthetic)",
                    "harvest_median_hz": round(prosody(speech.pcm / 32768.0, speech.sample_rate)["pitch_median_hz"], 1),
                    "dio_median_hz": round(prosody(speech.pcm / 32768.0, speech.sample_rate, method="dio")[
                        "pitch_median_hz"], 1)})
    report.add("prosody seconds per audio second (Harvest F0)", harvest, unit="x", scale=1, baseline=dio,
               baseline_name="DIO", items=medians)


def bench_vision(report: Report) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from gaiverse.vision.faces import detect_faces
    from gaiverse.vision.ocr import read_text
    from gaiverse.vision.video import decode

    cers, cers_degraded, seconds, items = [], [], [], []
    rng = np.random.default_rng(0)
    for lines in OCR_LINES:
        for size in (18, 32):
            font = ImageFont.load_default(size=size)
            image = Image.new("RGB", (40 + size * 22, 40 + size * 3), (250, 248, 240))
            draw = ImageDraw.Draw(image)
            for i, line in enumerate(lines):
                draw.text((20, 15 + i * size * 3 // 2), line, fill=(20, 20, 20), font=font)
            # a photographed sign: slight rotation, sensor noise, strong JPEG compression
            tilted = np.asarray(image.rotate(3, expand=True, fillcolor=(250, 248, 240)), dtype=np.float32)
            noisy = Image.fromarray(np.clip(tilted + rng.normal(0, 20, tilted.shape), 0, 255).astype(np.uint8))
            reference = " ".join(" ".join(lines).split())
            for picture, fmt, sink in ((image, "PNG", cers), (noisy, "JPEG", cers_degraded)):
                buffer = io.BytesIO()
                picture.save(buffer, format=fmt, quality=40)
                result, spent = timed(read_text, buffer.getvalue())
                sink.append(edit_rate(list(reference), list(" ".join(result.text.split()))))
                seconds.append(spent)
                items.append({"size_px": size, "degraded": fmt == "JPEG", "reference": reference, "read": result.text})
    report.add("OCR character error rate (rendered text, 18/32 px)", cers, unit="CER", scale=1, goal="<= 0.05",
               items=items)
    report.add("OCR CER, same text rotated 3 deg + noise + JPEG q40", cers_degraded, unit="CER", scale=1)
    report.add("OCR time per image", seconds)
    portrait = (REPO_ROOT / "data/vision/astronaut.jpg").read_bytes()
    detect_faces(portrait)  # load the cascades
    face_s = [timed(detect_faces, portrait)[1] for _ in range(5)]
    found = detect_faces(portrait)
    clip = REPO_ROOT / "data/vision/id2_vcd_swwp2s.mpg"
    sample, video_s = timed(decode, clip, 8)
    frames = [detect_faces(f) for f in sample.frames]
    report.add("face detection per 512x512 photo (Haar + smile)", face_s,
               faces=[(f.box, f.expression, f.smile_score) for f in found],
               grid_frames_with_one_face=sum(len(f) == 1 for f in frames), grid_frames=len(frames),
               grid_neutral=sum(bool(f) and f[0].expression == "neutral" for f in frames))
    report.add("video decode: 8 frames + 16 kHz audio of a 3 s clip", [video_s])


def main() -> None:
    from gaiverse.speech.tts import Synthesizer

    report = Report("speech_vision", "faster-whisper", "ctranslate2", "piper-tts", "pyworld-prebuilt",
                    "pytesseract", "opencv-contrib-python-headless", "av")
    synth = Synthesizer()
    synth.synthesize("Warm up.")
    bench_asr(report, synth)
    bench_tts(report, synth)
    bench_prosody(report, synth)
    bench_vision(report)
    report.finish()


if __name__ == "__main__":
    main()
