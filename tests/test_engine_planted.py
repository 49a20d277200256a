"""Tests written against bugs that once passed the whole suite (issue 19, point 6).

Each test names the bug it catches; each was checked by planting that bug in the code, seeing the
test fail, and removing the plant (the commit message lists them). Statistical tolerances as in
tests/test_engine_physics.py: Z = 5 standard errors of the estimator (a sample std from N normal
draws has std sigma / sqrt(2 N), a binomial fraction sqrt(p (1 - p) / N)), fixed seeds.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from nvmkit.engine import ops as xops
from nvmkit.engine.convert import analog_layers, convert, repeat_trials
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.generic import GenericDevice
from nvmkit_plugins.devices.ideal import IdealDevice
from nvmkit_plugins.devices.reram import ReRAM
from nvmkit_plugins.devices.sonos import SONOS

from test_engine_physics import SEED, dense_model, layer_weights, reference_programming

Z = 5.0
L = keras.layers


def ideal(**converters) -> CrossbarConfig:
    c = CrossbarConfig.preset("ideal")
    for k, v in converters.items():
        setattr(c.converters, k, v)
    return c


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


# -- the DAC in the convolution read -----------------------------------------------------------------

def _signed_levels(x, full_scale, bits):
    """The signed DAC of ops.quantize, computed here in float64: 2^(b-1) - 1 levels each side of 0."""
    step = full_scale / (2 ** (bits - 1) - 1)
    return np.round(np.clip(x, -full_scale, full_scale) / step) * step


def _unsigned_levels(x, full_scale, bits):
    step = full_scale / (2**bits - 1)
    return np.round(np.clip(x, 0.0, full_scale) / step) * step


@pytest.mark.parametrize("kind", ["conv2d", "conv1d", "depthwise"])
@pytest.mark.parametrize("signed", [False, True])
def test_conv_read_quantises_its_inputs_with_the_dac(rng, kind, signed):
    """Bug: the convolution read skipped the DAC (no conv test set dac_bits). On an ideal crossbar
    with a 3-bit DAC the output must be the float convolution of the DAC's levels of the input,
    unsigned for inputs >= 0 and signed (with a zero level) for inputs of both signs; the plain
    input gives an output far outside the tolerance (checked below, so the test can see it)."""
    shape = {"conv1d": (9, 2), "conv2d": (6, 6, 2), "depthwise": (6, 6, 2)}[kind]
    layer = {"conv1d": L.Conv1D(3, 3), "conv2d": L.Conv2D(3, 3), "depthwise": L.DepthwiseConv2D(3)}[kind]
    m = keras.Sequential([keras.Input(shape), layer])
    m.set_weights([rng.normal(size=w.shape).astype("f4") for w in m.weights])
    x = rng.random((16, *shape), dtype=np.float32)
    if signed:
        x = 2 * x - 1
    bits = 3
    analog = convert(m, IdealDevice(), ideal(dac_bits=bits), calibration_data=x)
    core = analog_layers(analog)[0].cores[0]
    full = float(core.dac_range.numpy())
    assert full == pytest.approx(np.abs(x).max())
    assert float(core.dac_signed.numpy()) == float(signed)
    levels = _signed_levels if signed else _unsigned_levels
    xq = levels(x.astype(np.float64), full, bits).astype(np.float32)
    want = np.asarray(m(xq))
    got = np.asarray(analog(x))
    tol = 1e-4 * np.abs(want).max()
    np.testing.assert_allclose(got, want, atol=tol, rtol=0)
    assert np.abs(np.asarray(m(x)) - want).max() > 100 * tol  # the DAC's rounding is visible


# -- a signed DAC has a zero level ---------------------------------------------------------------------

def test_signed_dac_reads_a_zero_input_as_exactly_zero(rng):
    """Bug: a signed DAC (calibrated on inputs of both signs) with 2^b levels on [-R, R] has no
    level at 0: a zero input reads as +-1/2 step. Through a converted Dense layer whose kernel is
    the identity (so the output is the DAC's level of each input), zeros must read exactly 0, and
    every other input one of the 2^(b-1) - 1 levels each side; also on ops.quantize directly with
    the DAC's tensor ``signed`` flag (the ADC's Python-bool path is tested in test_crossbar.py)."""
    n, bits = 12, 4
    m = keras.Sequential([keras.Input((n,)), L.Dense(n, use_bias=False)])
    m.set_weights([np.eye(n, dtype="f4")])
    calib = rng.uniform(-1, 1, (64, n)).astype("f4")
    analog = convert(m, IdealDevice(), ideal(dac_bits=bits), calibration_data=calib)
    core = analog_layers(analog)[0].cores[0]
    assert float(core.dac_signed.numpy()) == 1.0  # calibrated on negative inputs: signed
    full = float(core.dac_range.numpy())
    x = rng.uniform(-1, 1, (8, n)).astype("f4")
    x[:, ::3] = 0.0
    y = np.asarray(analog(x))
    np.testing.assert_array_equal(y[:, ::3], 0.0)
    step = full / (2 ** (bits - 1) - 1)
    np.testing.assert_allclose(y, _signed_levels(x.astype(np.float64), full, bits), atol=1e-6 * full)
    codes = y / step
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-4)
    assert np.abs(np.round(codes)).max() <= 2 ** (bits - 1) - 1
    for b in (2, 3, 8):
        zero = xops.quantize(keras.ops.zeros((5,)), keras.ops.convert_to_tensor(0.7),
                             b, keras.ops.convert_to_tensor(1.0))
        np.testing.assert_array_equal(np.asarray(zero), 0.0)


# -- every supported weight layer kind is on crossbars -------------------------------------------------

def _model(kind):
    """A one-weight-layer model of ``kind`` (with a digital layer after it) and its input shape."""
    layer, shape = {
        "Dense": (L.Dense(5), (12,)),
        "Conv1D": (L.Conv1D(4, 3), (10, 3)),
        "Conv2D": (L.Conv2D(4, 3), (6, 6, 2)),
        "DepthwiseConv2D": (L.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 2)),
        "SeparableConv2D": (L.SeparableConv2D(4, 3), (6, 6, 2)),
        "SimpleRNN": (L.SimpleRNN(5), (4, 3)),
        "LSTM": (L.LSTM(5), (4, 3)),
        "GRU": (L.GRU(5), (4, 3)),
    }[kind]
    return keras.Sequential([keras.Input(shape), layer, L.Flatten()]), shape


@pytest.mark.parametrize("kind", ["Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D",
                                  "SimpleRNN", "LSTM", "GRU"])
def test_every_supported_weight_layer_kind_is_analog_and_feels_the_device(rng, kind):
    """Bug: a layer kind silently left digital. The exactness tests run on the ideal device, where
    a digital copy passes. Here: conversion yields one analog layer per weight layer of the
    original (nvmkit.engine.convert.analog_layers), and on a noisy device (programming error
    only, frozen: two calls agree) the output moves away from Keras's by far more than float32
    rounding, which a digital copy would match to the last bit."""
    m, shape = _model(kind)
    weight_layers = [layer for layer in m.layers if layer.weights]
    assert [type(layer).__name__ for layer in weight_layers] == [kind]
    analog = convert(m, GenericDevice(sigma_prog=0.05), CrossbarConfig.from_dict(
        {"nonideal": {"read_noise": False}}), seed=SEED)
    layers = analog_layers(analog)
    assert len(layers) == len(weight_layers)
    assert layers[0].name == weight_layers[0].name
    x = rng.random((8, *shape), dtype=np.float32)
    want = np.asarray(m(x))
    got = np.asarray(analog(x))
    np.testing.assert_array_equal(got, np.asarray(analog(x)))  # programming noise only: frozen
    # 5% of the weight range on every weight moves outputs by a few percent of their scale;
    # float32 rounding of a digital copy would stay below 1e-5 of it
    assert np.abs(got - want).max() > 1e-3 * np.abs(want).max()
    ideal_copy = convert(m, IdealDevice(), CrossbarConfig.preset("ideal"))  # control: it is the same model
    np.testing.assert_allclose(np.asarray(ideal_copy(x)), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


# -- stuck cells: a new draw per trial (the documented default) ---------------------------------------

def test_stuck_cells_are_drawn_afresh_in_every_trial_by_default(rng):
    """Bug: the same cells stuck in every trial. The documented default (NonIdealityConfig: faults
    are part of each programming, one per Monte Carlo trial) draws them independently per trial,
    so two trials' stuck-at-Gmin masks overlap on a fraction p^2 of the cells, not p (and the
    same for Gmax). Offset scheme, no other effect: a cell stuck at Gmin reads as weight
    -w_scale, at Gmax as +w_scale, and no other weight reaches either (|W| < max |W| except at
    the one largest weight, excluded). A per-chip option (the same faults in every trial) would
    need its own test."""
    p_min, p_max = 0.2, 0.1
    w = rng.normal(size=(200, 100)).astype(np.float32)
    config = CrossbarConfig.from_dict({
        "mapping": {"scheme": "offset"},
        "nonideal": {"programming_error": False, "read_noise": False, "quantize": False,
                     "stuck_at_gmin": p_min, "stuck_at_gmax": p_max}})
    analog = convert(dense_model(w), ReRAM(), config, trials=2, seed=SEED)
    wk = layer_weights(analog)  # (2, 200, 100)
    scale = float(np.abs(w).max())
    free = np.abs(w) < scale * (1 - 1e-6)
    n = int(free.sum())
    for p, sign in ((p_min, -1.0), (p_max, 1.0)):
        stuck = np.abs(wk - sign * scale) < 1e-4 * scale  # (2, rows, cols)
        for k in range(2):
            frac = stuck[k][free].mean()
            assert abs(frac - p) < Z * np.sqrt(p * (1 - p) / n), (k, frac, p)
        both = (stuck[0] & stuck[1])[free].mean()
        q = p * p
        assert abs(both - q) < Z * np.sqrt(q * (1 - q) / n), (both, q, p)


# -- the convolution read with an ADC: each row tile converted on its own -----------------------------

def _tiled_adc_reference(partials, full_scale, bits):
    """Sum over row tiles of each tile's partial sum through a signed ADC (float64), and the
    smallest distance of any partial sum to a rounding threshold, in steps."""
    step = full_scale / (2 ** (bits - 1) - 1)
    out, margin = 0.0, np.inf
    for part in partials:
        v = np.clip(part, -full_scale, full_scale) / step
        margin = np.minimum(margin, np.abs(v - np.floor(v) - 0.5))
        out = out + np.round(v) * step
    return out, margin


@pytest.mark.parametrize("kind", ["conv", "depthwise"])
def test_conv_read_with_adc_converts_each_row_tile(rng, kind):
    """Bug: the convolution read with an ADC ignored the row tiles (one conversion of the whole
    column sum, where hardware converts each tile's partial sum): the conv version of
    test_crossbar.py's test_adc_range_covers_every_row_tile. Ideal device, tiles of 4 rows, a
    4-bit ADC calibrated on the data; the reference is computed here, slowly, from numpy
    patches: each tile's partial sum (the bias row a tile of its own, driven at 1) rounded to the
    ADC's levels, then summed. Outputs whose partial sum lies within 1e-3 step of a rounding
    threshold are left out (float32 sums may fall either side); the one-conversion read misses
    the reference by whole steps."""
    c_in, bits, tile = 2, 4, 4
    layer = L.Conv2D(3, 3) if kind == "conv" else L.DepthwiseConv2D(3, depth_multiplier=2)
    m = keras.Sequential([keras.Input((6, 6, c_in)), layer])
    kernel = rng.normal(size=m.layers[0].kernel.shape).astype("f4")
    bias = rng.normal(size=m.layers[0].bias.shape).astype("f4")
    m.set_weights([kernel, bias])
    x = rng.random((20, 6, 6, c_in), dtype=np.float32)
    config = ideal(adc_bits=bits)
    config.mapping.tile_rows = tile
    analog = convert(m, IdealDevice(), config, calibration_data=x)
    core = analog_layers(analog)[0].cores[0]
    assert len(core.blocks) == (5 if kind == "conv" else 3)  # 18 + 1 rows; 9 + 1 rows per channel
    p = np.asarray(xops.patches(x, (3, 3), (1, 1), (1, 1), "valid")).astype(np.float64)
    p = p.reshape(-1, 9 * c_in)  # rows (kh, kw, C)
    w2 = kernel.reshape(9 * c_in, -1) if kind == "conv" else kernel.reshape(9, -1)
    rows = np.vstack([w2, bias[None]]).astype(np.float64)
    n_in = rows.shape[0] - 1
    partials = []
    for r0 in range(0, n_in + 1, tile):
        r1 = min(r0 + tile, n_in + 1)
        hi = min(r1, n_in)
        if kind == "conv":
            part = p[:, r0:hi] @ rows[r0:hi]
        else:  # patch index (row, channel); column (c, j) reads channel c only
            pc = p.reshape(len(p), 9, c_in)[:, r0:hi]
            part = np.einsum("mpc,pcj->mcj", pc, rows[r0:hi].reshape(hi - r0, c_in, -1)).reshape(len(p), -1)
        if r1 > n_in:
            part = part + rows[n_in]
        partials.append(part)
    peak = max(np.abs(part).max() for part in partials)
    full = float(core.adc_range.numpy())
    assert full == pytest.approx(peak, rel=1e-5)
    want, margin = _tiled_adc_reference(partials, full, bits)
    got = np.asarray(analog(x)).reshape(want.shape).astype(np.float64)
    clear = margin > 1e-3
    assert clear.mean() > 0.99
    step = full / (2 ** (bits - 1) - 1)
    np.testing.assert_allclose(got[clear], want[clear], atol=1e-3 * step, rtol=0)


# -- read noise of K trials, each against its own analytic variance -----------------------------------

@pytest.mark.parametrize("device", [GenericDevice(sigma_prog=0.02, sigma_read=0.03), SONOS(),
                                    ReRAM(sigma_read=0.02)])
def test_read_noise_std_of_every_trial(rng, device):
    """Bug: the read variance multiplied by the trial count in the Dense read (the output-space
    read-noise test ran one trial, where the factor is 1). Three trials, each programmed
    differently, read one input n times: each trial's output spread is sqrt(sum_i x_i^2 s_ik^2)
    with its own programmed state's cell variances (a column constant for the generic device,
    state-dependent for SONOS and ReRAM), within Z standard errors sigma / sqrt(2 n); the mean
    is that trial's programmed read."""
    trials, n = 3, 4000
    w = rng.normal(size=(40, 6)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    x = 0.5 * rng.random((1, 40), dtype=np.float32)
    config = CrossbarConfig()
    analog = convert(dense_model(w, b), device, config, trials=trials, seed=SEED)
    xb, states = reference_programming(w, b, device, config, trials)
    ys = analog.predict(repeat_trials(np.repeat(x, n, axis=0), trials), batch_size=1200, verbose=0)
    ys = ys.reshape(n, trials, 6).astype(np.float64)
    drive = np.square(np.append(x[0], 1.0)).astype(np.float64)  # the bias row driven at 1
    weights = xb._to_weight(states).astype(np.float64)  # (K, 41, 6)
    sds = []
    for k in range(trials):
        var_w = sum(np.square(device.read_sigma(s[k]).astype(np.float64)) for s in states)
        var_w *= xb.current_to_weight**2
        sd = np.sqrt(drive @ var_w)
        sds.append(sd)
        got = ys[:, k]
        np.testing.assert_array_less(np.abs(got.std(axis=0) - sd), Z * sd / np.sqrt(2 * n))
        mean = np.append(x[0], 1.0).astype(np.float64) @ weights[k]
        np.testing.assert_array_less(np.abs(got.mean(axis=0) - mean), Z * sd / np.sqrt(n) + 1e-4)
    assert not np.allclose(weights[0], weights[1])  # the trials' copies differ


# -- measurement files: time units read from a hand-written file --------------------------------------

def test_a_hand_written_measurement_file_in_days_reads_as_seconds(tmp_path):
    """Bug: a file's ``days`` read as 3600 s. The other tests write their files with the same
    table they read them with, so a wrong factor cancels; this file is written by hand: 2 days
    is 172,800 s, 1.5 days 129,600 s (and hours 3,600 s, minutes 60 s)."""
    from nvmkit.fit import read_measurements

    path = tmp_path / "cells.csv"
    path.write_text("# units: uS\n# time_units: days\n"
                    "target,measured,cell,time\n"
                    "50,50.5,a,0\n50,50.1,a,2\n50,50.0,a,1.5\n"
                    "90,89.0,b,0\n90,88.7,b,2\n90,88.8,b,1.5\n")
    m = read_measurements(path)
    np.testing.assert_array_equal(m.time, [0.0, 172800.0, 129600.0, 0.0, 172800.0, 129600.0])
    np.testing.assert_array_equal(m.times, [0.0, 129600.0, 172800.0])
    for unit, seconds in (("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        other = tmp_path / f"cells-{unit}.csv"
        other.write_text(path.read_text().replace("time_units: days", f"time_units: {unit}"))
        np.testing.assert_array_equal(read_measurements(other).time, m.time / 86400.0 * seconds)


# -- the fit's statistics against a hand computation ---------------------------------------------------

def test_fit_statistics_of_a_tiny_file_match_a_hand_computation(tmp_path):
    """Bug: the between-cell variance with ddof=0. Three targets, three cells each, two reads per
    cell, all at t = 0; worked by hand for target 100 (the other two the same way):

    - cells a (101, 103), b (97, 99), c (100, 100): means 102, 98, 100, grand mean 100;
    - read noise pooled within cells: (1 + 1 + 1 + 1 + 0 + 0) / (1 + 1 + 1) = 4/3;
    - between-cell variance of the means: (4 + 4 + 0) / (3 - 1) = 4 (ddof=0 would give 8/3);
    - each mean still carries read noise 4/3 * mean(1/n) = 2/3, so the programming spread is
      sqrt(4 - 2/3) = sqrt(10/3) (ddof=0: sqrt(2));
    - the mean's 95% CI: 100 +- t(0.975, 2) sqrt(4 / 3), t(0.975, 2) = 4.302652729749462.

    min_dof=1 keeps every direct estimate in the table (no smoothing)."""
    from nvmkit import fit_device

    rows = {100: {"a": (101, 103), "b": (97, 99), "c": (100, 100)},
            200: {"d": (204, 206), "e": (196, 194), "f": (200, 201)},
            300: {"g": (310, 310), "h": (290, 292), "i": (303, 301)}}
    lines = ["# units: uS", "target,measured,cell,read"]
    for target, cells in rows.items():
        for cell, reads in cells.items():
            lines += [f"{target},{v},{cell},{i}" for i, v in enumerate(reads)]
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    fit = fit_device(path, min_dof=1)
    t2 = 4.302652729749462
    # target 100 worked above; 200: means 205, 195, 200.5 (grand 200.1667), within SS 2 + 2 + 0.5;
    # 300: means 310, 291, 302 (grand 301), within SS 0 + 2 + 2
    read_var = np.array([4 / 3, 4.5 / 3, 4 / 3])
    between = np.array([
        4.0,
        ((205 - 600.5 / 3) ** 2 + (195 - 600.5 / 3) ** 2 + (200.5 - 600.5 / 3) ** 2) / 2,
        (81 + 100 + 1) / 2,
    ])
    means = np.array([100.0, 600.5 / 3, 301.0])
    np.testing.assert_allclose(fit.read_direct, np.sqrt(read_var), rtol=1e-12)
    np.testing.assert_allclose(fit.mean[0], means, rtol=1e-12)
    np.testing.assert_allclose(fit.prog_direct[0], np.sqrt(between - read_var / 2), rtol=1e-12)
    assert fit.prog_direct[0, 0] == pytest.approx(np.sqrt(10 / 3), rel=1e-12)
    half = t2 * np.sqrt(between / 3)
    np.testing.assert_allclose(fit.mean_ci[0], np.stack([means - half, means + half], axis=1), rtol=1e-12)
    np.testing.assert_allclose(fit.table.programming_sigma[0], fit.prog_direct[0], rtol=1e-12)
    np.testing.assert_allclose(fit.table.read_sigma, fit.read_direct, rtol=1e-12)
