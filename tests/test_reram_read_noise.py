"""The bundled ReRAM's read noise (issue 21, point 6): none by default (documented why in its
docstring), and, when a study sets it, a conductance-dependent std per read and per cell,
sqrt((sigma_read (Gmax - Gmin))^2 + (sigma_read_rel G)^2), checked against the output-space
model on the programmed conductances. Tolerances: Z = 5 standard errors of a sample std
(sd / sqrt(2 n)) and of a sample mean (sd / sqrt(n))."""

from __future__ import annotations

import keras
import numpy as np

from nvmkit.engine.convert import analog_layers, convert
from nvmkit.engine.crossbar import Crossbar
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.reram import ReRAM

Z = 5.0
L = keras.layers
SEED = 3


def test_default_reram_reads_the_same_twice():
    """No read noise by default: two reads of a converted model agree to the bit, and the layer
    keeps no read-noise state. Fails if a default read-noise level creeps in undocumented."""
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(4, 3), L.Flatten(), L.Dense(3)])
    x = np.random.default_rng(0).random((5, 6, 6, 1), dtype=np.float32)
    analog = convert(m, ReRAM(), seed=SEED)
    np.testing.assert_array_equal(np.asarray(analog(x)), np.asarray(analog(x)))
    assert all(layer.noise_mode == "none" for layer in analog_layers(analog))


def test_relative_read_noise_follows_the_programmed_conductance():
    """With sigma_read_rel = 0.05 each output of a read has std
    sqrt(sum_i x_i^2 (0.05 G+_ij)^2 + (0.05 G-_ij)^2) x gain over the programmed cells (the bias
    row driven at 1), around the programmed read; 4000 reads of one input. The per-column stds
    differ (the noise depends on the state). Fails if sigma_read_rel is ignored, the noise is one
    value per column or scaled by the wrong gain, or is frozen between reads."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(60, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    x = rng.random((1, 60), dtype=np.float32)
    dev = ReRAM(sigma_read_rel=0.05)
    config = CrossbarConfig()
    m = keras.Sequential([keras.Input((60,)), L.Dense(5)])
    m.layers[0].set_weights([w, b])
    analog = convert(m, dev, config, seed=SEED)
    xb = Crossbar(w, b, dev, config)  # the programming convert() does for trial 0 (its stream)
    gen = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(0, 0)))
    states = [s[0].astype(np.float64) for s in xb.program(gen, 1).states]
    var_w = sum(np.square(0.05 * s) for s in states) * xb.current_to_weight**2
    drive = np.square(np.append(x[0], 1.0)).astype(np.float64)
    expected = np.sqrt(drive @ var_w)
    n = 4000
    ys = np.asarray(analog(np.repeat(x, n, axis=0))).astype(np.float64)
    np.testing.assert_array_less(np.abs(ys.std(axis=0) - expected), Z * expected / np.sqrt(2 * n))
    clean = np.append(x[0], 1.0).astype(np.float64) @ xb._to_weight(states)
    np.testing.assert_array_less(np.abs(ys.mean(axis=0) - clean), Z * expected / np.sqrt(n) + 1e-4)
    assert expected.max() / expected.min() > 1.05  # state-dependent, not one level per column


def test_reram_read_sigma_is_the_stated_formula():
    d = ReRAM(sigma_read=0.01, sigma_read_rel=0.03)
    g = np.array([50.0, 100.0, 225.0], np.float32)
    np.testing.assert_allclose(d.read_sigma(g), np.sqrt((0.01 * 175.0) ** 2 + (0.03 * g) ** 2), rtol=1e-6)
    np.testing.assert_array_equal(ReRAM().read_sigma(g), np.zeros(3, np.float32))
