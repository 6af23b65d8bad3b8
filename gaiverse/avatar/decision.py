"""Avatar decisions: captured analysis + stated preferences -> avatar parameters (AV-b2, AV-b3).

Two decision makers share one interface (``decide(analysis, preferences) -> AvatarParams``):
``HeuristicDecider`` copies what was measured and applies fixed rules for each wish (the baseline),
``PolicyDecider`` runs a policy network trained with PPO (``gaiverse.avatar.policy_training``) in
the satisfaction environment of ``gaiverse.avatar.policy_env``. The policy is residual: it starts
from the heuristic's parameters and learns corrections, so an untrained policy equals the baseline
and training can only move it where the reward says users are happier.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gaiverse.avatar.colour import lab_to_srgb, srgb_to_lab
from gaiverse.avatar.preferences import HAIR_STYLES, PARTS, PREFERENCE_DIM, STYLES, Preferences

DEFAULT_HAIR_LAB = np.array([25.0, 8.0, 14.0])
"""Dark brown: used when the hair colour could not be measured."""
DEFAULT_EYE_LAB = np.array([35.0, 8.0, 20.0])
DEFAULT_HEIGHT_M = 1.70
BASE_VOICE_F0_HZ = 105.0
"""Median F0 of the Piper voice the avatar voice is converted from (en_US-joe-medium, measured)."""


@dataclass
class CaptureAnalysis:
    """What the analysis stage measured about the user; ``None`` where it could not measure."""

    skin_lab: tuple[float, float, float]
    """CIELAB of the cheek/forehead skin."""
    hair_lab: tuple[float, float, float] | None = None
    eye_lab: tuple[float, float, float] | None = None
    height_m: float | None = None
    """Estimated from pose landmarks when the whole body was visible."""
    build: float | None = None
    """0 slim .. 1 broad (shoulder-to-hip width ratio, normalised)."""
    f0_median_hz: float = 150.0
    f0_range_semitones: float = 8.0
    speaking_rate_wps: float = 2.6
    expressiveness: float = 0.5
    """0 calm .. 1 lively (landmark motion and pitch variability)."""

    def vector(self) -> np.ndarray:
        """Normalised features for the policy: (CAPTURE_DIM,) float32."""
        def lab(v, default):
            known = v is not None
            return [float(known), *((np.array(v if known else default) / 100.0).tolist())]

        return np.array([
            *(np.array(self.skin_lab) / 100.0), *lab(self.hair_lab, DEFAULT_HAIR_LAB),
            *lab(self.eye_lab, DEFAULT_EYE_LAB),
            float(self.height_m is not None), ((self.height_m or DEFAULT_HEIGHT_M) - DEFAULT_HEIGHT_M) / 0.1,
            float(self.build is not None), (self.build if self.build is not None else 0.5) - 0.5,
            12 * np.log2(self.f0_median_hz / BASE_VOICE_F0_HZ) / 12.0, self.f0_range_semitones / 12.0,
            self.speaking_rate_wps - 2.6, self.expressiveness - 0.5], dtype=np.float32)


CAPTURE_DIM = 3 + 4 + 4 + 2 + 2 + 4
OBS_DIM = CAPTURE_DIM + PREFERENCE_DIM


@dataclass
class AvatarParams:
    """Everything the creation engines need, in physical units."""

    style: str = "realistic"
    skin_lab: tuple[float, float, float] = (65.0, 12.0, 18.0)
    hair_lab: tuple[float, float, float] = tuple(DEFAULT_HAIR_LAB)
    eye_lab: tuple[float, float, float] = tuple(DEFAULT_EYE_LAB)
    hair_style: str = "short"
    height_m: float = DEFAULT_HEIGHT_M
    build: float = 0.5
    pitch_semitones: float = 0.0
    """Shift applied to the base TTS voice (WORLD vocoder)."""
    pitch_range_scale: float = 1.0
    speaking_rate: float = 1.0
    """Multiplier on the base voice's speaking rate."""
    expressiveness: float = 0.5
    reasons: list[str] = field(default_factory=list)

    def colours_srgb(self) -> dict[str, str]:
        """Hex colours for the engines and the terminal."""
        out = {}
        for part in ("skin", "hair", "eye"):
            rgb = lab_to_srgb(np.array(getattr(self, f"{part}_lab")))
            out[part] = "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgb)
        return out

    def to_json(self) -> dict:
        return {**asdict(self), "colours": self.colours_srgb()}


# Continuous action layout (all relative to the heuristic's parameters, in normalised units).
CONT = ("skin_L", "skin_a", "skin_b", "hair_L", "hair_a", "hair_b", "eye_L", "eye_a", "eye_b",
        "height", "build", "pitch", "range", "rate", "expressiveness")
CONT_SCALE = np.array([10, 10, 10, 10, 10, 10, 10, 10, 10, 0.05, 0.2, 3.0, 0.2, 0.1, 0.2], dtype=np.float32)
"""One unit of policy output in each continuous parameter (ΔE units, height ratio, semitones, ...)."""


class HeuristicDecider:
    """Baseline: copy the measurements, then apply one fixed rule per stated wish."""

    name = "heuristic"

    def decide(self, analysis: CaptureAnalysis, prefs: Preferences) -> AvatarParams:
        p = AvatarParams(skin_lab=tuple(analysis.skin_lab),
                         hair_lab=tuple(analysis.hair_lab if analysis.hair_lab is not None else DEFAULT_HAIR_LAB),
                         eye_lab=tuple(analysis.eye_lab if analysis.eye_lab is not None else DEFAULT_EYE_LAB),
                         height_m=analysis.height_m or DEFAULT_HEIGHT_M,
                         build=analysis.build if analysis.build is not None else 0.5,
                         pitch_semitones=float(12 * np.log2(analysis.f0_median_hz / BASE_VOICE_F0_HZ)),
                         pitch_range_scale=analysis.f0_range_semitones / 8.0,
                         speaking_rate=analysis.speaking_rate_wps / 2.6, expressiveness=analysis.expressiveness,
                         reasons=["measured: skin, hair, eyes, height, build, voice pitch and rate"])
        key = {"hair": "hair_lab", "eyes": "eye_lab", "skin": "skin_lab"}
        for part, rgb in prefs.colours.items():
            setattr(p, key[part], tuple(srgb_to_lab(np.array(rgb) / 255.0)))
            p.reasons.append(f"{part} colour as asked")
        p.pitch_semitones += 3.0 * prefs.pitch
        p.speaking_rate *= 1.0 + 0.15 * prefs.rate
        p.height_m *= 1.0 + 0.08 * prefs.height
        p.build = float(np.clip(p.build + 0.2 * prefs.build, 0, 1))
        p.expressiveness = float(np.clip(p.expressiveness + 0.3 * prefs.expressiveness, 0, 1))
        if prefs.style:
            p.style = prefs.style
        elif "realistic" in prefs.avoid_styles:
            p.style = "stylized"
        if prefs.hair_style:
            p.hair_style = prefs.hair_style
        return p


class PolicyNet(nn.Module):
    """Gaussian head for the continuous corrections, categorical heads for style and hair style."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(OBS_DIM, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.mean = nn.Linear(hidden, len(CONT))
        self.style = nn.Linear(hidden, len(STYLES))
        self.hair = nn.Linear(hidden, len(HAIR_STYLES))
        self.log_std = nn.Parameter(torch.full((len(CONT),), -1.5))
        self.value = nn.Sequential(nn.Linear(OBS_DIM, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mean.weight)
        nn.init.zeros_(self.mean.bias)

    def forward(self, obs: torch.Tensor, style_prior: torch.Tensor, hair_prior: torch.Tensor):
        """Distribution parameters; the priors (log-probabilities of the heuristic's choice) are added
        to the logits so an untrained network already chooses like the baseline."""
        h = self.body(obs)
        return self.mean(h), self.log_std.expand(obs.shape[0], -1), self.style(h) + style_prior, \
            self.hair(h) + hair_prior, self.value(obs).squeeze(-1)


def _one_hot_prior(choice: str, options: tuple[str, ...], strength: float = 3.0) -> np.ndarray:
    return np.array([strength if o == choice else 0.0 for o in options], dtype=np.float32)


def heuristic_priors(base: AvatarParams) -> tuple[np.ndarray, np.ndarray]:
    return _one_hot_prior(base.style, STYLES), _one_hot_prior(base.hair_style, HAIR_STYLES)


def apply_action(base: AvatarParams, cont: np.ndarray, style: int, hair: int) -> AvatarParams:
    """The heuristic's parameters corrected by one policy action (clipped to plausible values)."""
    d = np.asarray(cont, dtype=np.float64) * CONT_SCALE
    p = AvatarParams(**{**asdict(base), "reasons": list(base.reasons)})
    for i, key in enumerate(("skin_lab", "hair_lab", "eye_lab")):
        lab = np.array(getattr(base, key)) + d[3 * i:3 * i + 3]
        lab[0] = np.clip(lab[0], 5, 98)
        setattr(p, key, tuple(float(v) for v in lab))
    p.height_m = float(np.clip(base.height_m * (1 + d[9]), 1.2, 2.3))
    p.build = float(np.clip(base.build + d[10], 0, 1))
    p.pitch_semitones = float(np.clip(base.pitch_semitones + d[11], -12, 18))
    p.pitch_range_scale = float(np.clip(base.pitch_range_scale * np.exp(d[12]), 0.3, 3))
    p.speaking_rate = float(np.clip(base.speaking_rate * np.exp(d[13]), 0.5, 2))
    p.expressiveness = float(np.clip(base.expressiveness + d[14], 0, 1))
    p.style, p.hair_style = STYLES[style], HAIR_STYLES[hair]
    return p


class PolicyDecider:
    """The PPO-trained policy (deterministic at decision time: mean corrections, most likely choices)."""

    name = "ppo-policy"

    def __init__(self, net: PolicyNet, meta: dict | None = None) -> None:
        self.net = net.eval()
        self.meta = meta or {}
        self.heuristic = HeuristicDecider()

    @classmethod
    def load(cls, directory: Path | str) -> PolicyDecider:
        directory = Path(directory)
        weights = directory / "policy.pt"
        if not weights.is_file():
            raise FileNotFoundError(f"no avatar policy at {weights}: train one with `gaiverse avatar train-policy`")
        meta = json.loads((directory / "policy.json").read_text()) if (directory / "policy.json").is_file() else {}
        net = PolicyNet(hidden=int(meta.get("hidden", 128)))
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return cls(net, meta)

    def save(self, directory: Path | str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), directory / "policy.pt")
        (directory / "policy.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True))
        return directory / "policy.pt"

    @torch.no_grad()
    def decide(self, analysis: CaptureAnalysis, prefs: Preferences) -> AvatarParams:
        base = self.heuristic.decide(analysis, prefs)
        obs = torch.from_numpy(np.concatenate([analysis.vector(), prefs.vector()]))[None]
        sp, hp = (torch.from_numpy(v)[None] for v in heuristic_priors(base))
        mean, _, style_logits, hair_logits, _ = self.net(obs, sp, hp)
        p = apply_action(base, mean[0].numpy(), int(style_logits.argmax()), int(hair_logits.argmax()))
        p.reasons = base.reasons + ["adjusted by the learned policy for user satisfaction"]
        return p


DEFAULT_POLICY_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "avatar_policy"
PARTS_LAB_KEYS = dict(zip(PARTS, ("hair_lab", "eye_lab", "skin_lab")))
