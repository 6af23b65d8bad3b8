"""Tasks of the avatar flow: thin wrappers over ``gaiverse.avatar`` (capture checks, analysis, decision).

Captured media are personal data: they are read sealed from the object store, opened with the
owner's key (``gaiverse.avatar.capture.open_vault``) inside the decode task and passed between
tasks in memory only (``cache="none"``: nothing personal is copied into Prefect's result storage).
What the flow derives (analysis JSON with transcript and measurements, the preview of the face) is
sealed with the same key before it is stored, and the run's artifacts carry nothing personal (Prefect's
run history is outside erasure, docs/PRIVACY.md).
The owner is the ``owner:<id>`` tag of runs the API starts; a run started elsewhere names its owner
in ``user_id``, and either way only the owner's capture opens.
The engine tasks (portrait -> voice -> animation -> render) call ``gaiverse.avatar.creation``, the one
module that wires the engines; what creation needs later (best frame, landmarks, head-pose track, voice)
is stored sealed as the version's ``source`` so customisation rebuilds without a new capture.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact

from gaiverse.avatar import creation
from gaiverse.avatar.capture import SEAL_CONTEXT, CaptureLimits, MediaFile, check_capture
from gaiverse.avatar.customisation import params_from_json
from gaiverse.avatar.decision import DEFAULT_POLICY_DIR, HeuristicDecider, PolicyDecider
from gaiverse.avatar.versions import AvatarVersions
from gaiverse.config import get_settings
from tasks.artifacts import table_artifact
from tasks.common import current_run_ids, gaiverse_task, get_catalog, get_store
from tasks.knowledge import run_owner

AUDIO_RATE = 16_000
FLOW_FRAMES = 48
"""Frames decoded evenly over a capture: enough for the head-pose track (16 fps on a 3 s clip) at ~4 ms each."""
CAPTURE_ID = r"^cap-[0-9a-f]{12}$"


def capture_collection(capture_id: str) -> str:
    """Catalog collection of a capture (one version: the sealed media and the checks)."""
    return f"avatar-capture/{capture_id}"


@lru_cache(maxsize=1)
def _transcriber():
    from gaiverse.speech.asr import Transcriber

    return Transcriber()


@lru_cache(maxsize=1)
def _policy() -> PolicyDecider:
    return PolicyDecider.load(DEFAULT_POLICY_DIR)


def measure_capture(frames, audio, text: str, video: bool,
                    duration_s: float) -> tuple[dict, dict, Any, Any, creation.CreationSource]:
    """(summary, full analysis JSON, policy input, Preferences, creation source) of one capture.

    Uses ``gaiverse.avatar.analysis`` (MediaPipe face mesh, head pose, body, timbre) when it is installed,
    else the minimal Haar-box analysis of ``gaiverse.avatar.capture_analysis`` (whose source has no face
    mesh: the generic head); the summary has the same keys either way.
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
        source = creation.CreationSource.from_analysis(result, frames, duration_s)
        return summary, source.analysis, policy_input, prefs, source
    measured = minimal.analyse_capture(frames, audio, text, _transcriber().transcribe)
    summary = measured.to_json()
    best = summary["best_frame"]
    source = creation.CreationSource(analysis=None, portrait_frame=frames[best] if best is not None else None,
                                     landmarks=None, pose_track=None)
    return summary, summary, measured.decision_input(), minimal.preferences_from_json(summary["preferences"]), source


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
    keyring, vault = _vault()
    subject = keyring.pseudonym(owner)
    files = [MediaFile(m["role"], vault.open(subject, store.get_bytes(m["key"]), SEAL_CONTEXT))
             for m in manifest["media"]]
    text = ""
    if manifest.get("preferences_key"):
        text = vault.open(subject, store.get_bytes(manifest["preferences_key"]), SEAL_CONTEXT).decode("utf-8")
    checked = check_capture(files, CaptureLimits(sample_frames=FLOW_FRAMES))
    get_run_logger().info("capture %s: %s, %.1f s, face in %d/%d frames, %.1f s of speech", capture_id,
                          checked.mode, checked.duration_s, checked.frames_with_face, checked.frames_sampled,
                          checked.speech_s)
    return {"capture_id": capture_id, "owner": owner, "checks": checked.summary(), "frames": checked.frames,
            "audio": checked.audio, "preferences_text": text, "capture_manifest": versions[0].manifest_key}


def _vault():
    from gaiverse.avatar.capture import open_vault

    return open_vault(get_settings())


def owner_versions(owner: str) -> AvatarVersions:
    """The owner's avatars on this installation's store and catalog, sealed with their key."""
    keyring, vault = _vault()
    return AvatarVersions(get_store(), get_catalog(), vault, keyring.pseudonym(owner), owner)


@gaiverse_task(name="avatar-analyse", cache="none", retries=1)
def analyse(decoded: dict[str, Any]) -> dict[str, Any]:
    """Face mesh, head pose and colours, voice pitch/range/rate, transcript and wishes; the best frame as a
    preview PNG, and the creation source (best frame, landmarks, head-pose track)."""
    from gaiverse.avatar.capture_analysis import preview_png

    checks = decoded["checks"]
    summary, full, policy_input, prefs, source = measure_capture(
        decoded["frames"], decoded["audio"], decoded["preferences_text"], video=checks["mode"] == "video",
        duration_s=checks["duration_s"])
    f0 = summary["f0_median_hz"] or "-"
    label = f"face {summary['frames_with_face']}/{summary['frames']} frames, F0 {f0} Hz"
    frame = decoded["frames"][summary["best_frame"] if summary["best_frame"] is not None else 0]
    # counts only: Prefect keeps run logs in its own database, which erasure does not reach
    get_run_logger().info("analysed (%s): face in %d/%d frames; transcript of %d words; %d wishes", summary["method"],
                          summary["frames_with_face"], summary["frames"], len((summary["transcript"] or "").split()),
                          len(summary["preferences"].get("matched") or []))
    return {"measurements": summary, "full": full, "decision_input": policy_input, "preferences": prefs,
            "preview": preview_png(frame, summary["face_box"], label), "source": source}


@gaiverse_task(name="avatar-decide", cache="none", retries=0)
def decide(analysed: dict[str, Any]) -> dict[str, Any]:
    """Avatar parameters from the PPO policy (AV-b2), with the heuristic baseline's beside them."""
    prefs = analysed["preferences"]
    chosen = _policy().decide(analysed["decision_input"], prefs)
    baseline = HeuristicDecider().decide(analysed["decision_input"], prefs)
    get_run_logger().info("decided: style %s, hair %s, pitch %+.1f st", chosen.style, chosen.hair_style,
                          chosen.pitch_semitones)
    return {"decider": PolicyDecider.name, "params": chosen.to_json(), "baseline": baseline.to_json()}


def _timed(step: str, fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    ms = round((time.perf_counter() - start) * 1000, 1)
    get_run_logger().info("%s took %.0f ms", step, ms)
    return out, ms


@gaiverse_task(name="avatar-portrait", cache="none", retries=1)
def portrait(analysed: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """Engine 1: the personalised head (captured landmarks + projected texture) on the parametric body."""
    model, ms = _timed("portrait", creation.build_portrait, analysed["source"], params_from_json(decision["params"]))
    return {"model": model, "ms": ms}


@gaiverse_task(name="avatar-voice", cache="none", retries=1)
def voice(analysed: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """Engine 2: the avatar's voice sample (Piper converted toward the user's pitch and timbre)."""
    (audio, rate), ms = _timed("voice", creation.make_voice, analysed["source"], params_from_json(decision["params"]))
    return {"audio": audio, "rate": rate, "ms": ms}


@gaiverse_task(name="avatar-animation", cache="none", retries=1)
def animate(capture_id: str, analysed: dict[str, Any], decision: dict[str, Any], modelled: dict[str, Any],
            voiced: dict[str, Any]) -> dict[str, Any]:
    """Engine 3: talk (lip-sync on the voice sample) and head-motion clips into the model; .glb and VRM."""
    def run():
        clips = creation.make_clips(analysed["source"], voiced["audio"], voiced["rate"],
                                    decision["params"]["expressiveness"])
        return creation.export(modelled["model"], clips, {"avatar_id": capture_id})

    (glb, vrm, stats), ms = _timed("animation + export", run)
    return {"glb": glb, "vrm": vrm, "stats": stats, "ms": ms}


@gaiverse_task(name="avatar-render", cache="none", retries=1)
def render(animated: dict[str, Any]) -> dict[str, Any]:
    """Engine 4: the turntable PNG and MP4, rendered offscreen (stored sealed: they show the user's face)."""
    (png, mp4), ms = _timed("render", creation.render, animated["glb"])
    return {"turntable_png": png, "turntable_mp4": mp4, "ms": ms}


def made_objects(modelled: dict[str, Any], voiced: dict[str, Any], animated: dict[str, Any],
                 rendered: dict[str, Any]) -> creation.Creation:
    """The engine tasks' outputs as one ``Creation`` (what customisation's ``creation.create`` returns)."""
    timings = {"portrait": modelled["ms"], "voice": voiced["ms"], "animation": animated["ms"],
               "render": rendered["ms"]}
    return creation.Creation(glb=animated["glb"], vrm=animated["vrm"],
                             voice_wav=creation.voice_wav(voiced["audio"], voiced["rate"]),
                             turntable_png=rendered["turntable_png"], turntable_mp4=rendered["turntable_mp4"],
                             stats={**animated["stats"], "voice_s": round(len(voiced["audio"]) / voiced["rate"], 2)},
                             timings_ms=timings)


@gaiverse_task(name="avatar-store", cache="none", retries=3)
def store_avatar(decoded: dict[str, Any], analysed: dict[str, Any], decision: dict[str, Any],
                 made: creation.Creation | None = None) -> dict[str, Any]:
    """Analysis + parameters JSON, the preview, the creation source and the engines' outputs, sealed with
    the owner's key, as version 1 of ``avatar/<capture_id>`` (once per run)."""
    flow_run_id, _ = current_run_ids()
    capture_id, owner = decoded["capture_id"], decoded["owner"]
    repo = owner_versions(owner)
    collection = f"avatar/{capture_id}"
    if flow_run_id:
        done = repo.catalog.query("SELECT version, manifest_key FROM versions "
                                  "WHERE collection = ? AND flow_run_id = ?", [collection, flow_run_id])
        if done:
            manifest = json.loads(repo.store.get_bytes(done[0]["manifest_key"]))
            return {"collection": collection, **done[0], "assets": {k: r["key"] for k, r in manifest["assets"].items()}}
    result = {"capture_id": capture_id, "owner": owner, "checks": decoded["checks"],
              "analysis": analysed["measurements"], "analysis_full": analysed["full"], **decision,
              "flow_run_id": flow_run_id, "engines": None if made is None else
              {"stats": made.stats, "timings_ms": made.timings_ms}}
    objects = {"avatar": json.dumps(result, indent=1, sort_keys=True, default=str).encode(),
               "preview": analysed["preview"], "source": analysed["source"].to_bytes(),
               **(made.objects() if made is not None else {})}
    version = repo.publish(capture_id, objects, meta={"capture_manifest": decoded["capture_manifest"]},
                           message=f"avatar ({decision['decider']}) from {capture_id}", flow_run_id=flow_run_id)
    manifest = repo.manifest(version)
    get_run_logger().info("published %s v%d", collection, version.version)
    return {"collection": collection, "version": version.version, "manifest_key": version.manifest_key,
            "assets": {k: r["key"] for k, r in manifest["assets"].items()}}


@gaiverse_task(name="avatar-report", cache="none", retries=2)
def attach_avatar_report(analysed: dict[str, Any], decision: dict[str, Any],
                         made: creation.Creation | None = None, capture_id: str | None = None) -> str:
    """The run's artifact: a table of non-identifying figures (counts, method, the decided style, the
    engines' sizes and timings).

    No face image or turntable, transcript, typed wishes, colours or voice measures: Prefect keeps
    artifacts in its own database, which erasure does not reach (and a presigned link would outlive
    nothing sealed: the previews are stored sealed). The owner sees all of it at
    ``GET /avatars/captures/{id}`` and downloads it from ``/avatars/{id}/...``.
    """
    m, p = analysed["measurements"], decision["params"]
    rows = [{"measure": k, "value": m.get(k)} for k in ("frames_with_face", "frames", "sharpness", "method")]
    rows += [{"measure": f"decided {k}", "value": p.get(k)} for k in (
        "style", "hair_style", "height_m", "build", "pitch_semitones", "speaking_rate", "expressiveness")]
    if made is not None:
        rows += [{"measure": f"{k} ms", "value": v} for k, v in made.timings_ms.items()]
        rows += [{"measure": f"{k} bytes", "value": len(v)} for k, v in made.objects().items()]
        rows += [{"measure": k, "value": v} for k, v in made.stats.items() if isinstance(v, (int, float))]
    table_artifact("avatar-measurements", rows, title="Avatar: counts, decided style, engine timings and sizes "
                   "(details: GET /avatars/captures/{id}, owner only)", columns=["measure", "value"])
    if capture_id is not None:  # the previews themselves: a link to the owner-only page, not a copy in Prefect
        create_link_artifact(key="avatar-previews", link=f"{get_settings().api_url}/web/avatar.html?capture={capture_id}",
                             link_text="live avatar, turntable PNG/MP4, .glb/.vrm (owner sign-in)",
                             description="The sealed turntable previews and the avatar, opened for the owner only.")
    return "avatar-measurements"
