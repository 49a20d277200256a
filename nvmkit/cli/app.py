"""The one Typer application every command registers on, and what all commands share: the
consoles, the user-error decorator, the progress bar, the duration and core-count formats.

A command module does ``from nvmkit.cli.app import app, command`` and decorates its function with
``@command(app)`` (or ``@command(plugins_app, "check")``); :mod:`nvmkit.cli` imports every command
module once. Nothing here imports a command module, so the CLI's imports run one way.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from nvmkit.core.errors import NvmkitError, NvmkitWarning
from nvmkit.workflow.report import progress_bar  # noqa: F401  (shared by the commands)

app = typer.Typer(
    help="Accuracy and energy of neural networks on noisy non-volatile-memory crossbars.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts name TOML tables ([base], [grid]): never read them as markup
)
plugins_app = typer.Typer(help="List and check the registered plugins.", invoke_without_command=True,
                          rich_markup_mode=None)
app.add_typer(plugins_app, name="plugins")

def make_console(**kwargs) -> Console:
    """A console for the CLI. Emoji shortcodes are off: rich would turn a user's text such as
    ``gaussian:-1: ...`` into a thumbs-down; markup stays on for the code's own styling, so text from
    the user or a plugin is passed through :func:`rich.markup.escape` before it is printed."""
    kwargs.setdefault("emoji", False)
    return Console(**kwargs)


console = make_console()
err_console = make_console(stderr=True)


@contextlib.contextmanager
def warnings_as_lines():
    """While a command runs, print each of nvmkit's own warnings (:class:`NvmkitWarning`) as one
    line on stderr, ``warning: ...``, as the commands' own warnings read, instead of Python's
    format (nvmkit's source file and line, the category, the line of code). Other warnings keep
    Python's format; the warnings filters (``-W``, ``PYTHONWARNINGS``) still decide what is shown."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, NvmkitWarning):
            make_console(stderr=True).print(f"[yellow]warning:[/] {escape(str(message))}",
                                            highlight=False, soft_wrap=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def user_errors(fn):
    """Report an NvmkitError raised by ``fn`` as one line on stderr and exit 2; nvmkit's warnings
    as one line each (:func:`warnings_as_lines`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings_as_lines():
                return fn(*args, **kwargs)
        except NvmkitError as exc:
            make_console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def command(group: typer.Typer, name: str | None = None, **kwargs):
    """Register ``fn`` as a command of ``group`` with the user-error handling every command has."""

    def decorate(fn):
        group.command(name, **kwargs)(user_errors(fn))
        return fn

    return decorate


def data_folder(data_dir):
    """A command's --data-dir, checked before any work (else a sweep's every point fails on it, one
    by one, or a dry run says all is well), with ``~`` expanded; None when not given."""
    if data_dir is None:
        return None
    from nvmkit.workflow.data import check_data_dir

    return check_data_dir(data_dir)


def cores() -> int:
    """Local worker processes by default: one per core."""
    return os.cpu_count() or 1


def _version_callback(value: bool):
    if value:
        from nvmkit.core.version import __version__

        console.print(f"nvmkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
):
    """nvmkit: if this network runs on NVM crossbars, how accurate is it and what does it cost?"""
