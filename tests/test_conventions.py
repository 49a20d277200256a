"""The engine's conventions of issue 21, point 8, each against its analytic value: where
programming clips (at 0 by default, at Gmin as an option), what the generic device's spread is
per weight, and the DAC's sign.

Statistical tolerances as in tests/test_crossbar.py: Z = 5 standard errors of the estimator
(a mean: sd / sqrt(n); a std of normal draws: sd / sqrt(2 n); a fraction: sqrt(p (1 - p) / n)).
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from scipy.special import ndtr
from typer.testing import CliRunner

from nvmkit.core.errors import ConfigError
from nvmkit.engine.convert import convert
from nvmkit.engine.crossbar import Crossbar
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.generic import GenericDevice
from nvmkit_plugins.devices.ideal import IdealDevice
from nvmkit_plugins.devices.reram import MILO_A, MILO_B, ReRAM

Z = 5.0
L = keras.layers


def cfg(**nonideal) -> CrossbarConfig:
    return CrossbarConfig.from_dict({"nonideal": {"read_noise": False, **nonideal}})


def sparse_weights(rng, n_in=200, n_out=100, frac=0.5):
    """Half the weights 0 (both cells at Gmin), the others +-0.2 Wmax, and one at Wmax."""
    w = np.where(rng.random((n_in, n_out)) < frac, 0.0, 0.2 * np.sign(rng.normal(size=(n_in, n_out))))
    w[0, 0] = 1.0
    return w.astype(np.float32)


def test_default_clip_floor_is_zero_and_the_old_one_an_option():
    assert CrossbarConfig().nonideal.clip_floor == "zero"
    assert cfg(clip_floor="g_min").nonideal.clip_floor == "g_min"
    with pytest.raises(ConfigError, match="clip_floor must be one of zero, g_min"):
        cfg(clip_floor="gmin")


def test_cells_at_gmin_keep_their_whole_spread_with_the_zero_floor():
    """ReRAM cells programmed to Gmin = 50 uS (the idle cell of every pair): with the floor at 0
    their error keeps mean 0 and std sigma_Milo(50) = 4.327 uS; with the floor at Gmin it is
    rectified: half of them exactly at Gmin, mean sigma / sqrt(2 pi) = 1.726 uS. Fails if the
    default still clips at Gmin, or the option clips elsewhere."""
    rng = np.random.default_rng(0)
    dev = ReRAM()
    sigma = MILO_A * dev.g_min + MILO_B
    xb = Crossbar(sparse_weights(rng), None, dev, cfg())
    idle = xb.targets[1] == np.float32(dev.g_min)  # G- cells at Gmin: zero and positive weights
    e = xb.program(np.random.default_rng(1), 2).states[1][:, idle].astype(np.float64).ravel() - dev.g_min
    n = e.size
    assert abs(e.mean()) < Z * sigma / math.sqrt(n)
    assert abs(e.std() - sigma) < Z * sigma / math.sqrt(2 * n)

    old = Crossbar(sparse_weights(np.random.default_rng(0)), None, dev, cfg(clip_floor="g_min"))
    e = old.program(np.random.default_rng(1), 2).states[1][:, idle].astype(np.float64).ravel() - dev.g_min
    rect_mean, rect_sd = sigma / math.sqrt(2 * math.pi), sigma * math.sqrt(0.5 - 1 / (2 * math.pi))
    assert abs(np.mean(e == 0) - 0.5) < Z * math.sqrt(0.25 / n)
    assert abs(e.mean() - rect_mean) < Z * rect_sd / math.sqrt(n)
    assert abs(rect_sd - 2.53) < 0.005  # the 2.53 uS


def test_the_gmin_floor_pulls_every_nonzero_weight_toward_zero_by_one_percent():
    """The programmed weight of a nonzero target (here +-0.2 Wmax): unbiased with the floor at 0;
    with the floor at Gmin pulled toward 0 by sigma / sqrt(2 pi) / (Gmax - Gmin) = 0.99% of Wmax
    (its idle cell's rectified error). Fails if the zero floor still rectifies, or if the bias
    does not appear with the Gmin floor (the option would not be the old behaviour)."""
    dev = ReRAM()
    sigma0 = MILO_A * dev.g_min + MILO_B
    bias = sigma0 / math.sqrt(2 * math.pi) / dev.g_range  # in units of Wmax
    for floor, want in (("zero", 0.0), ("g_min", -bias)):
        rng = np.random.default_rng(2)
        w = sparse_weights(rng)
        xb = Crossbar(w, None, dev, cfg(clip_floor=floor))
        got = xb._to_weight(xb.program(np.random.default_rng(3), 2).states).astype(np.float64)
        sel = np.abs(w) == np.float32(0.2)
        err = (got - w[None])[:, sel] * np.sign(w[sel])[None]  # toward larger |w| is positive
        sd = err.std()
        assert abs(err.mean() - want) < Z * sd / math.sqrt(err.size), floor
    assert abs(bias - 0.0099) < 0.0001  # the "about 1% of Wmax"


def test_the_zero_floor_still_forbids_a_negative_conductance():
    """A cell whose spread reaches below 0 (generic, Gmin = 1 uS, std 4.95 uS at Gmin): no
    programmed conductance is negative, and those that would be sit at 0, as many as the normal
    CDF says (P = Phi(-1 / 4.95))."""
    dev = GenericDevice(sigma_prog=0.05)
    xb = Crossbar(np.zeros((300, 100), np.float32) + np.eye(300, 100, dtype=np.float32), None, dev, cfg())
    g = xb.program(np.random.default_rng(4), 1).states[1].ravel()  # G-: all at Gmin
    assert g.min() >= 0
    p = ndtr(-dev.g_min / (0.05 * dev.g_range))
    assert abs(np.mean(g == 0) - p) < Z * math.sqrt(p * (1 - p) / g.size)


@pytest.mark.parametrize("scheme, per_weight", [("differential", 0.025 * math.sqrt(2) / 2),
                                                ("offset", 0.025)])
def test_generic_spread_is_per_device_not_per_weight(scheme, per_weight):
    """generic's sigma_prog = 0.025 is per cell: a weight's std is 1.77% of the weight range
    Wmax - Wmin with differential pairs (sqrt(2) cells' spread on a range of 2 Wmax), 2.5% with
    one cell and an offset (unclipped here, to see the spread itself). Fails if the device or
    the engine splits the spread over the cells as the per-weight synaptic device does."""
    rng = np.random.default_rng(5)
    w = rng.uniform(-0.5, 0.5, size=(300, 200)).astype(np.float32)
    w[0, 0] = 1.0
    xb = Crossbar(w, None, GenericDevice(), CrossbarConfig.from_dict(
        {"mapping": {"scheme": scheme}, "nonideal": {"read_noise": False, "clip_conductance": False}}))
    err = (xb._to_weight(xb.program(np.random.default_rng(6), 1).states) - w[None]).astype(np.float64)
    std = err.std() / xb.weight_range
    assert abs(std - per_weight) < Z * per_weight / math.sqrt(2 * err.size)


def test_devices_show_generic_says_its_spread_is_per_device():
    from nvmkit.cli import app

    res = CliRunner().invoke(app, ["devices", "show", "generic", "--json"])
    assert res.exit_code == 0
    (p,) = [p for p in json.loads(res.stdout)["params"] if p["name"] == "sigma_prog"]
    assert "per device" in p["source"] and "1.8%" in p["source"] and "synaptic" in p["source"]


def _dac_model(x_cal, sign):
    m = keras.Sequential([keras.Input((2,)), L.Dense(1, use_bias=False)])
    m.layers[0].set_weights([np.array([[1.0], [0.5]], np.float32)])
    c = CrossbarConfig.preset("ideal")
    c.converters.dac_bits, c.converters.dac_sign = 8, sign
    return convert(m, IdealDevice(), c, calibration_data=x_cal)


def test_a_dac_calibrated_on_clean_images_cuts_negative_inputs():
    """Calibrated on inputs in [0, 1] (clean images) the DAC is unsigned: a negative input (a
    pixel pushed below 0 by Gaussian test-set noise) reads as 0. dac_sign = "signed" keeps it
    (within half a step of 1/127), "unsigned" cuts it even when the calibration data are signed.
    Fails if the sign is not taken from the data, or if the option is ignored."""
    clean = np.random.default_rng(7).random((50, 2), dtype=np.float32)
    x = np.array([[-0.4, 0.8]], np.float32)  # 1 * -0.4 + 0.5 * 0.8 = 0.0 if kept, 0.4 if cut
    cut = float(np.asarray(_dac_model(clean, "data")(x))[0, 0])
    kept = float(np.asarray(_dac_model(clean, "signed")(x))[0, 0])
    step = float(np.abs(clean).max()) / 127
    assert abs(cut - 0.4) < 1.5 * step / 2 and abs(kept) < 1.5 * step / 2
    signed_cal = 2 * clean - 1  # |x| up to about 1, as before
    step = float(np.abs(signed_cal).max()) / 127
    assert abs(float(np.asarray(_dac_model(signed_cal, "data")(x))[0, 0])) < 1.5 * step / 2
    assert abs(float(np.asarray(_dac_model(signed_cal, "unsigned")(x))[0, 0]) - 0.4) < 1.5 * step / 2
    with pytest.raises(ConfigError, match="dac_sign = 'signed' needs dac_bits >= 2"):
        CrossbarConfig.from_dict({"converters": {"dac_bits": 1, "dac_sign": "signed"}})
    with pytest.raises(ConfigError, match="dac_sign must be one of data, signed, unsigned"):
        CrossbarConfig.from_dict({"converters": {"dac_sign": "bipolar"}})
