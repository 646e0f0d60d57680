"""The ``vocalis`` command: one thin sub-command per stage, each calling that stage's core function.

Sub-command modules import their heavy libraries (torch, lightning, onnx) inside the command body, so
``vocalis --help``, ``vocalis predict`` and ``vocalis serve`` start fast and work without the training
extra installed.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from vocalis import __version__
from vocalis.cli import artifact, data, monitor, registry, serve, train
from vocalis.errors import VocalisError

err_console = Console(stderr=True)

app = typer.Typer(
    name="vocalis",
    help="Recognise animal species from their vocalizations: data, training, export, prediction, serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vocalis {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """vocalis: from field recordings to a served species classifier."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


for _module in (data, train, artifact, serve, registry, monitor):
    _module.register(app)


def main() -> None:
    """Console-script entry point: library errors become one line on stderr and exit code 1."""
    try:
        app()
    except VocalisError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        missing = exc.name or str(exc)
        err_console.print(
            f"[bold red]error:[/] the Python package '{missing}' is not installed; "
            "training and export need the extra: pip install 'vocalis[train]'",
            highlight=False,
        )
        sys.exit(1)
