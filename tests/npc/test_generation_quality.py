"""Quality of generated NPCs (NPC-b1, NPC-b2): a backstory grounded in what the user said, the chosen
knowledge domains honoured, and a day spent where the role works.

The setting is the browser test's lighthouse keeper, whose first profile cited random GeoNames
cities ("Years of work taught Ona the trade: Fengxiang is a city in China...") and SRD stat blocks,
wanted to "learn all there is to know of Talatona", and worked in a commoner's fields.
"""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from gaiverse.npc.behaviour import role_workplace
from gaiverse.npc.character_repository import CATEGORY_DOMAINS
from gaiverse.npc.generation import KB_DOMAINS, NpcSettings, generate_profile, plan_npc
from gaiverse.npc.kb_ingest import DOMAINS
from gaiverse.npc.knowledge_base import Scope
from gaiverse.npc.prior import PRIOR_DIR

ONA = {"template": "srd:commoner", "name": "Ona", "role": "lighthouse keeper", "traits": ["grumpy", "watchful"],
       "background": "Kept the Saltmere light through thirty winters.", "domains": ["geography", "history"]}
OWN_FACT = "The lighthouse lamp was lit in 1887."


def geonames_places() -> set[str]:
    """Every city and country name of the shipped GeoNames prior."""
    geo = PRIOR_DIR / "geonames"
    cities = json.loads((geo / "cities_pop500k.json").read_text())
    countries = json.loads((geo / "countries.json").read_text())
    return {c["name"] for c in cities.values()} | {c["name"] for c in countries.values()}


def named(place: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(place)}(?!\w)", text) is not None


@pytest.fixture(scope="module")
def places() -> set[str]:
    return geonames_places()


def make_ona(kb, user: str, **extra):
    settings = NpcSettings(**ONA, **extra)
    plan = plan_npc(settings, None, None, user)
    fact_id = kb.add_fact(OWN_FACT, user, npc_id=plan.npc_id)  # what the web terminal files for the NPC
    profile = generate_profile(settings, None, kb, Scope(user_id=user), npc_id=plan.npc_id, user_id=user)
    return profile, fact_id


@pytest.mark.parametrize("seed", [5, 11])
def test_lighthouse_keeper_backstory_is_about_the_role_not_random_places(kb, user, places, seed):
    ona, fact_id = make_ona(kb, user, seed=seed)
    story, motives = ona.backstory, " ".join(ona.motives)
    assert "lighthouse keeper" in story and "Kept the Saltmere light through thirty winters" in story
    assert "lighthouse keeper" in motives and "grumpy" in story
    settings_text = " ".join([ONA["role"], ONA["background"], *ONA["traits"], OWN_FACT])
    unrelated = sorted(p for p in places if not named(p, settings_text) and (named(p, story) or named(p, motives)))
    assert unrelated == [], story
    # grounded in the NPC's own fact, as a short clause, and citing only passages it uses
    assert f"the lighthouse lamp was lit in 1887 [kb:{fact_id}]" in story
    cited = {int(i) for i in re.findall(r"\[kb:(\d+)\]", story)}
    assert cited == {c["id"] for c in ona.citations} and fact_id in cited
    assert not any(c["domain"] == "geography" for c in ona.citations)
    for label in ("Ability Scores", "Creature Type", "Feat:", "Skill Proficiencies", "population of"):
        assert label not in story


def test_relevant_prior_passages_still_ground_a_role_that_has_them(kb, user):
    smith = generate_profile(NpcSettings(role="blacksmith", domains=["weapons"], seed=7), None, kb,
                             Scope(user_id=user), user_id=user)
    expertise = [c for c in smith.citations if c["purpose"] == "expertise"]
    assert expertise and all(c["domain"] == "items" and c["cosine"] >= 0.35 for c in expertise)
    assert all(f"[kb:{c['id']}]" in smith.backstory for c in expertise)


def test_chosen_domains_are_exactly_the_npcs_and_filter_retrieval(kb, user):
    assert KB_DOMAINS == tuple(DOMAINS)  # one list: GET /knowledge/domains offers what generation uses
    assert set(kb.domains()) <= set(DOMAINS)
    assert {d for ds in CATEGORY_DOMAINS.values() for d in ds} <= set(DOMAINS)  # template defaults too
    ona, _ = make_ona(kb, user, seed=5)
    assert ona.domains == ["geography", "history"] and ona.kb_domains == ["geography", "history", "general"]
    assert ona.persona().domains == ("geography", "history", "general")
    for domain in DOMAINS:  # every domain the knowledge base offers is a valid choice
        assert NpcSettings(domains=[domain]).domains == [domain]
    with pytest.raises(ValidationError, match="domains"):
        NpcSettings(domains=["astrology"])
    # the filter: a scout knowing monsters cites monsters; knowing only geography, no monster
    def scout(domain: str):
        return generate_profile(NpcSettings(role="scout", domains=[domain], seed=3), None, kb, Scope(user_id=user))

    monsters, geography = scout("monsters"), scout("geography")
    assert {c["domain"] for c in monsters.citations if c["purpose"] == "expertise"} == {"monsters"}
    assert all(c["domain"] == "geography" for c in geography.citations if c["purpose"] == "expertise")


def test_schedule_follows_the_role_not_the_template():
    ona = generate_profile(NpcSettings(**ONA, seed=5), None, None)
    work = [b for b in ona.behaviour["schedule"] if b["place"] == "lighthouse"]
    assert work and all(b["activity"] == "tend the light" for b in work)
    assert not any(b["place"] == "fields" for b in ona.behaviour["schedule"])
    # a role without a mapping works at a place named after it; the template alone keeps its routine
    keeper = generate_profile(NpcSettings(template="srd:commoner", role="toll bridge keeper", seed=5), None, None)
    assert any(b["place"] == "toll bridge" for b in keeper.behaviour["schedule"])
    plain = generate_profile(NpcSettings(template="srd:commoner", seed=5), None, None)
    assert any(b["place"] == "fields" for b in plain.behaviour["schedule"])
    assert role_workplace("innkeeper") == ("inn", "serve guests") and role_workplace("cartographer")[0] == \
        "cartographer's workplace"
    for p in (ona, keeper, plain):
        assert sum(b["hours"] for b in p.behaviour["schedule"]) == pytest.approx(24.0)


def test_every_species_is_grounded_so_the_npc_suite_finds_a_citation(kb):
    from gaiverse.npc.character_repository import srd_species
    from gaiverse.npc.generation import retrieve_grounding

    for slug, species in srd_species().items():  # a role with no relevant passage still cites its own kind
        name = species["name"].split(",")[0]
        found = retrieve_grounding(kb, Scope(), "lighthouse keeper", [], ["history"], name, "")
        assert [c["purpose"] for c in found] == ["species"], slug
        assert found[0]["entity"].startswith(name), (slug, found[0]["entity"])
