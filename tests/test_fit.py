"""Fitting a device from measurements: recovery of the bundled models' cited curves from cells
sampled from them, the same Monte Carlo accuracy from the fitted device, and bad files refused."""

import numpy as np
import pytest

from nvmkit import ConfigError, DataError, create_from_spec, fit_device, load_device_table
from nvmkit.fit import Measurements, read_measurements, sample_measurements, write_text_atomic

DAY = 86400.0


def _write(path, m: Measurements, time_units="days"):
    write_text_atomic(path, m.to_csv(time_units=time_units))
    return path


# -- recovery: SONOS (programming spread widening over days, read noise, drift) ------------------

SONOS_TARGETS = [200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0]
SONOS_TIMES = np.arange(6) * DAY  # the days of the published fits
SONOS_CELLS, SONOS_READS = 1500, 2


@pytest.fixture(scope="module")
def sonos_fit(tmp_path_factory):
    sonos = create_from_spec("device", "sonos")
    m = sample_measurements(sonos, SONOS_TARGETS, cells=SONOS_CELLS, reads=SONOS_READS, times=SONOS_TIMES, seed=11)
    path = _write(tmp_path_factory.mktemp("sonos") / "cells.csv", m)  # through the CSV, as a user would
    return sonos, fit_device(path)


def _sd_of_prog_estimate(ps, read, cells, reads):
    """Standard error of the programming-spread estimate (delta method): the variance of the cell
    means, ps^2 + read^2/reads, has relative standard error sqrt(2/(cells-1)) (chi-square), and
    d(ps) = d(ps^2) / (2 ps)."""
    var_means = ps**2 + read**2 / reads
    return var_means * np.sqrt(2.0 / (cells - 1)) / (2 * ps)


def test_sonos_programming_spread_is_recovered_at_every_day(sonos_fit):
    """Fails if the spread is taken from single reads (read noise left in), if the read noise is
    subtracted twice, or if days are mixed up (the spread widens 19.9 -> 34.6 nA). (SONOS's drift
    squeezes the spread by only 3-7%, within 4 standard errors here; the test below checks that.)"""
    sonos, fit = sonos_fit
    g = np.asarray(SONOS_TARGETS, np.float32)
    read = sonos.read_sigma(g).astype(np.float64)
    for j, t in enumerate(SONOS_TIMES):
        truth = sonos.programming_sigma(g, t).astype(np.float64)
        # the fit divides by 1 + d(shift)/dG of its own drift table; allow for how far that
        # estimated slope is from the model's true slope (finite difference of the model's drift)
        true_slope = (sonos.drift(g.astype(np.float64) + 1, t) - sonos.drift(g.astype(np.float64) - 1, t)) / 2.0
        slope_err = np.abs(fit.slope[j] - (true_slope if t > 0 else 1.0)) * truth
        tol = 4 * _sd_of_prog_estimate(truth, read, SONOS_CELLS, SONOS_READS) + slope_err
        got = fit.table.programming_sigma[j]
        assert np.all(np.abs(got - truth) <= tol), (t / DAY, got, truth, tol)


def test_sonos_read_noise_is_recovered(sonos_fit):
    """Fails if the read noise is taken between cells, or from one read (then it is 0)."""
    sonos, fit = sonos_fit
    # cells are read where their mean has drifted to, so the pooled variance is the mean over days
    # of read_sigma(mean at that day)^2 (the spread around the mean adds < 0.1%: second order)
    g = np.asarray(SONOS_TARGETS)
    expected = np.sqrt(np.mean([sonos.read_sigma(sonos.drift(g, t).astype(np.float32)).astype(np.float64) ** 2
                                for t in SONOS_TIMES], axis=0))
    dof = SONOS_CELLS * (SONOS_READS - 1) * len(SONOS_TIMES)
    tol = 4 * expected / np.sqrt(2 * dof)  # std of a sample std: sigma / sqrt(2 dof)
    assert np.all(np.abs(fit.table.read_sigma - expected) <= tol), (fit.table.read_sigma, expected, tol)
    assert np.all(fit.read_ci[:, 0] < fit.read_direct) and np.all(fit.read_direct < fit.read_ci[:, 1])


def test_sonos_drift_is_recovered_and_applied_by_the_table_device(sonos_fit, tmp_path):
    """Fails if the drift is stored as the mean itself rather than its change since t = 0, if
    times are mislabelled (days vs seconds), or if the device interpolates time wrongly."""
    sonos, fit = sonos_fit
    g = np.asarray(SONOS_TARGETS)
    path = tmp_path / "fit.toml"
    write_text_atomic(path, fit.table.to_toml())
    table = create_from_spec("device", f"table:file={path}")
    for j, t in enumerate(SONOS_TIMES[1:], start=1):
        truth = sonos.drift(g, t) - g
        # paired: the standard error of the mean change of the same cells (Student t CI / t quantile;
        # with 3000 cells t and normal agree to 0.1%); the bias from the drift's curvature over
        # the spread, s'' sigma_P^2 / 2 < 0.02 nA, is far below it (~0.3 nA)
        se = (fit.shift_ci[j, :, 1] - fit.shift[j]) / 1.96
        assert np.all(np.abs(fit.shift[j] - truth) <= 4 * se), (t, fit.shift[j], truth, se)
        np.testing.assert_allclose(table.drift(g, t) - g, fit.shift[j], atol=1e-3 * g.max())
    half_day = table.drift(g, 0.5 * DAY) - g  # linear in time between the tabulated days
    np.testing.assert_allclose(half_day, 0.5 * fit.shift[1], atol=1e-3 * g.max())
    with pytest.raises(ConfigError, match="extrapolate_drift"):
        table.drift(g, 6 * DAY)


class _Shrinking:
    """A made-up cell whose drift scales every conductance by 0.7 within a day: it squeezes the
    programming spread by 30%, which the fit must undo (the device applies the drift again)."""

    name, units, g_min, g_max, levels = "shrinking", "uS", 0.0, 100.0, None

    def programming_sigma(self, g, t=0.0):
        return np.full_like(np.asarray(g, np.float32), 2.0)

    def read_sigma(self, g):
        return np.full_like(np.asarray(g, np.float32), 0.5)

    def drift(self, g, t):
        return np.asarray(g) * (1 - 0.3 * min(t / DAY, 1.0))


def test_drift_that_squeezes_the_spread_is_undone():
    """Fails if the spread of drifted cells is stored as measured (1.4 uS instead of 2 uS): the
    engine drifts the programmed state again, and would squeeze it twice."""
    cells, reads = 2000, 2
    m = sample_measurements(_Shrinking(), [20.0, 40.0, 60.0, 80.0], cells=cells, reads=reads, times=[0.0, DAY], seed=3)
    fit = fit_device(m)
    # the slope of the fitted drift: the mean shift at each target has a standard error of about
    # sqrt(2 (2^2 + 0.5^2 / 2) / 2000) = 0.065 uS, over knots 20 uS apart: slope error < 0.015 at 3 sigma
    np.testing.assert_allclose(fit.slope[1], 0.7, atol=0.015)
    # the measured spread at a day is 0.7 * 2 = 1.4; its estimate's standard error, scaled back
    sd = _sd_of_prog_estimate(1.4, 0.5, cells, reads) / 0.7
    assert np.all(np.abs(fit.table.programming_sigma[1] - 2.0) <= 4 * sd), fit.table.programming_sigma


# -- recovery: ReRAM (Milo et al.: spread falling linearly with the target), no time column -------

def test_reram_milo_curve_is_recovered_without_times(tmp_path):
    """Fails if a file without a time column is mishandled, or the linear Milo fit is not recovered."""
    reram = create_from_spec("device", "reram:sigma_read=0.01")  # 1.75 uS of read noise per read
    targets = np.array([60.0, 90.0, 120.0, 150.0, 180.0, 210.0])
    cells, reads = 2000, 3
    m = sample_measurements(reram, targets, cells=cells, reads=reads, seed=5)
    no_time = Measurements(target=m.target, measured=m.measured, cell=m.cell, read=m.read, units="uS")
    fit = fit_device(no_time)
    assert fit.times.tolist() == [0.0]
    truth = reram.programming_sigma(targets.astype(np.float32)).astype(np.float64)
    read = reram.sigma_read * reram.g_range
    tol = 4 * _sd_of_prog_estimate(truth, read, cells, reads)
    assert np.all(np.abs(fit.table.programming_sigma[0] - truth) <= tol), (fit.table.programming_sigma, truth)
    # fit quality: on a straight line the table's interpolation from the neighbours is right, so each
    # interior level's leave-one-out residual is sampling noise (|z| < 4 at 4 sigma)
    assert np.all(np.abs(fit.prog_loo_z[0, 1:-1]) < 4), fit.prog_loo_z
    tol_read = 4 * read / np.sqrt(2 * cells * (reads - 1))
    assert np.all(np.abs(fit.table.read_sigma - read) <= tol_read), fit.table.read_sigma
    assert fit.table.units == "uS"


def test_sparse_target_takes_the_smooth_fit(tmp_path):
    """Fails if a target with only a handful of cells is used raw (its spread estimate is then off
    by up to ~50%) instead of the smoothing spline through all targets."""
    reram = create_from_spec("device", "reram")
    big = sample_measurements(reram, [60.0, 100.0, 180.0, 210.0], cells=1500, seed=1)
    few = sample_measurements(reram, [140.0, 141.0], cells=6, seed=2)  # 6 cells at 140 (141 is dropped)
    keep = few.target == 140.0
    m = Measurements(target=np.concatenate([big.target, few.target[keep]]),
                     measured=np.concatenate([big.measured, few.measured[keep]]),
                     cell=np.concatenate([big.cell, np.char.add("x", few.cell[keep])]), units="uS")
    fit = fit_device(m, min_dof=30)
    k = int(np.flatnonzero(fit.targets == 140.0)[0])
    assert fit.prog_smoothed[0].tolist() == [False, False, True, False, False]
    assert fit.table.programming_sigma[0, k] == pytest.approx(fit.prog_smooth[0, k])
    truth = float(reram.programming_sigma(np.float32(140.0)))
    # the smooth curve there follows its well-measured neighbours (1500 cells: relative standard
    # error 1/sqrt(2 * 1499) = 1.8% each), so within 4 of those; a 6-cell estimate has a relative
    # standard error of 1/sqrt(10) = 32%
    assert abs(fit.table.programming_sigma[0, k] - truth) < 4 * truth / np.sqrt(2 * 1499)
    assert any("smooth" in n for n in fit.notes)


def test_a_level_off_the_curve_stands_out_in_the_fit_quality():
    """Fails if the printed residuals cannot show a level whose spread is 30% off its neighbours'."""
    reram = create_from_spec("device", "reram")
    m = sample_measurements(reram, [60.0, 100.0, 140.0, 180.0, 210.0], cells=1500, seed=4)
    odd = m.target == 140.0
    measured = m.measured.copy()
    measured[odd] = 140.0 + 1.3 * (measured[odd] - 140.0)
    fit = fit_device(Measurements(target=m.target, measured=measured, cell=m.cell, units="uS"))
    z = fit.prog_loo_z[0]
    # 30% against a relative standard error of 1.8% per level: about 15 standard errors, positive
    # (the neighbours, interpolated through the odd level, are pulled the other way)
    assert z[2] > 8 and z[2] == np.nanmax(z), z


# -- the fitted device gives the source model's Monte Carlo accuracy -------------------------------

@pytest.fixture(scope="module")
def small_model():
    import keras

    from nvmkit import get_registry, load_dataset

    ds = load_dataset("mnist", source="sample")
    mlp = get_registry().create("network", "mlp", {"hidden": [32]})
    model = mlp.build(ds.input_shape, ds.num_classes, sigma_neu=0.0, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    keras.utils.set_random_seed(0)
    model.fit(mlp.prepare(ds.x_train), ds.y_train, epochs=2, batch_size=64, verbose=0)
    return model, mlp.prepare(ds.x_test), ds.y_test


# ReRAM has no read noise: every read-spread estimate is 0, which once gave the smoothing spline
# infinite weights (an overflow warning, here an error)
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("spec,targets", [
    # narrow ranges, so that the spread costs accuracy and a wrong spread would show
    ("reram:g_max=100", [50.0, 60.0, 70.0, 80.0, 90.0, 100.0]),
    ("sonos:i_max=100", [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
])
def test_fitted_device_gives_the_source_accuracy(spec, targets, small_model, tmp_path):
    """Fails if the table device's curves differ from the model it was fitted to by enough to move
    the accuracy outside the trials' CI; the control (spread doubled) shows the test can see it."""
    from nvmkit import CrossbarConfig, convert, monte_carlo

    model, x, y = small_model
    source = create_from_spec("device", spec)
    m = sample_measurements(source, targets, cells=1000, reads=2, seed=1)
    fit = fit_device(m, tmp_path / "fit.toml", g_min=source.g_min, g_max=source.g_max)
    fitted = create_from_spec("device", f"table:file={tmp_path / 'fit.toml'}")
    table = fit.table
    table.programming_sigma = 2 * table.programming_sigma
    write_text_atomic(tmp_path / "doubled.toml", table.to_toml())
    doubled = create_from_spec("device", f"table:file={tmp_path / 'doubled.toml'}")

    def accuracy(device, seed):
        return monte_carlo(convert(model, device, CrossbarConfig(), trials=20), x, y, trials=20, seed=seed)

    a, b, c = accuracy(source, 3), accuracy(fitted, 4), accuracy(doubled, 4)

    def within_ci(p, q):  # 99% CI of the difference of two independent trial means
        return abs(p.mean - q.mean) <= 2.576 * np.hypot(p.std / np.sqrt(p.trials), q.std / np.sqrt(q.trials))

    assert within_ci(a, b), (a, b)
    assert not within_ci(a, c), (a, c)


# -- the table device ------------------------------------------------------------------------------

def test_table_device_interpolates_without_overshoot(tmp_path):
    """Fails with a plain cubic spline (it overshoots a step), or with extrapolation past the knots."""
    from nvmkit import DeviceTable

    g = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    step = np.array([1.0, 1.0, 1.0, 5.0, 5.0])
    t = DeviceTable(units="uS", g_min=0.0, g_max=4.0, g=g, time=np.array([0.0]), programming_sigma=step[None],
                    read_sigma=step, mean=g[None])
    write_text_atomic(tmp_path / "step.toml", t.to_toml())
    dev = create_from_spec("device", f"table:file={tmp_path / 'step.toml'}")
    x = np.linspace(-1.0, 5.0, 601, dtype=np.float32)
    for out in (dev.programming_sigma(x, 0.0), dev.read_sigma(x)):
        assert out.dtype == np.float32 and out.shape == x.shape
        assert out.min() >= 1.0 - 1e-6 and out.max() <= 5.0 + 1e-6  # within the tabulated values
        assert np.all(np.diff(out) >= -1e-6)  # monotone data -> monotone curve
        np.testing.assert_allclose(out[x < 0], 1.0)  # held at the end values outside the knots
        np.testing.assert_allclose(out[x > 4], 5.0)
    np.testing.assert_allclose(dev.read_sigma(g.astype(np.float32)), step)  # through the knots


def test_default_table_is_the_sonos_model_and_passes_conformance():
    """The bundled default is SONOS tabulated: equal at the knots and days, and conformant."""
    from nvmkit import check_plugin

    sonos, table = create_from_spec("device", "sonos"), create_from_spec("device", "table")
    knots = np.asarray(table.table.g, np.float32)
    for t in (0.0, DAY, 3 * DAY, 5 * DAY):  # whole days: SONOS interpolates its fit parameters between them
        np.testing.assert_allclose(table.programming_sigma(knots, t), sonos.programming_sigma(knots, t), rtol=1e-5)
        np.testing.assert_allclose(table.drift(knots, t), sonos.drift(knots, t), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(table.read_sigma(knots), sonos.read_sigma(knots), rtol=1e-5, atol=1e-9)
    assert (table.units, table.g_max, table.energy_per_mac) == ("nA", 1600.0, sonos.energy_per_mac)
    failed = [r for r in check_plugin("device", "table") if r.failed]
    assert not failed, failed


def test_table_file_is_recorded_by_path_and_hash(tmp_path, monkeypatch):
    """A relative path resolves against the working folder; a changed file is refused on a rerun."""
    monkeypatch.chdir(tmp_path)
    reram = create_from_spec("device", "reram")
    fit_device(sample_measurements(reram, [60.0, 200.0], cells=50, seed=0), "cell.toml")
    dev = create_from_spec("device", "table:file=cell.toml")
    cfg = dev.get_config()
    assert cfg["file"] == "cell.toml" and len(cfg["sha256"]) == 64
    assert type(dev).from_config(cfg) == dev
    (tmp_path / "cell.toml").write_text((tmp_path / "cell.toml").read_text() + "\n")  # any byte changed
    with pytest.raises(ConfigError, match="has changed"):
        type(dev).from_config(cfg)


@pytest.mark.parametrize("edit,key", [
    (lambda s: s.replace('units = "uS"', 'units = "V"'), "units"),
    (lambda s: s.replace("g_max = 200.0", "g_max = 10.0"), "g_max"),
    (lambda s: s.replace("read_sigma = [", "read_sigma = [1.0, "), "tables.read_sigma"),
    (lambda s: s.replace("format =", "formt ="), "format"),
    (lambda s: s.replace("levels", "levels").replace("[tables]", "levels = 1\n[tables]"), "levels"),
])
def test_bad_table_file_is_one_line_naming_the_key(edit, key, tmp_path):
    reram = create_from_spec("device", "reram")
    fit_device(sample_measurements(reram, [60.0, 200.0], cells=50, seed=0), tmp_path / "cell.toml")
    text = (tmp_path / "cell.toml").read_text()
    (tmp_path / "bad.toml").write_text(edit(text))
    with pytest.raises(ConfigError) as err:
        load_device_table(tmp_path / "bad.toml")
    assert f"key '{key}'" in str(err.value) and "\n" not in str(err.value), str(err.value)


# -- bad measurement files: API ---------------------------------------------------------------------

GOOD = "# units: uS\ntarget,measured,cell,time\n60,61.2,a,0\n60,60.1,a,1\n200,198.5,b,0\n200,199.0,b,1\n"
BAD = {
    "missing column": (GOOD.replace("measured", "reading"), "missing column 'measured'"),
    "non-numeric": (GOOD.replace("60.1", "6O.1"), "line 4, column 'measured': '6O.1' is not a number"),
    "negative": (GOOD.replace("198.5", "-198.5"), "line 5, column 'measured': -198.5 uS is not a conductance"),
    "single target": (GOOD.replace("200,", "60,"), "column 'target': only one target level"),
    "no reference": (GOOD.replace("b,0", "b,2"), "line 5, column 'time': cell 'b' is read at 2 s but never at time 0"),
    "no units": (GOOD.replace("# units: uS\n", ""), "units not stated"),
    "no reference, no cells": ("# units: uS\ntarget,measured,time\n60,61,0\n200,199,1\n",
                               "line 4, column 'time': target 200 is read at 1 s but never at time 0"),
    "cell with two targets": (GOOD.replace("200,198.5,b,0", "200,198.5,a,0"),
                              "line 5, column 'target': cell 'a' was programmed to 60 on line 3 but to 200 here"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_measurements_are_one_line_naming_column_and_line(case, tmp_path):
    text, needle = BAD[case]
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError) as err:
        fit_device(tmp_path / "m.csv", tmp_path / "out.toml")
    msg = str(err.value)
    assert needle in msg and "\n" not in msg, msg
    assert not (tmp_path / "out.toml").exists()


def test_good_measurements_read_back(tmp_path):
    (tmp_path / "m.csv").write_text(GOOD)
    m = read_measurements(tmp_path / "m.csv")
    assert m.units == "uS" and m.time.tolist() == [0, 1, 0, 1] and m.cell.tolist() == ["a", "a", "b", "b"]
    with pytest.raises(DataError, match="states units 'uS' but 'nA' was given"):
        read_measurements(tmp_path / "m.csv", units="nA")
