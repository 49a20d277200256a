"""The Keras-ops engine carries every non-ideality of the crossbar engine: the statistical tests
of tests/test_crossbar.py, run through converted models.

Statistical tolerances (as tests/test_crossbar.py): a sample std from N normal draws has std
sigma / sqrt(2 N); a sample mean has std sigma / sqrt(N); a binomial fraction has std
sqrt(p (1 - p) / N). Checks allow Z = 5 of those (false-failure rate ~ 6e-7 per check), fixed
seeds.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from nvmkit.engine.crossbar import Crossbar
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.engine.convert import (analog_layers, calibrate_converters, convert, draw_chips,
                                   repeat_trials, reprogram)
from nvmkit_plugins.devices.generic import GenericDevice
from nvmkit_plugins.devices.ideal import IdealDevice
from nvmkit_plugins.devices.reram import ReRAM
from nvmkit_plugins.devices.sonos import SONOS
from nvmkit_plugins.devices.synaptic import SynapticNoise

Z = 5.0
L = keras.layers
SEED = 11


def cfg(**sections) -> CrossbarConfig:
    return CrossbarConfig.from_dict(sections)


def dense_model(w, b=None):
    n_in, n_out = w.shape
    m = keras.Sequential([keras.Input((n_in,)), L.Dense(n_out, use_bias=b is not None)])
    m.layers[0].set_weights([w] + ([b] if b is not None else []))
    return m


def layer_weights(analog, index=None):
    """Programmed weights (K, rows, cols) of the single (or the index-th) analog layer: user
    matrix + delta."""
    layers = analog_layers(analog)
    (layer,) = layers if index is None else (layers[index],)
    core = layer.cores[0]
    user = layer.kernel.numpy().reshape(-1, core.n_out)
    if core.bias_row:
        user = np.vstack([user, layer.bias.numpy()[None]])
    return user[None] + core.delta.numpy()


def reference_programming(w, b, device, config, trials, seed=SEED):
    """The numpy Crossbar programmed with the streams convert() documents (the chip: stuck cells,
    from the chip streams (3, k, crossbar 0, effect))."""
    xb = Crossbar(w, b, device, config)
    gens = [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, k))) for k in range(trials)]
    chips = draw_chips(xb, seed, 0, trials)
    per = [xb.program(g, 1, chip=chips.select(k)) for k, g in enumerate(gens)]
    states = [np.concatenate([p.states[j] for p in per]) for j in range(xb.devices_per_weight)]
    return xb, states


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.mark.parametrize("device, nonideal", [
    (ReRAM(), {}),
    (SONOS(), {"drift_time": 2 * 86400.0, "stuck_at_gmin": 0.05, "stuck_at_gmax": 0.02}),
    (GenericDevice(sigma_prog=0.02), {"drift_time": 1e4, "drift_model": "power-law",
                                      "drift_nu_sigma": 0.01}),
])
def test_programmed_state_is_the_crossbars(rng, device, nonideal):
    """Mapping, levels, programming error, clipping, drift and stuck cells all reach the layer:
    its programmed weights equal the crossbar engine's for the same streams, trial by trial
    (fails if a trial's stream, the bias row, or any programming step is dropped)."""
    w = rng.normal(size=(30, 7)).astype(np.float32)
    b = rng.normal(size=7).astype(np.float32)
    config = cfg(nonideal=nonideal)
    analog = convert(dense_model(w, b), device, config, trials=3, seed=SEED)
    xb, states = reference_programming(w, b, device, config, 3)
    expected = xb._to_weight(states)
    np.testing.assert_allclose(layer_weights(analog), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    # trial k's programming does not depend on how many trials run together
    one = convert(dense_model(w, b), device, config, trials=1, seed=SEED)
    np.testing.assert_allclose(layer_weights(one)[0], layer_weights(analog)[0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(layer_weights(analog)[0], layer_weights(analog)[1])


def test_each_sample_reads_its_trials_copy(rng):
    """Row b*K + k of the output is sample b read on trial k's programmed copy (fails if the
    trial grouping mixes samples and trials)."""
    w = rng.normal(size=(30, 7)).astype(np.float32)
    b = rng.normal(size=7).astype(np.float32)
    x = rng.random((5, 30), dtype=np.float32)
    analog = convert(dense_model(w, b), ReRAM(), cfg(nonideal={"read_noise": False}), trials=3)
    wk = layer_weights(analog)
    y = analog.predict(repeat_trials(x, 3), batch_size=6, verbose=0).reshape(5, 3, 7)
    for k in range(3):
        np.testing.assert_allclose(y[:, k], x @ wk[k, :30] + wk[k, 30], rtol=1e-5, atol=1e-5)
    conv = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(3, 3)])
    conv.set_weights([rng.normal(size=(3, 3, 2, 3)).astype("f4"), np.zeros(3, "f4")])
    ac = convert(conv, ReRAM(), cfg(nonideal={"read_noise": False}), trials=3)
    xc = rng.random((4, 6, 6, 2), dtype=np.float32)
    yc = ac.predict(repeat_trials(xc, 3), batch_size=12, verbose=0).reshape(4, 3, 4, 4, 3)
    wc = layer_weights(ac)
    for k in range(3):
        conv.set_weights([wc[k, :18].reshape(3, 3, 2, 3), wc[k, 18]])
        np.testing.assert_allclose(yc[:, k], conv.predict(xc, verbose=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation, units", [("softmax", 4), ("glu", 8)])
def test_stacked_dense_layers_keep_each_trial_on_its_copy(rng, activation, units):
    """Dense -> Dense with K trials: each layer applies its activation to the trial-grouped
    values, and the ungroup of one layer and the group of the next cancel in TensorFlow's graph;
    row b*K + k must still be sample b through trial k's copies of both layers (the copies
    differ: ReRAM's programming error), for an activation along the last axis (softmax) and one
    that halves it (glu), in graph and eager calls, for inputs without and with a position axis
    (B, n) and (B, 2, n). Fails if the grouping of inputs without positions mixes samples and
    trials, or if the ungroup assumes the layer's units after an activation that changed them."""
    out = units // 2 if activation == "glu" else units
    x = rng.random((5, 2, 30), dtype=np.float32)
    weights = [rng.normal(size=s).astype("f4") for s in ((30, 7), (7,), (7, units), (units,))]

    def mlp(shape):
        m = keras.Sequential([keras.Input(shape), L.Dense(7, activation="relu"),
                              L.Dense(units, activation=activation)])
        m.set_weights(weights)
        return m

    flat = mlp((30,))
    for shape, xs in (((30,), x[:, 0]), ((2, 30), x)):
        analog = convert(mlp(shape), ReRAM(), cfg(nonideal={"read_noise": False}), trials=3)
        w1, w2 = layer_weights(analog, 0), layer_weights(analog, 1)
        xr = repeat_trials(xs, 3)
        for y in (analog.predict(xr, batch_size=6, verbose=0), np.asarray(analog(xr, training=False))):
            y = y.reshape(5, 3, -1, out)
            for k in range(3):
                flat.set_weights([w1[k, :30], w1[k, 30], w2[k, :7], w2[k, 7]])
                want = flat.predict(xs.reshape(-1, 30), verbose=0).reshape(5, -1, out)
                np.testing.assert_allclose(y[:, k], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scheme", ["differential", "offset"])
def test_synaptic_noise_per_weight_std_is_exact(rng, scheme):
    w = rng.normal(size=(90, 30)).astype(np.float32)
    analog = convert(dense_model(w), SynapticNoise(sigma_syn=0.025), cfg(mapping={"scheme": scheme}),
                     trials=40, seed=SEED)
    xb = Crossbar(w, None, SynapticNoise(sigma_syn=0.025))
    dw = (layer_weights(analog) - xb.target_weights()[None]).astype(np.float64)
    expected = 0.025 * xb.weight_range
    assert abs(dw.std() - expected) < Z * expected / np.sqrt(2 * dw.size)
    assert abs(dw.mean()) < Z * expected / np.sqrt(dw.size)


def test_seed_equivalence_sigma_neu_over_trials(rng):
    """sigma_neu = sigma_syn (Wmax - Wmin) sqrt(n) gamma_act across K programmed copies read in
    one batch (fails if trials are mixed up in the grouping: then copies repeat)."""
    n, m, trials = 100, 8, 2000
    w = rng.normal(size=(n, m)).astype(np.float32)
    x = rng.random((1, n), dtype=np.float32)
    analog = convert(dense_model(w), SynapticNoise(sigma_syn=0.025), trials=trials, seed=SEED)
    y = analog.predict(repeat_trials(x, trials), batch_size=trials, verbose=0)  # (trials, m)
    gamma = np.sqrt(np.mean(np.square(x.astype(np.float64))))
    expected = 0.025 * Crossbar(w, None, SynapticNoise()).weight_range * np.sqrt(n) * gamma
    np.testing.assert_array_less(np.abs(y.std(axis=0) - expected), Z * expected / np.sqrt(2 * trials))


@pytest.mark.parametrize("device", [SONOS(), GenericDevice(sigma_prog=0.0, sigma_read=0.03),
                                    ReRAM(sigma_read=0.02)])
@pytest.mark.parametrize("bias, tile_rows, adc", [("row", 50, False), ("digital", 1152, False),
                                                  ("row", 1152, True)])
def test_read_noise_std_in_output_space(rng, device, bias, tile_rows, adc):
    """Each read draws fresh noise of std sqrt(sum_i x_i^2 s_i^2) per output (state-dependent
    for SONOS and ReRAM, a column constant for the generic device), around the programmed read.
    Fails if noise is frozen, mis-scaled, misses the bias row, or is drawn per tile wrongly."""
    w = rng.normal(size=(80, 6)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    # small inputs: the bias row's variance (driven at 1) is then a large part of the total
    x = 0.1 * rng.random((1, 80), dtype=np.float32)
    config = cfg(mapping={"bias": bias, "tile_rows": tile_rows})
    if adc:  # a fine ADC: its rounding (step/sqrt(12)) is far below the noise
        config.converters.adc_bits, config.converters.adc_range = 16, 400.0
    analog = convert(dense_model(w, b), device, config, seed=SEED)
    xb, states = reference_programming(w, b, device, config, 1)
    var_w = sum(np.square(device.read_sigma(s[0]).astype(np.float64)) for s in states)
    var_w *= xb.current_to_weight**2
    drive = np.square(np.append(x[0], 1.0) if xb.bias_row else x[0]).astype(np.float64)
    expected = np.sqrt(drive @ var_w)
    n = 6000
    ys = np.asarray(analog(np.repeat(x, n, axis=0))).astype(np.float64)
    np.testing.assert_array_less(np.abs(ys.std(axis=0) - expected), Z * expected / np.sqrt(2 * n))
    clean = x[0].astype(np.float64) @ xb._to_weight(states)[0][:80]
    clean += xb._to_weight(states)[0][80] if xb.bias_row else b
    np.testing.assert_array_less(np.abs(ys.mean(axis=0) - clean), Z * expected / np.sqrt(n) + 1e-3)


def test_read_noise_fresh_per_read_programming_frozen(rng):
    w = rng.normal(size=(20, 5)).astype(np.float32)
    x = rng.random((4, 20), dtype=np.float32)
    both = convert(dense_model(w), SONOS(), seed=SEED)
    assert not np.array_equal(np.asarray(both(x)), np.asarray(both(x)))
    prog = convert(dense_model(w), SONOS(), cfg(nonideal={"read_noise": False}), seed=SEED)
    first = np.asarray(prog(x))
    np.testing.assert_array_equal(first, np.asarray(prog(x)))
    reprogram(prog, SEED + 1)
    assert not np.array_equal(first, np.asarray(prog(x)))
    reprogram(prog, SEED)
    np.testing.assert_array_equal(first, np.asarray(prog(x)))


def test_adc_dac_quantisation_and_zero_level(rng):
    """ADC: signed, 2^b - 1 levels with one at 0, error <= step/2 after calibration; DAC:
    inputs rounded to 2^b levels of [0, max |x|]. Fails with the old 2^b signed levels (zero
    inputs then read +-1/2 step) or an uncalibrated range."""
    w = rng.normal(size=(60, 24)).astype(np.float32)
    b = rng.normal(size=24).astype(np.float32)
    x = rng.random((64, 60), dtype=np.float32)
    ref = x @ w + b
    c = CrossbarConfig.preset("ideal")
    c.converters.adc_bits = 6
    c.mapping.bias = "digital"
    analog = convert(dense_model(w, b), IdealDevice(), c, calibration_data=x)
    (layer,) = analog_layers(analog)
    adc = float(layer.cores[0].adc_range.numpy())
    assert adc == pytest.approx(np.abs(x @ w).max(), rel=1e-5)
    y = analog.predict(x, verbose=0)
    step = adc / (2**5 - 1)
    assert np.abs(y - ref).max() <= step / 2 + 1e-4
    levels = (y - b) / step  # the digital bias is added after the ADC: undo it
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    assert np.abs(np.round(levels)).max() <= 2**5 - 1
    np.testing.assert_array_equal(analog.predict(np.zeros((3, 60), np.float32), verbose=0) - b, 0.0)
    c2 = CrossbarConfig.preset("ideal")
    c2.converters.dac_bits = 4
    ad = convert(dense_model(w, b), IdealDevice(), c2, calibration_data=x)
    dac = float(analog_layers(ad)[0].cores[0].dac_range.numpy())
    assert dac == pytest.approx(x.max())
    xq = np.round(x / (dac / 15)) * (dac / 15)
    np.testing.assert_allclose(ad.predict(x, verbose=0), xq @ w + b, rtol=1e-5, atol=1e-4)


def test_calibration_sees_the_layers_real_inputs(rng):
    """A second layer's DAC range is the max of its float inputs (the first layer's ReLU
    output), not of the model's inputs."""
    m = keras.Sequential([keras.Input((10,)), L.Dense(8, activation="relu"), L.Dense(3)])
    x = rng.random((50, 10), dtype=np.float32)
    c = CrossbarConfig.preset("ideal")
    c.converters.dac_bits = 8
    analog = convert(m, IdealDevice(), c, calibration_data=x)
    hidden = keras.Model(m.inputs, m.layers[0].output).predict(x, verbose=0)
    got = [float(layer.cores[0].dac_range.numpy()) for layer in analog_layers(analog)]
    assert got == pytest.approx([x.max(), hidden.max()], rel=1e-6)
    calibrate_converters(analog, x * 2)  # a fixed (already calibrated) range is recalibrated on request
    assert float(analog_layers(analog)[0].cores[0].dac_range.numpy()) == pytest.approx(2 * x.max())


def test_rnn_read_noise_fresh_at_every_time_step(rng):
    """A linear Elman RNN over 2 steps, one stacked crossbar [W; U; b], read noise only (column
    constant, per-weight variance v): h1 = x1 W + b + n1, h2 = x2 W + h1 U + b + n2 with
    var n1_j = v (|x1|^2 + 1) and var n2_j = v (|x2|^2 + E|h1|^2 + 1), so
    var h2_j = sum_i U_ij^2 var n1_i + var n2_j. Fails if the noise were drawn once for all steps
    or the recurrent rows were not on the crossbar."""
    n, h = 5, 4
    m = keras.Sequential([keras.Input((2, n)), L.SimpleRNN(h, activation="linear")])
    w = rng.normal(size=(n, h)).astype("f4")
    u = (0.5 * rng.normal(size=(h, h))).astype("f4")
    b = rng.normal(size=h).astype("f4")
    m.set_weights([w, u, b])
    dev = GenericDevice(sigma_prog=0.0, sigma_read=0.02)
    analog = convert(m, dev, cfg(nonideal={"programming_error": False, "quantize": False}), seed=SEED)
    xb = Crossbar(np.vstack([w, u]), b, dev, cfg())
    v = (0.02 * dev.g_range * xb.current_to_weight) ** 2 * 2  # two cells per weight
    x = rng.random((1, 2, n), dtype=np.float32)
    h1 = x[0, 0] @ w + b
    var1 = v * (np.sum(x[0, 0] ** 2) + 1)
    var2 = v * (np.sum(x[0, 1] ** 2) + np.sum(h1**2) + h * var1 + 1)
    expected = np.sqrt((u.astype(np.float64) ** 2).T @ np.full(h, var1) + var2)
    N = 8000
    ys = np.asarray(analog(np.repeat(x, N, axis=0))).astype(np.float64)
    np.testing.assert_array_less(np.abs(ys.std(axis=0) - expected), Z * expected / np.sqrt(2 * N))


def test_recurrent_converters_calibrated_inside_the_loop(rng):
    """DAC/ADC ranges of a GRU's two crossbars come from the float pass through the time
    steps (inputs and hidden states): with 12-bit converters the output stays within a few
    steps of the float one. Fails if a recurrent core is left uncalibrated (range 0) or is
    calibrated on the wrong rows (clipping)."""
    m = keras.Sequential([keras.Input((6, 5)), L.GRU(7), L.Dense(3)])
    x = rng.random((40, 6, 5), dtype=np.float32)
    c = CrossbarConfig.preset("ideal")
    c.converters.adc_bits, c.converters.dac_bits = 12, 12
    analog = convert(m, IdealDevice(), c, calibration_data=x)
    ranges = [float(core.adc_range.numpy()) for layer in analog_layers(analog) for core in layer.cores]
    assert len(ranges) == 3 and min(ranges) > 0
    ref = np.asarray(m(x))
    np.testing.assert_allclose(np.asarray(analog(x)), ref, atol=0.01 * np.abs(ref).max())


@pytest.mark.parametrize("device", [SONOS(), GenericDevice(sigma_prog=0.0, sigma_read=0.03)])
@pytest.mark.parametrize("kind, tile_rows, adc", [("conv", 1152, False), ("conv", 7, True),
                                                  ("depthwise", 1152, False), ("depthwise", 4, True)])
def test_conv_read_noise_per_position(rng, device, kind, tile_rows, adc):
    """Convolutions read each output position once with its own noise of std
    sqrt(patch**2 @ s**2) (the bias row driven at 1), per row tile when there is an ADC;
    2 trials, each with its own programmed copy. Fails if the variance map is convolved with
    the wrong kernel layout, misses the bias row or a tile, or the trials' copies are swapped."""
    from nvmkit.engine import ops as xops

    c_in = 2
    layer = L.Conv2D(3, 3, padding="same") if kind == "conv" else L.DepthwiseConv2D(3, padding="same")
    m = keras.Sequential([keras.Input((5, 5, c_in)), layer])
    kernel = rng.normal(size=m.layers[0].kernel.shape).astype("f4")
    bias = rng.normal(size=m.layers[0].bias.shape).astype("f4")
    m.set_weights([kernel, bias])
    config = cfg(mapping={"tile_rows": tile_rows})
    if adc:
        config.converters.adc_bits, config.converters.adc_range = 16, 200.0
    analog = convert(m, device, config, trials=2, seed=SEED)
    if kind == "conv":
        w2 = kernel.reshape(-1, kernel.shape[-1])
    else:
        w2 = kernel.reshape(9, -1)
    xb, states = reference_programming(w2, bias, device, config, 2)
    x = rng.random((1, 5, 5, c_in), dtype=np.float32)
    p = np.asarray(xops.patches(x, (3, 3), (1, 1), (1, 1), "same")).reshape(25, -1).astype(np.float64)
    n = 3000
    ys = np.asarray(analog(np.repeat(x, 2 * n, axis=0)))
    ys = ys.reshape(n, 2, 25, -1).astype(np.float64)
    for k in range(2):
        var_w = sum(np.square(device.read_sigma(s[k]).astype(np.float64)) for s in states)
        var_w *= xb.current_to_weight**2
        wk = xb._to_weight([s[k:k + 1] for s in states])[0].astype(np.float64)
        if kind == "conv":
            mean = p @ wk[:-1] + wk[-1]
            var = np.square(p) @ var_w[:-1] + var_w[-1]
        else:  # patch index (p, c); column c reads channel c only
            pc = p.reshape(25, 9, c_in)
            mean = np.einsum("mpc,pc->mc", pc, wk[:-1]) + wk[-1]
            var = np.einsum("mpc,pc->mc", np.square(pc), var_w[:-1]) + var_w[-1]
        sd = np.sqrt(var)
        got = ys[:, k].reshape(n, 25, -1)
        np.testing.assert_array_less(np.abs(got.std(axis=0) - sd), Z * sd / np.sqrt(2 * n))
        np.testing.assert_array_less(np.abs(got.mean(axis=0) - mean), Z * sd / np.sqrt(n) + 2e-3)


def test_standard_normal_moments_and_reproducibility():
    """The Box-Muller sampler behind every read: mean 0, std 1, kurtosis 3, the 2-sigma tail
    (fails on a wrong transform, e.g. a missing sqrt or a reused uniform), and the same draws
    from the same seed."""
    from nvmkit.engine import ops as xops

    z = np.asarray(xops.standard_normal((1001, 401), keras.random.SeedGenerator(3))).astype(np.float64)
    n = z.size
    assert z.shape == (1001, 401) and np.isfinite(z).all()
    assert abs(z.mean()) < Z / np.sqrt(n)
    assert abs(z.std() - 1) < Z / np.sqrt(2 * n)
    assert abs(np.mean(z**4) - 3) < Z * np.sqrt(96 / n)  # var of z^4 is 105 - 9 = 96
    assert abs(np.mean(np.abs(z) > 2) - 0.0455) < Z * np.sqrt(0.0455 * 0.9545 / n)
    h = n // 2  # the cos and sin halves are independent
    assert abs(np.corrcoef(z.ravel()[:h], z.ravel()[h:2 * h])[0, 1]) < Z / np.sqrt(h)
    a = np.asarray(xops.standard_normal((7,), keras.random.SeedGenerator(9)))
    np.testing.assert_array_equal(a, np.asarray(xops.standard_normal((7,), keras.random.SeedGenerator(9))))


# The sampler's bit layout, exact CDF and tails: tests/test_sampler.py


@pytest.mark.parametrize("portable", [False, True], ids=["backend", "randint"])
def test_random_words_every_bit_is_fair(portable):
    """Each of the 32 bit positions of the words is 1 half of the time, within 5 binomial
    standard errors, and each 16-bit half takes all 2^16 values, for the backend's generator and
    the two-randint fallback of other backends. 2^21 words leave a given value out of a half
    with probability (1 - 2^-16)^(2^21) = e^-32, so a false failure has odds below 2^17 e^-32 =
    2e-9. Fails on a generator that joins the halves wrongly (a shift by 15), drops the high
    half, draws both halves from one stream, or never draws a value (randint's exclusive upper
    bound: 0xffff missing)."""
    from nvmkit.engine import ops as xops

    draw = xops._words_from_randint if portable else xops.random_words
    w = np.asarray(draw((2, 1 << 20), keras.random.SeedGenerator(5)))
    assert w.dtype == np.int32
    u = w.astype(np.int64).ravel() & 0xFFFFFFFF
    bits = (u[:200_000, None] >> np.arange(32)) & 1
    n = bits.shape[0]
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < Z * np.sqrt(0.25 / n))
    for half in (u & 0xFFFF, u >> 16):
        assert np.unique(half).size == 1 << 16
    # the halves come from separate draws: equal halves have probability 2^-16 (about 32 of the
    # 2^21 words, Poisson sd 6); 1e-4 (about 210) fails a generator whose halves share a stream
    assert np.mean((u & 0xFFFF) == (u >> 16)) < 1e-4


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="shapes known only at run time exist in TensorFlow graphs only")
def test_standard_normal_static_and_run_time_shapes_draw_the_same():
    """A shape known only at run time (a TensorFlow graph with an open batch axis) and the same
    shape given as Python ints (always, under JAX's jit) take different code paths; both must draw
    the same numbers from the same seed, or a model's read noise would depend on how it was traced.
    Fails if one path changes its draw layout (e.g. one uniform per value instead of pairs)."""
    import tensorflow as tf

    from nvmkit.engine import ops as xops

    static = np.asarray(xops.standard_normal((5, 7), keras.random.SeedGenerator(4)))
    gen = keras.random.SeedGenerator(4)
    fn = tf.function(lambda y: xops.standard_normal(keras.ops.shape(y), gen),
                     input_signature=[tf.TensorSpec((None, 7), tf.float32)])
    run_time = fn(tf.zeros((5, 7))).numpy()
    assert run_time.shape == (5, 7)
    np.testing.assert_array_equal(static, run_time)
