"""Lip-sync training targets: mouth geometry per frame of real talking-face video, mapped to ARKit weights.

The audio-to-blendshape model (``lipsync_model``) learns from what a real mouth did while the sound was
made. For every video frame this module measures, in units of the inter-ocular distance (IOD, distance of
the two eye centres, so the numbers do not depend on face size or distance to the camera):

* ``open``  — inner-lip gap (upper to lower inner lip, along the face's vertical axis);
* ``width`` — mouth-corner distance (along the eye line);
* ``lift_l`` / ``lift_r`` — height of the subject's left / right mouth corner above the lip centre.

Two measurers produce them. **MediaPipe face mesh** (legacy ``solutions.face_mesh``, 478 landmarks; inner
lips 13/14, corners 61/291, eye corners 33/133 and 263/362) is used when it is installed.
**OpenCV** is the fallback (no landmarks model): Haar face box -> lower-face crop -> lip mask from the
pseudo-hue R/(R+G) (lips are redder than skin; Otsu threshold over the clip) -> the lip blob's convex
hull; the inner gap is the hull area that is not lip (dark cavity or teeth) in the middle third of the
mouth, the width is the blob's extent, and the IOD comes from Haar eye boxes (0.34 face widths if the
eyes are not found). Measured on 2 busy cores: MediaPipe ~15 ms per 360x288 frame, OpenCV ~90 ms
(two Haar passes).

``to_blendshapes`` is the documented deterministic mapping from the measures to ARKit coefficients (see
its docstring); the neutral width and corner height are the clip's medians, so every talker is compared
with their own resting mouth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaiverse.vision.video import upright_rgb

log = logging.getLogger(__name__)

BLENDSHAPES = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft", "mouthSmileRight",
               "mouthStretchLeft", "mouthStretchRight")
"""ARKit names of the coefficients the lip-sync model drives (subject's left/right)."""
MEASURES = ("open", "dwidth", "dlift")
"""What the model predicts per frame: inner-lip gap / IOD, relative width change, mean corner lift / IOD."""

OPEN_FULL = 0.30
"""Inner-lip gap (IOD units) mapped to jawOpen = 1: ~19 mm for a 63 mm IOD, a wide-open vowel."""
OPEN_CLOSED = 0.03
"""Gap below which the lips touch (mouthClose rises to 1 at gap 0)."""
OPEN_ROUND = 0.10
"""Gap that splits a narrowed mouth between pucker (closed) and funnel (open)."""
WIDTH_FULL = 0.12
"""Relative width change (12 % wider / narrower than the resting mouth) mapped to stretch / pucker = 1."""
LIFT_FULL = 0.04
"""Corner rise above the resting corner (IOD units) mapped to smile = 1."""
VIDEO_FPS_DEFAULT = 25.0

# MediaPipe face-mesh landmark indices
_MP_INNER_PAIRS = ((13, 14),)  # mid upper / lower inner lip (the side pairs never fully meet)
_MP_CORNERS = (61, 291)           # image-left (subject's right), image-right (subject's left)
_MP_EYES = ((33, 133), (263, 362))  # image-left eye corners, image-right eye corners


@dataclass
class LipsyncTargets:
    """Per-frame mouth measures of one clip, its soundtrack, and where they came from."""

    name: str
    fps: float
    open: np.ndarray
    """Inner-lip gap / IOD per frame (NaN where no face was found)."""
    width: np.ndarray
    lift_l: np.ndarray
    lift_r: np.ndarray
    audio: np.ndarray
    """Mono float32 soundtrack at ``audio_rate``; sample 0 is the time of frame 0."""
    audio_rate: int = 16_000
    method: str = "mediapipe"
    found: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def n_frames(self) -> int:
        return int(self.open.size)

    def measures(self) -> np.ndarray:
        """(n, 3) model targets: open, width change relative to the clip median, mean corner lift change."""
        return measures_from_geometry(self.open, self.width, self.lift_l, self.lift_r)

    def blendshapes(self) -> np.ndarray:
        """(n, 8) ARKit weights in ``BLENDSHAPES`` order, left and right corners measured separately."""
        width0, lift_l0, lift_r0 = _neutral(self.width), _neutral(self.lift_l), _neutral(self.lift_r)
        return to_blendshapes(self.open, self.width / width0 - 1.0, self.lift_l - lift_l0,
                              self.lift_r - lift_r0)


def _neutral(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def measures_from_geometry(open_: np.ndarray, width: np.ndarray, lift_l: np.ndarray,
                           lift_r: np.ndarray) -> np.ndarray:
    """Stack the model's three target measures; width and lift are relative to the clip's resting mouth."""
    width0 = _neutral(width)
    lift = 0.5 * (lift_l + lift_r)
    return np.stack([open_, width / width0 - 1.0, lift - _neutral(lift)], axis=1).astype(np.float32)


def to_blendshapes(open_: np.ndarray, dwidth: np.ndarray, dlift_l: np.ndarray,
                   dlift_r: np.ndarray | None = None) -> np.ndarray:
    """Deterministic mapping of mouth measures to ARKit coefficients in [0, 1] (``BLENDSHAPES`` order).

    jawOpen = gap / OPEN_FULL; mouthClose = 1 - gap / OPEN_CLOSED (lips together, e.g. /p b m/);
    a mouth narrower than at rest is rounded: mouthPucker when the lips are nearly closed, mouthFunnel
    when open (weighted by gap / OPEN_ROUND); a mouth wider than at rest gives mouthStretch (both sides);
    a corner higher than at rest gives mouthSmile on that side. All clipped to [0, 1].
    """
    if dlift_r is None:
        dlift_r = dlift_l
    o = np.nan_to_num(np.asarray(open_, np.float64), nan=0.0)
    w = np.nan_to_num(np.asarray(dwidth, np.float64) / WIDTH_FULL, nan=0.0)
    rounded = np.clip(-w, 0, 1)
    roundness_open = np.clip(o / OPEN_ROUND, 0, 1)
    stretch = np.clip(w, 0, 1)
    out = np.stack([
        np.clip(o / OPEN_FULL, 0, 1),
        np.clip(1 - o / OPEN_CLOSED, 0, 1),
        rounded * roundness_open,
        rounded * (1 - roundness_open),
        np.clip(np.nan_to_num(np.asarray(dlift_l, np.float64)) / LIFT_FULL, 0, 1),
        np.clip(np.nan_to_num(np.asarray(dlift_r, np.float64)) / LIFT_FULL, 0, 1),
        stretch, stretch,
    ], axis=-1)
    return out.astype(np.float32)


def measures_to_blendshapes(measures: np.ndarray) -> np.ndarray:
    """(n, 3) predicted measures -> (n, 8) ARKit weights (symmetric smile: audio carries no left/right)."""
    m = np.atleast_2d(measures)
    return to_blendshapes(np.maximum(m[:, 0], 0), m[:, 1], m[:, 2])


# ---------------------------------------------------------------------------------------------- decoding

@dataclass
class VideoInfo:
    """Frame rate, frame count and the audio start relative to the first video frame (seconds)."""

    fps: float
    n_frames: int
    audio_offset_s: float


MAX_VIDEO_S = 600.0


def _open(video: str | Path):
    import av

    path = Path(video)
    if not path.is_file():
        raise ValueError(f"`video` path {str(video)!r} does not exist")
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError) as err:
        raise ValueError(f"`video` is not a decodable media file ({path}): {err}") from err


def iter_frames(video: str | Path, max_side: int = 640):
    """Yield every video frame as RGB uint8, upright (display rotation applied), shrunk so its longer side is
    at most ``max_side`` pixels.

    Frames are streamed, never all held in memory, so long captures cost time, not RAM.
    """
    import av

    with _open(video) as container:
        if not container.streams.video:
            raise ValueError(f"`video` has no video stream ({video})")
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                rotation = getattr(frame, "rotation", 0)
                scale = min(1.0, max_side / max(frame.width, frame.height))
                if scale < 1.0:
                    frame = frame.reformat(width=int(frame.width * scale) // 2 * 2,
                                           height=int(frame.height * scale) // 2 * 2)
                yield upright_rgb(frame, rotation)
        except av.error.FFmpegError as err:
            raise ValueError(f"`video` frames cannot be decoded ({video}): {err}") from err


def video_info(video: str | Path) -> VideoInfo:
    """Stream facts needed to line the soundtrack up with the frames."""
    with _open(video) as container:
        if not container.streams.video:
            raise ValueError(f"`video` has no video stream ({video})")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or VIDEO_FPS_DEFAULT)
        duration = (float(stream.duration * stream.time_base) if stream.duration is not None
                    else (container.duration or 0) / 1e6)
        if duration > MAX_VIDEO_S:
            raise ValueError(f"`video` lasts {duration:.0f} s, more than {MAX_VIDEO_S:.0f} s")
        v0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        offset = 0.0
        if container.streams.audio:
            audio = container.streams.audio[0]
            if audio.start_time is not None:
                offset = float(audio.start_time * audio.time_base) - v0
        return VideoInfo(fps=fps, n_frames=int(stream.frames or 0), audio_offset_s=offset)


# ---------------------------------------------------------------------------------------------- measurers

def mediapipe_available() -> bool:
    try:
        import mediapipe  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install (protobuf mismatch) counts as unavailable
        return False
    return True


def _frame_axes(eye_a: np.ndarray, eye_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit vector along the eye line, unit vector pointing down the face, and the IOD in pixels."""
    axis = eye_b - eye_a
    iod = float(np.linalg.norm(axis))
    u = axis / max(iod, 1e-6)
    return u, np.array([-u[1], u[0]]), iod


def measure_mediapipe(frames) -> np.ndarray:
    """(n, 5) open, width, lift_l, lift_r, found per frame (any iterable of RGB frames), from face mesh."""
    import mediapipe as mp

    rows = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False,
                                         min_detection_confidence=0.5) as mesh:
        for i, frame in enumerate(frames):
            result = mesh.process(np.ascontiguousarray(frame))
            if not result.multi_face_landmarks:
                rows.append([np.nan] * 4 + [0])
                continue
            h, w = frame.shape[:2]
            pts = np.array([(p.x * w, p.y * h) for p in result.multi_face_landmarks[0].landmark])
            eye_a = pts[list(_MP_EYES[0])].mean(0)
            eye_b = pts[list(_MP_EYES[1])].mean(0)
            u, v, iod = _frame_axes(eye_a, eye_b)
            gap = np.mean([(pts[lo] - pts[up]) @ v for up, lo in _MP_INNER_PAIRS])
            right_c, left_c = pts[_MP_CORNERS[0]], pts[_MP_CORNERS[1]]  # subject's right is image-left
            mid = 0.5 * (pts[13] + pts[14])
            rows.append([max(gap, 0.0) / iod, ((left_c - right_c) @ u) / iod,
                         ((mid - left_c) @ v) / iod, ((mid - right_c) @ v) / iod, 1])
    return np.array(rows, np.float64).reshape(-1, 5)


def measure_opencv(frames) -> np.ndarray:
    """(n, 5) open, width, lift_l, lift_r, found per frame from Haar boxes and a pseudo-hue lip mask.

    ``frames`` is a list of RGB frames or a callable returning a fresh iterator over them (two passes:
    face boxes first, then crops around the running median box).
    """
    import cv2

    from gaiverse.vision.faces import FACE_CASCADE, _cascade

    source = frames if callable(frames) else (lambda: iter(frames))
    boxes, eye_frames = [], []
    for frame in source():
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        side = max(24, int(min(gray.shape) * 0.15))
        found = _cascade(FACE_CASCADE).detectMultiScale(gray, 1.1, 5, minSize=(side, side))
        boxes.append(max(found, key=lambda b: b[2] * b[3]) if len(found) else None)
        if boxes[-1] is not None and len(eye_frames) < 12 and len(boxes) % 5 == 1:
            eye_frames.append((frame, boxes[-1]))
    out = np.full((len(boxes), 5), np.nan)
    out[:, 4] = 0
    valid = [b for b in boxes if b is not None]
    if not valid:
        return out
    # the face box jitters by a few pixels between detections; a running median keeps the crop steady
    iod_px = _haar_iod(eye_frames, valid)
    crops, index = [], []
    for i, frame in enumerate(source()):
        near = [b for b in boxes[max(0, i - 3): i + 4] if b is not None]
        if not near:
            continue
        x, y, w, h = np.median(near, axis=0).astype(int)
        crop = frame[y + int(0.62 * h): y + h, x + int(0.22 * w): x + int(0.78 * w)].astype(np.float32)
        if crop.size == 0:
            continue
        crop = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        crops.append(cv2.GaussianBlur(crop[..., 0] / (crop[..., 0] + crop[..., 1] + 1.0), (5, 5), 0))
        index.append(i)
    if not crops:
        return out
    lo, hi = np.percentile(np.concatenate([c.ravel() for c in crops]), [1, 99.5])
    scaled = [np.clip((c - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8) for c in crops]
    threshold, _ = cv2.threshold(np.concatenate([s.ravel() for s in scaled]).reshape(-1, 1), 0, 255,
                                 cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    scale = 2.0 * iod_px
    for i, hue in zip(index, scaled):
        geometry = _lip_geometry(hue > threshold)
        if geometry is not None:
            gap, width, lift_l, lift_r = geometry
            out[i] = [gap / scale, width / scale, lift_l / scale, lift_r / scale, 1]
    return out


def _haar_iod(frames: list[tuple[np.ndarray, object]], boxes: list) -> float:
    """Median eye-centre distance (pixels) from Haar eye boxes in the upper face; 0.34 face widths if none."""
    import cv2

    from gaiverse.vision.faces import _cascade

    x, y, w, h = np.median(boxes, axis=0).astype(int)
    distances = []
    for frame, _ in frames:
        gray = cv2.equalizeHist(cv2.cvtColor(frame[y: y + h // 2 + h // 10, x: x + w], cv2.COLOR_RGB2GRAY))
        eyes = _cascade("haarcascade_eye.xml").detectMultiScale(gray, 1.1, 5, minSize=(w // 8, w // 8))
        if len(eyes) >= 2:
            centres = sorted((ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in eyes)
            d = np.hypot(centres[-1][0] - centres[0][0], centres[-1][1] - centres[0][1])
            if 0.2 * w < d < 0.6 * w:
                distances.append(d)
    return float(np.median(distances)) if distances else 0.34 * float(w)


def _lip_geometry(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Inner gap, width and corner lifts (crop pixels) of the lip blob nearest the crop centre."""
    import cv2

    lip = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lip)
    if count < 2:
        return None
    blob = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    hull = np.zeros_like(blob)
    cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(blob)), 1)
    inner = hull.astype(bool) & ~blob.astype(bool)
    cols = np.nonzero(blob.any(0))[0]
    x0, x1 = int(cols[0]), int(cols[-1])
    third = (x1 - x0 + 1) // 3
    gap = float(inner[:, x0 + third: x1 - third + 1].sum(0).mean())
    rows = np.nonzero(blob.any(1))[0]
    mid = 0.5 * (rows[0] + rows[-1])
    corner_r = float(np.nonzero(blob[:, x0])[0].mean())  # image-left = subject's right
    corner_l = float(np.nonzero(blob[:, x1])[0].mean())
    return gap, float(x1 - x0 + 1), mid - corner_l, mid - corner_r


# ---------------------------------------------------------------------------------------------- public API

def extract_targets(video: str | Path, method: str = "auto", name: str | None = None) -> LipsyncTargets:
    """Mouth measures for every frame of a talking-face video with sound (method: auto|mediapipe|opencv)."""
    from gaiverse.vision.video import AUDIO_RATE, decode_audio

    if method not in ("auto", "mediapipe", "opencv"):
        raise ValueError(f"`method` must be auto, mediapipe or opencv, got {method!r}")
    info = video_info(video)
    audio = decode_audio(video, max_seconds=MAX_VIDEO_S)
    if audio is None or audio.size < AUDIO_RATE // 10:
        raise ValueError(f"`video` {str(video)!r} has no soundtrack: lip-sync needs speech")
    shift = int(round(info.audio_offset_s * AUDIO_RATE))  # make sample 0 the time of the first frame
    audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]
    if method == "auto":
        method = "mediapipe" if mediapipe_available() else "opencv"
    if method == "mediapipe":
        measured = measure_mediapipe(iter_frames(video))
    else:
        measured = measure_opencv(lambda: iter_frames(video))
    if measured.shape[0] == 0:
        raise ValueError(f"`video` has no decodable frames ({video})")
    found = measured[:, 4] > 0
    if found.mean() < 0.5:
        raise ValueError(f"`video` {str(video)!r}: a face was found in only {found.sum()} of "
                         f"{len(found)} frames")
    filled = _fill_gaps(measured[:, :4], found)
    return LipsyncTargets(name=name or Path(video).stem, fps=info.fps, open=filled[:, 0], width=filled[:, 1],
                          lift_l=filled[:, 2], lift_r=filled[:, 3], audio=audio.astype(np.float32),
                          audio_rate=AUDIO_RATE, method=method, found=found)


def _fill_gaps(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames without a face (so the sequences stay aligned with the audio)."""
    out = values.copy()
    idx = np.arange(len(values))
    for j in range(values.shape[1]):
        ok = found & np.isfinite(values[:, j])
        out[:, j] = np.interp(idx, idx[ok], values[ok, j]) if ok.any() else 0.0
    return out


def save_targets(path: str | Path, clips: list[LipsyncTargets]) -> Path:
    """Cache clips' measures + 16 kHz int16 audio in one compressed .npz (so tests skip video decoding)."""
    arrays: dict[str, np.ndarray] = {"names": np.array([c.name for c in clips])}
    for c in clips:
        arrays[f"{c.name}__geometry"] = np.stack([c.open, c.width, c.lift_l, c.lift_r], 1).astype(np.float32)
        arrays[f"{c.name}__found"] = c.found.astype(bool)
        arrays[f"{c.name}__audio"] = np.clip(c.audio * 32767, -32768, 32767).astype(np.int16)
        arrays[f"{c.name}__meta"] = np.array([c.fps, c.audio_rate], np.float64)
        arrays[f"{c.name}__method"] = np.array(c.method)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_targets(path: str | Path) -> list[LipsyncTargets]:
    """Clips saved by ``save_targets``, in their saved order."""
    with np.load(path) as data:
        clips = []
        for name in data["names"].tolist():
            g = data[f"{name}__geometry"].astype(np.float64)
            fps, rate = data[f"{name}__meta"].tolist()
            clips.append(LipsyncTargets(name=name, fps=fps, open=g[:, 0], width=g[:, 1], lift_l=g[:, 2],
                                        lift_r=g[:, 3],
                                        audio=data[f"{name}__audio"].astype(np.float32) / 32767,
                                        audio_rate=int(rate), method=str(data[f"{name}__method"]),
                                        found=data[f"{name}__found"]))
    return clips
