"""The NPC generation flow (FGMV-22 8.3 service flow step 1; NPC-b1, NPC-b2).

parse settings (+ the user's template from the character repository) -> retrieve knowledge ->
profile, backstory, behaviour -> appearance (.glb in the Ray appearance actor) -> store ->
validate (Khronos glTF validator + the NPC suite, on what was read back) -> publish a version
of ``npc/<owner>/<npc_id>`` -> report (profile table and preview PNG as artifacts).
Nothing is published unless validation passed.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from tasks.common import flow_hooks
from tasks.npc import (attach_npc_report, build_appearance, parse_settings, publish_npc, retrieve_knowledge,
                       store_npc, validate_npc, write_npc_profile)
from tasks.world_knowledge import ingest_world_knowledge, place_npc_in_world


@flow(name="npc-generate", description="Generate an NPC from a character template and the user's settings "
      "(NPC-b1, NPC-b2).", **flow_hooks())
def generate_npc(
    settings: dict[str, Any] = {},  # noqa: B006 - validated as NpcSettings by the first task
    npc_id: Annotated[str | None, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = None,
    user_id: Annotated[str, Field(min_length=1, max_length=200)] = "local",
) -> dict[str, Any]:
    """Generate, validate and publish one NPC; returns its collection, version and asset keys.

    settings : ``gaiverse.npc.generation.NpcSettings`` as JSON (role, traits, background, domains,
    voice, appearance hints, species, sex, age, template, seed). npc_id : id to publish under
    (default: from the name and seed). user_id : the owner when the run carries no ``owner:`` tag.
    """
    plan = parse_settings(settings, npc_id, user_id)
    citations = retrieve_knowledge(plan)
    profile = write_npc_profile(plan, citations)
    if plan.get("world_id"):  # the NPC's day at real places of the owner's world
        profile = place_npc_in_world(profile, plan["world_id"])
    appearance = build_appearance(profile)
    refs = store_npc(profile, appearance["glb"], appearance["preview"])
    validation = validate_npc(refs)
    version = publish_npc(profile, refs, validation)
    attach_npc_report(profile, appearance["preview"])
    if profile.get("world"):  # the world's passages now name this NPC too
        ingest_world_knowledge(profile["world"]["world_id"])
    get_run_logger().info("NPC %s (%s) published as %s v%d", profile["name"], profile["npc_id"],
                          version["collection"], version["version"])
    return {"npc_id": profile["npc_id"], "name": profile["name"], "owner": profile["owner"], **version,
            "assets": {name: ref.key for name, ref in refs.items()}, "validation": validation}
