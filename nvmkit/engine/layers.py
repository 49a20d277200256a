"""Analog Keras layers: a weight layer whose matrix products run on simulated crossbars.

Each layer keeps the user's weights as its trainable variables (same names and shapes as the
Keras layer it replaces), so ``fit`` trains them. The programmed state of ``trials`` Monte Carlo
copies lives beside them in non-trainable variables, in weight units:

- ``*programmed_delta`` (K, rows, cols): programmed weight minus the user's weight at
  programming (mapping, levels, programming error, clipping, drift, stuck cells: everything
  frozen for a trial). The read uses ``user weight + delta``, so the gradient with respect to
  the user's weight is exact (the delta is a constant) and between two programmings a training
  step moves the analog weights with it (the delta acts as frozen device noise);
- ``*read_sd`` (K, 1, cols) or ``*read_var`` (K, rows, cols): per-weight read noise, drawn
  afresh at every read (see :mod:`nvmkit.engine.ops`);
- ``*dac_range``, ``*dac_signed``, ``*adc_range``: converter full scales calibrated on data;
- ``*chip_g_lo``, ``*chip_g_hi``, ``*chip_stuck``, ``*chip_adc_offset``, ``*chip_adc_gain``: what the
  chip keeps when reprogrammed (each cell's range, stuck cells, each column ADC's offset and
  gain error; :class:`nvmkit.engine.crossbar.Chip`), only for the effects switched on.
- ``*drift_scale`` (K,), with ``crossbar.nonideal.drift_compensation = "global"`` only: each
  trial's output scale from the reference reads at programming and at ``drift_time``.

:func:`nvmkit.engine.convert.reprogram` redraws the state from a seed; everything is saved in the
``.keras`` file, so a loaded model reads the same programmed hardware.
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
from keras import ops

from nvmkit.engine.crossbar import Chip, Crossbar, ProgrammedCrossbar
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError, NvmkitError
from nvmkit.engine import ops as xops
from nvmkit.engine import wires as xwires

F32 = np.float32
PACKAGE = "nvmkit"

#: while converters are calibrated: ``id(layer) -> [(input, mask), ...]``, one entry per call of
#: the layer in the float reference pass. Recorded as the layer is called, not tapped from the
#: graph, because a shared layer is called more than once and a nested model's inner tensors
#: cannot be reached from the outer inputs.
_recording: dict | None = None


@contextlib.contextmanager
def recording_inputs():
    """Record every analog layer's eager inputs (calibration); yields the record."""
    global _recording
    _recording = {}
    try:
        yield _recording
    finally:
        _recording = None


def _record(layer, x, mask=None) -> None:
    if _recording is not None and layer.ideal:
        _recording.setdefault(id(layer), []).append(
            (ops.convert_to_numpy(x), None if mask is None else ops.convert_to_numpy(mask)))


def device_config(device: Device) -> dict:
    return {"name": device.name, "params": device.get_config()}


def device_from_config(config) -> Device:
    if isinstance(config, Device):
        return config
    from nvmkit.core.registry import get_registry

    return get_registry().create("device", config["name"], config.get("params", {}))


def _read_noise_mode(device: Device, config: CrossbarConfig) -> str:
    """'none', 'column' (read sigma independent of the state) or 'cell', decided once at build
    so that the variables' shapes are fixed; checked against the programmed state later."""
    if not config.nonideal.read_noise:
        return "none"
    g = np.linspace(0.0, 2.0 * device.g_max, 9, dtype=F32)
    g = np.concatenate([g, np.linspace(device.g_min, device.g_max, 9, dtype=F32)])
    s = np.asarray(device.read_sigma(g), dtype=F32)
    if not np.any(s):
        return "none"
    return "column" if np.all(s == s[0]) else "cell"


class _Core:
    """One weight matrix on crossbars: shapes, programmed-state variables, read and calibration."""

    def __init__(self, layer: "AnalogLayer", tag: str, n_in: int, n_out: int, has_bias: bool,
                 depthwise: tuple[int, int] | None = None):
        cfg = layer.crossbar_config
        m = cfg.mapping
        self.layer, self.tag, self.n_in, self.n_out = layer, tag, n_in, n_out
        self.has_bias = has_bias
        self.bias_row = has_bias and m.bias == "row"
        self.digital_bias = has_bias and m.bias == "digital"
        self.rows = n_in + int(self.bias_row)
        self.blocks = [(r, min(r + m.tile_rows, self.rows)) for r in range(0, self.rows, m.tile_rows)]
        self.depthwise = depthwise
        k = layer.trials
        self.delta = layer.add_weight(name=f"{tag}programmed_delta", shape=(k, self.rows, n_out),
                                      initializer="zeros", trainable=False)
        self.read_sd = self.read_var = None
        if layer.noise_mode == "column":
            self.read_sd = layer.add_weight(name=f"{tag}read_sd", shape=(k, 1, n_out),
                                            initializer="zeros", trainable=False)
        elif layer.noise_mode == "cell":
            self.read_var = layer.add_weight(name=f"{tag}read_var", shape=(k, self.rows, n_out),
                                             initializer="zeros", trainable=False)
        self.wires = self.wire_common = self.wire_siemens = self.wire_kappa = None
        if cfg.wires.on:
            self._build_wires(layer, cfg, k)
        conv = cfg.converters
        self.dac_bits, self.adc_bits = conv.dac_bits, conv.adc_bits
        self.dac_range = self.dac_signed = self.adc_range = None
        if conv.dac_bits is not None:
            self.dac_range = layer.add_weight(
                name=f"{tag}dac_range", shape=(), trainable=False,
                initializer=keras.initializers.Constant(conv.dac_range or 0.0))
            self.dac_signed = layer.add_weight(
                name=f"{tag}dac_signed", shape=(), trainable=False,
                initializer=keras.initializers.Constant(float(conv.dac_sign == "signed")))
        if conv.adc_bits is not None:
            self.adc_range = layer.add_weight(
                name=f"{tag}adc_range", shape=(), trainable=False,
                initializer=keras.initializers.Constant(conv.adc_range or 0.0))
        self.chip_vars = self._chip_variables(layer, cfg)
        self.adc_offset = self.chip_vars.get("adc_offset")
        self.adc_gain = self.chip_vars.get("adc_gain")
        self.adc_noise = conv.adc_noise
        self.drift_scale = None
        if cfg.nonideal.drift_compensation != "none":
            self.drift_scale = layer.add_weight(name=f"{tag}drift_scale", shape=(k,),
                                                initializer="ones", trainable=False)

    def _chip_variables(self, layer: "AnalogLayer", cfg: CrossbarConfig) -> dict:
        """Non-trainable variables for what the chip keeps when reprogrammed (only the effects
        switched on: none by default), one chip for all trials or one per trial (``chip.trials``):
        each cell's own Gmin/Gmax, the stuck cells, each column ADC's offset and gain error
        (:class:`nvmkit.engine.crossbar.Chip`). Saved in the .keras file with the programmed state."""
        c = 1 if cfg.chip.trials == "same-chip" else layer.trials
        cells = 2 if cfg.mapping.scheme == "differential" else 1
        ni, conv = cfg.nonideal, cfg.converters
        cell, adc = (c, cells, self.rows, self.n_out), (c, len(self.blocks), self.n_out)
        wanted = {"g_lo": (cell, "float32", cfg.chip.varies), "g_hi": (cell, "float32", cfg.chip.varies),
                  "stuck": (cell, "int8", bool(ni.stuck_at_gmin or ni.stuck_at_gmax)),
                  "adc_offset": (adc, "float32", bool(conv.adc_offset)),
                  "adc_gain": (adc, "float32", bool(conv.adc_gain_error))}
        return {name: layer.add_weight(name=f"{self.tag}chip_{name}", shape=shape, dtype=dtype,
                                       initializer="zeros", trainable=False)
                for name, (shape, dtype, on) in wanted.items() if on}

    def assign_chip(self, chip: Chip) -> None:
        """Store ``chip`` (as many chips as the variables hold)."""
        for name, var in self.chip_vars.items():
            value = getattr(chip, name)
            if value is None or value.shape[0] not in (1, var.shape[0]):
                raise NvmkitError(f"{self.layer.name}: the chip lacks {name} for {var.shape[0]} "
                                  "chip(s); report it as a bug")
            var.assign(np.broadcast_to(value, var.shape).astype(var.dtype))

    def stored_chip(self) -> Chip:
        """The chip the variables hold (the one the model was last programmed on)."""
        return Chip(**{name: np.asarray(var.numpy()) for name, var in self.chip_vars.items()})

    def _adc_errors(self, st: dict):
        if st["adc_offset"] is None and st["adc_gain"] is None and not self.adc_noise:
            return None
        return xops.AdcErrors(st["adc_offset"], st["adc_gain"], self.adc_noise)

    def _build_wires(self, layer: "AnalogLayer", cfg: CrossbarConfig, k: int) -> None:
        """The IR-drop model (:mod:`nvmkit.engine.wires`) and its programmed state: the cells'
        conductance that the weights do not carry (``*wire_common``) and siemens per weight unit
        (``*wire_siemens``, which changes with each programming's weight scale)."""
        xwires.siemens_per_unit(layer.device, layer.name)  # a device without siemens fails now
        differential = cfg.mapping.scheme == "differential"
        self.wires = xwires.WireModel(
            rows=self.rows, cols=self.n_out, groups=1 if self.depthwise is None else self.depthwise[0],
            tile_rows=cfg.mapping.tile_rows, tile_cols=cfg.mapping.tile_cols, differential=differential,
            row_resistance=cfg.wires.row_resistance, col_resistance=cfg.wires.col_resistance)
        shape = (k, self.rows, self.n_out) if differential else (1, 1, 1)
        self.wire_common = layer.add_weight(name=f"{self.tag}wire_common", shape=shape,
                                            initializer="zeros", trainable=False)
        self.wire_siemens = layer.add_weight(name=f"{self.tag}wire_siemens", shape=(), initializer="zeros",
                                             trainable=False)

    # -- the read -----------------------------------------------------------------------------
    def matrix(self, kernel2d, bias):
        """The user's weights as crossbar rows (bias row last when analog)."""
        if self.bias_row:
            return ops.concatenate([kernel2d, ops.expand_dims(bias, 0)], axis=0)
        return kernel2d

    def _state(self, kernel2d=None, bias=None) -> dict:
        """The programmed state and converter ranges as tensors. Read through ``.value``: the
        JAX backend (jax >= 0.9) no longer turns a Keras variable into an array inside its own
        jitted ops (``__jax_array__`` during abstractification), and it is a no-op elsewhere.
        In device-aware training the layer's ``programming`` draws the state in the graph from
        the current weights instead (:mod:`nvmkit.engine.device_aware`); what it does not draw
        (the chip's ADC offsets and gains) is read from the variables."""
        names = ("delta", "read_sd", "read_var", "dac_range", "dac_signed", "adc_range",
                 "adc_offset", "adc_gain", "drift_scale", "wire_common", "wire_siemens")
        stored = {n: (None if getattr(self, n) is None else getattr(self, n).value) for n in names}
        programming = getattr(self.layer, "programming", None)
        if programming is not None:
            return {**stored, **programming.state(self, kernel2d, bias)}
        return stored

    def _read_weights(self, kernel2d, bias, st):
        """The programmed weights (K, rows, cols) as the read sees them: the user's weights plus
        the programmed delta, through the tiles' wire resistance when it is on."""
        w = ops.expand_dims(self.matrix(kernel2d, bias), 0) + st["delta"]
        if self.wires is not None:
            w = self.wires.effective_weights(w, st["wire_common"], st["wire_siemens"])
        return w

    def _wrapped(self, read, x, w, st, conv):
        """``read(x, w)``, or what the layer's ``programming`` makes of it when it wraps the read
        (in-place learning: the backward pass through the transposed crossbar,
        :mod:`nvmkit.engine.in_place`); ``conv`` the convolution of a conv layer, else None."""
        wrap = getattr(getattr(self.layer, "programming", None), "wrap_read", None)
        return read(x, w) if wrap is None else wrap(self, read, x, w, st, conv)

    def forward(self, x, kernel2d, bias, training=None):
        """x (K|1, M, inputs) -> (K|1, M, n_out). ``training``: the layer's call flag (the
        converters build their straight-through gradient only when it is set)."""
        if self.layer.ideal:  # the float reference: the user's weights, no device, no converters
            y = xops._product(x, ops.expand_dims(kernel2d, 0), self.depthwise)
            return y + bias if self.has_bias else y
        st = self._state(kernel2d, bias)
        w = self._read_weights(kernel2d, bias, st)
        if self.dac_bits is not None:
            x = xops.quantize(x, st["dac_range"], self.dac_bits, st["dac_signed"], training)

        def read(x, w):
            return xops.read(x, w, n_in=self.n_in, bias_row=self.bias_row, blocks=self.blocks,
                             seed=self.layer.seed_generator, var=st["read_var"], col_sd=st["read_sd"],
                             adc_range=st["adc_range"], adc_bits=self.adc_bits,
                             depthwise=self.depthwise, adc_errors=self._adc_errors(st),
                             training=training)

        y = self._wrapped(read, x, w, st, None)
        if st["drift_scale"] is not None:  # (K|1, M, n_out): one scale per trial's block
            y = y * ops.reshape(st["drift_scale"], (-1, 1, 1))
        return y + bias if self.digital_bias else y

    def forward_conv(self, x, kernel2d, bias, conv, training=None, geometry=None):
        """Images x (B*K, H, W, C) -> (B*K, Ho, Wo, n_out); ``conv(images, matrix)`` is the
        layer's convolution by a weight matrix, ``geometry`` its (size, strides, dilation,
        padding) or None (see :func:`nvmkit.engine.ops.read_conv`)."""
        if self.layer.ideal:
            y = conv(x, kernel2d)
            return y + bias if self.has_bias else y
        st = self._state(kernel2d, bias)
        w = self._read_weights(kernel2d, bias, st)
        if self.dac_bits is not None:
            x = xops.quantize(x, st["dac_range"], self.dac_bits, st["dac_signed"], training)

        def read(x, w):
            return xops.read_conv(x, w, trials=self.layer.trials, conv=conv, n_in=self.n_in,
                                  bias_row=self.bias_row, blocks=self.blocks,
                                  seed=self.layer.seed_generator, var=st["read_var"],
                                  col_sd=st["read_sd"], adc_range=st["adc_range"],
                                  adc_bits=self.adc_bits, depthwise=self.depthwise is not None,
                                  adc_errors=self._adc_errors(st), training=training,
                                  geometry=geometry)

        y = self._wrapped(read, x, w, st, conv)
        if st["drift_scale"] is not None:
            y = _scale_per_trial(y, st["drift_scale"], self.layer.trials)
        return y + bias if self.digital_bias else y

    # -- programming and calibration (numpy, once per trial) ----------------------------------
    def crossbar(self, kernel2d: np.ndarray, bias: np.ndarray | None) -> Crossbar:
        return Crossbar(kernel2d, bias if self.has_bias else None, self.layer.device,
                        self.layer.crossbar_config, name=f"{self.layer.name}{self.tag}")

    def assign(self, programmed: ProgrammedCrossbar, user_matrix: np.ndarray) -> None:
        self.delta.assign(programmed.weights() - user_matrix[None])
        if self.wires is not None:
            self._assign_wires(programmed)
        var, col = programmed._var, programmed._col_sd
        if self.read_var is not None:
            full = var if var is not None else (
                np.broadcast_to(np.square(col)[:, None, :], self.read_var.shape) if col is not None
                else np.zeros(self.read_var.shape, F32))
            self.read_var.assign(full)
        elif self.read_sd is not None:
            if var is not None:
                raise NvmkitError(f"{self.layer.name}: device '{self.layer.device.name}' gave a "
                                  "state-dependent read noise it did not show when probed; "
                                  "report it as a bug")
            self.read_sd.assign(col[:, None, :] if col is not None else np.zeros(self.read_sd.shape, F32))
        elif var is not None or col is not None:
            raise NvmkitError(f"{self.layer.name}: device '{self.layer.device.name}' gave read "
                              "noise it did not show when probed; report it as a bug")
        if self.drift_scale is not None:
            scale = programmed.drift_scale
            self.drift_scale.assign(np.ones(self.drift_scale.shape, F32) if scale is None else scale)

    def _assign_wires(self, programmed: ProgrammedCrossbar) -> None:
        """The programmed cells' part that the weights do not carry, siemens per weight unit, and the
        state's largest first-order drop ``wire_kappa`` (:func:`nvmkit.engine.wires.check_range`)."""
        xb = programmed.xbar
        w = programmed.weights()
        gain = F32(xb.current_to_weight)
        if self.wires.differential:
            common = (programmed.states[0] + programmed.states[1]) * gain - np.abs(w)
        else:
            common = np.full((1, 1, 1), F32(xb.g_offset) * gain, dtype=F32)
        siemens = xwires.siemens_per_unit(self.layer.device, self.layer.name) / xb.current_to_weight
        self.wire_kappa = self.wires.max_drop(w, common, F32(siemens))  # checked by reprogram
        self.wire_common.assign(common.astype(F32))
        self.wire_siemens.assign(siemens)

    def calibrate(self, x: np.ndarray, xbar: Crossbar) -> None:
        """DAC: max |x| (and whether x is signed). ADC: max |ideal partial sum| over row tiles,
        in weight units, with the mapped (clipped) weights, as Crossbar.calibrate does."""
        conv = self.layer.crossbar_config.converters
        x = np.asarray(x, F32).reshape(-1, x.shape[-1])
        if self.dac_range is not None:
            if conv.dac_range is None:
                self.dac_range.assign(float(np.abs(x).max()) or 1.0)
            signed = conv.dac_sign == "signed" or (conv.dac_sign == "data" and bool(x.min() < 0))
            if signed and self.dac_bits < 2:
                raise ConfigError(f"{self.layer.name}: a signed DAC needs at least 2 bits; set "
                                  "converters.dac_bits >= 2")
            self.dac_signed.assign(float(signed))
        if self.adc_range is not None and conv.adc_range is None:
            if self.adc_bits < 2:
                raise ConfigError(f"{self.layer.name}: a signed ADC needs at least 2 bits; set "
                                  "converters.adc_bits >= 2")
            ideal = xbar.target_weights()
            per_row = 1 if self.depthwise is None else self.depthwise[0]
            peak = 0.0
            chunk = max(1, (1 << 24) // max(1, x.shape[1] + self.n_out))
            for r0, r1 in self.blocks:
                hi = min(r1, self.n_in)
                w = ideal[None, r0:hi]
                for s in range(0, len(x), chunk):
                    xs = x[None, s:s + chunk, r0 * per_row:hi * per_row]
                    y = ops.convert_to_numpy(xops._product(xs, w, self.depthwise))
                    if self.bias_row and r1 > self.n_in:
                        y = y + ideal[self.n_in]
                    peak = max(peak, float(np.abs(y).max()))
            self.adc_range.assign((peak * conv.adc_headroom) or 1.0)

    def needs_calibration(self) -> bool:
        return any(v is not None and float(v.numpy()) == 0.0 for v in (self.dac_range, self.adc_range))

    def tiles(self) -> list[tuple[int, int]]:
        tc = self.layer.crossbar_config.mapping.tile_cols
        per = [(r1 - r0, min(c + tc, self.n_out) - c) for r0, r1 in self.blocks
               for c in range(0, self.n_out, tc)]
        if self.depthwise is not None:  # one crossbar per channel, mult columns each
            c, mult = self.depthwise
            per = [(r1 - r0, min(j + tc, mult) - j) for r0, r1 in self.blocks
                   for j in range(0, mult, tc)] * c
        return per


def _scale_per_trial(y, scale, trials: int):
    """Images y (B*K, ...) in sample-major order, each trial's rows times its ``scale[k]``."""
    if trials == 1:
        return y * scale[0]
    y5 = ops.reshape(y, (-1, trials, *y.shape[1:]))
    y5 = y5 * ops.reshape(scale, (1, trials) + (1,) * (len(y.shape) - 1))
    return ops.reshape(y5, (-1, *y.shape[1:]))


class AnalogLayer(keras.layers.Layer):
    """Base of the analog layers: the device, the crossbar settings, the trial count and the
    read-noise seed; subclasses define the weights, the cores and the call."""

    def __init__(self, device, crossbar=None, trials: int = 1, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.device = device_from_config(device)
        if not isinstance(self.device, Device):
            raise ConfigError(f"{self.name}: device must be a nvmkit Device, got "
                              f"{type(self.device).__name__}")
        self.crossbar_config = (crossbar if isinstance(crossbar, CrossbarConfig)
                                else CrossbarConfig.from_dict(dict(crossbar or {})))
        if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
            raise ConfigError(f"{self.name}: trials must be an integer >= 1, got {trials!r}")
        self.trials = int(trials)
        self.seed = int(seed)
        self.noise_mode = _read_noise_mode(self.device, self.crossbar_config)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.ideal = False  # True: the float reference pass (calibration)
        self.cores: list[_Core] = []

    def get_config(self):
        return {**super().get_config(), "device": device_config(self.device),
                "crossbar": self.crossbar_config.to_dict(), "trials": self.trials,
                "seed": self.seed}

    def _k(self) -> int:
        return 1 if self.ideal else self.trials

    # subclasses: [(core, kernel2d, bias)] for programming, as numpy arrays
    def core_weights(self) -> list[tuple[_Core, np.ndarray, np.ndarray | None]]:
        raise NotImplementedError

    def core_inputs(self, x: np.ndarray, mask=None) -> list[np.ndarray]:
        """Each core's ideal input rows for one call's inputs ``x`` (calibration); ``mask``:
        the call's mask, if any (a recurrent layer's masked steps keep the state)."""
        raise NotImplementedError

    def describe(self) -> str:
        m = self.crossbar_config.mapping
        tiles = sum(len(c.tiles()) for c in self.cores)
        shapes = " + ".join(f"{c.rows}x{c.n_out}" if c.depthwise is None
                            else f"{c.depthwise[0]}x({c.rows}x{c.depthwise[1]})" for c in self.cores)
        return (f"{self.device.name}, {m.scheme} mapping, {shapes} on {tiles} tile(s) of "
                f"{m.tile_rows}x{m.tile_cols}, bias {m.bias}, {self.trials} trial(s)")


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnalogDense(AnalogLayer):
    """Dense on crossbars: ``activation(x @ kernel + bias)``, the product analog, along the last
    axis like keras.layers.Dense (one read per input vector)."""

    def __init__(self, units: int, activation=None, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.supports_masking = True  # as keras.layers.Dense: a mask passes through

    def build(self, input_shape):
        n_in = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(n_in, self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros") \
            if self.use_bias else None
        self.cores = [_Core(self, "", n_in, self.units, self.use_bias)]

    def call(self, x, training=None, mask=None):
        _record(self, x)
        k = self._k()
        inner = tuple(x.shape[1:-1])
        y = self.cores[0].forward(xops.group_trials(x, k), self.kernel, self.bias, training)
        # Keras activations act along the last axis only (softmax, glu, which halves it), so
        # before ungrouping: then nothing stands between this layer's ungroup and a following
        # analog layer's group, and TensorFlow cancels the two (see group_trials)
        y = self.activation(y)
        return xops.ungroup_trials(y, k, (*inner, y.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def core_weights(self):
        b = None if self.bias is None else self.bias.numpy()
        return [(self.cores[0], self.kernel.numpy(), b)]

    def core_inputs(self, x, mask=None):
        return [x.reshape(-1, x.shape[-1])]

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias}


def einsum_product(equation: str, owner: str) -> tuple[str, str, str]:
    """(free, contracted, kernel_free) letters of an EinsumDense equation that is a matrix product
    over the input's last axes: ``free + contracted, contracted + kernel_free -> free +
    kernel_free`` (an ellipsis may stand first for leading free axes). Such an equation is one
    crossbar: the contracted axes are its rows, the kernel's free axes its columns. Anything else
    (a kernel axis that is also a batch axis, reordered axes) raises ConfigError."""
    try:
        ins, out = equation.replace(" ", "").split("->")
        x, k = ins.split(",")
    except ValueError:
        raise ConfigError(f"{owner}: EinsumDense equation {equation!r} is not 'input,kernel->output'") from None
    lead = x.startswith("...")
    if lead != out.startswith("...") or "..." in k or "..." in x[3 * lead:] or "..." in out[3 * lead:]:
        raise ConfigError(f"{owner}: EinsumDense equation {equation!r} puts an ellipsis elsewhere "
                          "than first in the input and the output")
    x, out = x[3 * lead:], out[3 * lead:]
    contracted = "".join(c for c in x if c in k and c not in out)
    free = x[:len(x) - len(contracted)]
    kernel_free = k[len(contracted):]
    if (not contracted or x != free + contracted or k != contracted + kernel_free
            or out != free + kernel_free or set(free) & set(k)
            or len(set(x + k + out)) != len(free) + len(contracted) + len(kernel_free)):
        raise ConfigError(f"{owner}: EinsumDense equation {equation!r} is not a product over the "
                          "input's last axes ('...c,cd->...d' and its multi-axis forms, as "
                          "MultiHeadAttention's projections); replace the layer by Dense or Reshape "
                          "and Dense")
    return ("..." if lead else "") + free, contracted, kernel_free


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnalogEinsumDense(AnalogLayer):
    """keras.layers.EinsumDense on crossbars, for an equation that is a matrix product over the
    input's last axes (:func:`einsum_product`; MultiHeadAttention's query, key, value and output
    projections are of this form): the contracted input axes flattened are the crossbar's rows,
    the kernel's free axes flattened its columns, one read per input vector. Weights keep Keras's
    kernel and bias shapes (the bias may span some of the output axes: broadcast to the columns)."""

    def __init__(self, equation: str, output_shape, bias_axes=None, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.equation = str(equation)
        self.partial_output_shape = (tuple(output_shape) if np.iterable(output_shape)
                                     else (output_shape,))
        self.bias_axes = bias_axes or None
        self.activation = keras.activations.get(activation)
        self.free, self.contracted, self.kernel_free = einsum_product(self.equation, self.name)
        if self.bias_axes and not set(self.bias_axes) <= set(self.kernel_free):
            raise ConfigError(f"{self.name}: EinsumDense bias axes {self.bias_axes!r} must be "
                              f"kernel output axes of {self.equation!r} (a bias per crossbar column)")

    def build(self, input_shape):
        nc, nf = len(self.contracted), len(self.kernel_free)
        self.contracted_dims = tuple(int(d) for d in input_shape[-nc:])
        self.free_dims = tuple(self.partial_output_shape[-nf:]) if nf else ()  # [-0:] is all
        if any(d is None for d in self.free_dims):
            raise ConfigError(f"{self.name}: the EinsumDense output shape must give the kernel's "
                              f"output axes, got {self.partial_output_shape}")
        self.free_dims = tuple(int(d) for d in self.free_dims)
        self.kernel = self.add_weight(name="kernel", shape=(*self.contracted_dims, *self.free_dims),
                                      initializer="glorot_uniform")
        self.bias = None
        if self.bias_axes:  # Keras's layout: the output axes from the first bias axis on
            first = min(self.kernel_free.index(c) for c in self.bias_axes)
            shape = tuple(d if c in self.bias_axes else 1
                          for c, d in zip(self.kernel_free[first:], self.free_dims[first:]))
            self.bias = self.add_weight(name="bias", shape=shape, initializer="zeros")
        self.n_in, self.n_out = math.prod(self.contracted_dims), math.prod(self.free_dims)
        self.cores = [_Core(self, "", self.n_in, self.n_out, self.bias is not None)]

    def _matrices(self, kernel, bias):
        k2d = ops.reshape(kernel, (self.n_in, self.n_out))
        if bias is None:
            return k2d, None
        return k2d, ops.reshape(ops.broadcast_to(bias, self.free_dims), (self.n_out,))

    def call(self, x, training=None):
        _record(self, x)
        k = self._k()
        positions = tuple(x.shape[1:len(x.shape) - len(self.contracted)])
        if any(d is None for d in positions):
            raise ConfigError(f"{self.name}: the input's axes other than the batch must be fixed "
                              "(give keras.Input a fixed sequence length)")
        x = ops.reshape(x, (-1, *positions, self.n_in))
        k2d, b = self._matrices(self.kernel, self.bias)
        y = self.cores[0].forward(xops.group_trials(x, k), k2d, b, training)
        y = xops.ungroup_trials(y, k, (*positions, self.n_out))
        return self.activation(ops.reshape(y, (-1, *positions, *self.free_dims)))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:len(input_shape) - len(self.contracted)], *self.free_dims)

    def core_weights(self):
        k2d, b = self._matrices(self.kernel.numpy(), None if self.bias is None else self.bias.numpy())
        return [(self.cores[0], ops.convert_to_numpy(k2d), None if b is None else ops.convert_to_numpy(b))]

    def core_inputs(self, x, mask=None):
        return [x.reshape(-1, self.n_in)]

    def get_config(self):
        return {**super().get_config(), "equation": self.equation,
                "output_shape": list(self.partial_output_shape), "bias_axes": self.bias_axes,
                "activation": keras.activations.serialize(self.activation)}


#: MultiHeadAttention's projections, in the order their crossbars are programmed
ATTENTION_PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_gate_dense", "_output_dense")


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnalogMultiHeadAttention(keras.layers.MultiHeadAttention):
    """keras.layers.MultiHeadAttention with its projections (query, key, value, the optional
    gate, output) on crossbars, :class:`AnalogEinsumDense` each; the attention itself (scores,
    softmax, weighted sum of the values) multiplies activations by activations, which a crossbar
    of programmed weights cannot hold, so it runs digitally, as in analog in-memory transformer
    designs (Spoon et al., "Toward software-equivalent accuracy on transformer-based deep neural
    networks with analog memory devices", Front. Comput. Neurosci. 15, 2021: the weight layers
    on analog tiles, the attention products digital). Keras builds the projections in ``build``,
    so this layer builds Keras's own (for their equations and shapes) and puts an analog twin in
    each one's place. With K trials the batch holds each sample K times; attention mixes the
    positions of one row only, so trials stay apart."""

    def __init__(self, device, crossbar=None, trials: int = 1, seeds=(0,) * 5, **kwargs):
        super().__init__(**kwargs)
        self.device = device_from_config(device)
        self.crossbar_config = (crossbar if isinstance(crossbar, CrossbarConfig)
                                else CrossbarConfig.from_dict(dict(crossbar or {})))
        self.trials = int(trials)
        self.seeds = tuple(int(v) for v in seeds)
        if len(self.seeds) != len(ATTENTION_PROJECTIONS):
            raise ConfigError(f"{self.name}: seeds must hold {len(ATTENTION_PROJECTIONS)} values")

    def build(self, query_shape, value_shape, key_shape=None):
        base = {k: v for k, v in self.get_config().items()
                if k not in ("device", "crossbar", "trials", "seeds")}
        plain = keras.layers.MultiHeadAttention.from_config(base)
        plain.build(query_shape, value_shape, key_shape)
        key_shape = value_shape if key_shape is None else key_shape
        attended = list(plain._query_dense.compute_output_shape(query_shape))
        attended[-1] = self._value_dim  # what the output projection reads: (..., heads, value_dim)
        reads = {"_query_dense": query_shape, "_key_dense": key_shape, "_value_dense": value_shape,
                 "_gate_dense": query_shape, "_output_dense": tuple(attended)}
        for attr, seed in zip(ATTENTION_PROJECTIONS, self.seeds):
            dense = getattr(plain, attr, None)
            if dense is None:
                continue
            c = dense.get_config()
            twin = AnalogEinsumDense(c["equation"], c["output_shape"], c["bias_axes"],
                                     c["activation"], name=f"{self.name}_{c['name']}",
                                     device=self.device,
                                     crossbar=self.crossbar_config, trials=self.trials, seed=seed)
            twin.build(reads[attr])
            twin.trainable = self.trainable
            setattr(self, attr, twin)
        self._build_attention(len(value_shape) + 1)
        self.built = True

    def projections(self) -> list[AnalogEinsumDense]:
        return [p for p in (getattr(self, a, None) for a in ATTENTION_PROJECTIONS) if p is not None]

    def get_config(self):
        return {**super().get_config(), "device": device_config(self.device),
                "crossbar": self.crossbar_config.to_dict(), "trials": self.trials,
                "seeds": list(self.seeds)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnalogConv(AnalogLayer):
    """Conv1D / Conv2D (channels last) on crossbars, mapped kernel-wise (im2col, as ISAAC,
    Shafiee et al., ISCA 2016): one crossbar of ``prod(kernel) * C_in (+ bias)`` rows by
    ``filters`` columns, read once per output position (each position its own read noise).

    ``groups = G > 1`` (Keras's grouped convolution: input channels and filters split into G
    groups, group g's filters reading only group g's channels) maps each group on a crossbar of
    its own, ``prod(kernel) * C_in / G (+ bias)`` rows by ``filters / G`` columns, read with its
    own converters and noise; nothing is stored for the zero blocks between groups."""

    def __init__(self, rank: int, filters: int, kernel_size, strides=1, padding="valid",
                 dilation_rate=1, activation=None, use_bias: bool = True, groups: int = 1,
                 **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        if self.groups < 1 or filters % self.groups:
            raise ConfigError(f"{self.name}: groups must be >= 1 and divide filters ({filters})")
        if rank not in (1, 2):
            raise ConfigError(f"{self.name}: AnalogConv handles 1-D and 2-D convolutions, got rank {rank}")
        self.rank = rank
        tup = (lambda v: tuple(int(a) for a in v) if np.iterable(v) else (int(v),) * rank)
        self.filters, self.kernel_size = int(filters), tup(kernel_size)
        self.strides, self.dilation_rate = tup(strides), tup(dilation_rate)
        self.padding = padding
        if padding not in ("valid", "same") and not (rank == 1 and padding == "causal"):
            raise ConfigError(f"{self.name}: padding must be 'valid' or 'same' (or 'causal' in 1-D)")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)

    def _geometry2d(self):
        if self.rank == 1:
            return (1, *self.kernel_size), (1, *self.strides), (1, *self.dilation_rate)
        return self.kernel_size, self.strides, self.dilation_rate

    def build(self, input_shape):
        c_in, g = int(input_shape[-1]), self.groups
        if c_in % g:
            raise ConfigError(f"{self.name}: groups={g} must divide the input channels ({c_in})")
        self.kernel = self.add_weight(name="kernel",
                                      shape=(*self.kernel_size, c_in // g, self.filters),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") \
            if self.use_bias else None
        rows = math.prod(self.kernel_size) * (c_in // g)
        if g == 1:
            self.cores = [_Core(self, "", rows, self.filters, self.use_bias)]
        else:
            self.cores = [_Core(self, f"group{i}_", rows, self.filters // g, self.use_bias)
                          for i in range(g)]

    def _patches(self, x):
        if self.rank == 1:
            x = ops.expand_dims(x, 1)
        size, strides, dil = self._geometry2d()
        return xops.patches(x, size, strides, dil, self.padding)

    def _conv(self, images, matrix):
        """Convolution of (N, H, W, C) images by a weight matrix in patch order."""
        size, strides, dil = self._geometry2d()
        kern = ops.reshape(matrix, (*size, images.shape[-1], -1))
        padding = self.padding
        if padding == "causal":  # all padding before (1-D only)
            images = ops.pad(images, ((0, 0), (0, 0), ((size[1] - 1) * dil[1], 0), (0, 0)))
            padding = "valid"
        return ops.conv(images, kern, strides=strides, padding=padding, dilation_rate=dil)

    def _group_matrices(self, kernel, bias):
        """[(channels slice, kernel2d, bias)] per core: group g reads its channels only."""
        g = self.groups
        if g == 1:
            return [(None, ops.reshape(kernel, (-1, self.filters)), bias)]
        cg, fg = kernel.shape[-2], self.filters // g
        return [((i * cg, (i + 1) * cg), ops.reshape(kernel[..., i * fg:(i + 1) * fg], (-1, fg)),
                 None if bias is None else bias[i * fg:(i + 1) * fg]) for i in range(g)]

    def call(self, x, training=None, mask=None):
        _record(self, x)
        if self.rank == 1:
            x = ops.expand_dims(x, 1)
        geometry = (*self._geometry2d(), self.padding)
        ys = [core.forward_conv(x if ch is None else x[..., ch[0]:ch[1]], k2d, b, self._conv, training,
                                geometry)
              for core, (ch, k2d, b) in zip(self.cores, self._group_matrices(self.kernel, self.bias))]
        y = ys[0] if len(ys) == 1 else ops.concatenate(ys, axis=-1)
        if self.rank == 1:
            y = ops.squeeze(y, 1)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        size, strides, dil = self._geometry2d()
        hw = (1, input_shape[1]) if self.rank == 1 else tuple(input_shape[1:3])
        _, out = xops.window_geometry(hw, size, strides, dil, self.padding)
        out = out[1:] if self.rank == 1 else out
        return (input_shape[0], *out, self.filters)

    def core_weights(self):
        b = None if self.bias is None else self.bias.numpy()
        return [(core, np.asarray(k2d), bb) for core, (_, k2d, bb)
                in zip(self.cores, self._group_matrices(self.kernel.numpy(), b))]

    def core_inputs(self, x, mask=None):
        out = []
        for _, (ch, _, _) in zip(self.cores, self._group_matrices(self.kernel.numpy(), None)):
            xs = x if ch is None else x[..., ch[0]:ch[1]]
            p = ops.convert_to_numpy(self._patches(ops.convert_to_tensor(xs)))
            out.append(p.reshape(-1, p.shape[-1]))
        return out

    def get_config(self):
        return {**super().get_config(), "rank": self.rank, "filters": self.filters,
                "groups": self.groups,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "dilation_rate": self.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnalogDepthwiseConv2D(AnalogLayer):
    """DepthwiseConv2D on crossbars: each input channel its own crossbar of ``kh*kw (+ bias)``
    rows by ``depth_multiplier`` columns, read once per output position. With
    ``pointwise_filters`` set it is a SeparableConv2D: the depthwise output then goes through a
    second crossbar of ``C*mult (+ bias)`` rows by ``pointwise_filters`` columns (a 1x1
    convolution), with its own converters."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier: int = 1,
                 dilation_rate=1, activation=None, use_bias: bool = True,
                 pointwise_filters: int | None = None, **kwargs):
        super().__init__(**kwargs)
        tup = (lambda v: tuple(int(a) for a in v) if np.iterable(v) else (int(v),) * 2)
        self.kernel_size, self.strides, self.dilation_rate = tup(kernel_size), tup(strides), tup(dilation_rate)
        if padding not in ("valid", "same"):
            raise ConfigError(f"{self.name}: padding must be 'valid' or 'same'")
        self.padding = padding
        self.depth_multiplier = int(depth_multiplier)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.pointwise_filters = None if pointwise_filters is None else int(pointwise_filters)

    def build(self, input_shape):
        c, mult = int(input_shape[-1]), self.depth_multiplier
        self.input_channels = c
        kh, kw = self.kernel_size
        self.depthwise_kernel = self.add_weight(name="depthwise_kernel", shape=(kh, kw, c, mult),
                                                initializer="glorot_uniform")
        sep = self.pointwise_filters is not None
        if sep:
            self.pointwise_kernel = self.add_weight(
                name="pointwise_kernel", shape=(1, 1, c * mult, self.pointwise_filters),
                initializer="glorot_uniform")
        n_out = self.pointwise_filters if sep else c * mult
        self.bias = self.add_weight(name="bias", shape=(n_out,), initializer="zeros") \
            if self.use_bias else None
        self.cores = [_Core(self, "depthwise_", kh * kw, c * mult, self.use_bias and not sep,
                            depthwise=(c, mult))]
        if sep:
            self.cores.append(_Core(self, "pointwise_", c * mult, self.pointwise_filters,
                                    self.use_bias))

    def _patches(self, x):
        return xops.patches(x, self.kernel_size, self.strides, self.dilation_rate, self.padding)

    def _dw_matrix(self):
        kh, kw, c, mult = self.depthwise_kernel.shape
        return ops.reshape(self.depthwise_kernel, (kh * kw, c * mult))

    def _conv(self, images, matrix):
        kh, kw = self.kernel_size
        kern = ops.reshape(matrix, (kh, kw, images.shape[-1], -1))
        return ops.depthwise_conv(images, kern, strides=self.strides, padding=self.padding,
                                  dilation_rate=self.dilation_rate)

    def call(self, x, training=None, mask=None):
        _record(self, x)
        k = self._k()
        sep = self.pointwise_filters is not None
        y = self.cores[0].forward_conv(x, self._dw_matrix(), None if sep else self.bias, self._conv,
                                       training)
        if sep:
            inner = tuple(y.shape[1:-1])
            pw = ops.reshape(self.pointwise_kernel, (-1, self.pointwise_filters))
            y = self.cores[1].forward(xops.group_trials(y, k), pw, self.bias, training)
            y = xops.ungroup_trials(y, k, (*inner, self.pointwise_filters))
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        _, out = xops.window_geometry(tuple(input_shape[1:3]), self.kernel_size, self.strides,
                                      self.dilation_rate, self.padding)
        n_out = self.pointwise_filters or int(input_shape[-1]) * self.depth_multiplier
        return (input_shape[0], *out, n_out)

    def core_weights(self):
        b = None if self.bias is None else self.bias.numpy()
        dw = ops.convert_to_numpy(self._dw_matrix())
        if self.pointwise_filters is None:
            return [(self.cores[0], dw, b)]
        pw = self.pointwise_kernel.numpy().reshape(-1, self.pointwise_filters)
        return [(self.cores[0], dw, None), (self.cores[1], pw, b)]

    def core_inputs(self, x, mask=None):
        p = ops.convert_to_numpy(self._patches(ops.convert_to_tensor(x)))
        p = p.reshape(-1, p.shape[-1])
        if self.pointwise_filters is None:
            return [p]
        dw = ops.convert_to_numpy(self._dw_matrix())
        mid = ops.convert_to_numpy(xops._product(p[None], dw[None], self.cores[0].depthwise))[0]
        return [p, mid]

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "depth_multiplier": self.depth_multiplier,
                "dilation_rate": self.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias, "pointwise_filters": self.pointwise_filters}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FoldedBatchNormalization(keras.layers.Layer):
    """Where a BatchNormalization stood after it was folded into the weight layer before it:
    passes its input through (the fold is exact at inference). Accepts the arguments the
    BatchNormalization was called with, so the cloned graph replays unchanged."""

    def call(self, x, training=None, mask=None):
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


RECURRENT_KINDS = ("simple", "lstm", "gru")


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnalogRecurrent(AnalogLayer):
    """SimpleRNN, LSTM or GRU on crossbars, unrolled over the (fixed) time steps.

    - ``simple`` (the seed's time-multiplexed design, Bennett et al., Sandia 2021): ``[W; U]
      (+ bias)`` stacked in ONE crossbar of ``n_in + H`` rows by ``H`` columns, read once per
      time step with ``[x_t, h_{t-1}]``; any activation, applied digitally.
    - ``lstm``: the four gates' ``[W; U] (+ bias)`` in one crossbar of ``n_in + H`` rows by
      ``4H`` columns, read once per step; the gate nonlinearities and the cell update digital.
    - ``gru`` (Keras's default ``reset_after=True``): the reset gate multiplies the recurrent
      product of the candidate, so input and recurrent matrices are two crossbars, ``W (+ b_in)``
      (``n_in`` x ``3H``) and ``U (+ b_rec)`` (``H`` x ``3H``), each read once per step.

    Programming error is shared by all steps; read noise is fresh at each read.
    """

    def __init__(self, kind: str, units: int, activation="tanh", recurrent_activation="sigmoid",
                 use_bias: bool = True, return_sequences: bool = False, go_backwards: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        if kind not in RECURRENT_KINDS:
            raise ConfigError(f"{self.name}: kind must be one of {', '.join(RECURRENT_KINDS)}")
        self.kind, self.units = kind, int(units)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.return_sequences, self.go_backwards = bool(return_sequences), bool(go_backwards)
        # a masked time step keeps the state (and repeats the last output), as Keras's RNN
        # layers do (keras.layers.RNN, zero_output_for_mask=False)
        self.supports_masking = True

    @property
    def gates(self) -> int:
        return {"simple": 1, "lstm": 4, "gru": 3}[self.kind]

    def build(self, input_shape):
        if input_shape[1] is None:
            raise ConfigError(f"{self.name}: the number of time steps must be fixed; give "
                              "keras.Input a shape (time steps, features)")
        n, h, g = int(input_shape[-1]), self.units, self.gates
        self.kernel = self.add_weight(name="kernel", shape=(n, g * h), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(h, g * h),
                                                initializer="orthogonal")
        bias_shape = (2, g * h) if self.kind == "gru" else (g * h,)
        self.bias = self.add_weight(name="bias", shape=bias_shape, initializer="zeros") \
            if self.use_bias else None
        if self.kind == "gru":
            self.cores = [_Core(self, "input_", n, g * h, self.use_bias),
                          _Core(self, "recurrent_", h, g * h, self.use_bias)]
        else:
            self.cores = [_Core(self, "", n + h, g * h, self.use_bias)]

    def _matrices(self):
        """[(kernel2d, bias)] per core, as tensors."""
        if self.kind == "gru":
            b = (None, None) if self.bias is None else (self.bias[0], self.bias[1])
            return [(self.kernel, b[0]), (self.recurrent_kernel, b[1])]
        return [(ops.concatenate([self.kernel, self.recurrent_kernel], axis=0), self.bias)]

    def _run(self, x, k, collect=None, mask=None, training=None):
        """x (B*K, T, n) -> (K, B, T, H) sequence (or (K, B, H)); ``collect`` gets each core's
        inputs (calibration); ``mask`` (B*K, T): False steps keep the state."""
        t_steps, n, h = x.shape[1], x.shape[2], self.units
        xg = ops.reshape(xops.group_trials(x, k), (k, -1, t_steps, n))
        if mask is not None:  # (K, B, T, 1), the layout of xg
            m = ops.cast(ops.expand_dims(mask, -1), x.dtype)
            mask = ops.reshape(xops.group_trials(m, k), (k, -1, t_steps, 1)) > 0.5
        mats = self._matrices()
        state = ops.zeros((k, ops.shape(xg)[1], h), dtype=x.dtype)
        cell = ops.zeros_like(state) if self.kind == "lstm" else None
        outs = []
        order = range(t_steps - 1, -1, -1) if self.go_backwards else range(t_steps)
        for t in order:
            xt = xg[:, :, t]
            before = (state, cell)
            if self.kind == "gru":
                if collect is not None:
                    collect[0].append(xt)
                    collect[1].append(state)
                zx = self.cores[0].forward(xt, *mats[0], training)
                zh = self.cores[1].forward(state, *mats[1], training)
                z = self.recurrent_activation(zx[..., :h] + zh[..., :h])
                r = self.recurrent_activation(zx[..., h:2 * h] + zh[..., h:2 * h])
                cand = self.activation(zx[..., 2 * h:] + r * zh[..., 2 * h:])
                state = z * state + (1.0 - z) * cand
            else:
                inp = ops.concatenate([xt, state], axis=-1)
                if collect is not None:
                    collect[0].append(inp)
                zz = self.cores[0].forward(inp, *mats[0], training)
                if self.kind == "simple":
                    state = self.activation(zz)
                else:  # Keras's gate order: input, forget, cell, output
                    i = self.recurrent_activation(zz[..., :h])
                    f = self.recurrent_activation(zz[..., h:2 * h])
                    c = self.activation(zz[..., 2 * h:3 * h])
                    o = self.recurrent_activation(zz[..., 3 * h:])
                    cell = f * cell + i * c
                    state = o * self.activation(cell)
            if mask is not None:
                keep = mask[:, :, t]
                state = ops.where(keep, state, before[0])
                if cell is not None:
                    cell = ops.where(keep, cell, before[1])
            if self.return_sequences:
                outs.append(state)
        return ops.stack(outs, axis=2) if self.return_sequences else state

    def call(self, x, training=None, mask=None):
        _record(self, x, mask)
        k = self._k()
        y = self._run(x, k, mask=mask, training=training)
        if self.return_sequences:
            t = y.shape[2]
            return xops.ungroup_trials(ops.reshape(y, (k, -1, self.units)), k, (t, self.units))
        return xops.ungroup_trials(y, k, (self.units,))

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.units)
        return (input_shape[0], self.units)

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def core_weights(self):
        out = []
        for core, (w, b) in zip(self.cores, self._matrices()):
            out.append((core, ops.convert_to_numpy(w),
                        None if b is None else ops.convert_to_numpy(b)))
        return out

    def core_inputs(self, x, mask=None):
        collect = [[] for _ in self.cores]
        self._run(ops.convert_to_tensor(x), 1, collect,
                  mask=None if mask is None else ops.convert_to_tensor(mask))
        return [np.concatenate([ops.convert_to_numpy(a).reshape(-1, a.shape[-1]) for a in c])
                for c in collect]

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
                "use_bias": self.use_bias, "return_sequences": self.return_sequences,
                "go_backwards": self.go_backwards}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnalogTimeDistributed(keras.layers.Wrapper):
    """keras.layers.TimeDistributed around an analog layer (or a model holding analog layers):
    the wrapped layer reads every time step of every sample on the same crossbars.

    The wrapper only folds time into the batch, (N, T, ...) -> (N * T, ...), and back. With K
    Monte Carlo trials the batch holds each sample K times (sample-major, trial-minor,
    :mod:`nvmkit.engine.ops`), so the fold moves the trial axis inside: rows (b, k, t) become
    (b, t, k), each time step a sample of its own with its K trials together, which is the
    layout every analog layer reads (a plain reshape would hand trial k's time steps to other
    trials' crossbars)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        self.supports_masking = True

    def _trials(self) -> int:
        inner = [self.layer] if isinstance(self.layer, AnalogLayer) else [
            sub for sub in self.layer._flatten_layers(include_self=False, recursive=True)
            if isinstance(sub, AnalogLayer)]
        return inner[0]._k() if inner else 1

    def build(self, input_shape):
        if input_shape[1] is None:
            raise ConfigError(f"{self.name}: the number of time steps must be fixed; give "
                              "keras.Input a shape with the time steps")
        if not self.layer.built:
            self.layer.build((None, *input_shape[2:]))
        self.built = True

    def call(self, x, training=None, mask=None):
        k, t = self._trials(), x.shape[1]
        rest = tuple(x.shape[2:])
        if k > 1:
            x = ops.transpose(ops.reshape(x, (-1, k, t, *rest)), (0, 2, 1, *range(3, 3 + len(rest))))
        y = self.layer(ops.reshape(x, (-1, *rest)), training=training)
        out = tuple(y.shape[1:])
        if k > 1:
            y = ops.reshape(y, (-1, t, k, *out))
            y = ops.transpose(y, (0, 2, 1, *range(3, 3 + len(out))))
        return ops.reshape(y, (-1, t, *out))

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((input_shape[0], *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])

    def compute_mask(self, inputs, mask=None):
        return mask
