"""The Khronos glTF validator from Python: ``validate_glb(bytes)`` -> errors, warnings, infos, stats.

It runs the npm package ``gltf-validator`` (installed by setup from package.json into
``node_modules``) through ``validation/gltf_validate.mjs`` in a node subprocess. A missing node
binary or package raises ``GltfValidatorUnavailable`` with what to install, never a silent pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("gltf_validate.mjs")
PACKAGE = REPO_ROOT / "node_modules" / "gltf-validator"
TIMEOUT_S = 120


class GltfValidatorUnavailable(RuntimeError):
    """node or the gltf-validator npm package is missing."""


@dataclass
class GltfReport:
    """What the validator found (severity 0 error, 1 warning, 2 info, 3 hint)."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """The report's ``info`` block: counts of meshes, animations, morph targets, skins, ..."""
    validator: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        first = "; ".join(f"{e['code']} at {e.get('pointer', '?')}: {e['message']}" for e in self.errors[:3])
        return f"{len(self.errors)} errors, {len(self.warnings)} warnings" + (f" ({first})" if first else "")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise GltfValidatorUnavailable("node is not installed (setup installs nodejs from requirements/apt.txt)")
    if not PACKAGE.is_dir():
        raise GltfValidatorUnavailable(f"npm package gltf-validator missing at {PACKAGE} (run `npm ci` in {REPO_ROOT})")
    return node


def validate_glb(data: bytes) -> GltfReport:
    """Validate .glb (or .gltf JSON) bytes with the Khronos validator."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ValueError("`data` must be non-empty bytes of a .glb file")
    node = _node()
    with tempfile.NamedTemporaryFile(suffix=".glb") as tmp:
        tmp.write(data)
        tmp.flush()
        done = subprocess.run([node, str(SCRIPT), tmp.name], capture_output=True, text=True, timeout=TIMEOUT_S,
                              cwd=REPO_ROOT)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if "not found" in reason:
            raise GltfValidatorUnavailable(reason)
        raise ValueError(f"glTF validator could not read the file: {reason}")
    report = json.loads(done.stdout)
    messages = report.get("issues", {}).get("messages", [])
    return GltfReport(
        errors=[m for m in messages if m.get("severity") == 0],
        warnings=[m for m in messages if m.get("severity") == 1],
        infos=[m for m in messages if m.get("severity", 9) >= 2],
        info=report.get("info", {}),
        validator=f"{report.get('validatorVersion', '?')}",
    )


def validate_file(path: str | Path) -> GltfReport:
    return validate_glb(Path(path).read_bytes())
