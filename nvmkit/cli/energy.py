"""``nvmkit energy``: energy per inference without training (a thin layer over energy_table).

Any network plugin (built untrained) or a user's ``.keras`` file is converted onto crossbars and
priced from the converted graph's footprint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from nvmkit.cli.app import app, command, console

@command(app, "energy")
def energy_command(
    network: Optional[str] = typer.Option(None, "--network", "-n",
                                          help="Network spec, as in nvmkit run: e.g. mlp, mlp:hidden=300, rnn:time_steps=4,units=128, "
                                               "cnn:filters=32-64 (widths joined by '-'). Default: mlp."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Price your own .keras model instead of a network plugin."),
    device: str = typer.Option("reram", "--device", "-d", help="Device spec, e.g. sonos or reram:read_time=2e-8."),
    estimator: str = typer.Option("crossbar", "--estimator", "-e",
                                  help="Energy estimator spec, e.g. crossbar:conv_mapping=unrolled."),
    seed_table: bool = typer.Option(False, "--seed-table",
                                    help="Print our table beside the seed's (MLP, RNN, CNN x ReRAM, SONOS) "
                                         "with ratios, the assumptions and the seed's claims checked."),
    sensitivity: bool = typer.Option(False, "--sensitivity",
                                     help="Print total energy per network for 11-100 fJ per MAC."),
    assumptions: str = typer.Option("all", "--assumptions",
                                    help="For --seed-table/--sensitivity: seed, default or all."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    set_: List[str] = typer.Option([], "--set",
                                   help="A crossbar setting, as in nvmkit run: --set crossbar.converters.adc_bits=8 "
                                        "(the ADCs' bits set what a conversion costs)."),
    training: bool = typer.Option(False, "--training",
                                  help="Price one training step instead of an inference: forward read, backward "
                                       "read through the transposed crossbars, update pulses (needs --pulses-per-cell). "
                                       "With --seed-table: the seed's three networks on reram, sonos and ecram."),
    pulses_per_cell: Optional[str] = typer.Option(None, "--pulses-per-cell",
                                                  help="With --training: mean programming pulses per cell per step "
                                                       "(measured by learning in place, or an assumption): one number "
                                                       "for every layer, or LAYER=N,LAYER=N for each analog layer."),
    pulse_energy: Optional[float] = typer.Option(None, "--pulse-energy",
                                                 help="With --training: J per pulse per cell, in place of the device's "
                                                      "pulse_energy (an assumption: say so where you quote it)."),
    batch_size: int = typer.Option(1, "--batch-size",
                                   help="With --training: samples per step (each read forward and backward)."),
    pulses: str = typer.Option("stochastic", "--pulses",
                               help="With --training: how the pulse counts are formed: stochastic (row and column "
                                    "trains, one rank-1 update per read) or deterministic (per weight, from the "
                                    "step's gradient computed digitally)."),
):
    """Energy per inference (or, with --training, of one training step) of a network on a device,
    broken down by layer and component."""
    if training:
        _training(network, device, estimator, seed_table, sensitivity, assumptions, as_json, model, set_,
                  pulses_per_cell, pulse_energy, batch_size, pulses)
        return
    if pulses_per_cell is not None or pulse_energy is not None or batch_size != 1 or pulses != "stochastic":
        from nvmkit.core.errors import ConfigError

        raise ConfigError("--pulses-per-cell, --pulse-energy, --batch-size and --pulses price a training step; "
                          "add --training")
    _energy(network, device, estimator, seed_table, sensitivity, assumptions, as_json, model, set_)


def _training(network, device, estimator, seed_table, sensitivity, assumptions, as_json, model, sets,
              pulses_per_cell, pulse_energy, batch_size, pulses="stochastic"):
    from nvmkit.core.errors import ConfigError
    from nvmkit.core.registry import spec_params
    from nvmkit.reproduction import energy_table as et

    if pulses_per_cell is None:
        raise ConfigError("--training needs --pulses-per-cell N: the mean programming pulses per cell per step "
                          "(measured by learning in place, or an assumption)")
    pulses_per_cell = parse_pulses_per_cell(pulses_per_cell)
    if sensitivity:
        raise ConfigError("--sensitivity prices inference; drop it with --training")
    if not seed_table:
        if model is not None and network is not None:
            raise ConfigError("--model prices your model file in place of a network plugin; drop --network, "
                              "or drop --model")
        report = et.training_energy_report(network or "mlp", device, estimator, model=str(model) if model else None,
                                           crossbar=crossbar_from_sets(sets), pulses_per_cell=pulses_per_cell,
                                           batch_size=batch_size, pulse_energy=pulse_energy, pulses=pulses)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print_report(report, model.name if model else (network or "mlp"))
        return
    if model is not None or sets:
        raise ConfigError("--seed-table prices the seed's networks on the default crossbar; drop --model and --set")
    if isinstance(pulses_per_cell, dict):
        raise ConfigError("--seed-table prices three networks: give --pulses-per-cell one number for every layer")
    name, est_params = spec_params("energy", estimator)
    if name != "crossbar":
        raise ConfigError("--seed-table uses the crossbar estimator; "
                          "pass --estimator crossbar:key=value to change its parameters")
    names = list(et.ASSUMPTIONS) if assumptions == "all" else [et.get_assumptions(assumptions).name]
    out: dict = {}
    for a in names:
        rows = et.training_energy_table(a, pulses_per_cell=pulses_per_cell, pulse_energy=pulse_energy,
                                        batch_size=batch_size, pulses=pulses, estimator=est_params)
        out[a] = {"table": [r.to_dict() for r in rows], "assumptions": et.get_assumptions(a).why,
                  "pulses_per_cell": pulses_per_cell, "pulse_energy_J": pulse_energy, "batch_size": batch_size,
                  "pulses": pulses}
        if not as_json:
            print(f"## Energy of one training step, {a} assumptions\n")
            print(et.render_assumptions(a))
            if et.get_assumptions(a).estimator.get("conv_mapping", "im2col") != "im2col":
                print("- conv mapping (training): im2col, as the engine maps and updates conv layers (an "
                      "unrolled crossbar is not updated by outer products): the CNN's forward is not the table's above")
            per = "one sample" if batch_size == 1 else f"a mini-batch of {batch_size} samples"
            source = (f"{pulse_energy * 1e12:.3g} pJ per pulse per cell (assumption given)" if pulse_energy is not None
                      else "each device's own pulse_energy")
            print(f"- step: {per}; {pulses} pulse counts; pulses per cell per step: {pulses_per_cell:g} "
                  f"(assumption given); {source}\n")
            print(et.render_training_table(rows) + "\n")
    if as_json:
        print(json.dumps(out, indent=2))


def crossbar_from_sets(sets):
    """The CrossbarConfig that ``--set crossbar.KEY=VALUE`` items give (None without any)."""
    from nvmkit.core.errors import ConfigError
    from nvmkit.core.spec import parse_value
    from nvmkit.engine.crossbar_config import CrossbarConfig
    from nvmkit.workflow.config import set_path

    if not sets:
        return None
    data: dict = {}
    for item in sets:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key.startswith("crossbar.") or key == "crossbar.":
            raise ConfigError(f"--set {item!r}: nvmkit energy takes crossbar settings, "
                              "e.g. --set crossbar.converters.adc_bits=8")
        try:
            set_path(data, key, parse_value(raw))
        except ConfigError as exc:
            raise ConfigError(f"--set {item!r}: {exc}") from None
    return CrossbarConfig.from_dict(data["crossbar"], "crossbar")


def _energy(network, device, estimator, seed_table, sensitivity, assumptions, as_json, model=None,
            sets=()):
    from nvmkit.reproduction import energy_table as et
    from nvmkit.core.errors import ConfigError
    from nvmkit.core.registry import spec_params

    crossbar = crossbar_from_sets(sets)
    if crossbar is not None and (seed_table or sensitivity):
        raise ConfigError("--set prices one network on the crossbar you set; --seed-table and "
                          "--sensitivity use the seed's: give one or the other")
    if model is not None and network is not None:  # as `nvmkit run` refuses the pair
        raise ConfigError("--model prices your model file in place of a network plugin; drop --network, "
                          "or drop --model")
    network = network or "mlp"
    if model is not None and (seed_table or sensitivity):
        raise ConfigError("--model prices your model; --seed-table and --sensitivity price the seed's "
                          "networks: give one or the other")
    if not (seed_table or sensitivity):
        report = et.energy_report(network, device, estimator, model=str(model) if model else None,
                                  crossbar=crossbar)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print_report(report, model.name if model else network)
        return
    names = list(et.ASSUMPTIONS) if assumptions == "all" else [et.get_assumptions(assumptions).name]
    name, est_params = spec_params("energy", estimator)
    if name != "crossbar":
        raise ConfigError("--seed-table and --sensitivity use the crossbar estimator; "
                          "pass --estimator crossbar:key=value to change its parameters")
    out: dict = {}
    for a in names:
        if seed_table:
            rows = et.seed_energy_table(a, estimator=est_params)
            claims = et.seed_claims(rows)
            out.setdefault(a, {})["table"] = [r.to_dict() for r in rows]
            out[a]["claims"] = [c.__dict__ for c in claims]
            if not as_json:
                print(f"## Energy per inference, {a} assumptions\n")
                print(et.render_assumptions(a) + "\n")
                print(et.render_seed_table(rows) + "\n")
                print(et.render_claims(claims) + "\n")
        if sensitivity:
            table = et.energy_sensitivity(a, estimator=est_params)
            out.setdefault(a, {})["sensitivity_J"] = {n: {f"{e:g}": v for e, v in row.items()}
                                                     for n, row in table.items()}
            if not as_json:
                print(f"## Total energy per inference vs energy per MAC, {a} assumptions\n")
                print(et.render_sensitivity(table) + "\n")
        if as_json:
            out[a]["assumptions"] = et.get_assumptions(a).why
    if as_json:
        print(json.dumps(out, indent=2))


def parse_pulses_per_cell(text: str):
    """``0.5`` (every analog layer) or ``dense=0.1,dense_1=2`` (each by name) -> a number or a dict."""
    from nvmkit.core.errors import ConfigError

    def number(value: str, what: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"--pulses-per-cell {text!r}: {what} {value.strip()!r} is not a number; write 0.5 "
                              "or LAYER=N,LAYER=N") from None

    if "=" not in text:
        return number(text, "value")
    out: dict[str, float] = {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"--pulses-per-cell {text!r}: {item.strip()!r} is not LAYER=N; write 0.5 or "
                              "LAYER=N,LAYER=N")
        out[name.strip()] = number(value, f"layer {name.strip()!r}:")
    return out


def print_report(report, network: str = "") -> None:
    """A rich table of every term, then the totals by component."""
    from nvmkit.core.energy import TrainingEnergyReport
    from nvmkit.reproduction.energy_table import report_rows

    training = isinstance(report, TrainingEnergyReport)
    what = (f"energy of one training step ({report.batch_size} sample{'s' if report.batch_size > 1 else ''})"
            if training else "energy per inference")
    table = Table(title=escape(f"{what}: {network} on {report.device} ({report.estimator})"))
    for col, just in (("layer", "left"), ("component", "left"), ("counted event", "left"),
                      ("count", "right"), ("unit (fJ)", "right"), ("energy (nJ)", "right")):
        table.add_column(col, justify=just)
    for r in report_rows(report):
        table.add_row(escape(r["layer"]), escape(r["component"]), escape(r["what"]), f"{r['count']:,.0f}",
                      f"{r['unit_J'] * 1e15:.4g}", f"{r['energy_J'] * 1e9:.4g}")
    console.print(table)
    parts = escape(", ".join(f"{k} {v * 1e9:.4g}" for k, v in report.by_component().items() if v))
    label = "total" if report.physical else "total, NOT PHYSICAL (unitless cell reads),"
    if training and report.unpriced:
        label += " WITHOUT the update pulses"
    console.print(f"{label} [bold]{report.total * 1e9:.4g} nJ[/] ({parts} nJ)")
    if training:
        phases = ", ".join(f"{k} {v * 1e9:.4g}" for k, v in report.by_phase().items())
        console.print(escape(f"  by phase: {phases} nJ; pulses per cell per step: {report.pulses_per_cell}"),
                      highlight=False)
        for key in ("pulses", "pulse_energy", "pulse_lines", "backward_first_layer"):
            console.print(f"  {key}: {escape(str(report.notes.get(key)))}", highlight=False)
        for item in report.unpriced:
            console.print(f"[yellow]not priced:[/] {escape(item)}", highlight=False)
    for source, e_mac in report.notes.get("energy_per_mac", {}).items():
        console.print(f"  energy per MAC {e_mac * 1e15:.4g} fJ from {escape(str(source))}", highlight=False)
    for key in ("converters", "conv_mapping"):
        if key in report.notes:
            console.print(f"  {key}: {escape(str(report.notes[key]))}", highlight=False)
    if not report.physical:
        console.print(f"[yellow]not physical:[/] {escape(str(report.notes.get('physical', 'the device has no units')))}",
                      highlight=False)
