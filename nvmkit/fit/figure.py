"""The fit's figure: measured statistics (with 95% CIs) against the fitted device's curves."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from nvmkit.fit.estimate import FitResult

DAY = 86400.0


def _time_label(t: float) -> str:
    if t == 0:
        return "t = 0"
    if t >= DAY:
        return f"t = {t / DAY:g} d"
    return f"t = {t / 3600:g} h" if t >= 3600 else f"t = {t:g} s"


def plot_fit(fit: FitResult, path) -> None:
    """Three panels (programming spread, read noise, drift of the mean) drawn to ``path``
    (written atomically; the format follows the suffix, e.g. .png or .pdf)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    table = fit.table
    units = table.units
    g = np.linspace(fit.table.g_min, fit.table.g_max, 400)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(fit.times)))
    ax = axes[0]
    for j, (t, c) in enumerate(zip(fit.times, colours)):
        lo, hi = fit.prog_ci[j, :, 0], fit.prog_ci[j, :, 1]
        est = fit.prog_direct[j]
        ax.errorbar(fit.targets, est, yerr=[np.nan_to_num(est - lo), np.nan_to_num(hi - est)], fmt="o",
                    color=c, ms=4, capsize=2, label=_time_label(t))
        ax.plot(g, table.programming_sigma_at(g, float(t), extrapolate=True), color=c, lw=1)
    ax.set(xlabel=f"target ({units})", ylabel=f"programming spread ({units})",
           title="programming spread: data (95% CI) and device")
    ax.legend(fontsize=7)
    ax = axes[1]
    ok = np.isfinite(fit.read_direct)
    ax.errorbar(fit.targets[ok], fit.read_direct[ok],
                yerr=[fit.read_direct[ok] - fit.read_ci[ok, 0], fit.read_ci[ok, 1] - fit.read_direct[ok]],
                fmt="o", color="C1", ms=4, capsize=2, label="within-cell std")
    ax.plot(g, table.read_sigma_at(g), color="C1", lw=1, label="device")
    ax.set(xlabel=f"target ({units})", ylabel=f"read noise per read ({units})", title="read noise")
    ax.legend(fontsize=7)
    ax = axes[2]
    for j, (t, c) in enumerate(zip(fit.times, colours)):
        shift = fit.shift[j]
        err = fit.shift_ci[j, :, 1] - fit.shift[j]
        ax.errorbar(fit.targets, shift, yerr=np.nan_to_num(err), fmt="o", color=c, ms=4, capsize=2,
                    label=_time_label(t))
        ax.plot(g, table.shift_at(g, float(t), extrapolate=True), color=c, lw=1)
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set(xlabel=f"conductance at t = 0 ({units})", ylabel=f"mean change since t = 0 ({units})",
           title="drift of the mean")
    ax.legend(fontsize=7)
    fig.suptitle(f"device fit: {fit.table.source or 'measurements'}", fontsize=9)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
