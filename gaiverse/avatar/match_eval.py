"""`gaiverse eval avatar --video PATH`: does the avatar built from a video look, sound and move like its user?

For each talking-face video with sound:

1. **Split in time.** The avatar is built from the first ``build_fraction`` of the video (default half);
   the user's face, colours and voice it is compared with are measured on the rest, so a match cannot
   come from copying the very frames it is scored on.
2. **Measure the user** with the capture analysis (``analysis.analyse_capture``: MediaPipe landmarks,
   skin/hair CIELAB, F0 median, MFCC timbre) and the lip-sync targets (``lipsync_targets``: inner-lip gap
   in every frame, soundtrack aligned with the frames), plus the cepstrum of the voice's long-term
   average WORLD envelope (``voice.average_envelope_cepstrum``).
3. **Build two avatars** through the creation engines: the personalised one (analysis + decision of the
   build part, its landmarks and best frame, its voice) and the generic baseline (no analysis, no
   landmarks, default parameters, the default Piper voice, the energy-driven mouth).
4. **Score both** on the same scales:

   * ``landmark_error_iod`` — the avatar's 3D face landmarks posed onto every evaluation frame by PnP
     (``video_measures.fit_landmarks``), mean distance to the user's landmarks / inter-ocular distance;
   * ``skin_delta_e00`` — CIEDE2000 between the skin of the avatar's face (its texture measured at the
     same cheek/forehead landmarks as the user's, or its skin material when untextured) and the user's;
     ``body_skin_delta_e00`` / ``hair_delta_e00`` — the 'skin' (neck, ears, hands) and 'hair' materials as
     a glTF viewer shows them (``baseColorFactor`` is linear RGB) against the measured skin and hair;
   * ``f0_abs_semitones`` / ``f0_abs_hz`` — median F0 of a sentence spoken by the avatar's voice vs the
     user's; ``spectral_mcd_db`` (mel-cepstral distortion of the long-term envelopes, level excluded) and
     ``mfcc_distance`` (mean MFCC c1..c12, the timbre the analysis measures);
   * ``lipsync_corr`` — Pearson correlation of the mouth opening the avatar shows when its "talk" clip is
     made from the user's real audio (``animation.talk_clip``, jawOpen keys) with the real opening;
     ``av_offset_ms`` — lag of the best cross-correlation
     (+ = the mouth would move after the sound), passing inside ITU-R BT.1359's detectability window
     (sound at most 45 ms early, 125 ms late). Lip-sync takes nothing from the build part, so it is scored
     on the whole video unless the evaluation part alone is long enough (``min_lipsync_part_s``): short
     parts make the lag estimate noisy. A video the shipped lip-sync model was trained on is scored with
     the fold model that held it out, and the energy baseline fitted without it.

Output: the ``../EVAL.md`` JSON object (``metrics`` = personalised, ``baseline`` = generic), a pass/fail
per goal for both, per-video ``items`` with everything measured next to what each avatar produced, and with
``out_dir`` the two ``.glb`` files, their voice samples (``.wav``) and the mouth tracks (``.npy``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from gaiverse.avatar.colour import delta_e_2000, linear_to_srgb
from gaiverse.avatar.lipsync_eval import BT1359_EARLY_MS, BT1359_LATE_MS, score_clip
from gaiverse.avatar.lipsync_model import DEFAULT_DIR as LIPSYNC_DIR
from gaiverse.avatar.lipsync_model import EnergyBaseline, LipsyncModel
from gaiverse.avatar.video_measures import (TalkingVideo, landmark_error, load_talking_video, mfcc_distance,
                                            semitones, slice_targets)

log = logging.getLogger(__name__)

VOICE_TEXT = ("The quick brown fox jumps over the lazy dog. "
              "Please call Stella and ask her to bring these things with her from the store.")
"""What each avatar says for the voice comparison: a pangram and the Speech Accent Archive's opening,
about 7 s, with most English phonemes (so the long-term envelope is not that of a few vowels)."""

MAX_VOICE_S = 60.0
"""Voice measures use at most this much audio (WORLD Harvest costs ~0.2 CPU-s per second of audio)."""

Direction = Literal["max", "min", "window"]


@dataclass(frozen=True)
class Goal:
    """What passes for one metric."""

    direction: Direction
    threshold: float | tuple[float, float]
    why: str

    def passes(self, value: float | None) -> bool | None:
        if value is None or not np.isfinite(value):
            return None
        if self.direction == "max":
            return bool(value <= self.threshold)
        if self.direction == "min":
            return bool(value >= self.threshold)
        lo, hi = self.threshold
        return bool(lo <= value <= hi)

    def text(self) -> str:
        if self.direction == "window":
            return f"{self.threshold[0]:g} .. {self.threshold[1]:g}"
        return f"{'<=' if self.direction == 'max' else '>='} {self.threshold:g}"


GOALS: dict[str, Goal] = {
    "landmark_error_iod": Goal("max", 0.05, "about 3 mm on a 63 mm eye spacing: two same-person frames "
                                            "differ by ~0.02, two different people by ~0.03"),
    "skin_delta_e00": Goal("max", 5.0, "ΔE00 < 5: a difference a viewer notices only side by side"),
    "hair_delta_e00": Goal("max", 10.0, "hair is measured from few, mixed pixels: looser than skin"),
    "f0_abs_semitones": Goal("max", 2.0, "within 2 semitones of the user's median pitch"),
    "spectral_mcd_db": Goal("max", 6.0, "long-term envelope MCD under 6 dB (project goal)"),
    "lipsync_corr": Goal("min", 0.3, "predicted and real mouth opening clearly related"),
    "av_offset_ms": Goal("window", (-BT1359_LATE_MS, BT1359_EARLY_MS),
                         "ITU-R BT.1359: sound no more than 45 ms early or 125 ms late"),
}
LOWER_IS_BETTER = {"landmark_error_iod": True, "skin_delta_e00": True, "body_skin_delta_e00": True,
                   "hair_delta_e00": True,
                   "f0_abs_semitones": True, "f0_abs_hz": True, "spectral_mcd_db": True,
                   "mfcc_distance": True, "lipsync_corr": False, "abs_av_offset_ms": True}


@dataclass
class MatchConfig:
    """How a video is split and what the avatars are asked to do."""

    build_fraction: float = 0.5
    """Share of the video, from its start, the personalised avatar is built from (the rest is scored)."""
    voice_text: str = VOICE_TEXT
    """What each avatar's voice says for the voice comparison."""
    min_lipsync_part_s: float = 6.0
    """Lip-sync is scored on the evaluation part alone when it lasts this long; else on the whole video."""
    min_voice_part_s: float = 3.0
    """The user's voice is measured on the evaluation part when it has this much speech; else on all."""
    max_frames: int = 400
    """Frames kept in memory for landmarks and colours (evenly spaced); the mouth is measured in all."""
    decider: Literal["policy", "heuristic"] = "policy"
    """Who turns the analysis into avatar parameters (the PPO policy, or the heuristic baseline)."""

    def __post_init__(self) -> None:
        if not 0.2 <= self.build_fraction <= 0.8:
            raise ValueError(f"`build_fraction` must be within 0.2..0.8, got {self.build_fraction}")
        if not self.voice_text.strip():
            raise ValueError("`voice_text` is empty")
        if self.max_frames < 8:
            raise ValueError(f"`max_frames` must be >= 8, got {self.max_frames}")


# -- the user ------------------------------------------------------------------------------------------

@dataclass
class UserReference:
    """What the avatars are compared with: the user as measured on the evaluation part."""

    frame_size: tuple[int, int]
    landmarks: list[np.ndarray]
    """Face-mesh landmarks (pixels) of the usable evaluation frames."""
    skin_lab: np.ndarray | None
    hair_lab: np.ndarray | None
    f0_hz: float | None
    mfcc: list[float] | None
    cepstrum: np.ndarray | None
    """Cepstrum of the long-term average envelope (``voice.average_envelope_cepstrum``)."""
    voice_source: str
    """Which audio the voice measures come from (the evaluation part, or the whole video when too short)."""
    summary: dict[str, Any] = field(default_factory=dict)


def _lab(measure) -> np.ndarray | None:
    return np.array(measure.value["lab"], dtype=np.float64) if measure.value is not None else None


def _voice_measures(audio: np.ndarray, rate: int) -> tuple[float | None, list | None, np.ndarray | None]:
    """(F0 median Hz, mean MFCC, envelope cepstrum) of speech, each None when it cannot be measured."""
    from gaiverse.avatar.analysis import analyse_capture
    from gaiverse.avatar.voice import average_envelope_cepstrum

    audio = audio[: int(MAX_VOICE_S * rate)]
    result = analyse_capture([], audio, rate, transcribe=False, body=False)
    f0 = result.f0.value["median_hz"] if result.f0.value is not None else None
    mfcc = result.timbre.value["mfcc_mean"] if result.timbre.value is not None else None
    try:
        cepstrum = average_envelope_cepstrum(audio, rate)
    except ValueError:
        cepstrum = None
    return f0, mfcc, cepstrum


def measure_user(video: TalkingVideo, split: int, min_voice_s: float = 3.0) -> UserReference:
    """The user's face and colours on frames ``split`` .. end, and voice there too when that part holds at
    least ``min_voice_s`` of voiced speech (else on the whole soundtrack: a median pitch from a second of
    speech is mostly the sentence's intonation, not the speaker's voice). Raises ValueError when no usable
    face is found in the evaluation part."""
    from gaiverse.avatar.analysis import analyse_capture
    from gaiverse.avatar.capture import speech_measures

    frames, audio = video.part(split, video.n_frames)
    if not frames:
        raise ValueError(f"`video` {str(video.path)!r}: no frame left to evaluate after the build part")
    ref = analyse_capture(frames, None, video.audio_rate, transcribe=False, body=False)  # voice: below
    usable = [f.landmarks for f in ref.faces if f.frame_index in set(ref.usable_frames)]
    if not usable:
        raise ValueError(f"`video` {str(video.path)!r}: no well-fitting face mesh in the evaluation part "
                         f"(frames {split}..{video.n_frames - 1})")
    voiced_s = speech_measures(audio, video.audio_rate)["speech_s"]
    f0 = mfcc = cepstrum = None
    if voiced_s >= min_voice_s:
        f0, mfcc, cepstrum = _voice_measures(audio, video.audio_rate)
        source = "evaluation part"
    if f0 is None or mfcc is None or cepstrum is None:
        f0, mfcc, cepstrum = _voice_measures(video.audio, video.audio_rate)
        source = f"whole video (the evaluation part has {voiced_s:.1f} s of speech < {min_voice_s:g} s)"
    summary = {"frames": len(frames), "usable_frames": len(usable), "frame_size": list(ref.frame_size),
               "skin": ref.skin.value, "hair": ref.hair.value, "face_shape": ref.face_shape.value,
               "f0_median_hz": f0, "mfcc_mean": mfcc, "voice_source": source,
               "head_pose_median": (ref.head_pose.value or {}).get("median")}
    return UserReference(frame_size=ref.frame_size, landmarks=usable, skin_lab=_lab(ref.skin),
                         hair_lab=_lab(ref.hair), f0_hz=f0, mfcc=mfcc, cepstrum=cepstrum, voice_source=source,
                         summary=summary)


# -- the avatars ---------------------------------------------------------------------------------------

@dataclass
class AvatarUnderTest:
    """What an avatar shows and says, in the form the scores need."""

    name: str
    glb: bytes
    face_landmarks_m: np.ndarray | None
    """(N, 3) metres, face-mesh order (as ``AvatarModel.face_landmarks_3d``)."""
    colours_lab: dict[str, np.ndarray]
    """'skin' and 'hair' CIELAB as the avatar's materials show them."""
    voice: np.ndarray
    voice_rate: int
    mouth_10ms: np.ndarray
    """(n, 3) mouth measures every 10 ms this avatar shows for the user's soundtrack (its lip-sync)."""
    description: dict[str, Any] = field(default_factory=dict)


def lipsync_checkpoint(video: TalkingVideo) -> tuple[Path, str]:
    """The lip-sync checkpoint to animate ``video``'s soundtrack with, and why: the fold model that held the
    video out when the shipped model was trained on a clip of that name, else the shipped model."""
    model = LipsyncModel.load()
    name = video.path.stem
    fold = LIPSYNC_DIR / f"fold_{name}.pt"
    if name in model.meta.get("trained_on", []) and fold.is_file():
        return fold, f"{fold.name}: the shipped model was trained on {name}; this fold model never saw it"
    return LIPSYNC_DIR / "lipsync.pt", "lipsync.pt (shipped; not trained on this video)"


def avatar_mouth(audio: np.ndarray, rate: int, checkpoint: Path, expressiveness: float) -> np.ndarray:
    """(n, 3) mouth measures every 10 ms as the avatar plays ``audio``: its "talk" clip
    (``animation.talk_clip``) keyed at 100 fps, jawOpen turned back into the inner-lip gap (x OPEN_FULL)."""
    from gaiverse.avatar.animation import talk_clip
    from gaiverse.avatar.lipsync_targets import OPEN_FULL

    clip = talk_clip(audio, rate, fps=100.0, expressiveness=float(np.clip(expressiveness, 0, 1)),
                     model_path=checkpoint)
    gap = np.array([weights["jawOpen"] for _, weights in clip.morph_keys]) * OPEN_FULL
    n = audio.size * 100 // rate
    return np.stack([gap[:n], np.zeros(n), np.zeros(n)], 1).astype(np.float32)


def decide_params(analysis, decider: str):
    """AvatarParams for the analysed build part, with no wishes (the avatar should copy the user)."""
    from gaiverse.avatar.analysis import to_policy_features
    from gaiverse.avatar.decision import DEFAULT_POLICY_DIR, HeuristicDecider, PolicyDecider
    from gaiverse.avatar.preferences import parse_preferences

    features, no_wishes = to_policy_features(analysis), parse_preferences("")
    if decider == "policy":
        return PolicyDecider.load(DEFAULT_POLICY_DIR).decide(features, no_wishes)
    return HeuristicDecider().decide(features, no_wishes)


def material_colours_lab(glb: bytes) -> dict[str, np.ndarray]:
    """CIELAB of the 'skin' and 'hair' materials as a glTF viewer shows them: ``baseColorFactor`` is linear
    RGB (glTF 2.0 §3.9.2; three.js and ``render`` read it so), displayed through the sRGB transfer curve."""
    from gaiverse.avatar.colour import srgb_to_lab
    from gaiverse.character.gltf_writer import read_glb

    gltf, _ = read_glb(glb)
    out: dict[str, np.ndarray] = {}
    for material in gltf.get("materials", []):
        if material.get("name") in ("skin", "hair"):
            pbr = material.get("pbrMetallicRoughness", {})
            linear = np.asarray(pbr.get("baseColorFactor", [1, 1, 1, 1])[:3])
            out[material["name"]] = srgb_to_lab(linear_to_srgb(linear))
    return out


def face_skin_lab(model) -> np.ndarray | None:
    """Skin colour of the avatar's textured face, measured exactly as on the user (``analysis._skin``: cheek
    and forehead discs, trimmed median) at those landmarks' texture coordinates; None when untextured."""
    import io

    from PIL import Image

    from gaiverse.avatar.analysis import _lab_image, _skin

    head = model.character.head
    if head.texture is None or head.uv is None:
        return None
    rgb = np.asarray(Image.open(io.BytesIO(head.texture)).convert("RGB"))
    uv = np.asarray(head.uv[-468:], dtype=np.float64)  # the face mask's vertices (face-mesh order) come last
    points = np.zeros((uv.shape[0], 3))
    points[:, :2] = uv * [rgb.shape[1], rgb.shape[0]]
    measured = _skin(_lab_image(rgb), points)
    return np.array(measured.value["lab"]) if measured.value is not None else None


def _under_test(name: str, model, clips: list, voice: np.ndarray, rate: int,
                **description: Any) -> AvatarUnderTest:
    from gaiverse.avatar.creation import export

    glb, _vrm, stats = export(model, clips)
    colours = material_colours_lab(glb)
    face = face_skin_lab(model)
    colours = {"skin": face if face is not None else colours.get("skin"), "body_skin": colours.get("skin"),
               "hair": colours.get("hair")}
    return AvatarUnderTest(name=name, glb=glb, face_landmarks_m=model.face_landmarks_3d(),
                           colours_lab={k: v for k, v in colours.items() if v is not None}, voice=voice,
                           voice_rate=rate, mouth_10ms=np.zeros((0, 3)),
                           description={**description, "stats": stats})


def build_avatars(analysis, video: TalkingVideo, split: int,
                  config: MatchConfig) -> tuple[AvatarUnderTest, AvatarUnderTest]:
    """(personalised, generic) through the creation engines: the personalised avatar from the build part
    (frames 0 .. split-1: its analysis, best frame, landmarks, head-pose track and voice), the generic one
    from nothing (default parameters, the plain Piper voice)."""
    from gaiverse.avatar import creation
    from gaiverse.avatar.decision import AvatarParams
    from gaiverse.avatar.voice import piper_speech

    frames, _ = video.part(0, split)
    source = creation.CreationSource.from_analysis(analysis, frames, split / video.fps)
    params = decide_params(analysis, config.decider)
    model = creation.build_portrait(source, params)
    voice, rate = creation.make_voice(source, params, config.voice_text)
    personal = _under_test("personalised", model, creation.make_clips(source, voice, rate), voice, rate,
                           params=params.to_json(), decider=config.decider,
                           voice_profile="voice.VoiceProfile.from_analysis(build-part analysis, params)")
    empty = creation.CreationSource(analysis=None, portrait_frame=None, landmarks=None, pose_track=None)
    generic_model = creation.build_portrait(empty, AvatarParams())
    voice0, rate0 = piper_speech(config.voice_text)
    generic = _under_test("generic", generic_model, creation.make_clips(empty, voice0, rate0), voice0, rate0,
                          params=AvatarParams().to_json(), voice_profile="plain Piper en_US-joe-medium")
    return personal, generic


# -- scores --------------------------------------------------------------------------------------------

def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def score_avatar(avatar: AvatarUnderTest, user: UserReference, lipsync_targets) -> dict[str, Any]:
    """Every metric of one avatar against the user (None where it cannot be measured, with the reason)."""
    from gaiverse.avatar.voice import mel_cepstral_distortion

    out: dict[str, Any] = {}
    notes: dict[str, str] = {}
    if avatar.face_landmarks_m is not None:
        model = np.asarray(avatar.face_landmarks_m, dtype=np.float64)
        lm = landmark_error(model, user.landmarks, user.frame_size)
        out["landmark_error_iod"] = _round(lm["mean"])
        out["landmark_error_detail"] = {k: _round(v) if isinstance(v, float) else v for k, v in lm.items()}
    else:
        out["landmark_error_iod"] = None
        notes["landmark_error_iod"] = "the avatar has no face landmarks"
    for part, measured in (("skin", user.skin_lab), ("body_skin", user.skin_lab), ("hair", user.hair_lab)):
        shown = avatar.colours_lab.get(part)
        key = f"{part}_delta_e00"
        if measured is None or shown is None:
            out[key] = None
            notes[key] = f"{part} colour not measured on the video" if measured is None else \
                f"the avatar has no {part} material"
        else:
            out[key] = _round(delta_e_2000(shown, measured), 3)
            out[f"{part}_lab_avatar"] = [round(float(v), 2) for v in shown]
    f0, mfcc, cepstrum = _voice_measures(avatar.voice, avatar.voice_rate)
    if f0 is not None and user.f0_hz is not None:
        out["f0_median_hz"] = _round(f0, 2)
        out["f0_abs_hz"] = _round(abs(f0 - user.f0_hz), 2)
        out["f0_abs_semitones"] = _round(abs(semitones(f0, user.f0_hz)), 3)
    else:
        out.update(f0_median_hz=None, f0_abs_hz=None, f0_abs_semitones=None)
        notes["f0_abs_semitones"] = "no voiced speech measured in the avatar's or the user's voice"
    out["spectral_mcd_db"] = _round(mel_cepstral_distortion(cepstrum, user.cepstrum), 3) \
        if cepstrum is not None and user.cepstrum is not None else None
    out["mfcc_distance"] = _round(mfcc_distance(mfcc, user.mfcc), 3) \
        if mfcc is not None and user.mfcc is not None else None
    lip = score_clip(lipsync_targets, avatar.mouth_10ms)
    out.update(lipsync_corr=lip["open_corr"], lipsync_mae_iod=lip["open_mae"],
               av_offset_ms=lip["av_offset_ms"], abs_av_offset_ms=lip["abs_av_offset_ms"])
    out["goals"] = {name: {"goal": goal.text(), "value": out.get(name), "pass": goal.passes(out.get(name))}
                    for name, goal in GOALS.items()}
    if notes:
        out["not_measured"] = notes
    return out


# -- one video -------------------------------------------------------------------------------------------

AvatarBuilder = Callable[[Any, TalkingVideo, int, MatchConfig], tuple[AvatarUnderTest, AvatarUnderTest]]


def lipsync_part(video: TalkingVideo, split: int, config: MatchConfig):
    """(lip-sync targets to score on, why): the evaluation part when long enough, else the whole video."""
    eval_s = (video.n_frames - split) / video.fps
    if eval_s >= config.min_lipsync_part_s:
        return slice_targets(video.targets, split, video.n_frames), "evaluation part"
    return video.targets, (f"whole video (evaluation part {eval_s:.1f} s < {config.min_lipsync_part_s:g} s; "
                           "the lip-sync uses nothing from the build part)")


def match_video(path: str | Path, config: MatchConfig, build: AvatarBuilder,
                out_dir: Path | None = None) -> dict[str, Any]:
    """The item of one video: what was measured, what each avatar showed, and the scores of both."""
    from gaiverse.avatar.analysis import analyse_capture

    clock = _Clock()
    video = load_talking_video(path, max_frames=config.max_frames)
    split = video.split_frame(config.build_fraction)
    clock.lap("decode")
    frames, audio = video.part(0, split)
    analysis = analyse_capture(frames, audio, video.audio_rate, transcribe=False, body=True)
    if not analysis.usable_frames:
        raise ValueError(f"`video` {str(path)!r}: no well-fitting face mesh in the build part "
                         f"(frames 0..{split - 1})")
    user = measure_user(video, split, config.min_voice_part_s)
    clock.lap("measure")
    personal, generic = build(analysis, video, split, config)
    clock.lap("build")
    checkpoint, lipsync_why = lipsync_checkpoint(video)
    energy = EnergyBaseline(**LipsyncModel.load(checkpoint).meta.get("baseline", {}))
    targets, lip_part = lipsync_part(video, split, config)
    personal.mouth_10ms = avatar_mouth(targets.audio, targets.audio_rate, checkpoint,
                                       personal.description["params"]["expressiveness"])
    generic.mouth_10ms = energy.predict(targets.audio)
    scores = {a.name: score_avatar(a, user, targets) for a in (personal, generic)}
    clock.lap("score")
    if out_dir is not None:
        _write_samples(Path(out_dir), video.path.stem, (personal, generic))
    return {
        "video": str(path), "container": video.container, "codecs": video.codecs, "fps": video.fps,
        "frames": video.n_frames, "duration_s": round(video.duration_s, 2), "speech": video.speech,
        "build_part": {"frames": [0, split - 1], "seconds": [0.0, round(split / video.fps, 2)],
                       "usable_frames": len(analysis.usable_frames)},
        "evaluation_part": {"frames": [split, video.n_frames - 1],
                            "seconds": [round(split / video.fps, 2), round(video.duration_s, 2)]},
        "lipsync": {"scored_on": lip_part, "model": lipsync_why, "baseline": asdict(energy)},
        "user": user.summary,
        "avatar": {**personal.description, "scores": scores[personal.name]},
        "baseline_avatar": {**generic.description, "scores": scores[generic.name]},
        "timings_s": clock.laps, "seconds": clock.total(),
    }


class _Clock:
    """Wall time of consecutive stages (s)."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 2)
        self.last = now

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 2)


def _write_samples(out_dir: Path, stem: str, avatars: tuple[AvatarUnderTest, ...]) -> None:
    from gaiverse.speech.wav import pcm16_wav

    out_dir.mkdir(parents=True, exist_ok=True)
    for avatar in avatars:
        (out_dir / f"{stem}.{avatar.name}.glb").write_bytes(avatar.glb)
        pcm = np.clip(avatar.voice * 32767, -32767, 32767).astype(np.int16)
        (out_dir / f"{stem}.{avatar.name}.wav").write_bytes(pcm16_wav(pcm, avatar.voice_rate))
        np.save(out_dir / f"{stem}.{avatar.name}.mouth_10ms.npy", avatar.mouth_10ms)


# -- many videos -----------------------------------------------------------------------------------------

def _mean(items: list[dict], who: str) -> dict[str, float | None]:
    out = {}
    for key in LOWER_IS_BETTER:
        values = [i[who]["scores"].get(key) for i in items]
        values = [v for v in values if v is not None]
        out[key] = round(float(np.mean(values)), 4) if values else None
    out["av_offset_ms"] = round(float(np.mean([i[who]["scores"]["av_offset_ms"] for i in items])), 1)
    return out


def _goal_table(items: list[dict]) -> dict[str, Any]:
    table = {}
    for name, goal in GOALS.items():
        row = {"goal": goal.text(), "why": goal.why}
        for who in ("avatar", "baseline_avatar"):
            passed = [i[who]["scores"]["goals"][name]["pass"] for i in items]
            known = [p for p in passed if p is not None]
            row["pass" if who == "avatar" else "baseline_pass"] = bool(known) and all(known)
            key = "passed_videos" if who == "avatar" else "baseline_passed_videos"
            row[key] = f"{sum(known)}/{len(passed)}"
        table[name] = row
    return table


def evaluate_avatar_match(videos: str | Path | list[str | Path], config: MatchConfig | None = None,
                          out_dir: str | Path | None = None,
                          build: AvatarBuilder | None = None) -> dict[str, Any]:
    """The EVAL.md JSON object for one or more talking-face videos (personalised vs generic avatar).

    Raises ValueError naming the video when one cannot be read, has no sound, no speech or no face.
    """
    started = time.perf_counter()
    config = config or MatchConfig()
    paths = [Path(v) for v in ([videos] if isinstance(videos, (str, Path)) else videos)]
    if not paths:
        raise ValueError("`videos` is empty: give at least one talking-face video with sound")
    if build is None:
        build = build_avatars
    items = [match_video(p, config, build, Path(out_dir) if out_dir else None) for p in paths]
    return {
        "eval": "avatar",
        "data": [str(p) for p in paths],
        "n": len(items),
        "metrics": _mean(items, "avatar"),
        "baseline": {"name": "generic avatar: no capture, default parameters, default Piper voice, "
                             "energy-driven mouth", **_mean(items, "baseline_avatar")},
        "lower_is_better": LOWER_IS_BETTER,
        "goals": _goal_table(items),
        "bt1359_window_ms": [-BT1359_LATE_MS, BT1359_EARLY_MS],
        "config": asdict(config),
        "items": items,
        "seconds": round(time.perf_counter() - started, 2),
        "checkpoint": str(LIPSYNC_DIR / "MODEL_CARD.md"),
    }


def print_table(result: dict[str, Any], console=None) -> None:
    """The human-readable form of ``evaluate_avatar_match``'s result: one row per metric, both avatars."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=150)
    table = Table(title=f"avatar match: {', '.join(Path(d).name for d in result['data'])} "
                        f"({result['seconds']:.0f} s)")
    for column in ("metric", "personalised", "generic baseline", "better", "goal", "pass", "baseline pass"):
        table.add_column(column, justify="left" if column in ("metric", "goal") else "right")
    goals = result["goals"]
    names = list(LOWER_IS_BETTER) + ["av_offset_ms"]
    for name in names:
        mine, base = result["metrics"].get(name), result["baseline"].get(name)
        better = ""
        if mine is not None and base is not None and name in LOWER_IS_BETTER and mine != base:
            better = "yes" if (mine < base) == LOWER_IS_BETTER[name] else "no"
        goal = goals.get(name, {})
        mark = {True: "[green]pass[/]", False: "[red]fail[/]"}
        table.add_row(name, _fmt(mine), _fmt(base), better, goal.get("goal", ""),
                      mark.get(goal.get("pass"), "") if goal else "", mark.get(goal.get("baseline_pass"), "")
                      if goal else "")
    console.print(table)
    for item in result["items"]:
        console.print(f"{item['video']}: built from {item['build_part']['seconds']} s, scored on "
                      f"{item['evaluation_part']['seconds']} s; lip-sync on the "
                      f"{item['lipsync']['scored_on']}")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)
