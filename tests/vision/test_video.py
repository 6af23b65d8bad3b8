"""Video: a real talking-face clip decoded to evenly spaced frames + 16 kHz audio; seeking in a long
generated clip; refusal of non-video, audio-only, too long and too large input."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from gaiverse.vision.video import VideoLimits, decode

from .conftest import GRID_CLIP


def make_video(seconds: float, fps: int = 10, size=(64, 48), audio: bool = False, codec: str = "mpeg4") -> bytes:
    """An MP4 whose frame i is uniformly grey at level (i * 3) % 250: a frame's value tells its time."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"g": str(fps)}  # one keyframe a second: seeking has to decode forward
        if audio:
            sound = container.add_stream("aac", rate=16000, layout="mono")
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), (i * 3) % 250, np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio:
            t = np.arange(int(seconds * 16000)) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)[None, :]
            aframe = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            aframe.sample_rate = 16000
            container.mux(sound.encode(aframe))
            container.mux(sound.encode(None))
    return out.getvalue()


def test_real_clip_frames_and_audio():
    sample = decode(GRID_CLIP)
    assert sample.fps == 25.0 and sample.duration_s == pytest.approx(3.0, abs=0.05)
    assert (sample.width, sample.height) == (360, 288) and len(sample.frames) == 8
    assert all(f.shape == (288, 360, 3) and f.dtype == np.uint8 for f in sample.frames)
    centres = [(i + 0.5) * sample.duration_s / 8 for i in range(8)]
    assert all(abs(t - c) <= 0.04 + 1e-6 for t, c in zip(sample.times_s, centres)), sample.times_s
    assert np.abs(sample.frames[0].astype(int) - sample.frames[-1].astype(int)).mean() > 1  # the talker moves
    assert sample.audio is not None and sample.audio.dtype == np.float32
    assert len(sample.audio) / 16000 == pytest.approx(3.0, abs=0.1) and np.abs(sample.audio).max() > 0.05
    assert decode(GRID_CLIP.read_bytes(), max_frames=3).times_s == decode(GRID_CLIP, max_frames=3).times_s


def test_long_clip_is_sampled_by_seeking():
    data = make_video(40.0, audio=True)
    sample = decode(data, max_frames=5)
    assert sample.duration_s == pytest.approx(40.0, abs=0.2) and len(sample.frames) == 5
    for t, centre, frame in zip(sample.times_s, (4, 12, 20, 28, 36), sample.frames):  # centres of 8 s slices
        index = round(t * 10)
        assert abs(t - centre) < 0.15
        assert abs(float(frame.mean()) - (index * 3) % 250) < 6  # the frame shown is the frame of time t
    assert sample.audio is not None and len(sample.audio) / 16000 == pytest.approx(40.0, abs=0.2)


def test_clip_without_sound_has_no_audio():
    sample = decode(make_video(1.0), max_frames=2)
    assert sample.audio is None and len(sample.frames) == 2


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a decodable media file"):
        decode(b"\x00\x01 this is no video" * 50)
    with pytest.raises(ValueError, match="empty"):
        decode(b"")
    with pytest.raises(ValueError, match="does not exist"):
        decode(tmp_path / "missing.mp4")
    wav = tmp_path / "voice.wav"
    with av.open(str(wav), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(ValueError, match="no video stream"):
        decode(wav)
    with pytest.raises(ValueError, match="max_duration_s"):
        decode(GRID_CLIP, limits=VideoLimits(max_duration_s=2.0))
    with pytest.raises(ValueError, match="pixels"):
        decode(GRID_CLIP, limits=VideoLimits(max_pixels=320 * 240))
    with pytest.raises(ValueError, match="max_frames"):
        decode(GRID_CLIP, max_frames=0)


def test_phone_video_with_a_display_rotation_is_decoded_upright(tmp_path):
    """Phones store portrait video as sensor-oriented frames plus a rotation tag; the face must come out upright."""
    from gaiverse.vision.faces import detect_faces
    from tests.media import phone_video

    tagged = phone_video(GRID_CLIP, tmp_path)
    upright, phone = decode(GRID_CLIP, max_frames=2), decode(tagged, max_frames=2)
    assert phone.frames[0].shape == upright.frames[0].shape  # 288 x 360 again, not 360 x 288
    assert all(detect_faces(frame) for frame in phone.frames)
