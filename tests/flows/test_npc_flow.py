"""The NPC generation flow against the real services: Prefect server, S3 (nanio), DuckDB catalog, Ray.

A user's settings become a published, validated NPC version (profile + Khronos-valid .glb +
preview) owned by that user; settings that fail validation publish nothing.
"""

from __future__ import annotations

import json
import uuid

import pytest

from gaiverse.character.face import MORPH_TARGETS
from validation.gltf import validate_glb
from validation.npc import rig_facts

pytestmark = pytest.mark.slow


@pytest.mark.clause("NPC-b1")
@pytest.mark.clause("NPC-b2")
def test_flow_publishes_a_validated_npc_owned_by_the_user(stack, catalog, store, artifacts_dir):
    from flows.npc import generate_npc
    from tasks.npc import npc_collection

    owner = f"user-{uuid.uuid4().hex[:8]}"
    settings = {"name": "Brann", "role": "blacksmith", "traits": ["grumpy"], "domains": ["weapons"],
                "appearance": ["tall", "beard"], "background": "Forged blades for the border wardens.", "seed": 11}
    result = generate_npc(settings=settings, npc_id="brann-smith", user_id=owner)

    collection = npc_collection(owner, "brann-smith")
    assert result["collection"] == collection and result["version"] == 1 and result["owner"] == owner
    versions = catalog.versions(collection)
    assert [v.version for v in versions] == [1] and versions[0].author == owner
    manifest = json.loads(store.get_bytes(versions[0].manifest_key))
    assert manifest["validation"]["success"] and manifest["validation"]["gltf_errors"] == 0

    glb = store.get_bytes(result["assets"]["glb"])
    assert validate_glb(glb).errors == []
    facts = rig_facts(glb)
    assert set(MORPH_TARGETS) <= facts["targets"] and {"hips", "head", "leftHand"} <= facts["joints"]
    profile = json.loads(store.get_bytes(result["assets"]["profile"]))
    assert profile["name"] == "Brann" and profile["owner"] == owner
    assert "weapons" in profile["backstory"] and "Forged blades" in profile["backstory"]
    assert profile["citations"] and profile["dialogue_style"]["style"] == "gruff"
    for key in result["assets"].values():
        assert catalog.can_read_asset(key, owner)
    validations = catalog.query("SELECT suite, success FROM validations WHERE asset_key = ?", [result["assets"]["glb"]])
    assert {"suite": "npc.generated", "success": True} in validations
    run = catalog.run(manifest["flow_run_id"])
    assert run["state"] == "COMPLETED" and run["flow_name"] == "npc-generate"
    (artifacts_dir / "npc-flow-preview.png").write_bytes(store.get_bytes(result["assets"]["preview"]))
    (artifacts_dir / "npc-flow.glb").write_bytes(glb)


def test_flow_with_bad_settings_publishes_nothing(stack, catalog):
    from flows.npc import generate_npc
    from tasks.npc import npc_collection

    owner = f"user-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Exception, match="species"):
        generate_npc(settings={"role": "smith", "species": "vulcan"}, npc_id="bad-one", user_id=owner)
    assert catalog.versions(npc_collection(owner, "bad-one")) == []
