"""Converters build their straight-through gradient only when training (issue 21, point 9): the
inference pass gives the same numbers, bit for bit, and a training step the same gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import nvmkit.engine.ops as xops
from nvmkit.engine.convert import analog_layers, convert, repeat_trials
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.reram import ReRAM

L = keras.layers


def _models():
    """An MLP, a CNN with a depthwise layer and an LSTM, each with 8-bit DAC and ADC and tiles
    small enough that the ADC reads several row tiles."""
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((20,)), L.Dense(16, activation="relu"), L.Dense(4)])
    cnn = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                            L.DepthwiseConv2D(3), L.Flatten(), L.Dense(4)])
    rnn = keras.Sequential([keras.Input((5, 6)), L.LSTM(8), L.Dense(4)])
    rng = np.random.default_rng(0)
    xs = [rng.random((12, 20), dtype=np.float32) - 0.3,  # signed inputs: a signed DAC
          rng.random((12, 8, 8, 1), dtype=np.float32), rng.random((12, 5, 6), dtype=np.float32)]
    return list(zip((mlp, cnn, rnn), xs))


CFG = CrossbarConfig.from_dict({"nonideal": {"read_noise": False},
                                "mapping": {"tile_rows": 7},
                                "converters": {"dac_bits": 8, "adc_bits": 8}})


@pytest.mark.parametrize("which", [0, 1, 2], ids=["mlp", "cnn", "lstm"])
def test_inference_without_the_straight_through_expression_is_bit_identical(which):
    """The pass at inference (training False or None: no straight-through expression) against
    the pass with it (training True), with programming error, clipping and 8-bit converters on
    two trials, op by op (eager): equal bit for bit. Under ``tf.function`` (as predict and
    monte_carlo run it) the MLP and the LSTM are bit-identical too; the CNN's conv -> dense
    stack with several ADC row tiles is not: TensorFlow's graph optimiser (Grappler's arithmetic
    stage; equal with it switched off) rewrites the lighter graph differently, by 1-2 float32
    ulps (docs/plugins.md, "The engine's conventions"). Fails if the inference path rounds
    differently (e.g. a rounding of v instead of the clipped v, or a different step)."""
    model, x = _models()[which]
    analog = convert(model, ReRAM(), CFG, trials=2, seed=1, calibration_data=x)
    xr = repeat_trials(x, 2)
    train = np.asarray(analog(xr, training=True))
    for flag in (False, None):
        np.testing.assert_array_equal(np.asarray(analog(xr, training=flag)), train)
    graph = {t: tf.function(lambda z, t=t: analog(z, training=t))(tf.constant(xr)).numpy()
             for t in (True, False)}
    if which == 1:
        np.testing.assert_allclose(graph[False], graph[True], rtol=0, atol=4 * np.spacing(
            np.float32(np.abs(graph[True]).max())))
    else:
        np.testing.assert_array_equal(graph[False], graph[True])


def _gradients(analog, x, y, training):
    with tf.GradientTape() as tape:
        out = analog(x, training=training)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True))
    return [g for g in tape.gradient(loss, analog.trainable_variables)]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["mlp", "cnn", "lstm"])
def test_training_gradients_are_those_of_the_straight_through_read(which, monkeypatch):
    """Gradients of a training call (training=True) against those of the engine as it was before
    (the straight-through expression built on every call, forced here): equal, and none of
    them missing. Fails if a layer does not pass its training flag down to the converters (the
    ADC's rounding then cuts the gradient: None or zeros)."""
    model, x = _models()[which]
    analog = convert(model, ReRAM(), CFG, trials=1, seed=1, calibration_data=x)
    y = np.arange(len(x)) % 4
    got = _gradients(analog, x, y, True)
    monkeypatch.setattr(xops, "builds_gradient", lambda training: True)
    want = _gradients(analog, x, y, None)
    assert len(got) == len(want) == len(analog.trainable_variables)
    for g, w in zip(got, want):
        assert g is not None and w is not None
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    assert all(np.any(np.asarray(g) != 0) for g in got)


def test_inference_builds_no_straight_through_gradient():
    """The inference call carries no gradient through the ADC's rounding (the expression is not
    built), a training call does. Fails if the flag never reaches the ADC (always built: the
    saving of the issue is lost) or reaches it inverted."""
    model, x = _models()[0]
    cfg = CrossbarConfig.from_dict({"nonideal": {"read_noise": False, "programming_error": False},
                                    "converters": {"adc_bits": 8}})
    analog = convert(model, ReRAM(), cfg, seed=1, calibration_data=x)
    last = analog_layers(analog)[-1]
    for training, flows in ((None, False), (False, False), (True, True)):
        with tf.GradientTape() as tape:
            loss = keras.ops.sum(analog(x, training=training))
        g = tape.gradient(loss, last.kernel)
        assert (g is not None and bool(np.any(np.asarray(g) != 0))) == flows, training


def test_builds_gradient_reads_the_keras_flag():
    assert xops.builds_gradient(True) and xops.builds_gradient(tf.constant(True))
    assert not xops.builds_gradient(False) and not xops.builds_gradient(None)


@pytest.mark.parametrize("bits,signed", [(2, False), (8, False), (8, True), (5, "tensor")])
def test_fused_converter_rounds_as_the_op_by_op_one_at_every_threshold(bits, signed):
    """At inference on TensorFlow the converter is one XLA-compiled pass (``xops._fused``); the
    straight-through path and other backends run the op-by-op expression. Both on inputs at
    every threshold between two levels (the exact midpoint and 3 float32 neighbours each
    side), at the levels themselves and outside the range, with a full scale that is no power
    of 2: equal bit for bit. Fails if the fused pass divides otherwise (a product by the
    reciprocal step moves midpoints to the other level), rounds ties away from zero instead
    of to even, or clips elsewhere."""
    full_scale = np.float32(0.7310)
    is_signed = signed is True or signed == "tensor"
    levels = 2 ** (bits - 1) - 1 if is_signed else 2**bits - 1
    step = np.float32(full_scale / np.float32(levels))
    k = np.arange(-levels - 2 if is_signed else -2, levels + 2, dtype=np.float32)
    mid = np.concatenate([(k + np.float32(0.5)) * step, k * step])
    v = [mid]
    for _ in range(3):
        v = [np.nextafter(v[0], -np.inf, dtype=np.float32), *v, np.nextafter(v[-1], np.inf, dtype=np.float32)]
    v = np.concatenate(v).astype(np.float32)
    sign = tf.constant(1.0 if is_signed else 0.0) if signed == "tensor" else signed
    fused = xops.quantize(tf.constant(v), tf.constant(full_scale), bits, sign, training=False)
    op_by_op = xops._rounded(tf.constant(v), tf.constant(full_scale), bits, sign)
    np.testing.assert_array_equal(np.asarray(fused), np.asarray(op_by_op))
    assert len(np.unique(np.asarray(fused))) >= levels  # every level is reached
