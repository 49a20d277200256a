"""``nvmkit devices``: list the device models and show one's parameters, units and sources."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from nvmkit.cli.app import app, command, console


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "None" if value is None else str(value)


def _device(spec: str, params: list[str] | None):
    from nvmkit.core.registry import create_from_spec

    extra = ",".join(params or [])
    if extra:
        spec = f"{spec},{extra}" if ":" in spec else f"{spec}:{extra}"
    return create_from_spec("device", spec)


devices_app = typer.Typer(help="Device models: list them, show a device's parameters and sources.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(devices_app, name="devices")


@command(devices_app, "list")
def list_devices(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """Every installed device model with its range, levels and energy per MAC."""
    from nvmkit.core.registry import get_registry

    reg = get_registry()
    rows = []
    for name in reg.names("device"):
        info = reg.info("device", name)
        row = {"name": name, "source": info.source, "description": info.description}
        try:
            d = info.cls()
        except Exception as exc:  # a third-party device without usable defaults
            row["error"] = f"{type(exc).__name__}: {exc}"
        else:
            row.update(units=d.units, g_min=d.g_min, g_max=d.g_max, levels=d.levels,
                       energy_per_mac_J=d.energy_per_mac)
        rows.append(row)
    if as_json:
        print(json.dumps({"devices": rows}, indent=2))
        return
    table = Table(title="device models")
    for col in ("name", "range", "levels", "energy/MAC", "source", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(escape(r["name"]), "?", "?", "?", escape(r["source"]), escape(f"cannot build: {r['error']}"))
            continue
        e = r["energy_per_mac_J"]
        table.add_row(escape(r["name"]), f"{_fmt(r['g_min'])}-{_fmt(r['g_max'])} {r['units']}",
                      _fmt(r["levels"]), "estimator" if e is None else f"{e * 1e15:.3g} fJ",
                      escape(r["source"]), escape(r["description"]))
    console.print(table)


@command(devices_app, "show")
def show(
    name: str = typer.Argument(..., help="Device name or spec, e.g. sonos or reram:levels=64."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p",
                                              help="Override a parameter: key=value (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
):
    """A device's parameters with values, units and citations, and its derived figures."""
    d = _device(name, param)
    desc = d.describe()
    if as_json:
        print(json.dumps(desc, indent=2, default=str))
        return
    console.print(f"[bold]{escape(desc['name'])}[/]: {escape(desc['description'])}", highlight=False)
    table = Table(title="parameters")
    for col in ("parameter", "value", "unit", "source"):
        table.add_column(col, overflow="fold")
    for p in desc["params"]:
        table.add_row(escape(p["name"]), escape(_fmt(p["value"])), escape(p["unit"]), escape(p["source"]))
    console.print(table)
    derived = Table(title="derived")
    derived.add_column("quantity")
    derived.add_column("value")
    e = desc["energy_per_mac_J"]
    for label, value in (
        ("conductance range", f"{_fmt(desc['g_min'])} - {_fmt(desc['g_max'])} {desc['units']}"),
        ("on/off ratio", _fmt(desc["on_off_ratio"])),
        ("levels", _fmt(desc["levels"])),
        ("energy per MAC", "left to the energy estimator" if e is None else f"{e:.3g} J"),
        ("cell read energy at g_max", f"{desc['cell_read_energy_at_g_max_J']:.3g} J"),
    ):
        derived.add_row(label, escape(value))
    console.print(derived)
    if desc["notes"]:
        notes = Table(title="models")
        notes.add_column("model")
        notes.add_column("source", overflow="fold")
        for k, v in desc["notes"].items():
            notes.add_row(escape(k), escape(v))
        console.print(notes)

