"""``nvmkit run``: one experiment point, a thin layer over :func:`nvmkit.workflow.pipeline.run`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from nvmkit.cli.app import app, command, console, data_folder

@command(app)
def run(
    config_file: Optional[Path] = typer.Argument(None, help="A TOML configuration (as --dry-run prints it) or a result JSON to re-run; flags override it."),
    dataset: Optional[str] = typer.Option(None, help="mnist, fashion-mnist, or your own .npz with x_train, y_train, x_test, y_test."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Your trained .keras model, deployed as it is (give --epochs to train it further); replaces --network."),
    scaling: Optional[str] = typer.Option(None, help="How a data file's inputs are scaled: auto (uint8 / 255, floats must lie in [0, 1]) or none (used as they are)."),
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
    training_method: Optional[str] = typer.Option(None, "--training-method", help="plain, preactivation (the seed's noise before each ReLU: with --sigma-neu, or preactivation:0.1; fine-tuning the plain model: preactivation:0.1,start=plain,epochs=1) or device (through the deployment's device and crossbar, the programming drawn afresh per mini-batch; device:epochs=2,every=1,start=plain) or in-place (on-chip learning by the device's pulses from the programmed model, the device scenarios then scoring the trained chip itself; in-place:steps=200,lr=0.01,pulses=deterministic|stochastic,start=plain)."),
    energy: Optional[str] = typer.Option(None, help="Energy estimator spec, e.g. crossbar or crossbar:conv_mapping=unrolled, or none."),
    set_: List[str] = typer.Option([], "--set", help="Override any key: --set crossbar.converters.adc_bits=8."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON result here."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Retrain even if a cached model exists."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configuration and stop."),
):
    """Train a network, deploy it on a simulated crossbar, evaluate accuracy and energy.

    Specs (NAME, NAME:VALUE, NAME:key=value,...) follow one grammar, see docs/plugins.md. Re-run a
    result with `nvmkit run result.json -o again.json`: the same seed gives the same accuracies.
    """
    from nvmkit.workflow import pipeline
    from nvmkit.workflow.config import RunConfig

    from nvmkit.workflow.config import is_data_file

    data = RunConfig.from_file(config_file).to_dict() if config_file else {}
    if dataset is not None:  # a name or a file: the other key of the file's table no longer applies
        table = data.setdefault("dataset", {})
        for key in ("name", "file", "sha256"):
            table.pop(key, None)
        if is_data_file(dataset):
            table.pop("data_dir", None)
    if model is not None:
        if network is not None or time_steps is not None:
            from nvmkit.core.errors import ConfigError

            raise ConfigError("--model runs your model file in place of a network plugin; drop "
                              "--network/--time-steps, or drop --model")
        data["model"] = {"file": str(model)}
    if dataset is not None:
        from nvmkit.workflow.config import dataset_table

        dataset_table(dataset)  # a folder is refused with the fix
    data_dir = data_folder(data_dir)
    overrides = {
        "dataset.file": dataset if dataset is not None and is_data_file(dataset) else None,
        "dataset.name": dataset if dataset is not None and not is_data_file(dataset) else None,
        "dataset.scaling": scaling,
        "dataset.data_dir": str(data_dir) if data_dir else None,
        "dataset.source": source,
        "trials": trials,
        "seed": seed,
        "training.epochs": epochs,
        "training.sigma_neu": sigma_neu,
        "training.method": training_method,
        "output": str(output) if output else None,
    }
    if data_dir and source is None:
        overrides["dataset.source"] = "full"
    pipeline.apply_overrides(data, overrides, network=network, device=device, noise=noise,
                             energy=energy, time_steps=time_steps, sets=set_, no_cache=no_cache)
    cfg = RunConfig.from_dict(data)
    resolved = pipeline.resolve(cfg)
    if cfg.output:
        from nvmkit.workflow.report import check_output_path

        check_output_path(cfg.output, inputs=(config_file, cfg.dataset.file,
                                              cfg.model.file if cfg.model else None))
    if dry_run:
        if output is not None:  # checked last: the configuration's own mistakes are named first
            from nvmkit.core.errors import ConfigError

            raise ConfigError("--dry-run prints the configuration and writes nothing; drop -o/--output "
                              "(to keep the configuration: nvmkit run --dry-run > run.toml)")
        import tomli_w

        from nvmkit.core.params import drop_none

        # paths as this folder sees them (a config file's own read from its folder, absolute ones
        # kept): the file runs from anywhere when saved here, as documented (> run.toml)
        # soft_wrap: a long line (a data folder) must not be broken, the output is a TOML file to re-run
        console.print(tomli_w.dumps(drop_none(resolved)), highlight=False, markup=False, soft_wrap=True)
        return
    from nvmkit.workflow.report import RichReporter, print_result

    with RichReporter(console) as reporter:
        result = pipeline.run(cfg, reporter=reporter)
    print_result(console, result)
    if cfg.output:
        console.print(f"result written to {cfg.output}", markup=False, highlight=False)
