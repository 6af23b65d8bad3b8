"""The parametric humanoid: a Khronos-valid .glb with a humanoid skin, ARKit + viseme targets and gesture clips."""

from __future__ import annotations

import numpy as np
import pytest

from gaiverse.character import BodyParams, build_character
from gaiverse.character.animation import CLIPS, sample, world_transforms
from gaiverse.character.face import MORPH_TARGETS, VISEME_TARGETS
from gaiverse.character.gltf_writer import read_accessor, read_glb
from gaiverse.character.params import check
from gaiverse.character.skeleton import JOINT_NAMES, REQUIRED_VRM_BONES
from gaiverse.npc.expression import ARKIT_BLENDSHAPES, GESTURES, VISEMES, blendshapes
from validation.gltf import validate_glb


@pytest.fixture(scope="module")
def character():
    return build_character(BodyParams(hair_style="long", beard=True))


@pytest.fixture(scope="module")
def glb(character) -> bytes:
    return character.glb("tester", {"npc": {"name": "Tester"}})


def test_glb_passes_the_khronos_validator_with_a_humanoid_skin_targets_and_clips(glb, artifacts_dir):
    (artifacts_dir / "character.glb").write_bytes(glb)
    report = validate_glb(glb)
    assert report.errors == [], report.summary()
    assert report.warnings == [], report.warnings[:5]
    assert report.info["hasSkins"] and report.info["hasMorphTargets"]
    assert report.info["animationCount"] == len(CLIPS)

    gltf, blob = read_glb(glb)
    names = [n["name"] for n in gltf["nodes"]]
    skin_joints = {names[j] for j in gltf["skins"][0]["joints"]}
    assert set(REQUIRED_VRM_BONES) <= skin_joints and set(JOINT_NAMES) == skin_joints
    head = next(m for m in gltf["meshes"] if m["name"] == "head")
    assert head["extras"]["targetNames"] == list(MORPH_TARGETS)
    assert set(ARKIT_BLENDSHAPES) | {f"viseme_{v}" for v in VISEMES} == set(head["extras"]["targetNames"])
    assert all(len(p["targets"]) == len(MORPH_TARGETS) for p in head["primitives"])
    assert {a["name"] for a in gltf["animations"]} == set(GESTURES) | {"walk", "idle"}
    assert gltf["scenes"][0]["extras"]["npc"] == {"name": "Tester"}
    assert gltf["scenes"][0]["extras"]["rig"]["visemes"] == VISEME_TARGETS
    # the inverse bind matrix of the head joint undoes its rest position
    ibm = read_accessor(gltf, blob, gltf["skins"][0]["inverseBindMatrices"]).reshape(-1, 4, 4)
    head_j = names.index("head")
    assert ibm[head_j][3, :3] == pytest.approx(-_world(gltf, head_j), abs=1e-5)


def _world(gltf, node: int) -> np.ndarray:
    parents = {c: i for i, n in enumerate(gltf["nodes"]) for c in n.get("children", [])}
    pos = np.zeros(3)
    while node is not None:
        pos += gltf["nodes"][node].get("translation", [0, 0, 0])
        node = parents.get(node)
    return pos


def test_every_arkit_target_moves_the_face_locally_and_visemes_mix_them(character):
    head = character.head
    height = character.params.height_m
    for name in MORPH_TARGETS:
        moved = np.linalg.norm(head.targets[name], axis=1)
        if name == "viseme_sil":
            assert moved.max() == 0.0
            continue
        assert 0.001 < moved.max() < 0.05 * height, (name, moved.max())  # visible, but no explosion
        assert (moved > 1e-4).mean() < 0.5, name  # a local change, not the whole head
    jaw = head.targets["jawOpen"]
    lips = head.part.positions
    assert jaw[:, 1].min() < -0.01  # the chin drops by more than a centimetre
    assert (jaw[lips[:, 1] > lips[:, 1].mean() + 0.05, 1] == 0).all()  # the forehead stays
    # expression weights from the dialogue apply to targets of the same names
    for emotion in ("joy", "anger", "surprise"):
        weights = blendshapes(emotion, 1.0)
        assert set(weights) <= set(MORPH_TARGETS)
    smile = head.targets["mouthSmileLeft"]
    left = lips[:, 0] > 0.02
    assert smile[left, 1].max() > 0.003 and np.abs(smile[lips[:, 0] < -0.03]).max() < 0.001


def test_gesture_clips_move_the_right_limbs(character):
    sk = character.skeleton
    clips = {c.name: c for c in character.clips}
    _, rest = world_transforms(sk, {})
    head_y = sk["head"][1]
    _, wave = world_transforms(sk, sample(clips["wave"], 0.6))
    assert wave[sk.index("rightHand"), 1] > head_y  # the hand is raised above the head
    _, point = world_transforms(sk, sample(clips["point"], 0.8))
    assert point[sk.index("rightHand"), 2] > 0.4  # the arm reaches forward
    _, nod = world_transforms(sk, sample(clips["nod"], 0.25))
    assert nod[sk.index("head")] == pytest.approx(rest[sk.index("head")], abs=0.02)
    for name in GESTURES:
        clip = clips[name]
        if name != "idle":  # one-shot gestures return to the rest pose
            end = sample(clip, clip.duration)
            assert all(abs(abs(q[3]) - 1) < 1e-6 for q in end.values()), name


def test_proportions_follow_the_parameters_and_stay_plausible():
    short = build_character(BodyParams(height_m=1.5, build=0.1))
    tall = build_character(BodyParams(height_m=2.0, build=0.9))
    assert short.posed()[0][:, 1].max() == pytest.approx(1.5, abs=0.01)
    assert tall.posed()[0][:, 1].max() == pytest.approx(2.0, abs=0.01)
    def depth(c):  # front-to-back girth at the waist
        waist = c.body.positions[np.abs(c.body.positions[:, 1] - c.skeleton["spine"][1]) < 0.03]
        return np.ptp(waist[:, 2])

    assert depth(tall) > depth(short) * 1.6
    with pytest.raises(ValueError, match="height_m"):
        check(BodyParams(height_m=3.5))
    with pytest.raises(ValueError, match="hair_style"):
        check(BodyParams(hair_style="mohawk"))  # type: ignore[arg-type]


def test_preview_png_shows_rest_and_gestures(character, artifacts_dir):
    png = character.preview_png((None, "wave", "cross_arms"), size_px=256,
                                morphs={"mouthSmileLeft": 1, "mouthSmileRight": 1})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (artifacts_dir / "character-preview.png").write_bytes(png)
