"""Seeded Keras training with noise-injection regularisation, cached on disk.

Noise injection follows the seed study (Bennett et al., Sandia 2021): Gaussian noise of std
``sigma_neu`` is added to every pre-activation in training only, given directly (the seed's levels
0.1, 0.2, ...) or derived per layer from a target synaptic noise ``sigma_syn`` (fraction of the weight
range) with the seed's equivalence

    sigma_neu = sigma_syn * (Wmax - Wmin) * sqrt(n) * gamma_act,

the std of ``sum_i x_i e_i`` when each of the n weights of a column carries independent noise
``e_i`` of std ``sigma_syn (Wmax - Wmin)`` and the inputs have RMS ``gamma_act``. The weights and
activations it needs are those of a first plain training pass (same mapper, data, seed and training
settings, sigma_neu = 0; cached, so the plain network of a sweep costs nothing extra): the untrained
initialisation would understate both the weight range and the activations by a large factor.

Every trained model is written as a ``.keras`` file under a key that hashes all that affects
training (mapper name and parameters, resolved training settings, seed, data set name, whether it
is the embedded sample, a fingerprint of the training arrays, nvmkit and Keras versions), so a sweep
never trains the same model twice. Files are loaded with ``safe_mode=True`` and written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from nvmkit.core import layers as _layers  # noqa: F401  (registers PreActivationNoiseRNNCell for loading)
from nvmkit.core.atomic import atomic_write
from nvmkit.core.component import check_seed
from nvmkit.core.errors import ConfigError, NvmkitWarning
from nvmkit.core.network import NetworkMapper
from nvmkit.engine.evaluate import keras_outputs
from nvmkit.engine.in_place import _ends_in_softmax
from nvmkit.workflow.config import TrainingConfig, training_identity

CACHE_ENV = "NVMKIT_CACHE_DIR"
#: The oldest Keras whose safe mode has no published bypass: a crafted .keras file ran code despite
#: safe_mode=True before 3.9 (CVE-2025-1550) and before 3.11.0 (CVE-2025-8747, CVE-2025-9906); 3.11.3
#: stopped loading legacy HDF5 files with safe mode silently ignored (CVE-2025-9905). The model
#: cache is a folder anyone with write access can drop a file into, so loading it needs this.
SAFE_KERAS = (3, 11, 3)
#: training images used to measure gamma_act (a random subset; the RMS settles long before 60k)
GAMMA_SAMPLES = 2000


# -- the public entry point ------------------------------------------------------------------------

def train(mapper: NetworkMapper, data, config=None, *, seed: int | None = None,
          cache_dir: str | os.PathLike | None = None, use_cache: bool | None = None,
          progress: Callable[[int, dict], Any] | None = None, reporter=None,
          dataset_name: str | None = None, device=None, crossbar=None) -> keras.Model:
    """Train ``mapper``'s network on ``data`` (or load it from the cache) and return the Keras model.

    ``data``: an :class:`nvmkit.workflow.data.Dataset` (``x_train``, ``y_train``, ``name``, ``is_sample``) or a
    tuple ``(x_train, y_train)`` of images (N, H, W) in [0, 1] and integer labels. ``config``: a
    :class:`TrainingConfig`, a dict or the run configuration's training table. ``seed`` wins over
    ``config.seed``. ``use_cache=False`` retrains even if a cached model exists (and refreshes the
    cache); None takes ``config.use_cache`` when the config has one, else True. ``cache_dir``
    defaults to ``$NVMKIT_CACHE_DIR`` or ``~/.cache/nvmkit/models``. ``progress(epoch, logs)`` is
    called after each epoch; ``reporter`` is a :mod:`nvmkit.workflow.report` reporter.

    ``training.preactivation_start = "plain"`` fine-tunes the plain model (trained or loaded
    first) with the pre-activation noise for ``preactivation_epochs``, with the training's optimizer
    and schedule over those epochs, as device-aware fine-tuning does.

    ``training.method = "device"`` trains through ``device`` and ``crossbar`` (the deployment's,
    a :class:`nvmkit.Device` and a :class:`nvmkit.CrossbarConfig`; :func:`fit_on_device`): by
    default it fine-tunes the plain model (trained, or loaded from the cache, first) for
    ``device_epochs``; the device and crossbar settings join the cache key.

    ``training.method = "in-place"`` trains on one chip by the device's pulses
    (:func:`fit_in_place`): the model returned holds the weights read from the trained
    conductances, and :func:`trained_chip` the chip itself (its conductances, what ``nvmkit run``
    evaluates); the cache keeps both (the chip as ``NAME.chip.npz`` beside ``NAME.keras``; a cached
    model without its chip is trained again).
    """
    if use_cache is None:
        use_cache = bool(getattr(config, "use_cache", True)) if not isinstance(config, dict) \
            else bool(config.get("use_cache", True))
    cfg = TrainingConfig.coerce(config)
    seed = check_seed("train", "seed", seed if seed is not None else (cfg.seed or 0))
    cfg = cfg.resolved(mapper).replace(seed=seed)
    x_train, y_train, name, is_sample = _unpack(data, dataset_name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    # sigma_syn_target stays in the key: the derived stds follow from the plain model, itself keyed
    key_data = cache_key_data(mapper, cfg, name, is_sample, x_train, y_train)
    if cfg.method in ("device", "in-place"):
        device, crossbar = _deployment(device, crossbar)
        key_data.update(deployment_key_data(device, crossbar))
    path = cache / f"{mapper.name}-{name}-{cache_key(key_data)}.keras"
    if path.exists() and not path.is_file():  # checked before training: the save would fail after it
        raise ConfigError(f"the model cache path {path} is a folder, not a model file; remove it or set "
                          f"{CACHE_ENV} to another folder")
    if use_cache and path.is_file():
        model = _load(path, reporter)
        if model is not None and cfg.method == "in-place":  # the trained chip comes with it
            chip = _load_chip(chip_path(path))
            if chip is None:
                model = None
            else:
                _attach_chip(model, chip)
        if model is not None:
            return model

    if cfg.method in ("in-place", "device"):
        # from the plain model (cached like any other) or the initialisation, then through the
        # deployment: by its pulses (the trained chip saved beside the model), or with its
        # programming drawn afresh per mini-batch
        in_place = cfg.method == "in-place"
        if (cfg.in_place_start if in_place else cfg.device_start) == "plain":
            model = train(mapper, data, cfg.plain_start(), seed=seed, cache_dir=cache,
                          use_cache=use_cache, progress=progress, reporter=reporter,
                          dataset_name=dataset_name)
        else:
            keras.utils.set_random_seed(cfg.seed)
            model = mapper.build(tuple(x_train.shape[1:]), _num_classes(y_train), 0.0, cfg.seed)
        fit = fit_in_place if in_place else fit_on_device
        info = fit(model, mapper.prepare(x_train), y_train, cfg, device=device, crossbar=crossbar,
                   seed=seed, progress=progress, reporter=reporter, label=mapper.name)
        _save_atomic(model, path, {"key": key_data, **info},
                     chip=trained_chip(model) if in_place else None)
        return model

    fit_cfg = cfg
    finetune = cfg.method == "preactivation" and cfg.preactivation_start == "plain"
    plain = None
    if cfg.sigma_syn_target is not None or finetune:
        plain = train(mapper, data, cfg.plain_start(), seed=seed,
                      cache_dir=cache, use_cache=use_cache, progress=progress, reporter=reporter,
                      dataset_name=dataset_name)
    if cfg.sigma_syn_target is not None:
        stats = noise_site_stats(plain, _gamma_subset(mapper, x_train, seed))
        if len(stats) != mapper.noise_sites():
            raise ConfigError(f"network '{mapper.name}' reports {mapper.noise_sites()} noise sites but its "
                              f"model has {len(stats)} ReLU layers; fix the mapper's noise_sites()")
        fit_cfg = cfg.replace(sigma_syn_target=None,
                              sigma_neu=[s.sigma_neu(cfg.sigma_syn_target) for s in stats])

    if finetune:  # the plain model's weights, then preactivation_epochs with the noise
        fit_cfg = fit_cfg.replace(epochs=cfg.preactivation_epochs)
        x_fit, y_fit = fine_tune_subset(x_train, y_train, cfg.fine_tune_size, seed)
        model, info = _fit(mapper, fit_cfg, x_fit, y_fit, progress, reporter, start=plain,
                           num_classes=_num_classes(y_train))  # a small subset may miss a class
    else:
        model, info = _fit(mapper, fit_cfg, x_train, y_train, progress, reporter)
    _save_atomic(model, path, {"key": key_data, "sigma_neu": fit_cfg.sigma_neu, **info})
    return model


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path("~/.cache/nvmkit/models").expanduser()


def cache_key_data(mapper: NetworkMapper, cfg: TrainingConfig, dataset: str, is_sample: bool,
                   x_train: np.ndarray, y_train: np.ndarray) -> dict:
    """Everything that decides a trained model's weights, as plain data (hashed into the cache key)."""
    from nvmkit.core.version import __version__

    return {
        "network": {"name": mapper.name, "class": f"{type(mapper).__module__}.{type(mapper).__qualname__}",
                    "params": mapper.get_config()},
        # use_cache says whether to read the cache, not how to train: --no-cache must refresh the
        # model under the same key (pinned to True so that existing cache files keep their keys)
        "training": {**training_identity(cfg.to_dict()), "use_cache": True},
        "dataset": {"name": dataset, "sample": bool(is_sample), "fingerprint": fingerprint(x_train, y_train)},
        "versions": {"nvmkit": __version__, "keras": keras.__version__},
    }


def deployment_key_data(device, crossbar) -> dict:
    """The device and crossbar settings that shape a device-aware model (joined to its cache key)."""
    return {"device": {"name": device.name, "class": f"{type(device).__module__}.{type(device).__qualname__}",
                       "params": device.get_config()},
            "crossbar": crossbar.to_dict()}


def _deployment(device, crossbar):
    from nvmkit.core.device import Device
    from nvmkit.engine.crossbar_config import CrossbarConfig

    if not isinstance(device, Device):
        raise ConfigError("training.method = device (or in-place) trains through the deployment's "
                          "device; pass "
                          "device= (a nvmkit Device, e.g. get_registry().create('device', 'reram'))")
    if crossbar is None:
        crossbar = CrossbarConfig()
    if not isinstance(crossbar, CrossbarConfig):
        raise ConfigError("training.method = device: crossbar must be a CrossbarConfig, e.g. "
                          "CrossbarConfig.preset('default')")
    return device, crossbar


def cache_key(key_data: dict) -> str:
    return hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:20]


def fingerprint(*arrays: np.ndarray) -> str:
    """A content hash of arrays (dtype, shape and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# -- sigma_syn -> sigma_neu ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NoiseSite:
    """One ReLU layer's crossbar as the equivalence sees it."""

    layer: str
    weight_range: float  # Wmax - Wmin = 2 max|W| (kernel and bias), the default differential mapping
    fan_in: int  # n: weights summed into one pre-activation (kernel rows; for the RNN in + H)
    gamma_act: float  # RMS of the layer's input on training data

    def sigma_neu(self, sigma_syn: float) -> float:
        return float(sigma_syn * self.weight_range * np.sqrt(self.fan_in) * self.gamma_act)


def noise_site_stats(model: keras.Model, x: np.ndarray) -> list[NoiseSite]:
    """Weight range, fan-in and input RMS of every ReLU layer (Dense/Conv2D before a ReLU, ReLU RNN)."""
    seq = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    sites = [layer for i, layer in enumerate(seq) if _is_site(seq, i)]
    if not sites:
        return []
    # a single input as a tensor, not a one-item list: the probe is called with a bare array
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, [layer.input for layer in sites])
    inputs = keras_outputs(probe, x, batch_size=500)  # not probe.predict: see keras_outputs
    if not isinstance(inputs, list):
        inputs = [inputs]
    out = []
    for layer, xin in zip(sites, inputs):
        xin = np.asarray(xin, dtype=np.float64)
        if isinstance(layer, keras.layers.RNN):
            k, r, b = (np.asarray(v) for v in (layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias))
            w = np.vstack([k, r, b[None, :]])
            fan_in = k.shape[0] + r.shape[0]
            gamma = _rnn_input_rms(xin, k, r, b)
        else:
            kernel = np.asarray(layer.kernel)
            bias = np.asarray(layer.bias) if getattr(layer, "use_bias", False) else np.zeros(1)
            w = np.concatenate([kernel.ravel(), bias.ravel()])
            fan_in = int(np.prod(kernel.shape[:-1]))
            gamma = float(np.sqrt(np.mean(xin ** 2)))
        out.append(NoiseSite(layer.name, float(2 * np.abs(w).max()), fan_in, gamma))
    return out


def _is_site(seq: list, i: int) -> bool:
    layer = seq[i]
    if isinstance(layer, keras.layers.RNN):
        return True
    if not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
        return False
    if _is_relu(getattr(layer, "activation", None)):
        return True
    for nxt in seq[i + 1:]:
        if isinstance(nxt, (keras.layers.GaussianNoise, keras.layers.Dropout)):
            continue
        if isinstance(nxt, keras.layers.ReLU):
            return True
        return isinstance(nxt, keras.layers.Activation) and _is_relu(nxt.activation)
    return False


def _is_relu(fn) -> bool:
    return fn is not None and getattr(fn, "__name__", "") == "relu"


def _rnn_input_rms(x: np.ndarray, k: np.ndarray, r: np.ndarray, b: np.ndarray) -> float:
    """RMS over all T reads of the stacked input [x_t, h_{t-1}] of a ReLU RNN (h_0 = 0)."""
    h = np.zeros((x.shape[0], r.shape[0]))
    total = 0.0
    for t in range(x.shape[1]):  # the recurrence is sequential in time; samples stay vectorised
        total += np.sum(x[:, t] ** 2) + np.sum(h ** 2)
        h = np.maximum(x[:, t] @ k + h @ r + b, 0.0)
    return float(np.sqrt(total / (x.shape[0] * x.shape[1] * (k.shape[0] + r.shape[0]))))


def _gamma_subset(mapper: NetworkMapper, x_train: np.ndarray, seed: int) -> np.ndarray:
    n = min(GAMMA_SAMPLES, len(x_train))
    idx = np.sort(np.random.default_rng(seed).choice(len(x_train), n, replace=False))
    return mapper.prepare(x_train[idx])


# -- fitting, loading, saving ----------------------------------------------------------------------

def _fit(mapper, cfg: TrainingConfig, x_train, y_train, progress, reporter, start: keras.Model | None = None,
         num_classes: int | None = None):
    keras.utils.set_random_seed(cfg.seed)
    model = mapper.build(tuple(x_train.shape[1:]), num_classes or _num_classes(y_train), cfg.sigma_neu, cfg.seed)
    if start is not None:  # fine-tuning: the noise layers carry no weights, the rest are the start's
        theirs, ours = start.get_weights(), model.get_weights()
        if [w.shape for w in theirs] != [w.shape for w in ours]:
            raise ConfigError(f"network '{mapper.name}' builds different weights with pre-activation noise "
                              "than without; train it from scratch (training.preactivation_start = scratch)")
        model.set_weights(theirs)
    optimizer = _optimizer(cfg, cfg.learning_rate, cfg.epochs, len(x_train))
    # no XLA: compiling costs seconds per model and saves nothing measurable for nets this small on CPU
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    advance = None
    if reporter is not None:
        advance = reporter.start_task(f"training {mapper.name} ({cfg.epochs} epochs)", cfg.epochs)


    started = time.perf_counter()
    history = model.fit(mapper.prepare(x_train), np.asarray(y_train), epochs=cfg.epochs,
                        batch_size=cfg.batch_size, validation_split=cfg.validation_split,
                        shuffle=True, verbose=0,
                        callbacks=[_epoch_callback(keras, progress, advance)])
    info = {"train_seconds": round(time.perf_counter() - started, 2),
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()}}
    return model, info


#: the stream of a fine-tuning's training subset among the seed's streams
FINE_TUNE_STREAM = 0xF1E7


def fine_tune_subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int):
    """``training.fine_tune_size`` images of the training set, drawn without replacement from
    ``seed`` and kept in their order (all of them when ``size`` is None or not smaller)."""
    if size is None or size >= len(x):
        return x, y
    rng = np.random.default_rng(np.random.SeedSequence([seed, FINE_TUNE_STREAM]))
    idx = np.sort(rng.choice(len(x), size, replace=False))
    return x[idx], y[idx]


def _num_classes(y_train) -> int:
    num_classes = int(y_train.max()) + 1 if len(y_train) else 0
    if num_classes < 2:
        raise ConfigError("training labels hold fewer than 2 classes; check the data set")
    return num_classes


def _optimizer(cfg: TrainingConfig, learning_rate: float, epochs: int, n_train: int):
    rate = learning_rate
    if cfg.schedule == "cosine":
        steps = epochs * math.ceil(n_train * (1 - cfg.validation_split) / cfg.batch_size)
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(steps, 1))
    return keras.optimizers.get({"class_name": cfg.optimizer, "config": {"learning_rate": rate}})


def fit_on_device(model: keras.Model, x: np.ndarray, y: np.ndarray, cfg: TrainingConfig, *, device,
                  crossbar=None, seed: int = 0, probabilities: bool | None = None,
                  progress: Callable[[int, dict], Any] | None = None, reporter=None,
                  label: str | None = None) -> dict:
    """Device-aware training of ``model`` in place (``training.method = "device"``).

    ``device_epochs`` epochs through the deployment's ``device`` and ``crossbar``
    (:class:`nvmkit.engine.device_aware.DeviceAwareTraining`): every mini-batch (every
    ``reprogram_every``) reads the converted model with a programming drawn afresh in the graph
    from ``seed``, read noise fresh per read, the converters in the loop (calibrated once, on the
    first 500 inputs, as a run deploys); the optimizer and batch size are the training's, the rate
    ``device_learning_rate`` (default ``learning_rate``), its schedule over the device epochs.
    ``x`` is the model's input; ``fine_tune_size`` trains on that many of its images (a seeded
    subset). Returns the training record (seconds, history).
    """
    from nvmkit.engine.device_aware import DeviceAwareTraining

    cfg = cfg.with_method()
    device, crossbar = _deployment(device, crossbar)
    filled = {**NetworkMapper.training_defaults, "schedule": "constant"}
    cfg = cfg.replace(**{k: (filled[k] if getattr(cfg, k) is None else getattr(cfg, k))
                         for k in ("optimizer", "learning_rate", "batch_size", "schedule")})
    seed = check_seed("fit_on_device", "seed", seed)
    x, y = fine_tune_subset(np.asarray(x, dtype=np.float32), np.asarray(y), cfg.fine_tune_size, seed)
    trainer = DeviceAwareTraining(model, device, crossbar, seed=seed,
                                  calibration_data=x[: min(500, len(x))],
                                  reprogram_every=cfg.reprogram_every)
    if probabilities is None:
        probabilities = _ends_in_softmax(model)
    epochs = cfg.device_epochs
    optimizer = _optimizer(cfg, cfg.device_learning_rate or cfg.learning_rate, epochs, len(x))
    trainer.compile(optimizer=optimizer, metrics=["accuracy"], jit_compile=False,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities))
    advance = None
    if reporter is not None:
        advance = reporter.start_task(f"training {label or model.name} on {device.name} "
                                      f"({epochs} epochs)", epochs)
    keras.utils.set_random_seed(seed)  # the shuffling, as plain training draws it
    started = time.perf_counter()
    history = trainer.fit(x, np.asarray(y), epochs=epochs, batch_size=cfg.batch_size,
                          validation_split=cfg.validation_split, shuffle=True, verbose=0,
                          callbacks=[_epoch_callback(keras, progress, advance)])
    trainer.copy_back()
    return {"device_train_seconds": round(time.perf_counter() - started, 2),
            "device_history": {k: [float(v) for v in vals] for k, vals in history.history.items()}}


def fit_in_place(model: keras.Model, x: np.ndarray, y: np.ndarray, cfg: TrainingConfig, *, device,
                 crossbar=None, seed: int = 0, probabilities: bool | None = None,
                 progress: Callable[[int, dict], Any] | None = None, reporter=None,
                 label: str | None = None) -> dict:
    """In-place (on-chip) training of ``model`` (``training.method = "in-place"``).

    The model is programmed on the deployment's ``device`` and ``crossbar`` (one chip, from
    ``seed``; converters calibrated on the first 500 inputs, as a run deploys) and trained by
    the device's pulses (:class:`nvmkit.engine.in_place.InPlaceTraining`) for
    ``in_place_steps`` mini-batches or ``in_place_epochs`` passes, at ``in_place_learning_rate``
    with the training's batch size; then the weights read from the conductances are written
    into ``model`` and the trained chip is attached to it (:func:`trained_chip`). ``x`` is the
    model's input. Returns the training record."""
    from nvmkit.engine.in_place import InPlaceTraining, require_update_model

    cfg = cfg.with_method()
    device, crossbar = _deployment(device, crossbar)
    require_update_model(device, "training.method in-place")
    batch_size = cfg.batch_size or NetworkMapper.training_defaults["batch_size"]
    seed = check_seed("fit_in_place", "seed", seed)
    x = np.asarray(x, dtype=np.float32)
    if probabilities is None:
        probabilities = _ends_in_softmax(model)
    trainer = InPlaceTraining(
        model, device, crossbar, seed=seed, learning_rate=cfg.in_place_learning_rate,
        pulses=cfg.pulses, slots=cfg.pulse_slots, headroom=cfg.headroom,
        calibration_data=x[: min(500, len(x))],
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities))
    passes = cfg.in_place_epochs or math.ceil(cfg.in_place_steps / max(1, math.ceil(len(x) / batch_size)))
    advance = None
    if reporter is not None:
        what = (f"{cfg.in_place_steps} steps" if cfg.in_place_steps is not None
                else f"{cfg.in_place_epochs} epochs")
        advance = reporter.start_task(f"training {label or model.name} in place on {device.name} "
                                      f"({what})", passes)

    def on_pass(epoch, logs):
        if progress is not None:
            progress(epoch, logs)
        if advance is not None:
            advance(1, **logs)

    started = time.perf_counter()
    history = trainer.fit(x, np.asarray(y), epochs=cfg.in_place_epochs, steps=cfg.in_place_steps,
                          batch_size=batch_size, callback=on_pass)
    trainer.copy_back()
    _attach_chip(model, trainer.trained_chip())
    return {"in_place_train_seconds": round(time.perf_counter() - started, 2),
            "in_place_history": history}


def check_keras_version(version: str | None = None) -> None:
    """Refuse to load model files with a Keras whose safe mode has a published bypass."""
    version = keras.__version__ if version is None else version
    parts = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    found = tuple(int(p or 0) for p in parts.groups()) if parts else (0, 0, 0)
    if found < SAFE_KERAS:
        need = ".".join(map(str, SAFE_KERAS))
        raise ConfigError(f"Keras {version} can run code from a model file despite safe mode; nvmkit "
                          f"loads cached models only with Keras >= {need}: pip install 'keras>={need}'")


def _load(path: Path, reporter) -> keras.Model | None:
    check_keras_version()
    step = reporter.step(f"loading cached model {path.name}") if reporter is not None \
        else contextlib.nullcontext()
    with step:
        try:
            foreign = not_a_keras_zip(path)
            if foreign is None:
                return keras.saving.load_model(path, safe_mode=True)
            why = f"unreadable: {foreign}"
        except Exception as exc:  # a truncated, foreign or unsafe file: retrain and overwrite it
            if _refused_as_unsafe(exc):
                why = "refused by Keras's safe mode as unsafe (it would run code when loaded); not loaded"
            else:
                first = (str(exc).strip().splitlines() or [""])[0][:150]
                why = f"unreadable ({type(exc).__name__}{': ' + first if first else ''})"
        warnings.warn(f"cached model {path} is {why}; retraining and replacing it", NvmkitWarning,
                      stacklevel=3)
        return None


#: the first bytes of a zip archive (a .keras file is one) and of an HDF5 file (Keras 2's .h5)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
HDF5_MODEL = "an HDF5 file (Keras 2's .h5 format), not a .keras (zip) file"


def not_a_keras_zip(path) -> str | None:
    """None when the file at ``path`` starts as a zip archive, as a ``.keras`` file does; else
    what it is, in words. Keras answers any other file with a misleading "File not found"
    (an HDF5 model saved under a .keras name among them). OSError when it cannot be read."""
    with open(path, "rb") as fh:
        head = fh.read(len(_HDF5_MAGIC))
    if head.startswith(_ZIP_MAGIC):
        return None
    if head.startswith(_HDF5_MAGIC):
        return HDF5_MODEL
    if not head:
        return "an empty file, not a .keras (zip) file"
    return "not a .keras (zip) file"


def _refused_as_unsafe(exc: Exception) -> bool:
    # Keras has no exception type of its own for this: every safe-mode refusal (a Lambda layer's
    # Python code, a TFSMLayer, an object from an arbitrary module) is a ValueError whose message
    # tells the user how to override it with `safe_mode=False`
    return isinstance(exc, ValueError) and "safe_mode=False" in str(exc)


#: the attribute of a model trained in place that holds its trained chip
_CHIP_ATTR = "_nvmkit_trained_chip"


def trained_chip(model):
    """The chip ``model`` was trained on in place (an :class:`nvmkit.engine.in_place.TrainedChip`:
    its conductances as training left them), or None for a model not trained in place."""
    return getattr(model, _CHIP_ATTR, None)


def _attach_chip(model, chip) -> None:
    object.__setattr__(model, _CHIP_ATTR, chip)  # not a Keras-tracked attribute


def chip_path(path: Path) -> Path:
    """Where the model cache keeps the trained chip of the model cached at ``path``."""
    return path.with_suffix(".chip.npz")


def _load_chip(path: Path):
    """The trained chip cached at ``path``, or None (with a warning: the model is trained again)
    when it is missing or unreadable."""
    from nvmkit.engine.in_place import TrainedChip

    try:
        return TrainedChip.from_bytes(path.read_bytes())
    except FileNotFoundError:
        why = "has no trained chip beside it (cached by an older nvmkit)"
    except Exception as exc:  # a truncated or foreign file: retrain and overwrite it
        why = f"has an unreadable trained chip {path.name} ({type(exc).__name__})"
    warnings.warn(f"cached in-place model {path.with_suffix('').with_suffix('.keras')} {why}; "
                  "retraining and replacing it", NvmkitWarning, stacklevel=3)
    return None


def _save_atomic(model: keras.Model, path: Path, info: dict, chip=None) -> None:
    # atomic_write gives the normal file mode (0o666 less the umask): a cache may be shared by a
    # group; its temp name keeps the .keras suffix Keras insists on. A cache that cannot be written
    # costs a retraining next time, not this run.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if chip is not None:  # first: a lookup finds the model file, written after its chip
            atomic_write(chip_path(path), chip.to_bytes())
        atomic_write(path, lambda tmp: model.save(tmp))
        atomic_write(path.with_suffix(".json"), json.dumps(info, indent=2))
    except OSError as exc:
        warnings.warn(f"cannot write the model cache in {path.parent} ({exc.strerror or exc}); "
                      f"set {CACHE_ENV} to a writable folder", NvmkitWarning, stacklevel=3)


def _unpack(data, dataset_name: str | None):
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        name, is_sample = dataset_name or "custom", False
    elif hasattr(data, "x_train") and hasattr(data, "y_train"):
        x, y = data.x_train, data.y_train
        name, is_sample = dataset_name or getattr(data, "name", "custom"), bool(getattr(data, "is_sample", False))
    else:
        raise ConfigError("train() needs a Dataset (nvmkit.workflow.data.load_dataset) or a tuple (x_train, y_train)")
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise ConfigError(f"training data has {len(x)} images and {len(y)} labels; give one label per image")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ConfigError("training labels must be non-negative integers (class indices)")
    return x, y, str(name), is_sample


# -- a user's own model ----------------------------------------------------------------------------

def fine_tune(model: keras.Model, x: np.ndarray, y: np.ndarray, config=None, *, seed: int = 0,
              progress: Callable[[int, dict], Any] | None = None, reporter=None,
              device=None, crossbar=None) -> dict:
    """Train a user's model further in place (``nvmkit run --model F --epochs N``), seeded.

    ``x`` is already the model's input. Unset training settings take
    :attr:`NetworkMapper.training_defaults` (Adam, 1e-3, batch 128; ``epochs`` must be given,
    except for device-aware training). The loss is sparse categorical cross-entropy, on
    probabilities when the model ends in a softmax, else on logits. No cache: the user's file is
    the model, and it is never overwritten. ``training.method = "device"``: ``epochs`` plain
    epochs (if given), then ``device_epochs`` through ``device`` and ``crossbar``
    (:func:`fit_on_device`); ``device_start = "scratch"`` is refused (the file is the start).
    """
    cfg = TrainingConfig.coerce(config).with_method()
    if cfg.method in ("in-place", "device"):
        # both start from the file's own weights (plain epochs first, if given), then train
        # through the deployment: by its pulses, or with its programming drawn per mini-batch
        in_place = cfg.method == "in-place"
        start, start_key = ((cfg.in_place_start, "start") if in_place
                            else (cfg.device_start, "device_start"))
        if start == "scratch":
            raise ConfigError(f"training.{'in_place_start' if in_place else 'device_start'} = scratch "
                              "needs a network plugin to build; a model file is trained from its own "
                              f"weights (set {start_key} = plain)")
        history = {}
        if cfg.epochs is not None:
            history = fine_tune(model, x, y, cfg.plain_start(), seed=seed, progress=progress,
                                reporter=reporter)
        fit, prefix = (fit_in_place, "in_place") if in_place else (fit_on_device, "device")
        info = fit(model, x, y, cfg, device=device, crossbar=crossbar,
                   seed=seed if seed is not None else (cfg.seed or 0), progress=progress,
                   reporter=reporter)
        return {**history, **{f"{prefix}_{k}": v for k, v in info[f"{prefix}_history"].items()}}
    if cfg.epochs is None:
        raise ConfigError("fine_tune: give training.epochs (the model file is deployed as it is otherwise)")
    filled = {**NetworkMapper.training_defaults, "schedule": "constant"}
    cfg = cfg.replace(**{k: (filled[k] if getattr(cfg, k) is None else getattr(cfg, k))
                         for k in ("optimizer", "learning_rate", "batch_size", "schedule")})
    if cfg.sigma_neu or cfg.sigma_syn_target:
        raise ConfigError("training.sigma_neu / sigma_syn_target add noise layers to a bundled network; "
                          "a model file trains as it is built (remove them)")
    seed = check_seed("fine_tune", "seed", seed if seed is not None else (cfg.seed or 0))
    keras.utils.set_random_seed(seed)
    probabilities = _ends_in_softmax(model)
    optimizer = _optimizer(cfg, cfg.learning_rate, cfg.epochs, len(x))
    model.compile(optimizer=optimizer, metrics=["accuracy"], jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities))
    advance = reporter.start_task(f"training {model.name} ({cfg.epochs} epochs)", cfg.epochs) \
        if reporter is not None else None


    history = model.fit(np.asarray(x, dtype=np.float32), np.asarray(y), epochs=cfg.epochs,
                        batch_size=cfg.batch_size, validation_split=cfg.validation_split, shuffle=True,
                        verbose=0, callbacks=[_epoch_callback(keras, progress, advance)])
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _epoch_callback(keras, progress, advance):
    """A Keras callback that reports each finished epoch's logs to ``progress`` and the reporter."""

    def on_epoch_end(epoch, logs):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if progress is not None:
            progress(epoch, logs)
        if advance is not None:
            advance(1, **logs)

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)
