"""Pose loaders on the shipped real scenes: kapture quirks and rigs, COLMAP text/binary, transforms.json, undistortion."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gaiverse.interiors.poses import (
    Camera, SceneError, detect_format, load_scene, quat_to_rotation, read_colmap_binary, read_colmap_text,
    rotation_to_quat, triangulate_points, undistort, write_colmap_binary, write_transforms,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "multiview"
FLOOR2, T265 = DATA / "kapture_indoor_floor2", DATA / "kapture_indoor_t265_fisheye"
FACADE, AERIAL = DATA / "kapture_maupertuis_facade", DATA / "kapture_maupertuis_aerial"


def test_quaternion_round_trip():
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(20, 4)):
        q = q / np.linalg.norm(q) * np.sign(q[0])
        R = quat_to_rotation(q)
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.allclose(rotation_to_quat(R), q, atol=1e-9)


def test_floor2_translation_first_columns_and_full_opencv_intrinsics():
    scene = load_scene(FLOOR2, long_side=96, triangulate=False)
    assert scene.source_format == "kapture" and len(scene) == 5
    assert scene.hw == (96, 54)  # portrait 1080x1920 scaled
    # the first row is "tx ty tz qw qx qy qz" despite its header: camera centre = -R^T t
    t, q = np.array([-2.7648854, -0.1617356, 1.7538439]), np.array([0.951852, 0.0795292, 0.2917894, 0.0501188])
    assert np.allclose(scene.centres[0], -quat_to_rotation(q).T @ t, atol=1e-6)
    assert scene.K[0][0, 0] == pytest.approx(1551.7285959014898 * 54 / 1080, rel=1e-6)
    assert not scene.masks.all()  # strong barrel distortion leaves a border after undistortion


def test_t265_rig_poses_match_the_per_camera_colmap_file():
    kapture = load_scene(T265, long_side=64, fmt="kapture", triangulate=False)
    assert len(kapture) == 6 and kapture.images.shape[-1] == 3
    colmap = read_colmap_text(T265 / "colmap")
    for q, t, camera_id, name in colmap.images.values():
        sensor = "cam001" if name.startswith("left") else "cam002"
        i = kapture.image_names.index(f"{sensor}/{Path(name).name}")
        w2c = np.linalg.inv(kapture.c2w[i])
        assert np.allclose(w2c[:3, :3], quat_to_rotation(q), atol=1e-9)
        assert np.allclose(w2c[:3, 3], t, atol=1e-9)
    # stereo baseline of the rig: 0.064 m between left and right at the same time
    assert np.linalg.norm(kapture.centres[0] - kapture.centres[1]) == pytest.approx(0.064, abs=1e-6)


def test_fisheye_undistortion_straightens_and_keeps_focal():
    camera = Camera("OPENCV_FISHEYE", 848, 800, (284.468, 285.51, 424.355, 393.742, 0.0008, 0.031, -0.03, 0.005))
    image = np.zeros((800, 848), np.uint8)
    image[390:400, :] = 255  # a horizontal band through the principal point stays a horizontal band
    out, K = undistort(image, camera)
    assert np.allclose(K, camera.matrix())
    rows = np.nonzero(out[:, 300:550].max(axis=1) > 127)[0]
    assert rows.min() >= 385 and rows.max() <= 405


def test_triangulated_points_need_the_right_pose_convention():
    scene = load_scene(T265, long_side=320, fmt="kapture", triangulate=False)
    good = triangulate_points(scene)
    swapped = scene.subset(range(len(scene)))
    swapped.c2w = scene.c2w[[1, 0, 3, 2, 5, 4]]  # left and right poses exchanged: the baseline points the wrong way
    assert len(good) > 200
    assert len(triangulate_points(swapped)) < len(good) / 2  # only same-sensor pairs still agree


def test_aerial_prefers_colmap_points_and_agrees_with_kapture():
    assert detect_format(AERIAL) == "colmap"
    colmap = load_scene(AERIAL, long_side=64)
    kapture = load_scene(AERIAL, long_side=64, fmt="kapture", triangulate=False)
    assert colmap.points_source == "format" and len(colmap.points) == 1039
    order = [kapture.image_names.index(n) for n in colmap.image_names]
    assert np.allclose(colmap.c2w, kapture.c2w[order], atol=1e-5)
    assert 0 < colmap.near < colmap.far


def test_facade_radial_and_kapture_points():
    scene = load_scene(FACADE, long_side=64)
    assert scene.source_format == "kapture" and scene.points_source == "format" and len(scene.points) > 300
    assert scene.image_names[0].endswith("MaupertuisTest_01.jpg")  # records point to a missing folder; found in images/


def test_colmap_binary_round_trip(tmp_path: Path):
    text = read_colmap_text(AERIAL / "colmap")
    write_colmap_binary(text, tmp_path / "sparse" / "0")
    binary = read_colmap_binary(tmp_path / "sparse" / "0")
    assert binary.cameras == text.cameras
    assert set(binary.images) == set(text.images)
    for key, (q, t, cam, name) in text.images.items():
        bq, bt, bcam, bname = binary.images[key]
        assert np.array_equal(bq, q) and np.array_equal(bt, t) and (bcam, bname) == (cam, name)
    assert all(np.array_equal(binary.points[k][0], v[0]) and np.array_equal(binary.points[k][1], v[1])
               for k, v in text.points.items())
    shutil.copytree(AERIAL / "images", tmp_path / "images")
    from_bin = load_scene(tmp_path, long_side=64)
    from_text = load_scene(AERIAL, long_side=64)
    assert from_bin.source_format == "colmap"
    assert np.allclose(from_bin.c2w, from_text.c2w) and np.allclose(from_bin.images, from_text.images)


def test_transforms_json_round_trip(tmp_path: Path):
    scene = load_scene(FACADE, long_side=48)
    write_transforms(scene, tmp_path / "nerf")
    back = load_scene(tmp_path / "nerf", triangulate=False)
    assert back.source_format == "transforms"
    assert np.allclose(back.c2w, scene.c2w, atol=1e-9) and np.allclose(back.K, scene.K)
    assert np.abs(back.images - scene.images).max() <= 1 / 255 + 1e-6


def test_unreadable_scenes_fail_with_a_named_reason(tmp_path: Path):
    with pytest.raises(SceneError, match="not a directory"):
        load_scene(tmp_path / "missing")
    with pytest.raises(SceneError, match="no kapture"):
        load_scene(tmp_path)
    with pytest.raises(SceneError, match="not supported"):
        Camera("EQUIRECTANGULAR", 10, 10, (1.0,))
