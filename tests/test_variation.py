"""Chip-to-chip physics (issue 21, points 4 and 5): cell-to-cell spread of Gmin and Gmax, spatially
correlated variation (per tile, a gradient across each tile), and whether a Monte Carlo trial is a
new chip or the same chip reprogrammed.

Statistical tolerances (as tests/test_crossbar.py): a sample mean of N draws of std s has std
s / sqrt(N); a sample std, s / sqrt(2 N); a binomial fraction, sqrt(p (1 - p) / N). Checks allow
Z = 5 of those (a false failure ~ 6e-7 per check), with fixed seeds.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.engine.convert import analog_layers, chip_streams, convert, draw_chips, reprogram
from nvmkit.engine.crossbar import STUCK_AT_GMAX, STUCK_AT_GMIN, Chip, Crossbar
from nvmkit.engine.crossbar_config import ChipConfig, CrossbarConfig
from nvmkit_plugins.devices.generic import GenericDevice
from nvmkit_plugins.devices.ideal import IdealDevice
from nvmkit_plugins.devices.reram import ReRAM

Z = 5.0
L = keras.layers
G_MIN, G_MAX = 10.0, 100.0
#: no programming error, levels or clipping of the target: the programmed cell is the chip's
EXACT = {"programming_error": False, "read_noise": False, "quantize": False}


def cfg(**sections) -> CrossbarConfig:
    return CrossbarConfig.from_dict(sections)


def one_chip(xb: Crossbar, seed: int = 3) -> Chip:
    return xb.draw_chip(chip_streams(seed, 0, 0))


def columns(rows: int, fracs) -> np.ndarray:
    """A weight matrix whose column j is fracs[j] x Wmax on every row (Wmax = 1): with the
    differential scheme the G+ cell of column j targets Gmin + fracs[j] (Gmax - Gmin)."""
    w = np.tile(np.asarray(fracs, dtype=np.float32), (rows, 1))
    w[0, 0] = 1.0 if max(fracs) < 1 else w[0, 0]  # the largest |W| sets Wmax = 1
    return w


def dense_model(w, b=None):
    n_in, n_out = w.shape
    m = keras.Sequential([keras.Input((n_in,)), L.Dense(n_out, use_bias=b is not None)])
    m.layers[0].set_weights([w] + ([b] if b is not None else []))
    return m


# -- point 4: the spread of each cell's range ---------------------------------------------------------

def test_range_spread_is_lognormal_around_the_device_range():
    """Each cell's Gmin and Gmax: ln(G / G_device) has mean 0 and std gmin_spread / gmax_spread
    (fails if the spread is applied as a variance, to the target instead of the range, or shared
    by the cells)."""
    s_lo, s_hi = 0.2, 0.1
    xb = Crossbar(columns(4000, [0.0, 1.0]), None, IdealDevice(G_MIN, G_MAX),
                  cfg(nonideal=EXACT, chip={"gmin_spread": s_lo, "gmax_spread": s_hi}))
    chip = one_chip(xb)
    for arr, g0, s in ((chip.g_lo, G_MIN, s_lo), (chip.g_hi, G_MAX, s_hi)):
        ln = np.log(arr.astype(np.float64) / g0).ravel()
        n = ln.size
        assert abs(ln.mean()) < Z * s / math.sqrt(n)
        assert abs(ln.std(ddof=1) - s) < Z * s / math.sqrt(2 * n)
    # the programmed cells: a cell at Gmin sits at its own Gmin, a cell at Gmax at its own Gmax
    g_plus, g_minus = (s[0] for s in xb.program(np.random.default_rng(0), 1, chip=chip).states)
    np.testing.assert_array_equal(g_minus, chip.g_lo[0, 1])  # W >= 0: every G- targets Gmin
    np.testing.assert_allclose(g_plus[:, 1], chip.g_hi[0, 0, :, 1], rtol=1e-6)  # lo + 1 (hi - lo)
    np.testing.assert_array_equal(g_plus[:, 0], chip.g_lo[0, 0, :, 0])


def test_a_level_lands_at_the_same_fraction_of_the_cells_range():
    """Open-loop programming: a target at fraction f of the device's range lands at fraction f of
    the cell's own range, exactly; its mean over cells is (1 - f) Gmin e^(s1^2/2) + f Gmax
    e^(s2^2/2), the lognormal means (fails if the level keeps its nominal conductance)."""
    s_lo, s_hi, f = 0.3, 0.2, 0.4
    xb = Crossbar(columns(20000, [f]), None, IdealDevice(G_MIN, G_MAX),
                  cfg(nonideal=EXACT, chip={"gmin_spread": s_lo, "gmax_spread": s_hi}))
    chip = one_chip(xb)
    g = xb.program(np.random.default_rng(0), 1, chip=chip).states[0][0, 1:, 0].astype(np.float64)
    lo, hi = chip.g_lo[0, 0, 1:, 0].astype(np.float64), chip.g_hi[0, 0, 1:, 0].astype(np.float64)
    np.testing.assert_allclose(g, lo + f * (hi - lo), rtol=2e-6)
    mean = (1 - f) * G_MIN * math.exp(s_lo**2 / 2) + f * G_MAX * math.exp(s_hi**2 / 2)
    assert abs(g.mean() - mean) < Z * g.std(ddof=1) / math.sqrt(g.size)


def test_clipping_and_stuck_cells_use_the_cells_own_bounds():
    """With a wide programming error every clipped cell lies inside its own [Gmin, Gmax] (and some
    touch each bound), and a stuck cell sits at its own Gmin or Gmax (fails if the device's
    nominal bounds are used)."""
    dev = GenericDevice(sigma_prog=0.3, g_min=G_MIN, g_max=G_MAX)
    settings = {"read_noise": False, "quantize": False, "stuck_at_gmin": 0.05, "stuck_at_gmax": 0.05}
    # the default floor is 0 (a cell can land below its own Gmin, never below 0)
    xb = Crossbar(columns(3000, [0.0, 0.5, 1.0]), None, dev,
                  cfg(nonideal=settings, chip={"gmin_spread": 0.3, "gmax_spread": 0.3}))
    chip = one_chip(xb)
    for i, g in enumerate(xb.program(np.random.default_rng(1), 2, chip=chip).states):
        lo, hi = chip.g_lo[:, i], chip.g_hi[:, i]
        free = chip.stuck[:, i] == 0
        assert np.all(g >= 0) and np.all(g <= hi) and np.any((g < lo) & free)
    # clip_floor = "g_min", the alternative: every cell inside its own [Gmin, Gmax]
    xb = Crossbar(columns(3000, [0.0, 0.5, 1.0]), None, dev,
                  cfg(nonideal={**settings, "clip_floor": "g_min"},
                      chip={"gmin_spread": 0.3, "gmax_spread": 0.3}))
    chip = one_chip(xb)
    states = xb.program(np.random.default_rng(1), 2, chip=chip).states
    for i, g in enumerate(states):
        lo, hi = chip.g_lo[:, i], chip.g_hi[:, i]
        assert np.all(g >= lo) and np.all(g <= hi)
        free = chip.stuck[:, i] == 0
        assert np.any((g == lo) & free) and np.any((g == hi) & free)  # clipped at the cell's bounds
        mask = np.broadcast_to(chip.stuck[:, i], g.shape)
        np.testing.assert_array_equal(g[mask == STUCK_AT_GMIN], np.broadcast_to(lo, g.shape)[mask == STUCK_AT_GMIN])
        np.testing.assert_array_equal(g[mask == STUCK_AT_GMAX], np.broadcast_to(hi, g.shape)[mask == STUCK_AT_GMAX])
    # the nominal bounds are crossed by cells whose own range lies beyond them
    assert states[0].min() < G_MIN and states[0].max() > G_MAX


def test_stuck_cells_from_the_chip_stream_have_the_configured_fractions():
    p_lo, p_hi = 0.03, 0.07
    xb = Crossbar(np.ones((300, 200), np.float32), None, IdealDevice(G_MIN, G_MAX),
                  cfg(nonideal={**EXACT, "stuck_at_gmin": p_lo, "stuck_at_gmax": p_hi}))
    mask = one_chip(xb).stuck
    n = mask.size
    for code, p in ((STUCK_AT_GMIN, p_lo), (STUCK_AT_GMAX, p_hi)):
        assert abs((mask == code).mean() - p) < Z * math.sqrt(p * (1 - p) / n)


# -- point 4: spatially correlated variation -----------------------------------------------------------

def _factor(xb: Crossbar, chip: Chip) -> np.ndarray:
    """The chip's conductance factor per (row, col): its Gmax over the device's (no cell spread)."""
    return chip.g_hi[0, 0].astype(np.float64) / G_MAX


def test_one_factor_per_tile_with_the_tile_spread():
    """tile_spread: every cell of a tile shares one factor (both ends of its range), and ln of the
    factors has std tile_spread over tiles (fails if drawn per cell or per row)."""
    s, tr, tc = 0.2, 4, 5
    xb = Crossbar(np.ones((4 * 30, 5 * 30), np.float32), None, IdealDevice(G_MIN, G_MAX),
                  cfg(nonideal=EXACT, chip={"tile_spread": s}, mapping={"tile_rows": tr, "tile_cols": tc}))
    chip = one_chip(xb)
    f = _factor(xb, chip)
    np.testing.assert_allclose(chip.g_lo[0, 0] / G_MIN, f, rtol=1e-6)
    tiles = f.reshape(30, tr, 30, tc)
    np.testing.assert_allclose(tiles, tiles[:, :1, :, :1] * np.ones_like(tiles), rtol=1e-6)
    ln = np.log(tiles[:, 0, :, 0]).ravel()
    assert abs(ln.std(ddof=1) - s) < Z * s / math.sqrt(2 * ln.size)
    assert abs(ln.mean()) < Z * s / math.sqrt(ln.size)


def test_gradient_is_a_plane_of_the_set_slope_in_a_uniform_direction():
    """gradient: within each tile the factor is 1 + gradient (cos a u + sin a v) with u, v the
    cell's position in [-1/2, 1/2]: a least-squares plane fits it exactly and its slope has norm
    ``gradient``; the directions a are uniform over tiles (E cos a = E sin a = E cos 2a = 0, each
    of std 1/sqrt(2 n)) (fails if the slope is per array instead of per tile, or the direction fixed)."""
    grad, tr, tc, n_r, n_c = 0.3, 16, 8, 25, 30
    xb = Crossbar(np.ones((tr * n_r, tc * n_c), np.float32), None, IdealDevice(G_MIN, G_MAX),
                  cfg(nonideal=EXACT, chip={"gradient": grad}, mapping={"tile_rows": tr, "tile_cols": tc}))
    f = _factor(xb, one_chip(xb)).reshape(n_r, tr, n_c, tc).transpose(0, 2, 1, 3).reshape(-1, tr * tc)
    u, v = np.meshgrid((np.arange(tr) + 0.5) / tr - 0.5, (np.arange(tc) + 0.5) / tc - 0.5, indexing="ij")
    design = np.stack([np.ones(tr * tc), u.ravel(), v.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, f.T, rcond=None)  # (3, tiles)
    np.testing.assert_allclose(design @ coef, f.T, atol=2e-6)  # a plane, exactly
    np.testing.assert_allclose(coef[0], 1.0, atol=2e-6)
    np.testing.assert_allclose(np.hypot(coef[1], coef[2]), grad, rtol=1e-4)
    a = np.arctan2(coef[2], coef[1])
    n = a.size
    for stat in (np.cos(a), np.sin(a), np.cos(2 * a)):
        assert abs(stat.mean()) < Z / math.sqrt(2 * n)


# -- point 5: a trial is a new chip, or the same chip reprogrammed ---------------------------------------

VARIED = {"nonideal": {"read_noise": False, "stuck_at_gmin": 0.15, "stuck_at_gmax": 0.15},
          "chip": {"gmin_spread": 0.2, "gmax_spread": 0.2}}


def _chip_vars(model):
    (layer,) = analog_layers(model)
    return {n: v.numpy() for n, v in layer.cores[0].chip_vars.items()}


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(5)
    return rng.normal(size=(40, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)


def test_new_chip_redraws_the_chip_per_trial(weights):
    """chip.trials = "new-chip" (default): each trial its own chip (its stuck cells differ), chip k
    from the streams (3, k): trial 0 is the same chip with 1 or 3 trials (fails if the chips come
    from one stream in trial order, or are shared)."""
    w, b = weights
    three = _chip_vars(convert(dense_model(w, b), ReRAM(), cfg(**VARIED), trials=3, seed=4))
    one = _chip_vars(convert(dense_model(w, b), ReRAM(), cfg(**VARIED), trials=1, seed=4))
    assert three["stuck"].shape[0] == 3 and three["g_lo"].shape[0] == 3
    assert not np.array_equal(three["stuck"][0], three["stuck"][1])
    assert not np.array_equal(three["g_lo"][1], three["g_lo"][2])
    for name in ("stuck", "g_lo", "g_hi"):
        np.testing.assert_array_equal(three[name][:1], one[name])


def test_same_chip_keeps_the_chip_across_trials(weights):
    """chip.trials = "same-chip": one chip for every trial (stuck at the same cells, the same
    ranges), only the programming error differs; that chip is trial 0's chip of "new-chip" (fails
    if the mode is ignored or the same-chip chip comes from another stream)."""
    w, b = weights
    same = cfg(**{**VARIED, "chip": {**VARIED["chip"], "trials": "same-chip"}})
    model = convert(dense_model(w, b), ReRAM(), same, trials=3, seed=4)
    chip = _chip_vars(model)
    assert chip["stuck"].shape[0] == 1
    new = _chip_vars(convert(dense_model(w, b), ReRAM(), cfg(**VARIED), trials=3, seed=4))
    for name in chip:
        np.testing.assert_array_equal(chip[name][0], new[name][0])
    (layer,) = analog_layers(model)
    delta = layer.cores[0].delta.numpy()  # programmed - user weight, per trial
    stuck_both = np.all(chip["stuck"][0] != 0, axis=0)  # both cells of the weight stuck
    # a weight whose two cells are stuck is the same in every trial; the others differ (ReRAM's
    # programming error)
    np.testing.assert_array_equal(delta[0][stuck_both], delta[1][stuck_both])
    assert stuck_both.any() and not np.allclose(delta[0][~stuck_both], delta[1][~stuck_both])


def test_trial_spread_is_the_chips_only_for_new_chips():
    """A zero weight on a chip with Gmin spread s (no programming error): its programmed value is
    (Gmin+ - Gmin-) x Wmax / (Gmax - Gmin), which varies between trials with variance
    2 Gmin^2 e^(s^2) (e^(s^2) - 1) (Wmax / range)^2 when each trial is a new chip, and not at all
    when the trials reprogram one chip."""
    s, k = 0.2, 400
    w = np.zeros((30, 4), np.float32)
    w[0, 0] = 1.0  # Wmax = 1
    config = {"nonideal": EXACT, "chip": {"gmin_spread": s}}
    dev = IdealDevice(G_MIN, G_MAX)
    new = convert(dense_model(w), dev, cfg(**config), trials=k, seed=2)
    d = analog_layers(new)[0].cores[0].delta.numpy()[:, 1:, 1:].astype(np.float64)  # zero weights
    var = 2 * G_MIN**2 * math.exp(s**2) * (math.exp(s**2) - 1) / (G_MAX - G_MIN) ** 2
    per_weight = d.var(axis=0, ddof=1)  # k - 1 degrees of freedom each: std var sqrt(2/(k-1))
    n = per_weight.size
    assert abs(per_weight.mean() - var) < Z * var * math.sqrt(2 / (k - 1)) / math.sqrt(n)
    same = convert(dense_model(w), dev, cfg(**{**config, "chip": {**config["chip"], "trials": "same-chip"}}),
                   trials=4, seed=2)
    ds = analog_layers(same)[0].cores[0].delta.numpy()
    np.testing.assert_array_equal(ds, np.broadcast_to(ds[:1], ds.shape))
    assert ds[:, 1:, 1:].std() > 0  # the chip's spread is there, only identical in every trial


def test_reprogram_draws_a_chip_from_the_seed_or_keeps_the_saved_one(weights, tmp_path):
    """reprogram(model, seed) draws the chips from the seed; keep_chip=True reprograms the chips
    the model holds, also after a save and load (the .keras file keeps its chip); fails if the
    chip is not stored, not saved, or redrawn despite keep_chip."""
    w, b = weights
    same = cfg(**{**VARIED, "chip": {**VARIED["chip"], "trials": "same-chip"}})
    model = convert(dense_model(w, b), ReRAM(), same, trials=2, seed=4)
    first = _chip_vars(model)
    reprogram(model, 9)
    other = _chip_vars(model)
    assert not np.array_equal(first["stuck"], other["stuck"])
    path = tmp_path / "chip.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for name, value in _chip_vars(loaded).items():
        np.testing.assert_array_equal(value, other[name])
    reprogram(loaded, 11, keep_chip=True)
    reprogram(model, 11, keep_chip=True)
    kept = _chip_vars(loaded)
    for name, value in kept.items():
        np.testing.assert_array_equal(value, other[name])
    np.testing.assert_array_equal(analog_layers(loaded)[0].cores[0].delta.numpy(),
                                  analog_layers(model)[0].cores[0].delta.numpy())


def test_effects_off_draw_and_store_nothing(weights):
    """Off by default: no chip variables (a saved model has exactly today's weights), and
    programming through the (empty) chip consumes the programming streams as the crossbar's own
    path does, bit for bit (fails if a chip draw touched the programming stream)."""
    w, b = weights
    for c in ({}, {"nonideal": {"drift_time": 3600.0}}, {"converters": {"adc_bits": 6, "adc_range": 5.0}}):
        model = convert(dense_model(w, b), ReRAM(), cfg(**c), trials=3, seed=4)
        (layer,) = analog_layers(model)
        assert not layer.cores[0].chip_vars
        assert all("chip" not in v.name for v in layer.weights)
        xb = Crossbar(w, b, ReRAM(), cfg(**c))
        gens = [np.random.default_rng(np.random.SeedSequence(4, spawn_key=(0, k))) for k in range(3)]
        ref = np.concatenate([xb.program(g, 1).weights() for g in gens])
        user = np.vstack([w, b[None]])
        np.testing.assert_array_equal(layer.cores[0].delta.numpy(), ref - user[None])
        assert draw_chips(xb, 4, 0, 3).chips == 0


# -- configuration -------------------------------------------------------------------------------------

@pytest.mark.parametrize("chip, fix", [
    ({"trials": "per-trial"}, "chip.trials must be one of new-chip, same-chip"),
    ({"gmin_spread": 2.0}, "chip.gmin_spread is the std of ln G"),
    ({"tile_spread": -0.1}, "tile_spread must be >= 0"),
    ({"gradient": 1.5}, "gradient must lie in [0, 1]"),
])
def test_bad_chip_settings_name_the_fix(chip, fix):
    with pytest.raises(ConfigError, match=fix.replace("[", r"\[").replace("]", r"\]")):
        cfg(chip=chip)


def test_chip_settings_round_trip_and_reach_a_run():
    c = cfg(chip={"trials": "same-chip", "gmin_spread": 0.1, "gmax_spread": 0.05, "tile_spread": 0.02,
                  "gradient": 0.1})
    assert CrossbarConfig.from_dict(c.to_dict()) == c
    assert CrossbarConfig.from_toml(c.to_toml()) == c
    assert ChipConfig().to_dict() == {"trials": "new-chip", "gmin_spread": 0.0, "gmax_spread": 0.0,
                                      "tile_spread": 0.0, "gradient": 0.0}
    from nvmkit.workflow.config import RunConfig
    from nvmkit.workflow.pipeline import apply_overrides

    data = apply_overrides({}, {}, sets=["crossbar.chip.trials=same-chip", "crossbar.chip.gradient=0.2"])
    run = RunConfig.from_dict(data)
    assert run.crossbar.chip.trials == "same-chip" and run.crossbar.chip.gradient == 0.2


def test_a_bad_chip_setting_on_the_command_line_is_one_line():
    from typer.testing import CliRunner

    from nvmkit.cli import app

    res = CliRunner().invoke(app, ["run", "--dry-run", "--set", "crossbar.chip.trials=sometimes"])
    assert res.exit_code == 2
    assert "chip.trials must be one of new-chip, same-chip" in res.output
    assert "Traceback" not in res.output
