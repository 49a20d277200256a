"""The run pipeline as a plain Python API: data -> train -> convert -> Monte Carlo -> energy."""

from __future__ import annotations

import time
from typing import Any

from nvmkit.workflow.config import PluginRef, RunConfig, plugin_table, set_path
from nvmkit.core.errors import ConfigError, NvmkitError
from nvmkit.core.registry import Registry, get_registry
from nvmkit.core.spec import parse_value
from nvmkit.workflow.report import NullReporter, RunResult, check_output_path


#: the command-line option behind a key of apply_overrides' values, where its name is not the key's
_FLAGS = {"dataset.file": "--dataset", "dataset.name": "--dataset", "dataset.source": "--source/--data-dir",
          "training.method": "--training-method"}


def apply_overrides(data: dict, values: dict[str, Any], *, network=None, device=None, noise=None,
                    energy=None, time_steps=None, sets=(), no_cache=False) -> dict:
    """Fold command-line values into a config dict (flags win over the file).

    Two options of one command line that give one key different values are refused: whichever
    came last would win without a word (``--network rnn:time_steps=7 -T 4``)."""
    given: dict[str, tuple[str, Any]] = {}  # key -> (the option that gave it, its value)

    def give(key: str, value, option: str) -> None:
        if key in given and given[key][1] != value:
            raise ConfigError(f"{option} and {given[key][0]} give {key} two values; keep one")
        given[key] = (option, value)
        set_path(data, key, value)

    for key, value in values.items():
        if value is not None:
            give(key, value, _FLAGS.get(key) or "--" + key.rsplit(".", 1)[-1].replace("_", "-"))
    if values.get("training.sigma_neu") and values.get("training.method") is None \
            and (data.get("training") or {}).get("method") == "plain":
        # --sigma-neu on a recorded plain run (its configuration names the method): noise training
        set_path(data, "training.method", "preactivation")
    for key, spec in (("network", network), ("device", device), ("noise", noise), ("energy", energy)):
        if spec is not None:  # a spec replaces the file's whole table: its params belong to its plugin
            data[key] = plugin_table(key, spec)
            for name, value in ((data[key] or {}).get("params") or {}).items():
                given[f"{key}.params.{name}"] = (f"--{key} {spec}", value)
    if time_steps is not None:
        give("network.params.time_steps", time_steps, f"--time-steps {time_steps}")
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
        give(key.strip(), value, f"--set {item}")
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
    """The full configuration with every plugin default filled in (what a run records).

    A user's model file and data file are recorded by content: ``model.sha256`` and
    ``dataset.sha256`` (a re-run refuses files that changed since).
    """
    comps = Components(cfg, reg)
    if cfg.crossbar.wires.on:  # wire resistance needs siemens: an abstract device fails now, not after training
        from nvmkit.engine.wires import siemens_per_unit

        siemens_per_unit(comps.device, "crossbar.wires")
    if cfg.training.method == "in-place":  # before any training
        from nvmkit.core.update import require_pulse_update

        require_pulse_update(comps.device, "training.method in-place")
    out = cfg.to_dict()
    if cfg.dataset.file is not None:
        out["dataset"]["sha256"] = _recorded_hash(cfg.dataset.file, cfg.dataset.sha256, "dataset")
    else:  # the bundled sets: keep the record (and sweep point keys) as before data files existed
        for key in ("file", "sha256", "scaling"):
            out["dataset"].pop(key, None)
    if cfg.model is not None:
        out["model"] = {"file": cfg.model.file,
                        "sha256": _recorded_hash(cfg.model.file, cfg.model.sha256, "model")}
        out.pop("network", None)  # the model file is the network
        out["training"] = cfg.training.with_method().to_dict()  # epochs None: deployed as it is
    else:
        out.pop("model", None)
    if cfg.model is not None:
        comps.network = None
    else:
        out["network"] = {"name": comps.network.name, "params": comps.network.get_config()}
    out["device"] = {"name": comps.device.name, "params": comps.device.get_config()}
    if comps.injector is not None:
        out["noise"] = {"name": comps.injector.name, "params": comps.injector.get_config()}
    if comps.energy is not None:
        out["energy"] = {"name": comps.energy.name, "params": comps.energy.get_config()}
    if cfg.model is None:
        out["training"] = cfg.training.resolved(comps.network).to_dict()
    return out


def _recorded_hash(path: str, recorded: str | None, what: str) -> str:
    from nvmkit.core.errors import DataError
    from nvmkit.workflow.data import file_sha256

    digest = file_sha256(path)
    if recorded is not None and recorded != digest:
        raise DataError(f"{path} has changed since it was recorded (sha256 {digest[:12]}..., recorded "
                        f"{recorded[:12]}...); restore that file or drop {what}.sha256")
    return digest


def run(config: RunConfig | dict, reporter=None, reg: Registry | None = None) -> RunResult:
    """Run one experiment point and return its result (also written to ``config.output``)."""
    from nvmkit.core.version import __version__
    from nvmkit.core._quiet import import_keras

    import_keras()
    from nvmkit.engine.convert import analog_footprint, analog_weight_count, check_trials_fit, convert
    from nvmkit.engine.crossbar_config import CrossbarConfig
    from nvmkit.workflow.data import load_data_file, load_dataset
    from nvmkit.engine.evaluate import digital_accuracy, monte_carlo
    from nvmkit.workflow.training import fine_tune, train, trained_chip
    from nvmkit.workflow.user_model import ModelInput, load_model_file

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    if cfg.output:  # a bad path must fail now, not after training and Monte Carlo
        check_output_path(cfg.output)
    reporter = reporter or NullReporter()
    started = time.perf_counter()
    comps = Components(cfg, reg)
    resolved = resolve(cfg, reg)

    with reporter.step("loading data"):
        if cfg.dataset.file is not None:
            ds = load_data_file(cfg.dataset.file, scaling=cfg.dataset.scaling,
                                sha256=resolved["dataset"]["sha256"])
        else:
            ds = load_dataset(cfg.dataset.name, cfg.dataset.data_dir, source=cfg.dataset.source)
            # "auto" names no data: rerun elsewhere (full data in NVMKIT_DATA_DIR or Keras's cache,
            # or none) it would pick other images. The record says which kind this run used.
            resolved["dataset"]["source"] = "sample" if ds.is_sample else "full"
    if cfg.dataset.test_size is not None:
        ds = test_subset(ds, cfg.dataset.test_size, cfg.seed)
    user_model = None
    if cfg.model is not None:  # checked before any work: the file, the data's shape, the labels
        with reporter.step("loading model"):
            user_model = load_model_file(cfg.model.file, resolved["model"]["sha256"])
        feed = ModelInput.of(user_model, ds.input_shape, where=f"model {cfg.model.file}")
        feed.check_labels(ds.y_train, ds.y_test, where=f"data set {ds.source}")
    if ds.scaling == "none" and comps.injector is not None and \
            any(s in ("external", "both") for s in cfg.scenarios):
        raise ConfigError("test-set noise works on inputs in [0, 1], but dataset.scaling is none; "
                          "scale the data to [0, 1] (scaling auto) or set noise = none")
    epochs_trained = 0

    def count_epoch(epoch, logs):
        nonlocal epochs_trained
        epochs_trained += 1

    if user_model is not None and any(s != "digital" for s in cfg.scenarios):
        # trials x the weights must fit in memory: say so before fine-tuning (a bundled network
        # is checked by convert, after its training: a model built here only to count would
        # shift the Keras layer names the result records)
        check_trials_fit(analog_weight_count(user_model), cfg.trials, "run")

    train_started = time.perf_counter()
    # training.seed, when given, seeds the training (what the recorded configuration says); the
    # run's seed does otherwise. train() lets its seed argument win over the config's.
    train_seed = cfg.seed if cfg.training.seed is None else cfg.training.seed
    if user_model is None:
        model = train(comps.network, ds, cfg.training, seed=train_seed, reporter=reporter,
                      progress=count_epoch, device=comps.device, crossbar=cfg.crossbar)
        mapper = comps.network
        x_test = ds.x_test
    else:
        model = user_model
        if cfg.training.epochs is not None or cfg.training.method in ("device", "in-place"):
            # training asked for: continue from the user's weights
            fine_tune(model, feed.prepare(ds.x_train), ds.y_train, cfg.training, seed=train_seed,
                      reporter=reporter, progress=count_epoch, device=comps.device,
                      crossbar=cfg.crossbar)
        mapper = feed
        x_test = feed.noise_view(ds.x_test)  # the injectors' (N, H, W); feed.prepare undoes it
    train_s = time.perf_counter() - train_started
    # in-place training: the device scenarios read the trained chip itself on every trial
    chip = None
    if cfg.training.method == "in-place":
        chip = trained_chip(model)
        if chip is None:
            raise NvmkitError("in-place training left no trained chip; report it as a bug")
    evaluate_started = time.perf_counter()
    test_images = 0

    y_test = ds.y_test
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
                if internal and chip is not None:
                    chip.program(networks[key])
            on_chip = internal and chip is not None
            res = monte_carlo(networks[key], x_test, y_test, trials=cfg.trials, seed=cfg.seed,
                              injector=comps.injector if external else None,
                              prepare=mapper.prepare, batch_size=cfg.batch_size,
                              keep_programming=on_chip)
            accuracy[scenario] = res.to_dict()
            if on_chip:
                accuracy[scenario]["evaluated"] = trained_chip_record(external)
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
        dataset=_dataset_record(ds),
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


def trained_chip_record(external: bool) -> dict:
    """What a device scenario after in-place training evaluated (its ``evaluated`` entry)."""
    redraw = ["read noise", "test-set noise"] if external else ["read noise"]
    return {"programmed_state": "trained chip",
            "what": "the conductances in-place training left (its programming error, stuck cells and "
                    "pulse updates), the same chip on every trial; the converters calibrated as deployed",
            "trials_redraw": redraw}


#: the stream of the test subset among the run's seeded streams (a constant, so that it is the
#: same subset for every point of one seed and independent of the trials' streams)
TEST_SUBSET_STREAM = 0x7E57


def test_subset(ds, size: int, seed: int):
    """``ds`` with ``size`` of its test images, drawn without replacement from ``seed`` and kept
    in their order (``dataset.test_size``)."""
    import dataclasses

    import numpy as np

    n = len(ds.x_test)
    if size > n:
        raise ConfigError(f"dataset.test_size = {size} but the test set has {n} images; give at most {n}")
    if size == n:
        return ds
    rng = np.random.default_rng(np.random.SeedSequence([seed, TEST_SUBSET_STREAM]))
    idx = np.sort(rng.choice(n, size, replace=False))
    return dataclasses.replace(ds, x_test=ds.x_test[idx], y_test=ds.y_test[idx])


def _dataset_record(ds) -> dict:
    out = {"name": ds.name, "sample": ds.is_sample, "source": ds.source,
           "n_train": int(len(ds.x_train)), "n_test": int(len(ds.x_test))}
    if ds.sha256 is not None:  # a user's file: named by content
        out.update(sha256=ds.sha256, scaling=ds.scaling, sample_shape=list(ds.input_shape),
                   classes=ds.num_classes)
    return out


def _versions(nvmkit_version: str) -> dict[str, str]:
    import keras
    import numpy
    import tensorflow

    return {"nvmkit": nvmkit_version, "numpy": numpy.__version__, "keras": keras.__version__,
            "tensorflow": tensorflow.__version__}
