"""Tasks of the avatar flow: thin wrappers over ``gaiverse.avatar`` (capture checks, analysis, decision).

Captured media are personal data: they are read sealed from the object store, opened with the
owner's key (``gaiverse.avatar.capture.open_vault``) inside the decode task and passed between
tasks in memory only (``cache="none"``: nothing personal is copied into Prefect's result storage).
What the flow derives (analysis JSON with transcript and measurements, the preview of the face) is
sealed with the same key before it is stored, and the run's artifacts carry nothing personal (Prefect's
run history is outside erasure, docs/PRIVACY.md).
The owner is the ``owner:<id>`` tag of runs the API starts; a run started elsewhere names its owner
in ``user_id``, and either way only the owner's capture opens.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from prefect import get_run_logger

from gaiverse.avatar.capture import DERIVED_CONTEXT, DERIVED_KIND, SEAL_CONTEXT, MediaFile, check_capture
from gaiverse.avatar.decision import DEFAULT_POLICY_DIR, HeuristicDecider, PolicyDecider
from gaiverse.config import get_settings
from tasks.artifacts import table_artifact
from tasks.common import current_run_ids, gaiverse_task, get_catalog, get_store
from tasks.knowledge import run_owner

AUDIO_RATE = 16_000
CAPTURE_ID = r"^cap-[0-9a-f]{12}$"


def capture_collection(capture_id: str) -> str:
    """Catalog collection of a capture (one version: the sealed media and the checks)."""
    return f"avatar-capture/{capture_id}"


def avatar_collection(capture_id: str) -> str:
    """Catalog collection of the avatar made from a capture (versions: analysis + parameters, later engines)."""
    return f"avatar/{capture_id}"


@lru_cache(maxsize=1)
def _transcriber():
    from gaiverse.speech.asr import Transcriber

    return Transcriber()


@lru_cache(maxsize=1)
def _policy() -> PolicyDecider:
    return PolicyDecider.load(DEFAULT_POLICY_DIR)


def measure_capture(frames, audio, text: str, video: bool) -> tuple[dict, dict, Any, Any]:
    """(summary, full analysis JSON, policy input, Preferences) of one capture.

    Uses ``gaiverse.avatar.analysis`` (MediaPipe face mesh, head pose, body, timbre) when it is installed,
    else the minimal Haar-box analysis of ``gaiverse.avatar.capture_analysis``; the summary has the same
    keys either way.
    """
    from gaiverse.avatar import capture_analysis as minimal

    try:
        from gaiverse.avatar import analysis as full
    except ImportError:
        full = None
    if full is not None:
        result = full.analyse_capture(frames, audio, AUDIO_RATE, text or None, transcriber=_transcriber(),
                                      video=video)
        policy_input, prefs = full.to_policy_inputs(result)
        summary = minimal.summarise_full_analysis(result)
        summary["preferences_text"] = text
        return summary, result.to_json(), policy_input, prefs
    measured = minimal.analyse_capture(frames, audio, text, _transcriber().transcribe)
    summary = measured.to_json()
    return summary, summary, measured.decision_input(), minimal.preferences_from_json(summary["preferences"])


@gaiverse_task(name="avatar-decode", cache="none", retries=2, backoff_s=1.0)
def decode_capture(capture_id: str, user_id: str) -> dict[str, Any]:
    """Read the owner's sealed capture, open it with their key and decode frames + 16 kHz audio (re-checked)."""
    owner = run_owner() or user_id
    if run_owner() is not None and user_id not in ("local", owner):
        raise ValueError(f"`user_id` {user_id!r} differs from the user who started this run")
    versions = get_catalog().versions(capture_collection(capture_id))
    if not versions or versions[0].author != owner:
        raise ValueError(f"no capture {capture_id!r} of user {owner!r}")
    store = get_store()
    manifest = json.loads(store.get_bytes(versions[0].manifest_key))
    from gaiverse.avatar.capture import open_vault

    keyring, vault = open_vault(get_settings())
    subject = keyring.pseudonym(owner)
    files = [MediaFile(m["role"], vault.open(subject, store.get_bytes(m["key"]), SEAL_CONTEXT))
             for m in manifest["media"]]
    text = ""
    if manifest.get("preferences_key"):
        text = vault.open(subject, store.get_bytes(manifest["preferences_key"]), SEAL_CONTEXT).decode("utf-8")
    checked = check_capture(files)
    get_run_logger().info("capture %s: %s, %.1f s, face in %d/%d frames, %.1f s of speech", capture_id,
                          checked.mode, checked.duration_s, checked.frames_with_face, checked.frames_sampled,
                          checked.speech_s)
    return {"capture_id": capture_id, "owner": owner, "checks": checked.summary(), "frames": checked.frames,
            "audio": checked.audio, "preferences_text": text, "capture_manifest": versions[0].manifest_key}


@gaiverse_task(name="avatar-analyse", cache="none", retries=1)
def analyse(decoded: dict[str, Any]) -> dict[str, Any]:
    """Face box and colours, voice pitch/range/rate, transcript and wishes; the best frame as a preview PNG."""
    from gaiverse.avatar.capture_analysis import preview_png

    summary, full, policy_input, prefs = measure_capture(
        decoded["frames"], decoded["audio"], decoded["preferences_text"], video=decoded["checks"]["mode"] == "video")
    f0 = summary["f0_median_hz"] or "-"
    label = f"face {summary['frames_with_face']}/{summary['frames']} frames, F0 {f0} Hz"
    frame = decoded["frames"][summary["best_frame"] if summary["best_frame"] is not None else 0]
    get_run_logger().info("analysed (%s): %s; transcript %r; wishes %s", summary["method"], label,
                          summary["transcript"], summary["preferences"].get("matched"))
    return {"measurements": summary, "full": full, "decision_input": policy_input, "preferences": prefs,
            "preview": preview_png(frame, summary["face_box"], label)}


@gaiverse_task(name="avatar-decide", cache="none", retries=0)
def decide(analysed: dict[str, Any]) -> dict[str, Any]:
    """Avatar parameters from the PPO policy (AV-b2), with the heuristic baseline's beside them."""
    prefs = analysed["preferences"]
    chosen = _policy().decide(analysed["decision_input"], prefs)
    baseline = HeuristicDecider().decide(analysed["decision_input"], prefs)
    get_run_logger().info("decided: style %s, hair %s, pitch %+.1f st", chosen.style, chosen.hair_style,
                          chosen.pitch_semitones)
    return {"decider": PolicyDecider.name, "params": chosen.to_json(), "baseline": baseline.to_json()}


@gaiverse_task(name="avatar-store", cache="none", retries=3)
def store_avatar(decoded: dict[str, Any], analysed: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """Analysis + parameters JSON and the preview, sealed with the owner's key, as a new version of
    ``avatar/<capture_id>`` (once per run)."""
    flow_run_id, task_run_id = current_run_ids()
    capture_id, owner = decoded["capture_id"], decoded["owner"]
    collection, catalog, store = avatar_collection(capture_id), get_catalog(), get_store()
    if flow_run_id:
        done = catalog.query("SELECT version, manifest_key FROM versions "
                             "WHERE collection = ? AND flow_run_id = ?", [collection, flow_run_id])
        if done:
            return {"collection": collection, **done[0]}
    result = {"capture_id": capture_id, "owner": owner, "checks": decoded["checks"],
              "analysis": analysed["measurements"], "analysis_full": analysed["full"], **decision,
              "flow_run_id": flow_run_id}
    from gaiverse.avatar.capture import open_vault

    keyring, vault = open_vault(get_settings())
    subject = keyring.pseudonym(owner)
    if not vault.has_key(subject):  # erased while the flow ran: sealing would make a new key
        raise ValueError(f"the owner of capture {capture_id!r} has no key any more (their data was erased)")
    plain = {"avatar": json.dumps(result, indent=1, sort_keys=True, default=str).encode(),
             "preview": analysed["preview"]}
    refs = {name: store.put_bytes(vault.seal(subject, data, DERIVED_CONTEXT), kind=DERIVED_KIND, ext="bin")
            for name, data in plain.items()}
    manifest = {"capture_id": capture_id, "owner": owner, "flow_run_id": flow_run_id,
                "capture_manifest": decoded["capture_manifest"],
                "assets": {k: r.to_dict() for k, r in refs.items()}}
    manifest_ref = store.put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode(),
                                   kind="avatar/manifest", ext="json")
    version = catalog.publish_version(collection, manifest=manifest_ref, assets=list(refs.values()),
                                      message=f"avatar parameters ({decision['decider']}) from {capture_id}",
                                      author=owner, flow_run_id=flow_run_id)
    get_run_logger().info("published %s v%d", collection, version.version)
    return {"collection": collection, "version": version.version, "manifest_key": manifest_ref.key,
            "assets": {k: r.key for k, r in refs.items()}}


@gaiverse_task(name="avatar-report", cache="none", retries=2)
def attach_avatar_report(analysed: dict[str, Any], decision: dict[str, Any]) -> str:
    """The run's artifact: a table of non-identifying figures (counts, method, the decided style).

    No face image, transcript, typed wishes, colours or voice measures: Prefect keeps artifacts in its
    own database, which erasure does not reach (and a presigned link would outlive nothing sealed:
    the preview is stored sealed). The owner sees all of it at ``GET /avatars/captures/{id}``.
    """
    m, p = analysed["measurements"], decision["params"]
    rows = [{"measure": k, "value": m.get(k)} for k in ("frames_with_face", "frames", "sharpness", "method")]
    rows += [{"measure": f"decided {k}", "value": p.get(k)} for k in (
        "style", "hair_style", "height_m", "build", "pitch_semitones", "speaking_rate", "expressiveness")]
    table_artifact("avatar-measurements", rows, title="Avatar capture: counts and decided style (details: "
                   "GET /avatars/captures/{id}, owner only)", columns=["measure", "value"])
    return "avatar-measurements"
