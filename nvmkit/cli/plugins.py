"""``nvmkit plugins`` (list the registered plugins) and ``nvmkit plugins check`` (conformance)."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from nvmkit.cli.app import command, console, err_console, plugins_app, user_errors

_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


@plugins_app.callback(invoke_without_command=True)
@user_errors
def plugins(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Print every registered plugin: kind, name, source distribution, description."""
    if ctx.invoked_subcommand is not None:
        return
    from nvmkit.core.registry import get_registry

    reg = get_registry()
    rows = [
        {"kind": i.kind, "name": i.name, "source": i.source, "description": i.description}
        for i in reg.all()
    ]
    if as_json:
        print(json.dumps({"plugins": rows, "load_errors": reg.load_errors}, indent=2))
        return
    table = Table(title="nvmkit plugins")
    for col in ("kind", "name", "source", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(escape(r[c] or "") for c in ("kind", "name", "source", "description")))
    console.print(table)
    for name, msg in reg.load_errors.items():
        err_console.print(f"[yellow]warning:[/] plugin {escape(repr(name))}: {escape(str(msg))}",
                          highlight=False, soft_wrap=True)


@command(plugins_app, "check")
def check(
    name: Optional[str] = typer.Argument(None, help="Plugin name; omit to check every installed plugin."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="device, noise, network or energy."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Check plugins against their interface (methods, validation, shapes, dtypes, seeds).

    Exits 1 if any check fails, 2 on a usage error (unknown plugin or kind).
    """
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
            table.add_row(escape(r.kind), escape(r.name), escape(r.check), f"[{_STYLE[r.status]}]{r.status}[/]",
                          escape(r.detail))
        console.print(table)
        plugins = len({(r.kind, r.name) for r in results})
        colour = "red" if counts["fail"] else "green"
        console.print(f"[{colour}]{plugins} plugin(s): {counts['pass']} checks passed, "
                      f"{counts['fail']} failed, {counts['skip']} skipped[/]")
    if counts["fail"]:
        raise typer.Exit(1)


def _results(name: str | None, kind: str | None):
    from nvmkit.engine.conformance import check_all, check_plugin
    from nvmkit.core.errors import PluginError
    from nvmkit.core.registry import KINDS, get_registry

    reg = get_registry()
    if name is None:
        return check_all(kind, reg)
    kinds = [kind] if kind else [k for k in KINDS if name in reg.names(k)]
    if not kinds:
        known = ", ".join(sorted({i.name for i in reg.all()})) or "(none installed)"
        raise PluginError(f"no plugin named '{name}'; installed plugins: {known}")
    return [r for k in kinds for r in check_plugin(k, name, reg)]
