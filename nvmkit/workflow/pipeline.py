"""The run pipeline as a plain Python API: data -> train -> convert -> Monte Carlo -> energy."""

from __future__ import annotations

import time
from typing import Any

from nvmkit.workflow.config import PluginRef, RunConfig, plugin_table, set_path
from nvmkit.core.errors import ConfigError
from nvmkit.core.registry import Registry, get_registry
from nvmkit.core.spec import parse_value
from nvmkit.workflow.report import NullReporter, RunResult, check_output_path


def apply_overrides(data: dict, values: dict[str, Any], *, network=None, device=None, noise=None,
                    energy=None, time_steps=None, sets=(), no_cache=False) -> dict:
    """Fold command-line values into a config dict (flags win over the file)."""
    for key, value in values.items():
        if value is not None:
            set_path(data, key, value)
    for key, spec in (("network", network), ("device", device), ("noise", noise), ("energy", energy)):
        if spec is not None:  # a spec replaces the file's whole table: its params belong to its plugin
            data[key] = plugin_table(key, spec)
    if time_steps is not None:
        set_path(data, "network.params.time_steps", time_steps)
    if no_cache:
        set_path(data, "training.use_cache", False)
    for item in sets:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set crossbar.converters.adc_bits=8")
        try:
            value = parse_value(raw)
        except ConfigError as exc:
            raise ConfigError(f"--set {item!r}: {exc}") from None
        set_path(data, key.strip(), value)
    return data


def _create(reg: Registry, kind: str, ref: PluginRef):
    return reg.create(kind, ref.name, ref.params)


class Components:
    """The instantiated plugins of one run (validated on construction)."""

    def __init__(self, cfg: RunConfig, reg: Registry | None = None):
        reg = reg or get_registry()
        self.network = _create(reg, "network", cfg.network)
        self.device = _create(reg, "device", cfg.device)
        self.injector = _create(reg, "noise", cfg.noise) if cfg.noise else None
        self.energy = _create(reg, "energy", cfg.energy) if cfg.energy else None


def resolve(cfg: RunConfig, reg: Registry | None = None) -> dict:
    """The full configuration with every plugin default filled in (what a run records)."""
    comps = Components(cfg, reg)
    out = cfg.to_dict()
    out["network"] = {"name": comps.network.name, "params": comps.network.get_config()}
    out["device"] = {"name": comps.device.name, "params": comps.device.get_config()}
    if comps.injector is not None:
        out["noise"] = {"name": comps.injector.name, "params": comps.injector.get_config()}
    if comps.energy is not None:
        out["energy"] = {"name": comps.energy.name, "params": comps.energy.get_config()}
    out["training"] = cfg.training.resolved(comps.network).to_dict()
    return out


def run(config: RunConfig | dict, reporter=None, reg: Registry | None = None) -> RunResult:
    """Run one experiment point and return its result (also written to ``config.output``)."""
    from nvmkit.core.version import __version__
    from nvmkit.core._quiet import import_keras

    import_keras()
    from nvmkit.engine.convert import analog_footprint, convert
    from nvmkit.engine.crossbar_config import CrossbarConfig
    from nvmkit.workflow.data import load_dataset
    from nvmkit.engine.evaluate import digital_accuracy, monte_carlo
    from nvmkit.workflow.training import train

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    if cfg.output:  # a bad path must fail now, not after training and Monte Carlo
        check_output_path(cfg.output)
    reporter = reporter or NullReporter()
    started = time.perf_counter()
    comps = Components(cfg, reg)
    resolved = resolve(cfg, reg)

    with reporter.step("loading data"):
        ds = load_dataset(cfg.dataset.name, cfg.dataset.data_dir, source=cfg.dataset.source)
    epochs_trained = 0

    def count_epoch(epoch, logs):
        nonlocal epochs_trained
        epochs_trained += 1

    train_started = time.perf_counter()
    model = train(comps.network, ds, cfg.training, seed=cfg.seed, reporter=reporter, progress=count_epoch)
    train_s = time.perf_counter() - train_started
    evaluate_started = time.perf_counter()
    test_images = 0

    mapper = comps.network
    x_test, y_test = ds.x_test, ds.y_test
    accuracy: dict[str, dict] = {}
    networks = {}
    for scenario in cfg.scenarios:
        with reporter.step(f"evaluating: {scenario}"):
            if scenario == "digital":
                acc = digital_accuracy(model, mapper.prepare(x_test), y_test)
                accuracy[scenario] = {"mean": acc, "std": 0.0, "ci95": [acc, acc], "per_trial": [acc],
                                      "trials": 1}
                test_images += len(x_test)
                continue
            internal = scenario in ("internal", "both")
            external = scenario in ("external", "both")
            if external and comps.injector is None:
                continue  # no test-set noise configured: nothing to evaluate
            key = "device" if internal else "ideal"
            if key not in networks:  # the Keras-ops engine, all trials in one batch
                xcfg = cfg.crossbar if internal else CrossbarConfig.preset("ideal")
                networks[key] = convert(model, comps.device, xcfg, trials=cfg.trials, seed=cfg.seed,
                                        calibration_data=mapper.prepare(ds.x_train[: min(500, len(ds.x_train))]))
            res = monte_carlo(networks[key], x_test, y_test, trials=cfg.trials, seed=cfg.seed,
                              injector=comps.injector if external else None,
                              prepare=mapper.prepare, batch_size=cfg.batch_size)
            accuracy[scenario] = res.to_dict()
            test_images += cfg.trials * len(x_test)

    energy = None
    if comps.energy is not None:
        net = networks.get("device") or convert(model, comps.device, cfg.crossbar, seed=cfg.seed,
                                                calibration_data=mapper.prepare(ds.x_train[:500]))
        energy = comps.energy.estimate(analog_footprint(net), comps.device).to_dict()
    evaluate_s = time.perf_counter() - evaluate_started

    result = RunResult(
        config=resolved,
        seed=cfg.seed,
        dataset={"name": ds.name, "sample": ds.is_sample, "source": ds.source,
                 "n_train": int(len(ds.x_train)), "n_test": int(len(ds.x_test))},
        accuracy=accuracy,
        energy=energy,
        versions=_versions(__version__),
        wall_time_s=time.perf_counter() - started,
        timing={"train_s": round(train_s, 3), "train_epochs": epochs_trained, "n_train": int(len(ds.x_train)),
                "evaluate_s": round(evaluate_s, 3), "test_images": test_images},
    )
    if cfg.output:
        result.write_json(cfg.output)
    return result


def _versions(nvmkit_version: str) -> dict[str, str]:
    import keras
    import numpy
    import tensorflow

    return {"nvmkit": nvmkit_version, "numpy": numpy.__version__, "keras": keras.__version__,
            "tensorflow": tensorflow.__version__}
