"""The ``vocalis`` command: one thin sub-command per stage, each calling that stage's core function.

Sub-command modules import their heavy libraries (torch, lightning, onnx) inside the command body, so
``vocalis --help``, ``vocalis predict`` and ``vocalis serve`` start fast and work without the training
extra installed.

Conventions every command follows: results on stdout, messages (progress, warnings, errors) on stderr;
``-o/--output`` names what a command writes; fractions are 0-1; a command-line flag wins over the
environment variable of the same setting; and a user error (any :class:`~vocalis.errors.VocalisError`, a
bad option value, an unreadable or unwritable file) prints one line to stderr and exits 2, with the
traceback only under ``vocalis --debug``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

import typer
from rich.console import Console
from rich.markup import escape

try:  # typer >= 0.20 vendors click and raises its own copies of click's exceptions
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - an older typer on the real click
    from click import exceptions as click_exc  # type: ignore[no-redef]
from vocalis.cli import artifact, data, monitor, registry, serve, train, transfer
from vocalis.errors import VocalisError

err_console = Console(stderr=True)

#: exit status of a user error (a bad option value, a VocalisError, a file that cannot be read or written)
USER_ERROR = 2
#: exit status when an extra the command needs is not installed
MISSING_EXTRA = 1
#: set by ``vocalis --debug``: user errors then show their traceback
_state = {"debug": False}

app = typer.Typer(
    name="vocalis",
    help="Recognise animal species from their vocalizations: data, training, export, prediction, serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from vocalis import __version__

        typer.echo(f"vocalis {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error, not one line."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """vocalis: from field recordings to a served species classifier."""
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


for _module in (data, train, artifact, serve, registry, monitor, transfer):
    _module.register(app)


def _fail(message: str, code: int) -> None:
    """One line on stderr (after the traceback under --debug), then exit with ``code``."""
    if _state["debug"]:
        traceback.print_exc()
    line = " ".join(str(message).split())
    # escaped: a message may hold brackets (an extra's name, a path) that rich would take for markup
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: a user error becomes one line on stderr and exit code 2.

    User errors are a :class:`VocalisError`, a bad command line (unknown option, bad value: click's usage
    errors) and an :class:`OSError` that names a file (not found, no permission). Anything else is a bug
    and keeps its traceback. ``vocalis --debug ...`` prints the traceback before the line.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # set here too: a bad command line can fail before the root callback has run
    _state["debug"] = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    try:
        # standalone_mode=False: click raises instead of printing its multi-line usage box, and returns
        # the code of a typer.Exit(code)
        code = app(args=args, prog_name="vocalis", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:  # a bare `vocalis` or `vocalis data`: the help
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except click_exc.UsageError as exc:  # a bad command line: the message and where to look
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(f"{exc.format_message()}{hint}", USER_ERROR)
    except click_exc.ClickException as exc:
        _fail(exc.format_message(), USER_ERROR)
    except VocalisError as exc:
        _fail(str(exc), USER_ERROR)
    except ModuleNotFoundError as exc:
        _fail(
            f"the Python package '{exc.name or exc}' is not installed; "
            "training and export need the extra: pip install 'vocalis[train]'",
            MISSING_EXTRA,
        )
    except OSError as exc:
        if not exc.filename:
            raise  # not about a file the user named: a bug, keep the traceback
        _fail(f"{exc.filename}: {exc.strerror or exc}", USER_ERROR)
    sys.exit(code if isinstance(code, int) else 0)
