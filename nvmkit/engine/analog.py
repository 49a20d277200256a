"""Deploy a trained Keras model onto simulated crossbars and run it with every read analog.

Each weight layer becomes one :class:`~nvmkit.engine.crossbar.Crossbar`; everything else (max-pool,
reshapes, softmax, a ReLU that does not follow a crossbar) runs digitally in numpy. Arrays carry
a leading Monte Carlo axis ``K`` (1 when shared by all trials), then the batch axis ``B``.

Where noise enters (Bennett et al., Sandia 2021, the time-multiplexed ReLU RNN):
- **Dense**: one read per inference.
- **Conv2D** is mapped kernel-wise (im2col, as in ISAAC, Shafiee et al., ISCA 2016): a crossbar of
  ``kh*kw*C_in (+ bias)`` rows by ``filters`` columns read once per output position. Positions are
  rows of the input matrix, so every position gets its own read-noise draw.
- **RNN**: ``[W_in; W_rec] (+ bias)`` stacked in ONE crossbar of ``(n_in + H)`` rows by ``H``
  columns, re-read at every time step: programming error is shared by all T steps, read noise is
  fresh at each.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nvmkit.engine.crossbar import Crossbar, ProgrammedCrossbar
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError
from nvmkit.core.footprint import LayerFootprint

F32 = np.float32

#: layers :func:`deploy` accepts (identity layers act only in training)
SUPPORTED = ("InputLayer", "Dense", "Conv2D", "MaxPooling2D", "Flatten", "Reshape", "Activation",
             "ReLU", "Softmax", "SimpleRNN", "RNN(PreActivationNoiseRNNCell)", "GaussianNoise",
             "Dropout", "GaussianDropout", "SpatialDropout2D")
_IDENTITY = {"InputLayer", "GaussianNoise", "Dropout", "GaussianDropout", "SpatialDropout1D",
             "SpatialDropout2D"}
_CONV_CHUNK_BYTES = 64 * 2**20  # im2col working set per chunk: bounded whatever the batch


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _relu(x):
    return np.maximum(x, F32(0), out=x)


# -- stages: one executable step of the deployed network ----------------------------------------

class _Stage:
    kind = ""
    crossbar: Crossbar | None = None

    def __init__(self, name: str, in_shape: tuple[int, ...]):
        self.name, self.in_shape = name, in_shape
        self.out_shape = in_shape

    def run(self, x, reader, rng):
        """x (K|1, B, *in_shape) -> (K', B, *out_shape); ``reader`` reads this stage's crossbar."""
        raise NotImplementedError

    def footprint(self) -> LayerFootprint:
        return LayerFootprint(self.name, self.kind)


class _Analog(_Stage):
    """A stage with a crossbar; ``relu`` is the activation applied to its output (fused)."""

    def __init__(self, name, in_shape, weights, bias, device, config, relu):
        super().__init__(name, in_shape)
        self.weights, self.bias, self.relu = weights, bias, relu
        self.crossbar = Crossbar(weights, bias, device, config, name=name)

    def _xbar_footprint(self, reads: int, activations: int, **extra) -> LayerFootprint:
        xb = self.crossbar
        return LayerFootprint(self.name, self.kind, tiles=xb.tiles,
                              devices_per_weight=xb.devices_per_weight, reads_per_inference=reads,
                              n_in=xb.rows, n_out=xb.n_out, activations=activations, extra=extra)


class _Dense(_Analog):
    kind = "dense"

    def __init__(self, name, in_shape, *args):
        super().__init__(name, in_shape, *args)
        self.out_shape = (*in_shape[:-1], self.crossbar.n_out)

    def run(self, x, reader, rng):
        k, b = x.shape[:2]
        y = reader.read(x.reshape(k, -1, self.in_shape[-1]), rng)
        y = y.reshape(y.shape[0], b, *self.out_shape)
        return _relu(y) if self.relu else y

    def footprint(self):
        reads = _prod(self.in_shape[:-1])  # Keras applies Dense along the last axis
        return self._xbar_footprint(reads, _prod(self.out_shape) if self.relu else 0)


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding: total so that out = ceil(size / s), the smaller half first."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _window_geometry(in_hw, window, strides, padding):
    pads, out = [], []
    for size, k, s in zip(in_hw, window, strides):
        p = _same_pad(size, k, s) if padding == "same" else (0, 0)
        pads.append(p)
        out.append((size + p[0] + p[1] - k) // s + 1)
    return tuple(pads), tuple(out)


def _windows(x, window, strides, pads, fill):
    """(K, B, H, W, C) -> view (K, B, Ho, Wo, C, kh, kw); pads copy only the given chunk."""
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, ((0, 0), (0, 0), *pads, (0, 0)), constant_values=fill)
    v = sliding_window_view(x, window, axis=(2, 3))
    return v[:, :, ::strides[0], ::strides[1]]


class _Conv(_Analog):
    kind = "conv"

    def __init__(self, name, in_shape, kernel, bias, device, config, relu, strides, padding):
        kh, kw, c_in, filters = kernel.shape
        super().__init__(name, in_shape, kernel.reshape(kh * kw * c_in, filters), bias, device,
                         config, relu)
        self.window, self.strides, self.padding = (kh, kw), strides, padding
        self.pads, (ho, wo) = _window_geometry(in_shape[:2], self.window, strides, padding)
        if ho < 1 or wo < 1:
            raise ConfigError(f"layer '{name}': a {kh}x{kw} kernel does not fit a "
                              f"{in_shape[0]}x{in_shape[1]} input; use padding='same'")
        self.out_shape = (ho, wo, filters)

    @property
    def positions(self) -> int:
        return self.out_shape[0] * self.out_shape[1]

    def run(self, x, reader, rng):
        k_in, b = x.shape[:2]
        k_out = max(k_in, getattr(reader, "trials", 1))
        rows, filters = self.crossbar.n_in, self.out_shape[2]
        per_sample = 4 * self.positions * (k_in * rows + 3 * k_out * filters)
        chunk = max(1, _CONV_CHUNK_BYTES // per_sample)
        out = np.empty((k_out, b, *self.out_shape), dtype=F32)
        for s in range(0, b, chunk):
            w = _windows(x[:, s:s + chunk], self.window, self.strides, self.pads, 0.0)
            n = w.shape[1]
            # Keras kernels are (kh, kw, C_in, filters): order each patch the same way
            patches = w.transpose(0, 1, 2, 3, 5, 6, 4).reshape(k_in, n * self.positions, rows)
            y = reader.read(patches, rng)
            out[:, s:s + n] = y.reshape(y.shape[0], n, *self.out_shape)
        return _relu(out) if self.relu else out

    def footprint(self):
        acts = _prod(self.out_shape) if self.relu else 0
        return self._xbar_footprint(self.positions, acts, kernel=list(self.window),
                                    strides=list(self.strides), padding=self.padding,
                                    in_channels=int(self.in_shape[2]), filters=int(self.out_shape[2]),
                                    output_positions=self.positions)


class _RNN(_Analog):
    kind = "rnn"

    def __init__(self, name, in_shape, kernel, recurrent, bias, device, config, return_sequences):
        self.steps, self.n_step = in_shape
        self.hidden = recurrent.shape[0]
        super().__init__(name, in_shape, np.vstack([kernel, recurrent]), bias, device, config, True)
        self.return_sequences = return_sequences
        self.out_shape = (self.steps, self.hidden) if return_sequences else (self.hidden,)

    def run(self, x, reader, rng):
        k_in, b = x.shape[:2]
        h = np.zeros((k_in, b, self.hidden), dtype=F32)
        seq = []
        for t in range(self.steps):
            xt = np.broadcast_to(x[:, :, t, :], (h.shape[0], b, self.n_step))
            h = _relu(reader.read(np.concatenate([xt, h], axis=-1), rng))  # fresh read noise
            if self.return_sequences:
                seq.append(h)
        return np.stack(seq, axis=2) if self.return_sequences else h

    def footprint(self):
        return self._xbar_footprint(self.steps, self.hidden * self.steps, time_steps=self.steps,
                                    hidden=self.hidden, inputs_per_step=self.n_step)


class _MaxPool(_Stage):
    kind = "maxpool"

    def __init__(self, name, in_shape, pool, strides, padding):
        super().__init__(name, in_shape)
        self.pool, self.strides = pool, strides
        self.pads, (ho, wo) = _window_geometry(in_shape[:2], pool, strides, padding)
        self.out_shape = (ho, wo, in_shape[2])

    def run(self, x, reader, rng):
        return _windows(x, self.pool, self.strides, self.pads, -np.inf).max(axis=(-2, -1))

    def footprint(self):
        # pool-1 comparisons per output (edge windows of 'same' padding have fewer: upper bound)
        return LayerFootprint(self.name, self.kind,
                              digital_ops=_prod(self.out_shape) * (_prod(self.pool) - 1),
                              extra={"pool": list(self.pool)})


class _Reshape(_Stage):
    kind = "flatten"

    def __init__(self, name, in_shape, target):
        super().__init__(name, in_shape)
        self.out_shape = tuple(target)

    def run(self, x, reader, rng):
        return x.reshape(*x.shape[:2], *self.out_shape)


class _ReLU(_Stage):
    kind = "relu"  # a ReLU not directly after a crossbar (e.g. after a max-pool)

    def run(self, x, reader, rng):
        return np.maximum(x, F32(0))

    def footprint(self):
        return LayerFootprint(self.name, self.kind, activations=_prod(self.out_shape))


class _Softmax(_Stage):
    kind = "softmax"

    def run(self, x, reader, rng):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def footprint(self):
        return LayerFootprint(self.name, self.kind, digital_ops=_prod(self.out_shape))


# -- the deployed network ------------------------------------------------------------------------

class _Digital:
    """Reads a weight matrix exactly (the float reference); optionally keeps a sample of its inputs
    so the crossbar's converter ranges can be calibrated on what it really sees."""

    trials = 1

    def __init__(self, stage: _Analog, record: bool = False):
        self.w = np.asarray(stage.weights, dtype=F32)
        self.b = None if stage.bias is None else np.asarray(stage.bias, dtype=F32)
        self.seen: list[np.ndarray] | None = [] if record else None
        self._pick = np.random.default_rng(0)  # which rows to keep: deterministic

    def read(self, x, rng):
        if self.seen is not None:
            self.seen.append(self._sample(x.reshape(-1, x.shape[-1])))
        y = np.matmul(x, self.w)
        return y + self.b if self.b is not None else y

    def _sample(self, m, n=1024):
        """The rows with the largest L1 norm (they set the peak currents) plus random others."""
        if len(m) <= 2 * n:
            return m.copy()
        top = np.argpartition(np.abs(m).sum(axis=1), -n)[-n:]
        return m[np.concatenate([top, self._pick.choice(len(m), n, replace=False)])]


class AnalogNetwork:
    """A Keras model deployed on crossbars: a chain of stages, some with a crossbar."""

    def __init__(self, stages: list[_Stage], input_shape: tuple[int, ...], device: Device,
                 config: CrossbarConfig, name: str = "network"):
        self.stages, self.input_shape = stages, input_shape
        self.device, self.config, self.name = device, config, name

    @property
    def crossbars(self) -> list[Crossbar]:
        return [s.crossbar for s in self.stages if s.crossbar is not None]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.stages[-1].out_shape if self.stages else self.input_shape

    def largest_activation(self) -> int:
        """Most values one input holds at any point of the forward pass (per trial)."""
        return max([_prod(self.input_shape)] + [_prod(s.out_shape) for s in self.stages])

    def program(self, rng: np.random.Generator | Sequence[np.random.Generator],
                trials: int = 1) -> "ProgrammedNetwork":
        """Draw the programmed state of ``trials`` independent programmings of every crossbar.

        ``rng`` is one generator for all trials, or one generator per trial: then trial k's
        programming depends only on its own generator, not on how many trials run together.
        """
        if isinstance(rng, np.random.Generator):
            progs = [x.program(rng, trials) for x in self.crossbars]
        else:
            gens = list(rng)
            if len(gens) != trials:
                raise ConfigError(f"program: got {len(gens)} generators for {trials} trials; "
                                  "pass one generator or one per trial")
            per_trial = [[x.program(g, 1) for x in self.crossbars] for g in gens]
            progs = [ProgrammedCrossbar(x, [np.concatenate([p[i].states[j] for p in per_trial])
                                            for j in range(x.devices_per_weight)])
                     for i, x in enumerate(self.crossbars)]
        it = iter(progs)
        return ProgrammedNetwork(self, [next(it) if s.crossbar is not None else None
                                        for s in self.stages])

    def needs_calibration(self) -> bool:
        conv = self.config.converters
        return any((conv.dac_bits is not None and x.dac_range is None)
                   or (conv.adc_bits is not None and x.adc_range is None) for x in self.crossbars)

    def calibrate(self, x_sample: np.ndarray) -> None:
        """Set each crossbar's DAC/ADC ranges from an ideal forward pass of ``x_sample``
        (prepared network inputs, e.g. a few hundred training images)."""
        x = self._check_input(x_sample)
        for s in self.stages:
            if s.crossbar is None:
                x = s.run(x, None, None)
                continue
            reader = _Digital(s, record=True)
            x = s.run(x, reader, None)
            s.crossbar.calibrate(np.concatenate(reader.seen))

    def reference_predict(self, x: np.ndarray) -> np.ndarray:
        """The float forward pass with the model's own weights, (B, ...) -> (B, classes)."""
        x = self._check_input(x)
        for s in self.stages:
            x = s.run(x, _Digital(s) if s.crossbar is not None else None, None)
        return x[0]

    def footprint(self) -> list[LayerFootprint]:
        """Per layer: tiles, reads, activations and digital operations per inference."""
        return [s.footprint() for s in self.stages]

    def summary(self) -> str:
        lines = [f"{self.name} on {self.device.name}: input {self.input_shape}"]
        for f in self.footprint():
            tiles = (f" {f.n_in}x{f.n_out} on {len(f.tiles)} tile(s), "
                     f"{f.reads_per_inference} read(s)/inference") if f.tiles else ""
            lines.append(f"  {f.name:<24} {f.kind:<8}{tiles}")
        return "\n".join(lines)

    def _check_input(self, x) -> np.ndarray:
        """Accept (B, *input_shape) or (K|1, B, *input_shape); return float32 with a K axis."""
        x = np.asarray(x, dtype=F32)
        n = len(self.input_shape)
        if x.ndim == n + 1:
            x = x[None]
        if x.ndim != n + 2 or tuple(x.shape[2:]) != tuple(self.input_shape):
            raise ConfigError(
                f"{self.name}: input of shape {x.shape} does not fit the network's input "
                f"{self.input_shape}; pass (batch, {', '.join(map(str, self.input_shape))}) or "
                "(trials, batch, ...) arrays, e.g. through the network mapper's prepare()")
        return x


class ProgrammedNetwork:
    """K programmed copies of an :class:`AnalogNetwork` (one per Monte Carlo trial)."""

    def __init__(self, network: AnalogNetwork, programmed: list[ProgrammedCrossbar | None]):
        self.network, self.programmed = network, programmed
        self.trials = next((p.trials for p in programmed if p is not None), 1)

    def predict(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(K|1, B, *input) or (B, *input) -> (K, B, *output): scores of every trial, fresh read
        noise on every crossbar read drawn from ``rng``."""
        x = self.network._check_input(x)
        if x.shape[0] not in (1, self.trials):
            raise ConfigError(f"predict: input has {x.shape[0]} trials, the network "
                              f"{self.trials}; pass 1 (shared) or {self.trials}")
        for s, p in zip(self.network.stages, self.programmed):
            x = s.run(x, p, rng)
        if x.shape[0] != self.trials:  # a network without crossbars
            x = np.broadcast_to(x, (self.trials, *x.shape[1:]))
        return x


# -- deploy: Keras layers -> stages --------------------------------------------------------------

def deploy(model, device: Device, crossbar: CrossbarConfig | None = None) -> AnalogNetwork:
    """Map a trained Keras model onto crossbars of ``device`` (see the module docstring)."""
    config = crossbar or CrossbarConfig()
    layers = _chain(model)
    try:
        in_shape = tuple(model.input_shape[1:])
    except (AttributeError, ValueError, TypeError):
        raise ConfigError(f"model '{model.name}' has no input shape; start it with "
                          "keras.Input(shape=...) before deploying") from None
    if any(d is None for d in in_shape):
        raise ConfigError(f"model '{model.name}' has a variable input shape {in_shape}; give "
                          "keras.Input a fixed shape (time steps included) before deploying")
    stages: list[_Stage] = []
    shape = in_shape
    for layer in layers:
        new = _to_stages(layer, shape, device, config, stages[-1] if stages else None)
        stages.extend(new)
        if new:
            shape = new[-1].out_shape
    out = tuple(model.output_shape[1:]) if hasattr(model, "output_shape") else shape
    if tuple(out) != tuple(shape):
        raise ConfigError(f"model '{model.name}': deployed output {shape} differs from the "
                          f"model's {out}; report this model's layers as a bug")
    return AnalogNetwork(stages, in_shape, device, config, name=model.name)


def _chain(model) -> list:
    """The model's layers in order, checked to form a single chain (nested models flattened)."""
    import keras

    layers = list(model.layers)
    if not isinstance(model, keras.Sequential):
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ConfigError(f"model '{model.name}' has {len(model.inputs)} inputs and "
                              f"{len(model.outputs)} outputs; deploy takes one-input, one-output chains")
        for prev, layer in zip(layers, layers[1:]):
            parents = {t._keras_history.operation.name
                       for node in layer._inbound_nodes for t in node.input_tensors}
            if parents != {prev.name}:
                raise ConfigError(f"layer '{layer.name}' reads {sorted(parents)} instead of the "
                                  f"layer before it ('{prev.name}'); deploy takes a single chain")
    flat = []
    for layer in layers:
        flat.extend(_chain(layer) if isinstance(layer, keras.Model) else [layer])
    return flat


def _act_name(layer, fn) -> str:
    name = getattr(fn, "__name__", str(fn))
    if name not in ("relu", "softmax", "linear"):
        raise ConfigError(f"layer '{layer.name}' ({type(layer).__name__}) uses activation "
                          f"'{name}'; only relu, softmax and linear can be deployed")
    return name


def _weights(layer, *arrays):
    out = [None if a is None else np.asarray(a, dtype=F32) for a in arrays]
    for a in out:
        if a is not None and not np.all(np.isfinite(a)):
            raise ConfigError(f"layer '{layer.name}' ({type(layer).__name__}) has NaN or infinite "
                              "weights; retrain it (e.g. with a lower learning rate) before deploying")
    return out


def _to_stages(layer, shape, device, config, last) -> list[_Stage]:
    cls = type(layer).__name__
    name = layer.name
    if cls in _IDENTITY:
        return []
    if cls == "Dense":
        act = _act_name(layer, layer.activation)
        w, b = _weights(layer, layer.kernel, layer.bias if layer.use_bias else None)
        st = _Dense(name, shape, w, b, device, config, act == "relu")
        return [st] + ([_Softmax(f"{name}/softmax", st.out_shape)] if act == "softmax" else [])
    if cls == "Conv2D":
        _check_conv(layer, shape)
        act = _act_name(layer, layer.activation)
        w, b = _weights(layer, layer.kernel, layer.bias if layer.use_bias else None)
        st = _Conv(name, shape, w, b, device, config, act == "relu", tuple(layer.strides),
                   layer.padding)
        return [st] + ([_Softmax(f"{name}/softmax", st.out_shape)] if act == "softmax" else [])
    if cls == "MaxPooling2D":
        if layer.data_format != "channels_last" or len(shape) != 3:
            raise ConfigError(f"layer '{name}' (MaxPooling2D) needs channels_last (H, W, C) input")
        return [_MaxPool(name, shape, tuple(layer.pool_size), tuple(layer.strides), layer.padding)]
    if cls == "Flatten":
        return [_Reshape(name, shape, (_prod(shape),))]
    if cls == "Reshape":
        target = list(layer.target_shape)
        if -1 in target:
            i = target.index(-1)
            target[i] = _prod(shape) // _prod([d for d in target if d != -1])
        return [_Reshape(name, shape, tuple(target))]
    if cls in ("Activation", "ReLU", "Softmax"):
        act = "softmax" if cls == "Softmax" else "relu" if cls == "ReLU" else \
            _act_name(layer, layer.activation)
        if cls == "ReLU" and (layer.max_value is not None or layer.negative_slope
                              or layer.threshold):
            raise ConfigError(f"layer '{name}' (ReLU) has max_value/negative_slope/threshold set; "
                              "only the plain ReLU can be deployed")
        if cls == "Softmax" and getattr(layer, "axis", -1) not in (-1, len(shape)):
            raise ConfigError(f"layer '{name}' (Softmax) must act on the last axis")
        if act == "linear":
            return []
        if act == "softmax":
            return [_Softmax(name, shape)]
        if isinstance(last, _Analog) and not last.relu and last.out_shape == shape:
            last.relu = True  # the neuron that reads this crossbar's columns
            return []
        return [_ReLU(name, shape)]
    if _is_rnn(layer):
        return [_rnn_stage(layer, shape, device, config)]
    raise ConfigError(f"layer '{name}' of class {cls} cannot be deployed; supported layers: "
                      f"{', '.join(SUPPORTED)}")


def _check_conv(layer, shape):
    name = layer.name
    if layer.data_format != "channels_last" or len(shape) != 3:
        raise ConfigError(f"layer '{name}' (Conv2D) needs channels_last (H, W, C) input")
    if tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1:
        raise ConfigError(f"layer '{name}' (Conv2D) uses dilation or groups; deploy maps plain "
                          "convolutions only (dilation_rate=1, groups=1)")
    if layer.padding not in ("same", "valid"):
        raise ConfigError(f"layer '{name}' (Conv2D) padding must be 'same' or 'valid'")


def _is_rnn(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.RNN)


def _rnn_stage(layer, shape, device, config) -> _RNN:
    name, cell = layer.name, layer.cell
    cname = type(cell).__name__
    units = getattr(cell, "units", None)
    k = getattr(cell, "kernel", None)
    r = getattr(cell, "recurrent_kernel", None)
    # a ReLU Elman cell: SimpleRNNCell(relu) or nvmkit.core.layers.PreActivationNoiseRNNCell (duck
    # typed on its weights so a gated cell, whose kernel is 3H or 4H wide, is refused)
    ok = (k is not None and r is not None and units is not None
          and tuple(k.shape)[1:] == (units,) and tuple(r.shape) == (units, units))
    if cname == "SimpleRNNCell":
        ok = ok and _act_name(layer, cell.activation) == "relu"
    elif cname != "PreActivationNoiseRNNCell":
        ok = ok and getattr(getattr(cell, "activation", None), "__name__", "relu") == "relu" \
            and cname not in ("LSTMCell", "GRUCell")
    if not ok:
        raise ConfigError(f"layer '{name}' ({type(layer).__name__} with {cname}) cannot be "
                          "deployed; use SimpleRNN(activation='relu') or "
                          "RNN(PreActivationNoiseRNNCell); supported layers: " + ", ".join(SUPPORTED))
    if layer.go_backwards or layer.stateful or layer.return_state:
        raise ConfigError(f"layer '{name}' ({type(layer).__name__}): go_backwards, stateful and "
                          "return_state cannot be deployed; set them to False")
    if len(shape) != 2:
        raise ConfigError(f"layer '{name}' ({type(layer).__name__}) needs (time steps, features) "
                          f"input, got {shape}")
    b = getattr(cell, "bias", None)
    k, r, b = _weights(layer, k, r, b)
    return _RNN(name, shape, k, r, b, device, config, bool(layer.return_sequences))
