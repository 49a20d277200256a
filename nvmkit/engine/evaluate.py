"""Monte Carlo test accuracy of a converted model under device noise and test-set noise.

One trial = one programming of every crossbar (fresh programming error) and one fresh draw of
test-set noise over the whole test set; read noise is fresh on every crossbar read. All K trials
run together (a model converted with ``trials=K`` reads a batch of ``B * K`` rows, sample-major),
the test set goes through in batches.

Random streams, all derived from ``seed`` with :class:`numpy.random.SeedSequence`:
``spawn_key=(0, k)`` programs trial k, ``(1, k)`` draws trial k's test-set noise, ``(2, layer)``
seeds each analog layer's read noise, ``(3, chip, crossbar, effect)`` draws what a chip keeps
(``crossbar.chip``: chip k for trial k, or chip 0 for all trials). Trial k's programming and test-set noise therefore do not
depend on how many trials run together; read noise (consumed in batch order) depends on the
trial count and the batch size, so results are reproducible for a given (seed, trials, batch
size).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nvmkit.core.errors import ConfigError
from nvmkit.core.noise import NoiseInjector

F32 = np.float32
MEMORY_BUDGET = 200 * 2**20  # bytes of the largest activation, all trials of one batch
CALIBRATION_SAMPLES = 512

_PROGRAM, _TEST_NOISE, _READ = 0, 1, 2


@dataclass
class AccuracyResult:
    """Test accuracy over Monte Carlo trials (fractions in [0, 1]).

    ``ci95`` is the 95% confidence interval of the mean accuracy from Student's t distribution
    with ``trials - 1`` degrees of freedom, clipped to [0, 1] (NaN for a single trial, where it is undefined);
    ``std`` is the sample standard deviation across trials (ddof=1; 0 for one trial).
    """

    mean: float
    std: float
    ci95: tuple[float, float]
    per_trial: list[float] = field(default_factory=list)
    trials: int = 0
    n_test: int = 0
    ci_method: str = "student-t"

    @classmethod
    def from_trials(cls, per_trial, n_test: int) -> "AccuracyResult":
        a = np.asarray(per_trial, dtype=np.float64)
        k = len(a)
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if k > 1 else 0.0
        if k > 1:
            from scipy.special import stdtrit  # Student t quantile; lighter than scipy.stats

            half = float(stdtrit(k - 1, 0.975)) * std / math.sqrt(k)
            # an accuracy lies in [0, 1]; with few trials the t interval reaches past it
            # (2 trials: t = 12.7), and a negative or >100% bound would only mislead
            ci = (max(0.0, mean - half), min(1.0, mean + half))
        else:
            ci = (float("nan"), float("nan"))
        return cls(mean, std, ci, [float(v) for v in a], k, int(n_test))

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "ci95": list(self.ci95),
                "per_trial": list(self.per_trial), "trials": self.trials, "n_test": self.n_test,
                "ci_method": self.ci_method}

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f}% +- {100 * self.std:.2f}% ({self.trials} trials)"


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    return y.argmax(axis=-1) if y.ndim == 2 else y.reshape(-1)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def auto_batch_size(model, trials: int, n_test: int, limit: int | None = None) -> int:
    """Largest test batch whose biggest activation, over all trials, stays within the budget."""
    fit = MEMORY_BUDGET // (4 * trials * _largest_activation(model))
    return int(max(1, min(fit, limit or n_test, n_test)))


def monte_carlo(model, x: np.ndarray, y: np.ndarray, *, trials: int, seed: int,
                injector: NoiseInjector | None = None,
                prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                batch_size: int | None = None, keep_programming: bool = False) -> AccuracyResult:
    """Accuracy of a converted model on ``(x, y)`` over ``trials`` Monte Carlo trials.

    ``model``: a Keras model converted with ``nvmkit.convert(..., trials=trials)``; it is
    reprogrammed from ``seed`` (trial k from ``(0, k)``) and each analog layer's read noise
    reseeded, so the result depends only on the arguments. ``keep_programming=True``: every
    trial reads the programmed state the model holds instead (e.g. the conductances of a chip
    trained in place, :meth:`nvmkit.engine.in_place.TrainedChip.program`); only the read-noise
    streams are reseeded from ``seed``, so trials differ by their read noise and test-set noise.

    ``x`` holds test images as the injector expects them (e.g. (N, 28, 28) in [0, 1]; uint8
    pixels are scaled by 1/255);
    ``prepare`` maps a noisy batch to model input (e.g. the RNN's T time steps). ``batch_size``
    is an upper bound: the batch shrinks so that trials x batch x the largest activation stays
    under ~200 MB. If the converters are not calibrated yet, they are calibrated on the first
    clean test images (pass ``calibration_data`` to ``convert`` to avoid that).
    """
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ConfigError(f"monte_carlo: trials must be an integer >= 1, got {trials!r}")
    trials = int(trials)
    import keras

    if not isinstance(model, keras.Model):
        raise ConfigError(f"monte_carlo: expected a Keras model converted with nvmkit.convert, got "
                          f"{type(model).__name__}")
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):  # 8-bit pixels: the injectors work on [0, 1]
        x = np.divide(x, F32(255), dtype=F32)
    labels = _labels(y)
    n = len(x)
    if n == 0 or len(labels) != n:
        raise ConfigError(f"monte_carlo: {n} inputs but {len(labels)} labels; pass matching, "
                          "non-empty arrays")
    if injector is not None and x.ndim != 3:  # the injector contract (nvmkit.NoiseInjector.apply)
        raise ConfigError(f"monte_carlo: test-set noise works on images shaped (N, H, W), got {x.shape}; "
                          "pass the images and let prepare reshape them for the network")
    prep = prepare or (lambda a: a)

    def network_input(batch):  # (K', b, *image) -> (K', b, *network input)
        k, b = batch.shape[:2]
        p = np.asarray(prep(batch.reshape(k * b, *batch.shape[2:])), dtype=F32)
        return p.reshape(k, b, *p.shape[1:])

    return _monte_carlo_converted(model, x, labels, trials, seed, injector, network_input,
                                  batch_size, keep_programming)


def _noisy(injector: NoiseInjector, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.asarray(injector.apply(x, rng), dtype=F32)
    if out.shape != x.shape:
        raise ConfigError(f"noise '{injector.name}' returned shape {out.shape} for images {x.shape}; an "
                          "injector must keep the shape (run `nvmkit plugins check` on it)")
    return out


def _monte_carlo_converted(model, x, labels, trials, seed, injector, network_input,
                           batch_size, keep_programming=False) -> AccuracyResult:
    """All K trials in one batch of B*K rows (sample-major); streams: see the module docstring."""
    import keras

    from nvmkit.engine.convert import (analog_layers, calibrate_converters, needs_calibration,
                                       reprogram, reseed_reads)

    layers = analog_layers(model)
    k = layers[0].trials if layers else 1
    if k != trials:
        raise ConfigError(f"monte_carlo: the model was converted with trials={k}, asked for "
                          f"{trials}; convert it with trials={trials}")
    _check_model_input(model, network_input(x[None, :1].astype(F32))[0])
    if needs_calibration(model):
        calibrate_converters(model, network_input(x[None, :CALIBRATION_SAMPLES].astype(F32))[0])
    if keep_programming:
        reseed_reads(model, seed)
    else:
        reprogram(model, seed)
    noise_rngs = [_rng(seed, _TEST_NOISE, t) for t in range(trials)] if injector else None
    bs = auto_batch_size(model, trials, len(x), batch_size)
    forward = _compiled_forward(model)
    n = len(x)
    correct = np.zeros(trials, dtype=np.int64)
    with _no_retracing_warning():
        for s in range(0, n, bs):
            correct += _correct_in_batch(forward, x[s:s + bs], labels[s:s + bs], trials, injector,
                                         noise_rngs, network_input)
    return AccuracyResult.from_trials(correct / n, n)


def _correct_in_batch(forward, xb, labels, trials, injector, noise_rngs, network_input) -> np.ndarray:
    """Correct decisions per trial on one batch of test images."""
    import keras

    xb = np.asarray(xb, dtype=F32)
    if injector is not None:
        xb = np.stack([_noisy(injector, xb, g) for g in noise_rngs])
    else:
        xb = np.broadcast_to(xb[None], (trials, *xb.shape))
    net_in = network_input(np.ascontiguousarray(xb))  # (K, b, ...)
    b = net_in.shape[1]
    rows = np.swapaxes(net_in, 0, 1).reshape(b * trials, *net_in.shape[2:])  # sample-major
    scores = keras.ops.convert_to_numpy(forward(rows)).reshape(b, trials, -1)
    return (scores.argmax(axis=-1) == labels[:, None]).sum(axis=0)


class _RetracingWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _no_retracing_warning():
    """Drop TensorFlow's "triggered tf.function retracing" warning while a converted model runs.

    Each converted model gets its own tf.function, traced once per batch shape (at most two):
    no real retracing. But TensorFlow counts traces by the wrapped Python code, shared by all
    those functions, so from the sixth model of a sweep it warned on stderr. Calling the model
    eagerly instead avoids the tracing but was ~35% slower (default-size CNN, SONOS, 10,000
    images x 10 trials on CPU: 25 s vs 18 s); only this warning, only during these calls, is dropped.
    """
    log = logging.getLogger("tensorflow")
    quiet = _RetracingWarningFilter()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def _check_model_input(model, first) -> None:
    """One line naming the fix when ``prepare(x)`` does not give what the model takes (before any
    work), instead of a shape error from deep inside Keras."""
    want = tuple(model.inputs[0].shape[1:]) if len(getattr(model, "inputs", None) or []) == 1 else None
    got = tuple(first.shape[1:])
    if want is None or (len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got))):
        return
    hint = "lambda a: a[..., None] (a channel axis)" if got + (1,) == want else \
        "lambda a: a.reshape(len(a), -1) (a vector)" if len(want) == 1 else "a function that reshapes them"
    raise ConfigError(f"monte_carlo: model '{model.name}' takes inputs shaped {want}, but the samples "
                      f"(after prepare, if given) are shaped {got}; pass prepare={hint}")


def _largest_activation(model) -> int:
    """Most values one input holds at any layer's output (the model's input included)."""
    sizes = [math.prod(d or 1 for d in model.input_shape[1:])]
    for layer in model.layers:
        try:
            shapes = layer.output.shape if not isinstance(layer.output, (list, tuple)) else \
                layer.output[0].shape
            sizes.append(math.prod(d or 1 for d in shapes[1:]))
        except (AttributeError, ValueError):
            continue
    return max(sizes)


def _compiled_forward(model):
    """The inference call: a ``tf.function`` on TensorFlow, the model itself elsewhere. On JAX
    (0.10, CPU) the eager call was faster than the jitted ``predict_on_batch`` in a one-off timing
    of the default CNN on 10,000 MNIST images x 10 trials, with the same accuracies."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda z: model(z, training=False), reduce_retracing=True)
    return model


def digital_accuracy(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512) -> float:
    """Clean accuracy of the Keras model itself (``x`` already shaped as the model's input)."""
    scores = keras_outputs(model, x, batch_size=batch_size)
    return float(np.mean(scores.argmax(axis=-1) == _labels(y)))


def keras_outputs(model, x: np.ndarray, *, batch_size: int = 512):
    """A Keras model's outputs on ``x``, called batch by batch: an array, or a list for several outputs.

    Not ``model.predict``: predict compiles a ``tf.function`` for every new model and traces it
    again for the last, smaller batch. A sweep builds a new model per point, so TensorFlow's
    "triggered tf.function retracing" warnings flooded stderr (it counts traces of the same code
    across models) and every point paid the tracing time. A direct call runs the same kernels
    without tracing anything (bit-identical outputs on CPU for the bundled networks).
    """
    x = np.asarray(x, dtype=F32)
    if len(x) == 0:
        raise ConfigError("keras_outputs: no inputs; pass at least one image")
    parts, several = [], False
    for s in range(0, len(x), batch_size):
        out = model(x[s:s + batch_size], training=False)
        several = isinstance(out, (list, tuple))
        parts.append([np.asarray(o) for o in out] if several else [np.asarray(out)])
    joined = [np.concatenate(p) for p in zip(*parts)]
    return joined if several else joined[0]
