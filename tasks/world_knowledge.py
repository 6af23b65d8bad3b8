"""Tasks linking worlds and NPCs: thin wrappers over ``gaiverse.npc.world_knowledge``.

``ingest_world_knowledge`` runs after a world version is published (build and rebuild flows) and
after an NPC placed in a world is published (its world's passages then name it); the knowledge
base keeps one document per world, replaced in one transaction. ``place_npc_in_world`` puts a
generated NPC's day at real places of a world its owner owns. Implements the world part of NPC-a1
and NPC-b1.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger

from gaiverse.npc.world_knowledge import ingest_world, world_places
from gaiverse.world.versions import WorldNotFound
from tasks.common import gaiverse_task, get_catalog, get_store
from tasks.knowledge import get_knowledge_base


@gaiverse_task(cache="none", retries=2, backoff_s=1.0)
def ingest_world_knowledge(world_id: str, version: int | None = None) -> dict[str, Any]:
    """Derive the version's places and passages and store them for the world's owner (replacing the
    previous version's); an older version never replaces a newer one."""
    result = ingest_world(get_knowledge_base(), get_store(), get_catalog(), world_id, version, admin=True)
    get_run_logger().info("world %s v%d: %d passages (%d replaced), %d places", world_id, result["version"],
                          result["passages"], result.get("replaced") or 0, result["places"])
    return result


@gaiverse_task(cache="none", retries=2, backoff_s=1.0)
def place_npc_in_world(profile: dict[str, Any], world_id: str) -> dict[str, Any]:
    """The profile with its schedule at the world's real places; the world must be the NPC owner's."""
    from gaiverse.npc.generation import NpcProfile, place_in_world  # NPC code only where NPCs are made

    owner = profile.get("owner")
    try:
        places = world_places(get_store(), get_catalog(), world_id, user_id=owner)
    except WorldNotFound:
        raise ValueError(f"`world_id` {world_id!r} is not one of the worlds of {owner!r}") from None
    placed = place_in_world(NpcProfile.from_dict(profile), places)
    get_run_logger().info("%s lives at %s and works at %s in world %s v%s", placed.name, placed.world["home"],
                          placed.world["work"], world_id, placed.world["version"])
    return placed.to_dict()
