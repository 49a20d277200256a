"""``nvmkit plugins check``: run the conformance checks from the command line.

Kept apart from ``cli.py`` so the command can be registered onto its ``plugins`` group with one call,
``register(plugins_app)``.
"""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .cli_errors import user_errors

_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


def register(plugins_app: typer.Typer) -> None:
    """Add the ``check`` command to the ``nvmkit plugins`` group."""
    plugins_app.command("check")(check)


@user_errors
def check(
    name: Optional[str] = typer.Argument(None, help="Plugin name; omit to check every installed plugin."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="device, noise, network or energy."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Check plugins against their interface (methods, validation, shapes, dtypes, seeds).

    Exits 1 if any check fails, 2 on a usage error (unknown plugin or kind).
    """
    console = Console()
    results = _results(name, kind)
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    if as_json:
        print(json.dumps({"results": [r.to_dict() for r in results], "counts": counts,
                          "ok": counts["fail"] == 0}, indent=2))
    else:
        table = Table(title="nvmkit plugin conformance")
        for col in ("kind", "plugin", "check", "result", "detail"):
            table.add_column(col, overflow="fold")
        for r in results:
            table.add_row(r.kind, r.name, r.check, f"[{_STYLE[r.status]}]{r.status}[/]", r.detail)
        console.print(table)
        plugins = len({(r.kind, r.name) for r in results})
        colour = "red" if counts["fail"] else "green"
        console.print(f"[{colour}]{plugins} plugin(s): {counts['pass']} checks passed, "
                      f"{counts['fail']} failed, {counts['skip']} skipped[/]")
    if counts["fail"]:
        raise typer.Exit(1)


def _results(name: str | None, kind: str | None):
    from .conformance import check_all, check_plugin
    from .errors import PluginError
    from .registry import KINDS, get_registry

    reg = get_registry()
    if name is None:
        return check_all(kind, reg)
    kinds = [kind] if kind else [k for k in KINDS if name in reg.names(k)]
    if not kinds:
        known = ", ".join(sorted({i.name for i in reg.all()})) or "(none installed)"
        raise PluginError(f"no plugin named '{name}'; installed plugins: {known}")
    return [r for k in kinds for r in check_plugin(k, name, reg)]
