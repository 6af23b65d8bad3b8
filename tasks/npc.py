"""Tasks of the NPC generation flow: thin wrappers over ``gaiverse.npc.generation`` and the platform pieces.

Plans, profiles and bytes pass between tasks in memory (``cache="none"``: generation is seeded
and cheap, and a user's settings are not copied into Prefect's result storage). The owner of the
NPC is the ``owner:<id>`` tag of runs the API starts; a run started elsewhere names its owner
in the ``user_id`` parameter.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import ray
from prefect import get_run_logger

from gaiverse.config import get_settings
from gaiverse.npc.character_repository import CharacterRepository, repository_path
from gaiverse.npc.generation import NpcPlan, NpcSettings, plan_npc, retrieve_for, write_profile
from gaiverse.npc.knowledge_base import Scope
from storage.objectstore import AssetRef
from tasks.artifacts import png_artifact, table_artifact, validate_in_run
from tasks.common import current_run_ids, gaiverse_task, get_catalog, get_store
from tasks.knowledge import get_knowledge_base, run_owner
from validation.gltf import validate_glb
from validation.npc import NPC_EXPECTATIONS, NPC_SUITE, npc_frame

APPEARANCE_TIMEOUT_S = 300


def characters_path() -> Path:
    """The installation's character repository file (user templates)."""
    return repository_path(get_settings().data_dir)


@lru_cache(maxsize=2)
def _repository_at(path: Path) -> CharacterRepository:
    return CharacterRepository(path)


def get_repository() -> CharacterRepository:
    return _repository_at(characters_path())


def npc_collection(owner: str, npc_id: str) -> str:
    """Catalog collection of one user's NPC: versions of it are published there."""
    return f"npc/{owner}/{npc_id}"


@gaiverse_task(cache="none", retries=0)
def parse_settings(settings: dict[str, Any], npc_id: str | None, user_id: str) -> dict[str, Any]:
    """Validate the settings, resolve the owner and the template, and plan the NPC (an ``NpcPlan`` dict)."""
    owner = run_owner() or user_id
    if run_owner() is not None and user_id not in ("local", owner):
        raise ValueError(f"`user_id` {user_id!r} differs from the user who started this run")
    parsed = NpcSettings.model_validate(settings)
    template = get_repository().get(parsed.template, owner) if parsed.template else None
    plan = plan_npc(parsed, template, npc_id, owner)
    get_run_logger().info("planned %s (%s, %s %s) from template %s", plan.name, plan.role, plan.sex, plan.species,
                          plan.template["id"])
    return plan.to_dict()


@gaiverse_task(cache="none", retries=3, backoff_s=1.0)
def retrieve_knowledge(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Knowledge-base passages for the role, domains, species and background (prior + the owner's own)."""
    kb = get_knowledge_base()
    kb.ensure(prior=True)
    with kb.reading() as store:
        citations = retrieve_for(NpcPlan(**plan), store, Scope(user_id=plan["user_id"]))
    get_run_logger().info("retrieved %d passages: %s", len(citations), ", ".join(c["source"] for c in citations))
    return citations


@gaiverse_task(cache="none", retries=0)
def write_npc_profile(plan: dict[str, Any], citations: list[dict[str, Any]]) -> dict[str, Any]:
    """Backstory, motives, dialogue style, voice, behaviour and body parameters."""
    return write_profile(NpcPlan(**plan), citations).to_dict()


@gaiverse_task(cache="none", retries=2, backoff_s=2.0, timeout_seconds=APPEARANCE_TIMEOUT_S)
def build_appearance(profile: dict[str, Any]) -> dict[str, Any]:
    """The rigged .glb and a preview, built in the appearance Ray actor."""
    from ray_actors.npc_generation import npc_appearance

    result = ray.get(npc_appearance().build.remote(profile), timeout=APPEARANCE_TIMEOUT_S)
    get_run_logger().info("appearance: %d B glb on node %s (%s)", len(result["glb"]), result["node_id"][:12],
                          result["device"])
    return result


@gaiverse_task(cache="none", retries=5, backoff_s=1.0)
def store_npc(profile: dict[str, Any], glb: bytes, preview: bytes) -> dict[str, AssetRef]:
    """Put profile, .glb and preview in the object store (content-addressed), then record them."""
    store = get_store()
    refs = {
        "glb": store.put_bytes(glb, kind="npc/appearance", ext="glb"),
        "preview": store.put_bytes(preview, kind="npc/preview", ext="png"),
        "profile": store.put_bytes(json.dumps(profile, indent=1, sort_keys=True).encode(), kind="npc/profile",
                                   ext="json"),
    }
    _, task_run_id = current_run_ids()
    catalog = get_catalog()
    catalog.record_asset(refs["profile"], task_run_id=task_run_id)
    catalog.record_asset(refs["glb"], task_run_id=task_run_id, inputs=[refs["profile"].key])
    catalog.record_asset(refs["preview"], task_run_id=task_run_id, inputs=[refs["glb"].key])
    return refs


@gaiverse_task(cache="none", retries=1)
def validate_npc(refs: dict[str, AssetRef]) -> dict[str, Any]:
    """Read the NPC back (sha256-verified), run the Khronos validator and the NPC suite."""
    store = get_store()
    glb = store.get_bytes(refs["glb"].key)
    profile = json.loads(store.get_bytes(refs["profile"].key))
    report = validate_glb(glb)
    result = validate_in_run(NPC_SUITE, npc_frame(refs["glb"].key, profile, glb, report), NPC_EXPECTATIONS,
                             asset_key=refs["glb"].key)
    return {"suite": result.suite, "success": result.success, "validation_id": result.validation_id,
            "gltf_errors": len(report.errors), "gltf_warnings": len(report.warnings), "validator": report.validator}


@gaiverse_task(cache="none", retries=3)
def publish_npc(profile: dict[str, Any], refs: dict[str, AssetRef], validation: dict[str, Any]) -> dict[str, Any]:
    """Manifest + a new version of ``npc/<owner>/<npc_id>`` in one catalog transaction (once per run)."""
    flow_run_id, _ = current_run_ids()
    owner, npc_id = profile["owner"], profile["npc_id"]
    collection = npc_collection(owner, npc_id)
    catalog = get_catalog()
    if flow_run_id:
        done = catalog.query("SELECT version, manifest_key FROM versions WHERE collection = ? AND flow_run_id = ?",
                             [collection, flow_run_id])
        if done:
            return {"collection": collection, **done[0]}
    manifest = {"npc_id": npc_id, "name": profile["name"], "role": profile["role"], "owner": owner,
                "flow_run_id": flow_run_id, "validation": validation,
                "assets": {name: ref.to_dict() for name, ref in refs.items()}}
    manifest_ref = get_store().put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode(),
                                         kind="npc/manifest", ext="json")
    version = catalog.publish_version(collection, manifest=manifest_ref, assets=list(refs.values()),
                                      message=f"NPC {profile['name']}, {profile['role']}", author=owner,
                                      flow_run_id=flow_run_id)
    get_run_logger().info("published %s v%d", collection, version.version)
    return {"collection": collection, "version": version.version, "manifest_key": manifest_ref.key}


@gaiverse_task(cache="none", retries=2)
def attach_npc_report(profile: dict[str, Any], preview: bytes) -> str:
    """The run's artifacts: a profile summary table and the preview PNG."""
    rows = [{"field": k, "value": v} for k, v in (
        ("name", profile["name"]), ("role", profile["role"]), ("species", profile["species"]),
        ("traits", ", ".join(profile["traits"])), ("style", profile["dialogue_style"]["style"]),
        ("voice", json.dumps(profile["voice"])), ("height_m", round(profile["appearance"]["height_m"], 2)),
        ("citations", ", ".join(c["source"] for c in profile["citations"])), ("backstory", profile["backstory"]))]
    table_artifact("npc-profile", rows, title=f"NPC {profile['name']}", columns=["field", "value"])
    return png_artifact("npc-preview", preview, kind="npc/preview", description=f"NPC {profile['name']}").key
