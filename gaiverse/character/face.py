"""The head: skull, eyes, lids, brows, nose, lips, mouth, tongue, ears and hair, with morph targets.

Morph targets are the 52 ARKit blendshapes (``gaiverse.npc.expression.ARKIT_BLENDSHAPES``, the
names the dialogue's expression events use) plus one target per viseme of
``gaiverse.npc.expression.VISEMES``, named ``viseme_<name>`` (the Oculus / Ready Player Me
convention; ``VISEME_TARGETS`` maps them). Each ARKit target is an analytic displacement field
over labelled face parts (lids rotate about the eye centre, the jaw about a pivot below the ears,
mouth corners move in a Gaussian neighbourhood), authored in head units (chin-to-crown = 1) and
scaled to the character; visemes are fixed mixes of ARKit targets, so lip sync and expressions
move the same geometry. Implements the face rig of NPC-b1 used by NPC-c2/NPC-d1.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from gaiverse.character.geometry import Part, ellipsoid, merge, orient_outward
from gaiverse.character.params import BodyParams, Dimensions
from gaiverse.character.skeleton import Skeleton
from gaiverse.npc.expression import ARKIT_BLENDSHAPES, VISEMES

SKIN, EYE_L, EYE_R, IRIS_L, IRIS_R, LID_L, LID_R, BROW_L, BROW_R, LIPS, MOUTH, TONGUE, HAIR, EAR = range(14)
VISEME_TARGETS = {v: f"viseme_{v}" for v in VISEMES}
"""Viseme (``expression.VISEMES``) -> morph target name."""
VISEME_MIX: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"mouthClose": 0.15, "mouthPressLeft": 0.6, "mouthPressRight": 0.6, "mouthRollLower": 0.2},
    "FF": {"mouthRollLower": 0.7, "mouthUpperUpLeft": 0.3, "mouthUpperUpRight": 0.3, "jawOpen": 0.08},
    "TH": {"tongueOut": 0.45, "jawOpen": 0.18},
    "DD": {"jawOpen": 0.25, "mouthStretchLeft": 0.2, "mouthStretchRight": 0.2},
    "kk": {"jawOpen": 0.32, "mouthStretchLeft": 0.25, "mouthStretchRight": 0.25},
    "CH": {"mouthFunnel": 0.5, "jawOpen": 0.2, "mouthPucker": 0.2},
    "SS": {"jawOpen": 0.1, "mouthStretchLeft": 0.4, "mouthStretchRight": 0.4, "mouthSmileLeft": 0.2,
           "mouthSmileRight": 0.2},
    "nn": {"jawOpen": 0.18, "mouthClose": 0.05, "tongueOut": 0.1},
    "RR": {"mouthPucker": 0.4, "mouthFunnel": 0.3, "jawOpen": 0.15},
    "aa": {"jawOpen": 0.7, "mouthLowerDownLeft": 0.2, "mouthLowerDownRight": 0.2},
    "E": {"jawOpen": 0.35, "mouthStretchLeft": 0.5, "mouthStretchRight": 0.5},
    "I": {"jawOpen": 0.2, "mouthSmileLeft": 0.5, "mouthSmileRight": 0.5, "mouthStretchLeft": 0.3,
          "mouthStretchRight": 0.3},
    "O": {"jawOpen": 0.45, "mouthFunnel": 0.6},
    "U": {"mouthPucker": 0.85, "jawOpen": 0.15},
}
"""Each viseme as weights of ARKit targets."""
MORPH_TARGETS = tuple(ARKIT_BLENDSHAPES) + tuple(VISEME_TARGETS[v] for v in VISEMES)
"""Every morph target of the head mesh, in glTF target order."""

RADII = np.array([0.36, 0.5, 0.43])
"""Skull ellipsoid half-axes in head units (x breadth, y height, z depth)."""
MOUTH_Y, MOUTH_W, MOUTH_H = -0.215, 0.085, 0.008
EYE_X, EYE_Y, EYE_R_ = 0.118, 0.045, 0.052
JAW_PIVOT = np.array([0.0, -0.02, -0.06])


@dataclass
class HeadGeometry:
    """The head in head units around its centre, before placing it on the skeleton."""

    part: Part
    lip_s: np.ndarray
    """(V,) +1 at the middle of the upper lip, -1 at the lower, 0 at the corners and off the lips."""
    landmarks: dict[str, np.ndarray]


def _skull(params: BodyParams) -> tuple[np.ndarray, np.ndarray]:
    rings, segments = 34, 44
    pos = [[0.0, 1.0, 0.0]]
    for i in range(1, rings):
        phi = np.pi * i / rings
        for j in range(segments):
            th = 2 * np.pi * j / segments
            pos.append([np.sin(phi) * np.sin(th), np.cos(phi), np.sin(phi) * np.cos(th)])
    pos.append([0.0, -1.0, 0.0])
    p = np.asarray(pos) * RADII
    low = np.clip(-p[:, 1] / RADII[1], 0.0, 1.0)
    p[:, 0] *= 1 - 0.32 * low ** 1.6  # narrower jaw and chin
    back = p[:, 2] < 0
    p[back, 2] *= 1 - 0.3 * low[back]  # the skull narrows towards the nape
    # nose ridge: from the brow down to the tip, then under to the lip
    y = p[:, 1]
    ridge = np.interp(y, [-0.16, -0.12, -0.05, 0.06, 0.12], [0.0, 0.08, 0.06, 0.02, 0.0])
    p[:, 2] += (p[:, 2] > 0) * ridge * np.exp(-(p[:, 0] / (0.05 + 0.2 * np.clip(-y - 0.05, 0, 0.1))) ** 2)
    # eye sockets
    for sx in (1.0, -1.0):
        d2 = ((p[:, 0] - sx * EYE_X) / 0.08) ** 2 + ((p[:, 1] - EYE_Y) / 0.06) ** 2
        p[:, 2] -= (p[:, 2] > 0) * 0.03 * np.exp(-d2)
    faces = []
    for j in range(segments):
        faces.append((0, 1 + j, 1 + (j + 1) % segments))
    for i in range(rings - 2):
        for j in range(segments):
            a, b = 1 + i * segments + j, 1 + i * segments + (j + 1) % segments
            faces += [(a, a + segments, b + segments), (a, b + segments, b)]
    last, base = len(p) - 1, 1 + (rings - 2) * segments
    for j in range(segments):
        faces.append((last, base + (j + 1) % segments, base + j))
    faces_arr = orient_outward(p, np.asarray(faces, dtype=np.int64), np.zeros_like(p))
    return p, faces_arr


def surface_z(skull: np.ndarray, x: float, y: float) -> float:
    """Depth of the front skull surface at (x, y): the nearest front vertex's z."""
    front = skull[skull[:, 2] > 0]
    k = np.argmin((front[:, 0] - x) ** 2 + (front[:, 1] - y) ** 2)
    return float(front[k, 2])


def _lips(skull: np.ndarray, n: int = 28, m: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed lip tube around the mouth; returns positions, faces, lip_s per vertex."""
    pos, lip_s = [], []
    for i in range(n):
        phi = 2 * np.pi * i / n
        cx, cy = MOUTH_W * np.cos(phi), MOUTH_Y + MOUTH_H * np.sin(phi)
        cz = surface_z(skull, cx, cy) - 0.004
        upper = np.sin(phi) >= 0
        r = (0.020 if upper else 0.024) * (0.55 + 0.45 * np.sqrt(max(1 - (cx / MOUTH_W) ** 2, 0.0)))
        radial = np.array([np.cos(phi) * MOUTH_H, np.sin(phi) * MOUTH_W, 0.0])
        radial /= np.linalg.norm(radial)
        for j in range(m):
            psi = 2 * np.pi * j / m
            pos.append([cx, cy, cz] + r * (np.cos(psi) * radial + np.sin(psi) * np.array([0.0, 0.0, 1.0])))
            lip_s.append(np.sin(phi))
    faces = []
    for i in range(n):
        for j in range(m):
            a, b = i * m + j, i * m + (j + 1) % m
            c, d = ((i + 1) % n) * m + j, ((i + 1) % n) * m + (j + 1) % m
            faces += [(a, c, d), (a, d, b)]
    pos_arr = np.asarray(pos)
    centres = np.repeat([[MOUTH_W * np.cos(2 * np.pi * i / n), MOUTH_Y + MOUTH_H * np.sin(2 * np.pi * i / n),
                          surface_z(skull, MOUTH_W * np.cos(2 * np.pi * i / n), MOUTH_Y) - 0.004]
                         for i in range(n)], m, axis=0)
    return pos_arr, orient_outward(pos_arr, np.asarray(faces, dtype=np.int64), centres), np.asarray(lip_s)


def _lid(center: np.ndarray, radius: float, label: int, joints: int) -> Part:
    """Upper eyelid: a shell over the top-front of the eye (polar 0..62 deg, front azimuths)."""
    pos = []
    polar = np.radians(np.linspace(2, 62, 6))
    azim = np.radians(np.linspace(-95, 95, 11))
    for ph in polar:
        for az in azim:
            pos.append(center + radius * np.array([np.sin(ph) * np.sin(az), np.cos(ph), np.sin(ph) * np.cos(az)]))
    faces = []
    for i in range(len(polar) - 1):
        for j in range(len(azim) - 1):
            a, b = i * len(azim) + j, i * len(azim) + j + 1
            faces += [(a, a + len(azim), b + len(azim)), (a, b + len(azim), b)]
    p = np.asarray(pos)
    f = orient_outward(p, np.asarray(faces, dtype=np.int64), np.tile(center, (len(p), 1)))
    return Part(p, f, np.zeros((len(p), joints)), ["skin"] * len(f), np.full(len(p), label))


def head_geometry(params: BodyParams, joints: int) -> HeadGeometry:
    """Every head part in head units (centre of the skull at the origin, face towards +Z)."""
    skull, faces = _skull(params)
    # the mouth opening: drop skull faces inside the lips so an open jaw shows the mouth
    c = skull[faces].mean(axis=1)
    hole = ((c[:, 0] / (MOUTH_W * 0.92)) ** 2 + ((c[:, 1] - MOUTH_Y) / 0.03) ** 2 < 1) & (c[:, 2] > 0)
    faces = faces[~hole]
    chin = (c[~hole][:, 1] < MOUTH_Y - 0.04) | ((np.abs(c[~hole][:, 0]) > 0.2) & (c[~hole][:, 1] < -0.05))
    skin_mat = ["hair" if params.beard and ch and cz > -0.05 else "skin" for ch, cz in zip(chin, c[~hole][:, 2])]
    parts = [Part(skull, faces, np.zeros((len(skull), joints)), skin_mat, np.full(len(skull), SKIN))]
    zero = np.zeros(joints)
    eye_z = surface_z(skull, EYE_X, EYE_Y) + 0.032 - EYE_R_
    landmarks = {}
    for sx, eye, iris, lid, brow in ((1.0, EYE_L, IRIS_L, LID_L, BROW_L), (-1.0, EYE_R, IRIS_R, LID_R, BROW_R)):
        centre = np.array([sx * EYE_X, EYE_Y, eye_z])
        landmarks[f"eye{eye}"] = centre
        parts.append(ellipsoid(centre, [EYE_R_] * 3, zero, "eye_white", 8, 12, eye))
        parts.append(ellipsoid(centre + [0, 0, EYE_R_ * 0.93], [0.024, 0.024, 0.008], zero, "iris", 5, 10, iris))
        parts.append(_lid(centre, EYE_R_ * 1.12, lid, joints))
        bz = surface_z(skull, sx * 0.12, 0.135) + 0.008
        parts.append(ellipsoid([sx * 0.12, 0.135, bz], [0.06, 0.013, 0.014], zero, "hair", 4, 10, brow))
        parts.append(ellipsoid([sx * 0.355, -0.01 + (0.05 if params.ears == "pointed" else 0.0), -0.03],
                               [0.03, 0.16 if params.ears == "pointed" else 0.095, 0.055], zero, "skin", 6, 8, EAR))
    lips_p, lips_f, lip_s_lips = _lips(skull)
    lips_start = sum(len(q.positions) for q in parts)
    parts.append(Part(lips_p, lips_f, np.zeros((len(lips_p), joints)), ["lips"] * len(lips_f),
                      np.full(len(lips_p), LIPS)))
    mz = surface_z(skull, 0.0, MOUTH_Y)
    parts.append(ellipsoid([0, MOUTH_Y - 0.01, mz - 0.07], [0.085, 0.06, 0.06], zero, "mouth", 6, 10, MOUTH))
    parts.append(ellipsoid([0, MOUTH_Y - 0.03, mz - 0.06], [0.045, 0.014, 0.05], zero, "lips", 4, 8, TONGUE))
    parts += _hair(params, zero)
    part = merge(parts)
    lip_s = np.zeros(len(part.positions))
    lip_s[lips_start:lips_start + len(lips_p)] = lip_s_lips
    landmarks["mouth"] = np.array([0.0, MOUTH_Y, mz])
    for sx, side in ((1.0, "Left"), (-1.0, "Right")):
        landmarks[f"corner{side}"] = np.array([sx * MOUTH_W, MOUTH_Y, surface_z(skull, sx * MOUTH_W, MOUTH_Y)])
        landmarks[f"cheek{side}"] = np.array([sx * 0.2, -0.1, surface_z(skull, sx * 0.2, -0.1)])
        landmarks[f"brow{side}"] = np.array([sx * 0.12, 0.135, surface_z(skull, sx * 0.12, 0.135)])
    return HeadGeometry(part, lip_s, landmarks)


def _hair(params: BodyParams, zero: np.ndarray) -> list[Part]:
    """Hair cap (cut at the hairline) and the style's extra volume."""
    if params.hair_style == "bald":
        return []
    cap = ellipsoid([0, 0.02, -0.01], RADII * [1.07, 1.0, 1.06], zero, "hair", 14, 24, HAIR)
    p = cap.positions
    hairline = np.where(p[:, 2] > 0.15, 0.24, np.where(p[:, 2] > -0.1, 0.08, -0.2))
    keep = (p[cap.faces][:, :, 1].min(axis=1) > hairline[cap.faces].min(axis=1))
    cap = Part(p, cap.faces[keep], cap.weights, ["hair"] * int(keep.sum()), cap.labels)
    parts = [cap]
    if params.hair_style == "long":
        parts.append(ellipsoid([0, -0.32, -0.3], [0.34, 0.5, 0.16], zero, "hair", 8, 14, HAIR))
    elif params.hair_style == "bun":
        parts.append(ellipsoid([0, 0.38, -0.3], [0.15, 0.14, 0.15], zero, "hair", 8, 12, HAIR))
    elif params.hair_style == "curly":  # curls: small blobs over the cap, behind the hairline
        for polar in np.radians((12, 40, 68, 96)):
            for az in np.radians(np.arange(-150, 181, 30) + 15 * (polar > 0.5)):
                d = np.array([np.sin(polar) * np.sin(az), np.cos(polar), np.sin(polar) * np.cos(az)])
                if d[2] > 0.45 and d[1] < 0.75:
                    continue
                parts.append(ellipsoid(np.array([0, 0.02, -0.01]) + RADII * [1.07, 1.0, 1.06] * d, [0.06] * 3,
                                       zero, "hair", 4, 6, HAIR))
    return parts


# ------------------------------------------------------------------ morph targets


class FaceField:
    """Per-vertex context the ARKit displacement fields are written against (head units)."""

    def __init__(self, geo: HeadGeometry):
        self.p = geo.part.positions
        self.lab = geo.part.labels
        self.lip_s = geo.lip_s
        self.lm = geo.landmarks
        face = (self.lab == SKIN) | (self.lab == LIPS) | (self.lab == HAIR)
        self.face = face & (self.p[:, 2] > -0.05)
        self.upper = np.where(self.lab == LIPS, np.sqrt(np.clip(self.lip_s, 0, 1)), 0.0)
        self.lower = np.where(self.lab == LIPS, np.sqrt(np.clip(-self.lip_s, 0, 1)), 0.0)
        jaw = (np.clip((MOUTH_Y + 0.01 - self.p[:, 1]) / 0.05, 0, 1) * ((self.lab == SKIN) | (self.lab == HAIR))
               * np.clip((self.p[:, 2] + 0.05) / 0.2, 0, 1))
        self.jaw = np.where(self.lab == LIPS, self.lower + 0.5 * (1 - self.upper - self.lower), jaw)
        self.jaw = np.where(self.lab == TONGUE, 1.0, self.jaw)
        self.jaw = np.where(self.lab == MOUTH, np.clip((MOUTH_Y - self.p[:, 1]) / 0.04, 0, 1), self.jaw)

    def zero(self) -> np.ndarray:
        return np.zeros_like(self.p)

    def gauss(self, centre, radius: float, where: np.ndarray | None = None) -> np.ndarray:
        w = np.exp(-np.sum((self.p - np.asarray(centre)) ** 2, axis=1) / radius ** 2)
        return w * (self.face if where is None else where)

    def rotation(self, mask: np.ndarray, centre, axis: str, degrees: float) -> np.ndarray:
        """Displacement rotating the masked vertices (weights 0..1) about an axis through ``centre``."""
        a = np.radians(degrees) * np.asarray(mask, dtype=np.float64)
        r = self.p - centre
        out = self.zero()
        i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
        out[:, i] = r[:, i] * np.cos(a) - r[:, j] * np.sin(a) - r[:, i]
        out[:, j] = r[:, i] * np.sin(a) + r[:, j] * np.cos(a) - r[:, j]
        return out

    def side(self, sign: float) -> np.ndarray:
        return np.clip(0.5 + sign * self.p[:, 0] / 0.08, 0, 1)


def _eye(f: FaceField, s: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eye, iris, lid = (EYE_L, IRIS_L, LID_L) if s == "Left" else (EYE_R, IRIS_R, LID_R)
    return f.lm[f"eye{eye}"], ((f.lab == eye) | (f.lab == iris)).astype(float), (f.lab == lid).astype(float)


def arkit_field(name: str, f: FaceField) -> np.ndarray:
    """Displacement (V, 3) in head units of one ARKit blendshape at weight 1."""
    s = "Left" if name.endswith("Left") else "Right" if name.endswith("Right") else ""
    sign = 1.0 if s == "Left" else -1.0
    base = name[: -len(s)] if s else name
    d = f.zero()
    if base in ("eyeBlink", "eyeSquint", "eyeWide", "eyeLookDown", "eyeLookUp", "eyeLookIn", "eyeLookOut"):
        centre, ball, lid = _eye(f, s)
        if base == "eyeBlink":
            return f.rotation(lid, centre, "x", 74)
        if base == "eyeSquint":
            return f.rotation(lid, centre, "x", 28) + f.gauss(centre + [0, -0.07, 0.02], 0.05)[:, None] * [0, 0.02, 0]
        if base == "eyeWide":
            return f.rotation(lid, centre, "x", -16)
        if base in ("eyeLookDown", "eyeLookUp"):
            deg = 18 if base == "eyeLookDown" else -15
            return f.rotation(ball, centre, "x", deg) + f.rotation(lid, centre, "x", deg * 0.5)
        inward = base == "eyeLookIn"
        return f.rotation(ball, centre, "y", (-20 if inward else 20) * sign)
    p, mouth = f.p, f.lm["mouth"]
    lips = (f.lab == LIPS).astype(float)
    if base == "jawOpen":
        return f.rotation(f.jaw, JAW_PIVOT, "x", 16)
    if base == "jawForward":
        return f.jaw[:, None] * [0, 0, 0.03]
    if base == "jaw":
        return f.jaw[:, None] * [sign * 0.03, 0, 0]
    if base == "mouthClose":
        return f.lower[:, None] * [0, 0.1, 0] + f.upper[:, None] * [0, -0.02, 0]
    if base == "mouthFunnel":
        d[:, 0] = -0.15 * (p[:, 0]) * lips
        d[:, 1] = 0.03 * f.lip_s
        d[:, 2] = 0.03 * lips + 0.015 * f.gauss(mouth, 0.12)
        return d
    if base == "mouthPucker":
        g = f.gauss(mouth, 0.12)
        d[:, 0] = -0.35 * p[:, 0] * lips - 0.15 * p[:, 0] * g
        d[:, 1] = -0.4 * (p[:, 1] - MOUTH_Y) * lips
        d[:, 2] = 0.045 * lips + 0.02 * g
        return d
    if base == "mouth" and s:
        return f.gauss(mouth, 0.15)[:, None] * [sign * 0.05, 0, 0]
    corner = f.lm.get(f"corner{s}")
    if base == "mouthSmile":
        return f.gauss(corner, 0.08)[:, None] * [sign * 0.025, 0.035, -0.01]
    if base == "mouthFrown":
        return f.gauss(corner, 0.08)[:, None] * [0, -0.035, 0]
    if base == "mouthDimple":
        return f.gauss(corner, 0.06)[:, None] * [sign * 0.015, 0, -0.02]
    if base == "mouthStretch":
        return f.gauss(corner, 0.09)[:, None] * [sign * 0.04, -0.015, -0.005]
    if base == "mouthRollLower":
        return f.lower[:, None] * [0, 0.015, -0.025]
    if base == "mouthRollUpper":
        return f.upper[:, None] * [0, -0.015, -0.025]
    if base == "mouthShrugLower":
        chin = f.gauss(mouth + [0, -0.12, 0], 0.12)
        return (f.lower + chin)[:, None] * [0, 0.03, 0]
    if base == "mouthShrugUpper":
        return (f.upper + 0.6 * f.gauss(mouth + [0, 0.05, 0], 0.07))[:, None] * [0, 0.025, 0]
    if base == "mouthPress":
        return (f.side(sign) * (f.lower - f.upper))[:, None] * [0, 0.012, 0]
    if base == "mouthLowerDown":
        return (f.side(sign) * f.lower)[:, None] * [0, -0.04, 0]
    if base == "mouthUpperUp":
        return (f.side(sign) * f.upper)[:, None] * [0, 0.035, 0]
    if base in ("browDown", "browOuterUp"):
        brow = (f.lab == (BROW_L if s == "Left" else BROW_R)).astype(float)
        skin = f.gauss(f.lm[f"brow{s}"], 0.08)
        if base == "browDown":
            return (brow + 0.6 * skin)[:, None] * [-sign * 0.01, -0.03, 0]
        outer = brow * np.clip((np.abs(p[:, 0]) - 0.08) / 0.08, 0, 1)
        return (outer + 0.5 * f.gauss(f.lm[f"brow{s}"] + [sign * 0.05, 0, 0], 0.07))[:, None] * [0, 0.04, 0]
    if base == "browInnerUp":
        brows = ((f.lab == BROW_L) | (f.lab == BROW_R)).astype(float)
        inner = brows * np.clip(1 - (np.abs(p[:, 0]) - 0.07) / 0.1, 0, 1)
        skin = f.gauss(f.lm["browLeft"] - [0.06, 0, 0], 0.07) + f.gauss(f.lm["browRight"] + [0.06, 0, 0], 0.07)
        return (inner + 0.6 * skin)[:, None] * [0, 0.04, 0]
    if base == "cheekPuff":
        for side_sign, key in ((1.0, "cheekLeft"), (-1.0, "cheekRight")):
            d += f.gauss(f.lm[key], 0.1)[:, None] * [side_sign * 0.025, 0, 0.03]
        return d
    if base == "cheekSquint":
        return f.gauss(f.lm[f"cheek{s}"] + [0, 0.06, 0], 0.07)[:, None] * [0, 0.025, 0]
    if base == "noseSneer":
        return f.gauss([sign * 0.05, -0.06, f.lm["mouth"][2] + 0.06], 0.05)[:, None] * [0, 0.02, -0.005]
    if base == "tongueOut":
        return (f.lab == TONGUE)[:, None] * np.array([0, -0.02, 0.09])
    raise ValueError(f"no displacement field for blendshape {name!r}")


@dataclass
class Head:
    """The placed head: vertices in model space, skinned to ``head``, with morph target displacements."""

    part: Part
    targets: dict[str, np.ndarray]
    """Morph target name -> (V, 3) float32 displacement in metres, in ``MORPH_TARGETS`` order."""
    uv: np.ndarray | None = None
    """Optional (V, 2) texture coordinates (glTF: origin top-left) for the ``face`` material's texture."""
    texture: bytes | None = None
    """Optional PNG/JPEG image the ``face`` material samples (a personalised avatar's photo)."""
    texture_mime: str = "image/jpeg"


def author_targets(geo: HeadGeometry) -> dict[str, np.ndarray]:
    """Every ``MORPH_TARGETS`` displacement (V, 3) in head units for ``geo`` (ARKit fields, visemes as mixes)."""
    field = FaceField(geo)
    arkit = {name: arkit_field(name, field) for name in ARKIT_BLENDSHAPES}
    targets: dict[str, np.ndarray] = dict(arkit)
    for viseme, mix in VISEME_MIX.items():
        d = field.zero()
        for shape, w in mix.items():
            d = d + w * arkit[shape]
        targets[VISEME_TARGETS[viseme]] = d
    return targets


def head_placement(skeleton: Skeleton, params: BodyParams) -> tuple[float, np.ndarray]:
    """(metres per head unit, model-space position of the head-unit origin) for this skeleton."""
    dims = Dimensions(params)
    scale = dims.head_height
    crown = skeleton.tips["head"]
    return scale, crown - np.array([0.0, scale * (RADII[1] + 0.02), -0.012 * dims.height])


def build_head(skeleton: Skeleton, params: BodyParams, warp=None) -> Head:
    """The head on the skeleton's ``head`` joint with ARKit and viseme morph targets.

    ``warp`` (optional) maps (N, 3) head-unit points to new ones before the morph targets are authored,
    so a personalised head (``gaiverse.avatar.portrait``) keeps targets that fit its own shape.
    """
    geo = head_geometry(params, len(skeleton.names))
    if warp is not None:
        geo.part.positions = warp(geo.part.positions)
        geo.landmarks = {k: warp(v[None])[0] for k, v in geo.landmarks.items()}
    targets = author_targets(geo)
    scale, centre = head_placement(skeleton, params)
    part = geo.part
    part.positions = part.positions * scale + centre
    part.weights = np.zeros_like(part.weights)
    part.weights[:, skeleton.index("head")] = 1.0
    placed = {name: (targets[name] * scale).astype(np.float32) for name in MORPH_TARGETS}
    return Head(part, placed)


def apply_weights(head: Head, weights: dict[str, float]) -> np.ndarray:
    """Head vertex positions (V, 3) with morph ``weights`` applied (for previews and tests)."""
    out = head.part.positions.copy()
    for name, w in weights.items():
        if name not in head.targets:
            raise ValueError(f"unknown morph target {name!r}")
        out += w * head.targets[name]
    return out

