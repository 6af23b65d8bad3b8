"""Head pose (yaw, pitch, roll) of a face from its MediaPipe face-mesh landmarks.

The pose is the rotation that best maps a rigid 3D face model onto the 2D landmarks (OpenCV
``solvePnP``, iterative Levenberg-Marquardt, on a pinhole camera with focal length = image width,
the usual guess for an uncalibrated webcam). The model is a subset of 47 vertices of MediaPipe's
canonical face model (``mediapipe/modules/face_geometry/data/canonical_face_model.obj``, Apache-2.0,
© Google LLC; vertex i is face-mesh landmark i, units cm): forehead, nose bridge, eye corners,
cheekbones and the upper face contour only. The mouth, lips, jaw and brows are left out because they
move while the user talks, which would be read as head rotation.

Angle conventions (degrees, camera looking at the user):
- yaw > 0: the face turns towards the image's right (the user's left); mirroring the image flips it;
- pitch > 0: the face tilts up (chin raised);
- roll > 0: the face leans clockwise in the image (the user's head tilts towards their left shoulder).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANONICAL_CM: dict[int, tuple[float, float, float]] = {
    10: (0.000000, 8.261778, 4.481535),
    151: (0.000000, 6.545390, 5.027311),
    9: (0.000000, 4.885979, 5.385258),
    8: (0.000000, 4.019042, 5.284764),
    168: (0.000000, 3.271027, 5.236015),
    6: (0.000000, 2.473255, 5.788627),
    197: (0.000000, 1.728369, 6.316750),
    195: (0.000000, 1.059413, 6.774605),
    5: (0.000000, 0.365669, 7.242870),
    4: (0.000000, -0.463170, 7.586580),
    1: (0.000000, -1.126865, 7.475604),
    33: (-4.445859, 2.663991, 3.173422),
    133: (-1.856432, 2.585245, 3.757904),
    362: (1.856432, 2.585245, 3.757904),
    263: (4.445859, 2.663991, 3.173422),
    234: (-7.664182, 0.673132, -2.435867),
    454: (7.664182, 0.673132, -2.435867),
    93: (-7.542244, -1.049282, -2.431321),
    323: (7.542244, -1.049282, -2.431321),
    127: (-7.743095, 2.364999, -2.005167),
    356: (7.743095, 2.364999, -2.005167),
    132: (-7.270895, -2.890917, -2.252455),
    361: (7.270895, -2.890917, -2.252455),
    116: (-6.465170, 0.937119, 1.689873),
    345: (6.465170, 0.937119, 1.689873),
    123: (-6.338145, -0.529279, 1.881175),
    352: (6.338145, -0.529279, 1.881175),
    50: (-4.765501, -0.701554, 3.534632),
    280: (4.765501, -0.701554, 3.534632),
    101: (-3.327324, 0.104863, 4.113860),
    330: (3.327324, 0.104863, 4.113860),
    36: (-2.844939, -0.720868, 4.433130),
    266: (2.844939, -0.720868, 4.433130),
    98: (-1.405627, -1.714196, 5.241087),
    327: (1.405627, -1.714196, 5.241087),
    129: (-1.785794, -0.978284, 4.850470),
    358: (1.785794, -0.978284, 4.850470),
    64: (-1.592294, -1.257709, 5.456949),
    294: (1.592294, -1.257709, 5.456949),
    21: (-7.087960, 5.434801, 0.099620),
    251: (7.087960, 5.434801, 0.099620),
    54: (-6.279331, 6.615427, 1.425850),
    284: (6.279331, 6.615427, 1.425850),
    103: (-5.133204, 7.485602, 2.660442),
    332: (5.133204, 7.485602, 2.660442),
    67: (-3.523964, 8.005976, 3.729163),
    297: (3.523964, 8.005976, 3.729163),
}
"""Landmark index -> canonical model vertex (x to the image's right, y up, z towards the camera; cm)."""

RIGID_IDS = np.array(sorted(CANONICAL_CM))
_MODEL_CV = np.array([CANONICAL_CM[i] for i in RIGID_IDS], dtype=np.float64) * np.array([1.0, -1.0, -1.0])
"""The model in OpenCV's camera axes (x right, y down, z away from the camera)."""


@dataclass
class HeadPose:
    """Rotation of the head relative to looking straight into the camera, and the fit's quality."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    reprojection_px: float
    """RMS distance between the fitted model's projection and the landmarks (pixels)."""
    reprojection_iod: float
    """The same divided by the inter-ocular distance (scale-free; ~0.03-0.08 for a good fit)."""


def euler_from_matrix(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a camera-frame rotation ``rot`` = Rz Ry Rx of the frontal model,
    with the signs of the module docstring."""
    yaw = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    # Camera axes: y points down and the model's nose lies at -z, so a positive rotation about y moves
    # the nose to the image's left and a positive rotation about x moves it down; both are negated.
    return float(-yaw), float(-pitch), float(roll)


def head_pose(landmarks_px: np.ndarray, image_size: tuple[int, int]) -> HeadPose:
    """Pose from (N >= 468, 2 or 3) landmarks in pixels (x, y[, z]) of an image of ``(width, height)``."""
    lm = np.asarray(landmarks_px, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] < 2:
        raise ValueError(f"`landmarks_px` must be (>=468, 2|3) face-mesh landmarks, got shape {lm.shape}")
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"`image_size` must be positive (width, height), got {image_size}")
    import cv2

    image_pts = np.ascontiguousarray(lm[RIGID_IDS, :2])
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    # Start frontal, 50 cm away: EPnP/closed-form starts can land on the mirrored solution.
    rvec, tvec = np.zeros((3, 1)), np.array([[0.0], [0.0], [50.0]])
    ok, rvec, tvec = cv2.solvePnP(_MODEL_CV, image_pts, camera, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP found no head pose for these landmarks")
    rot, _ = cv2.Rodrigues(rvec)
    projected, _ = cv2.projectPoints(_MODEL_CV, rvec, tvec, camera, None)
    rms = float(np.sqrt(((projected[:, 0, :] - image_pts) ** 2).sum(1).mean()))
    iod = float(np.linalg.norm(lm[33, :2] - lm[263, :2])) or 1.0
    yaw, pitch, roll = euler_from_matrix(rot)
    return HeadPose(round(yaw, 2) + 0.0, round(pitch, 2) + 0.0, round(roll, 2) + 0.0,  # no "-0.0"
                    round(rms, 3), round(rms / iod, 4))
