"""Portrait / appearance engine (AV-c1, AV-c2) on real faces: a GRID talker and the NASA astronaut portrait.

The personalised head must reproduce the user's face (landmark error / inter-ocular distance, the head
posed by PnP) clearly better than the generic avatar and better than someone else's avatar; the .glb and
.vrm pass the Khronos validator and the VRM structural check; the .vrm rests in the VRM T-pose with its
clips retargeted; the skull meets the face mask's outline; morph targets still move the mask; the top's
colour comes from the clothes, never the background.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gaiverse.avatar.analysis import face_landmarks
from gaiverse.avatar.appearance import body_params, clothing_colour
from gaiverse.avatar.decision import AvatarParams
from gaiverse.avatar.colour import delta_e, srgb_to_lab
from gaiverse.avatar.portrait import (FACE_OVAL, AvatarModel, build_avatar_model, face_triangles, frontalise,
                                      landmark_error_iod)
from gaiverse.avatar.vrm import REQUIRED_BONES, check_vrm, glb_to_vrm, t_pose
from gaiverse.character.animation import Clip
from gaiverse.character.face import MORPH_TARGETS, SKIN
from gaiverse.character.gltf_writer import GltfBuilder, read_accessor, read_glb
from gaiverse.character.params import BodyParams, Dimensions
from gaiverse.vision.video import decode
from validation.gltf import validate_glb

ROOT = Path(__file__).resolve().parents[2]
GRID = ROOT / "data" / "avatar" / "grid" / "bbaf2n.mpg"
PORTRAIT = ROOT / "data" / "vision" / "astronaut.jpg"


@pytest.fixture(scope="module")
def faces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (RGB frame, 478x3 landmarks) for the GRID talker and the astronaut."""
    grid = decode(GRID, max_frames=3).frames[1]
    astronaut = np.array(Image.open(PORTRAIT).convert("RGB"))
    landmarks, _ = face_landmarks([grid, astronaut], video=False)
    assert all(lm is not None and lm.shape == (478, 3) for lm in landmarks)
    return {"grid": (grid, landmarks[0]), "astronaut": (astronaut, landmarks[1])}


@pytest.fixture(scope="module")
def models(faces) -> dict[str, AvatarModel]:
    out = {}
    for name, (frame, lm) in faces.items():
        start = time.perf_counter()
        out[name] = build_avatar_model(None, AvatarParams(), frame, lm, name=name)
        print(f"\n{name}: avatar built in {time.perf_counter() - start:.2f} s")
    out["generic"] = build_avatar_model(None, AvatarParams(), None, None)
    return out


def _size(frame: np.ndarray) -> tuple[int, int]:
    return frame.shape[1], frame.shape[0]


@pytest.mark.parametrize("user", ["grid", "astronaut"])
def test_personalised_face_matches_the_user_better_than_generic_and_other_avatars(user, faces, models):
    frame, lm = faces[user]
    other = "astronaut" if user == "grid" else "grid"
    own = landmark_error_iod(models[user].face_landmarks_3d(), lm, _size(frame))
    generic = landmark_error_iod(models["generic"].face_landmarks_3d(), lm, _size(frame))
    someone_else = landmark_error_iod(models[other].face_landmarks_3d(), lm, _size(frame))
    print(f"\n{user}: landmark error / IOD personalised {own:.4f}, generic {generic:.4f}, {other}'s {someone_else:.4f}")
    assert own < 0.03, own
    assert generic > 1.3 * own and someone_else > 1.3 * own


def test_frontalise_undoes_an_in_plane_rotation(faces):
    _, lm = faces["astronaut"]
    centre = lm[:, :2].mean(0)
    a = np.radians(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    turned = lm.copy()
    turned[:, :2] = (lm[:, :2] - centre) @ rot.T + centre
    assert np.abs(frontalise(turned) - frontalise(lm)).max() < 1e-4  # cm (float32 landmarks)
    assert face_triangles().shape == (852, 3)


def test_glb_and_vrm_validate_with_texture_and_humanoid(models, artifacts_dir):
    model = models["astronaut"]
    glb, vrm = model.to_glb(), model.to_vrm()
    (artifacts_dir / "avatar_astronaut.glb").write_bytes(glb)
    (artifacts_dir / "avatar_astronaut.vrm").write_bytes(vrm)
    for data in (glb, vrm):
        report = validate_glb(data)
        assert report.errors == [], report.summary()
    gltf, _ = read_glb(glb)
    assert gltf["images"][0]["mimeType"] == "image/jpeg"
    face = next(m for m in gltf["materials"] if m["name"] == "face")
    assert "baseColorTexture" in face["pbrMetallicRoughness"]
    head = next(m for m in gltf["meshes"] if m["name"] == "head")
    assert "TEXCOORD_0" in head["primitives"][0]["attributes"]
    assert head["extras"]["targetNames"] == list(MORPH_TARGETS)
    assert gltf["scenes"][0]["extras"]["gaiverse"]["personalised"] is True
    assert check_vrm(vrm) == []
    ext = read_glb(vrm)[0]["extensions"]["VRMC_vrm"]
    assert set(REQUIRED_BONES) <= set(ext["humanoid"]["humanBones"])
    assert {"aa", "ih", "ou", "ee", "oh", "blink", "happy", "surprised"} <= set(ext["expressions"]["preset"])
    stats = model.stats()
    print(f"\nstats {stats}")
    assert stats["glb_bytes"] < 5_000_000 and stats["morph_targets"] == len(MORPH_TARGETS) == 67
    assert stats["bones"] == 21 and stats["texture_size"][0] >= 64
    assert models["generic"].stats()["texture_size"] is None


def test_vrm_rests_in_the_t_pose_with_clips_retargeted(models, artifacts_dir):
    model = models["astronaut"]
    vrm = model.to_vrm()
    gltf, blob = read_glb(vrm)
    assert check_vrm(vrm) == [] and "T-pose" in gltf["scenes"][0]["extras"]["gaiverse"]["rest_pose"]
    # the skinned arms themselves lie level along X: every vertex beyond the upper-arm joints is near its height
    names = [n.get("name") for n in gltf["nodes"]]
    body = next(n for n in gltf["nodes"] if n.get("name", "").endswith("_body"))
    positions = read_accessor(gltf, blob, gltf["meshes"][body["mesh"]]["primitives"][0]["attributes"]["POSITION"])
    shoulder = np.array(gltf["nodes"][names.index("leftShoulder")]["translation"]) \
        + gltf["nodes"][names.index("chest")]["translation"] + gltf["nodes"][names.index("spine")]["translation"] \
        + gltf["nodes"][names.index("hips")]["translation"]
    upper_x = shoulder[0] + gltf["nodes"][names.index("leftUpperArm")]["translation"][0]
    arm = positions[positions[:, 0] > upper_x + 0.05]
    assert len(arm) > 50 and np.ptp(arm[:, 0]) > 0.5 and np.abs(arm[:, 1] - shoulder[1]).max() < 0.09
    # the A-pose model, exported without re-posing, is refused
    problems = " | ".join(check_vrm(glb_to_vrm(model.to_glb())))
    assert "leftUpperArm -> leftLowerArm is 66.0 deg off +X" in problems and "rightLowerArm -> rightHand" in problems
    # a retargeted clip moves the re-posed body exactly as the original clip moves the A-posed one
    posed = t_pose(model.character)
    for clip in ("wave", "idle", "walk"):
        assert np.abs(posed.posed(clip)[0] - model.character.posed(clip)[0]).max() < 1e-5
    (artifacts_dir / "avatar_astronaut_vrm_tpose.png").write_bytes(posed.preview_png((None, "wave"), 256))


def test_skull_meets_the_face_mask_outline(models):
    """No step in profile: every face-outline vertex of the mask lies on the skull surface (within a few mm),
    and the skull does not hang far below the chin."""
    from scipy.spatial import cKDTree

    bary = np.array([(a, b, 1 - a - b) for a in np.linspace(0, 1, 7) for b in np.linspace(0, 1, 7) if a + b <= 1])
    for name in ("astronaut", "grid", "generic"):
        model = models[name]
        part = model.character.head.part
        unit = Dimensions(model.character.params).head_height
        skull = part.faces[(part.labels[part.faces] == SKIN).all(1)]
        surface = np.einsum("kc,fcd->fkd", bary, part.positions[skull]).reshape(-1, 3)
        rim = model.face_landmarks_3d()[list(FACE_OVAL)]
        gap = cKDTree(surface).query(rim)[0] / unit
        below_chin = (model.face_landmarks_3d()[152, 1] - surface[:, 1].min()) / unit
        print(f"\n{name}: mask outline -> skull gap (head units) median {np.median(gap):.4f} max {gap.max():.4f}; "
              f"skull below the chin {below_chin:.3f}")
        assert gap.max() < 0.035 and below_chin < 0.08, (gap.max(), below_chin)


def test_check_vrm_reports_broken_files(models):
    vrm = models["grid"].to_vrm()
    gltf, blob = read_glb(vrm)
    ext = gltf["extensions"]["VRMC_vrm"]
    del ext["humanoid"]["humanBones"]["leftFoot"]
    ext["humanoid"]["humanBones"]["rightHand"] = ext["humanoid"]["humanBones"]["leftHand"]
    ext["expressions"]["preset"]["aa"]["morphTargetBinds"][0]["index"] = 999
    ext["meta"]["authors"] = []
    ext["specVersion"] = "0.0"
    builder = GltfBuilder()
    builder.gltf, builder.blob = gltf, bytearray(blob)
    problems = " | ".join(check_vrm(builder.to_glb()))
    for expected in ("'leftFoot' is missing", "distinct", "morph target 999", "meta.authors", "specVersion"):
        assert expected in problems, problems
    assert check_vrm(models["grid"].to_glb()) == ["no VRMC_vrm extension"]
    with pytest.raises(ValueError, match="name"):
        glb_to_vrm(models["grid"].to_glb(), name="")


def test_morph_targets_move_the_face_mask(models):
    model = models["grid"]
    head = model.character.head
    mask = slice(len(head.part.positions) - 468, None)  # the mask's vertices come last, in landmark order
    jaw = head.targets["jawOpen"][mask]
    assert jaw[[14, 17], 1].max() < -0.004 and abs(jaw[[13, 0], 1]).max() < 0.3 * abs(jaw[[14, 17], 1]).min()
    blink = head.targets["eyeBlinkLeft"][mask]
    assert blink[386, 1] < -0.003 and abs(blink[159]).max() < 1e-6  # the left upper lid only
    smile = head.targets["mouthSmileLeft"][mask]
    assert smile[291, 1] > 0.003 and abs(smile[61]).max() < 0.3 * smile[291, 1]


def test_clips_are_appended_and_checked(faces):
    frame, lm = faces["grid"]
    model = build_avatar_model(None, AvatarParams(style="cartoon"), frame, lm)
    talk = Clip("talk", [0.0, 0.2, 0.4], [{}, {"head": np.array([0.05, 0.0, 0.0, 0.9987])}, {}],
                morph_keys=[(0.0, {}), (0.2, {"jawOpen": 0.8, "viseme_aa": 0.5}), (0.4, {})])
    model.add_clips([talk])
    names = [a["name"] for a in read_glb(model.to_glb())[0]["animations"]]
    assert names.count("talk") == 1 and "idle" in names
    with pytest.raises(ValueError, match="unknown morph targets"):
        model.add_clips([Clip("bad", [0.0, 1.0], [{}, {}], morph_keys=[(0.0, {"smile": 1.0})])])
    with pytest.raises(ValueError, match="landmarks"):
        build_avatar_model(None, AvatarParams(), frame, lm[:100])


def test_clothing_colour_is_the_clothes_not_the_background(faces):
    frame, lm = faces["astronaut"]  # orange suit, black collar, grey wall: the chest between the shoulders
    r, g, b = clothing_colour(frame, lm)
    assert r > 0.6 and r > 1.5 * g > 1.5 * b, (r, g, b)
    frame, lm = faces["grid"]  # head and shoulders before a blue wall; the shirt is at the bottom edge
    top = clothing_colour(frame, lm)
    wall = srgb_to_lab(frame[5:40, 5:40].reshape(-1, 3) / 255.0).mean(0)
    assert top is not None and delta_e(srgb_to_lab(np.asarray(top)), wall) > 25
    chin = int(lm[152, 1])  # framing that ends at the chin: no clothes seen, the default stays
    assert clothing_colour(np.ascontiguousarray(frame[:chin + 2]), lm) is None
    assert body_params(AvatarParams(), None, None).top_rgb == BodyParams().top_rgb


def test_a_neck_in_shadow_is_not_taken_for_the_top():
    """The flow's best GRID frame shows the neck between the collars at the bottom edge, darker than the face
    but of the same hue: the top must come out as the grey-blue denim shirt, never a skin colour."""
    frames = decode(GRID, max_frames=48).frames
    picks = [frames[i] for i in (9, 24, 39)]
    landmarks, _ = face_landmarks(picks, video=False)
    for frame, lm in zip(picks, landmarks):
        top = srgb_to_lab(np.asarray(clothing_colour(frame, lm)))
        assert top[2] < 10 and np.hypot(top[1], top[2]) < 20, top  # denim: low chroma, not yellow-orange skin


def test_appearance_follows_params_measures_and_style(faces):
    frame, lm = faces["grid"]
    top = clothing_colour(frame, lm)
    assert top is not None and all(0 <= c <= 1 for c in top)
    base = AvatarParams(skin_lab=(45.0, 14.0, 20.0), hair_lab=(40.0, 20.0, -60.0), height_m=1.9, build=0.8)
    realistic = body_params(base, None, top)
    cartoon = body_params(AvatarParams(**{**base.__dict__, "style": "cartoon", "hair_style": "curly"}), None, top)
    assert realistic.height_m == pytest.approx(1.9) and realistic.build == pytest.approx(0.8)
    assert realistic.hair_rgb[2] > realistic.hair_rgb[0]  # blue hair stays blue
    assert cartoon.head_scale > 1.15 > realistic.head_scale and cartoon.hair_style == "curly"
    chroma = lambda rgb: max(rgb) - min(rgb)  # noqa: E731
    assert chroma(cartoon.hair_rgb) > chroma(realistic.hair_rgb)
    measured = {"body": {"value": {"shoulder_width_iod": 4.8, "shoulder_to_hip": 2.2}}}
    broad = body_params(base, measured)
    assert broad.shoulder_width > realistic.shoulder_width and broad.hip_width < realistic.hip_width
    with pytest.raises(ValueError, match="style"):
        body_params(AvatarParams(style="cubist"))


def test_preview_pngs_of_personalised_and_generic_avatars(models, artifacts_dir):
    for name in ("astronaut", "grid", "generic"):
        png = models[name].preview_png(320, face=True)
        (artifacts_dir / f"avatar_{name}_face.png").write_bytes(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (artifacts_dir / "avatar_astronaut_body.png").write_bytes(models["astronaut"].preview_png(320))
    face = np.asarray(Image.open(artifacts_dir / "avatar_astronaut_face.png").convert("RGB"), dtype=float)
    generic = np.asarray(Image.open(artifacts_dir / "avatar_generic_face.png").convert("RGB"), dtype=float)
    assert np.abs(face - generic).mean() > 5  # the photo texture and the face shape show
