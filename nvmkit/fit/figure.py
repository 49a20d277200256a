"""The fit's figure: measured statistics (with 95% CIs) against the fitted device's curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nvmkit.core.atomic import atomic_write
from nvmkit.core.errors import ConfigError
from nvmkit.fit.estimate import FitResult

DAY = 86400.0


def _time_label(t: float) -> str:
    if t == 0:
        return "t = 0"
    if t >= DAY:
        return f"t = {t / DAY:g} d"
    return f"t = {t / 3600:g} h" if t >= 3600 else f"t = {t:g} s"


def figure_formats() -> list[str]:
    """The file suffixes (without the dot) the figure can be written as: matplotlib's Agg formats."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return sorted(FigureCanvasAgg.get_supported_filetypes())


def check_figure_path(path, *, replace: bool = False) -> Path:
    """Refuse, before any fitting, a figure path whose folder is missing, whose suffix matplotlib
    cannot write, or that already exists (an image nvmkit wrote cannot be told from a user's one),
    unless ``replace`` (the caller knows the file is nvmkit's)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    formats = figure_formats()
    if fmt not in formats:
        raise ConfigError(f"cannot draw the figure as {path}: '{path.suffix}' is not a figure format; "
                          f"use one of {', '.join('.' + f for f in formats)}")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    if path.is_dir() or (path.exists() and not replace):
        raise ConfigError(f"{path} exists; nvmkit will not overwrite it: give another file name or delete it first")
    return path


def plot_fit(fit: FitResult, path) -> None:
    """Three panels (programming spread, read noise, drift of the mean) drawn to ``path``
    (written atomically; the format follows the suffix, e.g. .png or .pdf)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig = draw_fit(fit)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".").lower(), dpi=120))
    finally:
        plt.close(fig)


def draw_fit(fit: FitResult):
    """The fit's figure (a matplotlib Figure, not yet saved; the caller closes it): panel 0 the
    programming spread per target and time, panel 1 the read noise, panel 2 the drift of the mean;
    the measured points are ``errorbar`` artists, the device's curves lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

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
    return fig
