"""Measuring a talking-face video and an avatar on the same scales, for the match evaluation (AV-c).

What a user looks and sounds like comes from the capture analysis (``gaiverse.avatar.analysis``: face-mesh
landmarks, skin/hair CIELAB, F0, MFCC timbre) and the lip-sync targets (``gaiverse.avatar.lipsync_targets``:
inner-lip gap per frame, soundtrack aligned with the frames). This module adds what comparing an avatar
with them needs:

* ``load_talking_video`` — checks a file really is a talking-face video with sound (clear errors for a
  missing file, a still image, no audio track, no speech, no face) and splits it in time;
* ``fit_landmarks`` — projects an avatar's 3D face landmarks onto a frame with the head pose that fits
  them best (PnP on the same pinhole camera as ``head_pose``) and measures the remaining distance;
* ``mfcc_distance`` / ``semitones`` — timbre and pitch differences (the spectral-envelope distance is the
  voice engine's mel-cepstral distortion, ``voice.average_envelope_cepstrum``);
* ``slice_targets`` — a time part of the lip-sync targets, for scoring lip-sync on frames the avatar
  was not built from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gaiverse.avatar.lipsync_targets import LipsyncTargets

log = logging.getLogger(__name__)

MESH_POINTS = 468
"""Face-mesh landmarks compared (the 10 iris points are left out: not every face model has them)."""
OUTER_EYE = (33, 263)
"""Outer eye corners: their distance is the inter-ocular distance (IOD) every length is divided by."""
MAX_VIDEO_S = 600.0
MIN_SPEECH_S = 0.4
"""Voiced audio needed (about one word), as for a capture (``capture.CaptureLimits.min_speech_s``)."""
MIN_FRAMES = 8
STILL_IMAGE_FORMATS = ("image2", "jpeg_pipe", "png_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif",
                       "gif_pipe", "apng", "pgm_pipe", "ppm_pipe", "qoi_pipe")
"""FFmpeg demuxers that read single pictures: such a file is refused as a still image."""


@dataclass
class TalkingVideo:
    """A decoded talking-face video: frames (shrunk), mouth measures per frame and the aligned soundtrack."""

    path: Path
    fps: float
    frames: list[np.ndarray]
    """RGB uint8 frames (longer side <= 640 px), every ``stride``-th frame of the video."""
    frame_index: np.ndarray
    """Index in the video of each kept frame."""
    targets: LipsyncTargets
    """Inner-lip gap etc. of every frame, and the 16 kHz soundtrack (sample 0 = time of frame 0)."""
    speech: dict[str, float]
    """Voiced seconds and levels of the soundtrack (``capture.speech_measures``)."""
    container: str
    codecs: dict[str, str]

    @property
    def n_frames(self) -> int:
        return self.targets.n_frames

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    @property
    def audio(self) -> np.ndarray:
        return self.targets.audio

    @property
    def audio_rate(self) -> int:
        return self.targets.audio_rate

    def split_frame(self, fraction: float) -> int:
        """First frame of the second part when the first ``fraction`` of the video is the build part."""
        return int(round(self.n_frames * fraction))

    def part(self, first: int, stop: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Kept frames whose video index is in [first, stop), and the soundtrack of those frames."""
        keep = [i for i, k in enumerate(self.frame_index) if first <= k < stop]
        rate = self.audio_rate
        audio = self.audio[int(first / self.fps * rate): int(stop / self.fps * rate)]
        return [self.frames[i] for i in keep], audio


def _probe(path: Path) -> tuple[str, dict[str, str]]:
    """(container format, codec per stream kind); ValueError naming what is wrong with the file."""
    import av

    if not path.is_file():
        raise ValueError(f"`video` {str(path)!r} does not exist (or is not a file)")
    if path.stat().st_size == 0:
        raise ValueError(f"`video` {str(path)!r} is empty")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"`video` {str(path)!r} is not a media file PyAV/FFmpeg can read: {err}") from None
    with container:
        name = container.format.name
        if name.split(",")[0] in STILL_IMAGE_FORMATS:
            raise ValueError(f"`video` {str(path)!r} is a still image ({name}), not a video: give a "
                             "talking-face video with sound")
        if not container.streams.video:
            raise ValueError(f"`video` {str(path)!r} has no video stream ({name}): give a talking-face "
                             "video with sound")
        if not container.streams.audio:
            raise ValueError(f"`video` {str(path)!r} has no audio track: the evaluation compares the "
                             "avatar's voice and lip-sync with the user's, so it needs a video with sound")
        codecs = {"video": container.streams.video[0].codec_context.name,
                  "audio": container.streams.audio[0].codec_context.name}
    return name, codecs


def _check_speech(path: Path, audio: np.ndarray, rate: int) -> dict[str, float]:
    from gaiverse.avatar.capture import speech_measures

    if audio.size < rate * 0.5:
        raise ValueError(f"`video` {str(path)!r}: its soundtrack lasts {audio.size / rate:.2f} s; at least "
                         "0.5 s of speech is needed")
    speech = speech_measures(audio, rate)
    if speech["speech_s"] < MIN_SPEECH_S:
        raise ValueError(f"`video` {str(path)!r} has no speech in its soundtrack ({speech['speech_s']:.1f} s "
                         f"voiced, peak {speech['audio_peak_dbfs']:.0f} dBFS; at least {MIN_SPEECH_S} s of "
                         "voiced speech needed)")
    return speech


def load_talking_video(path: str | Path, max_frames: int = 400) -> TalkingVideo:
    """Decode and check a talking-face video with sound (any container/codec FFmpeg reads, up to 10 min).

    ``max_frames`` bounds the frames kept in memory for landmarks and colours (evenly spaced); the mouth
    is measured in every frame. Raises ValueError naming the file and what is missing.
    """
    from gaiverse.avatar.lipsync_targets import extract_targets, iter_frames, video_info

    path = Path(path)
    container, codecs = _probe(path)
    info = video_info(path)  # refuses videos over lipsync_targets.MAX_VIDEO_S
    if not np.isfinite(info.fps) or info.fps <= 0:
        raise ValueError(f"`video` {str(path)!r} declares no usable frame rate ({info.fps})")
    from gaiverse.vision.video import AUDIO_RATE, decode_audio

    audio = decode_audio(path, max_seconds=MAX_VIDEO_S)
    if audio is None or audio.size == 0:
        raise ValueError(f"`video` {str(path)!r}: its audio track cannot be decoded")
    speech = _check_speech(path, audio, AUDIO_RATE)
    targets = extract_targets(path)  # mouth per frame; refuses videos with a face in < 50 % of the frames
    if targets.n_frames < MIN_FRAMES:
        raise ValueError(f"`video` {str(path)!r} has only {targets.n_frames} frames; at least {MIN_FRAMES} "
                         "needed")
    stride = max(1, int(np.ceil(targets.n_frames / max_frames)))
    frames, index = [], []
    for i, frame in enumerate(iter_frames(path)):
        if i % stride == 0:
            frames.append(frame)
            index.append(i)
    log.info("decoded %s: %d frames at %.2f fps, kept %d", path.name, targets.n_frames, info.fps, len(frames))
    return TalkingVideo(path=path, fps=targets.fps, frames=frames, frame_index=np.array(index),
                        targets=targets, speech=speech, container=container, codecs=codecs)


def slice_targets(targets: LipsyncTargets, first: int, stop: int) -> LipsyncTargets:
    """Frames [first, stop) of ``targets`` with the matching audio (sample 0 = time of frame ``first``)."""
    rate, fps = targets.audio_rate, targets.fps
    audio = targets.audio[int(round(first / fps * rate)): int(round(stop / fps * rate))]
    found = targets.found[first:stop] if targets.found.size else targets.found
    return replace(targets, name=f"{targets.name}[{first}:{stop}]", open=targets.open[first:stop],
                   width=targets.width[first:stop], lift_l=targets.lift_l[first:stop],
                   lift_r=targets.lift_r[first:stop], audio=audio, found=found)


# -- landmarks ---------------------------------------------------------------------------------------------

@dataclass
class LandmarkFit:
    """An avatar's face landmarks posed onto one frame."""

    error_iod: float
    """Mean distance between projected avatar landmarks and the user's, over the inter-ocular distance."""
    rms_iod: float
    projected: np.ndarray
    """(N, 2) pixels."""


def fit_landmarks(model_m: np.ndarray, image_px: np.ndarray, image_size: tuple[int, int],
                  focal_widths: float = 1.0) -> LandmarkFit:
    """Pose ``model_m`` ((N, 3) metres, +Y up, the face looking along +Z) so that its projection best
    matches ``image_px`` ((N, 2+) pixels of the same landmarks) and measure what remains.

    The camera is centred with focal length ``focal_widths`` image widths (1 = the uncalibrated-webcam guess
    of ``head_pose``; large = nearly orthographic); the pose (rotation + translation, i.e. head pose and
    distance) is fitted by Levenberg-Marquardt PnP from a frontal start at the distance the eye spacing
    implies. Only the shape can make the error small: another face shape keeps an error at its best pose.
    """
    import cv2

    model = np.asarray(model_m, dtype=np.float64)
    image = np.asarray(image_px, dtype=np.float64)[:, :2]
    if model.ndim != 2 or model.shape[1] != 3 or model.shape[0] != image.shape[0] or model.shape[0] < 6:
        raise ValueError(f"`model_m` must be (N >= 6, 3) and match `image_px` ({image.shape}), "
                         f"got {model.shape}")
    width, height = image_size
    model_cv = np.ascontiguousarray(model * np.array([1.0, -1.0, -1.0]))  # OpenCV camera axes
    centre = model_cv.mean(0)
    model_cv -= centre
    focal = focal_widths * width
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    iod_px = float(np.linalg.norm(image[OUTER_EYE[0]] - image[OUTER_EYE[1]])) if image.shape[0] > 263 else \
        float(np.ptp(image[:, 0])) / 1.6
    iod_m = float(np.linalg.norm(model[OUTER_EYE[0]] - model[OUTER_EYE[1]])) if model.shape[0] > 263 else \
        float(np.ptp(model[:, 0])) / 1.6
    mid = image.mean(0)
    z = focal * iod_m / max(iod_px, 1e-6)
    tvec = np.array([[(mid[0] - width / 2) * z / focal], [(mid[1] - height / 2) * z / focal], [z]])
    ok, rvec, tvec = cv2.solvePnP(model_cv, np.ascontiguousarray(image), camera, None, np.zeros((3, 1)), tvec,
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP found no pose for the avatar's landmarks on this frame")
    projected = cv2.projectPoints(model_cv, rvec, tvec, camera, None)[0][:, 0, :]
    dist = np.linalg.norm(projected - image, axis=1)
    return LandmarkFit(float(dist.mean() / iod_px), float(np.sqrt((dist ** 2).mean()) / iod_px), projected)


FOCAL_WIDTHS = (1.0, 20.0)
"""Cameras tried per frame, the better fit kept: the webcam guess, and a nearly orthographic one. MediaPipe's
landmarks are a weak-perspective reconstruction (x, y in pixels, z scaled like x), so a face built from them
is reproduced exactly only by the second; a true 3D head under a close camera prefers the first."""


def landmark_error(model_m: np.ndarray, frames_px: list[np.ndarray], image_size: tuple[int, int]) -> dict:
    """Mean/median/p90 over frames (each (>= 468, 2|3) face-mesh landmarks in pixels) of the error of the
    best-fitting pose and camera (``FOCAL_WIDTHS``)."""
    if not frames_px:
        raise ValueError("`frames_px` is empty: no frame with a face to compare the avatar with")
    n = min(MESH_POINTS, model_m.shape[0])
    errors = np.array([min(fit_landmarks(model_m[:n], lm[:n], image_size, focal).error_iod
                           for focal in FOCAL_WIDTHS) for lm in frames_px])
    return {"mean": float(errors.mean()), "median": float(np.median(errors)),
            "p90": float(np.percentile(errors, 90)), "frames": int(errors.size), "points": int(n)}


# -- voice ---------------------------------------------------------------------------------------------

def mfcc_distance(a: list[float], b: list[float]) -> float:
    """Euclidean distance of two mean-MFCC vectors without c0 (loudness): a timbre distance."""
    return float(np.linalg.norm(np.asarray(a[1:]) - np.asarray(b[1:])))


def semitones(f_hz: float, ref_hz: float) -> float:
    return float(12 * np.log2(f_hz / ref_hz))
