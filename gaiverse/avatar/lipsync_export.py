"""The trained lip-sync model as JSON for the browser (gaiverse/web/lipsync.js), features included.

The avatar player drives the mouth live from the microphone without a server round trip, so the
17k-parameter network runs in JavaScript. Parity with Python depends on the features being computed
identically, so everything the features need is exported as numbers rather than re-derived in JS: the
Hann window, the mel filterbank (sparse: first bin + weights per band), the log floor and the silence
frame used as padding; then the normalisation statistics, the conv layers (weights as float32, the
dtype torch uses) and the constants of ``lipsync_targets.to_blendshapes``. ``sha256`` names the
checkpoint the file came from, so a test can tell when the shipped JSON is stale.

Run ``python -m gaiverse.avatar.lipsync_export [--checkpoint PATH] [--out PATH] [--check]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gaiverse.avatar import lipsync_model as lm
from gaiverse.avatar import lipsync_targets as lt

WEB_JSON = Path(__file__).resolve().parents[1] / "web" / "lipsync_model.json"
"""Served statically at /web/lipsync_model.json by the API's web mount."""
FORMAT = "gaiverse-lipsync/1"


def _f32(array: Any) -> list:
    """float32 values with the shortest decimal that reads back to the same float32 (Math.fround in JS)."""
    flat = np.asarray(array, np.float32).reshape(-1)
    return [float(np.format_float_positional(v, unique=True, trim="-")) for v in flat]


def _f64(array: Any) -> list:
    return [float(v) for v in np.asarray(array, np.float64).reshape(-1)]


def checkpoint_path(checkpoint: str | Path | None = None) -> Path:
    path = Path(checkpoint) if checkpoint is not None else lm.DEFAULT_DIR
    return path / "lipsync.pt" if path.is_dir() else path


def export(checkpoint: str | Path | None = None) -> dict[str, Any]:
    """JSON-ready dict of the model at ``checkpoint`` (default: the shipped one) and its feature config."""
    path = checkpoint_path(checkpoint)
    model = lm.LipsyncModel.load(path)
    cfg = model.config
    state = {k: v.detach().cpu().numpy() for k, v in model.net.state_dict().items()}
    convs = [m for m in model.net.body if isinstance(m, lm.nn.Conv1d)]
    layers = []
    for conv in convs:
        w = conv.weight.detach().cpu().numpy()
        layers.append({"out": int(w.shape[0]), "in": int(w.shape[1]), "kernel": int(w.shape[2]),
                       "dilation": int(conv.dilation[0]), "weight": _f32(w),
                       "bias": _f32(conv.bias.detach().numpy()), "gelu": conv is not convs[-1]})
    bands = []
    for row in lm._MEL:
        nz = np.nonzero(row)[0]
        bands.append({"start": int(nz[0]), "weights": _f64(row[nz[0]:nz[-1] + 1])})
    return {
        "format": FORMAT,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "parameters": model.n_parameters(),
        "features": {"sample_rate": lm.SAMPLE_RATE, "hop": lm.HOP, "window": lm.WINDOW, "n_fft": lm.N_FFT,
                     "n_mels": lm.N_MELS, "fmin": lm.FMIN, "fmax": lm.FMAX, "floor": lm.FLOOR,
                     "dim": lm.FEATURE_DIM, "hann": _f64(lm._HANN), "mel": bands,
                     "silence": _f32(lm.SILENCE)},
        "net": {"receptive": cfg.receptive, "past": cfg.past, "lookahead": cfg.lookahead,
                "delay_ms": cfg.delay_ms, "feat_mean": _f32(state["feat_mean"]),
                "feat_std": _f32(state["feat_std"]),
                "target_mean": _f32(state["target_mean"]), "target_std": _f32(state["target_std"]),
                "layers": layers},
        "outputs": {"measures": list(lt.MEASURES), "blendshapes": list(lt.BLENDSHAPES),
                    "open_full": lt.OPEN_FULL, "open_closed": lt.OPEN_CLOSED, "open_round": lt.OPEN_ROUND,
                    "width_full": lt.WIDTH_FULL, "lift_full": lt.LIFT_FULL},
    }


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n"


def write(out: str | Path = WEB_JSON, checkpoint: str | Path | None = None) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(export(checkpoint)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="lipsync.pt or its directory (default: shipped)")
    parser.add_argument("--out", default=str(WEB_JSON), help="JSON file to write")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when --out is not the export of --checkpoint")
    args = parser.parse_args(argv)
    try:
        if args.check:
            current = Path(args.out).read_text() if Path(args.out).is_file() else ""
            fresh = to_json(export(args.checkpoint))
            print("up to date" if current == fresh else f"{args.out} is stale: rerun without --check")
            return 0 if current == fresh else 1
        print(write(args.out, args.checkpoint))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
