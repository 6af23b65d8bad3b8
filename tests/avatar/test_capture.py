"""Capture checks and the minimal capture analysis on a real GRID talking-face clip (no services).

The images + audio variant is made from the same clip in memory: one frame as PNG, the soundtrack as
a 16-bit WAV; negative cases are a grey picture, silence and white noise.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gaiverse.avatar.capture import (
    CaptureLimits, CaptureRejected, MediaFile, check_capture, check_text, sniff, speech_measures,
)
from gaiverse.config import REPO_ROOT
from gaiverse.speech.wav import float_to_pcm16, pcm16_wav

CLIP = REPO_ROOT / "data" / "avatar" / "grid" / "bbaf2n.mpg"


@pytest.fixture(scope="module")
def clip():
    from gaiverse.vision.video import decode

    return decode(CLIP.read_bytes(), max_frames=8)


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    return pcm16_wav(float_to_pcm16(np.clip(samples, -1, 1)), rate)


def test_type_is_sniffed_from_the_bytes_not_the_name(clip):
    assert sniff(CLIP.read_bytes()).name == "mpeg"
    assert sniff(_png(clip.frames[0])).media == "image"
    assert sniff(_wav(clip.audio)).name == "wav"
    assert sniff(b"hello, I am a text file pretending to be a video") is None
    with pytest.raises(CaptureRejected, match=r"is not a video \(mp4, webm, mpeg, avi, ogg\): its content is a png file") as err:
        check_capture([MediaFile("video", _png(clip.frames[0]), "me.mp4")])
    assert err.value.check == "type"


@pytest.mark.clause("AV-a1")
def test_real_clip_passes_with_measurements(clip):
    checked = check_capture([MediaFile("video", CLIP.read_bytes(), "bbaf2n.mpg")])
    summary = checked.summary()
    assert checked.mode == "video" and 2.9 < summary["duration_s"] < 3.1
    assert summary["frames_with_face"] == summary["frames_sampled"] == 8
    assert 0.2 < summary["face_box_fraction"] < 0.6 and summary["speech_s"] > 0.8
    assert "frames" not in summary and len(checked.frames) == 8 and checked.audio.size > 40_000


def test_flow_decode_searches_a_face_in_a_subsample_only(clip):
    """The flow decodes 48 frames for the analysis; the Haar face check looks at 8 of them, spread evenly."""
    checked = check_capture([MediaFile("video", CLIP.read_bytes(), "bbaf2n.mpg")],
                            CaptureLimits(sample_frames=48))
    assert len(checked.frames) >= 40 and checked.frames_sampled == 8 and checked.frames_with_face == 8


def test_periodicity_equals_the_direct_lagged_sums(clip):
    from gaiverse.avatar.capture import _periodicity

    frames = clip.audio[: 480 * 60].reshape(60, 480).astype(np.float64)
    centred = frames - frames.mean(1, keepdims=True)
    direct = [max(f[:-lag] @ f[lag:] for lag in range(40, 229)) / (f @ f) for f in centred]
    assert np.allclose(_periodicity(frames, 40, 228), direct, atol=1e-9)
    assert _periodicity(np.zeros((2, 480)), 40, 228).tolist() == [0.0, 0.0]


def test_images_plus_audio_and_their_refusals(clip):
    face, voice = _png(clip.frames[3]), _wav(clip.audio)
    checked = check_capture([MediaFile("image", face), MediaFile("audio", voice)])
    assert checked.mode == "images+audio" and checked.frames_with_face == 1 and checked.speech_s > 0.8

    grey = _png(np.full((288, 360, 3), 128, np.uint8))
    with pytest.raises(CaptureRejected, match="no face found in any of the 1 image") as err:
        check_capture([MediaFile("image", grey), MediaFile("audio", voice)])
    assert err.value.check == "face"
    silence = _wav(np.zeros(16000 * 3, np.float32))
    with pytest.raises(CaptureRejected, match="no speech found") as err:
        check_capture([MediaFile("image", face), MediaFile("audio", silence)])
    assert err.value.check == "speech"
    with pytest.raises(CaptureRejected, match="record at least 2 s") as err:
        check_capture([MediaFile("image", face), MediaFile("audio", _wav(clip.audio[:16000]))])
    with pytest.raises(CaptureRejected, match="exactly one `audio`"):
        check_capture([MediaFile("image", face)])
    with pytest.raises(CaptureRejected, match="at most 2 images") as err:
        check_capture([MediaFile("image", face)] * 3 + [MediaFile("audio", voice)], CaptureLimits(max_images=2))
    assert err.value.check == "count"
    with pytest.raises(CaptureRejected, match="more than the limit of 1000 bytes") as err:
        check_capture([MediaFile("image", face), MediaFile("audio", voice)], CaptureLimits(max_bytes=1000))
    assert err.value.check == "size"
    with pytest.raises(CaptureRejected, match="`preferences` has 2001 characters"):
        check_text("x" * 2001)


def test_speech_detector_needs_loud_voiced_audio(clip):
    rng = np.random.default_rng(0)
    assert speech_measures(clip.audio)["speech_s"] > 0.8
    assert speech_measures(np.zeros(48000, np.float32))["speech_s"] == 0.0
    assert speech_measures(rng.normal(0, 0.2, 48000).astype(np.float32))["speech_s"] < 0.1
    quiet = speech_measures(clip.audio * 0.05)
    assert quiet["speech_s"] > 0.5 and quiet["audio_peak_dbfs"] < -20  # quiet but voiced still counts


@pytest.mark.clause("AV-b1")
def test_minimal_analysis_measures_face_colours_voice_and_wishes(clip):
    from gaiverse.avatar.capture_analysis import analyse_capture, preferences_from_json, preview_png

    measured = analyse_capture(clip.frames, clip.audio, "long red hair and a higher voice, please")
    assert measured.frames_with_face == 8 and measured.face_box is not None and measured.sharpness > 10
    assert 55 < measured.skin_lab[0] < 85 and measured.skin_lab[1] > 5  # a light, warm skin tone
    assert measured.hair_lab is not None and measured.hair_lab[0] < measured.skin_lab[0] - 20  # dark hair
    assert 80 < measured.f0_median_hz < 200 and measured.transcript == ""  # no ASR asked for
    prefs = preferences_from_json(measured.to_json()["preferences"])
    assert prefs.colours["hair"] == (178, 34, 34) and prefs.pitch == 1 and prefs.hair_style == "long"
    decision_input = measured.decision_input()
    assert decision_input.hair_lab == measured.hair_lab and decision_input.f0_median_hz == measured.f0_median_hz
    png = preview_png(clip.frames[measured.best_frame], measured.face_box, "test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
