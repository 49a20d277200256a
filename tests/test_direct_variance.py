"""A small convolution's variance map computed tap by tap inside the read noise's XLA pass
(``DIRECT_VARIANCE_ROWS``, issue 21, point 9): the same noise as the second convolution it
replaces, to float32 rounding, for every geometry a Keras convolution has."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nvmkit.engine import ops as xops
from nvmkit.engine.convert import convert, repeat_trials
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.generic import GenericDevice
from nvmkit_plugins.devices.sonos import SONOS

L = keras.layers
GEOMETRIES = [  # size, strides, dilation, padding, channels, image (height, width)
    ((3, 3), (1, 1), (1, 1), "valid", 1, (9, 11)),
    ((3, 3), (2, 2), (1, 1), "same", 3, (9, 11)),
    ((3, 3), (2, 2), (1, 1), "same", 2, (12, 12)),  # 'same' padding split unevenly (0 before, 1 after)
    ((2, 3), (1, 2), (2, 1), "same", 2, (9, 11)),
    ((5, 5), (1, 1), (1, 1), "valid", 1, (9, 11)),
    ((1, 4), (1, 1), (1, 1), "causal", 2, (1, 11)),  # a Conv1D seen as (1, k) on a one-row image
]


def _variance_map(x, v, size, strides, dilation, padding):
    """sum_i x_i**2 v_ij over each patch: TensorFlow's own float64 convolution of ``x**2`` with
    the variances as a kernel (the reference: no code shared with the path under test; 'causal'
    padded by hand, all of it before)."""
    x2 = np.square(x.astype(np.float64))
    if padding == "causal":
        x2 = np.pad(x2, ((0, 0), (0, 0), ((size[1] - 1) * dilation[1], 0), (0, 0)))
        padding = "valid"
    kernel = v.astype(np.float64).reshape(*size, x.shape[-1], -1)
    return np.asarray(tf.nn.conv2d(x2, kernel, strides=(1, *strides, 1), padding=padding.upper(),
                                   dilations=(1, *dilation, 1)))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("size, strides, dilation, padding, c, hw", GEOMETRIES)
def test_the_noise_of_the_taps_has_the_variance_of_the_convolution(size, strides, dilation, padding,
                                                                   c, hw, bias):
    """The noise the fused pass adds is ``sqrt(sum_i x_i**2 v_ij (+ v_bias)) * z`` with the very
    normals ``_add_read_noise`` draws from the same seed: checked against TensorFlow's float64
    convolution of ``x**2`` with the variances, to 1e-5 relative. Fails if a tap or a channel reads
    another cell's variance, the stride, dilation or padding (its uneven split included) is applied
    otherwise than by the convolution, the bias row's variance is missed, or other words are drawn."""
    rng = np.random.default_rng(5)
    x = rng.random((3, *hw, c), dtype=np.float32) + 0.1
    n_in, cols = size[0] * size[1] * c, 4
    v = (rng.random((n_in, cols)) + 0.1).astype(np.float32)
    vb = (rng.random(cols) + 0.1).astype(np.float32)
    s2 = _variance_map(x, v, size, strides, dilation, padding) + (vb if bias else 0.0)
    y = np.zeros(s2.shape, np.float32)
    gens = keras.random.SeedGenerator(4), keras.random.SeedGenerator(4)
    got = tf.function(lambda: xops._add_read_noise_from_taps(
        tf.constant(y), gens[0], tf.constant(x), tf.constant(v), tf.constant(vb) if bias else None,
        (size, strides, dilation, padding)))()
    z = np.asarray(tf.function(lambda: xops.standard_normal(s2.shape, gens[1]))()).astype(np.float64)
    np.testing.assert_allclose(np.asarray(got), np.sqrt(s2) * z, rtol=1e-5, atol=1e-6)
    assert np.std(z) > 0.5  # a draw, not zeros


def _models():
    return [
        keras.Sequential([keras.Input((12, 12, 1)), L.Conv2D(4, 3, activation="relu"),
                          L.Conv2D(3, 3), L.Flatten(), L.Dense(3)]),
        keras.Sequential([keras.Input((11, 13, 3)), L.Conv2D(5, 3, strides=2, padding="same"),
                          L.Conv2D(3, 2, dilation_rate=2, use_bias=False), L.Flatten(), L.Dense(3)]),
        keras.Sequential([keras.Input((20, 2)), L.Conv1D(4, 5, padding="causal"),
                          L.Conv1D(3, 3, strides=2), L.Flatten(), L.Dense(3)]),
        keras.Sequential([keras.Input((12, 12, 4)), L.Conv2D(4, 3, strides=2, padding="same", groups=2),
                          L.Flatten(), L.Dense(3)]),
    ]


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_converted_models_read_the_same_noise_either_way(monkeypatch, index):
    """Converted Conv2D (one and three channels, strides, 'same' split unevenly, dilation, no
    bias, two groups) and Conv1D ('causal') models with two Monte Carlo trials give the same
    outputs, to float32 rounding, and the same gradients in training, whether their small layers'
    variance maps are computed in the noise's pass or by the second convolution
    (``DIRECT_VARIANCE_ROWS`` 0), on a device whose read noise is large and depends on the state
    (so a wrong variance moves the output by far more than the tolerance); and the fused path is
    taken, once per small layer (per group) and trial. Fails if a layer passes another geometry
    than its convolution's, a group or a trial reads another's variances, the noise reaches the
    gradient, or the path is silently skipped."""
    model = _models()[index]
    rng = np.random.default_rng(index)
    model.set_weights([rng.normal(size=w.shape).astype("f4") for w in model.get_weights()])
    x = rng.random((4, *model.input_shape[1:]), dtype=np.float32)
    device = GenericDevice(sigma_prog=0.02, sigma_read=0.0, sigma_read_rel=0.3)
    calls = []
    fused = xops._add_read_noise_from_taps
    monkeypatch.setattr(xops, "_add_read_noise_from_taps", lambda *a, **k: calls.append(1) or fused(*a, **k))

    def run(rows):
        monkeypatch.setattr(xops, "DIRECT_VARIANCE_ROWS", rows)
        analog = convert(model, device, CrossbarConfig(), trials=2, seed=7)
        out = np.asarray(analog(tf.constant(repeat_trials(x, 2)), training=False))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(analog(tf.constant(repeat_trials(x, 2)), training=True)))
        grads = tape.gradient(loss, analog.trainable_variables)
        return out, [np.asarray(g) for g in grads]

    (direct, g_direct), (convolved, g_convolved) = run(27), run(0)
    cores = sum(layer.groups for layer in model.layers if isinstance(layer, (L.Conv1D, L.Conv2D))
                and np.prod(layer.kernel.shape[:-1]) <= 27)
    assert len(calls) == 2 * 2 * cores and cores >= 1  # two calls (inference, training), two trials
    for a, b in zip(g_direct, g_convolved):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    noiseless = np.asarray(convert(model, device, CrossbarConfig.from_dict(
        {"nonideal": {"read_noise": False}}), trials=2, seed=7)(tf.constant(repeat_trials(x, 2))))
    scale = np.abs(direct - noiseless).max()
    assert scale > 0.05 * np.abs(noiseless).max()  # the read noise is large here
    np.testing.assert_allclose(direct, convolved, rtol=0, atol=2e-5 * np.abs(convolved).max())


def test_deep_layers_and_many_row_tiles_keep_the_convolution(monkeypatch):
    """A layer of more than DIRECT_VARIANCE_ROWS rows (3x3 on 4 channels: 36) and a small layer
    split into row tiles read by ADCs keep the second convolution (their variance map is not a
    few products an output, or is read tile by tile)."""
    calls = []
    monkeypatch.setattr(xops, "_add_read_noise_from_taps", lambda *a, **k: calls.append(1))
    x = np.random.default_rng(0).random((2, 8, 8, 4), dtype=np.float32)
    model = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2D(3, 3)])
    convert(model, SONOS(), CrossbarConfig(), seed=1)(x)
    small = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(3, 3)])
    tiles = CrossbarConfig.from_dict({"mapping": {"tile_rows": 4},
                                      "converters": {"adc_bits": 12, "adc_range": 50.0}})
    noisy = np.asarray(convert(small, SONOS(), tiles, seed=1)(x[..., :1]))
    assert calls == []
    quiet = CrossbarConfig.from_dict({"mapping": {"tile_rows": 4}, "nonideal": {"read_noise": False},
                                      "converters": {"adc_bits": 12, "adc_range": 50.0}})
    assert not np.array_equal(noisy, np.asarray(convert(small, SONOS(), quiet, seed=1)(x[..., :1])))
