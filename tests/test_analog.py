"""Converting Keras models onto crossbars (``nvmkit.convert``): exactness with an ideal device,
where noise enters (per read, per programming, per RNN step), footprint counts, calibration and
bad weights.

Tests of the former numpy chain (``deploy``) not repeated here because tests/test_engine_*.py
cover them on the engine: per-trial generators independent of the trial count
(test_engine_physics::test_programmed_state_is_the_crossbars), refused layers
(test_engine_convert::test_refusals_are_one_line: LSTM, BatchNormalization, tanh, sigmoid and
branching graphs now convert, see test_engine_convert), input-shape errors (Keras's own).
"""

import keras
import numpy as np
import pytest

from nvmkit.engine.convert import analog_footprint, convert, repeat_trials, reprogram
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError

G_MIN, G_MAX = 1.0, 100.0


class Ideal(Device):
    """No non-ideality at all."""

    name = "test-ideal"

    def __init__(self):
        self._set_range(G_MIN, G_MAX)


class ReadOnly(Ideal):
    """Only read noise, a constant fraction of the conductance range."""

    name = "test-read"

    def __init__(self, frac=0.01):
        super().__init__()
        self.frac = frac

    def read_sigma(self, g):
        return np.full_like(g, self.frac * self.g_range)


class ProgOnly(Ideal):
    """Only programming error, a constant fraction of the conductance range."""

    name = "test-prog"

    def __init__(self, frac=0.01):
        super().__init__()
        self.frac = frac

    def programming_sigma(self, g, t=0.0):
        return np.full_like(g, self.frac * self.g_range)


IDEAL = CrossbarConfig.preset("ideal")
NOCLIP = CrossbarConfig.from_dict({"nonideal": {"clip_conductance": False}})
L = keras.layers


def randomize(model, seed):
    """Random weights and biases (biases nonzero so the bias row is exercised)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("f4") for w in model.get_weights()])
    return model


def assert_matches_keras(model, x, device=None, config=IDEAL):
    """Two programmed trials of an ideal crossbar read exactly what Keras computes."""
    ref = model.predict(x, verbose=0)
    analog = convert(model, device or Ideal(), config, trials=2, seed=1)
    y = analog.predict(repeat_trials(x, 2), batch_size=2 * len(x), verbose=0)
    y = y.reshape(len(x), 2, *ref.shape[1:])
    tol = 1e-5 * max(1.0, float(np.abs(ref).max()))  # float32 sums of a few hundred terms
    for k in range(2):
        np.testing.assert_allclose(y[:, k], ref, rtol=1e-5, atol=tol)
    return analog


def test_mlp_ideal_equals_keras():
    m = randomize(keras.Sequential([
        keras.Input((12,)), L.Dense(9, activation="relu"), L.Dropout(0.3), L.Dense(7),
        L.GaussianNoise(0.2), L.Activation("relu"), L.Dense(5, use_bias=False), L.ReLU(), L.Dense(4)]), 0)
    x = np.random.default_rng(3).random((20, 12)).astype("f4")
    assert_matches_keras(m, x)
    digital_bias = CrossbarConfig.from_dict({**IDEAL.to_dict(), "mapping": {"bias": "digital"}})
    assert_matches_keras(m, x, config=digital_bias)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_cnn_ideal_equals_keras(padding):
    m = randomize(keras.Sequential([
        keras.Input((9, 9, 2)), L.Conv2D(4, 3, padding=padding), L.GaussianNoise(0.1),
        L.Activation("relu"), L.MaxPooling2D(), L.Conv2D(3, (2, 3), padding=padding, activation="relu"),
        L.MaxPooling2D(padding="same"), L.Flatten(), L.Dense(5), L.Activation("softmax")]), 1)
    x = np.random.default_rng(4).random((6, 9, 9, 2)).astype("f4")
    assert_matches_keras(m, x)


def test_strided_conv_and_functional_model_equal_keras():
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(3, 3, strides=2, padding="same", activation="relu")(inp)
    h = L.Conv2D(2, 2, strides=(1, 2), padding="valid")(h)
    h = L.Reshape((-1,))(h)
    out = L.Dense(3, activation="softmax")(h)
    m = randomize(keras.Model(inp, out), 2)
    assert_matches_keras(m, np.random.default_rng(5).random((5, 8, 8, 1)).astype("f4"))


def test_rnn_ideal_equals_keras():
    m = randomize(keras.Sequential([
        keras.Input((5, 4)), L.SimpleRNN(6, activation="relu"), L.Dense(3)]), 3)
    x = np.random.default_rng(6).random((8, 5, 4)).astype("f4")
    assert_matches_keras(m, x)
    seq = randomize(keras.Sequential([
        keras.Input((5, 4)), L.SimpleRNN(6, activation="relu", return_sequences=True), L.Flatten(),
        L.Dense(3)]), 4)
    assert_matches_keras(seq, x)


def test_preactivation_noise_cell_equals_keras():
    from nvmkit.core.layers import PreActivationNoiseRNNCell

    m = randomize(keras.Sequential([
        keras.Input((4, 3)), L.RNN(PreActivationNoiseRNNCell(5, stddev=0.3)), L.Dense(2)]), 5)
    analog = assert_matches_keras(m, np.random.default_rng(7).random((6, 4, 3)).astype("f4"))
    assert analog_footprint(analog)[0].kind == "rnn"


def test_read_noise_fresh_per_read_programming_error_shared():
    m = randomize(keras.Sequential([keras.Input((6,)), L.Dense(4, activation="relu"), L.Dense(3)]), 6)
    x = repeat_trials(np.random.default_rng(8).random((10, 6)).astype("f4"), 3)
    reads = convert(m, ReadOnly(), NOCLIP, trials=3, seed=0)
    assert not np.allclose(reads(x), reads(x))
    progs = convert(m, ProgOnly(), NOCLIP, trials=3, seed=0)
    a = np.asarray(progs(x))
    np.testing.assert_array_equal(a, progs(x))
    a3 = a.reshape(10, 3, 3)
    assert not np.allclose(a3[:, 0], a3[:, 1])  # trials are programmed independently
    reprogram(progs, 9)
    assert not np.allclose(a, progs(x))


def accumulator_rnn(steps):
    """h_t = ReLU(h_{t-1} * 1 + 1): the last state sums every step's errors."""
    m = keras.Sequential([keras.Input((steps, 1)), L.SimpleRNN(1, activation="relu")])
    m.set_weights([np.zeros((1, 1), "f4"), np.ones((1, 1), "f4"), np.ones(1, "f4")])
    return m


# Both cells of a differential pair carry the same sigma s (in conductance), so a weight of the
# unit-scale crossbar (|W|max = 1) carries sigma_w = sqrt(2) s / (Gmax - Gmin) = sqrt(2) frac.
# With h_{t-1} ~ t-1, independent errors per step give var(h_T) = sigma_w^2 sum_t (1 + (t-1)^2);
# one error shared by all steps gives sigma_w^2 (T^2 + (sum_t (t-1))^2).
T = 8
FRESH = sum(1 + (t - 1) ** 2 for t in range(1, T + 1))  # 148
SHARED = T**2 + sum(t - 1 for t in range(1, T + 1)) ** 2  # 848


def test_rnn_read_noise_fresh_at_every_step():
    frac, n = 0.002, 4000
    analog = convert(accumulator_rnn(T), ReadOnly(frac), NOCLIP, seed=0)
    h = np.asarray(analog(np.zeros((n, T, 1), "f4")), dtype=np.float64)[:, 0]
    expected = 2 * frac**2 * FRESH
    # the mean of n draws of variance `expected` has std sqrt(expected / n): allow 5 of those
    assert abs(h.mean() - T) < 5 * np.sqrt(expected / n)
    # the sample variance of n normal draws has relative std sqrt(2/n) ~ 2.2%: allow 5 sigma
    assert abs(h.var() / expected - 1) < 5 * np.sqrt(2 / n)


def test_rnn_programming_error_shared_by_all_steps():
    frac, k = 0.002, 4000
    analog = convert(accumulator_rnn(T), ProgOnly(frac), NOCLIP, trials=k, seed=0)
    h = np.asarray(analog(np.zeros((k, T, 1), "f4")), dtype=np.float64)[:, 0]  # one sample, k trials
    expected = 2 * frac**2 * SHARED
    assert abs(h.var() / expected - 1) < 5 * np.sqrt(2 / k)


def test_footprint_counts():
    cnn = randomize(keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(4, 3, padding="same"), L.GaussianNoise(0.1), L.ReLU(),
        L.MaxPooling2D(), L.Flatten(), L.Dense(3, activation="softmax")]), 8)
    fp = analog_footprint(convert(cnn, Ideal()))
    assert [f.kind for f in fp] == ["conv", "maxpool", "flatten", "dense", "softmax"]
    conv, pool, _, dense, soft = fp
    assert (conv.reads_per_inference, conv.n_in, conv.n_out, conv.activations) == (64, 10, 4, 256)
    assert conv.devices_per_weight == 2 and conv.macs_per_inference == 64 * 10 * 4
    assert pool.digital_ops == 4 * 4 * 4 * 3  # 3 comparisons per 2x2 window
    assert (dense.reads_per_inference, dense.n_in, dense.n_out, dense.activations) == (1, 65, 3, 0)
    assert soft.digital_ops == 3

    rnn = randomize(keras.Sequential([keras.Input((4, 3)), L.SimpleRNN(5, activation="relu"), L.Dense(2)]), 9)
    tiny = CrossbarConfig.from_dict({"mapping": {"tile_rows": 4, "tile_cols": 2, "bias": "digital",
                                                 "scheme": "offset"}})
    r, d = analog_footprint(convert(rnn, Ideal(), tiny))
    assert (r.kind, r.reads_per_inference, r.n_in, r.n_out, r.activations) == ("rnn", 4, 8, 5, 20)
    assert r.devices_per_weight == 1
    assert [(t.rows, t.cols) for t in r.tiles] == [(4, 2), (4, 2), (4, 1)] * 2
    assert (d.n_in, d.activations) == (5, 0)
    r_row = analog_footprint(convert(rnn, Ideal()))[0]
    assert r_row.n_in == 3 + 5 + 1 and len(r_row.tiles) == 1


def test_converters_need_and_use_calibration():
    m = randomize(keras.Sequential([keras.Input((10,)), L.Dense(8, activation="relu"), L.Dense(3)]), 11)
    cfg = CrossbarConfig.from_dict({**IDEAL.to_dict(), "converters": {"dac_bits": 8, "adc_bits": 8}})
    x = np.random.default_rng(0).random((200, 10)).astype("f4")
    with pytest.raises(ConfigError, match="calibration_data"):
        convert(m, Ideal(), cfg)
    y, ref = np.asarray(convert(m, Ideal(), cfg, calibration_data=x)(x)), m.predict(x, verbose=0)
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert 0 < err < 0.05  # 8-bit converters: visible but small quantisation error


def test_bad_weights_fail_clearly():
    nan = keras.Sequential([keras.Input((3,)), L.Dense(2, name="broken")])
    nan.set_weights([np.full((3, 2), np.nan, "f4"), np.zeros(2, "f4")])
    with pytest.raises(ConfigError, match="broken.*NaN"):
        convert(nan, Ideal())
