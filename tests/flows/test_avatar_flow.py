"""The avatar flow against the real services (Prefect server, S3, catalog, the personal-data vault).

A real GRID talking-face clip, sealed with its owner's key as the API stores it, becomes a published
``avatar/<capture_id>`` version with measurements (face, colours, pitch, transcript, wishes), the
decided parameters and what the four engines made (.glb with talk + head-motion clips and the face
texture, VRM, voice sample, turntable PNG/MP4, the creation source), all sealed; the Prefect artifact
holds counts and timings only. Customising that version rebuilds it from the sealed source with no
capture; another user's id opens nothing and publishes nothing.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid

import pytest

from _flowhelpers import task_runs_of
from gaiverse.avatar.capture import FLOW_STEPS
from gaiverse.config import REPO_ROOT

pytestmark = pytest.mark.slow

CLIP = REPO_ROOT / "data" / "avatar" / "grid" / "bbaf2n.mpg"
"""GRID talker saying "bin blue at f two now" (2.98 s)."""


def _sealed_capture(settings, store, catalog, owner: str, text: str) -> str:
    """Store a capture the way POST /avatars/captures does: media and wishes sealed, one manifest version."""
    from gaiverse.avatar.capture import MEDIA_KIND, SEAL_CONTEXT, open_vault

    keyring, vault = open_vault(settings)
    subject = keyring.pseudonym(owner)
    capture_id = "cap-" + secrets.token_hex(6)
    video = store.put_bytes(vault.seal(subject, CLIP.read_bytes(), SEAL_CONTEXT), kind=MEDIA_KIND, ext="bin")
    wishes = store.put_bytes(vault.seal(subject, text.encode(), SEAL_CONTEXT), kind=MEDIA_KIND, ext="bin")
    manifest = {"capture_id": capture_id, "owner": owner, "mode": "video", "checks": {},
                "media": [{"role": "video", "key": video.key, "bytes": CLIP.stat().st_size, "format": "mpeg"}],
                "preferences_key": wishes.key}
    ref = store.put_bytes(json.dumps(manifest).encode(), kind="avatar/capture", ext="json")
    catalog.publish_version(f"avatar-capture/{capture_id}", manifest=ref, assets=[video, wishes],
                            message="capture (test)", author=owner)
    return capture_id


@pytest.mark.clause("AV-a1")
@pytest.mark.clause("AV-b1")
@pytest.mark.clause("AV-b2")
def test_flow_publishes_analysis_and_parameters_of_a_sealed_capture(prefect_api, settings, store, catalog,
                                                                     artifacts_dir):
    from flows.avatar import create_avatar

    owner = f"user-{uuid.uuid4().hex[:8]}"
    capture_id = _sealed_capture(settings, store, catalog, owner, "I would like blue hair and a deeper voice")
    assert store.get_bytes(catalog.versions(f"avatar-capture/{capture_id}")[0].manifest_key)
    result = create_avatar(capture_id=capture_id, user_id=owner)

    assert result["collection"] == f"avatar/{capture_id}" and result["version"] == 1 and result["owner"] == owner
    versions = catalog.versions(f"avatar/{capture_id}")
    assert [v.version for v in versions] == [1] and versions[0].author == owner
    from gaiverse.avatar.capture import DERIVED_CONTEXT, open_vault

    keyring, vault = open_vault(settings)
    sealed = {name: store.get_bytes(key) for name, key in result["assets"].items()}
    assert all(blob[:4] == b"GVE1" for blob in sealed.values())  # derived data sealed with the owner's key
    assert b"transcript" not in sealed["avatar"] and b"IHDR" not in sealed["preview"]
    avatar = json.loads(vault.open(keyring.pseudonym(owner), sealed["avatar"], DERIVED_CONTEXT))
    analysis, params, baseline = avatar["analysis"], avatar["params"], avatar["baseline"]
    assert analysis["frames_with_face"] >= 6 and analysis["face_box"] is not None
    assert 80 < analysis["f0_median_hz"] < 200  # a male GRID talker
    assert analysis["skin_hex"] and analysis["skin_lab"][0] > 40
    assert analysis["preferences"]["colours"]["hair"] == [40, 90, 220] and analysis["preferences"]["pitch"] == -1
    assert params["hair_lab"][2] < -20 and baseline["hair_lab"][2] < -20  # blue: negative b*
    # the wish for a deeper voice lowers the pitch below the user's own (-3 st rule in the baseline)
    own_pitch = 12 * __import__("math").log2(analysis["f0_median_hz"] / 105.0)
    assert baseline["pitch_semitones"] < own_pitch and params["pitch_semitones"] < own_pitch
    assert avatar["decider"] == "ppo-policy"
    preview = vault.open(keyring.pseudonym(owner), sealed["preview"], DERIVED_CONTEXT)
    assert preview[:8] == b"\x89PNG\r\n\x1a\n" and catalog.can_read_asset(result["assets"]["preview"], owner)
    steps = task_runs_of(catalog, avatar["flow_run_id"])
    assert {task for task, _ in FLOW_STEPS} <= set(steps)
    assert all(row["state"] == "COMPLETED" for row in steps.values())
    (artifacts_dir / "avatar-flow-preview.png").write_bytes(preview)
    _check_engine_outputs(result, avatar, vault.open, keyring.pseudonym(owner), store, artifacts_dir)
    _check_artifact_is_not_personal(avatar["flow_run_id"], avatar, capture_id)
    _check_customisation(settings, store, catalog, owner, result)


def _check_engine_outputs(result, avatar, open_sealed, subject, store, artifacts_dir) -> None:
    """The .glb (talk + head_motion clips, face texture, morph targets), VRM, voice, turntables and source."""
    from gaiverse.avatar.capture import DERIVED_CONTEXT
    from gaiverse.avatar.creation import CreationSource
    from gaiverse.avatar.vrm import check_vrm
    from gaiverse.character.gltf_writer import read_glb

    opened = {name: open_sealed(subject, store.get_bytes(key), DERIVED_CONTEXT)
              for name, key in result["assets"].items()}
    assert set(opened) == {"avatar", "preview", "source", "glb", "vrm", "voice", "turntable_png", "turntable_mp4"}
    gltf, _ = read_glb(opened["glb"])
    clips = {a["name"] for a in gltf["animations"]}
    assert {"talk", "head_motion", "idle"} <= clips, clips
    assert gltf.get("images") and gltf.get("textures")  # the face photo projected on the head
    targets = [t for m in gltf["meshes"] for t in (m.get("extras") or {}).get("targetNames", [])]
    assert {"jawOpen", "mouthClose", "viseme_aa"} <= set(targets)
    assert check_vrm(opened["vrm"]) == []
    assert opened["voice"][:4] == b"RIFF" and opened["voice"][8:12] == b"WAVE"
    assert opened["turntable_png"][:8] == b"\x89PNG\r\n\x1a\n" and opened["turntable_mp4"][4:8] == b"ftyp"
    source = CreationSource.from_bytes(opened["source"])
    assert source.landmarks.shape == (478, 3) and source.portrait_frame.dtype.name == "uint8"
    assert source.pose_track.shape[1] == 3 and 10 < source.pose_fps < 20  # 48 frames over the 3 s clip
    engines = avatar["engines"]
    assert set(engines["timings_ms"]) == {"portrait", "voice", "animation", "render"}
    assert engines["stats"]["personalised"] is True and engines["stats"]["voice_s"] > 1.0
    (artifacts_dir / "avatar-flow-turntable.png").write_bytes(opened["turntable_png"])
    print(f"\ncreation engines (ms): {engines['timings_ms']}")


def _check_artifact_is_not_personal(flow_run_id: str, avatar: dict, capture_id: str) -> None:
    """The run's artifacts: counts, style and timings, and a link to the owner-only previews; none of the
    transcript, colours or pitch, and no picture."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))
    assert {"avatar-measurements", "avatar-previews"} <= {a.key for a in artifacts}
    link = next(a for a in artifacts if a.key == "avatar-previews")
    assert f"avatar.html?capture={capture_id}" in str(link.data)  # Prefect 3 stores links as markdown
    assert not {a.type for a in artifacts} & {"image", "png"}  # no picture of the user
    text = json.dumps([[a.key, a.type, a.description, a.data] for a in artifacts], default=str)
    assert "portrait ms" in text and "glb bytes" in text
    analysis = avatar["analysis"]
    assert analysis["transcript"] and analysis["skin_hex"]
    for secret in filter(None, (analysis["transcript"], analysis["skin_hex"], analysis["hair_hex"],
                                analysis["eye_hex"])):
        assert secret not in text
    assert "base64" not in text and "data:image" not in text


def _check_customisation(settings, store, catalog, owner: str, result: dict) -> None:
    """Customising v1 rebuilds the avatar from the sealed source (no capture) as v2 with v1 as parent."""
    from gaiverse.avatar.capture import open_vault
    from gaiverse.avatar.customisation import customise, parse_request
    from gaiverse.avatar.versions import AvatarVersions

    keyring, vault = open_vault(settings)
    repo = AvatarVersions(store, catalog, vault, keyring.pseudonym(owner), owner)
    capture_id = result["capture_id"]
    started = time.perf_counter()
    version, made = customise(repo, capture_id, parse_request({"preset": "taller", "params": {"style": "anime"}}))
    seconds = time.perf_counter() - started
    assert version.version == 2 and version.parent_version == 1 and "preset taller" in version.message
    manifest = repo.manifest(version)
    first = repo.manifest(repo.version(capture_id, 1))
    assert manifest["assets"]["source"] == first["assets"]["source"]  # reused, not re-captured
    assert manifest["assets"]["voice"] == first["assets"]["voice"]  # no voice setting changed: same sample
    assert manifest["assets"]["glb"]["key"] != first["assets"]["glb"]["key"] and "turntable_mp4" not in manifest["assets"]
    params = repo.result(manifest)["params"]
    v1 = repo.result(first)["params"]
    assert params["style"] == "anime" and params["height_m"] == pytest.approx(v1["height_m"] * 1.08, abs=1e-6)
    print(f"customisation: {seconds:.1f} s, engines (ms) {made.timings_ms}")


def test_flow_opens_no_capture_of_another_user(prefect_api, settings, store, catalog):
    from flows.avatar import create_avatar

    owner = f"user-{uuid.uuid4().hex[:8]}"
    capture_id = _sealed_capture(settings, store, catalog, owner, "")
    with pytest.raises(ValueError, match="no capture"):
        create_avatar(capture_id=capture_id, user_id="someone-else")
    assert catalog.versions(f"avatar/{capture_id}") == []
