"""The avatar flow (FGMV-22 8.1 service flow: capture -> analysis -> decision; AV-a1, AV-b1, AV-b2).

decode the owner's sealed capture (re-checked: a face, speech, duration) -> analyse (face box and
colours, voice pitch/range/rate, transcript, spoken and typed wishes) -> decide (the PPO policy, the
heuristic baseline beside it) -> store a version of ``avatar/<capture_id>`` (analysis + parameters
JSON and the preview, sealed with the owner's key) -> report (a table of non-identifying counts and
the decided style as artifact; no face, transcript or colours in Prefect). ``POST /avatars/captures``
starts it; the creation engines (AV-c1) extend it.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from tasks.avatar import CAPTURE_ID, analyse, attach_avatar_report, decide, decode_capture, store_avatar
from tasks.common import flow_hooks

@flow(name="avatar-create", description="Avatar from a terminal capture: decode, analyse, decide, store "
      "(AV-a1, AV-b1, AV-b2).", **flow_hooks())
def create_avatar(
    capture_id: Annotated[str, Field(pattern=CAPTURE_ID)],
    user_id: Annotated[str, Field(min_length=1, max_length=200)] = "local",
) -> dict[str, Any]:
    """Analyse one capture and publish the decided avatar parameters; returns the version and asset keys.

    capture_id : from ``POST /avatars/captures``. user_id : the owner when the run carries no ``owner:`` tag.
    """
    decoded = decode_capture(capture_id, user_id)
    analysed = analyse(decoded)
    decision = decide(analysed)
    version = store_avatar(decoded, analysed, decision)
    attach_avatar_report(analysed, decision)
    get_run_logger().info("avatar %s published as %s v%d", capture_id, version["collection"], version["version"])
    return {"capture_id": capture_id, "owner": decoded["owner"], **version, "params": decision["params"]}
