"""A minimal analysis of a checked capture: face box, skin/hair/eye colour, voice, transcript, wishes.

This is the fallback of the avatar flow's analyse step when ``gaiverse.avatar.analysis`` (MediaPipe
landmarks, head pose, body proportions) is not installed: colours are sampled from fixed regions of
the Haar face box of the sharpest frame (forehead and cheeks for skin, a band above the box for hair,
the darkest pixels of the eye band for the iris), the voice comes from WORLD prosody and Whisper, and
wishes are parsed from the typed text and what was said. Everything measured is returned with its
units, so the terminal can show it next to the decision it led to. Implements a first part of AV-b1.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from gaiverse.avatar.colour import delta_e, lab_to_srgb, srgb_to_lab
from gaiverse.avatar.decision import CaptureAnalysis
from gaiverse.avatar.preferences import Preferences, parse_preferences

log = logging.getLogger(__name__)

AUDIO_RATE = 16_000


@dataclass
class CaptureMeasurements:
    """What was measured, in units; ``None`` where it could not be measured."""

    frames: int
    frames_with_face: int
    best_frame: int | None
    """Index of the sharpest frame with the largest face."""
    face_box: tuple[int, int, int, int] | None
    """(x, y, w, h) in pixels of the best frame."""
    sharpness: float | None
    """Variance of the Laplacian in the face box of the best frame."""
    skin_lab: tuple[float, float, float] | None
    hair_lab: tuple[float, float, float] | None
    eye_lab: tuple[float, float, float] | None
    f0_median_hz: float | None
    f0_range_semitones: float | None
    speaking_rate_wps: float | None
    energy_rms_db: float | None
    voiced_fraction: float | None
    transcript: str
    language: str | None
    preferences_text: str
    preferences: dict[str, Any] = field(default_factory=dict)
    method: str = "haar-regions"
    """How the face was analysed (``haar-regions`` here; MediaPipe in gaiverse.avatar.analysis)."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for part in ("skin", "hair", "eye"):
            lab = out[f"{part}_lab"]
            out[f"{part}_hex"] = _hex(lab) if lab is not None else None
        return out

    def decision_input(self) -> CaptureAnalysis:
        """The measurements as the decision policy's input (defaults where nothing was measured)."""
        expressive = (0.5 if self.f0_range_semitones is None
                      else float(np.clip((self.f0_range_semitones - 3) / 12, 0, 1)))
        return CaptureAnalysis(
            skin_lab=self.skin_lab or (65.0, 12.0, 18.0), hair_lab=self.hair_lab, eye_lab=self.eye_lab,
            f0_median_hz=self.f0_median_hz or 150.0, f0_range_semitones=self.f0_range_semitones or 8.0,
            speaking_rate_wps=float(np.clip(self.speaking_rate_wps or 2.6, 0.5, 6.0)), expressiveness=expressive)


def _hex(lab) -> str:
    rgb = lab_to_srgb(np.array(lab))
    return "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgb)


def _lab_of(pixels: np.ndarray) -> tuple[float, float, float] | None:
    """Median CIELAB of (n, 3) uint8 RGB pixels (None when there are too few)."""
    if pixels.shape[0] < 20:
        return None
    lab = srgb_to_lab(pixels.reshape(-1, 3) / 255.0)
    return tuple(round(float(v), 2) for v in np.median(lab, axis=0))


def _region(frame: np.ndarray, box, fx0: float, fx1: float, fy0: float, fy1: float) -> np.ndarray:
    """Pixels of a region given as fractions of the face box (may reach outside it, clipped to the frame)."""
    x, y, w, h = box
    ys = slice(max(0, int(y + fy0 * h)), max(0, min(frame.shape[0], int(y + fy1 * h))))
    xs = slice(max(0, int(x + fx0 * w)), max(0, min(frame.shape[1], int(x + fx1 * w))))
    return frame[ys, xs].reshape(-1, 3)


def face_colours(frame: np.ndarray, box) -> dict[str, tuple[float, float, float] | None]:
    """Skin (forehead + cheeks), hair (band above the box, background removed) and iris colour (CIELAB)."""
    skin = np.concatenate([_region(frame, box, 0.3, 0.7, 0.12, 0.25), _region(frame, box, 0.18, 0.32, 0.55, 0.7),
                           _region(frame, box, 0.68, 0.82, 0.55, 0.7)])
    border = np.concatenate([frame[:4].reshape(-1, 3), frame[:, :4].reshape(-1, 3), frame[:, -4:].reshape(-1, 3)])
    background = np.median(srgb_to_lab(border / 255.0), axis=0)
    hair = _region(frame, box, 0.2, 0.8, -0.18, 0.02)
    if hair.size:
        hair = hair[delta_e(srgb_to_lab(hair / 255.0), background) > 20]
    eyes = np.concatenate([_region(frame, box, 0.22, 0.42, 0.36, 0.46),
                           _region(frame, box, 0.58, 0.78, 0.36, 0.46)])
    if eyes.shape[0]:
        luma = eyes @ np.array([0.299, 0.587, 0.114])
        eyes = eyes[luma <= np.percentile(luma, 20)]
    hair_lab = _lab_of(hair)
    skin_lab = _lab_of(skin)
    if hair_lab is not None and skin_lab is not None and delta_e(np.array(hair_lab), np.array(skin_lab)) < 8:
        hair_lab = None  # the band above the box is forehead (bald or a high box), not hair
    return {"skin_lab": skin_lab, "hair_lab": hair_lab, "eye_lab": _lab_of(eyes)}


def best_face(frames: list[np.ndarray]) -> tuple[int | None, tuple | None, float | None, int]:
    """(index, box, sharpness, frames with a face): the frame whose face is largest x sharpest."""
    import cv2

    from gaiverse.vision.faces import detect_faces

    best, found = (None, None, None, -1.0), 0
    for i, frame in enumerate(frames):
        faces = detect_faces(frame, smiles=False)
        if not faces:
            continue
        found += 1
        x, y, w, h = faces[0].box
        grey = cv2.cvtColor(np.ascontiguousarray(frame[y:y + h, x:x + w]), cv2.COLOR_RGB2GRAY)
        sharp = float(cv2.Laplacian(grey, cv2.CV_64F).var())
        score = w * h * np.log1p(sharp)
        if score > best[3]:
            best = (i, faces[0].box, sharp, score)
    return best[0], best[1], best[2], found


def analyse_capture(frames: list[np.ndarray], audio: np.ndarray | None, preferences_text: str = "",
                    transcribe: Callable[[np.ndarray], Any] | None = None) -> CaptureMeasurements:
    """Measure face colours, voice and wishes of a checked capture.

    frames : RGB uint8 (h, w, 3) images (sampled video frames or the uploaded images); audio : mono float32
    at 16 kHz or None; transcribe : samples -> object with ``.text`` and ``.language`` (Whisper), or None to
    skip ASR. Implements the minimal analysis of AV-b1.
    """
    from gaiverse.speech.prosody import prosody

    index, box, sharp, found = best_face(frames)
    colours = face_colours(frames[index], box) if index is not None else {"skin_lab": None, "hair_lab": None,
                                                                          "eye_lab": None}
    transcript, language = "", None
    if transcribe is not None and audio is not None and audio.size:
        heard = transcribe(audio)
        transcript, language = heard.text, heard.language
    voice = prosody(audio, AUDIO_RATE, transcript or None) if audio is not None and audio.size else {}
    wishes_text = " ".join(t for t in (preferences_text.strip(), transcript) if t)
    prefs: Preferences = parse_preferences(wishes_text) if wishes_text else Preferences()
    return CaptureMeasurements(
        frames=len(frames), frames_with_face=found, best_frame=index, face_box=box,
        sharpness=round(sharp, 1) if sharp is not None else None, **colours,
        f0_median_hz=_round(voice.get("pitch_median_hz")),
        f0_range_semitones=_round(voice.get("pitch_range_semitones")),
        speaking_rate_wps=_round(voice.get("speaking_rate_wps")),
        energy_rms_db=_round(voice.get("energy_rms_db")),
        voiced_fraction=_round(voice.get("voiced_fraction")), transcript=transcript, language=language,
        preferences_text=preferences_text, preferences=_prefs_json(prefs))


def _round(value, digits: int = 2):
    return round(float(value), digits) if value is not None else None


def _prefs_json(prefs: Preferences) -> dict[str, Any]:
    out = asdict(prefs)
    out["colours"] = {k: list(v) for k, v in prefs.colours.items()}
    return out


def preferences_from_json(data: dict[str, Any]) -> Preferences:
    """The inverse of the ``preferences`` field of ``CaptureMeasurements.to_json``."""
    fields = {k: v for k, v in data.items() if k in Preferences.__dataclass_fields__}
    fields["colours"] = {k: tuple(v) for k, v in (data.get("colours") or {}).items()}
    for key in ("avoid_styles", "matched"):
        if key in fields and isinstance(fields[key], list):
            fields[key] = type(getattr(Preferences(), key))(fields[key])
    return Preferences(**fields)


def preview_png(frame: np.ndarray, box, label: str = "") -> bytes:
    """PNG of the best frame with its face box drawn (green) and a one-line label."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    if box is not None:
        x, y, w, h = box
        draw.rectangle((x, y, x + w, y + h), outline=(40, 220, 90), width=3)
    if label:
        draw.rectangle((0, image.height - 18, image.width, image.height), fill=(0, 0, 0))
        draw.text((4, image.height - 16), label[:80], fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def summarise_full_analysis(result: Any) -> dict[str, Any]:
    """The keys of ``CaptureMeasurements.to_json`` from a ``gaiverse.avatar.analysis.CaptureAnalysis``
    (MediaPipe face mesh, head pose, body), so the terminal reads one shape whichever analysis ran."""
    def value(measure, key=None):
        v = measure.value
        return v if key is None or v is None else v.get(key)

    best = value(result.best_frame)
    face = next((f for f in result.faces if f.frame_index == best), None)
    box = None
    if face is not None:
        (x0, y0), (x1, y1) = face.landmarks[:, :2].min(0), face.landmarks[:, :2].max(0)
        box = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    colours = {}
    for part, measure in (("skin", result.skin), ("hair", result.hair), ("eye", result.eyes)):
        colours[f"{part}_lab"] = tuple(value(measure, "lab")) if value(measure, "lab") is not None else None
        colours[f"{part}_hex"] = value(measure, "srgb")
    prefs = dict(result.preferences.value or {})
    prefs["colours"] = {k: list(v) for k, v in (prefs.get("colours") or {}).items()}
    return {"frames": result.n_frames, "frames_with_face": len(result.usable_frames), "best_frame": best,
            "face_box": box, "sharpness": None, **colours,
            "f0_median_hz": value(result.f0, "median_hz"),
            "f0_range_semitones": value(result.f0, "range_semitones"),
            "speaking_rate_wps": value(result.speaking_rate, "words_per_s"), "energy_rms_db": None,
            "voiced_fraction": None, "transcript": result.transcript.value or "", "language": None,
            "preferences": prefs, "head_pose": value(result.head_pose, "median"),
            "face_shape": value(result.face_shape),
            "body": value(result.body), "expressiveness": value(result.expressiveness, "score"),
            "method": "mediapipe-face-mesh"}
