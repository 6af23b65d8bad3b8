"""Faces and a simple expression flag in user images, with the Haar cascades that ship in the cv2 wheel.

Haar cascades need no downloaded model and run in milliseconds on a CPU; they find frontal faces
well and say nothing about identity. A smile cascade run on the lower half of each face gives the
"smiling" / "neutral" expression the interaction store records (PER-a1); the avatar capture stage
uses the boxes to crop faces (AVA).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

FACE_CASCADE = "haarcascade_frontalface_default.xml"
"""Frontal face detector in cv2.data.haarcascades."""
SMILE_CASCADE = "haarcascade_smile.xml"
"""Smile detector, run inside the lower half of each face."""
SMILE_WIDTH_PX = 100
"""The lower half of a face is resized to this width first, so neighbour counts do not grow with face size."""
SMILE_MIN_NEIGHBOURS = 80
"""Smiling when the best smile window has this many neighbours. Measured on the shipped test media: a
smiling portrait scores 164, 24 frames of neutral talking faces (GRID) score 0..33."""

_CASCADES: dict[str, object] = {}
_LOCK = threading.Lock()


@dataclass
class Face:
    """A face box (x, y, w, h) in input pixels, the cascade's confidence and the expression seen."""

    box: tuple[int, int, int, int]
    score: float
    """Last-stage weight of the cascade: > 0, higher is surer; not a probability."""
    expression: Literal["smiling", "neutral"] | None = None
    smile_score: float | None = None
    """Neighbours of the best smile window (>= SMILE_MIN_NEIGHBOURS reads as smiling)."""


def _cascade(name: str):
    import cv2

    with _LOCK:
        if name not in _CASCADES:
            path = Path(cv2.data.haarcascades) / name
            classifier = cv2.CascadeClassifier(str(path))
            if classifier.empty():
                raise RuntimeError(f"OpenCV Haar cascade {path} is missing or unreadable")
            _CASCADES[name] = classifier
        return _CASCADES[name]


def to_rgb_array(image: bytes | np.ndarray) -> np.ndarray:
    """Encoded image bytes or an (h, w[, 3|4]) uint8 array -> (h, w, 3) uint8 RGB."""
    import cv2

    if isinstance(image, (bytes, bytearray)):
        decoded = cv2.imdecode(np.frombuffer(bytes(image), np.uint8), cv2.IMREAD_COLOR) if image else None
        if decoded is None:
            raise ValueError(f"`image` bytes are not a decodable image ({len(image)} bytes)")
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise ValueError(f"`image` must be encoded bytes or an RGB uint8 array, got {type(image).__name__}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[..., :3]).astype(np.uint8)
    raise ValueError(f"`image` array must be (h, w), (h, w, 3) or (h, w, 4), got shape {image.shape}")


def detect_faces(image: bytes | np.ndarray, min_size_frac: float = 0.08, smiles: bool = True) -> list[Face]:
    """Frontal faces at least ``min_size_frac`` of the shorter image edge, largest first, each with an
    expression flag. Implements the face/expression part of PER-a1.
    """
    import cv2

    if not 0 < min_size_frac < 1:
        raise ValueError(f"`min_size_frac` must be in (0, 1), got {min_size_frac}")
    rgb = to_rgb_array(image)
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    side = max(24, int(min(gray.shape) * min_size_frac))
    boxes, _, weights = _cascade(FACE_CASCADE).detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side), outputRejectLevels=True)
    faces = []
    for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
        face = Face(box=(int(x), int(y), int(w), int(h)), score=float(weight))
        if smiles:
            face.smile_score = smile_score(gray[y + h // 2: y + h, x: x + w])
            face.expression = "smiling" if face.smile_score >= SMILE_MIN_NEIGHBOURS else "neutral"
        faces.append(face)
    return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


def smile_score(lower_face: np.ndarray) -> float:
    """Neighbour count of the firmest smile window in the (equalised grey) lower half of a face."""
    import cv2

    if lower_face.size == 0 or min(lower_face.shape) < 8:
        return 0.0
    height = max(8, round(SMILE_WIDTH_PX * lower_face.shape[0] / lower_face.shape[1]))
    small = cv2.resize(lower_face, (SMILE_WIDTH_PX, height), interpolation=cv2.INTER_AREA)
    _, neighbours = _cascade(SMILE_CASCADE).detectMultiScale2(
        small, scaleFactor=1.1, minNeighbors=1, minSize=(SMILE_WIDTH_PX // 4, SMILE_WIDTH_PX // 10))
    return float(np.max(neighbours)) if len(neighbours) else 0.0
