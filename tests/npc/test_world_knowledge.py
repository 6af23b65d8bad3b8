"""World knowledge for NPCs (NPC-a1 world part, NPC-b1 placement) on a real built world and the real services.

One small world (128 m, the smallest size; layout sampled by the shipped diffusion checkpoint at
2 DDIM steps, roads from its road graph, buildings from the learned building model, assembled for
vegetation counts) is published in the session's object store and catalog like a build would,
then turned into passages and places. The knowledge base is a fresh file without the prior, so
every answer below can only come from the world's passages.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import typer
from fastapi import HTTPException
from typer.testing import CliRunner

from gaiverse.npc.dialogue import NpcAgent
from gaiverse.npc.generation import NpcSettings, generate_profile
from gaiverse.npc.kb_shared import SharedKnowledgeBase
from gaiverse.npc.knowledge_base import Scope
from gaiverse.npc.world_knowledge import (
    derive_world_knowledge, ingest_world, streets_of, world_doc_id, world_places, world_source,
)
from gaiverse.world.versions import WorldNotFound, WorldVersions

pytestmark = pytest.mark.slow

PROMPT = "a flat town with a dense centre by a lake"
SEED = 2
OWNER = f"alice-{uuid.uuid4().hex[:6]}"
OTHER = f"bob-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def world(store, catalog):
    """A real 128 m world published as v1 of `wk-<random>` for OWNER (what build_world publishes)."""
    from gaiverse.world import world_build
    from gaiverse.world.layout import LayoutGenerator, LayoutGeneratorConfig
    from gaiverse.world.suggestions import parse_suggestion
    from gaiverse.world.world_state import WorldState

    controls = parse_suggestion(PROMPT)
    controls.size_m = (128.0, 128.0)
    layout = LayoutGenerator.from_checkpoint(None, LayoutGeneratorConfig(ddim_steps=2)).generate(controls, seed=SEED)
    network = world_build.road_network(layout)
    state = WorldState.from_layout(layout, PROMPT, world_build.place_buildings(layout, network, PROMPT, SEED))
    scene = world_build.render(state)
    world_id = f"wk-{uuid.uuid4().hex[:8]}"
    WorldVersions(store, catalog).publish(world_id, state, author=OWNER, message="test build",
                                          derived=world_build.version_files(state, scene), new_world=True,
                                          made_by={"kind": "build"}, extra={"scene": scene.manifest()})
    assert len(state.buildings) >= 3 and len(network.polylines) >= 2, "the test world needs roads and buildings"
    return {"id": world_id, "state": state, "network": network, "scene": scene.manifest()}


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    shared = SharedKnowledgeBase(tmp_path_factory.mktemp("wk") / "kb.duckdb")
    shared.ensure(prior=False)
    return shared


@pytest.fixture(scope="module")
def ingested(world, kb, store, catalog):
    return ingest_world(kb, store, catalog, world["id"], user_id=OWNER)


def _rows(kb, user_id):
    with kb.reading() as store:
        return store.list(Scope(user_id=user_id, include_prior=False), domain="world", limit=10_000)


def test_passages_state_the_worlds_real_roads_and_buildings(world, ingested, kb):
    state, network = world["state"], world["network"]
    streets = streets_of(network)
    assert ingested["version"] == 1 and ingested["stored"] and ingested["replaced"] == 0
    assert ingested["roads"] == len(streets) and ingested["buildings"] == len(state.buildings)
    rows = _rows(kb, OWNER)
    assert len(rows) == ingested["passages"] >= 20
    assert {(r.domain, r.source, r.user_id, r.npc_id) for r in rows} == {("world", world_source(world["id"], 1),
                                                                            OWNER, None)}
    text = {r.entity: r.text for r in rows}
    town = ingested["name"]
    overview = text[town]
    assert f"{len(streets)} road" in overview and f"{len(state.buildings)} buildings" in overview
    assert f"{world['scene']['counts']['plants']} trees and bushes" in overview
    assert "128 m from west to east" in overview and PROMPT in overview
    tallest = max(state.buildings, key=lambda b: b.height_m)
    assert f"({tallest.height_m:.1f} m)" in text[f"Buildings of {town}"]
    levels = sum(1 for b in state.buildings if b.attrs["levels"] == tallest.attrs["levels"])
    assert f"{levels} of {tallest.attrs['levels']} storeys" in text[f"Buildings of {town}"]
    roads = [p.name for p in derive_world_knowledge(state, {}, world["id"], 1, OWNER).places.of_kind("road")]
    stated = []
    for name in roads:  # every road is named and described with its real length
        described = text.get(name) or text[f"Other roads of {town}"]
        stated.append(int(re.search(rf"{re.escape(name)}[^0-9]*(\d+) m", described).group(1)))
    real = sorted(s.length_m for s in streets)
    assert len(roads) == len(streets) and all(abs(a - b) <= max(5.0, 0.05 * b) for a, b in zip(sorted(stated), real))
    assert f"({round(network.length_m() / 10) * 10} m in total)" in overview
    # the districts' building counts add up to the world's
    counts = [int(m.group(1)) for r in rows if r.entity.endswith(("Quarter", "Old Town", "Town Centre", "Market Ward"))
              for m in [re.search(r"with (\d+|no) building", r.text.replace("with no", "with 0"))] if m]
    assert len(counts) == 9 and sum(counts) == len(state.buildings)


def test_places_are_named_deterministically_and_lie_in_the_world(world, ingested):
    again = derive_world_knowledge(world["state"], {}, world["id"], 1, OWNER)
    places = again.places
    assert [p.name for p in places] == [p.name for p in derive_world_knowledge(world["state"], {}, world["id"], 1,
                                                                                OWNER).places]
    assert len({p.name for p in places}) == len(places) == ingested["places"]
    kinds = {p.kind for p in places}
    assert {"district", "road", "market", "hall", "tavern", "home", "park", "hill"} <= kinds
    assert len(places.of_kind("district")) == 9 and len(places.of_kind("road")) == ingested["roads"]
    assert all(0 <= p.x <= 128 and 0 <= p.y <= 128 for p in places)
    assert places.get("market square").kind == "market"


def test_another_user_never_sees_or_ingests_the_world(world, ingested, kb, store, catalog):
    assert _rows(kb, OTHER) == []
    with kb.reading() as kbr:
        mine = kbr.search("Where is Market Square?", Scope(user_id=OWNER), k=3)
        theirs = kbr.search("Where is Market Square?", Scope(user_id=OTHER), k=50)
    assert mine and mine[0].entity == "Market Square" and mine[0].source == world_source(world["id"], 1)
    assert not any(h.source.startswith("world/") for h in theirs)
    with pytest.raises(WorldNotFound):
        ingest_world(kb, store, catalog, world["id"], user_id=OTHER)
    with pytest.raises(WorldNotFound):
        world_places(store, catalog, world["id"], user_id=OTHER)


def test_npc_placed_in_the_world_lives_and_works_at_real_places(world, ingested, store, catalog):
    places = world_places(store, catalog, world["id"], user_id=OWNER)
    names = {p.name: p for p in places}
    smith = generate_profile(NpcSettings(role="blacksmith", seed=11, world_id=world["id"]), None, None,
                             user_id=OWNER, places=places)
    schedule = smith.behaviour["schedule"]
    assert all(b["place"] in names and (b["x"], b["y"]) == (names[b["place"]].x, names[b["place"]].y)
               for b in schedule)
    assert names[smith.world["home"]].kind == "home"
    assert names[smith.world["work"]].kind == "workshop" and smith.world["places"]["workshop"] == smith.world["work"]
    assert smith.world["world_id"] == world["id"] and smith.world["version"] == 1 and "world" in smith.kb_domains
    assert any(smith.world["work"] in r for r in smith.behaviour["routines"])
    # without a world nothing changes: same NPC as before, generic places
    plain = generate_profile(NpcSettings(role="blacksmith", seed=11), None, None, user_id=OWNER)
    assert plain.world is None and plain.name == smith.name and "world" not in plain.kb_domains
    assert {b["place"] for b in plain.behaviour["schedule"]} <= {"home", "workshop", "tavern"}
    # two NPCs of the same world get their own homes
    other = generate_profile(NpcSettings(role="guard", seed=12, world_id=world["id"]), None, None,
                             user_id=OWNER, places=places)
    assert names[other.world["work"]].kind in ("gate", "barracks", "road")


def test_npc_answers_world_questions_from_the_passages_and_others_get_nothing(world, ingested, kb, store, catalog):
    places = world_places(store, catalog, world["id"], user_id=OWNER)
    persona = generate_profile(NpcSettings(role="innkeeper", seed=3, world_id=world["id"]), None, None,
                               user_id=OWNER, places=places).persona()
    tavern = places.of_kind("tavern")[0].name
    market_detail = places.get("Market Square").detail
    with kb.reading() as kbr:
        agent = NpcAgent(kbr, persona)
        where = agent.respond(OWNER, "Where is the market?")
        way = agent.respond(OWNER, f"How do I get to {tavern}?")
        stranger = agent.respond(OTHER, "Where is the market?")
    assert where.grounded and not where.refused and where.sources == [world_source(world["id"], 1)]
    assert "Market Square" in where.text and market_detail.split(", ", 1)[1] in where.text
    assert way.grounded and tavern in way.text and re.search(r"\b(north|south|east|west)", way.text)
    assert stranger.refused and not stranger.grounded


def test_reingest_replaces_the_version_and_lists_its_npcs(world, ingested, kb, store, catalog):
    repo = WorldVersions(store, catalog)
    state = repo.load_state(world["id"], 1)
    state.buildings = state.buildings[: len(state.buildings) // 2]
    repo.publish(world["id"], state, author=OWNER, message="half the buildings", base_version=1)
    places = world_places(store, catalog, world["id"], user_id=OWNER)
    smith = generate_profile(NpcSettings(role="blacksmith", name="Brom", seed=11, world_id=world["id"]), None, None,
                             user_id=OWNER, places=places)
    ref = store.put_bytes(json.dumps(smith.to_dict()).encode(), kind="npc/profile", ext="json")
    manifest = store.put_bytes(json.dumps({"npc_id": smith.npc_id, "assets": {"profile": ref.to_dict()}}).encode(),
                               kind="npc/manifest", ext="json")
    catalog.publish_version(f"npc/{OWNER}/{smith.npc_id}", manifest=manifest, assets=[ref], message="NPC",
                            author=OWNER)

    result = ingest_world(kb, store, catalog, world["id"], user_id=OWNER)
    assert result["version"] == 2 and result["replaced"] == ingested["passages"] and result["replaced_version"] == 1
    rows = _rows(kb, OWNER)
    assert len(rows) == result["passages"] and {r.source for r in rows} == {world_source(world["id"], 2)}
    text = {r.entity: r.text for r in rows}
    assert f"{len(state.buildings)} buildings" in text[result["name"]] and result["npcs"] == 1
    assert f"Brom is a blacksmith who lives in {result['name']}, at {smith.world['home']}" in text["Brom"]
    with kb.reading() as kbr:
        docs = kbr.con.execute("SELECT name, n_chunks FROM kb_docs WHERE doc_id = ?",
                               [world_doc_id(OWNER, world["id"])]).fetchall()
    assert docs == [(world_source(world["id"], 2), len(rows))]

    older = ingest_world(kb, store, catalog, world["id"], version=1, user_id=OWNER)  # never replaces a newer one
    assert not older["stored"] and older["stored_version"] == 2
    assert {r.source for r in _rows(kb, OWNER)} == {world_source(world["id"], 2)}


def test_api_cli_and_the_edit_path(world, ingested, kb, settings, store, catalog, tmp_path):
    from datetime import datetime, timezone

    from gaiverse.api.deps import Services
    from gaiverse.api.keys import User
    from gaiverse.api.knowledge import post_world_knowledge, refresh_world_knowledge
    from gaiverse.npc.cli import create_cmd, kb_app

    services = Services(settings, store, catalog, extras={"knowledge": kb})
    bob = User(OTHER, "bob", False, "gv_x", datetime.now(timezone.utc))
    alice = User(OWNER, "alice", False, "gv_y", datetime.now(timezone.utc))
    with pytest.raises(HTTPException) as err:
        post_world_knowledge(world["id"], services, kb, bob)
    assert err.value.status_code == 404 and world["id"] in err.value.detail
    with pytest.raises(HTTPException) as err:
        post_world_knowledge(world["id"], services, kb, alice, version=99)
    assert err.value.status_code == 404 and "no version 99" in err.value.detail
    # a rollback through the API publishes v3 and ingests it in the background (the edit path)
    made = WorldVersions(store, catalog).rollback(world["id"], 1, author=OWNER)
    refresh_world_knowledge(services, world["id"], made.version).join()
    assert {r.source for r in _rows(kb, OWNER)} == {world_source(world["id"], 3)}
    out = post_world_knowledge(world["id"], services, kb, alice, version=2)
    assert out.world_id == world["id"] and not out.stored and out.version == 2 and out.passages == 0

    runner = CliRunner()
    create = typer.Typer()
    create.command()(create_cmd)
    refused = runner.invoke(create, ["--out", str(tmp_path), "--world", world["id"], "--user", OTHER])
    assert refused.exit_code == 2 and "--world" in refused.output and "among your worlds" in refused.output
    bad = runner.invoke(kb_app, ["ingest-world", world["id"], "--user", OTHER, "--kb", str(kb.path)])
    assert bad.exit_code == 2 and "among your worlds" in bad.output
    older = runner.invoke(kb_app, ["ingest-world", world["id"], "--version", "1", "--user", OWNER,
                                   "--kb", str(kb.path)])
    assert older.exit_code == 0, older.output  # v3 is stored: v1 is derived but not embedded nor stored
    assert json.loads(older.stdout.strip().splitlines()[-1])["stored_version"] == 3
