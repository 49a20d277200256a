"""Convert a user's Keras model into one whose weight layers run on simulated crossbars.

:func:`convert` clones the model's graph (``keras.models.clone_model``, so any Sequential or
functional graph works, nested models included) and replaces each weight layer by its analog
counterpart from :mod:`nvmkit.engine.layers`; every other layer is a copy of the user's own
layer with the user's weights and runs digitally. A BatchNormalization that directly follows a
weight layer without activation (and is its only reader) is folded into that layer's weights
and bias (exact at inference, Ioffe and Szegedy, ICML 2015, eq. of the inference transform).
The result is an :class:`AnalogModel`: the cloned graph as a functional model whose
``summary()`` also lists each analog layer's device, mapping and tiles.

Monte Carlo: ``trials = K`` programmed copies; feed ``numpy.repeat(x, K, axis=0)`` (see
:func:`repeat_trials`) with a batch size that is a multiple of ``K``; output row ``b * K + k``
is sample ``b`` on trial ``k``.

Random streams, all from ``seed`` (as :mod:`nvmkit.engine.evaluate`): trial ``k`` programs every
crossbar, in layer order, from ``SeedSequence(seed, spawn_key=(0, k))``, so a trial's programming
does not depend on how many trials run together; each layer's read noise comes from its own
Keras seed generator seeded from ``SeedSequence(seed, spawn_key=(2, layer index))``.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from nvmkit.engine.crossbar import ProgrammedCrossbar
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError
from nvmkit.engine import wires
from nvmkit.engine.layers import (PACKAGE, AnalogConv, AnalogDense, AnalogDepthwiseConv2D,
                                  AnalogLayer, AnalogRecurrent, FoldedBatchNormalization)

F32 = np.float32
_PROGRAM, _READ = 0, 2

#: Keras weight layers that :func:`convert` puts on crossbars
ANALOG = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D")
#: recurrent layers on crossbars (also keras.layers.RNN around one of these cells)
RECURRENT = {"SimpleRNN": "simple", "LSTM": "lstm", "GRU": "gru", "SimpleRNNCell": "simple",
             "LSTMCell": "lstm", "GRUCell": "gru", "PreActivationNoiseRNNCell": "simple"}
#: weight layers that cannot be mapped (yet): refused rather than silently kept digital
_REFUSED = ("Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
            "SeparableConv1D", "DepthwiseConv1D", "EinsumDense", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "MultiHeadAttention")


def convert(model, device: Device, crossbar: CrossbarConfig | None = None, *, trials: int = 1,
            seed: int = 0, calibration_data=None, fold_batchnorm: bool = True):
    """A copy of ``model`` whose weight layers run on crossbars of ``device``.

    ``crossbar``: the crossbar settings (default: :class:`CrossbarConfig` defaults). ``trials``:
    Monte Carlo copies programmed at once. ``calibration_data``: model inputs on which the
    DAC/ADC full scales are calibrated (needed when the settings have converter bits without a
    fixed range). ``fold_batchnorm=False`` keeps BatchNormalization digital.
    """
    if not isinstance(device, Device):
        raise ConfigError(f"convert: device must be a nvmkit Device, got {type(device).__name__}; "
                          "create one with get_registry().create('device', NAME)")
    config = crossbar if crossbar is not None else CrossbarConfig()
    if not isinstance(config, CrossbarConfig):
        raise ConfigError("convert: crossbar must be a CrossbarConfig, e.g. CrossbarConfig.preset('ideal')")
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ConfigError(f"convert: trials must be an integer >= 1, got {trials!r}")
    if not isinstance(model, (keras.Sequential, keras.Model)) or not _is_graph(model):
        raise ConfigError(f"convert: model '{getattr(model, 'name', model)}' must be a built "
                          "Sequential or functional Keras model (call it on keras.Input first)")
    check_trials_fit(analog_weight_count(model), int(trials), "convert")
    folds = _batchnorm_folds(model) if fold_batchnorm else {}
    folded_bn = {bn.name for bn in folds.values()}
    originals: dict[int, keras.layers.Layer] = {}
    counter = iter(range(1 << 30))
    common = {"device": device, "crossbar": config, "trials": int(trials)}

    def clone(layer):
        cls = type(layer).__name__
        if layer.name in folded_bn:
            new = FoldedBatchNormalization(name=layer.name)
        elif cls in ANALOG:
            new = _analog_twin(layer, {**common, "seed": _read_seed(seed, next(counter))},
                               force_bias=layer.name in folds)
        elif _recurrent_kind(layer) is not None:
            new = _recurrent_twin(layer, {**common, "seed": _read_seed(seed, next(counter))})
        elif cls in _REFUSED:
            raise ConfigError(f"convert: layer '{layer.name}' ({cls}) cannot be put on crossbars yet; "
                              f"supported weight layers: {', '.join(ANALOG)}")
        else:
            new = layer.__class__.from_config(layer.get_config())
        originals[id(new)] = layer
        return new

    try:
        out = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"convert: model '{model.name}' could not be cloned ({first}); "
                          "use a Sequential or functional model") from None
    # the same graph (no layer is called again) as a model whose summary() lists the hardware
    ins, outs = ((out.inputs[0], out.outputs[0]) if isinstance(out, keras.Sequential)
                 else (out.input, out.output))  # a functional model's own input structure
    out = AnalogModel(inputs=ins, outputs=outs, name=out.name, trainable=out.trainable)
    if model.compiled:
        out.compile_from_config(model.get_compile_config())
    for new in _all_layers(out):
        old = originals.get(id(new))
        if old is None:
            continue
        if isinstance(new, AnalogLayer):
            _copy_analog_weights(old, new, folds.get(old.name))
        elif old.weights and not isinstance(new, FoldedBatchNormalization):
            new.set_weights(old.get_weights())
    reprogram(out, seed)
    if needs_calibration(out):
        if calibration_data is None:
            raise ConfigError("convert: the converters have bits but no fixed range; pass "
                              "calibration_data (a few hundred model inputs) or set "
                              "converters.dac_range/adc_range")
        calibrate_converters(out, calibration_data)
    return out


def _is_graph(model) -> bool:
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def _read_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(_READ, index)).generate_state(1)[0] >> 1)


def _all_layers(model) -> list:
    """Every layer, nested models expanded, in the model's order."""
    out = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def analog_layers(model) -> list[AnalogLayer]:
    """The model's analog layers in order (nested models included)."""
    return [layer for layer in _all_layers(model) if isinstance(layer, AnalogLayer)]


def _producer(layer):
    """The single layer whose output ``layer`` reads, or None."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    return nodes[0].input_tensors[0]._keras_history.operation


def _batchnorm_folds(model) -> dict:
    """weight layer name -> the BatchNormalization folded into it."""
    folds = {}
    for layer in _all_layers(model):
        if type(layer).__name__ != "BatchNormalization":
            continue
        src = _producer(layer)
        if src is None or type(src).__name__ not in ANALOG:
            continue
        ndim = len(layer.input.shape)
        if layer.axis not in (-1, ndim - 1):
            continue
        if getattr(src.activation, "__name__", "") != "linear":
            continue
        if len(src._inbound_nodes) != 1 or len(getattr(src, "_outbound_nodes", [])) != 1:
            continue
        folds[src.name] = layer
    return folds


def _analog_twin(layer, common: dict, force_bias: bool = False) -> AnalogLayer:
    cls = type(layer).__name__
    c = layer.get_config()
    if force_bias:  # a folded BatchNormalization brings a shift
        c["use_bias"] = True
    name = layer.name
    act = c.get("activation")
    if cls != "Dense" and c.get("data_format", "channels_last") != "channels_last":
        raise ConfigError(f"convert: layer '{name}' ({cls}) uses {c['data_format']}; build the model "
                          "channels_last")
    if cls in ("Conv1D", "Conv2D", "SeparableConv2D") and c.get("groups", 1) != 1:
        raise ConfigError(f"convert: layer '{name}' ({cls}) uses groups={c['groups']}; only "
                          "groups=1 can be put on crossbars")
    if cls == "Dense":
        return AnalogDense(c["units"], act, c["use_bias"], name=name, **common)
    if cls in ("Conv1D", "Conv2D"):
        return AnalogConv(1 if cls == "Conv1D" else 2, c["filters"], c["kernel_size"], c["strides"],
                          c["padding"], c["dilation_rate"], act, c["use_bias"], name=name, **common)
    return AnalogDepthwiseConv2D(
        c["kernel_size"], c["strides"], c["padding"], c["depth_multiplier"], c["dilation_rate"], act,
        c["use_bias"], pointwise_filters=c["filters"] if cls == "SeparableConv2D" else None,
        name=name, **common)


def _recurrent_kind(layer) -> str | None:
    cls = type(layer).__name__
    if cls in ("SimpleRNN", "LSTM", "GRU"):
        return RECURRENT[cls]
    if cls == "RNN":
        cells = getattr(layer.cell, "cells", None)
        return None if cells is not None else RECURRENT.get(type(layer.cell).__name__)
    return None


def _recurrent_twin(layer, common: dict) -> AnalogLayer:
    name, cell = layer.name, layer.cell
    kind = _recurrent_kind(layer)
    for flag in ("stateful", "return_state"):
        if getattr(layer, flag, False):
            raise ConfigError(f"convert: layer '{name}' ({type(layer).__name__}) has {flag}=True; "
                              "set it to False to put it on crossbars")
    if kind == "gru" and not getattr(cell, "reset_after", True):
        raise ConfigError(f"convert: layer '{name}' (GRU) has reset_after=False; use Keras's "
                          "default reset_after=True to put it on crossbars")
    if type(cell).__name__ == "PreActivationNoiseRNNCell":  # its noise acts in training only
        act, rec, use_bias = "relu", "sigmoid", True
    else:
        act = keras.activations.serialize(cell.activation)
        rec = keras.activations.serialize(getattr(cell, "recurrent_activation", keras.activations.sigmoid))
        use_bias = cell.use_bias
    return AnalogRecurrent(kind, cell.units, act, rec, use_bias, layer.return_sequences,
                           layer.go_backwards, name=name, **common)


def _copy_analog_weights(old, new: AnalogLayer, bn) -> None:
    """The user's weights into the analog twin, with a following BatchNormalization folded in:
    y = gamma (z - mean) / sqrt(var + eps) + beta = z * s + (beta - mean * s)."""
    cls = type(old).__name__
    if isinstance(new, AnalogRecurrent):
        cell = old.cell
        new.kernel.assign(_np(cell.kernel))
        new.recurrent_kernel.assign(_np(cell.recurrent_kernel))
        if new.bias is not None:
            new.bias.assign(_np(cell.bias).reshape(new.bias.shape))
        return
    if cls == "SeparableConv2D":
        main = {"depthwise_kernel": old.depthwise_kernel, "pointwise_kernel": old.pointwise_kernel}
        last = "pointwise_kernel"
    elif cls == "DepthwiseConv2D":
        main = {"depthwise_kernel": old.kernel}
        last = "depthwise_kernel"
    else:
        main = {"kernel": old.kernel}
        last = "kernel"
    arrays = {k: _np(v) for k, v in main.items()}
    bias = _np(old.bias) if old.use_bias else None
    if bn is not None:
        s, shift = _bn_affine(bn)
        k = arrays[last]
        if cls == "DepthwiseConv2D":  # output channel c*mult + j
            k = k * s.reshape(k.shape[-2], k.shape[-1])
        else:
            k = k * s
        arrays[last] = k.astype(F32)
        bias = ((bias if bias is not None else 0.0) * s + shift).astype(F32)
    if "depthwise_kernel" in arrays:
        new.depthwise_kernel.assign(arrays["depthwise_kernel"])
    if "pointwise_kernel" in arrays:
        new.pointwise_kernel.assign(arrays["pointwise_kernel"])
    if "kernel" in arrays:
        new.kernel.assign(arrays["kernel"])
    if bias is not None:
        if new.bias is None:
            raise ConfigError(f"convert: layer '{old.name}' has no bias to fold "
                              f"'{bn.name}' into; report this as a bug")
        new.bias.assign(bias)


def _np(v) -> np.ndarray:
    return np.asarray(v.numpy() if hasattr(v, "numpy") else keras.ops.convert_to_numpy(v), dtype=F32)


def _bn_affine(bn):
    """BatchNormalization at inference as a per-channel scale and shift."""
    var = _np(bn.moving_variance).astype(np.float64)
    mean = _np(bn.moving_mean).astype(np.float64)
    gamma = _np(bn.gamma).astype(np.float64) if bn.scale else 1.0
    beta = _np(bn.beta).astype(np.float64) if bn.center else 0.0
    s = gamma / np.sqrt(var + bn.epsilon)
    return s.astype(F32), (beta - mean * s).astype(F32)


# -- programming and calibration -----------------------------------------------------------------

def reprogram(model, seed: int) -> None:
    """Redraw the programmed state of every analog layer from ``seed`` (see the module
    docstring), from the layers' current (user) weights; resets each layer's read-noise
    stream."""
    layers = analog_layers(model)
    if not layers:
        return
    trials = {layer.trials for layer in layers}
    if len(trials) != 1:
        raise ConfigError(f"program: the analog layers have different trial counts {sorted(trials)}; "
                          "convert the model once with one trials value")
    k = trials.pop()
    cores = [(core, core.crossbar(w, b), w, b) for layer in layers for core, w, b in layer.core_weights()]
    gens = [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_PROGRAM, t)))
            for t in range(k)]
    per_trial = [[xb.program(g, 1) for _, xb, _, _ in cores] for g in gens]
    for i, (core, xb, w, b) in enumerate(cores):
        states = [np.concatenate([p[i].states[j] for p in per_trial]) for j in range(xb.devices_per_weight)]
        user = np.vstack([w, b[None]]) if core.bias_row else w
        core.assign(ProgrammedCrossbar(xb, states), user.astype(F32))
    # wire resistance: the largest drop of the whole programming must lie within the IR-drop model
    wires.check_range([(f"{core.layer.name}{core.tag}", core.wires, core.wire_kappa)
                       for core, *_ in cores if core.wires is not None])
    for i, layer in enumerate(layers):
        layer.seed_generator.state.assign(
            np.array([_read_seed(seed, i), 0]).astype(layer.seed_generator.state.dtype))


def needs_calibration(model) -> bool:
    return any(core.needs_calibration() for layer in analog_layers(model) for core in layer.cores)


def calibrate_converters(model, x, batch_size: int = 256) -> None:
    """Set every uncalibrated DAC/ADC full scale from the float reference pass of model inputs
    ``x`` (a few hundred training samples): DAC max |input|, ADC max |ideal partial sum|."""
    layers = analog_layers(model)
    if not layers:
        return
    for layer in layers:
        layer.ideal = True
    try:
        try:
            taps = keras.Model(model.inputs, [layer.input for layer in layers])
        except (AttributeError, ValueError) as e:
            raise ConfigError(f"calibrate: the analog layers' inputs cannot be tapped ({e}); "
                              "set converters.dac_range/adc_range instead") from None
        seen = taps.predict(np.asarray(x, F32), batch_size=batch_size, verbose=0)
        if len(layers) == 1:
            seen = [seen]
        for layer, xin in zip(layers, seen):
            inputs = layer.core_inputs(np.asarray(xin, F32))  # the float pass inside the layer
            for (core, w, b), xc in zip(layer.core_weights(), inputs):
                core.calibrate(xc, core.crossbar(w, b))
    finally:
        for layer in layers:
            layer.ideal = False


def analog_weight_count(model) -> int:
    """The weights (and biases) of the layers :func:`convert` puts on crossbars: each trial holds
    a float32 copy of their programming deviation, and of their read variance where the device's
    read noise depends on the cell (``layers.AnalogLayer``)."""
    return sum(int(np.prod(v.shape)) for layer in _all_layers(model)
               if type(layer).__name__ in ANALOG or _recurrent_kind(layer) is not None
               for v in layer.weights)


#: float32 arrays of the weights' shape that every trial holds whatever the device: the programmed
#: conductances' deviation (the read variance comes on top for state-dependent read noise), so
#: the check below refuses only what cannot fit
_ARRAYS_PER_WEIGHT_AND_TRIAL = 1


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say: Windows)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_trials_fit(n_weights: int, trials: int, owner: str) -> None:
    """Refuse, before anything is allocated, ``trials`` programmed copies of ``n_weights`` weights
    that could not fit in this machine's memory: they are held at once (one batched read for all
    trials), so the run would otherwise die of memory after training, or swap for hours."""
    total = machine_memory()
    need = n_weights * trials * 4 * _ARRAYS_PER_WEIGHT_AND_TRIAL
    if total is not None and need > total:
        raise ConfigError(f"{owner}: trials={trials} holds {trials} programmed copies of {n_weights:,} "
                          f"weights, at least {need / 2**30:,.0f} GiB, more than this machine's "
                          f"{total / 2**30:,.0f} GiB of memory; use fewer trials (the copies of "
                          f"{max(total // (n_weights * 4 * _ARRAYS_PER_WEIGHT_AND_TRIAL), 1):,} alone fill it)")


def repeat_trials(x, trials: int) -> np.ndarray:
    """Model input for ``trials`` Monte Carlo copies: each sample repeated ``trials`` times."""
    return np.repeat(np.asarray(x), trials, axis=0)


def describe_analog(model) -> str:
    """One line per analog layer: its device, mapping, crossbar shapes and tiles (what the
    converted model's ``summary()`` prints after Keras's table)."""
    lines = [f"{model.name}: analog layers"]
    for layer in analog_layers(model):
        lines.append(f"  {layer.name:<24} {type(layer).__name__:<22} {layer.describe()}")
    return "\n".join(lines)


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnalogModel(keras.Model):
    """The model :func:`convert` returns: a functional Keras model (built from the converted
    graph's inputs and outputs) whose ``summary()`` adds each analog layer's device, mapping,
    crossbar shapes and tiles after Keras's table. Keras's summary prints only a layer's name,
    class, output shape and parameter count and has no per-layer hook, so the model adds the
    lines. No custom constructor: it saves and loads as a plain functional model (safe mode)."""

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        super().summary(line_length=line_length, positions=positions, print_fn=print_fn,
                        expand_nested=expand_nested, show_trainable=show_trainable,
                        layer_range=layer_range)
        (print_fn or print)(describe_analog(self))


# -- footprint: what the converted model occupies and does per inference --------------------------

#: layers that act only in training (no footprint)
_TRAINING_ONLY = {"InputLayer", "GaussianNoise", "Dropout", "GaussianDropout", "SpatialDropout1D",
                  "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout", "FoldedBatchNormalization"}


def analog_footprint(model) -> list:
    """Per layer: tiles, reads, activations and digital operations per inference (the contract
    with energy estimators, :class:`nvmkit.core.footprint.LayerFootprint`): a ReLU that directly
    follows a crossbar is its neurons (counted on the crossbar layer), softmax and max-pool are
    digital operations."""
    from nvmkit.core.footprint import LayerFootprint

    out: list = []
    last = None  # index in ``out`` of an analog footprint whose neurons a ReLU may be
    for layer in _all_layers(model):
        cls = type(layer).__name__
        if cls in _TRAINING_ONLY:
            continue
        o_shape = tuple(layer.output.shape[1:])
        size = math.prod(d or 1 for d in o_shape)
        if isinstance(layer, AnalogLayer):
            fps, act = _analog_footprints(layer, LayerFootprint)
            out.extend(fps)
            last = len(out) - 1 if act == "linear" else None
            if act == "relu":
                out[-1] = _with_activations(out[-1], size)
            elif act == "softmax":
                out.append(LayerFootprint(f"{layer.name}/softmax", "softmax", digital_ops=size))
            elif act != "linear":  # tanh, sigmoid, ...: one digital evaluation per output
                out.append(LayerFootprint(f"{layer.name}/{act}", "activation", digital_ops=size))
            continue
        act = _activation_of(layer)
        if act == "relu" and last is not None:
            out[last] = _with_activations(out[last], size)
            last = None
            continue
        last = None
        if act == "relu":
            out.append(LayerFootprint(layer.name, "relu", activations=size))
        elif act == "softmax":
            out.append(LayerFootprint(layer.name, "softmax", digital_ops=size))
        elif act == "linear":
            continue
        elif cls in ("Flatten", "Reshape"):
            out.append(LayerFootprint(layer.name, "flatten"))
        elif cls == "MaxPooling2D":
            pool = tuple(layer.pool_size)
            out.append(LayerFootprint(layer.name, "maxpool", digital_ops=size * (math.prod(pool) - 1),
                                      extra={"pool": list(pool)}))
        else:  # any other digital layer: one operation per output value (an estimate)
            out.append(LayerFootprint(layer.name, cls.lower(), digital_ops=size,
                                      extra={"digital_ops": "estimate: one per output value"}))
    return out


def _activation_of(layer) -> str | None:
    cls = type(layer).__name__
    if cls == "ReLU":
        plain = layer.max_value is None and not layer.negative_slope and not layer.threshold
        return "relu" if plain else None
    if cls == "Softmax":
        return "softmax"
    if cls == "Activation":
        return getattr(layer.activation, "__name__", None)
    return None


def _with_activations(fp, n: int):
    import dataclasses

    return dataclasses.replace(fp, activations=fp.activations + n)


def _analog_footprints(layer, LayerFootprint) -> tuple[list, str]:
    from nvmkit.core.footprint import TileShape

    act = getattr(layer.activation, "__name__", "linear")
    in_shape = tuple(layer.input.shape[1:])
    o_shape = tuple(layer.output.shape[1:])
    dpw = 2 if layer.crossbar_config.mapping.scheme == "differential" else 1
    fps = []
    for i, core in enumerate(layer.cores):
        tiles = tuple(TileShape(r, c) for r, c in core.tiles())
        name = layer.name if i == 0 else f"{layer.name}/{core.tag.rstrip('_')}"
        common = {"tiles": tiles, "devices_per_weight": dpw, "n_in": core.rows, "n_out": core.n_out}
        if isinstance(layer, AnalogDense):
            fps.append(LayerFootprint(name, "dense", reads_per_inference=math.prod(in_shape[:-1]),
                                      **common))
        elif isinstance(layer, AnalogRecurrent):
            steps = in_shape[0]
            extra = {"time_steps": steps, "hidden": layer.units, "inputs_per_step": in_shape[-1]}
            if layer.kind != "simple":
                extra["cell"] = layer.kind
            acts = layer.units * steps if (layer.kind == "simple" and act == "relu") else 0
            ops_ = 0 if acts or i else layer.units * steps * {"simple": 1, "lstm": 5, "gru": 3}[layer.kind]
            fps.append(LayerFootprint(name, "rnn", reads_per_inference=steps, activations=acts,
                                      digital_ops=ops_, extra=extra, **common))
        else:
            positions = math.prod(o_shape[:-1])
            kernel = list(layer.kernel_size) if not isinstance(layer, AnalogConv) or layer.rank == 2 \
                else [1, *layer.kernel_size]
            extra = {"kernel": kernel, "strides": list(getattr(layer, "strides", ())),
                     "padding": layer.padding, "in_channels": int(in_shape[-1]),
                     "filters": int(o_shape[-1]), "output_positions": positions}
            if isinstance(layer, AnalogConv) and layer.rank == 1:
                extra = {**extra, "kernel": list(layer.kernel_size)}
            if core.depthwise is not None:
                extra["depthwise"] = True
                common["n_in"] = core.rows  # per channel crossbar; MACs: see n_out
            fps.append(LayerFootprint(name, "conv", reads_per_inference=positions, extra=extra,
                                      **common))
    if isinstance(layer, AnalogRecurrent):
        act = "linear"  # the recurrent nonlinearities are counted on the layer itself
    return fps, act
