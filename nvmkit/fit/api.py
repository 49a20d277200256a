"""``fit_device``: a measurement file in, a device-table file (and a figure) out."""

from __future__ import annotations

from pathlib import Path

from nvmkit.core.errors import ConfigError
from nvmkit.fit.device_file import is_device_table_file, write_text_atomic
from nvmkit.fit.estimate import FitResult, estimate
from nvmkit.fit.measurements import Measurements, read_measurements

#: names used inside an output folder
TABLE_NAME, FIGURE_NAME = "device.toml", "fit.png"


def fit_device(measurements, output=None, *, units: str | None = None, time_units: str | None = None,
               g_min: float | None = None, g_max: float | None = None, levels: int | None = None,
               read_voltage: float = 0.1, read_time: float = 10e-9, energy_per_mac: float | None = None,
               min_dof: int = 30, plot=None) -> FitResult:
    """Fit a device table to measurements and write it where the ``table`` device reads it.

    ``measurements`` is a CSV path (see :mod:`nvmkit.fit.measurements`) or a ``Measurements``;
    ``output`` a ``.toml`` path, or an existing folder (then ``device.toml`` and ``fit.png`` are
    written in it), or None (nothing written). ``plot`` draws the figure to that path. An existing
    file is never overwritten unless it is an nvmkit device table (or the ``fit.png`` beside one
    in an output folder); a figure's format must be one matplotlib writes. The range
    defaults to the lowest and highest target. Everything is validated before anything is
    written, and each file is written atomically.
    """
    if isinstance(measurements, Measurements):
        m = measurements
    else:
        m = read_measurements(measurements, units=units, time_units=time_units)
    table_path = figure_path = None
    replace_figure = False
    if output is not None:
        output = Path(output)
        if output.is_dir():
            table_path, figure_path = output / TABLE_NAME, output / FIGURE_NAME
            # a fit.png beside nvmkit's own device.toml is the figure of an earlier fit into this folder
            replace_figure = plot is None and is_device_table_file(table_path)
        else:
            if output.suffix != ".toml":
                raise ConfigError(f"output {output} must be a .toml file or an existing folder")
            if not output.parent.is_dir():
                raise ConfigError(f"cannot write {output}: folder {output.parent} does not exist; create it first")
            table_path = output
        if table_path.is_dir() or (table_path.exists() and not is_device_table_file(table_path)):
            raise ConfigError(f"{table_path} exists and is not an nvmkit device table; nvmkit will not overwrite "
                              "it: give another file name or delete it first")
    if plot is not None:
        figure_path = Path(plot)
    if figure_path is not None:
        from nvmkit.fit.figure import check_figure_path

        check_figure_path(figure_path, replace=replace_figure)
    name = Path(m.origin).name if m.sha256 else m.origin  # never a machine's absolute path
    source = f"{name} (sha256 {m.sha256})" if m.sha256 else name
    times = m.times
    fit = estimate(m, g_min=g_min, g_max=g_max, levels=levels, read_voltage=read_voltage, read_time=read_time,
                   energy_per_mac=energy_per_mac, min_dof=min_dof, source=source,
                   description=f"fitted by `nvmkit devices fit` from {len(m.target)} reads of "
                               f"{len(m.targets)} target levels at {len(times)} time(s)")
    # the table first: it is what the fit is for, and a figure that failed to write leaves a
    # complete table rather than a figure of a table that does not exist
    if table_path is not None:
        write_text_atomic(table_path, fit.table.to_toml())
    if figure_path is not None:
        from nvmkit.fit.figure import plot_fit

        plot_fit(fit, figure_path)
    fit.paths = {"table": table_path, "figure": figure_path}
    return fit
