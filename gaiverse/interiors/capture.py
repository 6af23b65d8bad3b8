"""A user's room capture -> selected frames -> COLMAP camera poses: the capture half of ENV-c1.

Users film their room or take a handful of photos. Not every frame helps structure-from-motion:
motion-blurred frames give few, wrong matches, and near-identical frames cost matching time for no
new baseline. So candidates (photos, or video frames sampled at `candidate_fps`) are scored for
sharpness (variance of the Laplacian) and the selection keeps, per time segment, the sharpest one, drops
frames much blurrier than the capture's median, and drops frames that barely differ from the last kept
one (mean absolute difference of small grey thumbnails). COLMAP (Debian package `colmap`, CPU SIFT)
then extracts features, matches them and maps a sparse model; the workspace layout
(`images/`, `sparse/0/`) is what gaiverse.interiors.poses.load_scene reads, so the NeRF trains on it
unchanged. `similarity_alignment` compares recovered camera centres with known ones up to scale,
rotation and translation (the only thing SfM can recover).

Uploaded captures show the inside of someone's home: `store_capture` seals every file with the owner's own
key (`OwnerKey`: the personalization vault of docs/PRIVACY.md, as avatar captures are) and keeps no file
name of theirs; the flow opens them with the same key and seals what it derives (`DERIVED_CONTEXT`);
`delete_capture` removes a capture, its room and all their objects and catalog rows.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".m4v")


class CaptureError(ValueError):
    """The capture cannot be used (undecodable, too short, too few usable frames); the message says why."""


class ColmapError(RuntimeError):
    """COLMAP is missing or failed; the message names the step and the end of its log."""


class ColmapUnposed(ColmapError):
    """COLMAP ran but could not pose enough frames: the capture's fault, so running it again would not help."""

    retryable = False
    """Read by tasks.common.retry_transient: the flow fails at once with this message."""


@dataclass
class FrameSelectionConfig:
    """How frames are picked from a capture."""

    max_frames: int = 30
    """At most this many frames go to COLMAP (matching cost grows with the square)."""
    min_frames: int = 3
    """Fewer usable frames than this is refused: two views are not enough to check a reconstruction."""
    candidate_fps: float = 3.0
    """Video frames considered per second of video."""
    max_video_s: float = 180.0
    max_images: int = 200
    long_side_px: int = 1280
    """Frames are written with their longer side at most this long."""
    min_sharpness_ratio: float = 0.35
    """Frames with less than this share of the median sharpness are dropped as blurred."""
    min_change: float = 0.03
    """Frames whose thumbnail differs from the last kept one by less than this (mean |diff|, 0..1) are dropped."""


@dataclass
class Frame:
    """One candidate frame."""

    image: np.ndarray
    """(h, w, 3) uint8 RGB."""
    source: str
    """File name, or `<video>@<seconds>s`."""
    sharpness: float = 0.0


@dataclass
class Selection:
    """The frames kept and why the others were dropped."""

    frames: list[Frame]
    candidates: int
    dropped: dict[str, int] = field(default_factory=dict)
    median_sharpness: float = 0.0

    def summary(self) -> dict:
        return {"candidates": self.candidates, "selected": len(self.frames), **{f"dropped_{k}": v for k, v in
                                                                              self.dropped.items()},
                "median_sharpness": round(self.median_sharpness, 1),
                "sources": [f.source for f in self.frames]}


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image at 512 px on the long side (resolution-independent)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = 512 / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _thumbnail(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def decode_images(paths: Sequence[Path], config: FrameSelectionConfig | None = None) -> list[Frame]:
    """Photos -> frames (RGB). Raises CaptureError naming the first file that does not decode."""
    cfg = config or FrameSelectionConfig()
    if len(paths) > cfg.max_images:
        raise CaptureError(f"at most {cfg.max_images} photos per capture, got {len(paths)}")
    frames = []
    for path in paths:
        data = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if data is None:
            raise CaptureError(f"photo {Path(path).name!r} cannot be decoded as an image")
        frames.append(Frame(cv2.cvtColor(data, cv2.COLOR_BGR2RGB), Path(path).name))
    return frames


def decode_video(path: Path, config: FrameSelectionConfig | None = None) -> list[Frame]:
    """Candidate frames of a video (PyAV), `candidate_fps` per second. Raises CaptureError when unusable."""
    import av

    cfg = config or FrameSelectionConfig()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:  # the reason without the server's temporary path
        raise CaptureError(f"video {Path(path).name!r} cannot be opened: "
                           f"{getattr(err, 'strerror', None) or type(err).__name__}") from None
    with container:
        if not container.streams.video:
            raise CaptureError(f"video {Path(path).name!r} has no video stream")
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            container.duration / 1e6 if container.duration else None)
        if duration is not None and duration > cfg.max_video_s:
            raise CaptureError(f"video is {duration:.0f} s long; at most {cfg.max_video_s:.0f} s per capture")
        frames, next_t = [], 0.0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else next_t
                if t > cfg.max_video_s:
                    raise CaptureError(f"video runs past {cfg.max_video_s:.0f} s; at most that much per capture")
                if t + 1e-6 >= next_t:
                    frames.append(Frame(frame.to_ndarray(format="rgb24"), f"{Path(path).name}@{t:.2f}s"))
                    next_t = t + 1.0 / cfg.candidate_fps
        except av.error.FFmpegError as err:
            if not frames:
                raise CaptureError(f"video {Path(path).name!r} cannot be decoded: "
                                   f"{getattr(err, 'strerror', None) or type(err).__name__}") from None
            log.warning("video %s: decoding stopped early (%s); using %d frames", path, err, len(frames))
    if not frames:
        raise CaptureError(f"video {Path(path).name!r} has no decodable frames")
    return frames


def select_frames(frames: Sequence[Frame], config: FrameSelectionConfig | None = None) -> Selection:
    """Keep sharp, distinct frames spread over the capture (see the module docstring)."""
    cfg = config or FrameSelectionConfig()
    if not frames:
        raise CaptureError("the capture holds no frames")
    for frame in frames:
        frame.sharpness = sharpness(frame.image)
    median = float(np.median([f.sharpness for f in frames]))
    segments = np.array_split(np.arange(len(frames)), min(cfg.max_frames, len(frames)))
    best = [max(seg, key=lambda i: frames[i].sharpness) for seg in segments if len(seg)]
    blurred = [i for i in best if frames[i].sharpness < cfg.min_sharpness_ratio * median]
    kept: list[int] = []
    duplicates = 0
    for i in best:
        if i in blurred:
            continue
        if kept and float(np.abs(_thumbnail(frames[i].image) - _thumbnail(frames[kept[-1]].image)).mean()) < cfg.min_change:
            duplicates += 1
            continue
        kept.append(i)
    selection = Selection([frames[i] for i in kept], len(frames),
                          {"blurred": len(blurred), "duplicates": duplicates,
                           "same_segment": len(frames) - len(best)}, median)
    if len(kept) < cfg.min_frames:
        raise CaptureError(f"only {len(kept)} usable frames ({len(blurred)} blurred, {duplicates} near-duplicates of "
                           f"{len(frames)}); at least {cfg.min_frames} sharp, distinct views of the room are needed")
    log.info("frames: %d of %d selected (%s)", len(kept), len(frames), selection.dropped)
    return selection


def write_frames(selection: Selection, image_dir: Path, long_side_px: int = 1280) -> list[Path]:
    """JPEG files frame_000.jpg... (longer side at most `long_side_px`) for COLMAP."""
    image_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frame in enumerate(selection.frames):
        image = frame.image
        scale = long_side_px / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        path = image_dir / f"frame_{k:03d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------ COLMAP

@dataclass
class ColmapConfig:
    """COLMAP on the CPU (the Debian build has no CUDA)."""

    binary: str = "colmap"
    camera_model: Literal["SIMPLE_RADIAL", "SIMPLE_PINHOLE", "OPENCV", "PINHOLE"] = "SIMPLE_RADIAL"
    single_camera: bool = True
    """One phone, one lens: share the intrinsics across frames (more stable with few views)."""
    max_image_size: int = 1280
    max_features: int = 8192
    matcher: Literal["exhaustive", "sequential"] = "exhaustive"
    """exhaustive for photos and short captures; sequential for long videos (neighbours in time)."""
    threads: int = 2
    timeout_s: float = 1800.0


@dataclass
class ColmapResult:
    workspace: Path
    model_dir: Path
    """workspace/sparse/0: the largest model, binary."""
    images: int
    registered: int
    points: int
    registered_names: list[str]
    seconds: dict[str, float]

    def summary(self) -> dict:
        return {"images": self.images, "registered": self.registered, "points": self.points,
                "seconds": self.seconds, "model_dir": str(self.model_dir)}


def colmap_binary(config: ColmapConfig | None = None) -> str:
    cfg = config or ColmapConfig()
    found = shutil.which(cfg.binary)
    if found is None:
        raise ColmapError(f"`{cfg.binary}` is not installed (setup installs the Debian package colmap from "
                          "requirements/apt.txt: apt-get install -y colmap)")
    return found


def _run(step: str, args: list[str], workspace: Path, cfg: ColmapConfig) -> float:
    """Run one COLMAP command, its output in workspace/logs/<step>.log; returns seconds."""
    logs = workspace / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}  # COLMAP links Qt; no display here
    started = time.perf_counter()
    with (logs / f"{step}.log").open("w") as out:
        try:
            done = subprocess.run([colmap_binary(cfg), *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                  timeout=cfg.timeout_s)
        except subprocess.TimeoutExpired:
            raise ColmapError(f"COLMAP {step} did not finish within {cfg.timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = (logs / f"{step}.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise ColmapError(f"COLMAP {step} failed (exit {done.returncode}): {' | '.join(tail)}")
    return round(time.perf_counter() - started, 2)


def extract_features(workspace: Path, cfg: ColmapConfig | None = None) -> float:
    cfg = cfg or ColmapConfig()
    return _run("feature_extractor", [
        "feature_extractor", "--database_path", str(workspace / "database.db"), "--image_path",
        str(workspace / "images"), "--ImageReader.camera_model", cfg.camera_model,
        "--ImageReader.single_camera", str(int(cfg.single_camera)), "--SiftExtraction.use_gpu", "0",
        "--SiftExtraction.num_threads", str(cfg.threads), "--SiftExtraction.max_image_size", str(cfg.max_image_size),
        "--SiftExtraction.max_num_features", str(cfg.max_features)], workspace, cfg)


def match_features(workspace: Path, cfg: ColmapConfig | None = None) -> float:
    cfg = cfg or ColmapConfig()
    return _run("matcher", [
        f"{cfg.matcher}_matcher", "--database_path", str(workspace / "database.db"), "--SiftMatching.use_gpu", "0",
        "--SiftMatching.num_threads", str(cfg.threads)], workspace, cfg)


def map_sparse(workspace: Path, cfg: ColmapConfig | None = None) -> float:
    """Incremental mapping into workspace/sparse/<k>; the largest model is moved to sparse/0."""
    cfg = cfg or ColmapConfig()
    sparse = workspace / "sparse"
    if sparse.exists():
        shutil.rmtree(sparse)
    sparse.mkdir(parents=True)
    unposed = ("COLMAP could not pose the frames: they share too few features (take overlapping views of one room, "
               "move slowly, avoid blank walls)")
    try:
        seconds = _run("mapper", [
            "mapper", "--database_path", str(workspace / "database.db"), "--image_path", str(workspace / "images"),
            "--output_path", str(sparse), "--Mapper.num_threads", str(cfg.threads)], workspace, cfg)
    except ColmapError as err:  # the mapper exits 1 when no image pair matched: say what the user can change
        if "No images with matches" in str(err) or "failed to create sparse model" in str(err):
            raise ColmapUnposed(f"{unposed}; mapper: {str(err).split(': ', 1)[-1][:160]}") from None
        raise
    models = [d for d in sparse.iterdir() if (d / "images.bin").is_file()]
    if not models:
        raise ColmapUnposed(unposed)
    largest = max(models, key=lambda d: len(_registered(d)))
    if largest.name != "0":  # mapper numbers models from 0; the NeRF loader reads sparse/0
        (sparse / "0").rename(sparse / "smaller_0")
        largest.rename(sparse / "0")
    return seconds


def _registered(model_dir: Path) -> list[str]:
    from gaiverse.interiors.poses import read_colmap

    return [name for _, _, _, name in read_colmap(model_dir).images.values()]


def reconstruct(workspace: Path, cfg: ColmapConfig | None = None, min_registered: int = 3) -> ColmapResult:
    """Features, matches and a sparse model for workspace/images. Raises ColmapError when too few images register."""
    cfg = cfg or ColmapConfig()
    images = sorted(p for p in (workspace / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(images) < 2:
        raise CaptureError(f"{workspace / 'images'} holds {len(images)} images; COLMAP needs at least 2")
    seconds = {"features": extract_features(workspace, cfg), "matching": match_features(workspace, cfg),
               "mapping": map_sparse(workspace, cfg)}
    return result_of(workspace, len(images), seconds, min_registered)


def result_of(workspace: Path, n_images: int, seconds: dict[str, float], min_registered: int) -> ColmapResult:
    """The ColmapResult of workspace/sparse/0; ColmapError when fewer than `min_registered` images registered."""
    from gaiverse.interiors.poses import read_colmap

    model = read_colmap(workspace / "sparse" / "0")
    names = sorted(name for _, _, _, name in model.images.values())
    if len(names) < min_registered:
        raise ColmapUnposed(f"COLMAP registered {len(names)} of {n_images} images; at least {min_registered} are "
                          "needed (more overlap between views, more texture in the room)")
    log.info("COLMAP: %d of %d images registered, %d points", len(names), n_images, len(model.points))
    return ColmapResult(workspace, workspace / "sparse" / "0", n_images, len(names), len(model.points), names, seconds)


# ---------------------------------------------------------------------------------------------- checking

@dataclass
class Alignment:
    """Known camera centres vs recovered ones after the best similarity transform."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    rms: float
    """Root-mean-square centre error after alignment, in the known poses' units."""
    rms_relative: float
    """rms / RMS spread of the known centres (scale-free: 0 is perfect)."""
    rotation_error_deg: list[float]
    """Per camera: angle between known and aligned recovered orientation."""


def similarity_alignment(known_c2w: np.ndarray, found_c2w: np.ndarray) -> Alignment:
    """Umeyama least-squares similarity mapping recovered centres onto known ones (>= 3 cameras)."""
    if len(known_c2w) != len(found_c2w) or len(known_c2w) < 3:
        raise ValueError(f"need the same >= 3 cameras in both, got {len(known_c2w)} and {len(found_c2w)}")
    x, y = found_c2w[:, :3, 3], known_c2w[:, :3, 3]
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    cov = yc.T @ xc / len(x)
    u, s, vt = np.linalg.svd(cov)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(s) @ d) / max(xc.var(0).sum(), 1e-12))
    translation = my - scale * rotation @ mx
    aligned = (scale * (rotation @ x.T)).T + translation
    rms = float(np.sqrt(((aligned - y) ** 2).sum(1).mean()))
    spread = float(np.sqrt((yc ** 2).sum(1).mean()))
    errors = []
    for known, found in zip(known_c2w, found_c2w):
        relative = known[:3, :3].T @ rotation @ found[:3, :3]
        errors.append(float(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1)))))
    return Alignment(scale, rotation, translation, rms, rms / max(spread, 1e-12), errors)


# ------------------------------------------------------------------------------------ uploaded captures

CAPTURE_COLLECTION = "room-capture"
ROOM_STEPS: tuple[tuple[str, str], ...] = (
    ("room-fetch", "fetch"), ("room-select-frames", "frames"), ("room-colmap-features", "features"),
    ("room-colmap-matching", "matching"), ("room-colmap-mapping", "poses"), ("room-train-nerf", "train"),
    ("room-render-views", "views"), ("room-publish", "publish"))
"""(task name, step shown to the user) of the room-capture flow, in order: what its progress reports."""
ROOM_COLLECTION = "room"
SEAL_CONTEXT = b"|room-capture"
"""Authenticated context of sealed capture media (a capture blob never opens as another kind of data)."""
MEDIA_KIND = "personal/room-capture"
"""Object kind of sealed capture media: says neither the user nor what the file shows."""
DERIVED_CONTEXT = b"|room-derived"
"""Authenticated context of what the flow derives from a capture (NeRF checkpoint, atlas, views), sealed alike."""
DERIVED_KIND = "personal/room"


@dataclass
class UploadLimits:
    """What one room capture may be."""

    max_bytes: int = 512 * 1024 * 1024
    """All files together."""
    min_images: int = 3
    max_images: int = 60
    max_video_s: float = 180.0


class UploadRejected(ValueError):
    """An uploaded capture failed one check; `check` is type, count, size or decodable."""

    def __init__(self, check: Literal["type", "count", "size", "decodable"], message: str):
        super().__init__(message)
        self.check = check


def _kind_of(name: str, head: bytes) -> Literal["image", "video"] | None:
    """By extension AND magic bytes (the extension alone is the client's claim)."""
    suffix = Path(name).suffix.lower()
    if suffix in (".jpg", ".jpeg") and head.startswith(b"\xff\xd8\xff"):
        return "image"
    if suffix == ".png" and head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image"
    if suffix == ".webp" and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if suffix in (".mp4", ".mov", ".m4v") and head[4:8] == b"ftyp":
        return "video"
    if suffix in (".webm", ".mkv") and head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video"
    return None


def check_upload(files: Sequence[tuple[str, bytes]], limits: UploadLimits | None = None) -> dict:
    """One video, or `min_images`..`max_images` photos: typed, within size, decodable. Raises UploadRejected
    naming the file and the check; returns {"mode", "files", "bytes", ...} for the manifest."""
    import tempfile

    limits = limits or UploadLimits()
    if not files:
        raise UploadRejected("count", "send one `video` or 3 or more `images` of your room")
    total = sum(len(data) for _, data in files)
    if total > limits.max_bytes:
        raise UploadRejected("size", f"the capture is {total} bytes; at most {limits.max_bytes} bytes")
    kinds = []
    for name, data in files:
        kind = _kind_of(name, data[:16])
        if kind is None:
            raise UploadRejected("type", f"{name[:100]!r} is not a JPEG, PNG or WebP photo nor an MP4/MOV/WebM "
                                         "video (checked by extension and content)")
        kinds.append(kind)
    if "video" in kinds and len(files) > 1:
        raise UploadRejected("count", f"send either one video or photos, got {kinds.count('video')} videos and "
                                      f"{kinds.count('image')} photos")
    if kinds[0] == "image" and not limits.min_images <= len(files) <= limits.max_images:
        raise UploadRejected("count", f"send {limits.min_images}..{limits.max_images} photos, got {len(files)}")
    if kinds[0] == "video":
        with tempfile.TemporaryDirectory(prefix="gaiverse-room-") as tmp:
            path = Path(tmp) / Path(files[0][0]).name
            path.write_bytes(files[0][1])
            try:
                frames = decode_video(path, FrameSelectionConfig(candidate_fps=0.5, max_video_s=limits.max_video_s))
            except CaptureError as err:
                raise UploadRejected("decodable", str(err)) from None
        return {"mode": "video", "files": 1, "bytes": total, "sampled_frames": len(frames),
                "size": list(frames[0].image.shape[1::-1])}
    sizes = []
    for name, data in files:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise UploadRejected("decodable", f"photo {name[:100]!r} cannot be decoded")
        sizes.append(image.shape[1::-1])
    return {"mode": "images", "files": len(files), "bytes": total, "size": list(sizes[0])}


@dataclass(frozen=True)
class OwnerKey:
    """Seals and opens one owner's room data with their own key (the personalization vault of docs/PRIVACY.md,
    as avatar captures are): photos and videos show the inside of someone's home."""

    vault: Any
    """gaiverse.privacy.SubjectVault."""
    subject: str
    """The owner's pseudonym (KeyRing.pseudonym)."""

    def seal(self, data: bytes, context: bytes) -> bytes:
        return self.vault.seal(self.subject, data, context)

    def open(self, blob: bytes, context: bytes) -> bytes:
        return self.vault.open(self.subject, blob, context)


def store_capture(store, catalog, owner: str, files: Sequence[tuple[str, bytes]], checks: dict,
                  key: OwnerKey) -> str:
    """Seal and put the checked files, publish `room-capture/<id>` (manifest: media keys, neutral names,
    no file names of the user); returns the id. On failure the objects written are deleted again."""
    import json
    import secrets

    capture_id = "room-" + secrets.token_hex(6)
    refs = []
    try:
        media = []
        for k, (name, data) in enumerate(files):
            ref = store.put_bytes(key.seal(data, SEAL_CONTEXT), kind=MEDIA_KIND, ext="bin")
            refs.append(ref)
            media.append({"name": f"{checks['mode'][:-1]}_{k:03d}{Path(name).suffix.lower()}", "key": ref.key,
                          "bytes": len(data)})
        manifest = {"capture_id": capture_id, "owner": owner, "mode": checks["mode"], "media": media,
                    "checks": checks, "sealed": "per-user AES-256-GCM (docs/PRIVACY.md)"}
        manifest_ref = store.put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode(),
                                       kind="room-capture/manifest", ext="json")
        refs.append(manifest_ref)
        catalog.publish_version(f"{CAPTURE_COLLECTION}/{capture_id}", manifest=manifest_ref, assets=refs[:-1],
                                message=f"room capture ({checks['mode']}, {len(files)} files)", author=owner)
    except Exception:
        for ref in refs:
            store.delete(ref.key)
        raise
    return capture_id


def load_capture(store, catalog, capture_id: str, directory: Path, key: OwnerKey) -> tuple[dict, list[Path]]:
    """The capture's manifest and its media, opened with the owner's key, written into `directory`."""
    import json

    versions = catalog.versions(f"{CAPTURE_COLLECTION}/{capture_id}")
    if not versions:
        raise CaptureError(f"no room capture {capture_id!r}")
    manifest = json.loads(store.get_bytes(versions[-1].manifest_key))
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, item in enumerate(manifest["media"]):
        path = directory / f"{k:03d}_{Path(item['name']).name}"
        path.write_bytes(key.open(store.get_bytes(item["key"]), SEAL_CONTEXT))
        paths.append(path)
    return manifest, paths


def room_files(store, catalog, capture_id: str, key: OwnerKey) -> dict[str, bytes]:
    """The published room's atlas files (atlas.json, sheets, room colour/depth PNGs), opened with the owner's key;
    the NeRF checkpoint stays out. Raises CaptureError before the room is published."""
    import json

    versions = catalog.versions(f"{ROOM_COLLECTION}/{capture_id}")
    if not versions:
        raise CaptureError(f"room {capture_id!r} is not built yet")
    objects = json.loads(store.get_bytes(versions[-1].manifest_key))["objects"]
    return {name: key.open(store.get_bytes(object_key), DERIVED_CONTEXT) for name, object_key in objects.items()
            if name != "checkpoint"}


def owner_key(settings, owner: str) -> OwnerKey:
    """`owner`'s sealing key from the installation's vault (what the API sealed their capture with), for
    processes without the API's personalization service: flows, the CLI."""
    from gaiverse.avatar.capture import open_vault

    keyring, vault = open_vault(settings)
    return OwnerKey(vault, keyring.pseudonym(owner))


def room_library(store, catalog, settings, capture_id: str, owner: str | None):
    """`owner`'s room as an interior library (gaiverse.interiors.windows.load_library): the atlas opened with their
    key into a temporary folder, read, and the folder removed (the images stay in memory only). CaptureError if
    it is not their finished room."""
    import tempfile

    from gaiverse.interiors.windows import load_library

    if not owner:
        raise CaptureError(f"room capture {capture_id!r}: the world's owner is needed to open it")
    room_owner(catalog, capture_id, owner)
    with tempfile.TemporaryDirectory(prefix="gaiverse-room-atlas-") as tmp:
        atlas_json = write_room_atlas(store, catalog, capture_id, owner_key(settings, owner), Path(tmp))
        return load_library(atlas_json.parent)


def write_room_atlas(store, catalog, capture_id: str, key: OwnerKey, directory: Path) -> Path:
    """The room as an interior atlas directory `directory/<capture_id>/` (gaiverse/interiors/atlas.py format), which
    gaiverse.interiors.windows.load_library reads: how a world's windows get the owner's room. Returns atlas.json."""
    target = Path(directory) / capture_id
    target.mkdir(parents=True, exist_ok=True)
    for name, data in room_files(store, catalog, capture_id, key).items():
        (target / Path(name).name).write_bytes(data)
    return target / "atlas.json"


CAPTURE_ID_PATTERN = r"^room-[0-9a-f]{12}$"
"""What store_capture's ids look like (API paths, the build-world `room_capture_id` parameter)."""


def room_owner(catalog, capture_id: str, owner: str | None = None) -> str:
    """Who captured `capture_id`, once its room is published; CaptureError naming what is missing. With `owner`,
    another user's capture is refused like a missing one (its existence is not told). Worlds that show the room in
    their windows are built for its owner only (flows/world.py `room_capture_id`)."""
    captures = catalog.versions(f"{CAPTURE_COLLECTION}/{capture_id}")
    if not captures or (owner is not None and captures[0].author != owner):
        raise CaptureError(f"no room capture {capture_id!r}" + (f" of user {owner!r}" if owner is not None else ""))
    if not catalog.versions(f"{ROOM_COLLECTION}/{capture_id}"):
        raise CaptureError(f"room capture {capture_id!r} has no finished room yet (its run has not published one)")
    return captures[0].author


def delete_capture(store, catalog, capture_id: str) -> dict[str, int]:
    """Remove a capture and the room made from it: every version row of `room-capture/<id>` and `room/<id>`,
    the lineage, owner and asset rows of their objects, then the objects (after the commit, so no row points
    at a deleted object). An object another version still references keeps its row and bytes."""
    from storage.catalog import drop_collections  # the one reference rule of every delete in the catalog

    collections = [f"{CAPTURE_COLLECTION}/{capture_id}", f"{ROOM_COLLECTION}/{capture_id}"]
    with catalog.write() as con:
        rows = con.execute("SELECT count(*) FROM versions WHERE list_contains(?, collection)",
                           [collections]).fetchone()[0]
        authors = [r[0] for r in con.execute("SELECT DISTINCT author FROM versions WHERE list_contains(?, collection)",
                                             [collections]).fetchall()]
        _, removed = drop_collections(con, collections, authors)
    for object_key in removed:
        store.delete(object_key)
    log.info("room capture %s deleted: %d versions, %d objects", capture_id, rows, len(removed))
    return {"versions": int(rows), "objects": len(removed)}


def frames_of(paths: Sequence[Path], config: FrameSelectionConfig | None = None) -> list[Frame]:
    """Candidate frames of a stored capture: the video's sampled frames, or the photos."""
    if len(paths) == 1 and paths[0].suffix.lower() in VIDEO_SUFFIXES:
        return decode_video(paths[0], config)
    return decode_images(paths, config)
