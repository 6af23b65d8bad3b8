"""What every ``gaiverse`` sub-command shares: one-line errors with exit code 2, log set-up, JSON output.

Exit code 2 means "your input was wrong" (typer's own usage errors use it too), so scripts can tell a
bad argument from a failed run; the message is one line naming what was wrong.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, NoReturn

import typer

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def fail(reason: object) -> NoReturn:
    """Print ``error: <first line of reason>`` to stderr and exit with code 2."""
    typer.echo(f"error: {str(reason).splitlines()[0] if str(reason) else type(reason).__name__}", err=True)
    raise typer.Exit(2)


def configure_logging(verbose: bool, quiet: tuple[str, ...] = ()) -> None:
    """INFO with --verbose, else WARNING, on stderr (stdout stays machine-readable); ``quiet`` loggers
    (chatty libraries) stay at WARNING/ERROR either way."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr, format=LOG_FORMAT)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR if name == "tifffile" else logging.WARNING)


def emit_json(obj: Any, indent: int | None = None) -> None:
    """One JSON document on stdout (numpy scalars, paths and datetimes as strings)."""
    sys.stdout.write(json.dumps(obj, indent=indent, default=str) + "\n")
