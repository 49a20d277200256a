"""The ``nvmkit`` command line. Each command is a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .cli_errors import user_errors

app = typer.Typer(
    help="Accuracy and energy of neural networks on noisy non-volatile-memory crossbars.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def _version_callback(value: bool):
    if value:
        from . import __version__

        console.print(f"nvmkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
):
    """nvmkit: if this network runs on NVM crossbars, how accurate is it and what does it cost?"""


# -- plugins ---------------------------------------------------------------------------------
plugins_app = typer.Typer(help="List and check the registered plugins.", invoke_without_command=True)
app.add_typer(plugins_app, name="plugins")


@plugins_app.callback(invoke_without_command=True)
@user_errors
def plugins(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Print every registered plugin: kind, name, source distribution, description."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.markup import escape

    from .registry import get_registry

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
        table.add_row(r["kind"], r["name"], r["source"], r["description"])
    console.print(table)
    for name, msg in reg.load_errors.items():
        err_console.print(f"[yellow]warning:[/] plugin {escape(repr(name))} not loaded: {escape(str(msg))}",
                          highlight=False)


# -- run -------------------------------------------------------------------------------------
@app.command()
@user_errors
def run(
    config_file: Optional[Path] = typer.Argument(None, help="Experiment TOML file; flags override it."),
    dataset: Optional[str] = typer.Option(None, help="mnist or fashion-mnist."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder in Keras's cache layout holding the full data."),
    source: Optional[str] = typer.Option(None, help="auto (full data if found, else the embedded sample), full, or sample."),
    network: Optional[str] = typer.Option(None, help="Network mapper spec, e.g. mlp, cnn, rnn:time_steps=7."),
    time_steps: Optional[int] = typer.Option(None, "--time-steps", "-T", help="RNN time steps T (must divide 784)."),
    device: Optional[str] = typer.Option(None, help="Device spec, e.g. synaptic:0.025, reram, sonos:levels=64."),
    noise: Optional[str] = typer.Option(None, help="Test-set noise spec, e.g. gaussian:0.1, speckle:0.2, salt-and-pepper:0.05, or none."),
    trials: Optional[int] = typer.Option(None, help="Monte Carlo trials."),
    seed: Optional[int] = typer.Option(None, help="Seed of every random draw."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the network's)."),
    sigma_neu: Optional[float] = typer.Option(None, help="Noise-injection std before each ReLU in training."),
    energy: Optional[str] = typer.Option(None, help="Energy estimator name, or none."),
    set_: List[str] = typer.Option([], "--set", help="Override any key: --set crossbar.converters.adc_bits=8."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON result here."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Retrain even if a cached model exists."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configuration and stop."),
):
    """Train a network, deploy it on a simulated crossbar, evaluate accuracy and energy."""
    from . import pipeline
    from .config import RunConfig

    data = RunConfig.from_file(config_file).to_dict() if config_file else {}
    overrides = {
        "dataset.name": dataset,
        "dataset.data_dir": str(data_dir) if data_dir else None,
        "dataset.source": source,
        "trials": trials,
        "seed": seed,
        "training.epochs": epochs,
        "training.sigma_neu": sigma_neu,
        "output": str(output) if output else None,
    }
    if data_dir and source is None:
        overrides["dataset.source"] = "full"
    pipeline.apply_overrides(data, overrides, network=network, device=device, noise=noise,
                             energy=energy, time_steps=time_steps, sets=set_, no_cache=no_cache)
    cfg = RunConfig.from_dict(data)
    resolved = pipeline.resolve(cfg)
    if cfg.output:
        from .report import check_output_path

        check_output_path(cfg.output)
    if dry_run:
        import tomli_w

        from .params import drop_none

        console.print(tomli_w.dumps(drop_none(resolved)), highlight=False, markup=False)
        return
    from .report import RichReporter, print_result

    with RichReporter(console) as reporter:
        result = pipeline.run(cfg, reporter=reporter)
    print_result(console, result)
    if cfg.output:
        console.print(f"result written to {cfg.output}")


def _register_commands() -> None:
    from . import cli_devices, cli_energy, cli_plugins, cli_reproduce, cli_sweep

    cli_devices.register(app)
    cli_plugins.register(plugins_app)
    cli_sweep.register(app)
    cli_reproduce.register(app)
    app.command("energy")(cli_energy.energy_command)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
