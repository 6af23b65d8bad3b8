"""Quaternion helpers for the character rig: glTF order (x, y, z, w), unit length, numpy only."""

from __future__ import annotations

import numpy as np

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def axis_angle(axis, degrees: float) -> np.ndarray:
    """Unit quaternion rotating ``degrees`` about ``axis`` (right-handed)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    half = np.radians(degrees) / 2.0
    return np.array([*(axis * np.sin(half)), np.cos(half)])


def euler(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """Rotation by ``x`` then ``y`` then ``z`` degrees about the fixed X, Y, Z axes."""
    return multiply(axis_angle([0, 0, 1], z), multiply(axis_angle([0, 1, 0], y), axis_angle([1, 0, 0], x)))


def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b: apply ``b`` first, then ``a``."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def inverse(q: np.ndarray) -> np.ndarray:
    return np.array([-q[0], -q[1], -q[2], q[3]])


def rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (..., 3) by ``q``."""
    u, w = np.asarray(q[:3]), q[3]
    v = np.asarray(v, dtype=np.float64)
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def between(a, b) -> np.ndarray:
    """Shortest-arc rotation taking direction ``a`` onto direction ``b``."""
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    d = float(np.dot(a, b))
    if d < -0.999999:  # opposite: any perpendicular axis
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        return axis_angle(axis, 180.0)
    q = np.array([*np.cross(a, b), 1.0 + d])
    return q / np.linalg.norm(q)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    d = float(np.dot(a, b))
    if d < 0:
        b, d = -b, -d
    if d > 0.9995:
        q = a + t * (b - a)
        return q / np.linalg.norm(q)
    theta = np.arccos(d)
    return (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta)


def matrix(q: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of ``q``."""
    return rotate(q, np.eye(3)).T
