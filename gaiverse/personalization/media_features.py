"""Derived features of a user's input, stored beside it in the interaction database (PER-a1).

Two layers. Model-free features need only PIL + numpy and always run: text statistics; for images the
size, brightness, colourfulness and dominant colours; for audio the duration, loudness (RMS energy) and
an autocorrelation pitch estimate. Model features come from the shared speech/vision layer: audio ->
transcript (Whisper ASR) + prosody (WORLD F0, pitch range, energy, voicing, speaking rate); images ->
text found in them (Tesseract OCR) and faces with a smiling/neutral flag (Haar cascades); video ->
evenly sampled frames (colours, faces per frame) + the soundtrack's transcript and prosody.
Preference analysis reads ``transcript``, ``ocr_text`` and the scene keys, so what a user says in a
voice note or shows written on a picture moves their profile like typed text does.

Bad media (not decodable) raise ValueError; a missing model or binary (weights package, tesseract)
only drops that feature and is noted under ``analysis_errors``, so uploads keep working.
"""

from __future__ import annotations

import io
import logging
import wave
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

HUE_EDGES = ((15, "red"), (45, "orange"), (70, "yellow"), (165, "green"), (195, "cyan"), (255, "blue"),
             (290, "purple"), (345, "pink"), (361, "red"))
"""Upper edge in degrees of each named hue range."""


@dataclass
class MediaAnalysis:
    """Which model features derive_features computes (model-free features always run)."""

    asr: bool = True
    """Transcribe audio and video soundtracks with Whisper base."""
    ocr: bool = True
    """Read text in images with Tesseract."""
    faces: bool = True
    """Detect faces and smiles in images and video frames."""
    video_frames: int = 8
    """Frames sampled evenly from a video."""
    whisper_dir: Path | None = None
    """Joined Whisper model directory; None: <data_dir>/models/whisper-base."""
    max_speech_s: float = 60.0
    """Only the first this many seconds are transcribed (ASR costs ~0.2-0.5 CPU-s per audio second)."""


def text_features(text: str) -> dict[str, Any]:
    """Length statistics of a message."""
    words = text.split()
    return {"chars": len(text), "words": len(words), "questions": text.count("?")}


# -- images -------------------------------------------------------------------------------------------

def _image_stats(image, n_colours: int = 3) -> dict[str, Any]:
    """Brightness (0..1), colourfulness, dominant colours (hex) and dominant hue name of a PIL RGB image."""
    from PIL import Image

    width, height = image.size
    thumb = image.resize((64, 64))
    small = np.asarray(thumb, dtype=np.float32) / 255.0
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    quantised = thumb.quantize(colors=n_colours, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette()[: 3 * n_colours]
    counts = sorted(quantised.getcolors(), reverse=True)
    dominant = ["#%02x%02x%02x" % tuple(palette[3 * idx: 3 * idx + 3]) for _, idx in counts]
    hsv = np.asarray(thumb.convert("HSV"), dtype=np.float32) / 255.0
    saturated = hsv[..., 1] > 0.25
    hue = None
    if saturated.mean() > 0.1:
        degrees = hsv[..., 0][saturated] * 360.0
        names = [next(name for edge, name in HUE_EDGES if d < edge) for d in degrees]
        hue = max(set(names), key=names.count)
    return {"width": width, "height": height, "brightness": float((0.299 * r + 0.587 * g + 0.114 * b).mean()),
            "colourfulness": colourfulness, "dominant_colours": dominant, "dominant_hue": hue}


def image_features(data: bytes, n_colours: int = 3) -> dict[str, Any]:
    """Size, brightness (0..1), colourfulness, dominant colours (hex) and the dominant hue name."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"`data` is not an image PIL can read ({len(data)} bytes)") from err
    return _image_stats(image, n_colours)


def face_features(image: bytes | np.ndarray) -> dict[str, Any]:
    """``faces`` (box, score, expression), ``n_faces`` and ``expression`` (smiling if any face smiles)."""
    from gaiverse.vision.faces import detect_faces

    faces = detect_faces(image)
    expression = None
    if faces:
        expression = "smiling" if any(f.expression == "smiling" for f in faces) else "neutral"
    return {"faces": [{"box": list(f.box), "score": round(f.score, 3), "expression": f.expression,
                "smile_score": f.smile_score} for f in faces],
            "n_faces": len(faces), "expression": expression}


def ocr_features(image: bytes | np.ndarray) -> dict[str, Any]:
    """``ocr_text`` (confident words, by line) and ``ocr_confidence`` (mean over words, 0..100)."""
    from gaiverse.vision.ocr import read_text

    result = read_text(image)
    confidence = result.mean_confidence
    return {"ocr_text": result.text,
            "ocr_confidence": round(confidence, 1) if confidence is not None else None}


# -- audio --------------------------------------------------------------------------------------------

def decode_audio_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float samples in [-1, 1] and their rate: PCM WAV read exactly, else PyAV at 16 kHz."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        from gaiverse.speech.asr import SAMPLE_RATE, load_audio

        try:
            return load_audio(bytes(data)).astype(np.float64), SAMPLE_RATE
        except ValueError:
            raise ValueError(f"`data` is neither a PCM WAV file ({err}) nor other decodable audio") from None
    if width not in (1, 2, 4):
        raise ValueError(f"`data` has {8 * width}-bit samples; 8, 16 or 32-bit PCM expected")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    if width == 1:
        samples -= 128.0
    if samples.size == 0:
        raise ValueError("`data` is a WAV file without samples")
    return samples.reshape(-1, channels).mean(1) / float(2 ** (8 * width - 1)), rate


def signal_features(samples: np.ndarray, rate: int, frame_ms: float = 40.0) -> dict[str, Any]:
    """Duration (s), RMS energy (dBFS) and median autocorrelation pitch (Hz) of mono float samples."""
    duration = len(samples) / rate
    rms = float(np.sqrt(np.mean(samples ** 2))) if len(samples) else 0.0
    frame = int(rate * frame_ms / 1000)
    pitches = []
    for start in range(0, len(samples) - frame, frame):
        x = samples[start:start + frame]
        if np.sqrt(np.mean(x ** 2)) < max(0.02, 0.3 * rms):
            continue
        x = x - x.mean()
        ac = np.correlate(x, x, mode="full")[frame - 1:]
        lo, hi = int(rate / 400), int(rate / 60)  # 60..400 Hz: speaking voices
        if hi >= len(ac) or ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] / ac[0] > 0.3:
            pitches.append(rate / lag)
    return {"duration_s": float(duration), "rms_dbfs": float(20 * np.log10(rms)) if rms > 0 else -120.0,
            "pitch_hz": float(np.median(pitches)) if pitches else None, "voiced_frames": len(pitches)}


def audio_features(data: bytes, frame_ms: float = 40.0) -> dict[str, Any]:
    """Duration (s), RMS energy (dBFS) and median pitch (Hz) of a voice note (WAV, or any PyAV format)."""
    samples, rate = decode_audio_bytes(data)
    return signal_features(samples, rate, frame_ms)


def speech_features(samples: np.ndarray, rate: int, config: MediaAnalysis,
                    errors: dict[str, str]) -> dict[str, Any]:
    """``transcript`` + ``asr`` (language, segments) when ASR is on, and ``prosody`` (WORLD)."""
    from gaiverse.speech.asr import Transcriber, resample
    from gaiverse.speech.prosody import prosody

    out: dict[str, Any] = {}
    transcript = None
    head = samples[: int(config.max_speech_s * rate)]
    if config.asr:
        try:
            heard = Transcriber(model_dir=config.whisper_dir).transcribe(resample(head.astype(np.float32), rate))
        except RuntimeError as err:
            log.warning("ASR unavailable: %s", err)
            errors["asr"] = str(err)
        else:
            transcript = heard.text if head.size == samples.size else None  # words/s only over the whole note
            out["transcript"] = heard.text
            out["asr"] = {"text": heard.text, "language": heard.language, "model": "whisper-base",
                          "seconds_transcribed": round(heard.duration_s, 2),
                          "segments": [[round(s.start_s, 2), round(s.end_s, 2), s.text]
                                       for s in heard.segments]}
    out["prosody"] = {k: (round(v, 3) if isinstance(v, float) else v)
                      for k, v in prosody(samples, rate, transcript=transcript).items()}
    return out


# -- video --------------------------------------------------------------------------------------------

def video_features(data: bytes, config: MediaAnalysis, errors: dict[str, str]) -> dict[str, Any]:
    """Sampled frames (time, brightness, hue, faces), their summary, and the soundtrack's speech features."""
    from PIL import Image

    from gaiverse.vision.video import AUDIO_RATE, decode

    sample = decode(data, max_frames=config.video_frames)
    frames, hues, n_faces_max, faces_best, smiling = [], [], 0, [], False
    for t, rgb in zip(sample.times_s, sample.frames):
        stats = _image_stats(Image.fromarray(rgb))
        frame = {"t": t, "brightness": round(stats["brightness"], 4), "dominant_hue": stats["dominant_hue"]}
        if config.faces:
            found = face_features(rgb)
            frame.update(n_faces=found["n_faces"], expression=found["expression"])
            smiling |= found["expression"] == "smiling"
            if found["n_faces"] > n_faces_max:
                n_faces_max, faces_best = found["n_faces"], [dict(f, t=t) for f in found["faces"]]
        frames.append(frame)
        hues.append(stats["dominant_hue"])
    middle = _image_stats(Image.fromarray(sample.frames[len(sample.frames) // 2]))
    named = [h for h in hues if h]
    out: dict[str, Any] = {
        "video": {"duration_s": round(sample.duration_s, 3), "fps": round(sample.fps, 3),
                  "width": sample.width, "height": sample.height, "has_audio": sample.audio is not None},
        "frames": frames,
        "brightness": float(np.mean([f["brightness"] for f in frames])),
        "dominant_hue": Counter(named).most_common(1)[0][0] if named else None,
        "dominant_colours": middle["dominant_colours"], "colourfulness": middle["colourfulness"],
    }
    if config.faces:
        out.update(faces=faces_best, n_faces=n_faces_max,
                   expression=("smiling" if smiling else "neutral") if n_faces_max else None)
    if sample.audio is not None and sample.audio.size >= AUDIO_RATE // 10:
        audio = sample.audio.astype(np.float64)
        out.update(signal_features(audio, AUDIO_RATE))
        out.update(speech_features(audio, AUDIO_RATE, config, errors))
    return out


# -- entry point --------------------------------------------------------------------------------------

def derive_features(modality: str, text: str = "", data: bytes | None = None,
                    config: MediaAnalysis | None = None) -> dict[str, Any]:
    """Features of one input by modality. Implements the derived-feature part of PER-a1."""
    if modality not in ("text", "audio", "image", "video"):
        raise ValueError(f"`modality` must be text, audio, image or video, got {modality!r}")
    config = config or MediaAnalysis()
    features: dict[str, Any] = text_features(text) if text else {}
    if data is None or modality == "text":
        return features
    errors: dict[str, str] = {}
    if modality == "image":
        features.update(image_features(data))
        steps = (("ocr", config.ocr, ocr_features), ("faces", config.faces, face_features))
        for name, enabled, compute in steps:
            if enabled:
                try:
                    features.update(compute(data))
                except RuntimeError as err:
                    log.warning("%s unavailable: %s", name, err)
                    errors[name] = str(err)
    elif modality == "audio":
        samples, rate = decode_audio_bytes(data)
        features.update(signal_features(samples, rate))
        features.update(speech_features(samples, rate, config, errors))
    else:
        features.update(video_features(data, config, errors))
    if errors:
        features["analysis_errors"] = errors
    return features
