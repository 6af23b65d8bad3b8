"""Avatar appearance (AV-c1/AV-c2): the decided ``AvatarParams`` + the capture analysis -> character ``BodyParams``.

- height and build come from the decision (which copied the measurement or applied the user's wish);
- shoulder and hip breadth come from the pose landmarks when the analysis saw them: the face's outer eye
  corners (~90 mm apart in adults) give the scale, MediaPipe's shoulder points sit ~0.85 of the
  biacromial breadth apart and its hip points (hip joints) ~1/1.85 of the hip breadth;
- skin, hair and eye colours are the decided CIELAB values in sRGB; the top's colour is measured on the
  chest between the MediaPipe pose shoulders, else below the chin, and only when it is neither background
  nor skin (``clothing_colour``; otherwise ``BodyParams``' slate-blue default); trousers and shoes are darker
  neutrals;
- style: ``realistic`` keeps human proportions; ``stylized``, ``anime`` and ``cartoon`` enlarge the head
  and saturate hair, eyes and clothes (the portrait texture is posterised to match, see ``portrait``).
Every value is clipped to ``gaiverse.character.params.LIMITS`` so a wild measurement cannot break the body.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gaiverse.avatar.colour import lab_to_srgb, srgb_to_lab
from gaiverse.avatar.decision import AvatarParams
from gaiverse.character.params import LIMITS, BodyParams, check

OUTER_CANTHAL_M = 0.09
"""Adult distance between the outer eye corners (landmarks 33-263): the scale of a monocular capture."""
SHOULDER_POINTS_TO_BREADTH = 1 / 0.85
HIP_POINTS_TO_BREADTH = 1.85
STYLE_HEAD_SCALE = {"realistic": 1.0, "stylized": 1.08, "anime": 1.18, "cartoon": 1.24}
STYLE_CHROMA = {"realistic": 1.0, "stylized": 1.12, "anime": 1.3, "cartoon": 1.4}
HAIR_STYLES = {"short": "short", "long": "long", "bald": "bald", "curly": "curly", "bun": "bun"}

RGB = tuple[float, float, float]


def _rgb(lab, chroma: float = 1.0) -> RGB:
    lab = np.asarray(lab, dtype=np.float64).copy()
    lab[1:] *= chroma
    return tuple(float(c) for c in np.clip(lab_to_srgb(lab), 0, 1))  # type: ignore[return-value]


def _clip(name: str, value: float) -> float:
    low, high = LIMITS[name]
    return float(np.clip(value, low, high))


def _body_measures(analysis: dict[str, Any] | None) -> dict[str, Any]:
    body = (analysis or {}).get("body") or {}
    return body.get("value") or {}


def body_params(params: AvatarParams, analysis: dict[str, Any] | None = None,
                top_rgb: RGB | None = None) -> BodyParams:
    """The character parameters of this avatar (``analysis`` is ``CaptureAnalysis.to_json()`` or None)."""
    if not isinstance(params, AvatarParams):
        raise ValueError(f"`params` must be an AvatarParams, got {type(params).__name__}")
    if params.hair_style not in HAIR_STYLES:
        raise ValueError(f"`hair_style` must be one of {sorted(HAIR_STYLES)}, got {params.hair_style!r}")
    if params.style not in STYLE_HEAD_SCALE:
        raise ValueError(f"`style` must be one of {sorted(STYLE_HEAD_SCALE)}, got {params.style!r}")
    chroma = STYLE_CHROMA[params.style]
    height = _clip("height_m", params.height_m)
    out = BodyParams(height_m=height, build=_clip("build", params.build),
                     head_scale=_clip("head_scale", STYLE_HEAD_SCALE[params.style]),
                     skin_rgb=_rgb(params.skin_lab), hair_rgb=_rgb(params.hair_lab, chroma),
                     eye_rgb=_rgb(params.eye_lab, chroma), hair_style=HAIR_STYLES[params.hair_style])  # type: ignore[arg-type]
    measured = _body_measures(analysis)
    shoulder_iod = measured.get("shoulder_width_iod")
    if shoulder_iod:
        shoulder_m = float(shoulder_iod) * OUTER_CANTHAL_M * SHOULDER_POINTS_TO_BREADTH
        out.shoulder_width = _clip("shoulder_width", shoulder_m / height)
        ratio = measured.get("shoulder_to_hip")
        if ratio:
            hip_m = shoulder_m / SHOULDER_POINTS_TO_BREADTH / float(ratio) * HIP_POINTS_TO_BREADTH
            out.hip_width = _clip("hip_width", hip_m / height)
    if top_rgb is not None:
        out.top_rgb = _rgb(srgb_to_lab(np.asarray(top_rgb)), chroma)
    top_lab = srgb_to_lab(np.asarray(out.top_rgb))
    out.bottom_rgb = _rgb([min(top_lab[0], 40.0) * 0.8, 0.25 * top_lab[1], 0.25 * top_lab[2] - 6.0], chroma)
    out.shoes_rgb = _rgb([18.0, 4.0, 6.0])
    return check(out)


TORSO_FRACTION = (0.3, 0.85)
"""Part of the shoulder -> hip line the top's colour is sampled on (below collars, helmets rings and hair)."""
BACKGROUND_DE = 14.0
"""A pixel within this CIELAB distance of a border-strip (background) sample counts as background."""
SKIN_DE = 12.0
"""A pixel within this distance of the face's skin counts as neck / skin, not clothing."""
SKIN_HUE_DEG = 15.0
SKIN_SHADE_CHROMA = 0.45
SKIN_SHADE_L = 40.0
"""A pixel within SKIN_HUE_DEG of the skin's hue angle, with at least SKIN_SHADE_CHROMA of its chroma and a
lightness within SKIN_SHADE_L, also counts as skin: a neck in the chin's shadow keeps the face's hue while
its lightness and chroma drop, and must not become a skin-coloured top."""
MIN_CLOTHING_SHARE = 0.35
"""A sampling region needs this share of clothing-like pixels to be trusted."""
POSE_VISIBLE = 0.6


def _pose_points(frame: np.ndarray) -> np.ndarray | None:
    """(33, 3) MediaPipe pose landmarks (x px, y px, visibility) of ``frame``, None when no body is found."""
    from gaiverse.avatar.analysis import _mediapipe

    mp = _mediapipe()
    h, w = frame.shape[:2]
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
        result = pose.process(np.ascontiguousarray(frame))
    if not result.pose_landmarks:
        return None
    return np.array([(p.x * w, p.y * h, p.visibility) for p in result.pose_landmarks.landmark])


def _torso_box(pose: np.ndarray | None, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) on the chest between the shoulders (to the hips, or a torso's length when they
    are out of frame), inset from the arms; None when the shoulders are not seen."""
    if pose is None or (pose[[11, 12], 2] < POSE_VISIBLE).any():
        return None
    h, w = shape[:2]
    left, right = pose[11, :2], pose[12, :2]
    width = abs(left[0] - right[0])
    shoulder_y = 0.5 * (left[1] + right[1])
    hips_seen = (pose[[23, 24], 2] >= POSE_VISIBLE).all()
    hip_y = float(pose[[23, 24], 1].mean()) if hips_seen else shoulder_y + 1.3 * width
    y0 = int(shoulder_y + TORSO_FRACTION[0] * (hip_y - shoulder_y))
    y1 = int(min(h, shoulder_y + TORSO_FRACTION[1] * (hip_y - shoulder_y)))
    cx = 0.5 * (left[0] + right[0])
    x0, x1 = int(max(0, cx - 0.32 * width)), int(min(w, cx + 0.32 * width))
    return (x0, y0, x1, y1) if y1 - y0 >= 4 and x1 - x0 >= 4 else None


def _clothing_pixels(lab: np.ndarray, boxes: list[tuple[int, int, int, int]], background: np.ndarray,
                     skin: np.ndarray) -> np.ndarray | None:
    """Lab pixels of ``boxes`` unlike every ``background`` sample and the skin; None when too few are."""
    region = np.concatenate([lab[y0:y1, x0:x1].reshape(-1, 3) for x0, y0, x1, y1 in boxes])
    if len(region) < 30:
        return None
    if len(region) > 4000:  # a fixed subsample keeps the cost flat for large frames
        region = region[np.random.default_rng(0).choice(len(region), 4000, replace=False)]
    d_bg = np.sqrt(((region[:, None, :] - background[None]) ** 2).sum(-1)).min(1)
    hue = np.degrees(np.arctan2(region[:, 2], region[:, 1]))
    hue_gap = np.abs((hue - np.degrees(np.arctan2(skin[2], skin[1])) + 180.0) % 360.0 - 180.0)
    shaded_skin = (hue_gap < SKIN_HUE_DEG) & (np.abs(region[:, 0] - skin[0]) < SKIN_SHADE_L) \
        & (np.hypot(region[:, 1], region[:, 2]) > SKIN_SHADE_CHROMA * np.hypot(skin[1], skin[2]))
    keep = (d_bg > BACKGROUND_DE) & (np.sqrt(((region - skin) ** 2).sum(1)) > SKIN_DE) & ~shaded_skin
    return region[keep] if keep.mean() >= MIN_CLOTHING_SHARE else None


def clothing_colour(frame: np.ndarray, landmarks_px: np.ndarray, pose: np.ndarray | None = None,
                    detect_pose: bool = True) -> RGB | None:
    """Colour of the top (sRGB 0..1), or None when no clothing is seen (then ``BodyParams``' default stays).

    1. With MediaPipe pose landmarks (``pose``, (33, 3) px + visibility; detected on ``frame`` when None
       and ``detect_pose``): the chest between the shoulders, below the collar;
    2. otherwise a box below the chin, clear of the neck;
    each only when most of its pixels are unlike the background (the frame's border strips beside the
    head) and unlike the face's skin, and then the median of those pixels: a box that lands on the wall
    behind a face-only framing, or on the neck, gives None instead of a wall-coloured jumper.
    """
    from gaiverse.avatar.analysis import _background_samples, _hair, _lab_image, _skin

    lm = np.asarray(landmarks_px, dtype=np.float64)
    h, w = frame.shape[:2]
    lab = _lab_image(frame)
    skin_measure = _skin(lab, lm)
    skin = np.asarray(skin_measure.value["lab"]) if skin_measure.value else np.array([-1e3, 0.0, 0.0])
    background = _background_samples(lab, lm)
    if pose is None and detect_pose:
        pose = _pose_points(frame)
    hair_measure = _hair(lab, lm, skin if skin_measure.value else None)
    hair = np.asarray(hair_measure.value["lab"])[None] if hair_measure.value else np.empty((0, 3))
    centre, *sides = _below_chin_boxes(lm, frame.shape)
    # beside the neck, long hair falls on the shoulders: hair-coloured pixels are left out there
    for boxes, exclude in (([_torso_box(pose, frame.shape)], background), ([centre], background),
                           (sides, np.vstack([background, hair]))):
        boxes = [b for b in boxes if b is not None and b[3] - b[1] >= 4 and b[2] - b[0] >= 4]
        pixels = _clothing_pixels(lab, boxes, exclude, skin) if boxes else None
        if pixels is not None:
            return _rgb(np.median(pixels, 0))
    return None


def _below_chin_boxes(lm: np.ndarray, shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """Collar and shoulders in a head-and-shoulders framing: one box under the chin, one beside the neck
    on each side (``_clothing_pixels`` drops their background and neck pixels)."""
    h, w = shape[:2]
    chin, top = lm[152, :2], lm[10, :2]
    face_h = float(np.linalg.norm(chin - top))
    half = 0.5 * abs(lm[454, 0] - lm[234, 0])
    y0, y1 = int(chin[1] + 0.12 * face_h), int(min(h, chin[1] + 0.9 * face_h))
    centre = (int(max(0, chin[0] - 0.6 * half)), int(chin[1] + 0.3 * face_h),
              int(min(w, chin[0] + 0.6 * half)), int(min(h, chin[1] + 1.0 * face_h)))
    sides = [(int(max(0, chin[0] - 1.6 * half)), y0, int(max(0, chin[0] - 0.6 * half)), y1),
             (int(min(w, chin[0] + 0.6 * half)), y0, int(min(w, chin[0] + 1.6 * half)), y1)]
    return [centre, *sides]
