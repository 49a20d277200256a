"""How every CLI command reports a user's mistake: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape

from .errors import NvmkitError


def user_errors(fn):
    """Report an NvmkitError raised by ``fn`` as one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NvmkitError as exc:
            Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper
