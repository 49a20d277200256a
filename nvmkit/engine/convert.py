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
Keras seed generator seeded from ``SeedSequence(seed, spawn_key=(2, layer index))``. What a chip
keeps (stuck cells, range variation, ADC offsets and gains; ``crossbar.chip``) comes from
``SeedSequence(seed, spawn_key=(3, chip, crossbar index, effect))``: chip ``k`` for trial ``k``
when every trial is a new chip, chip 0 for all trials when they reprogram the same chip.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np

from nvmkit.engine.crossbar import Chip, ProgrammedCrossbar
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError, NvmkitWarning
from nvmkit.engine import layers as layers_mod
from nvmkit.engine import wires
from nvmkit.engine.layers import (ATTENTION_PROJECTIONS, PACKAGE, AnalogConv, AnalogDense,
                                  AnalogDepthwiseConv2D, AnalogEinsumDense, AnalogLayer,
                                  AnalogMultiHeadAttention, AnalogRecurrent, AnalogTimeDistributed,
                                  FoldedBatchNormalization, einsum_product)

F32 = np.float32
_PROGRAM, _READ, _CHIP = 0, 2, 3

#: Keras weight layers that :func:`convert` puts on crossbars
#: the weight layers a following BatchNormalization folds into (a per-channel scale and shift of
#: their last axis)
FOLDABLE = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D")
ANALOG = (*FOLDABLE, "EinsumDense")
#: layers holding several crossbars: MultiHeadAttention's projections (EinsumDense layers)
ATTENTION = ("MultiHeadAttention",)
#: recurrent layers on crossbars (also keras.layers.RNN around one of these cells)
RECURRENT = {"SimpleRNN": "simple", "LSTM": "lstm", "GRU": "gru", "SimpleRNNCell": "simple",
             "LSTMCell": "lstm", "GRUCell": "gru", "PreActivationNoiseRNNCell": "simple"}
#: weight layers that cannot be mapped (yet): refused rather than silently kept digital, each
#: with what to do instead
_REFUSED = {
    "Conv3D": "replace it by Conv2D layers (e.g. TimeDistributed(Conv2D) per frame)",
    "Conv1DTranspose": "replace it by UpSampling1D followed by Conv1D",
    "Conv2DTranspose": "replace it by UpSampling2D followed by Conv2D",
    "Conv3DTranspose": "replace it by UpSampling3D followed by TimeDistributed(Conv2D)",
    "SeparableConv1D": "replace it by Conv1D(filters=channels, groups=channels) followed by a "
                       "1x1 Conv1D",
    "DepthwiseConv1D": "replace it by Conv1D(filters=channels * depth_multiplier, "
                       "groups=channels)",
    "RNN": "use one keras.layers.RNN (or SimpleRNN/LSTM/GRU layer) per cell; RNN takes a "
           "SimpleRNNCell, LSTMCell or GRUCell",
    "Bidirectional": "replace Bidirectional(LSTM) by two LSTMs (the second with "
                     "go_backwards=True) and a Concatenate",
    "ConvLSTM1D": "replace it by TimeDistributed(Conv1D) followed by an LSTM",
    "ConvLSTM2D": "replace it by TimeDistributed(Conv2D) followed by an LSTM",
    "ConvLSTM3D": "replace it by TimeDistributed(Conv3D) followed by an LSTM",
}
#: layers with weights that run digitally by design (docs/api.md's layer table): normalisations,
#: look-up tables and per-channel scales are not matrix products
DIGITAL_WEIGHT_LAYERS = ("BatchNormalization", "LayerNormalization", "GroupNormalization",
                         "UnitNormalization", "Normalization", "Embedding", "PReLU",
                         "Discretization", "IntegerLookup", "StringLookup", "TextVectorization",
                         "Hashing", "CategoryEncoding", "RMSNormalization")


def supported_weight_layers() -> str:
    """The weight layers :func:`convert` puts on crossbars, as messages list them."""
    return ", ".join([*ANALOG, "Conv1D/Conv2D(groups>1)", "MultiHeadAttention (its projections)",
                      "SimpleRNN", "LSTM", "GRU",
                      "RNN(SimpleRNNCell|LSTMCell|GRUCell)", "TimeDistributed(any of these)"])


def refusal(layer) -> str:
    """The one-line error for a weight layer that cannot go on crossbars."""
    cls = type(layer).__name__
    advice = _REFUSED.get(cls, "replace it by supported layers")
    return (f"convert: layer '{layer.name}' ({cls}) cannot be put on crossbars; {advice} "
            f"(supported weight layers: {supported_weight_layers()})")


def convert(model, device: Device, crossbar: CrossbarConfig | None = None, *, trials: int = 1,
            seed: int = 0, calibration_data=None, fold_batchnorm: bool = True):
    """A copy of ``model`` whose weight layers run on crossbars of ``device``.

    ``crossbar``: the crossbar settings (default: :class:`CrossbarConfig` defaults). ``trials``:
    Monte Carlo copies programmed at once. ``calibration_data``: model inputs on which the
    DAC/ADC full scales are calibrated (needed when the settings have converter bits without a
    fixed range). ``fold_batchnorm=False`` keeps BatchNormalization digital.
    """
    return _convert(model, device, crossbar, trials=trials, seed=seed,
                    calibration_data=calibration_data, fold_batchnorm=fold_batchnorm)[0]


def _convert(model, device, crossbar=None, *, trials=1, seed=0, calibration_data=None,
             fold_batchnorm=True):
    """:func:`convert`, also returning what device-aware training needs to copy the trained
    weights back: ``{id(new layer): the user's layer}`` and ``{id(weight layer): its folded
    BatchNormalization}``."""
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
    folds = _batchnorm_folds(model) if fold_batchnorm else {}  # id(weight layer) -> its BN
    folded_bn = {id(bn) for bn in folds.values()}
    originals: dict[int, keras.layers.Layer] = {}
    counter = iter(range(1 << 30))
    digital_warnings: list[str] = []
    training_lost: list[str] = []  # weight layers whose training-only settings the twin lacks
    common = {"device": device, "crossbar": config, "trials": int(trials)}

    def clone(layer):
        cls = type(layer).__name__
        if id(layer) in folded_bn:
            new = FoldedBatchNormalization(name=layer.name)
        elif cls in ANALOG:
            new = _analog_twin(layer, {**common, "seed": _read_seed(seed, next(counter))},
                               force_bias=id(layer) in folds)
        elif _recurrent_kind(layer) is not None:
            new = _recurrent_twin(layer, {**common, "seed": _read_seed(seed, next(counter))})
        elif cls in ATTENTION:
            c = layer.get_config()
            new = AnalogMultiHeadAttention(
                **c, **common, seeds=[_read_seed(seed, next(counter)) for _ in ATTENTION_PROJECTIONS])
        elif cls == "TimeDistributed" and _holds_weight_layer(layer.layer):
            # the wrapper only folds time into the batch: its layer (or model) goes on crossbars
            inner = layer.layer
            inner_new = (keras.models.clone_model(inner, clone_function=clone, recursive=True)
                         if isinstance(inner, keras.Model) else clone(inner))
            new = AnalogTimeDistributed(inner_new, name=layer.name)
        elif cls in _REFUSED:
            raise ConfigError(refusal(layer))
        else:
            held = [sub for sub in (layer._flatten_layers(include_self=False, recursive=True)
                                    if isinstance(layer, keras.layers.Layer) else ())
                    if _is_weight_layer(sub)]
            if held:
                raise ConfigError(
                    f"convert: layer '{layer.name}' ({cls}) holds the weight layer "
                    f"'{held[0].name}' ({type(held[0]).__name__}), which would run digitally "
                    f"inside it; take it out of the wrapper (TimeDistributed is mapped) "
                    f"(supported weight layers: {supported_weight_layers()})")
            new = layer.__class__.from_config(layer.get_config())
            if cls not in DIGITAL_WEIGHT_LAYERS and any(len(v.shape) >= 2
                                                        for v in getattr(layer, "weights", ())):
                digital_warnings.append(f"layer '{layer.name}' ({cls}) holds a weight matrix "
                                        "and runs digitally: nvmkit maps only the weight layers "
                                        "of docs/api.md's layer table")
        if isinstance(new, (AnalogLayer, AnalogMultiHeadAttention)):
            lost = _training_settings_lost(layer)
            if lost:
                training_lost.append(f"'{layer.name}' ({', '.join(lost)})")
        if not getattr(layer, "trainable", True):  # a frozen layer stays frozen (Keras's transfer learning); set
            new.trainable = False  # only then: setting True would unfreeze a wrapper's inner layer
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
    for new in _all_layers(out, attention=True):
        if isinstance(new, AnalogMultiHeadAttention):  # built by the clone's call: now its twins
            for twin in new.projections():
                attr = next(a for a in ATTENTION_PROJECTIONS if getattr(new, a, None) is twin)
                originals[id(twin)] = getattr(originals[id(new)], attr)
    for new in _all_layers(out):
        old = originals.get(id(new))
        if old is None:
            continue
        if isinstance(new, AnalogLayer):
            _copy_analog_weights(old, new, folds.get(id(old)))
        elif old.weights and not isinstance(new, FoldedBatchNormalization):
            _copy_digital_state(old, new)
    # stacklevel 3: the line of the user's call of convert() (this runs inside _convert)
    for line in digital_warnings:
        warnings.warn(f"convert: {line}", NvmkitWarning, stacklevel=3)
    if training_lost:
        warnings.warn(f"convert: layer(s) {', '.join(training_lost)} lose these training settings "
                      "on crossbars: training the converted model (fit, DeviceAwareTraining, "
                      "InPlaceTraining) runs without them; inference is unaffected",
                      NvmkitWarning, stacklevel=3)
    dominated = sorted((r, la.name) for la in analog_layers(out)
                       if (r := _bias_dominance(la)) > BIAS_DOMINANCE_WARNING)
    if dominated:
        ratio, name = dominated[-1]
        warnings.warn(f"convert: in {len(dominated)} layer(s) the bias row sets the crossbar's "
                      f"weight scale, up to {ratio:.3g}x the largest weight (layer '{name}'): "
                      f"the weights then use as little as {100 / ratio:.2g}% of the conductance "
                      "range and the device's errors are that much larger relative to them; "
                      "set mapping.bias='digital' to add the bias after the ADC",
                      NvmkitWarning, stacklevel=3)
    reprogram(out, seed)
    if needs_calibration(out):
        if calibration_data is None:
            raise ConfigError("convert: the converters have bits but no fixed range; pass "
                              "calibration_data (a few hundred model inputs) or set "
                              "converters.dac_range/adc_range")
        calibrate_converters(out, calibration_data)
    return out, originals, folds


def _training_settings_lost(layer) -> list[str]:
    """The settings of a user's weight layer that act only in training and that its analog twin
    does not apply: weight regularizers and constraints, a recurrent layer's dropouts
    (MultiHeadAttention's own dropout is Keras's, kept)."""
    c = layer.get_config() if hasattr(layer, "get_config") else {}
    cell = c.get("cell", {}).get("config", {}) if isinstance(c.get("cell"), dict) else {}
    lost = []
    for key, value in {**cell, **c}.items():
        if (key.endswith("_regularizer") or key.endswith("_constraint")) and value is not None:
            lost.append(key)
        elif key in ("dropout", "recurrent_dropout") and _recurrent_kind(layer) is not None and value:
            lost.append(f"{key}={value}")
    return sorted(set(lost))


#: warn when a layer's bias row makes the crossbar's weight scale this many times its weights'
#: (the weights then use under a quarter of the conductance range)
BIAS_DOMINANCE_WARNING = 4.0


def _bias_dominance(layer) -> float:
    """How many times the bias row enlarges the weight scale the crossbar maps to Gmax (the
    scale :class:`Crossbar` takes: the clip percentile of |weights and bias|), worst core."""
    m = layer.crossbar_config.mapping
    if m.bias != "row":
        return 1.0
    def scale(mags):
        return float(np.percentile(mags, m.clip_percentile)) if m.clip_percentile < 100 else float(mags.max())

    worst = 1.0
    for _, w, b in layer.core_weights():
        if b is None:
            continue
        mags = np.abs(np.asarray(w, F32)).reshape(-1)
        both = np.concatenate([mags, np.abs(np.asarray(b, F32)).reshape(-1)])
        alone = scale(mags)
        if alone > 0:
            worst = max(worst, scale(both) / alone)
    return worst


def _is_graph(model) -> bool:
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def _read_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(_READ, index)).generate_state(1)[0] >> 1)


def _all_layers(model, attention: bool = False) -> list:
    """Every layer, nested models and the inside of nvmkit's wrappers expanded, in order: an
    attention layer stands for its projections (itself too with ``attention=True``)."""
    out = []
    for layer in model.layers:
        out.extend(_expand(layer, attention))
    return out


def _expand(layer, attention: bool = False) -> list:
    if isinstance(layer, keras.Model):
        return _all_layers(layer, attention)
    if isinstance(layer, AnalogTimeDistributed):
        return _expand(layer.layer, attention)
    if isinstance(layer, AnalogMultiHeadAttention):
        return [layer] * attention + layer.projections()
    return [layer]


def analog_layers(model) -> list[AnalogLayer]:
    """The model's analog layers in order (nested models and wrapped layers included)."""
    return [layer for layer in _all_layers(model) if isinstance(layer, AnalogLayer)]


def _is_weight_layer(layer) -> bool:
    """A layer whose matrix product belongs on crossbars (mapped, or refused)."""
    cls = type(layer).__name__
    return (cls in ANALOG or cls in ATTENTION or cls in _REFUSED or _recurrent_kind(layer) is not None
            or cls == "TimeDistributed" and _holds_weight_layer(layer.layer))


def _holds_weight_layer(layer) -> bool:
    if isinstance(layer, keras.Model):
        return any(_is_weight_layer(sub) for sub in _user_layers(layer))
    return _is_weight_layer(layer)


def _user_layers(model) -> list:
    """Every layer of a user's model, nested models and TimeDistributed's layer expanded."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_user_layers(layer))
        elif type(layer).__name__ == "TimeDistributed":
            inner = layer.layer
            out.extend(_user_layers(inner) if isinstance(inner, keras.Model) else [inner])
        else:
            out.append(layer)
    return out


def _graph_models(model) -> list:
    """``model`` and every model nested in it, TimeDistributed's included: each has a graph of
    its own."""
    out = [model]
    for layer in model.layers:
        if type(layer).__name__ == "TimeDistributed":
            layer = layer.layer
        if isinstance(layer, keras.Model):
            out.extend(_graph_models(layer))
    return out


def _batchnorm_folds(model) -> dict:
    """id(weight layer) -> the BatchNormalization folded into it.

    Read from each (nested) model's own graph and keyed by layer identity, not name: names
    repeat across nested models (two instances of one Keras application base), and a layer's
    ``_inbound_nodes`` also hold calls outside the graph (Keras rebuilds a loaded Sequential
    model layer by layer, leaving extra nodes)."""
    folds = {}
    for sub in _graph_models(model):
        graph = getattr(sub, "_functional", None) or sub  # a Sequential keeps its graph aside
        nodes = [n for depth in getattr(graph, "_nodes_by_depth", {}).values() for n in depth]
        calls: dict[int, int] = {}  # id(layer) -> its calls in this graph
        readers: dict[int, int] = {}  # id(tensor) -> the calls that read it
        for node in nodes:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
            for t in node.input_tensors:
                readers[id(t)] = readers.get(id(t), 0) + 1
        for t in graph.outputs:  # a model output is read from outside
            readers[id(t)] = readers.get(id(t), 0) + 1
        for node in nodes:
            bn = node.operation
            if type(bn).__name__ != "BatchNormalization" or calls[id(bn)] != 1:
                continue
            if len(node.input_tensors) != 1:
                continue
            t = node.input_tensors[0]
            src = t._keras_history.operation
            if type(src).__name__ not in FOLDABLE or calls.get(id(src), 0) != 1 or readers[id(t)] != 1:
                continue
            if bn.axis not in (-1, len(t.shape) - 1):
                continue
            if getattr(src.activation, "__name__", "") != "linear":
                continue
            folds[id(src)] = bn
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
    groups = int(c.get("groups", 1) or 1)  # Keras's SeparableConv2D has no groups
    if cls == "EinsumDense":
        einsum_product(c["equation"], f"convert: layer '{name}'")  # refused in one line here
        return AnalogEinsumDense(c["equation"], c["output_shape"], c["bias_axes"], act, name=name,
                                 **common)
    if cls == "Dense":
        return AnalogDense(c["units"], act, c["use_bias"], name=name, **common)
    if cls == "Conv2D" and groups > 1 and layer.kernel.shape[-2] == 1:
        # one input channel per group: a depthwise convolution (ConvNeXt's), one crossbar of
        # kh*kw rows per channel, filters / channels columns each
        return AnalogDepthwiseConv2D(c["kernel_size"], c["strides"], c["padding"],
                                     c["filters"] // groups, c["dilation_rate"], act, c["use_bias"],
                                     name=name, **common)
    if cls in ("Conv1D", "Conv2D"):
        return AnalogConv(1 if cls == "Conv1D" else 2, c["filters"], c["kernel_size"], c["strides"],
                          c["padding"], c["dilation_rate"], act, c["use_bias"], groups=groups,
                          name=name, **common)
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
    elif isinstance(new, AnalogDepthwiseConv2D):  # Conv2D(groups=channels): (kh, kw, 1, C*mult)
        kh, kw, _, f = old.kernel.shape
        main = {"depthwise_kernel": _np(old.kernel).reshape(kh, kw, new.input_channels, -1)}
        last = "depthwise_kernel"
        cls = "DepthwiseConv2D"
    else:
        main = {"kernel": old.kernel}
        last = "kernel"
    arrays = {k: _np(v) for k, v in main.items()}
    bias = _np(old.bias) if getattr(old, "bias", None) is not None else None
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


def _copy_digital_state(old, new) -> None:
    """Everything the user's digital layer computes with: its weights, then whatever state it
    derives from them or keeps beside them, restored the way Keras's own saving restores it
    (``save_own_variables`` / ``load_own_variables``: ``Normalization`` derives the mean and
    variance it applies in ``finalize_state``, look-up layers keep their vocabulary)."""
    new.set_weights(old.get_weights())
    base = keras.layers.Layer.load_own_variables
    for o, n in zip(old._flatten_layers(include_self=True, recursive=True),
                    new._flatten_layers(include_self=True, recursive=True)):
        if type(n).load_own_variables is not base:
            store: dict = {}
            o.save_own_variables(store)
            n.load_own_variables(store)


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

def reprogram(model, seed: int, *, keep_chip: bool = False) -> None:
    """Redraw the programmed state of every analog layer from ``seed`` (see the module
    docstring), from the layers' current (user) weights; resets each layer's read-noise
    stream. The chips (``crossbar.chip``: stuck cells, range variation, ADC offsets) are drawn
    from ``seed`` too, unless ``keep_chip``: then the chips the model holds (those it was last
    programmed on, saved with it) are reprogrammed."""
    layers = analog_layers(model)
    if not layers:
        return
    trials = {layer.trials for layer in layers}
    if len(trials) != 1:
        raise ConfigError(f"program: the analog layers have different trial counts {sorted(trials)}; "
                          "convert the model once with one trials value")
    k = trials.pop()
    cores = [(core, core.crossbar(w, b), w, b) for layer in layers for core, w, b in layer.core_weights()]
    chips = [core.stored_chip() if keep_chip else draw_chips(xb, seed, i, k)
             for i, (core, xb, _, _) in enumerate(cores)]
    gens = [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_PROGRAM, t)))
            for t in range(k)]
    per_trial = [[xb.program(g, 1, chip=chip.select(t)) for (_, xb, _, _), chip in zip(cores, chips)]
                 for t, g in enumerate(gens)]
    for i, (core, xb, w, b) in enumerate(cores):
        states = [np.concatenate([p[i].states[j] for p in per_trial]) for j in range(xb.devices_per_weight)]
        user = np.vstack([w, b[None]]) if core.bias_row else w
        scale = None if per_trial[0][i].drift_scale is None else \
            np.concatenate([p[i].drift_scale for p in per_trial])
        core.assign(ProgrammedCrossbar(xb, states, drift_scale=scale), user.astype(F32))
        core.assign_chip(chips[i])
    # wire resistance: the largest drop of the whole programming must lie within the IR-drop model
    wires.check_range([(f"{core.layer.name}{core.tag}", core.wires, core.wire_kappa)
                       for core, *_ in cores if core.wires is not None])
    reseed_reads(model, seed)


def reseed_reads(model, seed: int) -> None:
    """Reset each analog layer's read-noise stream to ``SeedSequence(seed, spawn_key=(2, layer
    index))`` (what :func:`reprogram` does after programming), leaving the programmed state as
    it is."""
    for i, layer in enumerate(analog_layers(model)):
        layer.seed_generator.state.assign(
            np.array([_read_seed(seed, i), 0]).astype(layer.seed_generator.state.dtype))


def chip_streams(seed: int, chip: int, index: int):
    """``effect -> Generator``: the streams of chip ``chip`` of the ``index``-th crossbar (in the
    model's order of analog layers and their cores), ``SeedSequence(seed, spawn_key=(3, chip,
    index, effect))``."""
    return lambda effect: np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(_CHIP, chip, index, effect)))


def draw_chips(xbar, seed: int, index: int, trials: int) -> Chip:
    """The chips of crossbar ``xbar`` (the ``index``-th of the model) for ``trials`` trials: one
    chip for all trials (``chip.trials = "same-chip"``) or chip ``k`` for trial ``k``."""
    n = 1 if xbar.config.chip.trials == "same-chip" else trials
    return Chip.stack([xbar.draw_chip(chip_streams(seed, c, index)) for c in range(n)])


def needs_calibration(model) -> bool:
    return any(core.needs_calibration() for layer in analog_layers(model) for core in layer.cores)


def calibrate_converters(model, x, batch_size: int = 256) -> None:
    """Set every uncalibrated DAC/ADC full scale from the float reference pass of model inputs
    ``x`` (a few hundred training samples; an array, or the list/dict a multi-input model takes):
    DAC max |input|, ADC max |ideal partial sum|, over every call of a layer (a shared layer
    reads each of its inputs on the same converters; a masked recurrent layer's masked steps keep
    its state, as at inference)."""
    layers = analog_layers(model)
    if not layers:
        return
    if isinstance(x, (list, tuple)) and not all(hasattr(a, "shape") for a in x):
        x = np.asarray(x)  # nested Python lists: one array, not one input per element
    x = keras.tree.map_structure(_calibration_array, x)
    leaves = keras.tree.flatten(x)
    n = len(leaves[0]) if leaves else 0
    if n == 0 or any(len(a) != n for a in leaves):
        raise ConfigError("calibrate: calibration data must hold at least one sample, the same "
                          "number for every model input")
    for layer in layers:
        layer.ideal = True
    try:
        with layers_mod.recording_inputs() as seen:
            for s in range(0, n, batch_size):
                model(keras.tree.map_structure(lambda a: a[s:s + batch_size], x), training=False)
        for layer in layers:
            calls = seen.get(id(layer))
            if not calls:
                raise ConfigError(f"calibrate: the calibration data never reached layer "
                                  f"'{layer.name}'; set converters.dac_range/adc_range instead")
            rows = [[] for _ in layer.cores]
            for xin, mask in calls:  # the float pass inside the layer, call by call
                for i, r in enumerate(layer.core_inputs(xin, mask)):
                    rows[i].append(np.asarray(r, F32))
            for (core, w, b), r in zip(layer.core_weights(), rows):
                core.calibrate(r[0] if len(r) == 1 else np.concatenate(r), core.crossbar(w, b))
    finally:
        for layer in layers:
            layer.ideal = False


def _calibration_array(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(F32) if a.dtype.kind in "fb" else a  # integer tokens stay integers


def analog_weight_count(model) -> int:
    """The weights (and biases) of the layers :func:`convert` puts on crossbars: each trial holds
    a float32 copy of their programming deviation, and of their read variance where the device's
    read noise depends on the cell (``layers.AnalogLayer``)."""
    return sum(int(np.prod(v.shape)) for layer in _user_layers(model)
               if type(layer).__name__ in ANALOG + ATTENTION or _recurrent_kind(layer) is not None
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
_TRAINING_ONLY = {"InputLayer", "GaussianNoise", "PreActivationNoise", "Dropout", "GaussianDropout", "SpatialDropout1D",
                  "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout", "FoldedBatchNormalization"}


def analog_footprint(model) -> list:
    """Per layer: tiles, reads, activations and digital operations per inference (the contract
    with energy estimators, :class:`nvmkit.core.footprint.LayerFootprint`): a ReLU that directly
    follows a crossbar is its neurons (counted on the crossbar layer), softmax and max-pool are
    digital operations."""
    from nvmkit.core.footprint import LayerFootprint

    out: list = []
    # id(output tensor of a call) -> index in ``out`` of the linear analog footprint that computed
    # it: a ReLU reading that tensor is the crossbar's neurons, wherever it sits in the layer list
    producers: dict = {}
    for layer, in_shape, o_shape, repeat, src, dst in _footprint_sites(model):
        if layer is None or type(layer).__name__ in _TRAINING_ONLY:
            if src in producers:  # a nested model's output, or an identity at inference
                producers[dst] = producers.pop(src)
            continue
        cls = type(layer).__name__
        size = math.prod(d or 1 for d in o_shape) * repeat
        if isinstance(layer, AnalogMultiHeadAttention):
            # per head: scores q.k over (query, key) position pairs, a softmax over them, the
            # weighted sum of the values: activations by activations, digital
            apart, tq, tk = in_shape
            heads, kd, vd = layer.num_heads, layer.key_dim, layer.value_dim
            out.append(LayerFootprint(f"{layer.name}/attention", "attention",
                                      digital_ops=heads * apart * tq * tk * (kd + vd + 1) * repeat,
                                      extra={"heads": heads, "query_positions": tq,
                                             "key_positions": tk, "unattended_positions": apart,
                                             "key_dim": kd, "value_dim": vd,
                                             "digital_ops": "multiply-adds of scores and values, "
                                                            "one per softmax entry"}))
            continue
        if isinstance(layer, AnalogLayer):
            if in_shape is None or any(d is None for d in in_shape):
                raise ConfigError(f"footprint: layer '{layer.name}' reads inputs shaped "
                                  f"{in_shape} (a length known only at run time), so its reads "
                                  "per inference are unknown; give keras.Input a fixed shape")
            fps, act = _analog_footprints(layer, LayerFootprint, in_shape, o_shape, repeat)
            out.extend(fps)
            if act == "linear":
                producers[dst] = len(out) - 1
            elif act == "relu":
                out[-1] = _with_activations(out[-1], size)
            elif act == "softmax":
                out.append(LayerFootprint(f"{layer.name}/softmax", "softmax", digital_ops=size))
            else:  # tanh, sigmoid, ...: one digital evaluation per output
                out.append(LayerFootprint(f"{layer.name}/{act}", "activation", digital_ops=size))
            continue
        act = _activation_of(layer)
        if act == "relu" and src in producers:
            j = producers.pop(src)
            out[j] = _with_activations(out[j], size)
            continue
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


def _footprint_sites(model, repeat: int = 1) -> list:
    """(layer, input shape, output shape, uses per inference, id of the call's input, id of its
    output) of every call of every layer, nested models and analog wrappers expanded: a layer
    shared by two branches runs (and is priced) once per call, a nested model's layers once per
    call of the model, and a layer inside TimeDistributed once per time step, on the wrapper's
    shapes without the time axis. The input is the call's first input (a mask or a second operand
    is not the layer's data). Entries with layer None join a nested model's call to its graph:
    before its layers, the call's input is the model's input; after them, the model's output is
    the call's output."""
    calls = _graph_calls(model)
    out = []
    for layer in model.layers:
        for node in calls.get(id(layer), [None]):
            ins = layer.input if node is None else node.input_tensors
            first_in = _first(ins)
            first_out = _first(layer.output if node is None else node.output_tensors)
            src, dst = id(first_in), id(first_out)
            if isinstance(layer, AnalogMultiHeadAttention):
                out.extend(_attention_sites(layer, node, first_out, repeat, dst))
                continue
            inner = layer.layer if isinstance(layer, AnalogTimeDistributed) else layer
            steps = int(first_in.shape[1]) * repeat if inner is not layer else repeat
            if isinstance(inner, keras.Model):
                if inner is layer:  # the call's input is the nested model's input
                    out.append((None, None, None, steps, src, id(_first(inner.inputs))))
                out.extend(_footprint_sites(inner, steps))
                out.append((None, None, None, steps, id(_first(inner.outputs)), dst))
            elif inner is not layer:  # an analog layer in TimeDistributed
                out.append((inner, tuple(first_in.shape[2:]), tuple(first_out.shape[2:]), steps,
                            src, dst))
            else:
                single = not isinstance(ins, (list, tuple)) or len(ins) == 1 \
                    or isinstance(layer, AnalogLayer)
                out.append((layer, tuple(first_in.shape[1:]) if single else None,
                            tuple(first_out.shape[1:]), repeat, src, dst))
    return out


def _attention_sites(layer, node, first_out, repeat: int, dst: int) -> list:
    """An attention call's sites: its projections (each on the shapes it reads), and the layer
    itself standing for the digital attention between the value projection and the output one
    (its "input shape": (positions not attended over, attended query positions, attended key
    positions))."""
    if node is None:
        raise ConfigError(f"footprint: attention layer '{layer.name}' has no call in the graph")
    args, kwargs = node.arguments.args, node.arguments.kwargs
    query = args[0] if args else kwargs["query"]
    value = args[1] if len(args) > 1 else kwargs["value"]
    key = args[2] if len(args) > 2 else (kwargs.get("key") if kwargs.get("key") is not None else value)
    reads = {"_query_dense": query, "_gate_dense": query, "_key_dense": key, "_value_dense": value}
    sites = []
    for attr in ATTENTION_PROJECTIONS[:-1]:
        proj = getattr(layer, attr, None)
        if proj is not None:
            x = tuple(reads[attr].shape[1:])
            sites.append((proj, x, proj.compute_output_shape((None, *x))[1:], repeat, 0, 0))
    # the attended axes pair every query position with every key position; the other position
    # axes are batch-like (Keras's attention_axes, set by the layer's build)
    rank = len(query.shape)
    axes = {a % rank for a in (layer._attention_axes or range(1, rank - 1))}
    q_att = math.prod(query.shape[a] or 1 for a in axes)
    k_att = math.prod(key.shape[a] or 1 for a in axes)
    apart = math.prod(query.shape[a] or 1 for a in range(1, rank - 1) if a not in axes)
    sites.append((layer, (apart, q_att, k_att), tuple(first_out.shape[1:]), repeat, 0, 0))
    out_proj = layer._output_dense
    x = (*tuple(query.shape[1:-1]), *out_proj.contracted_dims)
    sites.append((out_proj, x, tuple(first_out.shape[1:]), repeat, 0, dst))
    return sites


def _graph_calls(model) -> dict:
    """``id(layer) -> [node, ...]``: the calls of each layer in ``model``'s own graph, in the
    order the graph runs them (a Sequential model's through its functional graph)."""
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    by_depth = getattr(graph, "_nodes_by_depth", None) or {}
    calls: dict = {}
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is not None and not node.is_input:
                calls.setdefault(id(node.operation), []).append(node)
    return calls


def _first(tensors):
    """The first tensor of a call's inputs or outputs (None for an input layer's empty inputs)."""
    while isinstance(tensors, (list, tuple)):
        if not tensors:
            return None
        tensors = tensors[0]
    return tensors


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


def _analog_footprints(layer, LayerFootprint, in_shape, o_shape, repeat: int) -> tuple[list, str]:
    from nvmkit.core.footprint import TileShape

    act = getattr(layer.activation, "__name__", "linear")
    dpw = 2 if layer.crossbar_config.mapping.scheme == "differential" else 1
    fps = []
    for i, core in enumerate(layer.cores):
        tiles = tuple(TileShape(r, c) for r, c in core.tiles())
        name = layer.name if i == 0 else f"{layer.name}/{core.tag.rstrip('_')}"
        common = {"tiles": tiles, "devices_per_weight": dpw, "n_in": core.rows, "n_out": core.n_out,
                  "adc_bits": core.adc_bits}
        if isinstance(layer, AnalogEinsumDense):  # one read per vector of contracted axes
            vectors = math.prod(in_shape[:len(in_shape) - len(layer.contracted)])
            fps.append(LayerFootprint(name, "dense", reads_per_inference=vectors * repeat,
                                      extra={"equation": layer.equation}, **common))
        elif isinstance(layer, AnalogDense):
            fps.append(LayerFootprint(name, "dense",
                                      reads_per_inference=math.prod(in_shape[:-1]) * repeat, **common))
        elif isinstance(layer, AnalogRecurrent):
            steps = in_shape[0]
            extra = {"time_steps": steps, "hidden": layer.units, "inputs_per_step": in_shape[-1]}
            if layer.kind != "simple":
                extra["cell"] = layer.kind
            acts = layer.units * steps if (layer.kind == "simple" and act == "relu") else 0
            ops_ = 0 if acts or i else layer.units * steps * {"simple": 1, "lstm": 5, "gru": 3}[layer.kind]
            fps.append(LayerFootprint(name, "rnn", reads_per_inference=steps * repeat,
                                      activations=acts * repeat, digital_ops=ops_ * repeat,
                                      extra=extra, **common))
        else:
            positions = math.prod(o_shape[:-1])
            kernel = list(layer.kernel_size) if not isinstance(layer, AnalogConv) or layer.rank == 2 \
                else [1, *layer.kernel_size]
            groups = getattr(layer, "groups", 1)  # a group's crossbar reads its channels only
            extra = {"kernel": kernel, "strides": list(getattr(layer, "strides", ())),
                     "padding": layer.padding, "in_channels": int(in_shape[-1]) // groups,
                     "filters": int(o_shape[-1]) // groups, "output_positions": positions}
            if groups > 1:
                extra["groups"] = groups
            if isinstance(layer, AnalogConv) and layer.rank == 1:
                extra = {**extra, "kernel": list(layer.kernel_size)}
            if isinstance(layer, AnalogDepthwiseConv2D) and layer.pointwise_filters is not None:
                mid = int(in_shape[-1]) * layer.depth_multiplier  # the depthwise part's channels
                if core.depthwise is not None:
                    extra["filters"] = mid
                else:  # the pointwise part: a 1x1 convolution of the depthwise output
                    extra.update(kernel=[1, 1], strides=[1, 1], padding="valid", in_channels=mid)
            if core.depthwise is not None:
                extra["depthwise"] = True
                common["n_in"] = core.rows  # per channel crossbar; MACs: see n_out
            fps.append(LayerFootprint(name, "conv", reads_per_inference=positions * repeat,
                                      extra=extra, **common))
    if isinstance(layer, AnalogRecurrent):
        act = "linear"  # the recurrent nonlinearities are counted on the layer itself
    return fps, act
