"""The `gaiverse` command: run the embedded stack and check an installation.

    gaiverse up | down | status     the embedded stack (S3, Prefect, Ray, flow runner, API)
    gaiverse demo                   up + self-check through the API, then serve until Ctrl-C
    gaiverse selfcheck              run the self-check flow; exit 0 only when every step passed
    gaiverse eval terrain|roads|npc|recommend|avatar-policy|nerf ...   evaluations on real data (one JSON object, EVAL.md)
    gaiverse layout ... | tasks ... | npc kb ...    capability commands
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from gaiverse.config import Settings, get_settings, prefect_env

app = typer.Typer(add_completion=False, no_args_is_help=True, help="gaiverse: GAI services for metaverse worlds")
console = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("gaiverse")

TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as err:  # pydantic's message names the bad GAIVERSE_* field
        console.print(f"[red]configuration error:[/] {err}")
        raise typer.Exit(2)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _print_urls(settings: Settings) -> None:
    from gaiverse.stack import urls

    table = Table(title="gaiverse is serving", show_header=False)
    for name, url in urls(settings).items():
        table.add_row(name.replace("_", " "), url)
    key_file = settings.data_dir / "admin.key"
    if key_file.exists():
        table.add_row("admin key", f"in {key_file}")
    console.print(table)


def _start(settings: Settings) -> list[str]:
    """Start the stack with a line per service; returns the services this call started."""
    from gaiverse import stack

    began = time.monotonic()
    with console.status("starting the embedded stack…"):
        events = stack.up(settings, on_event=lambda name, msg: console.print(f"  [green]✓[/] {name:<15} {msg}"))
    console.print(f"stack healthy in {time.monotonic() - began:.1f} s")
    return [name for name, msg in events.items() if msg.startswith("started")]


@app.command()
def up(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Start the embedded stack in the background and print its URLs."""
    _setup_logging(verbose)
    settings = _settings()
    try:
        _start(settings)
    except (RuntimeError, TimeoutError, FileNotFoundError) as err:
        console.print(f"[red]gaiverse up failed:[/] {err} (logs in {settings.run_dir})")
        raise typer.Exit(1)
    _print_urls(settings)


@app.command()
def down() -> None:
    """Stop every service of the embedded stack (by PID)."""
    from gaiverse import stack

    stopped = stack.down(_settings())
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="print JSON on stdout")) -> None:
    """Health of every service; exit 1 when one is unhealthy."""
    from gaiverse import stack

    settings = _settings()
    rows = stack.status(settings)
    if as_json:
        print(json.dumps({"services": [r.__dict__ for r in rows], "urls": stack.urls(settings)}, indent=2))
    else:
        table = Table("service", "healthy", "pid", "where")
        for row in rows:
            table.add_row(row.name, "[green]yes[/]" if row.healthy else "[red]no[/]", str(row.pid or "-"), row.detail)
        console.print(table)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


def run_selfcheck(settings: Settings, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the `selfcheck` deployment on the stack's runner and return the flow's summary."""
    os.environ.update(prefect_env(settings))
    import prefect.context
    from prefect.deployments import run_deployment

    prefect.context.refresh_global_settings_context()  # PREFECT_* are read once, at first import
    flow_run = run_deployment("selfcheck/selfcheck", timeout=timeout_s, tags=["cli"])
    summary: dict[str, Any] = {"flow_run_id": str(flow_run.id), "state": flow_run.state.type.value, "steps": []}
    try:
        result = flow_run.state.result()
    except Exception as err:  # SelfcheckFailed carries the per-step summary
        result = getattr(err, "summary", None) or {"error": str(err).splitlines()[0] if str(err) else type(err).__name__}
    summary.update({key: value for key, value in result.items() if key != "flow_run_id"})
    return summary


@app.command()
def selfcheck(keep_running: bool = typer.Option(False, help="leave a stack this command started running")) -> None:
    """Run the self-check flow (starting the stack when none runs); one line per step; exit 0 only if all passed."""
    from gaiverse import stack

    _setup_logging(False)
    settings = _settings()
    started = _start(settings)
    try:
        summary = run_selfcheck(settings)
    finally:
        if started and not keep_running:
            stack.down(settings, only=started)
    ok = _print_steps(summary)
    console.print(f"flow run {summary['flow_run_id']} in the Prefect UI: "
                  f"{settings.prefect_url.removesuffix('/api')}/runs/flow-run/{summary['flow_run_id']}")
    raise typer.Exit(0 if ok else 1)


def _print_steps(summary: dict[str, Any]) -> bool:
    steps = summary.get("steps", [])
    for step in steps:
        mark = "[green]PASS[/]" if step.get("ok") else "[red]FAIL[/]"
        console.print(f"{mark} {step.get('name', '?'):<18} {step.get('detail', '')}")
    if "error" in summary:
        console.print(f"[red]FAIL[/] flow               {summary['error']}")
    ok = summary.get("state") == "COMPLETED" and bool(steps) and all(s.get("ok") for s in steps)
    console.print(("[green]self-check passed[/]" if ok else "[red]self-check failed[/]") + f" ({summary.get('state')})")
    return ok


def _api_selfcheck(settings: Settings, timeout_s: float = 600.0) -> dict[str, Any]:
    """Trigger the self-check through the HTTP API as the admin, the way a web client would."""
    from gaiverse.api.keys import read_admin_key

    key = read_admin_key(settings)
    if key is None:
        raise RuntimeError(f"no admin key: set GAIVERSE_ADMIN_KEY or start the API once to create {settings.data_dir / 'admin.key'}")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=settings.api_url, headers=headers, timeout=30) as client:
        response = client.post("/runs", json={"flow": "selfcheck/selfcheck", "parameters": {}})
        response.raise_for_status()
        run_id = response.json()["id"]
        deadline = time.monotonic() + timeout_s
        state = "SCHEDULED"
        with console.status("self-check running (triggered through the API)…"):
            while time.monotonic() < deadline:
                state = client.get(f"/runs/{run_id}").json()["state"]
                if state in TERMINAL_STATES:
                    break
                time.sleep(1)
        return {"flow_run_id": run_id, "state": state}


@app.command()
def demo() -> None:
    """Start the stack, run the self-check through the API and on the CLI, print URLs, serve until Ctrl-C."""
    from gaiverse import stack

    _setup_logging(False)
    settings = _settings()
    try:
        started = _start(settings)
    except (RuntimeError, TimeoutError, FileNotFoundError) as err:
        console.print(f"[red]gaiverse demo failed to start:[/] {err} (logs in {settings.run_dir})")
        raise typer.Exit(1)
    stop = {"now": False}
    try:
        via_api = _api_selfcheck(settings)
        console.print(f"self-check via API: run {via_api['flow_run_id']} -> {via_api['state']}")
        _print_steps(run_selfcheck(settings))
        _print_urls(settings)
        console.print("serving; press Ctrl-C to stop every service")
        for sig in (signal.SIGINT, signal.SIGTERM):  # explicit: a background shell may have ignored SIGINT
            signal.signal(sig, lambda *_: stop.update(now=True))
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        stopped = stack.down(settings, only=started)
        console.print("stopped: " + (", ".join(stopped) or "nothing (the stack was already running)"))


def _mount_capabilities() -> None:
    """One `eval` group gathering every capability's evaluation, plus each capability's own commands."""
    from gaiverse.avatar import cli as avatar_cli
    from gaiverse.interiors import cli as interiors_cli
    from gaiverse.npc import cli as npc_cli
    from gaiverse.personalization import cli as personalization_cli
    from gaiverse.world import cli as world_cli

    eval_app = typer.Typer(no_args_is_help=True, help="Evaluate on real data not trained on; prints one JSON object")
    for module in (world_cli, npc_cli, personalization_cli, avatar_cli, interiors_cli):
        eval_app.registered_commands.extend(module.eval_app.registered_commands)
    app.add_typer(eval_app, name="eval")
    app.add_typer(world_cli.layout_app, name="layout")
    from gaiverse.world.world_cli import world_app

    app.add_typer(world_app, name="world")
    app.add_typer(personalization_cli.tasks_app, name="tasks")
    npc_app = typer.Typer(no_args_is_help=True, help="NPC knowledge base and dialogue")
    npc_app.add_typer(npc_cli.kb_app, name="kb")
    npc_app.command("create")(npc_cli.create_cmd)
    app.add_typer(npc_app, name="npc")
    app.add_typer(avatar_cli.app, name="avatar")
    app.add_typer(interiors_cli.app, name="interiors")


_mount_capabilities()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
