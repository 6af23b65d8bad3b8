"""PER-a1 for images and video: OCR text, faces and frame features in the stored features; text written on
an image moves the user's interests like typed text."""

from __future__ import annotations

import pytest

from gaiverse.personalization.knowledge import load_knowledge
from gaiverse.personalization.media_features import MediaAnalysis, derive_features
from gaiverse.personalization.service import PersonalizationService
from gaiverse.privacy import PURPOSES, KeyRing

from .conftest import GRID_CLIP, render_text

pytestmark = pytest.mark.clause("PER-a1")


def test_text_on_an_image_reaches_the_profile(tmp_path, store):
    service = PersonalizationService(tmp_path / "p.duckdb", KeyRing.load(tmp_path / "keys"), store, load_knowledge())
    account = "acct-sign"
    for purpose in PURPOSES:
        service.set_consent(account, purpose, True)
    sign = render_text(["I love fishing", "and exploring caves"], size=40)
    it = service.observe_media(account, "image", sign, "png", "image/png")
    assert "I love fishing" in it.features["ocr_text"] and it.features["ocr_confidence"] > 80
    assert it.features["n_faces"] == 0 and it.features["faces"] == [] and it.features["expression"] is None
    interests = [tag for tag, _ in service.profile(account).interests(5)]
    assert "water" in interests and "exploration" in interests


def test_portrait_features(portrait):
    features = derive_features("image", data=portrait)
    assert features["n_faces"] == 1 and features["expression"] == "smiling"
    assert features["faces"][0]["smile_score"] >= 80 and features["width"] == 512
    assert features["ocr_text"] == "" and "analysis_errors" not in features
    off = derive_features("image", data=portrait, config=MediaAnalysis(ocr=False, faces=False))
    assert "faces" not in off and "ocr_text" not in off and off["dominant_colours"] == features["dominant_colours"]


@pytest.mark.slow
def test_video_features(whisper_dir):
    features = derive_features("video", data=GRID_CLIP.read_bytes(), config=MediaAnalysis(video_frames=4))
    assert features["video"] == {"duration_s": pytest.approx(3.0, abs=0.05), "fps": 25.0, "width": 360,
                                 "height": 288, "has_audio": True}
    assert [f["t"] for f in features["frames"]] == sorted(f["t"] for f in features["frames"])
    assert len(features["frames"]) == 4 and all(f["n_faces"] == 1 for f in features["frames"])
    assert features["dominant_hue"] in ("cyan", "blue") and features["n_faces"] == 1  # blue studio backdrop
    assert features["expression"] == "neutral"
    assert isinstance(features["transcript"], str) and features["asr"]["model"] == "whisper-base"
    assert 80 < features["prosody"]["pitch_median_hz"] < 300 and features["duration_s"] == pytest.approx(3.0, abs=0.1)


def test_bad_media_are_refused_and_missing_tools_only_noted(monkeypatch):
    with pytest.raises(ValueError, match="`data`"):
        derive_features("image", data=b"no image here")
    with pytest.raises(ValueError, match="`data`"):
        derive_features("audio", data=b"no audio here")
    with pytest.raises(ValueError, match="`video`"):
        derive_features("video", data=b"no video here")
    with pytest.raises(ValueError, match="`modality`"):
        derive_features("smell", data=b"x")
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    features = derive_features("image", data=render_text(["hello"]))
    assert "tesseract" in features["analysis_errors"]["ocr"] and "ocr_text" not in features
    assert features["n_faces"] == 0
