"""Converters that err and cost as real ones (issue 21, point 3): each column ADC's offset, gain
error and input-referred noise, range calibration with headroom, and a conversion priced by its
resolution (the Walden law).

Statistical tolerances (as tests/test_crossbar.py): a sample mean of N draws of std s has std
s / sqrt(N); a sample variance, var sqrt(2 / N); a sample std, s / sqrt(2 N). Checks allow Z = 5
of those (a false failure ~ 6e-7 per check), with fixed seeds.
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.engine.convert import analog_footprint, analog_layers, calibrate_converters, convert, repeat_trials
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.ideal import IdealDevice
from nvmkit_plugins.energy.crossbar import ADC_ENERGY, CrossbarEnergy

Z = 5.0
L = keras.layers
BITS, RANGE = 12, 8.0
LSB = RANGE / (2 ** (BITS - 1) - 1)  # the signed ADC's step


def cfg(converters: dict, chip: dict | None = None, tile_rows: int = 1152) -> CrossbarConfig:
    """The ideal crossbar (exact weights, no noise) with a 12-bit ADC of fixed range 8 and the
    given converter errors: what the ADC adds is all that differs from x @ W."""
    return CrossbarConfig.from_dict({
        **CrossbarConfig.preset("ideal").to_dict(),
        "mapping": {"tile_rows": tile_rows},
        "converters": {"adc_bits": BITS, "adc_range": RANGE, **converters},
        "chip": chip or {}})


def dense(w):
    m = keras.Sequential([keras.Input((w.shape[0],)), L.Dense(w.shape[1], use_bias=False)])
    m.layers[0].set_weights([w])
    return m


def chip_of(model, name):
    return analog_layers(model)[0].cores[0].chip_vars[name].numpy()


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(21)


# -- errors in the read path -----------------------------------------------------------------------

def test_each_column_adc_offset_is_added_before_rounding(rng):
    """A zero input reads 0 on every column, so the ADC returns its offset rounded to its levels,
    summed over the row tiles (each tile's column has its own ADC), trial k with chip k: output
    = sum_tiles round(offset) LSB exactly (fails if the offset is ignored, shared by the tiles, in
    volts instead of LSB, or read with another trial's chip)."""
    k = 3
    w = rng.normal(size=(10, 7)).astype(np.float32)
    model = convert(dense(w), IdealDevice(), cfg({"adc_offset": 2.0}, tile_rows=4), trials=k, seed=1)
    offsets = chip_of(model, "adc_offset")  # (K, row tiles, cols) in LSB
    assert offsets.shape == (k, 3, 7)
    y = model.predict(np.zeros((2 * k, 10), np.float32), batch_size=2 * k, verbose=0).reshape(2, k, 7)
    want = np.round(offsets).sum(axis=1)  # (K, cols)
    np.testing.assert_array_equal(np.round(y / LSB), np.broadcast_to(want, y.shape))
    assert np.abs(want).max() >= 1  # the offsets are large enough to be seen


def test_conv_reads_apply_each_trials_adc_errors(rng):
    """The same through a convolution (read_conv: each trial's copy read on its own): a zero image
    gives trial k's rounded offsets at every output position, sample-major rows."""
    k = 3
    conv = keras.Sequential([keras.Input((5, 5, 2)), L.Conv2D(4, 3, use_bias=False)])
    model = convert(conv, IdealDevice(), cfg({"adc_offset": 2.0}, tile_rows=10), trials=k, seed=2)
    offsets = chip_of(model, "adc_offset")
    assert offsets.shape == (k, 2, 4)
    y = model.predict(np.zeros((2 * k, 5, 5, 2), np.float32), batch_size=2 * k, verbose=0)
    y = y.reshape(2, k, 3, 3, 4)
    want = np.round(offsets).sum(axis=1)[None, :, None, None, :]
    np.testing.assert_array_equal(np.round(y / LSB), np.broadcast_to(want, y.shape))


def test_gain_error_scales_each_columns_sum_and_its_gradient(rng):
    """Each tile column's partial sum is scaled by (1 + gain) before rounding (within one LSB of
    the float reference, mostly exact), and the gradient with respect to the weights carries the
    same factor (the ADC's rounding passes the gradient straight through): fails if the gain
    divides, is drawn per read, or is missing from training."""
    n_in, n_out = 12, 40
    w = rng.uniform(-0.5, 0.5, size=(n_in, n_out)).astype(np.float32)
    x = rng.uniform(0, 1, size=(64, n_in)).astype(np.float32)
    model = convert(dense(w), IdealDevice(), cfg({"adc_gain_error": 0.05}, tile_rows=6), trials=1, seed=3)
    gain = chip_of(model, "adc_gain")[0]  # (2 tiles, cols)
    y = model.predict(x, batch_size=64, verbose=0)
    parts = [x[:, :6] @ w[:6], x[:, 6:] @ w[6:]]
    ref = sum(np.round((1 + g) * p / LSB) * LSB for g, p in zip(gain, parts))
    assert np.abs(y - ref).max() <= 2 * LSB * (1 + 1e-3)  # two tiles, one LSB each at a tie
    assert np.mean(np.abs(y - ref) > LSB / 2) < 0.01
    assert np.abs(y - sum(parts)).max() > 10 * LSB  # the gain error is visible
    (layer,) = analog_layers(model)
    with __import__("tensorflow").GradientTape() as tape:
        out = model(x[:1], training=True)
        loss = keras.ops.sum(out)
    grad = tape.gradient(loss, layer.kernel).numpy()
    want = np.concatenate([x[0, :6, None] * (1 + gain[0]), x[0, 6:, None] * (1 + gain[1])])
    np.testing.assert_allclose(grad, want, rtol=1e-5)


def test_adc_noise_is_fresh_per_conversion_with_the_set_std():
    """Input-referred noise of s LSB before rounding: the outputs of one input read N times have
    mean x @ W and variance (s^2 + 1/12) LSB^2 (the rounding of a signal dithered by s >> 1 LSB is
    uniform and independent of it, Widrow's quantization theorem); two reads differ (fails if the
    noise is fixed per chip, in the wrong unit, or drawn once per batch)."""
    s, n, cols = 3.0, 4000, 10
    w = np.linspace(-1, 1, 5 * cols, dtype=np.float32).reshape(5, cols)
    model = convert(dense(w), IdealDevice(), cfg({"adc_noise": s}), trials=1, seed=4)
    x = np.full((n, 5), 0.3, np.float32)
    y = model.predict(x, batch_size=1000, verbose=0).astype(np.float64) / LSB
    mean_ref = (x[0] @ w).astype(np.float64) / LSB
    var = (s * s + 1 / 12)
    assert np.all(np.abs(y.mean(axis=0) - mean_ref) < Z * math.sqrt(var / n))
    pooled = y.var(axis=0, ddof=1).mean()
    assert abs(pooled - var) < Z * var * math.sqrt(2 / (n - 1)) / math.sqrt(cols)
    again = model.predict(x[:100], batch_size=100, verbose=0)
    assert not np.array_equal(again, model.predict(x[:100], batch_size=100, verbose=0))


def test_the_aimc_preset_is_the_cited_settings_output_noise():
    """``converters-aimc`` against Rasch et al. (Nat. Commun. 2023) as aihwkit states it, written
    here from the setting's own numbers: in units where a column's largest |weight| and the
    largest |input| are 1, Gaussian noise of std 0.04 is added to the column output, which an ADC
    of range [-10, 10] rounds in 254 steps. With that range, the preset's outputs must follow the
    exact distribution of round((x @ W + 0.04 z) / step) (its mean and variance summed over the
    levels). This checks the preset's noise in LSB at the setting's own range (the preset itself
    calibrates its range on data). Fails if the noise is in the wrong unit (0.04 LSB: 20x the
    tolerance), on a 10/254 step (47x) or off by 2x (17x), or is not drawn per conversion; a 255-
    or 256-step LSB (0.510, 0.512 LSB) is within the tolerance and not caught."""
    from scipy.stats import norm

    sigma, bound, steps = 0.04, 10.0, 254
    step = 2 * bound / steps
    conv = CrossbarConfig.preset("converters-aimc").converters.to_dict()
    assert conv["adc_bits"] == 8 and conv["dac_bits"] == 8 and conv["adc_offset"] == conv["adc_gain_error"] == 0
    assert conv["dac_sign"] == "signed"  # the setting's DAC: 254 steps on [-1, 1] for any input
    xcfg = CrossbarConfig.from_dict({**CrossbarConfig.preset("ideal").to_dict(),
                                     "converters": {**conv, "dac_bits": None, "adc_range": bound}})
    n, cols = 20000, 8
    w = np.linspace(-1, 1, 4 * cols, dtype=np.float32).reshape(4, cols)  # column max |w| <= 1
    x = np.full((n, 4), 0.37, np.float32)
    y = convert(dense(w), IdealDevice(), xcfg, trials=1, seed=8).predict(x, batch_size=5000, verbose=0)
    mu = (x[0] @ w).astype(np.float64)
    k = np.arange(-steps // 2, steps // 2 + 1)[:, None] * step
    p = norm.cdf((k + step / 2 - mu) / sigma) - norm.cdf((k - step / 2 - mu) / sigma)
    mean = (p * k).sum(axis=0)
    var = (p * k * k).sum(axis=0) - mean**2
    y = y.astype(np.float64)
    assert np.all(np.abs(y.mean(axis=0) - mean) < Z * np.sqrt(var / n))
    assert np.all(np.abs(y.var(axis=0, ddof=1) - var) < Z * var * math.sqrt(2 / (n - 1)))


def test_offsets_and_gains_have_the_set_spread():
    """The chip's offsets (LSB) and gain errors are normal with the configured std, one per column
    of each row tile per chip (fails if scaled twice or drawn per tile only)."""
    s_o, s_g, k = 1.5, 0.02, 4
    w = np.ones((20, 300), np.float32)
    model = convert(dense(w), IdealDevice(), cfg({"adc_offset": s_o, "adc_gain_error": s_g}, tile_rows=10),
                    trials=k, seed=5)
    for name, s in (("adc_offset", s_o), ("adc_gain", s_g)):
        v = chip_of(model, name).astype(np.float64)
        assert v.shape == (k, 2, 300)
        n = v.size
        assert abs(v.mean()) < Z * s / math.sqrt(n)
        assert abs(v.std(ddof=1) - s) < Z * s / math.sqrt(2 * n)
        # one draw per column, tile and chip: no two columns, tiles or chips share theirs
        assert not np.any(v[:, :, 1:] == v[:, :, :-1])
        assert not np.any(v[:, 0] == v[:, 1]) and not np.any(v[0] == v[1])


def test_same_chip_keeps_its_adcs_across_trials(rng):
    """chip.trials = "same-chip": one set of ADC offsets for every trial, equal to trial 0's of
    "new-chip"; a zero input then reads the same in every trial."""
    w = rng.normal(size=(8, 5)).astype(np.float32)
    same = convert(dense(w), IdealDevice(), cfg({"adc_offset": 2.0}, {"trials": "same-chip"}), trials=3, seed=6)
    new = convert(dense(w), IdealDevice(), cfg({"adc_offset": 2.0}), trials=3, seed=6)
    o_same, o_new = chip_of(same, "adc_offset"), chip_of(new, "adc_offset")
    assert o_same.shape[0] == 1 and o_new.shape[0] == 3
    np.testing.assert_array_equal(o_same[0], o_new[0])
    assert not np.array_equal(o_new[0], o_new[1])
    y = same.predict(np.zeros((3, 8), np.float32), batch_size=3, verbose=0)
    np.testing.assert_array_equal(y, np.broadcast_to(y[:1], y.shape))


def test_calibrated_range_has_the_headroom(rng):
    """adc_headroom h: the calibrated full scale is h x the largest ideal partial sum."""
    w = rng.normal(size=(16, 6)).astype(np.float32)
    x = rng.uniform(0, 1, size=(50, 16)).astype(np.float32)
    ranges = {}
    for h in (1.0, 1.5):
        c = cfg({"adc_headroom": h})
        c.converters.adc_range = None
        model = convert(dense(w), IdealDevice(), c, calibration_data=x)
        ranges[h] = float(analog_layers(model)[0].cores[0].adc_range.numpy())
    assert ranges[1.0] == pytest.approx(float(np.abs(x @ w).max()), rel=1e-6)
    assert ranges[1.5] == pytest.approx(1.5 * ranges[1.0], rel=1e-6)


def test_adc_errors_off_add_nothing(rng):
    """Off (the default) the read has no error term and no variables: the 12-bit read is x @ W
    rounded, exactly (fails if a zero offset or gain is still applied with float rounding)."""
    w = rng.normal(size=(9, 4)).astype(np.float32)
    x = rng.uniform(0, 1, size=(20, 9)).astype(np.float32)
    model = convert(dense(w), IdealDevice(), cfg({}))
    assert not analog_layers(model)[0].cores[0].chip_vars
    y = model.predict(x, verbose=0)
    np.testing.assert_allclose(y, np.round((x @ w) / LSB) * LSB, atol=1e-6)


@pytest.mark.parametrize("converters, fix", [
    ({"adc_bits": None, "adc_offset": 1.0}, "converters.adc_offset models a real ADC; set converters.adc_bits"),
    ({"adc_bits": None, "adc_noise": 0.5}, "converters.adc_noise models a real ADC"),
    ({"adc_gain_error": 5.0}, "adc_gain_error is a relative std"),
    ({"adc_headroom": 0}, "adc_headroom must be > 0"),
    ({"adc_offset": -1.0}, "adc_offset must be >= 0"),
])
def test_bad_converter_settings_name_the_fix(converters, fix):
    with pytest.raises(ConfigError, match=fix):
        CrossbarConfig.from_dict({"converters": {"adc_bits": 8, **converters}})


def test_converter_settings_round_trip():
    c = cfg({"adc_offset": 0.5, "adc_gain_error": 0.01, "adc_noise": 0.3, "adc_headroom": 1.25})
    assert CrossbarConfig.from_dict(c.to_dict()) == c
    assert CrossbarConfig.from_toml(c.to_toml()) == c


# -- energy: a conversion priced by its resolution ----------------------------------------------------

def mlp_report(bits, **estimator):
    from nvmkit.reproduction.energy_table import energy_report

    crossbar = CrossbarConfig.from_dict({"converters": {"adc_bits": bits}} if bits else {})
    return energy_report("mlp", "reram", {"converters": "explicit", **estimator}, crossbar=crossbar)


def test_conversion_energy_follows_the_walden_law():
    """2, 8 and 16 ADC bits: the converters' energy is count x 5 fJ x 2^b (the Walden figure of
    merit, adc_energy / 2^8), i.e. 2^(b - 8) times the 8-bit one, and nothing else moves; an ideal
    converter is priced at 8 bits; ``adc_scaling="fixed"`` prices every resolution alike (fails if
    the footprint loses the bits or the law's exponent is off)."""
    reports = {b: mlp_report(b) for b in (None, 2, 8, 16)}
    count = reports[8].counts_by_component()["adc"]
    assert count == 510  # 500 + 10 columns of the 784-500-10 MLP, one conversion each
    for b in (2, 8, 16):
        adc = reports[b].by_component()["adc"]
        assert adc == pytest.approx(count * ADC_ENERGY / 2**8 * 2**b, rel=1e-12)
        assert adc == pytest.approx(reports[8].by_component()["adc"] * 2.0 ** (b - 8), rel=1e-12)
        others = {c: e for c, e in reports[b].by_component().items() if c != "adc"}
        assert others == {c: e for c, e in reports[8].by_component().items() if c != "adc"}
    assert reports[None].total == reports[8].total
    fixed = {b: mlp_report(b, adc_scaling="fixed").total for b in (2, 16)}
    assert fixed[2] == fixed[16] == reports[8].total


def test_conversion_energy_follows_the_schreier_law():
    """``adc_scaling="schreier"``: a conversion costs ``10^((6.02 b + 1.76 - FOM_S) / 10) / 2`` (a
    Nyquist converter at the Schreier figure of merit, 186.7 dB from Murmann's survey), so 2, 8
    and 16 bits differ by 10^(0.602 (b - 8)) (4x per bit, not Walden's 2x), nothing else moves,
    and the parameter round-trips in the estimator's config and is validated. Fails on Walden's
    exponent, a missing 1/2 (bandwidth f_s / 2), a 20 log10 (amplitude) in place of 10 log10, or
    a figure of merit that does not reach the law."""
    from nvmkit.core.errors import ConfigError
    from nvmkit_plugins.energy.crossbar import ADC_SCHREIER_FOM, CrossbarEnergy

    assert ADC_SCHREIER_FOM == 186.7
    reports = {b: mlp_report(b, adc_scaling="schreier") for b in (2, 8, 16)}
    walden = mlp_report(8)
    count = reports[8].counts_by_component()["adc"]
    for b in (2, 8, 16):
        adc = reports[b].by_component()["adc"]
        assert adc == pytest.approx(count * 0.5 * 10 ** ((6.02 * b + 1.76 - 186.7) / 10), rel=1e-12)
        assert adc == pytest.approx(reports[8].by_component()["adc"] * 10 ** (0.602 * (b - 8)), rel=1e-12)
        others = {c: e for c, e in reports[b].by_component().items() if c != "adc"}
        assert others == {c: e for c, e in walden.by_component().items() if c != "adc"}
    assert reports[8].by_component()["adc"] / count == pytest.approx(10.49e-15, rel=1e-3)
    lower = mlp_report(8, adc_scaling="schreier", adc_schreier_fom=176.7).by_component()["adc"]
    assert lower == pytest.approx(10 * reports[8].by_component()["adc"], rel=1e-12)  # 10 dB worse: 10x
    est = CrossbarEnergy(adc_scaling="schreier", adc_schreier_fom=180.0)
    assert CrossbarEnergy.from_config(est.get_config()) == est
    for bad in (50.0, -1.0, 400.0):
        with pytest.raises(ConfigError, match="adc_schreier_fom"):
            CrossbarEnergy(adc_scaling="schreier", adc_schreier_fom=bad)


def test_footprint_carries_the_adc_bits():
    m = keras.Sequential([keras.Input((6,)), L.Dense(4)])
    for bits in (None, 5):
        c = CrossbarConfig.from_dict({"converters": {"adc_bits": bits, "adc_range": 1.0}} if bits else {})
        (fp,) = analog_footprint(convert(m, IdealDevice(), c))
        assert fp.adc_bits == bits


def test_energy_command_takes_crossbar_settings():
    """`nvmkit energy --set crossbar.converters.adc_bits=2` reaches the footprint; a key outside
    crossbar, or --set beside --seed-table, is one line."""
    from typer.testing import CliRunner

    from nvmkit.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["energy", "-n", "mlp", "--estimator", "crossbar:converters=explicit",
                              "--set", "crossbar.converters.adc_bits=2", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["by_component_J"]["adc"] == pytest.approx(510 * ADC_ENERGY / 2**6, rel=1e-12)
    assert any(t["what"] == "2-bit conversion" for t in report["terms"])
    for args, fix in ((["--set", "training.epochs=2"], "nvmkit energy takes crossbar settings"),
                      (["--seed-table", "--set", "crossbar.converters.adc_bits=4"], "give one or the other"),
                      (["--set", "crossbar.converters.adc_bits=99"], "adc_bits must lie in 1..24")):
        res = runner.invoke(app, ["energy", *args])
        assert res.exit_code == 2 and fix in res.output and "Traceback" not in res.output, res.output


def test_bad_adc_scaling_fails_at_construction():
    with pytest.raises(ConfigError, match="adc_scaling must be one of walden, fixed, schreier"):
        CrossbarEnergy(adc_scaling="murmann")
