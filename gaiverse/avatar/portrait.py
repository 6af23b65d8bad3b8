"""The personalised head (AV-c1 portrait): the user's face surface and photo on the character's head.

From the 478 MediaPipe face-mesh landmarks of the best frontal frame:

1. ``frontalise``: the landmarks (pixels, MediaPipe's relative depth) are aligned by a similarity
   (Umeyama, on the rigid forehead/nose/eye-corner points of ``head_pose``) onto MediaPipe's canonical
   face model (``data/avatar/canonical_face_model.obj``, Apache-2.0): the user's face, turned frontal and
   brought to the average face's size, so only its *shape* differs from the average face.
2. ``CANONICAL_TO_HEAD`` places the canonical frame on the character's head units (eye centres on the
   character's eyes, the mouth on its mouth), so the average face is the generic avatar's face and the
   user's face is the same surface moved by how the user differs from the average.
3. The character head is warped by a thin-plate spline from the average to the user's landmarks (eyes,
   lids, lips, brows, skull follow the face) before its ARKit/viseme morph targets are authored.
4. The face mesh itself (468 vertices, MediaPipe's 852 triangles, open at the eyes and the mouth) lies on
   the head as a mask. The skull (with hair and ears) is first proportioned to the face (breadth 1.1x the
   face's, length from a cephalic index of 0.78, underside up to the chin), then rescaled direction by
   direction so its surface meets the mask's outline (``_fit_skull``: no step in profile); the skull,
   brows, lips tube and hair under the mask are pushed just behind it, the
   eyeballs sit in its eye openings, and its own morph targets come from the same analytic ARKit fields
   (lips labelled upper/lower, upper-lid rims labelled as lids), so lip sync and expressions move it.
5. Its texture is the frame itself (UV = landmark pixel / crop size), faded to the skin colour at the
   face outline; cartoon styles posterise it.

``face_landmarks_3d`` of the built head are the mask's vertices (plus iris points), so the match of the
avatar's face to the user's (``landmark_error_iod``) is measured on the geometry that is rendered.
"""

from __future__ import annotations

import ast
import importlib.util
import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gaiverse.avatar.head_pose import RIGID_IDS
from gaiverse.character.face import (BROW_L, BROW_R, EAR, EYE_L, EYE_R, EYE_X, EYE_Y, HAIR, IRIS_L, IRIS_R, LID_L,
                                     LID_R, LIPS, MOUTH, MOUTH_Y, RADII, SKIN, TONGUE, Head, HeadGeometry,
                                     author_targets, build_head, head_geometry, head_placement)
from gaiverse.character.geometry import Part, merge, orient_outward
from gaiverse.character.params import BodyParams
from gaiverse.character.skeleton import Skeleton
from gaiverse.jsonable import to_jsonable

CANONICAL_PATH = Path(__file__).resolve().parents[2] / "data" / "avatar" / "canonical_face_model.obj"
N_MESH, N_LANDMARKS = 468, 478
OUTER_EYE = (33, 263)
EYE_RINGS = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
             (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466))
"""Eye-opening rims (the user's right eye first: image left, model -X)."""
UPPER_LIDS = ((246, 161, 160, 159, 158, 157, 173), (466, 388, 387, 386, 385, 384, 398))
LIP_OUTLINE = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
INNER_CORNERS = (78, 308)
BROW_IDS = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107, 276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
MASK_MARGIN = 0.012
"""Head units the hidden head surface stays behind the face mask (no z-fighting at any zoom)."""
TEXTURE_PX = 512
"""Longest side of the face texture."""


# ------------------------------------------------------------------ the canonical face and its topology


@lru_cache(maxsize=1)
def canonical_face() -> np.ndarray:
    """(468, 3) MediaPipe canonical face, cm, model axes (x the face's left, y up, z out of the face)."""
    rows = [line.split()[1:4] for line in CANONICAL_PATH.read_text().splitlines() if line.startswith("v ")]
    out = np.asarray(rows, dtype=np.float64)
    if out.shape != (N_MESH, 3):
        raise ValueError(f"{CANONICAL_PATH} must hold 468 vertices, found {out.shape[0]}")
    return out


@lru_cache(maxsize=1)
def face_triangles() -> np.ndarray:
    """(852, 3) triangles of MediaPipe's face mesh, wound counter-clockwise seen from the front.

    ``FACEMESH_TESSELATION`` is a frozenset of edges, but its source lists them triangle by triangle;
    the file is read as text (importing mediapipe costs ~1 s) and every (a,b),(b,c),(c,a) run is a face.
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise ImportError("mediapipe is needed for the face-mesh topology (requirements-nodeps.txt)")
    source = Path(spec.origin).parent / "python" / "solutions" / "face_mesh_connections.py"
    text = source.read_text()
    start = text.index("FACEMESH_TESSELATION = frozenset(") + len("FACEMESH_TESSELATION = frozenset(")
    pairs = ast.literal_eval(text[start:text.index("])", start) + 1])
    tris = [(a, b, d) for (a, b), (c, d), (e, f) in zip(pairs[0::3], pairs[1::3], pairs[2::3])
            if b == c and d == e and f == a]
    if len(tris) != len(pairs) // 3:
        raise ValueError("unexpected FACEMESH_TESSELATION layout: edges are not listed triangle by triangle")
    faces = np.asarray(tris, dtype=np.int64)
    pts = canonical_face()
    return orient_outward(pts, faces, np.tile([0.0, -1.0, -6.0], (len(pts), 1)))


@dataclass(frozen=True)
class Similarity:
    """x -> scale * x @ rotation.T + offset."""

    scale: float
    rotation: np.ndarray
    offset: np.ndarray

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.offset


def umeyama(source: np.ndarray, target: np.ndarray) -> Similarity:
    """Least-squares similarity mapping ``source`` (N, 3) onto ``target`` (N, 3) (Umeyama 1991)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    u, sig, vt = np.linalg.svd(t.T @ s / len(s))
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / (s ** 2).sum(1).mean())
    return Similarity(scale, rot, mu_t - scale * rot @ mu_s)


def _canonical_to_head() -> Similarity:
    """Canonical cm -> head units: the eye centres onto the character's eyes, the mouth onto its mouth,
    and the face outline onto the skull ellipsoid (depth), so the mask's rim meets the head."""
    c = canonical_face()
    eyes = np.array([c[list(ring)].mean(0) for ring in EYE_RINGS])
    mouth = c[[13, 14]].mean(0)
    src = np.array([eyes[0, :2], eyes[1, :2], mouth[:2]])
    dst = np.array([[-EYE_X, EYE_Y], [EYE_X, EYE_Y], [0.0, MOUTH_Y]])
    a = np.c_[src.reshape(-1), np.tile(np.eye(2), (3, 1))]  # scale, tx, ty
    scale, tx, ty = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)[0]
    rim = c[list(FACE_OVAL)] * scale + [tx, ty, 0.0]
    skull_z = RADII[2] * np.sqrt(np.clip(1 - (rim[:, 0] / RADII[0]) ** 2 - (rim[:, 1] / RADII[1]) ** 2, 0.02, 1))
    return Similarity(float(scale), np.eye(3), np.array([tx, ty, float(np.mean(skull_z - rim[:, 2]))]))


CANONICAL_TO_HEAD = _canonical_to_head()


def frontalise(landmarks_px: np.ndarray) -> np.ndarray:
    """(478, 3) landmarks of one frame (pixels, MediaPipe depth) -> the same face frontal in canonical cm.

    Rotation, translation and size come from the rigid points only, so an open mouth or raised brows
    stay what they are instead of tilting the whole face.
    """
    lm = np.asarray(landmarks_px, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < N_MESH or lm.shape[1] != 3 or not np.isfinite(lm).all():
        raise ValueError(f"`landmarks` must be finite (478, 3) face-mesh landmarks in pixels, got {lm.shape}")
    model_axes = lm * [1.0, -1.0, -1.0]  # image y down / depth away from the camera -> model y up / z out
    return umeyama(model_axes[RIGID_IDS], canonical_face()[RIGID_IDS])(model_axes)


def generic_landmarks_head() -> np.ndarray:
    """(478, 3) the average face in head units; iris points on the eye-opening centres (no iris there)."""
    mesh = CANONICAL_TO_HEAD(canonical_face())
    iris = []
    for ring in EYE_RINGS:
        centre = mesh[list(ring)].mean(0)
        r = 0.22 * np.linalg.norm(mesh[ring[0]] - mesh[ring[8]])
        iris += [centre, centre + [r, 0, 0], centre + [0, r, 0], centre - [r, 0, 0], centre - [0, r, 0]]
    return np.vstack([mesh, np.asarray(iris)])


def user_landmarks_head(landmarks_px: np.ndarray) -> np.ndarray:
    """(478, 3) the user's face in head units (iris points kept when the mesh was refined)."""
    front = CANONICAL_TO_HEAD(frontalise(landmarks_px))
    if len(front) >= N_LANDMARKS:
        return front[:N_LANDMARKS]
    return np.vstack([front[:N_MESH], generic_landmarks_head()[N_MESH:] + (front[:N_MESH] - CANONICAL_TO_HEAD(
        canonical_face())).mean(0)])


# ------------------------------------------------------------------ the personalised head


def _warp(generic: np.ndarray, user: np.ndarray):
    """Thin-plate spline taking the average face to the user's (anchors: every 3rd mesh landmark)."""
    from scipy.interpolate import RBFInterpolator

    ids = np.unique(np.r_[np.arange(0, N_MESH, 3), list(OUTER_EYE), 1, 13, 14, 152, 10, 61, 291])
    rbf = RBFInterpolator(generic[ids], user[ids] - generic[ids], kernel="thin_plate_spline", smoothing=1e-4)
    return lambda points: np.asarray(points, dtype=np.float64) + rbf(np.asarray(points, dtype=np.float64))


def _mask_labels(face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per mask vertex: ARKit-field label (skin, lips, upper-lid rims) and lip_s (+1 upper .. -1 lower)."""
    from matplotlib.path import Path as Polygon

    labels = np.full(N_MESH, SKIN)
    inside = Polygon(face[list(LIP_OUTLINE), :2]).contains_points(face[:N_MESH, :2], radius=1e-6)
    inside[list(LIP_OUTLINE)] = True
    labels[inside] = LIPS
    left, right = face[INNER_CORNERS[0]], face[INNER_CORNERS[1]]
    t = np.clip((face[:N_MESH, 0] - left[0]) / (right[0] - left[0]), 0, 1)
    line_y = left[1] + t * (right[1] - left[1])
    centre_x, half = 0.5 * (left[0] + right[0]), 0.5 * abs(right[0] - left[0]) * 1.25
    weight = np.clip(1 - ((face[:N_MESH, 0] - centre_x) / half) ** 2, 0.05, 1)
    lip_s = np.where(inside, np.where(face[:N_MESH, 1] >= line_y, weight, -weight), 0.0)
    for lid, rim in zip((LID_R, LID_L), UPPER_LIDS):  # the user's right eye is the model's -X one
        labels[list(rim)] = lid
    return labels, lip_s


def _mask_part(face: np.ndarray, joints: int, textured: bool) -> Part:
    """The face-mesh mask; one textured material, or skin with lips and brows coloured when untextured."""
    tris = face_triangles()
    if textured:
        materials = ["face"] * len(tris)
    else:
        labels, _ = _mask_labels(face)
        brows = np.zeros(N_MESH, bool)
        brows[list(BROW_IDS)] = True
        materials = ["lips" if (labels[t] == LIPS).all() else "hair" if brows[t].all() else "skin" for t in tris]
    return Part(face[:N_MESH].copy(), tris.copy(), np.zeros((N_MESH, joints)), materials, np.full(N_MESH, SKIN))


SKULL_CENTRE = np.array([0.0, -0.02, 0.0])
"""Head units: the point the skull is rescaled about, direction by direction (``_fit_skull``)."""
BLEND_DEG = 38.0
"""Angular reach of the rim's rescaling over the skull (Gaussian width): the step fades within it."""
REFIT_STEPS = 6


BREADTH_OVER_FACE = 1.1
"""Head breadth (eurion-eurion) / face breadth (landmarks 234-454, ~bizygomatic): ~155 / ~140 mm in adults."""
LENGTH_OVER_BREADTH = 1.28
"""Head length (glabella-opisthocranion) / breadth: a cephalic index of ~0.78, the adult average."""
CHIN_CLEARANCE = 0.03
"""Head units the skull's underside may reach below the chin landmark (the jaw's underside)."""


def _proportion_skull(head: Head, mask_positions: np.ndarray, scale: float, centre: np.ndarray) -> None:
    """Scale the skull (with hair and ears) to the face: breadth from the face's breadth, length from that
    breadth and the brow (landmark 168), underside up to the chin (landmark 152). Each factor is clipped to
    +-15 % so an odd landmark set cannot deform the head grotesquely."""
    part = head.part
    moved = np.isin(part.labels, [SKIN, HAIR, EAR])
    skull = part.positions[part.labels == SKIN]
    c = centre + SKULL_CENTRE * scale
    breadth = BREADTH_OVER_FACE * float(np.linalg.norm(mask_positions[454] - mask_positions[234]))
    sx = float(np.clip(breadth / np.ptp(skull[:, 0]), 0.85, 1.15))
    back_z = mask_positions[168, 2] - LENGTH_OVER_BREADTH * breadth
    sz_back = float(np.clip((c[2] - back_z) / (c[2] - skull[:, 2].min()), 0.85, 1.15))
    low_y = mask_positions[152, 1] - CHIN_CLEARANCE * scale
    sy_low = float(np.clip((c[1] - low_y) / (c[1] - skull[:, 1].min()), 0.85, 1.0))
    factors = np.ones_like(part.positions)
    factors[:, 0] = sx
    factors[:, 1] = np.where(part.positions[:, 1] < c[1], sy_low, 1.0)
    factors[:, 2] = np.where(part.positions[:, 2] < c[2], sz_back, 1.0)
    factors[~moved] = 1.0
    part.positions = c + (part.positions - c) * factors
    for name, delta in head.targets.items():
        head.targets[name] = (delta * factors).astype(np.float32)


def _fibonacci_directions(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    polar, azimuth = np.arccos(1 - 2 * k / n), np.pi * (1 + 5 ** 0.5) * k
    return np.c_[np.sin(polar) * np.sin(azimuth), np.cos(polar), np.sin(polar) * np.cos(azimuth)]


def _fit_skull(head: Head, mask_positions: np.ndarray, scale: float, centre: np.ndarray) -> np.ndarray:
    """Rescale the skull, hair and ears direction by direction so the skull surface meets the mask's outline.

    Seen from the head's centre, each face-oval landmark lies at some radius while the skull surface in
    that direction lies at another; the ratio (just inside the rim, so the mask's edge covers the seam)
    is spread smoothly over the sphere of directions (normalised Gaussian weights, ``BLEND_DEG``) and
    fades to 1 towards the back, so the chin, jaw, cheeks and forehead of the skull come to the mask's
    edge with no step in profile. Returns the per-vertex scale (1 for parts that were not moved).
    """
    part = head.part
    c = centre + SKULL_CENTRE * scale
    rel = part.positions - c
    radius = np.linalg.norm(rel, axis=1)
    direction = rel / np.maximum(radius, 1e-12)[:, None]
    skull = part.labels == SKIN
    rim = mask_positions[list(FACE_OVAL)] - c
    rim_r = np.linalg.norm(rim, axis=1)
    rim_d = rim / rim_r[:, None]
    cos = rim_d @ direction[skull].T  # (rim, skull vertices)
    nearest = np.argsort(-cos, axis=1)[:, :4]
    skull_r = radius[skull][nearest].mean(1)
    log_ratio = np.log((rim_r - MASK_MARGIN * scale) / skull_r)
    # anchors: the rim (its ratio) and the back half of the sphere (ratio 1)
    back = _fibonacci_directions(160)
    back = back[back[:, 2] < -0.15]
    anchors = np.vstack([rim_d, back])
    values = np.r_[log_ratio, np.zeros(len(back))]
    width = np.radians(BLEND_DEG)

    def kernel(dirs: np.ndarray) -> np.ndarray:
        k = np.exp(-(np.arccos(np.clip(dirs @ anchors.T, -1, 1)) / width) ** 2)
        return k / np.maximum(k.sum(1, keepdims=True), 1e-12)

    # a normalised Gaussian average misses the anchors; a few residual corrections make it meet them
    at_anchors, weights = kernel(anchors), values.copy()
    for _ in range(REFIT_STEPS):
        weights += values - at_anchors @ weights
    moved = np.isin(part.labels, [SKIN, HAIR, EAR])
    factor = np.where(moved, np.exp(kernel(direction) @ weights), 1.0)
    part.positions = c + rel * factor[:, None]
    for name, delta in head.targets.items():
        head.targets[name] = (delta * factor[:, None]).astype(np.float32)
    return factor


def _push_behind(head: Head, mask_positions: np.ndarray, scale: float) -> None:
    """Keep the head surface under the mask just behind it, and the eyeballs in its eye openings."""
    from scipy.interpolate import LinearNDInterpolator
    from scipy.spatial import cKDTree

    part = head.part
    p = part.positions
    margin = MASK_MARGIN * scale
    depth = LinearNDInterpolator(mask_positions[:, :2], mask_positions[:, 2])
    oval = mask_positions[list(FACE_OVAL)]
    near_oval = cKDTree(oval[:, :2])
    hidden = np.isin(part.labels, [SKIN, BROW_L, BROW_R, LIPS, MOUTH, TONGUE, HAIR])
    z_mask = depth(p[:, :2])
    dist, k = near_oval.query(p[:, :2])
    limit = np.where(np.isnan(z_mask), oval[k, 2] + 1.2 * dist, z_mask) - margin
    p[:, 2] = np.where(hidden, np.minimum(p[:, 2], limit), p[:, 2])
    for ring, group in zip(EYE_RINGS, ((EYE_R, IRIS_R, LID_R), (EYE_L, IRIS_L, LID_L))):
        members = np.isin(part.labels, group)
        rim = mask_positions[list(ring)]
        # the eye's front (iris and lid) sits just behind the rim, so the opening shows it
        front = p[members & np.isin(part.labels, group[1:]), 2].max()
        p[members, 2] += rim[:, 2].mean() - 0.25 * margin - front


@dataclass
class PortraitHead:
    """A head with the face mask merged in: the character ``Head`` plus where the mask's landmarks are."""

    head: Head
    landmarks: np.ndarray
    """(478, 3) model-space metres: the 468 mask vertices and the 10 iris points."""
    personalised: bool


def build_portrait_head(skeleton: Skeleton, params: BodyParams, landmarks_px: np.ndarray | None = None,
                        texture: tuple[bytes, np.ndarray, str] | None = None) -> PortraitHead:
    """The character head with the user's face (``landmarks_px``) or the average face (None).

    ``texture``: (image bytes, (468, 2) UVs of the mask vertices, MIME type) from ``face_texture``.
    """
    generic = generic_landmarks_head()
    face = user_landmarks_head(landmarks_px) if landmarks_px is not None else generic
    warp = _warp(generic, face) if landmarks_px is not None else None
    head = build_head(skeleton, params, warp=warp)
    joints = len(skeleton.names)
    mask = _mask_part(face, joints, textured=texture is not None)
    labels, lip_s = _mask_labels(face)
    base = head_geometry(params, joints)  # only for the face landmarks the fields are written against
    anchors = {k: (warp(v[None])[0] if warp else v) for k, v in base.landmarks.items()}
    mask_geo = HeadGeometry(Part(face[:N_MESH], mask.faces, mask.weights, mask.materials, labels), lip_s, anchors)
    mask_targets = author_targets(mask_geo)
    scale, centre = head_placement(skeleton, params)
    mask.positions = face[:N_MESH] * scale + centre
    mask.weights[:, skeleton.index("head")] = 1.0
    mask.labels = np.full(N_MESH, -1)
    _proportion_skull(head, mask.positions, scale, centre)
    _fit_skull(head, mask.positions, scale, centre)
    _push_behind(head, mask.positions, scale)
    n_head = len(head.part.positions)
    head.part = merge([head.part, mask])
    head.targets = {name: np.concatenate([d, (mask_targets[name] * scale).astype(np.float32)])
                    for name, d in head.targets.items()}
    if texture is not None:
        image, uv, mime = texture
        head.uv = np.zeros((len(head.part.positions), 2), np.float32)
        head.uv[n_head:] = uv
        head.texture, head.texture_mime = image, mime
    return PortraitHead(head, face * scale + centre, landmarks_px is not None)


# ------------------------------------------------------------------ texture


def face_texture(frame: np.ndarray, landmarks_px: np.ndarray, skin_rgb: tuple[float, float, float],
                 style: str = "realistic", max_px: int = TEXTURE_PX) -> tuple[bytes, np.ndarray, str]:
    """(JPEG bytes, (468, 2) UVs, mime) of the face cut from ``frame``, faded to ``skin_rgb`` at the outline.

    Cartoon and anime styles posterise the colours (edge-preserving smoothing, few levels, dark edges);
    stylized only smooths.
    """
    import cv2
    from PIL import Image

    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"`portrait_frame` must be an (h, w, 3) uint8 RGB array, got "
                         f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}")
    lm = np.asarray(landmarks_px, dtype=np.float64)[:N_MESH, :2]
    h, w = frame.shape[:2]
    pad = 0.04 * np.ptp(lm[:, 0])
    x0, y0 = (int(max(0, np.floor(v - pad))) for v in lm.min(0))
    x1, y1 = int(min(w, np.ceil(lm[:, 0].max() + pad))), int(min(h, np.ceil(lm[:, 1].max() + pad)))
    if x1 - x0 < 16 or y1 - y0 < 16:
        raise ValueError(f"the face is too small in `portrait_frame` for a texture ({x1 - x0}x{y1 - y0} px)")
    crop = frame[y0:y1, x0:x1].astype(np.float32)
    factor = min(max(1.0, 256 / max(crop.shape[:2])), max_px / max(crop.shape[:2]))  # small faces upsampled
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    size = (max(16, int(round(crop.shape[1] * factor))), max(16, int(round(crop.shape[0] * factor))))
    crop = cv2.resize(crop, size, interpolation=interpolation)
    pts = (lm - [x0, y0]) * [size[0] / (x1 - x0), size[1] / (y1 - y0)]
    outline = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(outline, [np.round(pts[list(FACE_OVAL)]).astype(np.int32)], 1)
    inside = cv2.distanceTransform(outline, cv2.DIST_L2, 5)
    alpha = np.clip(inside / (0.07 * size[0]), 0, 1)[..., None]
    skin = np.asarray(skin_rgb, dtype=np.float32) * 255
    crop = alpha * crop + (1 - alpha) * skin
    crop = _stylise(np.clip(crop, 0, 255).astype(np.uint8), style)
    out = io.BytesIO()
    Image.fromarray(crop).save(out, format="JPEG", quality=88)
    uv = (pts / [size[0], size[1]]).astype(np.float32)
    return out.getvalue(), uv, "image/jpeg"


def _stylise(rgb: np.ndarray, style: str) -> np.ndarray:
    import cv2

    if style == "realistic":
        return rgb
    smooth = cv2.bilateralFilter(cv2.bilateralFilter(rgb, 7, 40, 7), 7, 40, 7)
    if style == "stylized":
        return smooth
    # posterise lightness only (hue and chroma kept, smoothed), so skin stays skin-coloured
    lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB).astype(np.float32)
    levels = 5.0
    lab[..., 0] = np.round(lab[..., 0] / 255 * (levels - 1)) / (levels - 1) * 200 + 40
    lab[..., 1:] = cv2.medianBlur(lab[..., 1:].astype(np.uint8), 5)
    flat = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)
    edges = cv2.Canny(cv2.GaussianBlur(rgb, (5, 5), 0), 60, 140) > 0
    flat[edges] *= 0.45
    return np.clip(flat, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ measuring the match


def landmark_error_iod(points_3d: np.ndarray, landmarks_px: np.ndarray, image_size: tuple[int, int]) -> float:
    """RMS distance / inter-ocular distance between the user's 468 landmarks and the avatar's, projected.

    The avatar's points (model space, metres) get the head pose that fits them best (OpenCV solvePnP on a
    pinhole camera with focal length = image width, as ``head_pose``), so the score measures the face's
    shape, not where the head was turned.
    """
    import cv2

    pts = np.asarray(points_3d, dtype=np.float64)[:N_MESH]
    lm = np.asarray(landmarks_px, dtype=np.float64)[:N_MESH, :2]
    if pts.shape != (N_MESH, 3) or lm.shape != (N_MESH, 2):
        raise ValueError(f"need 468 avatar points (3D) and 468 landmarks (2D), got {pts.shape} and {lm.shape}")
    width, height = image_size
    obj = np.ascontiguousarray((pts - pts.mean(0)) * [1.0, -1.0, -1.0])
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    iod = float(np.linalg.norm(lm[OUTER_EYE[0]] - lm[OUTER_EYE[1]])) or 1.0
    distance = width * np.linalg.norm(pts[OUTER_EYE[0]] - pts[OUTER_EYE[1]]) / iod
    rvec, tvec = np.zeros((3, 1)), np.array([[0.0], [0.0], [distance]])
    ok, rvec, tvec = cv2.solvePnP(obj, np.ascontiguousarray(lm), camera, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP found no pose for the avatar's face landmarks")
    projected, _ = cv2.projectPoints(obj, rvec, tvec, camera, None)
    return float(np.sqrt(((projected[:, 0] - lm) ** 2).sum(1).mean()) / iod)


# ------------------------------------------------------------------ the whole avatar


@dataclass
class AvatarModel:
    """A built avatar: the character (personalised head on the measured body) and its exports."""

    character: Any
    """The ``gaiverse.character.Character`` (its ``head`` carries the face mask and texture)."""
    portrait: PortraitHead
    params: Any
    """The ``AvatarParams`` it was built from."""
    name: str = "avatar"
    extras: dict[str, Any] = field(default_factory=dict)

    def add_clips(self, clips: list) -> None:
        """Append animation clips (``gaiverse.character.animation.Clip``, e.g. "talk", "head_motion");
        a clip with the name of an existing one replaces it."""
        from gaiverse.character.animation import Clip
        from gaiverse.character.face import MORPH_TARGETS

        for clip in clips:
            if not isinstance(clip, Clip):
                raise ValueError(f"`clips` must hold gaiverse.character.animation.Clip objects, got {type(clip).__name__}")
            if len(clip.times) < 2 or len(clip.times) != len(clip.poses) or np.any(np.diff(clip.times) <= 0):
                raise ValueError(f"clip {clip.name!r} needs >= 2 strictly increasing times, one pose each")
            unknown = {t for _, w in clip.morph_keys for t in w} - set(MORPH_TARGETS)
            if unknown:
                raise ValueError(f"clip {clip.name!r} drives unknown morph targets {sorted(unknown)[:5]}")
            bad = set(clip.joints()) - set(self.character.skeleton.names)
            if bad:
                raise ValueError(f"clip {clip.name!r} rotates unknown joints {sorted(bad)}")
            self.character.clips = [c for c in self.character.clips if c.name != clip.name] + [clip]

    def _extras(self, extras: dict[str, Any] | None) -> dict[str, Any]:
        info = {"kind": "avatar", "personalised": self.portrait.personalised, "style": self.params.style,
                "params": self.params.to_json(), "body": self.character.params.to_dict()}
        out = {"gaiverse": {**info, **self.extras.get("gaiverse", {})}}
        for key, value in (extras or {}).items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
        return to_jsonable(out)

    def to_glb(self, extras: dict[str, Any] | None = None) -> bytes:
        """The rigged, animated .glb (glTF 2.0): body, head with face mask + texture, clips, extras."""
        return self.character.glb(self.name, self._extras(extras))

    def to_vrm(self, extras: dict[str, Any] | None = None) -> bytes:
        """The same model as VRM 1.0 (``gaiverse.avatar.vrm``), re-posed into the VRM T-pose at rest
        (clips retargeted to it)."""
        from gaiverse.avatar.vrm import glb_to_vrm, t_pose

        eyes = self.portrait.landmarks[list(EYE_RINGS[0] + EYE_RINGS[1])].mean(0)
        note = {"rest_pose": "VRM T-pose (arms along +-X); glTF clips retargeted to it, VRM runtimes "
                             "ignore them (VRMC_vrm_animation is not written)"}
        extras = dict(extras or {})
        extras["gaiverse"] = {**note, **(extras.get("gaiverse") or {})}
        glb = t_pose(self.character).glb(self.name, self._extras(extras))
        return glb_to_vrm(glb, name=self.name, eye_position=[float(v) for v in eyes])

    def face_landmarks_3d(self) -> np.ndarray:
        """(478, 3) float64 metres, model space (rest pose): MediaPipe face-mesh order, iris points last."""
        return self.portrait.landmarks.copy()

    def stats(self) -> dict[str, Any]:
        from gaiverse.character.face import MORPH_TARGETS

        ch = self.character
        head = ch.head
        texture = None
        if head.texture is not None:
            from PIL import Image

            texture = list(Image.open(io.BytesIO(head.texture)).size)
        return {"triangles": int(len(ch.body.faces) + len(head.part.faces)),
                "vertices": int(len(ch.body.positions) + len(head.part.positions)),
                "morph_targets": len(MORPH_TARGETS), "bones": len(ch.skeleton.names),
                "clips": [c.name for c in ch.clips], "texture_size": texture,
                "texture_bytes": len(head.texture) if head.texture is not None else 0,
                "glb_bytes": len(self.to_glb()), "personalised": self.portrait.personalised}

    def preview_png(self, size_px: int = 384, face: bool = False, morphs: dict[str, float] | None = None) -> bytes:
        """Front and side views (PNG); ``face=True`` frames the head only. The face texture is sampled per
        triangle, so the photo shows at the mesh's resolution."""
        from gaiverse.character.face import apply_weights
        from gaiverse.character.gltf_writer import material_colours
        from gaiverse.character.preview import png_bytes, render_views

        ch = self.character
        head = ch.head
        colours = material_colours(ch.params)
        head_rgb = np.asarray([colours[m] for m in head.part.materials], dtype=np.float64)
        if head.texture is not None and head.uv is not None:
            from PIL import Image

            image = np.asarray(Image.open(io.BytesIO(head.texture)).convert("RGB"), dtype=np.float64) / 255
            uv = head.uv[head.part.faces].mean(1)
            px = np.clip((uv * [image.shape[1], image.shape[0]]).astype(int), 0, [image.shape[1] - 1, image.shape[0] - 1])
            textured = np.asarray(head.part.materials) == "face"
            head_rgb[textured] = image[px[textured, 1], px[textured, 0]]
        head_pos = apply_weights(head, morphs or {})
        if face:
            low = head_pos[:, 1].min()
            return png_bytes(render_views(head_pos - [0, low, 0], head.part.faces, head_rgb, size_px,
                                          height_m=1.15 * float(np.ptp(head_pos[:, 1]))))
        positions = np.concatenate([ch.body.positions, head_pos])
        faces = np.concatenate([ch.body.faces, head.part.faces + len(ch.body.positions)])
        rgb = np.concatenate([np.asarray([colours[m] for m in ch.body.materials]), head_rgb])
        return png_bytes(render_views(positions, faces, rgb, size_px, height_m=max(ch.params.height_m, 1.9)))


def _check_landmarks(landmarks: np.ndarray | None) -> np.ndarray | None:
    if landmarks is None:
        return None
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] not in (N_MESH, N_LANDMARKS) or lm.shape[1] != 3 or not np.isfinite(lm).all():
        raise ValueError(f"`landmarks` must be finite (478, 3) face-mesh landmarks in pixels, got {lm.shape}")
    return lm


def build_avatar_model(analysis: dict[str, Any] | None, params, portrait_frame: np.ndarray | None,
                       landmarks: np.ndarray | None, name: str = "avatar") -> AvatarModel:
    """The avatar for ``params`` (``AvatarParams``): body from ``analysis`` (``CaptureAnalysis.to_json()``),
    head from ``landmarks`` (478x3 pixels of ``portrait_frame``), texture from ``portrait_frame``.

    ``landmarks=None`` gives the generic avatar (the average face, untextured): the baseline.
    """
    from gaiverse.avatar.appearance import body_params, clothing_colour
    from gaiverse.character import build_character

    if analysis is not None and not isinstance(analysis, dict):
        raise ValueError(f"`analysis` must be the analysis JSON (dict) or None, got {type(analysis).__name__}")
    lm = _check_landmarks(landmarks)
    if portrait_frame is not None and (not isinstance(portrait_frame, np.ndarray) or portrait_frame.dtype != np.uint8
                                       or portrait_frame.ndim != 3 or portrait_frame.shape[2] != 3):
        raise ValueError("`portrait_frame` must be an (h, w, 3) uint8 RGB array or None")
    top = clothing_colour(portrait_frame, lm) if portrait_frame is not None and lm is not None else None
    body = body_params(params, analysis, top)
    character = build_character(body)
    texture = face_texture(portrait_frame, lm, body.skin_rgb, params.style) \
        if portrait_frame is not None and lm is not None else None
    portrait = build_portrait_head(character.skeleton, body, lm, texture)
    character.head = portrait.head
    return AvatarModel(character, portrait, params, name)
