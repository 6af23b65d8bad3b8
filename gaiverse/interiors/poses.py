"""Multi-view photo sets with camera poses: kapture, COLMAP (text and binary) and NeRF ``transforms.json`` into one `Scene`.

Every loader returns the same thing: undistorted pinhole images (float32 RGB in [0, 1]), one 3x3 K per
image and camera-to-world matrices in the OpenCV convention (x right, y down, z forward; world units of
the source), plus near/far bounds from the sparse points (given, or triangulated here from SIFT matches
with the known poses when the format carries none). Lens distortion (OPENCV, FULL_OPENCV, RADIAL,
SIMPLE_RADIAL, OPENCV_FISHEYE) is removed with cv2 so the NeRF only ever sees pinhole rays.

Kapture quirk handled on purpose (data/multiview/README.md): some files (kapture_indoor_floor2) write
``tx ty tz`` before the quaternion although the header says ``qw qx qy qz tx ty tz``; a row whose first
four numbers are not a unit quaternion while its last four are is read as translation + quaternion.
Implements the data side of ENV-c1.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

log = logging.getLogger(__name__)

PoseFormat = Literal["kapture", "colmap", "transforms"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


class SceneError(ValueError):
    """The scene directory cannot be read (missing files, bad numbers, unsupported camera model)."""


# --------------------------------------------------------------------------------------------- cameras

COLMAP_MODELS: dict[str, tuple[int, int]] = {
    # name: (COLMAP model id, number of parameters)
    "SIMPLE_PINHOLE": (0, 3), "PINHOLE": (1, 4), "SIMPLE_RADIAL": (2, 4), "RADIAL": (3, 5),
    "OPENCV": (4, 8), "OPENCV_FISHEYE": (5, 8), "FULL_OPENCV": (6, 12),
}
MODEL_BY_ID = {model_id: name for name, (model_id, _) in COLMAP_MODELS.items()}


@dataclass(frozen=True)
class Camera:
    """One intrinsic calibration, parameters in COLMAP/kapture order for `model`."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in COLMAP_MODELS:
            raise SceneError(f"camera model {self.model!r} is not supported (supported: {', '.join(COLMAP_MODELS)})")
        if len(self.params) != COLMAP_MODELS[self.model][1]:
            raise SceneError(f"camera model {self.model} needs {COLMAP_MODELS[self.model][1]} parameters, "
                             f"got {len(self.params)}")
        if self.width <= 0 or self.height <= 0:
            raise SceneError(f"camera size must be positive, got {self.width}x{self.height}")

    def matrix(self) -> np.ndarray:
        """(3, 3) float64 pinhole matrix of the distorted camera."""
        p = self.params
        if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            fx = fy = p[0]
            cx, cy = p[1], p[2]
        else:
            fx, fy, cx, cy = p[:4]
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)

    def distortion(self) -> np.ndarray:
        """OpenCV distortion vector (k1 k2 p1 p2 [k3 k4 k5 k6]; fisheye: k1..k4); empty for pinholes."""
        p, m = self.params, self.model
        if m in ("SIMPLE_PINHOLE", "PINHOLE"):
            return np.zeros(0)
        if m == "SIMPLE_RADIAL":
            return np.array([p[3], 0, 0, 0], dtype=np.float64)
        if m == "RADIAL":
            return np.array([p[3], p[4], 0, 0], dtype=np.float64)
        return np.array(p[4:], dtype=np.float64)


def undistort(image: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Remove lens distortion; returns (pinhole image of the same size, its (3, 3) K).

    Perspective models keep K (a few border pixels go black, which training masks out); fisheye
    frames are remapped to a pinhole with the same focal length, which keeps the central ~110° of view.
    """
    K = camera.matrix()
    dist = camera.distortion()
    if not dist.size or not np.any(dist):
        return image, K
    size = (camera.width, camera.height)
    if camera.model == "OPENCV_FISHEYE":
        map1, map2 = cv2.fisheye.initUndistortRectifyMap(K, dist, np.eye(3), K, size, cv2.CV_32FC1)
    else:
        map1, map2 = cv2.initUndistortRectifyMap(K, dist, np.eye(3), K, size, cv2.CV_32FC1)
    return cv2.remap(image, map1, map2, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0), K


def valid_mask(camera: Camera) -> np.ndarray:
    """(h, w) bool: pixels of the undistorted image that saw the scene (not the black border)."""
    ones = np.full((camera.height, camera.width), 255, np.uint8)
    return undistort(ones, camera)[0] > 127


# ---------------------------------------------------------------------------------------------- poses

def quat_to_rotation(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of a (qw, qx, qy, qz) quaternion (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rotation_to_quat(R: np.ndarray) -> np.ndarray:
    """(qw, qx, qy, qz) with qw >= 0 of a (3, 3) rotation."""
    m = np.asarray(R, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2 * math.sqrt(trace + 1)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * math.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = s / 4
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q if q[0] >= 0 else -q


def world_to_camera(q: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) world-to-camera matrix of a (qw, qx, qy, qz) + translation pose."""
    m = np.eye(4)
    m[:3, :3] = quat_to_rotation(q)
    m[:3, 3] = t
    return m


# --------------------------------------------------------------------------------------------- scenes

@dataclass
class Scene:
    """Pinhole images with poses, ready for training.

    images : (n, h, w, 3) float32 RGB in [0, 1], undistorted
    masks : (n, h, w) bool, pixels that saw the scene (False on the black border left by undistortion)
    K : (n, 3, 3) float64 pinhole intrinsics in pixels of `images`
    c2w : (n, 4, 4) float64 camera-to-world, OpenCV axes (x right, y down, z forward), source world units
    points : (p, 3) float64 sparse scene points in world units (given by the format or triangulated)
    near, far : distance bounds along the optical axis, world units
    """

    name: str
    source_format: str
    image_names: list[str]
    images: np.ndarray
    masks: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    points: np.ndarray
    near: float
    far: float
    points_source: str = "format"

    def __len__(self) -> int:
        return len(self.image_names)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def centres(self) -> np.ndarray:
        """(n, 3) camera centres in world units."""
        return self.c2w[:, :3, 3]

    def subset(self, indices: list[int] | np.ndarray) -> Scene:
        idx = np.asarray(indices, dtype=int)
        return replace(self, image_names=[self.image_names[i] for i in idx], images=self.images[idx],
                       masks=self.masks[idx], K=self.K[idx], c2w=self.c2w[idx])

    def resized(self, long_side: int) -> Scene:
        """The same scene with images whose longer edge is `long_side` pixels (area-averaged, K scaled)."""
        if long_side < 8:
            raise SceneError(f"`long_side` must be >= 8 pixels, got {long_side}")
        h, w = self.hw
        scale = long_side / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        images = np.stack([cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA) for im in self.images])
        masks = np.stack([cv2.resize(m.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA) > 0.999
                          for m in self.masks])
        K = self.K.copy()
        K[:, 0, :] *= nw / w
        K[:, 1, :] *= nh / h
        return replace(self, images=images.astype(np.float32), masks=masks, K=K)


@dataclass
class _View:
    """One image before undistortion: where it is, its calibration and its world-to-camera pose."""

    name: str
    path: Path
    camera: Camera
    w2c: np.ndarray


def _numbers(line: str) -> list[str]:
    return [token for token in re.split(r"[,\s]+", line.strip()) if token]


def _data_lines(path: Path) -> list[list[str]]:
    """Non-comment rows of a kapture/COLMAP text file, split on commas and/or whitespace."""
    if not path.is_file():
        raise SceneError(f"missing file {path}")
    return [_numbers(line) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _floats(tokens: list[str], what: str, path: Path) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError as err:
        raise SceneError(f"{path}: {what} is not numeric ({err})") from None


def _find_image(root: Path, relative: str, search: list[Path]) -> Path:
    """The image file named `relative`: under one of `search`, else the only file with that name in `root`."""
    for base in search:
        if (base / relative).is_file():
            return base / relative
    name = Path(relative).name
    for base in search:
        if (base / name).is_file():
            return base / name
    hits = [p for p in root.rglob(name) if p.is_file()]
    if len(hits) == 1:
        return hits[0]
    raise SceneError(f"image {relative!r} not found under {root}" + (f" (ambiguous: {len(hits)} files)" if hits else ""))


# ---------------------------------------------------------------------------------------------- kapture

def _kapture_root(scene_dir: Path) -> Path | None:
    for root in (scene_dir / "kapture", scene_dir):
        if (root / "sensors" / "trajectories.txt").is_file() and (root / "sensors" / "sensors.txt").is_file():
            return root
    return None


def _kapture_pose(numbers: list[float], path: Path) -> np.ndarray:
    """World-to-device (4, 4) from the 7 numbers of a kapture pose row (see the module docstring's quirk)."""
    head, tail = np.array(numbers[:4]), np.array(numbers[3:])
    if abs(np.linalg.norm(head) - 1) > 1e-3 and abs(np.linalg.norm(tail) - 1) < 1e-3:
        return world_to_camera(tail, np.array(numbers[:3]))
    if abs(np.linalg.norm(head) - 1) > 1e-3:
        raise SceneError(f"{path}: pose {numbers} has no unit quaternion")
    return world_to_camera(head, np.array(numbers[4:]))


def load_kapture_views(scene_dir: Path) -> list[_View]:
    """Views of a kapture folder: sensors.txt + trajectories.txt (+ rigs.txt) + records_camera.txt."""
    root = _kapture_root(scene_dir)
    if root is None:
        raise SceneError(f"{scene_dir} has no kapture sensors/sensors.txt + sensors/trajectories.txt")
    sensors_dir = root / "sensors"
    cameras: dict[str, Camera] = {}
    for row in _data_lines(sensors_dir / "sensors.txt"):
        if "camera" in row[1:4]:  # the name may be empty ("0, , camera") or hold spaces ("left fisheye")
            i = row.index("camera")
            model, values = row[i + 1], _floats(row[i + 2:], "camera parameters", sensors_dir / "sensors.txt")
            cameras[row[0]] = Camera(model, int(values[0]), int(values[1]), tuple(values[2:]))
    if not cameras:
        raise SceneError(f"{sensors_dir / 'sensors.txt'} lists no camera")
    rigs: dict[str, list[tuple[str, np.ndarray]]] = {}
    if (sensors_dir / "rigs.txt").is_file():
        for row in _data_lines(sensors_dir / "rigs.txt"):
            pose = _kapture_pose(_floats(row[2:9], "rig pose", sensors_dir / "rigs.txt"), sensors_dir / "rigs.txt")
            rigs.setdefault(row[0], []).append((row[1], pose))  # sensor_from_rig
    poses: dict[tuple[str, str], np.ndarray] = {}
    for row in _data_lines(sensors_dir / "trajectories.txt"):
        w2d = _kapture_pose(_floats(row[2:9], "pose", sensors_dir / "trajectories.txt"), sensors_dir / "trajectories.txt")
        if row[1] in rigs:
            for sensor, sensor_from_rig in rigs[row[1]]:
                poses[(row[0], sensor)] = sensor_from_rig @ w2d
        else:
            poses[(row[0], row[1])] = w2d
    search = [sensors_dir / "records_data", root.parent / "images", scene_dir / "images", scene_dir]
    views = []
    for row in _data_lines(sensors_dir / "records_camera.txt"):
        timestamp, device, relative = row[0], row[1], " ".join(row[2:])
        if device not in cameras or (timestamp, device) not in poses:
            log.info("kapture record %s/%s has no camera or pose; skipped", timestamp, device)
            continue
        views.append(_View(relative, _find_image(scene_dir, relative, search), cameras[device],
                           poses[(timestamp, device)]))
    return views


def load_kapture_points(scene_dir: Path) -> np.ndarray | None:
    root = _kapture_root(scene_dir)
    path = root / "reconstruction" / "points3d.txt" if root else None
    if path is None or not path.is_file():
        return None
    rows = _data_lines(path)
    return np.array([_floats(r[:3], "point", path) for r in rows], dtype=np.float64) if rows else None


# ----------------------------------------------------------------------------------------------- COLMAP

def _colmap_dir(scene_dir: Path) -> Path | None:
    for candidate in (scene_dir, scene_dir / "colmap", scene_dir / "sparse" / "0", scene_dir / "sparse",
                      scene_dir / "colmap" / "sparse" / "0"):
        for ext in ("bin", "txt"):
            if (candidate / f"cameras.{ext}").is_file() and (candidate / f"images.{ext}").is_file():
                return candidate
    return None


@dataclass
class ColmapModel:
    """A COLMAP sparse model: cameras by id, images (id -> (q, t, camera_id, name)), points (id -> xyz, rgb)."""

    cameras: dict[int, Camera] = field(default_factory=dict)
    images: dict[int, tuple[np.ndarray, np.ndarray, int, str]] = field(default_factory=dict)
    points: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def read_colmap_text(model_dir: Path) -> ColmapModel:
    """cameras.txt, images.txt (every other line holds the 2-D points) and points3D.txt if present."""
    model = ColmapModel()
    for row in _data_lines(model_dir / "cameras.txt"):
        values = _floats(row[2:], "camera", model_dir / "cameras.txt")
        model.cameras[int(row[0])] = Camera(row[1], int(values[0]), int(values[1]), tuple(values[2:]))
    lines = [line for line in (model_dir / "images.txt").read_text().splitlines() if not line.startswith("#")]
    header_lines = [_numbers(line) for line in lines[::2]]  # pose lines alternate with (possibly empty) point lines
    for row in header_lines:
        if not row:
            continue
        values = _floats(row[1:8], "image pose", model_dir / "images.txt")
        model.images[int(row[0])] = (np.array(values[:4]), np.array(values[4:7]), int(row[8]), " ".join(row[9:]))
    if (model_dir / "points3D.txt").is_file():
        for row in _data_lines(model_dir / "points3D.txt"):
            values = _floats(row[1:7], "point", model_dir / "points3D.txt")
            model.points[int(row[0])] = (np.array(values[:3]), np.array(values[3:6], dtype=np.uint8))
    return model


def read_colmap_binary(model_dir: Path) -> ColmapModel:
    """cameras.bin, images.bin and points3D.bin (if present), COLMAP's little-endian layout."""
    model = ColmapModel()
    data = (model_dir / "cameras.bin").read_bytes()
    (count,), offset = struct.unpack_from("<Q", data, 0), 8
    for _ in range(count):
        cam_id, model_id, width, height = struct.unpack_from("<iiQQ", data, offset)
        offset += 24
        if model_id not in MODEL_BY_ID:
            raise SceneError(f"{model_dir / 'cameras.bin'}: camera model id {model_id} is not supported")
        n = COLMAP_MODELS[MODEL_BY_ID[model_id]][1]
        params = struct.unpack_from(f"<{n}d", data, offset)
        offset += 8 * n
        model.cameras[cam_id] = Camera(MODEL_BY_ID[model_id], width, height, tuple(params))
    data = (model_dir / "images.bin").read_bytes()
    (count,), offset = struct.unpack_from("<Q", data, 0), 8
    for _ in range(count):
        image_id, *qt = struct.unpack_from("<i7d", data, offset)
        (camera_id,) = struct.unpack_from("<i", data, offset + 60)
        offset += 64
        end = data.index(b"\0", offset)
        name = data[offset:end].decode()
        offset = end + 1
        (n_points,) = struct.unpack_from("<Q", data, offset)
        offset += 8 + 24 * n_points
        model.images[image_id] = (np.array(qt[:4]), np.array(qt[4:]), camera_id, name)
    if (model_dir / "points3D.bin").is_file():
        data = (model_dir / "points3D.bin").read_bytes()
        (count,), offset = struct.unpack_from("<Q", data, 0), 8
        for _ in range(count):
            point_id, x, y, z, r, g, b, _error, track = struct.unpack_from("<Q3d3BdQ", data, offset)
            offset += 51 + 8 * track  # Q 3d 3B d Q = 8 + 24 + 3 + 8 + 8 bytes
            model.points[point_id] = (np.array([x, y, z]), np.array([r, g, b], dtype=np.uint8))
    return model


def write_colmap_binary(model: ColmapModel, model_dir: Path) -> None:
    """cameras.bin, images.bin (no 2-D points) and points3D.bin (empty tracks) of `model`."""
    model_dir.mkdir(parents=True, exist_ok=True)
    out = bytearray(struct.pack("<Q", len(model.cameras)))
    for cam_id, cam in model.cameras.items():
        out += struct.pack("<iiQQ", cam_id, COLMAP_MODELS[cam.model][0], cam.width, cam.height)
        out += struct.pack(f"<{len(cam.params)}d", *cam.params)
    (model_dir / "cameras.bin").write_bytes(bytes(out))
    out = bytearray(struct.pack("<Q", len(model.images)))
    for image_id, (q, t, camera_id, name) in model.images.items():
        out += struct.pack("<i7di", image_id, *q, *t, camera_id) + name.encode() + b"\0" + struct.pack("<Q", 0)
    (model_dir / "images.bin").write_bytes(bytes(out))
    out = bytearray(struct.pack("<Q", len(model.points)))
    for point_id, (xyz, rgb) in model.points.items():
        out += struct.pack("<Q3d3BdQ", point_id, *xyz, *[int(c) for c in rgb], 0.0, 0)
    (model_dir / "points3D.bin").write_bytes(bytes(out))


def read_colmap(model_dir: Path) -> ColmapModel:
    """The binary model when cameras.bin exists, else the text one."""
    return read_colmap_binary(model_dir) if (model_dir / "cameras.bin").is_file() else read_colmap_text(model_dir)


def load_colmap_views(scene_dir: Path) -> tuple[list[_View], np.ndarray | None]:
    model_dir = _colmap_dir(scene_dir)
    if model_dir is None:
        raise SceneError(f"{scene_dir} has no COLMAP cameras + images (.txt or .bin)")
    model = read_colmap(model_dir)
    search = [scene_dir / "images", model_dir / "images", model_dir.parent / "images", scene_dir]
    views = []
    for image_id in sorted(model.images):
        q, t, camera_id, name = model.images[image_id]
        if camera_id not in model.cameras:
            raise SceneError(f"{model_dir}: image {name} refers to missing camera {camera_id}")
        views.append(_View(name, _find_image(scene_dir, name, search), model.cameras[camera_id], world_to_camera(q, t)))
    points = np.stack([xyz for xyz, _ in model.points.values()]) if model.points else None
    return views, points


# ------------------------------------------------------------------------------------- transforms.json

def load_transforms_views(scene_dir: Path) -> list[_View]:
    """NeRF/instant-ngp/nerfstudio ``transforms.json``: OpenGL camera-to-world per frame, shared or per-frame intrinsics."""
    path = scene_dir / "transforms.json" if scene_dir.is_dir() else scene_dir
    root = path.parent
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SceneError(f"cannot read {path}: {err}") from None
    frames = meta.get("frames") or []
    if not frames:
        raise SceneError(f"{path} has no frames")
    views = []
    for frame in frames:
        info = {**meta, **frame}
        file_path = str(frame.get("file_path", ""))
        image = root / file_path
        if not image.is_file():
            hits = [image.with_suffix(s) for s in IMAGE_SUFFIXES if image.with_suffix(s).is_file()]
            if not hits:
                raise SceneError(f"{path}: frame image {file_path!r} not found")
            image = hits[0]
        width, height = info.get("w"), info.get("h")
        if width is None or height is None:
            probe = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
            if probe is None:
                raise SceneError(f"cannot decode {image}")
            height, width = probe.shape[:2]
        if "fl_x" in info:
            fx = float(info["fl_x"])
            fy = float(info.get("fl_y", fx))
        elif "camera_angle_x" in info:
            fx = fy = 0.5 * float(width) / math.tan(0.5 * float(info["camera_angle_x"]))
        else:
            raise SceneError(f"{path}: frame {file_path!r} has neither fl_x nor camera_angle_x")
        cx, cy = float(info.get("cx", width / 2)), float(info.get("cy", height / 2))
        dist = [float(info.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2")]
        fisheye = str(info.get("camera_model", "")).upper() == "OPENCV_FISHEYE"
        if fisheye:
            camera = Camera("OPENCV_FISHEYE", int(width), int(height),
                            (fx, fy, cx, cy, *[float(info.get(k, 0.0)) for k in ("k1", "k2", "k3", "k4")]))
        else:
            camera = Camera("OPENCV", int(width), int(height), (fx, fy, cx, cy, *dist))
        c2w_gl = np.array(frame["transform_matrix"], dtype=np.float64)
        if c2w_gl.shape != (4, 4):
            raise SceneError(f"{path}: transform_matrix of {file_path!r} is not 4x4")
        c2w = c2w_gl @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL (y up, -z forward) -> OpenCV axes
        views.append(_View(file_path, image, camera, np.linalg.inv(c2w)))
    return views


def write_transforms(scene: Scene, out_dir: Path) -> Path:
    """Write `scene` as transforms.json + PNG frames (pinhole, OpenGL axes), the instant-ngp/nerfstudio layout."""
    out_dir.mkdir(parents=True, exist_ok=True)
    h, w = scene.hw
    frames = []
    for i, name in enumerate(scene.image_names):
        file_path = f"images/{i:03d}.png"
        (out_dir / "images").mkdir(exist_ok=True)
        cv2.imwrite(str(out_dir / file_path), cv2.cvtColor((scene.images[i] * 255).round().astype(np.uint8),
                                                          cv2.COLOR_RGB2BGR))
        K = scene.K[i]
        frames.append({"file_path": file_path, "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
                       "transform_matrix": (scene.c2w[i] @ np.diag([1.0, -1.0, -1.0, 1.0])).tolist()})
    path = out_dir / "transforms.json"
    path.write_text(json.dumps({"w": w, "h": h, "frames": frames}, indent=1))
    return path


# --------------------------------------------------------------------------------------------- loading

def detect_format(scene_dir: Path) -> PoseFormat:
    """COLMAP with 3-D points, else kapture (its rigs name each sensor's images unambiguously), else COLMAP, else
    transforms.json."""
    if scene_dir.is_file() and scene_dir.suffix == ".json":
        return "transforms"
    if not scene_dir.is_dir():
        raise SceneError(f"scene {scene_dir} is not a directory")
    colmap_dir = _colmap_dir(scene_dir)
    if colmap_dir is not None and _has_colmap_points(colmap_dir):
        return "colmap"  # a reconstruction with structure beats bare poses (depth prior, near/far)
    if _kapture_root(scene_dir) is not None:
        return "kapture"
    if colmap_dir is not None:
        return "colmap"
    if (scene_dir / "transforms.json").is_file():
        return "transforms"
    raise SceneError(f"{scene_dir}: no kapture (sensors/trajectories.txt), COLMAP (cameras/images .txt|.bin) "
                     "or transforms.json found")


def _has_colmap_points(model_dir: Path) -> bool:
    if (model_dir / "points3D.bin").is_file():
        return (model_dir / "points3D.bin").stat().st_size > 8
    path = model_dir / "points3D.txt"
    return path.is_file() and any(line.strip() and not line.startswith("#") for line in path.open())


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grayscale JPEGs come back as 3 equal channels
    if image is None:
        raise SceneError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_scene(scene_dir: str | Path, long_side: int | None = None, fmt: PoseFormat | None = None,
               triangulate: bool = True) -> Scene:
    """Read a scene in any supported pose format, undistort to pinhole, optionally resize.

    long_side : longer image edge after resizing (None keeps the source size)
    triangulate : when the format has no 3-D points, triangulate SIFT matches with the known poses
        (needed for near/far and the depth prior); False falls back to bounds from the camera spread
    """
    scene_dir = Path(scene_dir)
    fmt = fmt or detect_format(scene_dir)
    points = None
    if fmt == "kapture":
        views, points = load_kapture_views(scene_dir), load_kapture_points(scene_dir)
    elif fmt == "colmap":
        views, points = load_colmap_views(scene_dir)
    elif fmt == "transforms":
        views = load_transforms_views(scene_dir)
    else:
        raise SceneError(f"`fmt` must be kapture, colmap or transforms, got {fmt!r}")
    if len(views) < 2:
        raise SceneError(f"{scene_dir}: need at least 2 posed images, found {len(views)}")
    first = views[0].camera
    images, masks, Ks = [], [], []
    for view in views:
        raw = _read_rgb(view.path)
        if raw.shape[:2] != (view.camera.height, view.camera.width):
            raise SceneError(f"{view.path}: image is {raw.shape[1]}x{raw.shape[0]}, its camera says "
                             f"{view.camera.width}x{view.camera.height}")
        image, K = undistort(raw, view.camera)
        mask = valid_mask(view.camera)
        if (view.camera.width, view.camera.height) != (first.width, first.height):
            sx, sy = first.width / view.camera.width, first.height / view.camera.height
            image = cv2.resize(image, (first.width, first.height), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask.astype(np.uint8), (first.width, first.height), interpolation=cv2.INTER_NEAREST) > 0
            K = np.diag([sx, sy, 1.0]) @ K
        images.append(image.astype(np.float32) / 255.0)
        masks.append(mask)
        Ks.append(K)
    c2w = np.stack([np.linalg.inv(v.w2c) for v in views])
    scene = Scene(name=scene_dir.name if scene_dir.is_dir() else scene_dir.parent.name, source_format=fmt,
                  image_names=[v.name for v in views], images=np.stack(images), masks=np.stack(masks),
                  K=np.stack(Ks), c2w=c2w, points=np.zeros((0, 3)), near=0.0, far=0.0)
    if long_side:
        scene = scene.resized(long_side)
    if points is None or len(points) < 8:
        points = triangulate_points(scene) if triangulate else np.zeros((0, 3))
        scene.points_source = "triangulated" if len(points) else "none"
    scene.points = points
    scene.near, scene.far = depth_bounds(scene)
    log.info("loaded %s (%s): %d images %dx%d, %d points (%s), near %.3g far %.3g", scene.name, fmt, len(scene),
             scene.hw[1], scene.hw[0], len(points), scene.points_source, scene.near, scene.far)
    return scene


# ------------------------------------------------------------------------------- points and depth bounds

def point_depths(scene: Scene, i: int, points: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Depth (z, world units) and pixel (u, v) of `points` seen in image `i` (only those in front and inside)."""
    pts = scene.points if points is None else points
    w2c = np.linalg.inv(scene.c2w[i])
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    front = z > 1e-9
    uv = (cam[front] / z[front, None]) @ scene.K[i].T
    h, w = scene.hw
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    return z[front][inside], uv[inside, :2]


def depth_bounds(scene: Scene) -> tuple[float, float]:
    """near/far along the optical axis: 5th/99th percentile of point depths with margins (the low tail of
    triangulated points holds mismatches a few cm from the camera), else from the camera spread."""
    depths = np.concatenate([point_depths(scene, i)[0] for i in range(len(scene))]) if len(scene.points) else []
    if len(depths) >= 8:
        return float(np.percentile(depths, 5) * 0.5), float(np.percentile(depths, 99) * 2.0)
    spread = float(np.max(np.linalg.norm(scene.centres - scene.centres.mean(0), axis=1)))
    spread = spread if spread > 0 else 1.0
    return 0.05 * spread, 20.0 * spread


def triangulate_points(scene: Scene, max_reprojection_px: float = 2.0) -> np.ndarray:
    """(p, 3) points triangulated from SIFT matches between every image pair with the known poses.

    Keeps matches that pass Lowe's ratio test, lie in front of both cameras and reproject within
    `max_reprojection_px` in both images; wrong poses give almost none, which tests use to check conventions.
    """
    sift = cv2.SIFT_create(nfeatures=2000)
    features = []
    for image, mask in zip(scene.images, scene.masks):
        gray = cv2.cvtColor((image * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        features.append(sift.detectAndCompute(gray, mask.astype(np.uint8) * 255))
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    points = []
    for i in range(len(scene)):
        for j in range(i + 1, len(scene)):
            (kp_i, des_i), (kp_j, des_j) = features[i], features[j]
            if des_i is None or des_j is None or len(kp_i) < 2 or len(kp_j) < 2:
                continue
            good = [m for m, n in (p for p in matcher.knnMatch(des_i, des_j, k=2) if len(p) == 2)
                    if m.distance < 0.75 * n.distance]
            if len(good) < 8:
                continue
            a = np.float64([kp_i[m.queryIdx].pt for m in good])
            b = np.float64([kp_j[m.trainIdx].pt for m in good])
            points.append(_triangulate_pair(scene, i, j, a, b, max_reprojection_px))
    return np.concatenate(points) if points else np.zeros((0, 3))


def _triangulate_pair(scene: Scene, i: int, j: int, a: np.ndarray, b: np.ndarray, max_px: float) -> np.ndarray:
    P = [scene.K[k] @ np.linalg.inv(scene.c2w[k])[:3] for k in (i, j)]
    homogeneous = cv2.triangulatePoints(P[0], P[1], a.T, b.T)
    xyz = (homogeneous[:3] / homogeneous[3]).T
    keep = np.ones(len(xyz), bool)
    for Pk, uv in zip(P, (a, b)):
        proj = np.c_[xyz, np.ones(len(xyz))] @ Pk.T
        keep &= proj[:, 2] > 0
        keep &= np.linalg.norm(proj[:, :2] / proj[:, 2:3] - uv, axis=1) < max_px
    return xyz[keep]
