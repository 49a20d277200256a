"""Global drift compensation (issue 21, point 7) and the SONOS drift fit's clamp above 1450 nA."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from nvmkit.core.errors import ConfigError
from nvmkit.engine.convert import analog_layers, convert, repeat_trials
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.generic import GenericDevice
from nvmkit_plugins.devices.sonos import DAY, DRIFT_FIT_MAX, DRIFT_POLY, SONOS

L = keras.layers
SEED = 7


def dense(w, b=None):
    m = keras.Sequential([keras.Input((w.shape[0],)), L.Dense(w.shape[1], use_bias=b is not None)])
    m.layers[0].set_weights([w] + ([b] if b is not None else []))
    return m


def programmed(analog):
    """(programmed weights (K, rows, cols), drift scale (K,) or None) of the single analog layer."""
    (layer,) = analog_layers(analog)
    core = layer.cores[0]
    user = layer.kernel.numpy()
    if core.bias_row:
        user = np.vstack([user, layer.bias.numpy()[None]])
    scale = None if core.drift_scale is None else core.drift_scale.numpy()
    return user[None] + core.delta.numpy(), scale


def cfg(**nonideal) -> CrossbarConfig:
    return CrossbarConfig.from_dict({"nonideal": nonideal})


@pytest.mark.parametrize("bias", ["row", "digital"])
def test_compensation_undoes_a_uniform_drift_exactly(bias):
    """A drift that scales every cell by the same factor (the power law without spread, no
    programming error) scales every weight by it; the compensation scale is its inverse, so the
    compensated read equals the read at t = 0 and the uncompensated one is off by the factor
    (the digital bias, which does not drift, is not scaled). Fails if the scale is not applied,
    inverted, applied to the digital bias, or taken from the wrong state."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 6)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    x = rng.random((5, 40), dtype=np.float32)
    base = {"programming_error": False, "read_noise": False, "quantize": False,
            "drift_model": "power-law", "drift_nu": 0.05}
    mapping = {"bias": bias}
    t = 10 * DAY
    at0 = convert(dense(w, b), GenericDevice(), CrossbarConfig.from_dict(
        {"nonideal": base, "mapping": mapping}), seed=SEED)
    drifted = convert(dense(w, b), GenericDevice(), CrossbarConfig.from_dict(
        {"nonideal": {**base, "drift_time": t}, "mapping": mapping}), seed=SEED)
    fixed = convert(dense(w, b), GenericDevice(), CrossbarConfig.from_dict(
        {"nonideal": {**base, "drift_time": t, "drift_compensation": "global"}, "mapping": mapping}),
        seed=SEED)
    factor = t ** -0.05  # the power law's factor, t0 = 1 s
    y0, y_drift, y_fixed = (np.asarray(m(x), dtype=np.float64) for m in (at0, drifted, fixed))
    assert programmed(fixed)[1] == pytest.approx([1 / factor], rel=1e-5)
    np.testing.assert_allclose(y_fixed, y0, rtol=1e-4, atol=1e-4 * np.abs(y0).max())
    assert np.abs(y_drift - y0).max() > 0.2 * np.abs(y0).max()  # the drift is large (factor 0.53)


class Sagging(GenericDevice):
    """A test cell whose drift is deterministic and not a common factor: high states sag most."""

    name = "sagging"

    def drift(self, g, t):
        return g if t <= 0 else g - np.float32(0.3) * np.square(g) / np.float32(self.g_max)


@pytest.mark.parametrize("device, nonideal", [
    (SONOS(), {"drift_time": 3 * DAY, "stuck_at_gmin": 0.05, "stuck_at_gmax": 0.02}),
    (Sagging(sigma_prog=0.02), {"drift_time": 1e5, "stuck_at_gmin": 0.05}),
])
def test_scale_is_the_reference_read_at_t0_over_the_read_at_drift_time(device, nonideal):
    """Per trial, the scale is mean|W| of the same cells at t = 0 (the same seed programmed at
    drift_time 0: the same deviates and faults; SONOS's spread at day 0) over mean|W| of the
    drifted array, for both orders of spread and drift (SONOS: the mean moves, the day's spread
    around it; the other: drift acting on each programmed cell). Fails if the t0 state is the
    target (noiseless), another trial's, drawn from another stream, or the drifted one (scale
    1), or if the trials' scales are mixed up."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(50, 8)).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    k = 3
    at0 = cfg(read_noise=False, **{**nonideal, "drift_time": 0.0})
    w0, _ = programmed(convert(dense(w, b), device, at0, trials=k, seed=SEED))
    on = cfg(read_noise=False, drift_compensation="global", **nonideal)
    wt, scale = programmed(convert(dense(w, b), device, on, trials=k, seed=SEED))
    want = np.abs(w0).mean(axis=(1, 2), dtype=np.float64) / np.abs(wt).mean(axis=(1, 2), dtype=np.float64)
    np.testing.assert_allclose(scale, want, rtol=2e-5)
    assert np.all(np.abs(scale - 1) > 1e-3) and len(set(scale.round(6))) == k


def test_compensation_is_off_by_default_and_idle_without_drift():
    """Off by default (no variable, today's outputs); on at drift_time 0 the scale is 1."""
    assert CrossbarConfig().nonideal.drift_compensation == "none"
    w = np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32)
    assert programmed(convert(dense(w), SONOS(), cfg()))[1] is None
    _, scale = programmed(convert(dense(w), SONOS(), cfg(drift_compensation="global"), trials=2))
    np.testing.assert_array_equal(scale, [1.0, 1.0])


def test_compensation_round_trips_and_refuses_an_unknown_mode(tmp_path):
    c = cfg(drift_compensation="global", drift_time=DAY)
    assert CrossbarConfig.from_dict(c.to_dict()) == c
    assert cfg(drift_compensation=None).nonideal.drift_compensation == "none"  # --set ...=none
    with pytest.raises(ConfigError, match="drift_compensation must be one of none, global"):
        cfg(drift_compensation="per-tile")
    w = np.random.default_rng(3).normal(size=(12, 4)).astype(np.float32)
    x = np.random.default_rng(4).random((3, 12), dtype=np.float32)
    analog = convert(dense(w), SONOS(), CrossbarConfig.from_dict(
        {"nonideal": {"read_noise": False, "drift_time": 4 * DAY, "drift_compensation": "global"}}),
        trials=2, seed=SEED)
    path = tmp_path / "a.keras"
    analog.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(programmed(loaded)[1], programmed(analog)[1])
    xr = repeat_trials(x, 2)
    np.testing.assert_array_equal(np.asarray(loaded(xr)), np.asarray(analog(xr)))


def test_compensation_scales_each_trial_of_a_convolution():
    """Convolutions are sample-major (B*K rows): each trial's block is scaled by its own
    factor. With a uniform drift every trial's factor is the same; with programming error and a
    spread of the exponent they differ, and the compensated output of trial k equals that
    trial's uncompensated output times its scale. Fails if the scale is broadcast over the
    wrong axis (trial k's factor applied to sample k)."""
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(3, 3, use_bias=False)])
    x = np.random.default_rng(5).random((4, 6, 6, 1), dtype=np.float32)
    k = 3
    base = {"read_noise": False, "drift_time": 1e5, "drift_model": "power-law", "drift_nu_sigma": 0.03}
    plain = convert(m, GenericDevice(sigma_prog=0.02), cfg(**base), trials=k, seed=SEED)
    comp = convert(m, GenericDevice(sigma_prog=0.02), cfg(**base, drift_compensation="global"),
                   trials=k, seed=SEED)
    (layer,) = analog_layers(comp)
    scale = layer.cores[0].drift_scale.numpy()
    assert len(set(scale.round(6))) == k
    xr = repeat_trials(x, k)
    y_plain = np.asarray(plain(xr)).reshape(4, k, -1)
    y_comp = np.asarray(comp(xr)).reshape(4, k, -1)
    np.testing.assert_allclose(y_comp, y_plain * scale[None, :, None], rtol=1e-5, atol=1e-6)


def test_sonos_drift_is_clamped_above_the_fitted_range():
    """Above 1450 nA the degree-10 fits diverge (day 1: -246 nA at 1600 nA); the device holds the
    shift at its 1450 nA value there and leaves it unchanged below, at every day. Fails without
    the clamp (the 1600 nA shift of day 1 is 5x the 1450 nA one) or with a clamp below 1450."""
    s = SONOS()
    below = np.linspace(0, DRIFT_FIT_MAX, 60, dtype=np.float32)
    above = np.array([1450.5, 1500, 1550, 1600, 1650], dtype=np.float32)
    for day in (1, 2, 3, 4, 5):
        raw = np.polynomial.polynomial.polyval(below.astype(np.float64), DRIFT_POLY[day])
        np.testing.assert_allclose(s.drift(below, day * DAY) - below, raw, rtol=1e-4, atol=2e-3)
        edge = np.polynomial.polynomial.polyval(DRIFT_FIT_MAX, DRIFT_POLY[day])
        np.testing.assert_allclose(s.drift(above, day * DAY) - above, edge, rtol=1e-4, atol=2e-3)
    assert abs(float(s.drift(np.float32([1600.0]), DAY)[0]) - 1600 - (-45.4)) < 0.1


def test_devices_show_sonos_says_the_drift_is_clamped():
    from nvmkit.cli import app

    res = CliRunner().invoke(app, ["devices", "show", "sonos", "--json"])
    assert res.exit_code == 0
    note = json.loads(res.stdout)["notes"]["drift"]
    assert "clamped" in note and "1450 nA" in note
