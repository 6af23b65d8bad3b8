"""Serve every deployment declared in prefect.yaml: the embedded stack's half of "one declaration, two runtimes".

``python -m flows.serve`` (what ``gaiverse up`` runs) reads prefect.yaml, turns each
deployment into ``flow.to_deployment(name, schedules, parameters, tags, description)``
and ``prefect.serve``s them all, so runs appear in the Prefect UI, can be started from it
or from the API, and scheduled ones run on time. In production the same file is applied
with ``prefect deploy --all`` onto the process work pool. ``declared_deployments()`` lists
the declarations without importing any flow (for the CLI and the API).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gaiverse.config import REPO_ROOT

log = logging.getLogger(__name__)

PREFECT_YAML = REPO_ROOT / "prefect.yaml"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of prefect.yaml, as the CLI and the API show it."""

    name: str
    """Deployment name; Prefect's full name is ``<flow_name>/<name>``."""
    flow_name: str
    entrypoint: str
    """``path/to/file.py:function``, relative to the repository root."""
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    schedules: tuple[dict[str, Any], ...] = ()
    """Each {"cron": ..., "timezone": ..., "active": ...} or {"interval": seconds, ...}."""
    work_pool: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    @property
    def schedule(self) -> str:
        """One-line summary of the schedules ("0 3 * * * UTC", "every 3600 s", or "manual")."""
        parts = []
        for item in self.schedules:
            if "cron" in item:
                parts.append(f"{item['cron']} {item.get('timezone') or 'UTC'}")
            elif "interval" in item:
                parts.append(f"every {item['interval']} s")
        return ", ".join(parts) or "manual"


def declared_deployments(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """The deployments of ``path``; flow names are read from the ``@flow(name=...)`` in the source."""
    if not path.is_file():
        raise FileNotFoundError(f"`path` is not a prefect.yaml file: {path}")
    document = yaml.safe_load(path.read_text()) or {}
    specs = []
    for entry in document.get("deployments") or []:
        entrypoint = entry.get("entrypoint")
        if not entry.get("name") or not entrypoint or ":" not in entrypoint:
            raise ValueError(f"deployment in {path.name} needs `name` and `entrypoint` file.py:function, got {entry!r}")
        pool = entry.get("work_pool") or {}
        specs.append(DeploymentSpec(
            name=entry["name"],
            flow_name=flow_name_of(entrypoint, root=path.parent),
            entrypoint=entrypoint,
            description=entry.get("description") or "",
            parameters=dict(entry.get("parameters") or {}),
            tags=tuple(entry.get("tags") or ()),
            schedules=tuple(dict(item) for item in entry.get("schedules") or ()),
            work_pool=pool.get("name") if isinstance(pool, dict) else pool,
        ))
    names = [spec.full_name for spec in specs]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"{path.name} declares these deployments twice: {sorted(duplicates)}")
    return specs


def flow_name_of(entrypoint: str, root: Path = REPO_ROOT) -> str:
    """The flow name of ``file.py:function`` without importing it: ``@flow(name=...)``, else Prefect's default."""
    file_part, function = entrypoint.rsplit(":", 1)
    source_path = root / file_part
    tree = ast.parse(source_path.read_text(), filename=str(source_path))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call):
                    for keyword in decorator.keywords:
                        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                            return str(keyword.value.value)
            return function.replace("_", "-")
    raise ValueError(f"`entrypoint` {entrypoint!r}: no function {function!r} in {file_part}")


def load_flow(entrypoint: str):
    """Import the flow object of ``flows/x.py:function`` as a module (works from any directory)."""
    file_part, function = entrypoint.rsplit(":", 1)
    module = importlib.import_module(file_part.removesuffix(".py").replace("/", "."))
    return getattr(module, function)


def _schedules(spec: DeploymentSpec) -> list:
    from prefect.schedules import Cron, Interval

    schedules = []
    for item in spec.schedules:
        active = bool(item.get("active", True))
        if "cron" in item:
            schedules.append(Cron(item["cron"], timezone=item.get("timezone"), active=active))
        elif "interval" in item:
            schedules.append(Interval(float(item["interval"]), timezone=item.get("timezone"), active=active))
        else:
            raise ValueError(f"deployment {spec.full_name}: schedule must have `cron` or `interval`, got {item!r}")
    return schedules


def runner_deployments(specs: list[DeploymentSpec] | None = None) -> list:
    """``RunnerDeployment`` objects for ``prefect.serve`` (imports every flow)."""
    from prefect.deployments.runner import EntrypointType

    deployments = []
    for spec in specs if specs is not None else declared_deployments():
        flow = load_flow(spec.entrypoint)
        if flow.name != spec.flow_name:
            raise ValueError(f"{spec.entrypoint} defines flow {flow.name!r}, prefect.yaml parsing said {spec.flow_name!r}")
        deployments.append(flow.to_deployment(
            name=spec.name, description=spec.description or None, parameters=spec.parameters, tags=list(spec.tags),
            schedules=_schedules(spec), entrypoint_type=EntrypointType.MODULE_PATH,
        ))
    return deployments


def main(argv: list[str] | None = None) -> None:
    """Serve every declared deployment until interrupted (SIGINT/SIGTERM)."""
    from prefect import serve

    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="most flow runs executing at once")
    args = parser.parse_args(argv)
    deployments = runner_deployments()
    log.info("serving %d deployments: %s", len(deployments), ", ".join(d.name for d in deployments))
    # pause_on_shutdown=False: stopping the embedded stack must not leave the nightly schedule paused
    serve(*deployments, limit=args.limit, print_starting_message=False, pause_on_shutdown=False)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the runner polls every few seconds
    main()
