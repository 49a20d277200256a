"""``nvmkit devices``: list the device models and show one's parameters, units and sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
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

    from nvmkit.core.errors import ConfigError

    for p in params or []:  # without '=' the spec grammar would read it as the first parameter's value
        key, eq, _ = p.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--param {p!r}: write key=value, e.g. --param levels=64")
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
                       energy_per_mac_J=d.energy_per_mac, pulse_updatable=d.pulse_updatable)
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
        table.add_row(escape(r["name"]), escape(f"{_fmt(r['g_min'])}-{_fmt(r['g_max'])} {r['units']}"),
                      escape(_fmt(r["levels"])), "estimator" if e is None else f"{e * 1e15:.3g} fJ",
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
    _print_update(desc)
    if desc["notes"]:
        notes = Table(title="models")
        notes.add_column("model")
        notes.add_column("source", overflow="fold")
        for k, v in desc["notes"].items():
            notes.add_row(escape(k), escape(v))
        console.print(notes)


def _print_update(desc: dict) -> None:
    """The update model of on-chip learning, or the line saying there is none."""
    update = desc.get("update")
    if update is None:
        console.print("update model: none (inference only; on-chip learning refuses this device: "
                      "a device states one with pulse_step, docs/plugins.md)", highlight=False)
        return
    units = desc["units"]
    table = Table(title="update model (one pulse, on-chip learning)")
    for col in ("quantity", "at g_min", "middle", "at g_max"):
        table.add_column(col)
    for label, key in (("mean step up", "step_up"), ("mean step down", "step_down"),
                       ("c2c std up", "sigma_up"), ("c2c std down", "sigma_down")):
        table.add_row(f"{label} ({units})", *(f"{v:.4g}" for v in update[key]))
    console.print(table)
    model = update.get("model") or {}
    lines = []
    if model:
        lines.append(f"{model['family']}: step {model['step']:.4g} of the range at mid-range, asymmetry "
                     f"{model['asymmetry']:.3g}, nonlinearity {model['nonlinearity']:.3g}"
                     + (" (symmetric)" if model.get("symmetric_nonlinearity") else ""))
        if model.get("symmetry_point") is not None:
            lines.append(f"symmetry point (up step = down step): {model['symmetry_point']:.3g} of the range")
        if "up_pulses_across_range" in model:
            across = model["up_pulses_across_range"]
            lines.append("up pulses from g_min to g_max: " + ("never reached (soft bound)" if across is None
                                                              else f"{across:.4g}"))
    e = update["pulse_energy_J"]
    lines.append(f"device-to-device spread of the step: {update['d2d']:.3g}; pulses per update: "
                 f"{'not stated' if update['max_pulses'] is None else update['max_pulses']}; energy per pulse: "
                 f"{'not stated' if e is None else f'{e:.3g} J'}")
    for line in lines:
        console.print(escape(line), highlight=False)


@command(devices_app, "fit")
def fit(
    measurements: Path = typer.Argument(..., help="Measurement CSV: columns target, measured "
                                                   "[, cell, read, time]; '# units: nA' before the header."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Device table to write (.toml), or an "
                                          "existing folder (device.toml and fit.png go in it)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the data against the fitted device here (.png, .pdf)."),
    units: Optional[str] = typer.Option(None, "--units", help="Units of target and measured (uS, nA, ...), "
                                        "if the file does not state them."),
    time_units: Optional[str] = typer.Option(None, "--time-units", help="Units of the time column: s, min, h, days."),
    g_min: Optional[float] = typer.Option(None, "--g-min", help="Lowest programmable conductance (default: lowest target)."),
    g_max: Optional[float] = typer.Option(None, "--g-max", help="Highest programmable conductance (default: highest target)."),
    levels: Optional[int] = typer.Option(None, "--levels", help="Programmable levels (default: continuous)."),
    read_voltage: float = typer.Option(0.1, "--read-voltage", help="Read voltage (V), for energy."),
    read_time: float = typer.Option(10e-9, "--read-time", help="Read pulse (s), for energy."),
    energy_per_mac: Optional[float] = typer.Option(None, "--energy-per-mac", help="J per multiply-accumulate, "
                                                   "if known (default: the energy estimator derives it)."),
    min_dof: int = typer.Option(30, "--min-dof", help="Targets with fewer degrees of freedom take the smooth fit."),
):
    """Fit a device to measured cells: write the table the 'table' device reads, print the fit quality."""
    from nvmkit.fit import fit_device

    result = fit_device(measurements, output, units=units, time_units=time_units, g_min=g_min, g_max=g_max,
                        levels=levels, read_voltage=read_voltage, read_time=read_time,
                        energy_per_mac=energy_per_mac, min_dof=min_dof, plot=plot)
    _print_fit(console, result)


def _time_label(t: float) -> str:
    return "0" if t == 0 else f"{t / 86400:g} d" if t >= 86400 else f"{t / 3600:g} h" if t >= 3600 else f"{t:g} s"


def _print_fit(console, fit) -> None:
    """Per-target statistics with 95% CIs and residuals against the smooth fit (user text escaped)."""
    table = fit.table
    u = table.units
    console.print(f"[bold]device fit[/] of {escape(table.source)}", highlight=False)
    read = Table(title=escape(f"per target level at t = 0 ({u}, 95% CI; z = the level minus its interpolation from the others, in SEs)"))
    for col in ("target", "cells", "reads/cell", "mean - target", "programming sigma", "z", "read sigma", "z", "used"):
        read.add_column(col, justify="right")
    for k, g in enumerate(fit.targets):
        used = "smooth" if fit.prog_smoothed[0, k] or fit.read_smoothed[k] else "data"
        half = fit.mean_ci[0, k, 1] - fit.mean[0, k]
        read.add_row(
            f"{g:g}", str(fit.cells[0, k]), f"{fit.reads_per_cell[0, k]:.3g}",
            f"{fit.bias[k]:+.3g} ± {half:.2g}",
            f"{fit.prog_direct[0, k]:.4g} [{fit.prog_ci[0, k, 0]:.3g}, {fit.prog_ci[0, k, 1]:.3g}]",
            _z(fit.prog_loo_z[0, k]),
            "-" if not np.isfinite(fit.read_direct[k]) else
            f"{fit.read_direct[k]:.4g} [{fit.read_ci[k, 0]:.3g}, {fit.read_ci[k, 1]:.3g}]",
            _z(fit.read_loo_z[k]), used)
    console.print(read)
    if len(fit.times) > 1:
        drift = Table(title=escape(f"later reads: change of the mean since t = 0 and programming sigma ({u}; 95% CI)"))
        drift.add_column("time", justify="right")
        for g in fit.targets:
            drift.add_column(f"{g:g}", justify="right")
        for j in range(1, len(fit.times)):
            drift.add_row(_time_label(fit.times[j]), *(
                f"{fit.shift[j, k]:+.3g} ± {fit.shift_ci[j, k, 1] - fit.shift[j, k]:.2g}; "
                f"σ {table.programming_sigma[j, k]:.3g}" for k in range(len(fit.targets))))
        console.print(drift)
    for note in fit.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    console.print(escape(f"range {table.g_min:g}-{table.g_max:g} {u}, levels {table.levels or 'continuous'}, "
                         f"{len(fit.times)} time(s) up to {_time_label(fit.times[-1])}"), highlight=False)
    for what, path in fit.paths.items():
        if path is not None:
            console.print(f"wrote {what}: {escape(str(path))}", highlight=False)
    if fit.paths.get("table") is not None:
        spec = f"table:file={fit.paths['table']}"
        console.print(f"use it: --device {escape(spec)}", highlight=False)


def _z(z: float) -> str:
    return "-" if not np.isfinite(z) else f"{z:+.1f}"
