"""NPC generation (NPC-b1) and the character repository (NPC-b2) over the real prior knowledge base."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from gaiverse.character.params import BodyParams, check
from gaiverse.npc.appearance import HAIR
from gaiverse.npc.character_repository import CharacterRepository, TemplateNotFound, system_templates
from gaiverse.npc.expression import GESTURES
from gaiverse.npc.generation import NpcSettings, appearance_glb, generate_profile
from gaiverse.npc.knowledge_base import Scope

SMITH = {"role": "blacksmith", "traits": ["grumpy"], "domains": ["weapons"], "seed": 7}


def test_user_settings_steer_profile_backstory_and_dialogue_style(kb, user):
    profile = generate_profile(NpcSettings(**SMITH), None, kb, Scope(user_id=user), user_id=user)
    assert profile.role == "blacksmith" and "grumpy" in profile.traits
    assert "blacksmith" in profile.backstory and "grumpy" in profile.backstory and "weapons" in profile.backstory
    assert profile.dialogue_style["style"] == "gruff"
    assert "weapons" in profile.dialogue_style["greeting"] and profile.dialogue_style["topics"] == ["weapons"]
    assert profile.kb_domains[0] == "items"
    # grounded: every cited passage exists in the knowledge base and is cited in the text
    expertise = [c for c in profile.citations if c["purpose"] == "expertise"]
    assert expertise and all(c["domain"] == "items" for c in expertise)
    assert any(re.search(r"weapon|sword|axe|mace|hammer", c["text"], re.I) for c in expertise)
    stored = {r.id: r.text for r in kb.list(Scope(), ids=[c["id"] for c in profile.citations])}
    assert all(stored[c["id"]] == c["text"] for c in profile.citations)
    cited = {int(i) for i in re.findall(r"\[kb:(\d+)\]", profile.backstory)}
    assert cited and cited <= set(stored)
    persona = profile.persona()
    assert persona.style == "gruff" and persona.domains == tuple(profile.kb_domains) and persona.name == profile.name


def test_tall_hint_makes_the_npc_taller_than_the_default(kb, user):
    plain = generate_profile(NpcSettings(**SMITH), None, None)
    tall = generate_profile(NpcSettings(**SMITH, appearance=["tall", "red hair", "beard"]), None, None)
    short = generate_profile(NpcSettings(**SMITH, appearance=["short"]), None, None)
    assert short.appearance["height_m"] < plain.appearance["height_m"] < tall.appearance["height_m"]
    assert tuple(tall.appearance["hair_rgb"]) == HAIR["red"] and tall.appearance["beard"] is True
    odd = generate_profile(NpcSettings(**SMITH, appearance=["glows faintly"]), None, None)
    assert odd.unmatched_hints == ["glows faintly"]  # reported, not silently dropped


def test_two_npcs_differ_but_stay_plausible_and_a_seed_repeats():
    a = generate_profile(NpcSettings(role="town guard", seed=1), None, None)
    b = generate_profile(NpcSettings(role="town guard", seed=2), None, None)
    again = generate_profile(NpcSettings(role="town guard", seed=1), None, None)
    assert a.to_dict() == again.to_dict()
    assert a.appearance != b.appearance and a.name != b.name
    assert a.appearance["height_m"] != b.appearance["height_m"]
    assert a.appearance["top_rgb"] != b.appearance["top_rgb"]
    assert a.behaviour["schedule"] != b.behaviour["schedule"]
    for p in (a, b):
        check(BodyParams.from_dict(p.appearance))
        assert sum(block["hours"] for block in p.behaviour["schedule"]) == pytest.approx(24.0)
        assert any("watch" in block["activity"] or "patrol" in block["activity"] for block in p.behaviour["schedule"])
        assert {i["gesture"] for i in p.behaviour["idle"]} <= set(GESTURES)
    many = [generate_profile(NpcSettings(role="innkeeper", seed=s), None, None) for s in range(12)]
    heights = [p.appearance["height_m"] for p in many]
    assert len({round(h, 3) for h in heights}) == 12 and 0.6 <= min(heights) and max(heights) <= 2.6


def test_voice_is_a_valid_piper_voice_setting_and_follows_sex_and_wishes():
    from gaiverse.speech.tts import VoiceSettings

    her = generate_profile(NpcSettings(role="priest", sex="female", seed=3), None, None)
    him = generate_profile(NpcSettings(role="priest", sex="male", seed=3), None, None)
    assert her.voice["pitch_semitones"] > him.voice["pitch_semitones"]
    VoiceSettings(**her.voice), VoiceSettings(**him.voice)
    wished = generate_profile(NpcSettings(role="priest", voice={"rate": 0.8, "pitch_semitones": -3}, seed=3), None, None)
    assert wished.voice["rate"] == 0.8 and wished.voice["pitch_semitones"] == -3


def test_settings_errors_name_the_field():
    with pytest.raises(ValidationError, match="species"):
        NpcSettings(species="vulcan")
    with pytest.raises(ValidationError, match="traits"):
        NpcSettings(traits=["x" * 80])
    with pytest.raises(ValidationError, match="colour"):
        NpcSettings(colour="red")  # type: ignore[call-arg]


def test_repository_is_seeded_from_the_srd_and_keeps_user_templates_private(tmp_path, user):
    templates = {t.id: t for t in system_templates()}
    assert len(templates) >= 30
    guard = templates["srd:guard"]
    assert guard.source == "srd:monsters/guard" and guard.abilities["str"] == 13 and "spear" in guard.gear
    assert templates["background:sage"].category == "study"

    repo = CharacterRepository(tmp_path / "characters.duckdb")
    mine = repo.add(user, "Cheerful innkeeper", {"role": "innkeeper", "traits": ["cheerful"],
                                                "appearance": ["red hair", "heavy"], "species": "halfling"})
    assert [t.id for t in repo.user_templates(user)] == [mine.id]
    assert repo.get(mine.id, user).settings["role"] == "innkeeper"
    with pytest.raises(TemplateNotFound):
        repo.get(mine.id, "someone-else")
    assert repo.user_templates("someone-else") == []
    with pytest.raises(ValidationError, match="species"):
        repo.add(user, "bad", {"species": "vulcan"})
    assert len(repo.user_templates(user)) == 1  # the bad one left nothing behind

    # the predefined settings steer generation; the request's own settings still win
    npc = generate_profile(NpcSettings(name="Rosie", seed=5), repo.get(mine.id, user), None)
    assert npc.role == "innkeeper" and npc.species == "halfling" and "cheerful" in npc.traits
    assert tuple(npc.appearance["hair_rgb"]) == HAIR["red"] and npc.appearance["build"] >= 0.85
    assert npc.name == "Rosie" and npc.dialogue_style["style"] == "friendly"
    repo.delete(mine.id, user)
    assert repo.user_templates(user) == []


def test_generated_npc_glb_is_valid(kb, user):
    from validation.gltf import validate_glb
    from validation.npc import rig_facts

    profile = generate_profile(NpcSettings(**SMITH), None, kb, Scope(user_id=user), user_id=user)
    glb = appearance_glb(profile)
    assert validate_glb(glb).errors == []
    facts = rig_facts(glb)
    assert {"jawOpen", "eyeBlinkLeft", "viseme_aa"} <= facts["targets"] and "wave" in facts["clips"]


def test_cli_create_refuses_bad_settings_with_the_option_named(tmp_path):
    from typer.testing import CliRunner

    from gaiverse.cli import app

    result = CliRunner().invoke(app, ["npc", "create", "--role", "smith", "--species", "vulcan",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--species" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing written
