"""Faces: a real smiling portrait, neutral talking-face frames, no face in a landscape, input checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gaiverse.vision.faces import detect_faces, to_rgb_array
from gaiverse.vision.video import decode

from .conftest import GRID_CLIP


def test_portrait_has_one_smiling_face(portrait):
    faces = detect_faces(portrait)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    # Eileen Collins' face lies around x 175..275, y 60..170 of the 512x512 photo
    assert 150 < x < 200 and 40 < y < 100 and 70 < w < 130 and w == h
    assert face.score > 0 and face.expression == "smiling"
    assert [f.box for f in detect_faces(to_rgb_array(portrait))] == [face.box]


def test_talking_face_frames_are_neutral():
    frames = decode(GRID_CLIP, max_frames=4).frames
    found = [detect_faces(frame) for frame in frames]
    assert all(len(f) == 1 for f in found)
    assert all(f[0].expression == "neutral" for f in found)
    assert all(100 < f[0].box[2] < 200 for f in found)  # head-and-shoulders shot, 360x288


def test_no_face_in_a_plain_picture_and_small_faces_skipped(portrait):
    sky = np.zeros((240, 320, 3), np.uint8)
    sky[..., 2] = 200
    assert detect_faces(sky) == []
    photo = np.asarray(Image.open(io.BytesIO(portrait)))
    assert len(detect_faces(photo, min_size_frac=0.1)) == 1
    assert detect_faces(photo, min_size_frac=0.5) == []  # the face is ~0.2 of the edge


@pytest.mark.parametrize("bad, message", [
    (b"not an image", "not a decodable image"), (np.zeros((4, 4, 2), np.uint8), "shape"), (None, "must be"),
])
def test_bad_images_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        detect_faces(bad)
    with pytest.raises(ValueError, match="min_size_frac"):
        detect_faces(np.zeros((10, 10, 3), np.uint8), min_size_frac=0)
