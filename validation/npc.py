"""Expectations on a generated NPC before it is published (NPC-b1): profile, voice, rig and the .glb.

The frame has one row per NPC, built from what was read back from the object store: the
profile JSON and the .glb bytes. The .glb must pass the Khronos validator with 0 errors, carry a
skin with every humanoid joint, every ARKit + viseme morph target and every gesture clip; the
profile must have its fields, a grounded backstory (at least one cited passage), a voice within
``VoiceSettings`` ranges, a 24-hour schedule and plausible proportions.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from gaiverse.character.animation import CLIPS
from gaiverse.character.face import MORPH_TARGETS
from gaiverse.character.gltf_writer import read_glb
from gaiverse.character.params import LIMITS
from gaiverse.character.skeleton import JOINT_NAMES
from validation.gltf import GltfReport
from validation.metrics import expect

NPC_SUITE = "npc.generated"
PROFILE_FIELDS = ("npc_id", "name", "role", "species", "backstory", "motives", "dialogue_style", "voice",
                  "behaviour", "appearance")

NPC_EXPECTATIONS = (
    expect("table_row_count_to_equal", value=1),
    expect("column_values_to_be_in_set", column="profile_complete", value_set=[True]),
    expect("column_values_to_be_between", column="citations", min_value=1),
    expect("column_values_to_be_between", column="backstory_chars", min_value=120, max_value=6000),
    expect("column_values_to_be_between", column="pitch_semitones", min_value=-24, max_value=24),
    expect("column_values_to_be_between", column="rate", min_value=0.25, max_value=4.0),
    expect("column_values_to_be_between", column="timbre_shift", min_value=-12, max_value=12),
    expect("column_values_to_be_between", column="schedule_blocks", min_value=4),
    expect("column_values_to_be_between", column="schedule_hours", min_value=23.99, max_value=24.01),
    expect("column_values_to_be_between", column="height_m", min_value=LIMITS["height_m"][0],
           max_value=LIMITS["height_m"][1]),
    expect("column_values_to_be_in_set", column="gltf_errors", value_set=[0]),
    expect("column_values_to_be_in_set", column="joints_complete", value_set=[True]),
    expect("column_values_to_be_in_set", column="morph_targets_complete", value_set=[True]),
    expect("column_values_to_be_in_set", column="clips_complete", value_set=[True]),
)


def rig_facts(glb: bytes) -> dict[str, Any]:
    """What the .glb carries: joint names of its skin, morph target names, animation names."""
    gltf, _ = read_glb(glb)
    nodes = gltf.get("nodes", [])
    joints = {nodes[j].get("name") for skin in gltf.get("skins", []) for j in skin["joints"]}
    targets: set[str] = set()
    for mesh in gltf.get("meshes", []):
        targets |= set((mesh.get("extras") or {}).get("targetNames") or [])
    clips = {a.get("name") for a in gltf.get("animations", [])}
    return {"joints": joints, "targets": targets, "clips": clips}


def npc_frame(key: str, profile: dict[str, Any], glb: bytes, report: GltfReport) -> pd.DataFrame:
    """The one-row frame ``NPC_EXPECTATIONS`` run on (``key``: the stored .glb's key)."""
    facts = rig_facts(glb)
    schedule = (profile.get("behaviour") or {}).get("schedule") or []
    voice = profile.get("voice") or {}
    return pd.DataFrame([{
        "key": key,
        "profile_complete": all(profile.get(f) not in (None, "", [], {}) for f in PROFILE_FIELDS),
        "citations": len(profile.get("citations") or []),
        "backstory_chars": len(profile.get("backstory") or ""),
        "pitch_semitones": float(voice.get("pitch_semitones", float("nan"))),
        "rate": float(voice.get("rate", float("nan"))),
        "timbre_shift": float(voice.get("timbre_shift", float("nan"))),
        "schedule_blocks": len(schedule),
        "schedule_hours": float(sum(b.get("hours", 0) for b in schedule)),
        "height_m": float((profile.get("appearance") or {}).get("height_m", float("nan"))),
        "gltf_errors": len(report.errors),
        "joints_complete": set(JOINT_NAMES) <= facts["joints"],
        "morph_targets_complete": set(MORPH_TARGETS) <= facts["targets"],
        "clips_complete": set(CLIPS) <= facts["clips"],
    }])
