"""A user's own trained model file, and how a data set's samples become its input.

A run with ``model = "my.keras"`` deploys that model as it is (no mapper, no training unless
asked). What this module decides, before any work:

- the file loads in Keras's safe mode (a ``.keras`` file could otherwise run code), and it is the
  file that was recorded (SHA-256) when a result is re-run;
- the data's samples fit the model's input: the same shape, or the same after dropping axes of
  size 1 (``(28, 28)`` images into a ``(28, 28, 1)`` input), or flattened into a vector input of
  the same size (``(28, 28)`` into ``(784,)``); anything else is refused, never reshaped blindly;
- the labels are classes the model's output has (argmax over its last axis).

Test-set noise injectors take images ``(N, H, W)`` (:meth:`nvmkit.NoiseInjector.apply`): samples
with channels reach them as ``(N, H, W * C)`` (channels side by side, every value perturbed on
its own by the bundled pixel-wise injectors), feature vectors as ``(N, 1, F)``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nvmkit.core.errors import ConfigError, DataError

MODEL_SUFFIXES = (".keras",)


def load_model_file(path: str | os.PathLike, sha256: str | None = None):
    """The Keras model in ``path`` (a ``.keras`` file), loaded in safe mode."""
    from nvmkit.core._quiet import import_keras
    from nvmkit.workflow.data import file_sha256
    from nvmkit.workflow.training import HDF5_MODEL, _refused_as_unsafe, check_keras_version, not_a_keras_zip

    keras = import_keras()
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"model file {p} does not exist; pass a .keras file saved with model.save()")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ConfigError(f"model file {p} is not a .keras file; save the model with "
                          "model.save('model.keras') (Keras 3 format)")
    # a .keras file is a zip archive; Keras answers anything else (a text file, an HDF5 model
    # under a .keras name) with "File not found"
    try:
        foreign = not_a_keras_zip(p)
    except OSError as exc:
        raise ConfigError(f"cannot read model file {p} ({exc.strerror or exc}); check its permissions") from None
    if foreign == HDF5_MODEL:
        raise ConfigError(f"model file {p} is {foreign}; if you trust it (HDF5 models load without "
                          "safe mode), rename it to .h5 and save it again in Keras 3's format: "
                          "keras.saving.load_model('model.h5').save('model.keras')")
    if foreign is not None:
        raise ConfigError(f"model file {p} is {foreign}; save the model with "
                          "model.save('model.keras') (Keras 3 format)")
    digest = file_sha256(p)
    if sha256 is not None and sha256 != digest:
        raise ConfigError(f"{p} has changed since it was recorded (sha256 {digest[:12]}..., recorded "
                          f"{str(sha256)[:12]}...); restore that file or drop model.sha256")
    check_keras_version()
    try:
        model = keras.saving.load_model(p, safe_mode=True, compile=False)
    except Exception as exc:  # truncated, foreign or unsafe: one line, never a traceback
        if _refused_as_unsafe(exc):
            raise ConfigError(f"{p} holds code (a Lambda layer or a custom object) that Keras's safe mode "
                              "refuses to run; rebuild the model from built-in layers") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"{p} is not a loadable Keras model ({first}); save it again with "
                          "model.save('model.keras')") from None
    if not _SCOPE_NAME.match(model.name):
        # Keras saves any name ("my model") but TensorFlow runs a model only under a name that is a
        # valid root scope: predict, fit and the converted copy would all stop with a traceback. The
        # name is no part of the computation (the result names the file by SHA-256).
        model.name = re.sub(r"[^A-Za-z0-9_.\-]", "_", model.name).lstrip("_-") or "model"
    return model


#: TensorFlow's pattern for a root name scope (tensorflow/python/framework/ops.py)
_SCOPE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")


@dataclass(frozen=True)
class ModelInput:
    """How samples of ``sample_shape`` feed a model taking ``input_shape`` with ``classes`` outputs."""

    sample_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    classes: int

    @classmethod
    def of(cls, model, sample_shape, where: str = "the model") -> "ModelInput":
        if len(getattr(model, "inputs", None) or []) != 1:
            raise ConfigError(f"{where} has {len(model.inputs or [])} inputs; nvmkit runs models with "
                              "one input")
        input_shape = tuple(model.inputs[0].shape[1:])
        out_shape = tuple(model.outputs[0].shape[1:]) if len(model.outputs) == 1 else None
        if out_shape is None or len(out_shape) != 1 or not out_shape[0] or out_shape[0] < 2:
            raise ConfigError(f"{where} must output one score per class, shaped (batch, classes >= 2); "
                              f"it outputs {[tuple(o.shape) for o in model.outputs]}")
        sample = tuple(int(d) for d in sample_shape)
        if any(d is None for d in input_shape):
            raise ConfigError(f"{where} takes inputs of undetermined shape {input_shape}; build it "
                              "with a fixed keras.Input(shape=...)")
        want = tuple(int(d) for d in input_shape)
        squeeze = tuple(d for d in sample if d != 1) == tuple(d for d in want if d != 1)
        flat = len(want) == 1 and math.prod(sample) == want[0]
        if not (sample == want or squeeze or flat):
            raise DataError(f"the data's samples are shaped {sample} but {where} takes {want}; give data "
                            "of the model's input shape (or one that differs only by axes of size 1)")
        return cls(sample, want, int(out_shape[0]))

    def check_labels(self, *labels: np.ndarray, where: str = "the data") -> None:
        top = max(int(np.max(y)) for y in labels)
        if top >= self.classes:
            raise DataError(f"{where} has labels up to {top} but the model outputs {self.classes} classes "
                            f"(0..{self.classes - 1}); use the model trained for these labels")

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Samples (or the injector's view of them) -> the model's input."""
        x = np.asarray(x)
        return x.reshape(len(x), *self.input_shape)

    def noise_view(self, x: np.ndarray) -> np.ndarray:
        """Samples as the test-set noise injectors take them, ``(N, H, W)``."""
        x = np.asarray(x)
        if x.ndim == 2:
            return x.reshape(len(x), 1, x.shape[1])
        return x.reshape(len(x), x.shape[1], -1)
