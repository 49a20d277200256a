"""nvmkit-pcm's own tests: the published fits, the statistics of drift and shot noise, and nvmkit's
conformance checks. Fixed seeds; tolerances from the sample sizes."""

import math

import numpy as np
import pytest

from nvmkit import ConfigError, CrossbarConfig, check_class, convert, get_registry
from nvmkit_pcm import PCM, PoissonNoise

N = 200_000  # cells / pixels per statistical test


@pytest.mark.parametrize("cls", [PCM, PoissonNoise])
def test_conformance(cls):
    failed = [r for r in check_class(cls, registry=get_registry()) if r.failed]
    assert not failed, failed


def test_registered_with_the_distribution_name():
    reg = get_registry(reload=True)
    for kind, name in (("device", "pcm"), ("noise", "poisson")):
        info = reg.info(kind, name)
        assert info.source.startswith("nvmkit-pcm "), info.source


@pytest.mark.parametrize("g, sigma", [(0.0, 0.2635), (12.5, 0.952725), (25.0, 1.0554)])
def test_programming_error_is_the_published_polynomial(g, sigma):
    # Nandakumar et al. 2019: sigma = -1.1731 g_T^2 + 1.9650 g_T + 0.2635 uS, g_T = G / 25 uS
    got = PCM().programming_sigma(np.array([g], np.float32), 0.0)
    assert got[0] == pytest.approx(sigma, rel=1e-5)


def test_drift_mean_and_spread_match_a_cell_by_cell_simulation():
    dev = PCM(prog_noise_scale=0.0, read_noise_scale=0.0)
    g0, t = np.float32(5.0), 86400.0  # g_T = 0.2, one day
    mu, sd = (float(v[0]) for v in dev.nu(np.array([g0])))
    nu = np.random.default_rng(0).normal(mu, sd, N)
    cells = g0 * (t / dev.t0) ** -nu  # every cell with its own drift exponent
    mean = float(dev.drift(np.array([g0]), t)[0])
    spread = float(dev.programming_sigma(np.array([g0]), t)[0]) * mean / g0  # engine: noise, then drift
    assert mean == pytest.approx(cells.mean(), abs=5 * cells.std() / math.sqrt(N))
    # std of a sample std ~ sigma sqrt((kurtosis - 1) / 4N); this log-normal's kurtosis is ~3.3
    assert spread == pytest.approx(cells.std(), rel=5 * math.sqrt(2.3 / (4 * N)))
    assert mean < g0  # PCM conductance decays


def test_no_drift_before_t0_and_power_law_after():
    dev = PCM(read_noise_scale=0.0)
    g = np.linspace(0.5, 25.0, 8, dtype=np.float32)
    np.testing.assert_array_equal(dev.drift(g, 0.0), g)
    np.testing.assert_array_equal(dev.drift(g, dev.t0), g)
    mu, sd = dev.nu(g)
    for t in (200.0, 2e4, 2e6):
        L = math.log(t / dev.t0)
        np.testing.assert_allclose(dev.drift(g, t), g * np.exp(-mu * L + 0.5 * (sd * L) ** 2), rtol=1e-5)


def test_1f_noise_splits_into_frozen_and_per_read_parts():
    # The fast and slow bands together are the whole 1/f band ln((t + t_read) / (2 t_read)).
    dev = PCM(prog_noise_scale=0.0, drift_scale=0.0)
    g = np.linspace(1.0, 25.0, 6, dtype=np.float32)
    t = 3600.0
    total = (g * dev.q_s(g)) ** 2 * math.log((t + dev.read_time) / (2 * dev.read_time))
    parts = dev.programming_sigma(g, t) ** 2 + dev.read_sigma(g) ** 2
    np.testing.assert_allclose(parts, total, rtol=1e-4)
    assert np.all(dev.read_sigma(g) < dev.programming_sigma(g, t))  # slow 1/f noise dominates


def test_drift_shrinks_crossbar_outputs_by_the_drift_factor():
    dev = PCM(prog_noise_scale=0.0, read_noise_scale=0.0)
    cols, t = 2000, 86400.0
    # the largest weight maps to g_max; the others to g_max / 2, far enough from both ends that
    # the engine's clipping to [g_min, g_max] (before drift) leaves their spread symmetric
    w = np.full((4, cols), 0.25, np.float32)
    w[0, 0] = 0.5
    x = np.ones((1, 4), np.float32)
    cfg = CrossbarConfig.from_dict({"nonideal": {"drift_time": t, "quantize": False},
                                    "mapping": {"bias": "digital"}})
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(cols, use_bias=False)])
    model.set_weights([w])
    y = np.asarray(convert(model, dev, cfg, seed=0)(x))
    y = y[0, 1:]  # each column is its own draw of the drift-exponent spread
    half = np.array([dev.g_max / 2], np.float32)
    factor = float(dev.drift(half, t)[0] / half[0])
    assert y.mean() == pytest.approx(4 * 0.25 * factor, abs=float(5 * y.std() / math.sqrt(cols)))
    assert factor < 0.7  # a day at g_T = 0.5 (nu ~ 0.049) loses over 30%


@pytest.mark.parametrize("params", [{"t0": -1.0}, {"drift_scale": float("nan")}, {"g_max": 0.0},
                                    {"read_window": 0}, {"levels": 1}])
def test_bad_parameters_raise_config_error(params):
    with pytest.raises(ConfigError):
        PCM.from_config(params)


def test_poisson_noise_has_the_shot_noise_statistics():
    inj = PoissonNoise(sigma=0.1)  # 100 photons at white
    x = np.full(N, 0.3, np.float32)
    y = inj.apply(x, np.random.default_rng(0))
    expected_std = 0.1 * math.sqrt(0.3)
    assert y.mean() == pytest.approx(0.3, abs=5 * expected_std / math.sqrt(N))
    assert y.std() == pytest.approx(expected_std, rel=5 * math.sqrt(1 / (2 * N)))
    dark = inj.apply(np.zeros(100, np.float32), np.random.default_rng(1))
    assert np.all(dark == 0)  # no photons, no noise


def test_poisson_zero_is_the_identity_and_the_seed_decides():
    x = np.random.default_rng(2).random((3, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(PoissonNoise(0.0).apply(x, np.random.default_rng(0)), x)
    inj = PoissonNoise(0.2)
    a, b = (inj.apply(x, np.random.default_rng(5)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, inj.apply(x, np.random.default_rng(6)))
