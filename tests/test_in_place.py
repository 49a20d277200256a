"""In-place learning (issue 22, points 3 and 4): the conductances as the state, the backward read
through the transposed crossbars, the update by pulses (counts, trains, pairs, bounds, noise).

Each test names the bug it catches; the planted versions were run once and failed (see the
report of the branch that added this file)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from nvmkit import CrossbarConfig
from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError
from nvmkit.engine.in_place import InPlaceTraining, UpdateTables, apply_pulses, stochastic_counts

tf = pytest.importorskip("tensorflow")


class LinearDevice(Device):
    """A linear update model stated for the tests: every up pulse adds ``step`` (uS), every down
    pulse removes ``step * asym``, with cycle-to-cycle spread ``sigma`` and a device-to-device
    spread ``d2d``; optional programming and read spreads (state-independent)."""

    name = "linear-test"

    def __init__(self, step=2.0**-24, asym=1.0, sigma=0.0, d2d=0.0, max_pulses=None,
                 prog=0.0, read=0.0):
        self._set_range(0.0, 1.0)
        self.step, self.asym, self.sigma, self.prog, self.read = step, asym, sigma, prog, read
        self.d2d = self.pulse_step_d2d = d2d
        self.max_pulses = max_pulses

    def pulse_step(self, g, up):
        g = np.asarray(g, np.float32)
        return np.full_like(g, self.step if up else -self.step * self.asym)

    def pulse_step_sigma(self, g, up):
        return np.full_like(np.asarray(g, np.float32), self.sigma)

    def programming_sigma(self, g, t=0.0):
        return np.full_like(np.asarray(g, np.float32), self.prog)

    def read_sigma(self, g):
        return np.full_like(np.asarray(g, np.float32), self.read)


class SoftBoundsDevice(LinearDevice):
    """Steps shrinking toward the bound they approach (not constant: applied pulse by pulse)."""

    name = "softbounds-test"

    def pulse_step(self, g, up):
        g = np.asarray(g, np.float32)
        return self.step * ((1.0 - g) if up else -g)


class NoUpdate(Device):
    name = "no-update-test"

    def __init__(self):
        self._set_range(0.0, 1.0)


def _ideal():
    return CrossbarConfig.preset("ideal")


def _mlp():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


def _cnn():
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])


def _rnn():
    keras.utils.set_random_seed(5)
    return keras.Sequential([keras.Input((4, 5)), keras.layers.SimpleRNN(6),
                             keras.layers.Dense(3, activation="softmax")])


def _matrices(model) -> list[np.ndarray]:
    """Each weight layer's crossbar matrix (kernel rows, bias row last), as the trainer reads it."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.SimpleRNN):  # [W; U; b] in one crossbar
            c = layer.cell
            out.append(np.vstack([c.kernel.numpy(), c.recurrent_kernel.numpy(), c.bias.numpy()[None]]))
        elif hasattr(layer, "kernel"):
            k = layer.kernel.numpy()
            out.append(np.vstack([k.reshape(-1, k.shape[-1]), layer.bias.numpy()[None]]))
    return out


# -- point 4: plain SGD, step for step ------------------------------------------------------------

def _bundled_ideal():
    from nvmkit import get_registry

    device = get_registry().create("device", "ideal", {})
    if not device.pulse_updatable:
        pytest.skip("the bundled ideal device states no update model")
    return get_registry().create("device", "ideal", {"update_step": 2.0**-24})


@pytest.mark.parametrize("build, shape, bias, device", [
    (_mlp, (10,), "row", LinearDevice), (_cnn, (6, 6, 1), "row", LinearDevice),
    (_rnn, (4, 5), "row", LinearDevice), (_mlp, (10,), "digital", LinearDevice),
    (_mlp, (10,), "row", _bundled_ideal)],
    ids=["dense", "conv", "rnn", "dense-digital-bias", "dense-bundled-ideal"])
def test_ideal_device_learns_as_plain_sgd_step_for_step(build, shape, bias, device):
    """Ideal update model (linear, symmetric, noiseless) at unlimited resolution (a step of
    g_range 2^-24, closed form) on the ideal crossbar: every step's weights read from the
    conductances equal a Keras SGD loop's on the same batches to float32 precision.
    Catches: a wrong sign or scale of the update (lr, the 1/B of the mean loss, current_to_weight),
    the gradient taken at the float weights instead of the read ones, a pulse rounding bias, the
    bias row left out. The bundled ``ideal`` device at ``update_step = 2^-24`` (its unlimited
    resolution) gives the same."""
    rng = np.random.default_rng(0)
    x = rng.random((48, *shape)).astype("float32")
    y = rng.integers(0, 3, 48)
    model, ref = build(), build()
    xbar = _ideal()
    xbar.mapping.bias = bias  # "digital": the bias takes SGD steps digitally, beside the pulses
    tr = InPlaceTraining(model, device(), xbar, learning_rate=0.1, headroom=2.0)
    ref.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    assert tr.tables.closed and tr.tables.max_pulses == 2**24
    moved = 0.0
    for s in range(6):
        xb, yb = x[(s % 3) * 16:(s % 3 + 1) * 16], y[(s % 3) * 16:(s % 3 + 1) * 16]
        start = _matrices(ref)
        tr.train_step(xb, yb)
        ref.train_on_batch(xb, yb)
        if bias == "digital":  # the crossbar holds the kernels; the biases are the twin's own
            for layer, want in zip(tr.layers, _matrices(ref)):
                np.testing.assert_allclose(layer.bias.numpy(), want[-1], rtol=0, atol=1e-6)
        got_all = tr.weights() if bias == "row" else [
            np.vstack([w, np.zeros((1, w.shape[1]), np.float32)]) for w in tr.weights()]
        for got, want, before, cells in zip(got_all, _matrices(ref), start, tr._cells.values()):
            if bias == "digital":
                got, want, before = got[:-1], want[:-1], before[:-1]
            # the premise: the weights stay inside the mapped range (no bound acts)
            assert np.abs(want).max() < cells.w_scale
            scale = np.abs(want).max()
            assert np.abs(got - want).max() <= 1e-6 * scale, (s, np.abs(got - want).max() / scale)
            moved = max(moved, np.abs(want - before).max() / scale)
    assert moved > 1e-3  # the steps are far above the tolerance: the comparison is not vacuous


def test_forward_and_backward_read_the_conductances_not_the_float_weights():
    """With the float kernels overwritten, the forward output is x W_g and the gradient with
    respect to the input is delta W_g^T, W_g the weights read from the programmed (noisy)
    conductances. Catches: the transposed read using the float weights, or W_g untransposed /
    another layer's matrix, and a forward that reads the kernel."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(5)])
    cfg = CrossbarConfig.from_dict({"nonideal": {"read_noise": False, "quantize": False}})
    tr = InPlaceTraining(model, LinearDevice(prog=0.02), cfg, loss=lambda y, p: p)
    wg = tr.weights()[0]
    layer = tr.layers[0]
    assert np.abs(wg[:7] - layer.kernel.numpy()).max() > 1e-3  # programming error is there
    layer.kernel.assign(np.zeros_like(layer.kernel.numpy()))
    layer.bias.assign(np.ones_like(layer.bias.numpy()))
    x = tf.constant(np.random.default_rng(1).standard_normal((4, 7)).astype("float32"))
    c = tf.constant(np.random.default_rng(2).standard_normal((4, 5)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tr.model(x, training=True)
        loss = tf.reduce_sum(out * c)
    dx = tape.gradient(loss, x).numpy()
    np.testing.assert_allclose(out.numpy(), x.numpy() @ wg[:7] + wg[7], atol=1e-5)
    np.testing.assert_allclose(dx, c.numpy() @ wg[:7].T, atol=1e-5)


def test_backward_read_goes_through_the_converters():
    """With DAC and ADC bits, the transposed read quantises the error (scaled by its largest
    magnitude per read) on the DAC's signed levels and the read's outputs on the ADC's, scaled
    by their largest magnitude: ``s Q_adc(Q_dac(delta / s) W_g^T)``. Catches: the backward read
    without converters, or with the forward's calibrated ranges (gradients of another scale)."""
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(5, use_bias=False)])
    cfg = CrossbarConfig.from_dict({"nonideal": {"programming_error": False, "read_noise": False,
                                                 "quantize": False},
                                    "converters": {"dac_bits": 4, "adc_bits": 4}})
    rng = np.random.default_rng(3)
    tr = InPlaceTraining(model, LinearDevice(), cfg, loss=lambda y, p: p,
                         calibration_data=rng.random((50, 7)).astype(np.float32))
    wg = tr.weights()[0]
    x = tf.constant(rng.random((6, 7)).astype("float32"))
    c = rng.standard_normal((6, 5)).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tr.model(x, training=True) * c)
    dx = tape.gradient(loss, x).numpy()

    def q(v, r):  # a signed 4-bit converter of full scale r: 2^3 - 1 levels a side
        step = r / 7.0
        return np.round(np.clip(v, -r, r) / step) * step

    s = np.abs(c).max(axis=1, keepdims=True)
    clean = q(c / s, 1.0) @ wg.T
    want = q(clean, np.abs(clean).max(axis=1, keepdims=True)) * s
    np.testing.assert_allclose(dx, want, rtol=0, atol=1e-5)
    assert np.abs(dx - c @ wg.T).max() > 1e-3  # the converters act


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_backward_read_converts_each_column_tile(kind):
    """With column tiles (``tile_cols = 2``, 5 outputs: tiles of 2, 2 and 1 columns), the
    transposed read converts each tile's partial sums on its own ADC, full scale the tile's
    largest output per read, and adds the conversions: ``s sum_t Q_adc_t(Q_dac(delta / s)_t
    W_t^T)``, as the forward read converts per row tile and the training-energy estimator counts
    one conversion per row and tile. A convolution (its transposed read through the kernel's
    gradient) masks the other tiles' columns. Catches: one conversion of the full column sum
    (the former rule; planted once, both cases failed), a tile's full scale taken over all
    tiles, the masks or slices of another tile's columns."""
    rng = np.random.default_rng(5)
    keras.utils.set_random_seed(8)
    if kind == "dense":
        model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(5, use_bias=False)])
        x = tf.constant(rng.random((6, 7)).astype("float32"))
        c = rng.standard_normal((6, 5)).astype("float32")
        calib = rng.random((50, 7)).astype(np.float32)
    else:
        model = keras.Sequential([keras.Input((5, 5, 2)), keras.layers.Conv2D(5, 3, use_bias=False)])
        x = tf.constant(rng.random((3, 5, 5, 2)).astype("float32"))
        c = rng.standard_normal((3, 3, 3, 5)).astype("float32")
        calib = rng.random((20, 5, 5, 2)).astype(np.float32)
    cfg = CrossbarConfig.from_dict({"nonideal": {"programming_error": False, "read_noise": False,
                                                 "quantize": False},
                                    "mapping": {"tile_cols": 2},
                                    "converters": {"dac_bits": 4, "adc_bits": 4}})
    tr = InPlaceTraining(model, LinearDevice(), cfg, loss=lambda y, p: p, calibration_data=calib)
    wg = tr.weights()[0]
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tr.model(x, training=True) * c)
    dx = tape.gradient(loss, x).numpy()

    def q(v, r):  # a signed 4-bit converter of full scale r: 2^3 - 1 levels a side
        step = r / 7.0
        return np.round(np.clip(v, -r, r) / step) * step

    axes = tuple(range(1, c.ndim))  # per read: a row of a dense read, a whole sample of a conv
    s = np.abs(c).max(axis=axes, keepdims=True)
    d = q(c / s, 1.0)

    def transposed(dt, w):  # delta W^T of the layer for errors dt and a weight matrix w
        if kind == "dense":
            return dt @ w.T
        xv = tf.zeros_like(x)
        with tf.GradientTape() as t:
            t.watch(xv)
            out = tf.nn.conv2d(xv, w.reshape(3, 3, 2, 5), 1, "VALID")
        return t.gradient(out, xv, output_gradients=tf.constant(dt)).numpy()

    want, whole = 0.0, transposed(d, wg)
    for c0, c1 in ((0, 2), (2, 4), (4, 5)):
        mask = np.zeros(5, np.float32)
        mask[c0:c1] = 1
        clean = transposed(d * mask, wg * mask)
        r = np.abs(clean).max(axis=axes, keepdims=True)
        want = want + q(clean, np.where(r > 0, r, 1.0))  # an all-zero read: any full scale
    want = want * s
    np.testing.assert_allclose(dx, want, rtol=0, atol=1e-5)
    one_adc = q(whole, np.abs(whole).max(axis=axes, keepdims=True)) * s  # the former rule
    assert np.abs(one_adc - want).max() > 1e-3  # the tiles' conversions are what is tested


def test_backward_read_noise_has_the_transposed_variance():
    """The transposed read draws its own noise: over many reads of the same error, dx has mean
    delta W_g^T and variance sum_j delta_j^2 var_ij (the read variance of the pair, in weight
    units; the error scaled by its largest magnitude and back, which leaves it unchanged).
    Tolerances: 5.5 standard errors of the mean and of the variance. Catches: no backward noise,
    noise drawn with the forward's (row) variance, the scaling of noise management applied twice."""
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, use_bias=False)])
    cfg = CrossbarConfig.from_dict({"nonideal": {"programming_error": False, "quantize": False}})
    read = 0.01
    tr = InPlaceTraining(model, LinearDevice(read=read), cfg, loss=lambda y, p: p)
    wg = tr.weights()[0]
    cells = next(iter(tr._cells.values()))
    m = 4000
    c = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    x = tf.constant(np.ones((m, 6), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tr.model(x, training=True)
        loss = tf.reduce_sum(out * c)
    dx = tape.gradient(loss, x).numpy()
    mean = c @ wg.T
    var = float(np.sum(c**2)) * 2 * (read * cells.c2w) ** 2  # both cells of every pair
    se = math.sqrt(var / m)
    assert np.all(np.abs(dx.mean(axis=0) - mean) < 5.5 * se), (dx.mean(axis=0) - mean) / se
    ratio = dx.var(axis=0, ddof=1) / var
    assert np.all(np.abs(ratio - 1) < 5.5 * math.sqrt(2 / (m - 1))), ratio


# -- the pulses ---------------------------------------------------------------------------------------

def _pulse(states, counts, device, closed=None, **kw):
    out = apply_pulses([tf.constant(np.asarray(s, np.float32)) for s in states],
                       tf.constant(np.asarray(counts, np.int32)), UpdateTables(device),
                       closed=closed, **kw)
    return [o.numpy() for o in out]


@pytest.mark.parametrize("closed", [True, False], ids=["closed-form", "pulse-loop"])
def test_pair_rule_empties_the_opposite_cell_first(closed):
    """Differential pairs: raising a weight lowers G- while it is above g_min + step/2, then
    raises G+; lowering mirrors it; a weight crosses zero by handing over. Catches: pulses on the
    wrong cell of a pair (G- raised to raise a weight, both cells moved, the threshold ignored)."""
    d = LinearDevice(step=0.0625)
    gp = [0.5, 0.5, 0.125, 0.0, 0.0]
    gn = [0.0, 0.0, 0.0, 0.25, 0.0625]
    counts = [4, -4, -4, 2, 3]
    new_p, new_n = _pulse([[gp], [gn]], [counts], d, closed=closed)
    np.testing.assert_allclose(new_p[0], [0.75, 0.25, 0.0, 0.0, 0.125], atol=1e-7)
    np.testing.assert_allclose(new_n[0], [0.0, 0.0, 0.125, 0.125, 0.0], atol=1e-7)
    # and the weight moved by the count's steps each time
    np.testing.assert_allclose((new_p[0] - new_n[0]) - (np.array(gp) - np.array(gn)),
                               np.array(counts) * 0.0625, atol=1e-7)


def test_closed_form_equals_the_pulse_loop():
    """The closed form (constant noiseless steps) is the pulse-by-pulse loop's result, with
    asymmetric steps and per-cell factors. Catches: a closed form that drifts from the loop's
    rule (the threshold, the hand-over count, the bounds)."""
    rng = np.random.default_rng(5)
    d = LinearDevice(step=2.0**-6, asym=0.5)
    gp = rng.integers(0, 65, (30, 20)) / 64.0
    gn = np.where(rng.random((30, 20)) < 0.5, 0.0, rng.integers(0, 65, (30, 20)) / 64.0)
    counts = rng.integers(-40, 41, (30, 20))
    f = [tf.constant(rng.choice([0.5, 1.0, 2.0], (30, 20)).astype(np.float32)) for _ in range(2)]
    a = _pulse([gp, gn], counts, d, closed=True, factors=f)
    b = _pulse([gp, gn], counts, d, closed=False, factors=f)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, atol=1e-6)


@pytest.mark.parametrize("device", [LinearDevice(step=0.25), SoftBoundsDevice(step=0.5)],
                         ids=["linear", "soft-bounds"])
def test_pulses_stop_at_the_bounds(device):
    """No pulse takes a cell past g_max or g_min (and the offset scheme's single cell likewise);
    a cell beyond a bound stays there. Catches: bounds not applied, a cell beyond g_max pulled
    down by the clip."""
    g = np.array([[0.9, 0.1, 1.2, 0.5]], np.float32)
    up = _pulse([g], [[10, -10, 3, 0]], device, closed=False)[0][0]
    assert up[0] <= 1.0 and up[1] >= 0.0 and up[2] == np.float32(1.2) and up[3] == np.float32(0.5)
    if isinstance(device, LinearDevice) and not isinstance(device, SoftBoundsDevice):
        assert up[0] == 1.0 and up[1] == 0.0  # the linear step reaches the bounds


def test_max_pulses_caps_an_update():
    """Counts beyond the device's max_pulses are cut (the trainer's cap). Catches: no cap."""
    d = LinearDevice(step=0.01, max_pulses=3)
    tr_tables = UpdateTables(d)
    assert tr_tables.max_pulses == 3
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, use_bias=False)])
    tr = InPlaceTraining(model, d, _ideal(), learning_rate=100.0, headroom=4.0,
                         loss=lambda y, p: p)
    before = tr.conductances()[0]["states"]
    tr.train_step(np.ones((2, 3), np.float32), np.zeros(2))
    after = tr.conductances()[0]["states"]
    moved = np.abs(after[0] - before[0]) + np.abs(after[1] - before[1])
    assert np.all(moved <= 3 * 0.01 + 1e-6) and np.any(moved > 2.5 * 0.01)
    # every weight asked for more than 3 pulses: 3 fired on each of the 6 weights
    assert tr.pulses_fired() == [{"layer": tr.layers[0].name, "core": "", "cells": 12, "pulses": 18}]
    assert tr.pulses_per_cell() == {tr.layers[0].name: 18 / 12}  # one step


def test_one_pulse_moves_by_the_update_model_with_its_spreads():
    """One up pulse on 40,000 cells: the mean step is the model's, its spread the cycle-to-cycle
    sigma combined with the device-to-device factor's, ``sqrt((step d2d)^2 + sigma^2)``; each
    cell's factor is fixed (a second identical trainer draws the same). Tolerances: 5.5 standard
    errors. Catches: noise not drawn or drawn with the wrong sigma, d2d ignored or redrawn."""
    step, sigma, d2d = 0.002, 0.0005, 0.2
    d = LinearDevice(step=step, sigma=sigma, d2d=d2d)
    n = 200
    g = np.full((n, n), 0.5, np.float32)
    rng = np.random.default_rng(7)
    f = np.maximum(1 + d2d * rng.standard_normal((n, n)), 0).astype(np.float32)
    out = _pulse([g], np.ones((n, n)), d, factors=[tf.constant(f)],
                 seed=tf.constant([11, 12], tf.int32))[0]
    dz = (out - g).ravel().astype(np.float64)
    sd = math.sqrt((step * d2d) ** 2 + sigma**2)
    assert abs(dz.mean() - step) < 5.5 * sd / n
    assert abs(dz.std() / sd - 1) < 5.5 * math.sqrt(1 / (2 * n * n))


def test_stochastic_trains_have_the_analytic_count_distribution():
    """Gokmen-Vlasov trains: the per-cell count over M identical reads is minus a sum of M*L
    Bernoulli(p_i q_j) coincidences with p_i q_j = scale |x_i delta_j| / L: mean
    ``-scale M x_i delta_j``, variance ``M L pq (1 - pq)``. Tolerance: 5.5 standard errors per
    cell. Catches: a wrong coincidence probability (the balancing, the sqrt, slots), signs lost."""
    m, slots, scale = 40000, 10, 4.0
    x0 = np.array([0.2, -0.5, 1.0, 0.0], np.float32)
    d0 = np.array([0.3, -0.1, 0.05], np.float32)
    counts = stochastic_counts(np.tile(x0, (m, 1)), np.tile(d0, (m, 1)), scale, slots,
                               tf.constant([3, 4], tf.int32)).numpy()
    pq = scale * np.abs(np.outer(x0, d0)) / slots
    assert pq.max() <= 1
    mean = -scale * m * np.outer(x0, d0)
    sd = np.sqrt(m * slots * pq * (1 - pq))
    assert np.all(counts[x0 == 0] == 0)
    z = (counts - mean)[x0 != 0] / sd[x0 != 0]
    assert np.all(np.abs(z) < 5.5), z


def test_stochastic_training_follows_sgd_on_average():
    """The trainer's stochastic update: with an ideal fine-step device the mean weight change of
    one update over many trains equals SGD's (checked with a large slot count on one step, all
    reads of the batch): the counts' mean is -lr grad / dw within 5.5 standard errors (binomial
    variance bounded by the mean count). Catches: trains built from the wrong signals (x after
    the DAC, delta of another layer) or a scale off by the batch size."""
    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ref = keras.models.clone_model(model)
    ref.set_weights(model.get_weights())
    step, lr = 1e-3, 0.05
    x = np.random.default_rng(9).random((2000, 4)).astype(np.float32)
    y = np.zeros(2000, np.int64)

    def lossf(y, p):  # a linear loss: the gradient of every output is a constant
        return keras.ops.sum(p * keras.ops.convert_to_tensor([1.0, -2.0, 0.5]), axis=-1)

    tr = InPlaceTraining(model, LinearDevice(step=step, max_pulses=10**6), _ideal(),
                         learning_rate=lr, pulses="stochastic", slots=4, headroom=2.0, loss=lossf)
    cells = next(iter(tr._cells.values()))
    w0 = tr.weights()[0]
    tr.train_step(x, y)
    dw = tr.weights()[0] - w0
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        out = ref(xt)
        loss = tf.reduce_mean(lossf(None, out))
    gk, gb = tape.gradient(loss, ref.trainable_variables)
    want = -lr * np.vstack([gk.numpy(), gb.numpy()[None]])
    unit = step * cells.c2w  # weight change of one pulse
    mean_counts = np.abs(want) / unit
    se = np.sqrt(np.maximum(mean_counts, 1.0)) * unit
    assert np.all(np.abs(dw - want) < 5.5 * se + 1e-6), (dw - want) / se


# -- the state and the entry point ----------------------------------------------------------------------

def test_conductances_are_the_state_and_copy_back_writes_them():
    """After training, the twin's float kernels are untouched (only the conductances moved), and
    copy_back writes the weights read from the conductances into the user's model. Catches:
    float weights updated as hidden truth, copy_back writing stale kernels or a transposed layout."""
    model = _cnn()
    rng = np.random.default_rng(10)
    x, y = rng.random((32, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, 32)
    k0 = [layer.kernel.numpy().copy() for layer in model.layers if hasattr(layer, "kernel")]
    tr = InPlaceTraining(model, LinearDevice(step=1e-3), _ideal(), learning_rate=0.5, headroom=2.0)
    history = tr.fit(x, y, steps=4, batch_size=8)
    assert len(history["loss"]) == 1
    twin = [layer.kernel.numpy() for layer in tr.layers]
    for a, b in zip(twin, k0):
        np.testing.assert_array_equal(a, b)
    tr.copy_back()
    got = _matrices(model)
    assert any(np.abs(g[:-1].reshape(-1) - k.reshape(-1)).max() > 1e-3 for g, k in zip(got, k0))
    for g, w in zip(got, tr.weights()):
        np.testing.assert_allclose(g, w, atol=1e-7)
    # the trained chip (ideal crossbar) decides as the copied-back model does
    want = float(np.mean(model.predict(x, verbose=0).argmax(axis=-1) == y))
    assert tr.evaluate(x, y, batch_size=10) == want


def test_a_device_without_an_update_model_is_refused_in_one_line():
    with pytest.raises(ConfigError) as err:
        InPlaceTraining(_mlp(), NoUpdate(), _ideal())
    msg = str(err.value)
    assert "states no update model" in msg and "pulse_step" in msg and "\n" not in msg


def test_training_is_seeded():
    """Two trainers from the same seed (noisy device, noisy reads) end in the same conductances;
    another seed differs. Catches: a draw outside the seed (an unseeded generator)."""
    rng = np.random.default_rng(11)
    x, y = rng.random((32, 10)).astype(np.float32), rng.integers(0, 3, 32)
    cfg = CrossbarConfig.from_dict({"nonideal": {"quantize": False}})
    dev = LinearDevice(step=0.01, sigma=0.003, d2d=0.1, prog=0.01, read=0.005)
    ends = []
    for seed in (1, 1, 2):
        tr = InPlaceTraining(_mlp(), dev, cfg, seed=seed, learning_rate=0.2)
        tr.fit(x, y, steps=3, batch_size=16)
        ends.append(tr.conductances()[0]["states"][0])
    np.testing.assert_array_equal(ends[0], ends[1])
    assert np.abs(ends[0] - ends[2]).max() > 0


def test_the_graph_sampler_agrees_with_the_core_reference():
    """The in-graph pulses (a single cell per weight: the offset scheme's rule) against the core's
    numpy reference ``nvmkit.core.update.apply_pulses``: noiseless, state-dependent steps with
    per-cell factors agree to the tables' interpolation bound per pulse; with noise, the mean and
    spread after 5 pulses agree within 5.5 standard errors. Catches: the two samplers drifting
    apart (the factor on the spread, the clip, the pulse order)."""
    from nvmkit.core import update
    rng = np.random.default_rng(12)
    n = 20000
    g = rng.uniform(0.0, 1.0, n).astype(np.float32)
    counts = rng.integers(-6, 7, n)
    f = np.maximum(1 + 0.2 * rng.standard_normal(n), 0).astype(np.float32)
    d = SoftBoundsDevice(step=0.05)
    ours = _pulse([g[None]], counts[None], d, closed=False, factors=[tf.constant(f[None])])[0][0]
    ref = update.apply_pulses(d, g, counts, np.random.default_rng(0), factors=f)
    bound = UpdateTables(d).up.bound + UpdateTables(d).down.bound
    assert np.abs(ours - ref).max() <= 6 * bound + 1e-6
    noisy = SoftBoundsDevice(step=0.05, sigma=0.01)
    start = np.full(n, 0.5, np.float32)
    ours = _pulse([start[None]], np.full((1, n), 5), noisy, closed=False,
                  seed=tf.constant([5, 6], tf.int32))[0][0].astype(np.float64)
    ref = update.apply_pulses(noisy, start, np.full(n, 5), np.random.default_rng(1),
                              factors=np.ones(n, np.float32)).astype(np.float64)
    se = math.sqrt((ours.var() + ref.var()) / n)
    assert abs(ours.mean() - ref.mean()) < 5.5 * se
    assert abs(ours.std() / ref.std() - 1) < 5.5 * math.sqrt(1 / n)


# -- every weight layer convert takes learns as SGD on the ideal update model ---------------------

def _layer_zoo():
    return {
        "lstm": ((4, 5), lambda: keras.Sequential([keras.Input((4, 5)), keras.layers.LSTM(6),
                                                   keras.layers.Dense(3, activation="softmax")])),
        "gru": ((4, 5), lambda: keras.Sequential([keras.Input((4, 5)), keras.layers.GRU(6),
                                                  keras.layers.Dense(3, activation="softmax")])),
        "depthwise": ((6, 6, 2), lambda: keras.Sequential([
            keras.Input((6, 6, 2)), keras.layers.DepthwiseConv2D(3, activation="relu"),
            keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])),
        "separable": ((6, 6, 2), lambda: keras.Sequential([
            keras.Input((6, 6, 2)), keras.layers.SeparableConv2D(4, 3, activation="relu"),
            keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])),
        "conv1d": ((8, 3), lambda: keras.Sequential([
            keras.Input((8, 3)), keras.layers.Conv1D(4, 3, activation="relu"),
            keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])),
    }


@pytest.mark.parametrize("kind", sorted(_layer_zoo()))
def test_every_weight_layer_kind_learns_in_place_as_sgd(kind):
    """LSTM, GRU, depthwise, separable and 1-D convolutions (the layers the SGD test above does
    not build) trained in place on the ideal update model at unlimited resolution: the weights
    copied back equal a Keras SGD loop's after three steps, to float32 precision. Catches a layer
    kind whose crossbar layout the backward read or the pulse update gets wrong (a gate's columns,
    the depthwise channels, the pointwise core), which would train without an error and learn
    the wrong weights."""
    shape, build = _layer_zoo()[kind]
    rng = np.random.default_rng(0)
    x = rng.random((24, *shape)).astype("float32")
    y = rng.integers(0, 3, 24)
    keras.utils.set_random_seed(3)
    model = build()
    keras.utils.set_random_seed(3)
    ref = build()
    ref.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    start = [w.copy() for w in ref.get_weights()]
    tr = InPlaceTraining(model, LinearDevice(), _ideal(), learning_rate=0.1, headroom=2.0)
    for s in range(3):
        tr.train_step(x[s * 8:(s + 1) * 8], y[s * 8:(s + 1) * 8])
        ref.train_on_batch(x[s * 8:(s + 1) * 8], y[s * 8:(s + 1) * 8])
    tr.copy_back()
    moved = max(np.abs(a - b).max() for a, b in zip(start, ref.get_weights()))
    assert moved > 1e-3  # not vacuous: the steps are far above the tolerance
    for got, want in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * max(1.0, np.abs(want).max()))
