"""Typer sub-apps for layouts: `eval terrain|roads` and `layout sample|train` (mounted by gaiverse.cli).

Eval commands print exactly one JSON object on stdout; logs go to stderr; unreadable data
exits 2 with a one-line reason. Implements ENV-a1 and ENV-a2 at the command line.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from gaiverse.cli_support import configure_logging, fail

log = logging.getLogger(__name__)

eval_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evaluate generators against real data")
layout_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Layout diffusion: sample and train")
app = typer.Typer(add_completion=False, no_args_is_help=True, help="World layout commands")
app.add_typer(eval_app, name="eval")
app.add_typer(layout_app, name="layout")


def _logging(verbose: bool) -> None:
    configure_logging(verbose, quiet=("tifffile",))


def _emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result, allow_nan=False, default=float) + "\n")


@eval_app.command("terrain")
def eval_terrain_cmd(
    real: list[Path] = typer.Option(..., "--real", help="Real DEM files (.asc, .tif) to compare against"),
    samples: int = typer.Option(64, "--samples", min=1, help="Generated heightmaps to score"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Terrain checkpoint dir (default: shipped)"),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps", help="DDIM steps (default: checkpoint's)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the scored samples here (.npy metres)"),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print the JSON result (always on)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Realism, diversity and memorisation of generated terrain vs real DEMs, fBm baseline, real-vs-real."""
    from gaiverse.world.evaluate import DataError, eval_terrain

    _logging(verbose)
    try:
        result = eval_terrain(real, n_samples=samples, checkpoint=checkpoint, seed=seed, steps=steps, out_dir=out)
    except DataError as err:
        fail(str(err))
    _emit(result)


@eval_app.command("roads")
def eval_roads_cmd(
    osm: list[Path] = typer.Option(..., "--osm", help="Real OSM files (.osm.pbf, .osm, .osm.bz2)"),
    samples: int = typer.Option(64, "--samples", min=1, help="Generated road tiles to score"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Roads checkpoint dir (default: shipped)"),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps", help="DDIM steps (default: checkpoint's)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the scored road masks here (.png)"),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print the JSON result (always on)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Road-network statistics of generated roads vs real OSM, grid/random baselines, real-vs-real."""
    from gaiverse.world.evaluate import DataError, eval_roads

    _logging(verbose)
    try:
        result = eval_roads(osm, n_samples=samples, checkpoint=checkpoint, seed=seed, steps=steps, out_dir=out)
    except DataError as err:
        fail(str(err))
    _emit(result)


@eval_app.command("buildings")
def eval_buildings_cmd(
    osm: list[Path] = typer.Option(..., "--osm", help="Real OSM files with buildings (.osm.pbf, .osm, .osm.bz2)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Building model dir (default: shipped)"),
    seed: int = typer.Option(0, "--seed"),
    layout_check: bool = typer.Option(True, "--layout/--no-layout", help="Also place buildings on the real roads"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the generated attributes here (.npz)"),
    json_out: bool = typer.Option(True, "--json/--no-json", help="Print the JSON result (always on)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Generated vs real buildings (area, aspect, orientation, setback, spacing, levels, shapes) vs uniform baseline."""
    from gaiverse.world.buildings_eval import BuildingDataError, eval_buildings

    _logging(verbose)
    try:
        result = eval_buildings(osm, checkpoint=checkpoint, seed=seed, layout_check=layout_check, out_dir=out)
    except BuildingDataError as err:
        fail(str(err))
    _emit(result)


@layout_app.command("sample")
def layout_sample_cmd(
    n: int = typer.Option(4, "--n", min=1, help="Number of layouts"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help='Suggestion, e.g. "a hilly town, 500 m x 500 m"'),
    out: Path = typer.Option(..., "--out", help="Output folder"),
    seed: int = typer.Option(0, "--seed"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Folder with terrain/ and roads/"),
    steps: Optional[int] = typer.Option(None, "--steps", help="DDIM steps"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write N layouts: heights_<i>.npy (metres), roads_<i>.png (0 none, 1 minor, 2 major), layout_<i>.json."""
    from gaiverse.world.layout import sample_layouts
    from gaiverse.world.suggestions import SuggestionError

    _logging(verbose)
    try:
        written = sample_layouts(n, out, prompt=prompt, seed=seed, checkpoint=checkpoint, steps=steps)
    except SuggestionError as err:
        fail(str(err))
    _emit({"out": str(out), "files": [str(p) for p in written]})


@layout_app.command("train")
def layout_train_cmd(
    preset: str = typer.Option(..., "--preset", help="terrain | roads"),
    out: Optional[Path] = typer.Option(None, "--out", help="Checkpoint folder (default checkpoints/layout/<preset>)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override the preset's training steps"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Checkpoint to fine-tune from"),
    guidance: Optional[str] = typer.Option(None, "--select-guidance",
                                           help="Terrain: comma-separated guidance scales to choose from on training tiles"),
    verbose: bool = typer.Option(True, "--verbose/--quiet", "-v"),
) -> None:
    """Train a layout preset on the shipped real data (held-out regions excluded)."""
    from gaiverse.world.training import train_layout

    _logging(verbose)
    try:
        scales = tuple(float(g) for g in guidance.split(",")) if guidance else ()
        path = train_layout(preset, out, steps=steps, batch_size=batch_size, seed=seed, threads=threads,
                            init_from=init_from, guidance_scales=scales)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    _emit({"checkpoint": str(path)})


def main() -> None:
    app()


if __name__ == "__main__":
    main()
