"""The avatar flow against the real services (Prefect server, S3, catalog, the personal-data vault).

A real GRID talking-face clip, sealed with its owner's key as the API stores it, becomes a published
``avatar/<capture_id>`` version with measurements (face, colours, pitch, transcript, wishes) and the
decided parameters; another user's id opens nothing and publishes nothing.
"""

from __future__ import annotations

import json
import secrets
import uuid

import pytest

from _flowhelpers import task_runs_of
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
    assert {"avatar-decode", "avatar-analyse", "avatar-decide", "avatar-store", "avatar-report"} <= set(steps)
    assert all(row["state"] == "COMPLETED" for row in steps.values())
    (artifacts_dir / "avatar-flow-preview.png").write_bytes(preview)


def test_flow_opens_no_capture_of_another_user(prefect_api, settings, store, catalog):
    from flows.avatar import create_avatar

    owner = f"user-{uuid.uuid4().hex[:8]}"
    capture_id = _sealed_capture(settings, store, catalog, owner, "")
    with pytest.raises(ValueError, match="no capture"):
        create_avatar(capture_id=capture_id, user_id="someone-else")
    assert catalog.versions(f"avatar/{capture_id}") == []
