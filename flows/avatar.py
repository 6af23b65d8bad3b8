"""The avatar flow (FGMV-22 8.1 service flow: capture -> analysis -> decision -> creation; AV-a1, AV-b1,
AV-b2, AV-c1).

decode the owner's sealed capture (re-checked: a face, speech, duration) -> analyse (face mesh, head
pose, colours, voice pitch/range/rate, transcript, spoken and typed wishes) -> decide (the PPO policy,
the heuristic baseline beside it) -> the four engines of ``gaiverse.avatar.creation``: portrait (the
personalised head on the parametric body) -> voice (the avatar's voice sample) -> animation (talk and
head-motion clips; .glb + VRM) -> render (turntable PNG/MP4) -> store version 1 of
``avatar/<capture_id>`` (everything sealed with the owner's key, including the creation source that
customisation rebuilds from) -> report (a table of non-identifying counts, the decided style and the
engines' timings and sizes; no face, turntable, transcript or colours in Prefect).
``POST /avatars/captures`` starts it. Customisation (AV-c3) does not re-run it: see
``gaiverse.avatar.customisation.customise``.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from tasks.avatar import (
    CAPTURE_ID, analyse, animate, attach_avatar_report, decide, decode_capture, made_objects, portrait, render,
    store_avatar, voice,
)
from tasks.common import flow_hooks


@flow(name="avatar-create", description="Avatar from a terminal capture: decode, analyse, decide, portrait, "
      "voice, animation, render, store (AV-a1, AV-b1, AV-b2, AV-c1).", **flow_hooks())
def create_avatar(
    capture_id: Annotated[str, Field(pattern=CAPTURE_ID)],
    user_id: Annotated[str, Field(min_length=1, max_length=200)] = "local",
) -> dict[str, Any]:
    """Analyse one capture, create the avatar and publish it; returns the version and asset keys.

    capture_id : from ``POST /avatars/captures``. user_id : the owner when the run carries no ``owner:`` tag.
    """
    decoded = decode_capture(capture_id, user_id)
    analysed = analyse(decoded)
    decision = decide(analysed)
    modelled = portrait(analysed, decision)
    voiced = voice(analysed, decision)
    animated = animate(capture_id, analysed, decision, modelled, voiced)
    rendered = render(animated)
    made = made_objects(modelled, voiced, animated, rendered)
    version = store_avatar(decoded, analysed, decision, made)
    attach_avatar_report(analysed, decision, made, capture_id)
    get_run_logger().info("avatar %s published as %s v%d in %.0f ms of engines", capture_id, version["collection"],
                          version["version"], sum(v for v in made.timings_ms.values() if v))
    return {"capture_id": capture_id, "owner": decoded["owner"], **version, "params": decision["params"],
            "timings_ms": made.timings_ms}
