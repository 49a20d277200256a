"""The least-squares fit of the seed's External level (nvmkit/reproduction/external_fit.py), on synthetic
numbers: a known level is recovered, and the noisy accuracies it fits are the injectors' analytic ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.reproduction import external_fit as ef

CELLS = [("mlp", "mnist"), ("rnn", "mnist"), ("cnn", "mnist"),
         ("mlp", "fashion-mnist"), ("rnn", "fashion-mnist"), ("cnn", "fashion-mnist")]


def test_known_level_recovered_between_grid_points():
    # Linear curves: PCHIP reproduces them exactly, so the least-squares level is exactly the true one.
    # It lies between grid points (spacing 1/12): a fit that stopped at the grid (no refinement) would
    # miss by 0.013 and fail; one that fitted a single cell or summed signed errors would miss too.
    grid = np.linspace(0.0, 1.0, 13)
    slopes = np.array([-0.2, -0.35, -0.1, -0.6, -0.25, -0.9])
    tops = np.array([0.98, 0.97, 0.99, 0.89, 0.88, 0.90])
    curves = {c: tops[i] + slopes[i] * grid for i, c in enumerate(CELLS)}
    true = 0.2371
    targets = {c: float(tops[i] + slopes[i] * true) for i, c in enumerate(CELLS)}
    fit = ef.fit_level(grid, curves, targets, "gaussian")
    assert abs(fit.level - true) < 1e-5  # xatol of the Brent search is 1e-7 of the range
    assert fit.rms < 1e-5
    for c in CELLS:
        assert fit.predicted[c] == pytest.approx(targets[c], abs=1e-5)


def test_least_squares_not_a_single_cell():
    # Two cells whose targets want different levels: the least-squares level of two linear curves
    # with slopes a, b wanting levels l1, l2 is (a^2 l1 + b^2 l2) / (a^2 + b^2).
    grid = np.linspace(0.0, 1.0, 11)
    a, b, l1, l2 = -0.5, -0.2, 0.3, 0.7
    curves = {("mlp", "mnist"): 1 + a * grid, ("cnn", "mnist"): 1 + b * grid}
    targets = {("mlp", "mnist"): 1 + a * l1, ("cnn", "mnist"): 1 + b * l2}
    fit = ef.fit_level(grid, curves, targets)
    expected = (a * a * l1 + b * b * l2) / (a * a + b * b)
    assert fit.level == pytest.approx(expected, abs=1e-5)
    # residuals are ours minus the seed's, with the sign that says who is higher
    r = fit.residuals()
    assert r[("mlp", "mnist")] == pytest.approx(a * (expected - l1), abs=1e-5)
    assert r[("cnn", "mnist")] == pytest.approx(b * (expected - l2), abs=1e-5)
    assert fit.rms == pytest.approx(math.sqrt((r[("mlp", "mnist")] ** 2 + r[("cnn", "mnist")] ** 2) / 2))


def test_nonlinear_curves_within_the_interpolation_bound():
    # Smooth decays acc_c(l) = floor + (top - floor) exp(-l / s_c). The fitted level differs from the true
    # one only through the interpolation error e(l): to first order |dl| <= |e| / |f'(l*)| (Cauchy-Schwarz
    # on the normal equation), bounded here with |e| measured on a dense grid and a factor 2 for the
    # second-order terms.
    grid = np.linspace(0.0, 1.0, 13)
    scales = np.array([0.5, 0.3, 0.8, 0.2, 0.4, 0.15])

    def f(level):
        level = np.asarray(level, dtype=float)
        return np.stack([0.1 + 0.88 * np.exp(-level / s) for s in scales])

    true = 0.2371
    curves = {c: f(grid)[i] for i, c in enumerate(CELLS)}
    targets = {c: float(f(true)[i]) for i, c in enumerate(CELLS)}
    fit = ef.fit_level(grid, curves, targets)
    from scipy.interpolate import PchipInterpolator

    dense = np.linspace(0.0, 1.0, 2001)
    err = np.abs(PchipInterpolator(grid, f(grid), axis=1)(dense) - f(dense))
    e_norm = float(np.max(np.linalg.norm(err, axis=0)))
    slope = np.array([-0.88 / s * math.exp(-true / s) for s in scales])
    bound = 2 * e_norm / float(np.linalg.norm(slope))
    assert abs(fit.level - true) <= bound
    assert bound < grid[1] - grid[0]  # the bound is finer than the grid: the refinement matters


def test_measured_values_replace_the_interpolated_ones():
    grid = np.linspace(0.0, 1.0, 5)
    curves = {("mlp", "mnist"): 1 - 0.5 * grid}
    fit = ef.fit_level(grid, curves, {("mlp", "mnist"): 0.8})
    fit.measured = {("mlp", "mnist"): [0.70, 0.74]}
    assert fit.ours()[("mlp", "mnist")] == pytest.approx(0.72)
    assert fit.residuals()[("mlp", "mnist")] == pytest.approx(-0.08)
    assert fit.rms == pytest.approx(0.08)
    assert fit.to_dict()["residuals"] == {"mlp/mnist": pytest.approx(-0.08)}


@pytest.mark.parametrize("grid, curves, targets", [
    ([0.0, 0.5, 0.4], {("mlp", "mnist"): [1, 0.9, 0.8]}, {("mlp", "mnist"): 0.9}),
    ([0.0, 0.5], {("mlp", "mnist"): [1, 0.9]}, {("mlp", "mnist"): 0.9}),
    ([0.0, 0.5, 1.0], {("mlp", "mnist"): [1, 0.9, 0.8]}, {("cnn", "mnist"): 0.9}),
    ([0.0, 0.5, 1.0], {("mlp", "mnist"): [1, 0.9]}, {("mlp", "mnist"): 0.9}),
])
def test_bad_grids_refused(grid, curves, targets):
    with pytest.raises(ConfigError):
        ef.fit_level(grid, curves, targets)


class _Threshold:
    """A fake model: class 1 when the first pixel is above 0.5, else class 0 (two scores)."""

    def __call__(self, x, training=False):
        on = (np.asarray(x).reshape(len(x), -1)[:, 0] > 0.5).astype(np.float32)
        return np.stack([1 - on, on], axis=1)


def _phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@pytest.mark.parametrize("noise, level, expected", [
    # gaussian std s: a pixel at 0.4 (class 0) or 0.6 (class 1) crosses 0.5 with probability 1 - Phi(0.1/s)
    ("gaussian", 0.1, _phi(0.1 / 0.1)),
    ("gaussian", 0.25, _phi(0.1 / 0.25)),
    # speckle x (1 + n), n ~ N(0, s^2): 0.4 stays below 0.5 iff n < 0.25; 0.6 stays above iff n > -1/6
    ("speckle", 0.3, 0.5 * (_phi(0.25 / 0.3) + _phi((1 / 6) / 0.3))),
    # salt-and-pepper: a pixel is replaced with probability a, by the wrong side half of the time
    ("salt-and-pepper", 0.3, 1 - 0.3 / 2),
    ("gaussian", 0.0, 1.0),
])
def test_noise_accuracy_matches_the_analytic_value(noise, level, expected):
    # Catches a level passed to the wrong parameter or a variance taken for a std (planted: the level
    # squared failed all four noisy cases), or labels misread. Tolerance: 6 binomial sigmas of n T draws.
    n, trials = 2000, 3
    y = np.arange(n) % 2
    x = np.where(y[:, None, None] == 1, 0.6, 0.4).astype(np.float32) * np.ones((n, 4, 4), np.float32)
    models = {("mlp", "mnist"): ef.PlainModel(_Threshold(), lambda v: v)}
    acc = ef.noise_accuracy(models, {"mnist": (x, y)}, noise, [level], trials=trials, seed=3)
    got = acc[("mlp", "mnist")]
    assert got.shape == (1, trials)
    sd = math.sqrt(expected * (1 - expected) / (n * trials))
    assert abs(got.mean() - expected) <= 6 * sd + 1e-12


def test_noise_accuracy_seeded_and_common_across_levels():
    n = 500
    y = np.arange(n) % 2
    x = np.where(y[:, None, None] == 1, 0.6, 0.4).astype(np.float32) * np.ones((n, 4, 4), np.float32)
    models = {("mlp", "mnist"): ef.PlainModel(_Threshold(), lambda v: v)}
    a = ef.noise_accuracy(models, {"mnist": (x, y)}, "gaussian", [0.05, 0.1, 0.2], trials=2, seed=1)
    b = ef.noise_accuracy(models, {"mnist": (x, y)}, "gaussian", [0.05, 0.1, 0.2], trials=2, seed=1)
    np.testing.assert_array_equal(a[("mlp", "mnist")], b[("mlp", "mnist")])
    # (planted: every trial drawing trial 0's stream fails the last line)
    # the same normals scaled by the level: a pixel that crosses at std 0.05 crosses at 0.1 too, so each
    # trial's accuracy falls with the level (common random numbers), and the two trials differ
    acc = a[("mlp", "mnist")]
    assert np.all(np.diff(acc, axis=0) <= 0)
    assert acc[2, 0] != acc[2, 1]
