"""Wire resistance (IR drop, nvmkit/engine/wires.py) against a dense nodal-analysis solve.

The reference (:func:`nodal_transfer`) is the slow exact circuit: the full conductance matrix of
the row- and column-wire nodes with the cells between them, drivers at the row inputs, virtual
grounds at the column ends, ``numpy.linalg.solve`` in float64. The first-order model must lie
within its stated bound ``kappa^2 / (1 - kappa)`` of a column's full-scale current
(nvmkit/engine/wires.py) over the range the engine accepts (kappa <= MAX_DROP), tile by tile,
with tiles cut and padded as the engine cuts them.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.engine import wires
from nvmkit.engine.convert import analog_layers, convert, repeat_trials
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.reram import ReRAM
from nvmkit_plugins.devices.sonos import SONOS
from nvmkit_plugins.devices.synaptic import SynapticNoise

from test_engine_physics import dense_model, reference_programming

L = keras.layers


# -- the exact reference -------------------------------------------------------------------------
def nodal_transfer(g: np.ndarray, r_row: float, r_col: float) -> np.ndarray:
    """Exact transfer matrix T (rows x physical columns) of one tile, ``outputs = V @ T``.

    Nodes: a[i, p] on row wire i, b[i, p] on column wire p; cell g[i, p] (siemens) between them.
    Row i: driver V_i -- r_row -- a[i, 0] -- r_row -- a[i, 1] ... (open after the last cell).
    Column p: b[0, p] -- r_col -- b[1, p] ... b[M-1, p] -- r_col -- virtual ground.
    A zero resistance ties the wire's nodes to its driver (rows) or to ground (columns).
    Every row's unit input is one right-hand side.
    """
    m, n = g.shape
    unknown = {}
    if r_row > 0:
        for i in range(m):
            for p in range(n):
                unknown[("a", i, p)] = len(unknown)
    if r_col > 0:
        for i in range(m):
            for p in range(n):
                unknown[("b", i, p)] = len(unknown)
    a = np.zeros((len(unknown), len(unknown)))
    rhs = np.zeros((len(unknown), m))

    def known(node):  # the fixed voltage of a node per right-hand side
        v = np.zeros(m)
        if node[0] in ("a", "driver"):
            v[node[1]] = 1.0
        return v  # ground and grounded column nodes are at 0

    def conductance(n1, n2, c):
        i1, i2 = unknown.get(n1), unknown.get(n2)
        for me, other, i_me, i_other in ((n1, n2, i1, i2), (n2, n1, i2, i1)):
            if i_me is None:
                continue
            a[i_me, i_me] += c
            if i_other is not None:
                a[i_me, i_other] -= c
            else:
                rhs[i_me] += c * known(other)

    for i in range(m):
        for p in range(n):
            conductance(("a", i, p), ("b", i, p), g[i, p])
            if r_row > 0:
                conductance(("a", i, p), ("driver", i) if p == 0 else ("a", i, p - 1), 1.0 / r_row)
            if r_col > 0:
                conductance(("b", i, p), ("ground",) if i == m - 1 else ("b", i + 1, p), 1.0 / r_col)
    volts = np.linalg.solve(a, rhs) if unknown else np.zeros((0, m))

    def voltage(node):
        return volts[unknown[node]] if node in unknown else known(node)

    t = np.zeros((m, n))
    for p in range(n):
        if r_col > 0:  # the current into the virtual ground
            t[:, p] = voltage(("b", m - 1, p)) / r_col
        else:
            t[:, p] = sum(g[i, p] * voltage(("a", i, p)) for i in range(m))
    return t


def exact_weights(pairs: np.ndarray, siemens: float, r_row: float, r_col: float,
                  tile_rows: int, tile_cols: int) -> np.ndarray:
    """Exact transfer of a whole matrix of cells (rows, cols, d) in weight units, cut into tiles
    as the engine cuts them (each tile its own array), pairs subtracted: (rows, cols)."""
    rows, cols, d = pairs.shape
    out = np.zeros((rows, cols))
    for r0 in range(0, rows, tile_rows):
        for c0 in range(0, cols, tile_cols):
            tile = pairs[r0:r0 + tile_rows, c0:c0 + tile_cols]
            t = nodal_transfer(tile.reshape(tile.shape[0], -1) * siemens, r_row, r_col) / siemens
            t = t.reshape(tile.shape)
            out[r0:r0 + tile_rows, c0:c0 + tile_cols] = t[..., 0] - t[..., 1] if d == 2 else t[..., 0]
    return out


def test_nodal_reference_against_hand_solved_circuits():
    """The reference itself: one cell in series with one segment of each wire is
    V / (r_row + 1/g + r_col); a row of two cells with ideal columns is a two-rung ladder."""
    g, r1, r2 = 2e-4, 3.0, 5.0
    assert nodal_transfer(np.array([[g]]), r1, r2)[0, 0] == pytest.approx(1 / (r1 + 1 / g + r2), rel=1e-12)
    g1, g2, r = 1e-2, 3e-2, 7.0
    # a[0] = V - r (I1 + I2), a[1] = a[0] - r I2, I = g a: solved by hand for V = 1
    a1 = 1.0 / (1 + r * g2)  # a[1] per unit a[0]
    a0 = 1.0 / (1 + r * g1 + r * g2 * a1)
    expect = [g1 * a0, g2 * a0 * a1]
    assert nodal_transfer(np.array([[g1, g2]]), r, 0.0)[0] == pytest.approx(expect, rel=1e-12)
    # ideal wires: the mathematical product
    cells = np.random.default_rng(0).uniform(1e-5, 1e-4, (3, 4))
    assert np.allclose(nodal_transfer(cells, 0.0, 0.0), cells, rtol=1e-12)


# -- the first-order model against the reference ---------------------------------------------------
def model_weights(pairs, siemens, r_row, r_col, tile_rows, tile_cols, groups=1):
    """The engine's effective weights (float64) for cells ``pairs`` (rows, cols, d)."""
    d = pairs.shape[-1]
    w = pairs[..., 0] - pairs[..., 1] if d == 2 else pairs[..., 0] - 0.5
    common = pairs[..., 0] + pairs[..., 1] - np.abs(w) if d == 2 else np.full((1, 1, 1), 0.5)
    model = wires.WireModel(rows=w.shape[0], cols=w.shape[1], groups=groups, tile_rows=tile_rows,
                            tile_cols=tile_cols, differential=d == 2, row_resistance=r_row,
                            col_resistance=r_col)
    wk, ck = w[None], common[None] if d == 2 else common
    eff = keras.ops.convert_to_numpy(model.effective_weights(wk, ck, siemens))[0]
    return eff, model.max_drop(wk, ck, siemens)


def random_pairs(rng, rows, cols, differential=True):
    """Cells in weight units (1 = g_max here): a differential pair has one cell near 'g_min' and
    the other anywhere, as the mapping programs them, plus programming scatter."""
    if differential:
        u = rng.uniform(-1, 1, (rows, cols))
        base = 0.05 + rng.uniform(0, 0.02, (rows, cols, 2))
        return base + np.stack([np.maximum(u, 0), np.maximum(-u, 0)], -1)
    return rng.uniform(0.05, 1.0, (rows, cols, 1))


def bound(kappa, pairs, tile_rows, siemens=1.0):
    """Per weight column: kappa^2 / (1 - kappa) times the full-scale current of the tile columns it
    spans (both cells of a pair), summed over its row tiles, in weight units (max |V| = 1)."""
    full = pairs.sum(axis=0).sum(axis=-1)  # rows of every tile together: the sum over tiles
    return wires.error_bound(kappa) * full


@pytest.mark.parametrize("kappa", [1e-3, 1e-2, 0.05, 0.1, wires.MAX_DROP])
@pytest.mark.parametrize("r_row, r_col", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.3, 2.0)])
def test_first_order_within_its_bound(kappa, r_row, r_col):
    """Every output of a differential tile within kappa^2 / (1 - kappa) of its columns'
    full-scale current: an O(r) mistake (a segment too many or too few, a swapped prefix and
    suffix sum, the wrong end grounded) breaks it at small kappa, where the bound is ~kappa^2."""
    rng = np.random.default_rng(int(kappa * 1e4) + int(10 * r_row))
    pairs = random_pairs(rng, 7, 5)
    # siemens per unit that makes the first-order drop kappa
    _, k1 = model_weights(pairs, 1.0, r_row, r_col, 7, 5)
    siemens = kappa / k1
    eff, k = model_weights(pairs, siemens, r_row, r_col, 7, 5)
    assert k == pytest.approx(kappa, rel=1e-9)
    exact = exact_weights(pairs, siemens, r_row, r_col, 7, 5)
    v = rng.uniform(-1, 1, (64, 7))  # signed inputs, |V| <= 1
    err = np.abs(v @ eff - v @ exact).max(axis=0)
    assert np.all(err <= bound(kappa, pairs, 7)), (err, bound(kappa, pairs, 7))
    # the worst input of |V| <= 1 for each column: every row at +-1 with the sign of its error
    assert np.all(np.abs(eff - exact).sum(axis=0) <= bound(kappa, pairs, 7))
    # the drop it models is real: the ideal product misses it by ~kappa, the model by ~kappa^2
    ideal = pairs[..., 0] - pairs[..., 1]
    drop = np.abs(v @ exact - v @ ideal).max()
    assert drop > 0.1 * kappa * np.abs(v @ ideal).max()
    assert err.max() < 2 * kappa * drop


def test_offset_scheme_within_its_bound():
    rng = np.random.default_rng(3)
    pairs = random_pairs(rng, 6, 6, differential=False)
    _, k1 = model_weights(pairs, 1.0, 1.0, 1.0, 6, 6)
    siemens = wires.MAX_DROP / k1
    eff, k = model_weights(pairs, siemens, 1.0, 1.0, 6, 6)
    exact = exact_weights(pairs, siemens, 1.0, 1.0, 6, 6) - 0.5  # the ideal reference column
    err = np.abs(eff - exact).sum(axis=0)  # |V| <= 1 on every row: the worst input
    assert np.all(err <= bound(k, pairs, 6))


@pytest.mark.parametrize("kappa", [1e-3, 0.1])
def test_tiles_are_separate_arrays(kappa):
    """A matrix of 2 + partial row blocks and 1 + partial column blocks: every tile its own
    array, the last row block's rows next to the virtual ground, the last column block's next
    to the drivers (a padding in the wrong place, or tiles read as one array, moves the
    result by O(kappa / tile size), far outside the bound at small kappa)."""
    rng = np.random.default_rng(5)
    pairs = random_pairs(rng, 11, 7)
    tr, tc = 4, 4
    _, k1 = model_weights(pairs, 1.0, 1.0, 1.0, tr, tc)
    siemens = kappa / k1
    eff, k = model_weights(pairs, siemens, 1.0, 1.0, tr, tc)
    exact = exact_weights(pairs, siemens, 1.0, 1.0, tr, tc)
    err = np.abs(eff - exact).sum(axis=0)
    tiles_bound = np.zeros(7)
    for r0 in range(0, 11, tr):  # the bound of each tile, added over the row tiles
        tiles_bound += wires.error_bound(k) * pairs[r0:r0 + tr].sum(axis=0).sum(axis=-1)
    assert np.all(err <= tiles_bound)
    one_array = exact_weights(pairs, siemens, 1.0, 1.0, 11, 7)
    assert np.abs(one_array - exact).sum(axis=0).max() > 10 * tiles_bound.max()


@pytest.mark.parametrize("kappa", [1e-3, 0.1])
def test_depthwise_channels_are_separate_arrays(kappa):
    """groups: each channel's columns form their own crossbars (the depthwise layout)."""
    rng = np.random.default_rng(6)
    c, mult, rows = 3, 2, 5
    pairs = random_pairs(rng, rows, c * mult)
    _, k1 = model_weights(pairs, 1.0, 1.0, 1.0, 8, 8, groups=c)
    siemens = kappa / k1
    eff, k = model_weights(pairs, siemens, 1.0, 1.0, 8, 8, groups=c)
    exact = np.concatenate([exact_weights(pairs[:, j * mult:(j + 1) * mult], siemens, 1.0, 1.0, 8, 8)
                            for j in range(c)], axis=1)
    assert np.all(np.abs(eff - exact).sum(axis=0) <= wires.error_bound(k) * pairs.sum(axis=0).sum(axis=-1))


def test_model_gradient_matches_finite_differences():
    """Differentiable in the weights (training sees the drop): the autodiff gradient of
    sum(c * w_eff) against central differences, float64."""
    import tensorflow as tf

    rng = np.random.default_rng(8)
    w = rng.uniform(-1, 1, (1, 5, 3))
    common = 0.1 + rng.uniform(0, 0.02, (1, 5, 3))
    c = rng.standard_normal((1, 5, 3))
    model = wires.WireModel(rows=5, cols=3, tile_rows=5, tile_cols=3, differential=True,
                            row_resistance=1.0, col_resistance=2.0)
    s = 0.02

    def f(x):
        return tf.reduce_sum(c * model.effective_weights(x, common, s))

    x = tf.Variable(w)
    with tf.GradientTape() as tape:
        y = f(x)
    grad = tape.gradient(y, x).numpy()
    num = np.zeros_like(w)
    h = 1e-6
    for idx in np.ndindex(w.shape):
        e = np.zeros_like(w)
        e[idx] = h
        num[idx] = (f(tf.constant(w + e)).numpy() - f(tf.constant(w - e)).numpy()) / (2 * h)
    assert np.allclose(grad, num, rtol=1e-6, atol=1e-9)
    assert not np.allclose(grad, c)  # the drop changes the gradient (it is not the identity)


# -- through the engine ----------------------------------------------------------------------------
def wire_cfg(r_row=0.5, r_col=0.5, tile_rows=8, tile_cols=4, **mapping) -> CrossbarConfig:
    return CrossbarConfig.from_dict({"mapping": {"tile_rows": tile_rows, "tile_cols": tile_cols, **mapping},
                                     "nonideal": {"read_noise": False},
                                     "wires": {"row_resistance": r_row, "col_resistance": r_col}})


@pytest.mark.parametrize("device, scheme", [(ReRAM(), "differential"), (SONOS(), "differential"),
                                            (ReRAM(), "offset")])
def test_engine_read_against_nodal_solve(device, scheme):
    """A converted Dense layer with wires reads x @ (exact transfer of its programmed cells)
    within the bound: the cells as the numpy Crossbar programs them with convert's streams (both
    cells of a pair, so a lost common mode shows), siemens from the device's units (uS, or nA at
    the read voltage), the bias row driven at 1, per trial."""
    rng = np.random.default_rng(9)
    w = rng.normal(0, 0.3, (13, 6)).astype(np.float32)
    b = rng.normal(0, 0.1, 6).astype(np.float32)
    r = 0.5 if isinstance(device, ReRAM) else 300.0  # SONOS cells conduct ~1/20 of ReRAM's
    config = wire_cfg(r, r, scheme=scheme)
    analog = convert(dense_model(w, b), device, config, trials=2, seed=4)
    x = rng.uniform(0, 1, (20, 13)).astype(np.float32)
    y = analog(repeat_trials(x, 2)).numpy().reshape(20, 2, 6)
    xb, states = reference_programming(w, b, device, config, 2, seed=4)
    gain = xb.current_to_weight
    unit = 1e-6 if device.units == "uS" else 1e-9 / device.read_voltage
    siemens = unit / gain
    assert float(analog_layers(analog)[0].cores[0].wire_siemens.numpy()) == pytest.approx(siemens, rel=1e-6)
    xin = np.hstack([x, np.ones((20, 1), np.float32)])
    model = wires.WireModel(rows=14, cols=6, tile_rows=8, tile_cols=4, differential=scheme == "differential",
                            row_resistance=r, col_resistance=r)
    for k in range(2):
        pairs = np.stack([s[k] for s in states], -1).astype(np.float64) * gain  # weight units
        off = 0.0 if scheme == "differential" else xb.g_offset * gain
        ideal = (pairs[..., 0] - pairs[..., 1]) if scheme == "differential" else pairs[..., 0] - off
        exact = exact_weights(pairs, siemens, r, r, 8, 4) - off
        common = (pairs.sum(-1) - np.abs(ideal)) if scheme == "differential" else np.full((1, 1), off)
        kappa = model.max_drop(ideal[None], common[None], siemens)
        assert 0.001 < kappa <= wires.MAX_DROP
        err = np.abs(y[:, k] - xin @ exact)
        tol = wires.error_bound(kappa) * pairs.sum(axis=0).sum(axis=-1) + 1e-5 * np.abs(xin @ exact).max()
        assert np.all(err <= tol)
        assert np.abs(xin @ ideal - xin @ exact).max() > 5 * err.max()  # the drop is there


def test_zero_resistance_is_todays_engine():
    """wires = 0 (the default): no wire state and the same numbers as a configuration without
    the section."""
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.3, (9, 4)).astype(np.float32)
    x = rng.uniform(0, 1, (5, 9)).astype(np.float32)
    base = CrossbarConfig.from_dict({"mapping": {"tile_rows": 4}})
    zero = CrossbarConfig.from_dict({"mapping": {"tile_rows": 4}, "wires": {"row_resistance": 0.0}})
    a = convert(dense_model(w), ReRAM(), base, trials=2, seed=3)
    z = convert(dense_model(w), ReRAM(), zero, trials=2, seed=3)
    assert not any("wire" in v.name for v in analog_layers(z)[0].weights)
    assert np.array_equal(a(repeat_trials(x, 2)).numpy(), z(repeat_trials(x, 2)).numpy())


def test_training_gradient_through_the_wires():
    """The layer's kernel gradient includes the drop (against finite differences of the layer's
    own loss, float32 central differences) and differs from the wire-free gradient."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.3, (6, 3)).astype(np.float32)
    x = tf.constant(rng.uniform(0, 1, (4, 6)).astype(np.float32))
    grads = {}
    for r in (0.0, 2.0):
        analog = convert(dense_model(w), ReRAM(), wire_cfg(r, r), trials=1, seed=0)
        layer = analog_layers(analog)[0]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(analog(x)))
        grads[r] = tape.gradient(loss, layer.kernel).numpy()
        if r:
            h, (i, j) = 1e-2, (5, 2)
            k0 = layer.kernel.numpy()
            vals = []
            for sign in (1, -1):
                k1 = k0.copy()
                k1[i, j] += sign * h
                layer.kernel.assign(k1)
                vals.append(float(tf.reduce_sum(tf.square(analog(x)))))
            layer.kernel.assign(k0)
            assert grads[r][i, j] == pytest.approx((vals[0] - vals[1]) / (2 * h), rel=2e-2)
    assert not np.allclose(grads[0.0], grads[2.0], rtol=1e-3)


def test_conv_and_rnn_read_through_the_wires(tmp_path):
    """Conv2D, DepthwiseConv2D (each channel its own crossbars) and SimpleRNN layers on wires:
    with an all-ones input every output of a convolution is a column sum of the weights it reads,
    which must be the model's effective weights of its programmed state (built here from the
    configuration, not taken from the layer); the wire state survives a .keras round trip."""
    rng = np.random.default_rng(4)
    keras.utils.set_random_seed(4)  # the layers' initial weights
    cfg = wire_cfg(1.0, 1.0, tile_rows=8, tile_cols=2)
    for first, groups in ((L.Conv2D(3, 3), 1), (L.DepthwiseConv2D(2, depth_multiplier=3), 2)):
        model = keras.Sequential([keras.Input((5, 5, 2)), first])
        analog = convert(model, ReRAM(), cfg, trials=2, seed=1)
        (core, kernel2d, bias), *_ = analog_layers(analog)[0].core_weights()
        user = np.vstack([kernel2d, bias[None]]) if core.bias_row else kernel2d
        prog = user[None] + core.delta.numpy()
        ref = wires.WireModel(rows=core.rows, cols=core.n_out, groups=groups, tile_rows=8, tile_cols=2,
                              differential=True, row_resistance=1.0, col_resistance=1.0)
        eff = keras.ops.convert_to_numpy(ref.effective_weights(
            prog, core.wire_common.numpy(), float(core.wire_siemens.numpy())))
        got = analog(repeat_trials(np.ones((1, 5, 5, 2), np.float32), 2)).numpy()[:, 0, 0]
        assert np.allclose(got, eff.sum(axis=1), rtol=1e-5)
        assert not np.allclose(got, prog.sum(axis=1), rtol=1e-3)
    model = keras.Sequential([keras.Input((5, 5, 2)), L.Conv2D(3, 3), L.DepthwiseConv2D(2, depth_multiplier=2),
                              L.Reshape((2, 12)), L.SimpleRNN(4, activation="relu")])
    x = rng.uniform(0, 1, (3, 5, 5, 2)).astype(np.float32)
    analog = convert(model, ReRAM(), cfg, trials=2, seed=1)
    flat = convert(model, ReRAM(), wire_cfg(0.0, 0.0, tile_rows=8, tile_cols=2), trials=2, seed=1)
    y = analog(repeat_trials(x, 2)).numpy()
    assert np.all(np.isfinite(y)) and not np.allclose(y, flat(repeat_trials(x, 2)).numpy(), rtol=1e-3)
    path = tmp_path / "m.keras"
    analog.save(path)
    back = keras.models.load_model(path)
    assert np.allclose(back(repeat_trials(x, 2)).numpy(), y, rtol=1e-6, atol=1e-6)


# -- what the engine refuses -----------------------------------------------------------------------
def test_refuses_a_drop_beyond_the_model_range():
    """One line naming the fix, and the layer with the largest drop (not the first one beyond)."""
    init = keras.initializers.GlorotUniform
    model = keras.Sequential([keras.Input((63,)), L.Dense(127, name="first", kernel_initializer=init(seed=1)),
                              L.Dense(8, name="second", kernel_initializer=init(seed=2))])
    cfg = wire_cfg(2.5, 2.5, tile_rows=128, tile_cols=8)
    with pytest.raises(ConfigError) as err:
        convert(model, ReRAM(), cfg, trials=2, seed=0)
    msg = str(err.value)
    assert "\n" not in msg and wires.OUT_OF_RANGE in msg and "tile_rows" in msg
    assert msg.startswith("second:")  # 128 rows drop more than the first layer's 64, both beyond
    # the programming convert documents: per trial one stream, the layers' crossbars in turn
    from nvmkit.engine.crossbar import Crossbar

    xbs = {name: Crossbar(*model.get_layer(name).get_weights(), ReRAM(), cfg) for name in ("first", "second")}
    states = {name: [] for name in xbs}
    for t in range(2):
        gen = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(0, t)))
        for name, xb in xbs.items():
            states[name].append(xb.program(gen, 1).states)
    drops = {}
    for name, xb in xbs.items():
        plus, minus = (np.concatenate([s[j] for s in states[name]]) for j in (0, 1))
        g = xb.current_to_weight
        prog = (plus - minus) * g
        common = (plus + minus) * g - np.abs(prog)
        ref = wires.WireModel(rows=xb.rows, cols=xb.n_out, tile_rows=128, tile_cols=8,
                              differential=True, row_resistance=2.5, col_resistance=2.5)
        drops[name] = ref.max_drop(prog, common, 1e-6 / g)
    assert wires.MAX_DROP < drops["first"] < drops["second"]
    import re

    stated = float(re.search(r"drops up to (\d+)%", msg).group(1))
    assert abs(stated - 100 * drops["second"]) <= 0.5 + 1e-3 * stated  # printed to the percent (float32 sums)
    # smaller tiles bring the same wires within range
    w = np.random.default_rng(0).normal(0, 0.3, (64, 8)).astype(np.float32)
    convert(dense_model(w), ReRAM(), wire_cfg(2.5, 2.5, tile_rows=4, tile_cols=2), trials=1, seed=0)


def test_refuses_abstract_devices_and_negative_resistance():
    w = np.ones((3, 2), np.float32)
    with pytest.raises(ConfigError, match="siemens"):
        convert(dense_model(w), SynapticNoise(), wire_cfg(), trials=1, seed=0)
    from nvmkit.workflow.config import RunConfig
    from nvmkit.workflow.pipeline import resolve

    with pytest.raises(ConfigError, match="siemens"):  # a run says so before it loads data or trains
        resolve(RunConfig.from_dict({"device": "synaptic", "crossbar": {"wires": {"col_resistance": 1.0}}}))
    resolve(RunConfig.from_dict({"device": "sonos", "crossbar": {"wires": {"col_resistance": 1.0}}}))
    with pytest.raises(ConfigError, match="row_resistance"):
        CrossbarConfig.from_dict({"wires": {"row_resistance": -1.0}})
    with pytest.raises(ConfigError, match="unknown key"):
        CrossbarConfig.from_dict({"wires": {"resistance": 1.0}})


def test_wire_config_round_trip():
    cfg = CrossbarConfig.from_dict({"wires": {"row_resistance": 2.46, "col_resistance": 1.0}})
    assert CrossbarConfig.from_toml(cfg.to_toml()) == cfg
    assert CrossbarConfig().wires.on is False and cfg.wires.on
    assert CrossbarConfig.preset("wires-22nm").wires.row_resistance == pytest.approx(2.46)


# -- the tile-size study (nvmkit/reproduction/tile_study.py, the report's section 5) ----------------
def _fake_wired(config: dict) -> dict:
    """A point runner for the study tests: accuracy falls with the tile's rows times the wire
    resistance, energy falls with the tile (fewer conversions), and a point past rows x ohm = 500
    is refused with the engine's own message."""
    from nvmkit.reproduction.tile_study import resistance_of, tile_of

    rows, cols = tile_of(config)
    r = resistance_of(config)[0]
    if rows * r > 500:
        raise ConfigError(f"dense: wire resistance drops up to {rows * r / 1000:.0%} of the drive across a cell "
                          f"of its {rows} x {cols} tiles, beyond the 20% {wires.OUT_OF_RANGE}; use smaller tiles")
    acc = 0.95 - 1e-5 * rows * r
    per = [acc - 0.001, acc, acc + 0.001]
    adc = 1000 * (-(-1152 // rows))
    energy = 1e-9 + 1e-12 * adc
    return {"config": config, "seed": 0, "accuracy": {
                "digital": {"mean": 0.96, "std": 0.0, "per_trial": [0.96], "trials": 1},
                "internal": {"mean": acc, "std": 0.001, "per_trial": per, "trials": 3}},
            "dataset": {"name": "mnist", "sample": True, "source": "fake", "n_train": 0, "n_test": 0},
            "energy": {"estimator": "fake", "total_J": energy, "by_component_J": {},
                       "terms": [{"layer": "dense", "component": "adc", "count": adc, "unit_energy": 1e-12}]},
            "versions": {"nvmkit": "test"}, "wall_time_s": 0.01}


STUDY = """
[study]
name = "tiles"
[base]
seed = 0
trials = 3
dataset.source = "sample"
device = "sonos"
[sections.tiles]
kind = "tile_size"
note = "a test"
[sections.tiles.base]
noise = "none"
scenarios = ["digital", "internal"]
[sections.tiles.grid]
"network.name" = ["mlp"]
"crossbar.mapping.tile_rows" = [64, 256, 1152]
"crossbar.wires.row_resistance" = [0.0, 0.3, 1.0]
"crossbar.wires.col_resistance" = [0.0, 0.3, 1.0]
"""


def test_tile_study_report_winners_and_refusals(tmp_path):
    """Refused points are the study's 'beyond' cells, not failures (the command succeeds); the
    winner at each resistance is the least-energy tile within the margin of the best accuracy
    (a winner by accuracy alone, or by energy alone, differs here); summary.json says the same."""
    import json

    from nvmkit.reproduction import tile_study
    from nvmkit.reproduction.reproduce import reproduce

    path = tmp_path / "tiles.toml"
    path.write_text(STUDY)
    result = reproduce(tmp_path / "out", study=path, workers=1, runner="test_wires:_fake_wired")
    # rows x ohm > 500: 1152 x 0.3 is not (346) but 1152 x 1 is, and for r_row != r_col the row
    # resistance counts: refused (1152, r_row = 1) x 3 column values
    assert not result.failed and len(result.refused) == 3
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## 5. Tile size against wire resistance" in report and "beyond (115% drop)" in report
    assert "points failed" not in report and "3 points lie beyond" in report
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    win = {tuple(e["wires_ohm"]): e for e in summary["tile_size"]}
    # no wires: every tile at 0.95; the largest tile has the fewest conversions
    assert win[(0.0, 0.0)]["winner"] == [1152, 256] and win[(0.0, 0.0)]["beyond_model"] == []
    # 0.3 ohm: 1152 rows lose 0.35 points (within 0.5 of the best), so it still wins on energy
    assert win[(0.3, 0.3)]["winner"] == [1152, 256]
    # 1 ohm: 1152 refused; 256 loses 0.26 points, within the margin, and has fewer conversions than 64
    assert win[(1.0, 1.0)]["winner"] == [256, 256] and win[(1.0, 1.0)]["beyond_model"] == [[1152, 256]]
    assert tile_study.MARGIN_POINTS == 0.5  # the margin the cases above were built around
    assert (tmp_path / "out" / "plots" / "tile_size.png").stat().st_size > 1000
    assert "## Tile size against wire resistance" in (tmp_path / "out" / "results.md").read_text()


def test_tile_winner_needs_the_accuracy_margin():
    """A tile that loses more than the margin does not win, however cheap it is."""
    from nvmkit.reproduction import tile_study
    from nvmkit.reproduction.seed_study import Stat

    def cell(rows, acc, energy):
        return tile_study.TileCell("mlp", "mnist", (rows, 256), (1.0, 1.0), Stat(acc, 0.0, 3), None, energy,
                                   None, None, False)

    table = [cell(64, 0.950, 3e-9), cell(256, 0.944, 2e-9), cell(1152, 0.900, 1e-9)]
    (_, _, _, win, beyond), = tile_study.winners(table)
    assert win.tile == (64, 256) and beyond == []  # 256 lost 0.6 points, 1152 five
    table[1] = cell(256, 0.946, 2e-9)
    assert tile_study.winners(table)[0][3].tile == (256, 256)


def test_ideal_wires_keep_the_point_keys_of_earlier_results():
    """A results database written before the wires section existed still finds its points: ideal
    wires leave a point's identity (and key) as it was; any resistance makes a new point."""
    from nvmkit.sweeps.experiment import identity, point_key
    from nvmkit.workflow.config import RunConfig
    from nvmkit.workflow.pipeline import resolve

    resolved = resolve(RunConfig.from_dict({"device": "sonos"}))
    before = {**resolved, "crossbar": {k: v for k, v in resolved["crossbar"].items() if k != "wires"}}
    assert "wires" in resolved["crossbar"] and point_key(resolved) == point_key(before)
    wired = resolve(RunConfig.from_dict({"device": "sonos", "crossbar": {"wires": {"row_resistance": 0.1}}}))
    assert point_key(wired) != point_key(resolved) and "wires" in identity(wired)["crossbar"]


@pytest.mark.parametrize("suffix_first", [True, False])
@pytest.mark.parametrize("shape, axis", [((1, 4, 256, 1, 1, 512), 5), ((1, 4, 256, 1, 1, 512), 2),
                                         ((3, 2, 7, 2, 3, 10), 2), ((2, 1, 5, 1, 2, 9), -1)])
def test_double_cumsum_is_ops_cumsum_bit_for_bit(shape, axis, suffix_first):
    """The IR drop's two cumulative sums (on TensorFlow one XLA-compiled pair of loops, for speed)
    give the numbers of ``ops.cumsum`` and its flips, values and gradients, bit for bit: the
    tile-size study in docs/results.md reruns to the digit. Values spread over 7 decades so that
    another summation order (a tree, a blocked scan, a triangular product) changes last bits.
    Fails if the loop sums in another order, runs the wrong direction first, or its gradient is
    not the sums of the incoming gradient in TensorFlow's order."""
    import tensorflow as tf

    from nvmkit.engine import ops as xops

    rng = np.random.default_rng(11)
    x = (rng.random(shape) * 10.0 ** rng.integers(-4, 3, size=shape)).astype(np.float32)
    dy = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 2, size=shape)).astype(np.float32)

    def value_and_grad(fn):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        return y.numpy(), tape.gradient(y, xt, output_gradients=tf.constant(dy)).numpy()

    fast = tf.function(lambda v: xops.double_cumsum(v, axis, suffix_first))
    ref = tf.function(lambda v: xops._double_cumsum_ops(v, axis, suffix_first))
    (y, g), (y_ref, g_ref) = value_and_grad(fast), value_and_grad(ref)
    assert np.array_equal(y, y_ref) and np.array_equal(g, g_ref)
    # the two orders differ (a test of the flag itself)
    other = xops._double_cumsum_ops(tf.constant(x), axis, not suffix_first).numpy()
    assert not np.array_equal(y, other)


def test_double_cumsum_second_derivatives_and_forward_mode():
    """The compiled sums' custom gradient is differentiable again: a Hessian-vector product and a
    forward-mode derivative through them equal those through ``ops.cumsum`` (fails if the
    gradient stops the tape: both come back None). An axis of unknown length takes the ops path."""
    import tensorflow as tf

    from nvmkit.engine import ops as xops

    x0 = np.random.default_rng(2).random((4, 6)).astype(np.float32)
    t = tf.constant(np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6))

    def derivatives(fn):
        x = tf.constant(x0)
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = tf.reduce_sum(fn(x) ** 2)
            gv = tf.reduce_sum(inner.gradient(y, x) * t)
        hvp = outer.gradient(gv, x)
        with tf.autodiff.ForwardAccumulator(x, t) as acc:
            y = tf.reduce_sum(fn(x) ** 2)
        return hvp.numpy(), acc.jvp(y).numpy()

    for suffix_first in (True, False):
        got = derivatives(lambda v: xops.double_cumsum(v, 1, suffix_first))
        want = derivatives(lambda v: xops._double_cumsum_ops(v, 1, suffix_first))
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    dynamic = tf.function(lambda v: xops.double_cumsum(v, 1, True),
                          input_signature=[tf.TensorSpec((4, None), tf.float32)])
    assert np.array_equal(dynamic(tf.constant(x0)).numpy(),
                          xops._double_cumsum_ops(tf.constant(x0), 1, True).numpy())
