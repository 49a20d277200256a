"""From measurements to the device's curves: per-target statistics with confidence intervals.

The model being fitted is the one nvmkit's crossbar engine simulates (docs/plugins.md, "The
device interface"): a cell programmed to target T holds G = T + sigma_P(T, t) z (z ~ N(0, 1), one
per cell), drifts to drift(G, t), and each read adds fresh noise of std sigma_R(G). Hence, for
the cells programmed to T and read n_i times at time t:

- **read noise** sigma_R(T): the within-cell spread, pooled over cells and times (each cell's
  reads at one time scatter around its own conductance), with sum(n_i - 1) degrees of freedom;
- **programming spread** sigma_P(T, t): the between-cell variance of the cell means, less the
  read noise each mean still carries (sigma_R^2 mean(1/n_i)); the mean of the drifted states moves
  with slope 1 + d(shift)/dG, so the spread is divided by that slope, taken from the fitted drift
  table itself (the device applies the same table, so the simulated spread matches the measured);
- **drift**: the change since t = 0 of each cell's mean, averaged over the cells (paired, so the
  programming spread cancels from its confidence interval; without a cell column, the difference
  of the means at the two times); the device shifts a cell by that change.

Confidence intervals (95%): chi-square for variances (Cochran's theorem: (m-1) s^2 / sigma^2 is
chi-square with m - 1 degrees of freedom), Student t for means. The programming spread's interval
treats the subtracted read-noise term as known: it is pooled over sum(n_i - 1) degrees of freedom
across all times, usually far more than the m - 1 of the spread itself. Where a target has few cells
(fewer degrees of freedom than ``min_dof``), its spread is taken from a smoothing spline through
all targets, weighted by their standard errors, instead: a smooth fit where the data are sparse.
Residuals of every direct estimate against that smooth curve, in standard errors, are the fit's
quality (about 1 each when the curve is smooth; a level far off is an outlier to look at).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.interpolate import PchipInterpolator, UnivariateSpline

from nvmkit.core.errors import ConfigError, DataError
from nvmkit.fit.device_file import DeviceTable
from nvmkit.fit.measurements import Measurements

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass
class FitResult:
    """The fitted table and the statistics behind it (arrays indexed [time, target] or [target])."""

    table: DeviceTable
    targets: np.ndarray  # (K,)
    times: np.ndarray  # (J,) seconds
    cells: np.ndarray  # (J, K) cells read
    reads_per_cell: np.ndarray  # (J, K) mean reads per cell
    mean: np.ndarray  # (J, K) mean conductance
    mean_ci: np.ndarray  # (J, K, 2)
    shift: np.ndarray  # (J, K) change of the mean since t = 0 (of the same cells, when tracked)
    shift_ci: np.ndarray  # (J, K, 2)
    prog_direct: np.ndarray  # (J, K) programming spread from that target's cells (NaN if < 2 cells)
    prog_ci: np.ndarray  # (J, K, 2)
    prog_smooth: np.ndarray  # (J, K) the smooth curve at each target
    prog_z: np.ndarray  # (J, K) (direct - smooth) / standard error
    prog_smoothed: np.ndarray  # (J, K) bool: the table holds the smooth value (sparse data)
    slope: np.ndarray  # (J, K) 1 + d(shift)/dG used to undo the drift's stretch
    read_direct: np.ndarray  # (K,)
    read_ci: np.ndarray  # (K, 2)
    read_dof: np.ndarray  # (K,)
    read_smooth: np.ndarray  # (K,)
    read_z: np.ndarray  # (K,)
    read_smoothed: np.ndarray  # (K,) bool
    prog_loo_z: np.ndarray  # (J, K) leave-one-out: the table's interpolation from the other targets, in SEs
    read_loo_z: np.ndarray  # (K,)
    notes: list[str] = field(default_factory=list)
    paths: dict = field(default_factory=dict)  # what fit_device wrote: "table", "figure"

    @property
    def bias(self) -> np.ndarray:
        """Mean programmed conductance minus the target at t = 0 (the engine models none)."""
        return self.mean[0] - self.targets


def estimate(m: Measurements, g_min: float | None = None, g_max: float | None = None,
             levels: int | None = None, read_voltage: float = 0.1, read_time: float = 10e-9,
             energy_per_mac: float | None = None, min_dof: int = 30, description: str = "",
             source: str = "") -> FitResult:
    """Fit the device table to validated measurements (see the module docstring)."""
    if isinstance(min_dof, bool) or not isinstance(min_dof, int) or min_dof < 1:
        raise ConfigError(f"min_dof must be an integer >= 1, got {min_dof!r}")
    targets, times = m.targets, m.times
    K, J = len(targets), len(times)
    k_of = np.searchsorted(targets, m.target)
    j_of = np.searchsorted(times, m.time) if m.time is not None else np.zeros(len(m.target), np.int64)
    cell_code = (np.unique(m.cell, return_inverse=True)[1] if m.cell is not None
                 else np.arange(len(m.target)))
    # one group per (time, cell): the cell's reads at that time
    key = np.stack([j_of, k_of, cell_code], axis=1)
    groups, gidx = np.unique(key, axis=0, return_inverse=True)
    gidx = gidx.ravel()
    n = np.bincount(gidx).astype(np.float64)
    cmean = np.bincount(gidx, weights=m.measured) / n
    ss = np.bincount(gidx, weights=(m.measured - cmean[gidx]) ** 2)
    gj, gk, gc = groups[:, 0], groups[:, 1], groups[:, 2]
    # each group's change since the same cell's reads at t = 0 (cells are tracked when there is a
    # cell column; validation guarantees every cell read later was read at t = 0)
    at_zero = np.full(int(cell_code.max()) + 1, np.nan)
    at_zero[gc[gj == 0]] = cmean[gj == 0]
    change = cmean - at_zero[gc]

    # read noise: within-cell variance pooled per target
    read_ss = np.bincount(gk, weights=ss, minlength=K)
    read_dof = np.bincount(gk, weights=n - 1, minlength=K)
    with np.errstate(invalid="ignore", divide="ignore"):
        read_var = np.where(read_dof > 0, read_ss / read_dof, np.nan)
    read_direct = np.sqrt(read_var)
    read_ci = np.stack([_sd_ci(read_var, read_dof, lower) for lower in (True, False)], axis=-1)

    shape = (J, K)
    cells = np.zeros(shape, np.int64)
    reads = np.zeros(shape)
    mean = np.full(shape, np.nan)
    mean_ci = np.full(shape + (2,), np.nan)
    shift = np.zeros(shape)
    shift_ci = np.zeros(shape + (2,))
    between = np.full(shape, np.nan)
    inv_n = np.full(shape, np.nan)
    for j in range(J):
        for k in range(K):
            sel = (gj == j) & (gk == k)
            c = cmean[sel]
            cells[j, k] = c.size
            if c.size == 0:
                continue
            reads[j, k] = n[sel].mean()
            mean[j, k] = c.mean()
            inv_n[j, k] = np.mean(1.0 / n[sel])
            if c.size >= 2:
                between[j, k] = c.var(ddof=1)
                half = stats.t.ppf(0.975, c.size - 1) * np.sqrt(between[j, k] / c.size)
                mean_ci[j, k] = mean[j, k] - half, mean[j, k] + half
            if j > 0 and m.cell is not None:  # paired: the programming spread cancels
                d = change[sel]
                shift[j, k] = d.mean()
                half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size) if d.size >= 2 else np.nan
                shift_ci[j, k] = shift[j, k] - half, shift[j, k] + half
    missing = np.argwhere(cells == 0)
    if missing.size:
        j, k = missing[0]
        raise DataError(f"{m.origin}: column 'time': no reads of target {targets[k]:g} {m.units} at "
                        f"{times[j]:g} s, while other targets were read then; read every target at every time")

    notes: list[str] = []
    if m.read is not None and m.cell is None:
        notes.append("a read column without a cell column: every row counts as its own cell; add a "
                     "cell column to separate read noise from programming spread")
    no_repeats = not np.any(read_dof > 0)
    if no_repeats:
        notes.append("no repeated reads of a cell: read noise cannot be separated; it is left in the "
                     "programming spread and the table's read noise is 0")
        read_used = np.zeros(K)
        read_smooth = np.zeros(K)
        read_z = np.full(K, np.nan)
        read_smoothed = np.zeros(K, bool)
    else:
        read_smooth, read_z, read_smoothed = _smooth(targets, read_direct, read_dof, read_ci, min_dof,
                                                     "read noise", m)
        read_used = np.where(read_smoothed, read_smooth, read_direct)

    # drift table first: its slope undoes the stretch of the programming spread
    if m.cell is None:  # different cells at each time: the difference of the means
        shift = mean - mean[0]
        half = np.hypot(mean_ci[..., 1] - mean, mean_ci[0, :, 1] - mean[0])
        shift_ci = np.stack([shift - half, shift + half], axis=-1)
        shift_ci[0] = 0.0
    slope = np.ones(shape)
    for j in range(1, J):
        slope[j] = 1.0 + PchipInterpolator(targets, shift[j]).derivative()(targets)
    if np.any((slope < 0.5) | (slope > 2.0)):
        j, k = np.argwhere((slope < 0.5) | (slope > 2.0))[0]
        notes.append(f"the mean drifts steeply near {targets[k]:g} {m.units} at {times[j]:g} s "
                     f"(slope {slope[j, k]:.2f}); the spread there is corrected by at most a factor 2")
    stretch = np.clip(np.abs(slope), 0.5, 2.0)
    read_part = np.square(read_used)[None, :] * inv_n
    with np.errstate(invalid="ignore"):
        prog_direct = np.sqrt(np.maximum(between - read_part, 0.0)) / stretch
        prog_ci = np.stack([
            np.sqrt(np.maximum(_var_ci(between, cells - 1, lower) - read_part, 0.0)) / stretch
            for lower in (True, False)], axis=-1)
    prog = np.zeros(shape)
    prog_smooth = np.zeros(shape)
    prog_z = np.zeros(shape)
    prog_smoothed = np.zeros(shape, bool)
    for j in range(J):
        prog_smooth[j], prog_z[j], prog_smoothed[j] = _smooth(
            targets, prog_direct[j], cells[j] - 1.0, prog_ci[j], min_dof,
            f"programming spread at {times[j]:g} s", m)
        prog[j] = np.where(prog_smoothed[j], prog_smooth[j], prog_direct[j])
    if np.any(prog_smoothed) or np.any(read_smoothed):
        notes.append(f"targets with fewer than {min_dof} degrees of freedom take the smooth fit's value "
                     "(marked 'smooth')")
    big = np.abs(mean[0] - targets) > np.nan_to_num(mean_ci[0, :, 1] - mean[0], nan=np.inf)
    if np.any(big):
        k = int(np.flatnonzero(big)[0])
        notes.append(f"the programmed mean differs from the target beyond its 95% CI (e.g. "
                     f"{mean[0, k] - targets[k]:+.3g} {m.units} at {targets[k]:g}); the device models "
                     "no such bias (the engine programs to the target)")

    prog_se = (prog_ci[..., 1] - prog_ci[..., 0]) / (2 * Z95)
    prog_loo_z = np.stack([_leave_one_out(targets, prog[j], prog_direct[j], prog_se[j]) for j in range(J)])
    read_loo_z = _leave_one_out(targets, read_used, read_direct, (read_ci[:, 1] - read_ci[:, 0]) / (2 * Z95))
    g_min = float(targets[0]) if g_min is None else g_min
    g_max = float(targets[-1]) if g_max is None else g_max
    table = DeviceTable(units=m.units, g_min=g_min, g_max=g_max, levels=levels, g=targets, time=times,
                        programming_sigma=prog, read_sigma=read_used, mean=mean[0] + shift,
                        read_voltage=read_voltage, read_time=read_time, energy_per_mac=energy_per_mac,
                        description=description, source=source, origin="the fitted table")
    return FitResult(table=table, targets=targets, times=times, cells=cells, reads_per_cell=reads, mean=mean,
                     mean_ci=mean_ci, shift=shift, shift_ci=shift_ci, prog_direct=prog_direct, prog_ci=prog_ci,
                     prog_smooth=prog_smooth, prog_z=prog_z, prog_smoothed=prog_smoothed, slope=slope,
                     read_direct=read_direct, read_ci=read_ci, read_dof=read_dof, read_smooth=read_smooth,
                     read_z=read_z, read_smoothed=read_smoothed, prog_loo_z=prog_loo_z, read_loo_z=read_loo_z,
                     notes=notes)


def _leave_one_out(x, table, direct, se):
    """How well the table's interpolation (PCHIP, as the device uses) predicts each interior
    target from the others, in that target's standard errors: large values say the levels are
    too far apart for the curve between them to be trusted. NaN at the end targets."""
    z = np.full(len(x), np.nan)
    for k in range(1, len(x) - 1):
        others = np.arange(len(x)) != k
        predicted = PchipInterpolator(x[others], table[others])(x[k])
        if np.isfinite(direct[k]) and se[k] > 0:
            z[k] = (direct[k] - predicted) / se[k]
    return z


def _var_ci(var, dof, lower: bool):
    """95% confidence bound of a variance with ``dof`` degrees of freedom (chi-square)."""
    dof = np.asarray(dof, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = stats.chi2.ppf(0.975 if lower else 0.025, np.where(dof > 0, dof, np.nan))
        return var * dof / q


def _sd_ci(var, dof, lower: bool):
    return np.sqrt(_var_ci(var, dof, lower))


def _smooth(x, y, dof, ci, min_dof, what, m):
    """A smoothing spline through the direct estimates, each weighted by its standard error, with
    the smoothing chosen so that the weighted residuals sum to the number of targets (their
    chi-square expectation: Reinsch, "Smoothing by spline functions", Numer. Math. 10, 1967).
    Returns the curve at ``x``, each estimate's residual in standard errors, and which targets
    are too sparse to stand alone (they take the curve's value)."""
    se = (ci[:, 1] - ci[:, 0]) / (2 * Z95)
    ok = np.isfinite(y) & (dof >= 1) & np.isfinite(se)
    n = int(ok.sum())
    if n < 2:
        raise DataError(f"{m.origin}: column 'cell': the {what} needs at least two targets with two or more "
                        "cells (or reads) each; add cells")
    scale = float(np.max(np.abs(y[ok])))
    if scale == 0.0:  # every estimate exactly 0 (e.g. a device without read noise): the curve is 0
        curve = np.zeros(len(x))
    else:
        floor = 1e-9 * scale  # a noise-free estimate has se = 0; its weight stays finite
        spline = UnivariateSpline(x[ok], y[ok], w=1.0 / np.maximum(se[ok], floor), k=min(3, n - 1), s=n)
        curve = np.maximum(spline(x), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(ok & (se > 0), (y - curve) / se, np.nan)
    return curve, z, ~ok | (dof < min_dof)
