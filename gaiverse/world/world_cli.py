"""`gaiverse world ...`: build a world through its deployment, and manage versions on this installation.

build runs the `build-world/world-build` deployment on the embedded stack (started when none
runs), then writes the version's files to --out. versions, diff, edit, rollback, backup and
restore work directly on this installation's object store and catalog, as its operator
(acting for each world's owner). Results are one JSON object on stdout; errors exit 2 with a
one-line reason. Implements ENV-a3 and ENV-a4 at the command line.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Optional

import typer

from gaiverse.cli_support import fail

world_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Worlds: build, versions, diff, edit, schedule, rollback, backup, restore, delete")

OUT_FILES = {"glb": "world.glb", "heightmap_png": "heightmap.png", "map_png": "map.png", "scene_json": "scene.json"}


def _emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result, default=str) + "\n")


def parse_size(text: str) -> float:
    """'1km', '800m', '1.5 km' or '1000' -> metres."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(km|m)?\s*", text.lower())
    if not match:
        raise ValueError(f"`--size` must look like 1km, 800m or 1000, got {text!r}")
    return float(match.group(1)) * (1000.0 if match.group(2) == "km" else 1.0)


def _repo():
    from gaiverse.config import get_settings
    from gaiverse.world.versions import WorldVersions
    from storage.catalog import Catalog
    from storage.objectstore import ObjectStore

    settings = get_settings()
    store = ObjectStore.from_settings(settings)
    return WorldVersions(store, Catalog(settings.catalog_path))


def write_version_files(repo, world_id: str, version: int | None, out: Path) -> dict[str, str]:
    """Write a version's files (world.glb, heightmap.png, map.png, scene.json, manifest.json) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = repo.manifest(world_id, version)
    written = {}
    for name, filename in OUT_FILES.items():
        if name in manifest["objects"]:
            (out / filename).write_bytes(repo.store.get_bytes(manifest["objects"][name]["key"]))
            written[name] = str(out / filename)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    written["manifest"] = str(out / "manifest.json")
    return written


def _room_owner(capture_id: str) -> str:
    """The owner of a finished room capture (the operator builds the world for them); exits 2 naming --room."""
    from gaiverse.interiors.capture import CAPTURE_ID_PATTERN, CaptureError, room_owner

    if not re.fullmatch(CAPTURE_ID_PATTERN, capture_id):
        fail(f"`--room` must be a room capture id like room-0123456789ab, got {capture_id!r}")
    try:
        return room_owner(_repo().catalog, capture_id)
    except CaptureError as err:
        fail(f"`--room`: {err}")


@world_app.command("build")
def build_cmd(
    prompt: str = typer.Argument(..., help='The world, e.g. "a hilly coastal town with a river"'),
    size: Optional[str] = typer.Option(None, "--size", help="Side of the square world: 1km, 500m (default from the prompt, else 1km)"),
    seed: int = typer.Option(0, "--seed", min=0),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the version's files here"),
    world_id: Optional[str] = typer.Option(None, "--world-id", help="Publish as the next version of this world"),
    steps: Optional[int] = typer.Option(None, "--steps", min=2, max=100, help="DDIM steps per layout tile"),
    room: Optional[str] = typer.Option(None, "--room", metavar="CAPTURE_ID", help=(
        "A finished room capture (room-<12 hex>) whose room every window shows; the world is built for the "
        "capture's owner, since it contains renderings of their room")),
    keep_running: bool = typer.Option(False, help="leave a stack this command started running"),
) -> None:
    """Build a world through the build-world deployment, publish it as a version, write its files to --out."""
    from gaiverse import stack
    from gaiverse.cli import _settings, _start
    from gaiverse.config import prefect_env

    parameters: dict = {"prompt": prompt, "seed": seed}
    try:
        if size is not None:
            parameters["size_m"] = parse_size(size)
        from gaiverse.world.suggestions import parse_suggestion

        parse_suggestion(prompt)  # refuse a prompt the flow would refuse, before starting anything
    except ValueError as err:
        fail(str(err))
    if world_id:
        parameters["world_id"] = world_id
    if steps:
        parameters["ddim_steps"] = steps
    if room is not None:
        parameters.update(room_capture_id=room, owner=_room_owner(room))
    settings = _settings()
    started = _start(settings)
    try:
        import os

        os.environ.update(prefect_env(settings))
        import prefect.context
        from prefect.deployments import run_deployment

        prefect.context.refresh_global_settings_context()
        flow_run = run_deployment("build-world/world-build", parameters=parameters, timeout=3600, tags=["cli"])
        if flow_run.state.type.value != "COMPLETED":
            fail(f"world build {flow_run.id} ended {flow_run.state.type.value}: {flow_run.state.message}")
        result = flow_run.state.result()
        files = write_version_files(_repo(), result["world_id"], result["version"], out) if out else {}
    finally:
        if started and not keep_running:
            stack.down(settings, only=started)
    _emit({"world_id": result["world_id"], "version": result["version"], "flow_run_id": str(flow_run.id),
           "checks": result.get("checks"), "steps": result.get("steps"), "files": files})


@world_app.command("versions")
def versions_cmd(world_id: str = typer.Argument(...)) -> None:
    """The versions of a world (oldest first)."""
    from gaiverse.world.versions import WorldNotFound

    try:
        _emit({"world_id": world_id, "versions": [v.to_dict() for v in _repo().versions(world_id)]})
    except (WorldNotFound, ValueError) as err:
        fail(str(err))


@world_app.command("diff")
def diff_cmd(world_id: str = typer.Argument(...), a: int = typer.Argument(..., min=1), b: int = typer.Argument(..., min=1),
             png: Optional[Path] = typer.Option(None, "--png", help="Also write the diff image here")) -> None:
    """What changed from version A to version B (JSON), optionally as a PNG."""
    from gaiverse.world.versions import WorldNotFound

    repo = _repo()
    try:
        result = repo.diff(world_id, a, b)
        if png:
            png.write_bytes(repo.diff_png(world_id, a, b))
            result["png"] = str(png)
    except (WorldNotFound, ValueError) as err:
        fail(str(err))
    _emit(result)


@world_app.command("edit")
def edit_cmd(
    world_id: str = typer.Argument(...),
    edit: str = typer.Argument(..., help='The edit as JSON, e.g. \'{"op": "raise", "amount_m": 5, "region": '
                                        '{"x0_m": 100, "y0_m": 100, "x1_m": 300, "y1_m": 300}}\''),
    base: Optional[int] = typer.Option(None, "--base", min=1, help="Version the edit applies to (default latest)"),
    message: Optional[str] = typer.Option(None, "--message", "-m"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the new version's files here"),
) -> None:
    """Apply one edit (raise, lower, flatten, draw_road, delete_roads, move_building, regenerate) as a new version."""
    from pydantic import ValidationError

    from gaiverse.world.editing import EditError, EditRequest, LayoutModels
    from gaiverse.world.version_outputs import publish_edit
    from gaiverse.world.versions import VersionConflict, WorldNotFound

    repo = _repo()
    try:
        request = EditRequest.model_validate({"edit": json.loads(edit), "base_version": base, "message": message})
        models = LayoutModels.from_checkpoint() if request.edit.op == "regenerate" else None
        made, result, _ = publish_edit(repo, world_id, request, models)  # with its interiors and dynamics
    except json.JSONDecodeError as err:
        fail(f"`edit` is not JSON: {err}")
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"`edit.{'.'.join(str(p) for p in first['loc'])}`: {first['msg']}")
    except (WorldNotFound, EditError, VersionConflict, ValueError) as err:
        fail(str(err))
    files = write_version_files(repo, world_id, made.version, out) if out else {}
    _emit({**made.to_dict(), "edit": result.summary, "files": files})


@world_app.command("schedule")
def schedule_cmd(
    world_id: str = typer.Argument(...),
    schedule: Optional[str] = typer.Argument(None, help='The schedule as JSON, or @FILE; e.g. \'{"entries": [{"hour": 0, '
                                                        '"weather": "clear", "traffic": 0.2, "pedestrians": 0.1}, '
                                                        '{"hour": 18, "weather": "rain", "traffic": 1, "pedestrians": 0.5}]}\''),
    base: Optional[int] = typer.Option(None, "--base", min=1, help="Version to schedule (default latest)"),
    message: Optional[str] = typer.Option(None, "--message", "-m"),
) -> None:
    """Show a version's weather / time-of-day schedule, or with SCHEDULE publish a version that follows it."""
    from gaiverse.world.version_outputs import OutputsError, publish_schedule, version_schedule
    from gaiverse.world.versions import VersionConflict, WorldNotFound

    repo = _repo()
    try:
        if schedule is None:
            found = version_schedule(repo.store.get_bytes, repo.manifest(world_id, base)["objects"])
            if found is None:
                fail(f"this version of {world_id!r} has no dynamics, so no schedule")
            _emit(found)
            return
        text = Path(schedule[1:]).read_text() if schedule.startswith("@") else schedule
        made = publish_schedule(repo, world_id, json.loads(text), base, message)
    except json.JSONDecodeError as err:
        fail(f"`schedule` is not JSON: {err}")
    except (WorldNotFound, VersionConflict, OutputsError, ValueError, OSError) as err:
        fail(str(err))
    _emit(made.to_dict())


@world_app.command("rollback")
def rollback_cmd(world_id: str = typer.Argument(...), version: int = typer.Argument(..., min=1),
                 message: Optional[str] = typer.Option(None, "--message", "-m")) -> None:
    """Publish a new version with the content of VERSION."""
    from gaiverse.world.versions import VersionConflict, WorldNotFound

    repo = _repo()
    try:
        made = repo.rollback(world_id, version, author=repo.owner(world_id) or "admin", message=message)
    except (WorldNotFound, VersionConflict, ValueError) as err:
        fail(str(err))
    _emit(made.to_dict())


@world_app.command("delete")
def delete_cmd(world_id: str = typer.Argument(...)) -> None:
    """Delete WORLD: every version, and the objects no other world shares (refused while a build of it runs)."""
    from gaiverse.world.versions import WorldBusy, WorldNotFound

    try:
        _emit(_repo().delete(world_id))
    except (WorldNotFound, WorldBusy, ValueError) as err:
        fail(str(err))


@world_app.command("backup")
def backup_cmd(world_id: str = typer.Argument(...), out: Path = typer.Option(..., "--out", help="Archive to write (.tar.gz)"),
               version: Optional[int] = typer.Option(None, "--version", min=1)) -> None:
    """Export a version as a self-contained archive (manifest, objects, catalog rows, SHA256SUMS)."""
    from gaiverse.world.versions import WorldNotFound

    try:
        archive = _repo().export_backup(world_id, version)
    except (WorldNotFound, ValueError) as err:
        fail(str(err))
    out.write_bytes(archive)
    _emit({"world_id": world_id, "archive": str(out), "bytes": len(archive)})


@world_app.command("restore")
def restore_cmd(archive: Path = typer.Argument(..., exists=True, dir_okay=False),
                world_id: Optional[str] = typer.Option(None, "--world-id", help="Restore under another id"),
                owner: Optional[str] = typer.Option(None, "--owner", help="User id to own it (default: the admin)")) -> None:
    """Verify an archive and restore its version into this installation (an empty stack works)."""
    from gaiverse.world.versions import BackupError, WorldIdTaken

    repo = _repo()
    repo.store.ensure_bucket()
    if owner is None:
        rows = repo.catalog.query("SELECT user_id FROM users WHERE is_admin ORDER BY created_at LIMIT 1")
        owner = rows[0]["user_id"] if rows else "admin"
    try:
        made = repo.restore_backup(archive.read_bytes(), author=owner, world_id=world_id)
    except (BackupError, WorldIdTaken, ValueError) as err:
        fail(str(err))
    _emit(made.to_dict())
