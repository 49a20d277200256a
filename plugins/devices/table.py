"""A device given as measured tables: programming spread, read noise and drift against the target."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import ClassVar

import numpy as np
from nvmkit import ConfigError, Device, check_flag, check_int, hookimpl, load_device_table

#: the table used when no file is given: the SONOS model of Agrawal et al. (IEDM 2022), tabulated
#: by scripts/make_example_measurements.py (so `nvmkit plugins check` can build the device)
DEFAULT_TABLE = "table_sonos_default.toml"


class TableDevice(Device):
    """A cell described by measured tables (from `nvmkit devices fit`), interpolated without overshoot.

    The file (TOML, written by ``nvmkit devices fit`` or by hand; format in docs/devices-from-data.md)
    gives, at target conductances ``g`` and times since programming ``t``: the programming spread
    sigma_P(g, t), the per-read noise sigma_R(g) and the mean conductance m(g, t). Between knots
    each curve is a monotone piecewise-cubic Hermite interpolant (Fritsch and Carlson, "Monotone
    piecewise cubic interpolation", SIAM J. Numer. Anal. 17, 1980), which stays within the
    neighbouring measured values; outside the knots it is held at the end value; between times
    it is linear. A cell drifts by m(g, t) - m(g, 0). Times past the last tabulated one are refused
    unless ``extrapolate_drift`` is set (then the last segment's trend is extended).

    Without ``file``, the bundled default table is used: the SONOS model of Agrawal et al., IEDM
    2022 (see ``nvmkit devices show sonos``), tabulated at 9 currents and 0-5 days.
    The file's SHA-256 is part of the configuration: a changed file is refused on a rerun.
    """

    name = "table"
    citations: ClassVar[dict[str, str]] = {
        "file": "the measurements it was fitted from are named in the file's 'source' key",
        "levels": "from the file unless given (None = continuous)",
        "sha256": "of the file, recorded with every result: a rerun refuses a changed file",
        "extrapolate_drift": "drift is known only over the tabulated times",
        "interpolation": "monotone cubic (PCHIP) in g, Fritsch and Carlson, SIAM J. Numer. Anal. 1980",
        "default_table": "SONOS of Agrawal et al., IEDM 2022, tabulated (no file given)",
    }
    param_units: ClassVar[dict[str, str]] = {}
    path_params: ClassVar[tuple[str, ...]] = ("file",)  # read from a configuration file's folder
    interpolation = "pchip"
    default_table = DEFAULT_TABLE

    def __init__(self, file: str | None = None, levels: int | None = None, sha256: str | None = None,
                 extrapolate_drift: bool = False):
        owner = "device 'table'"
        if file is not None and (not isinstance(file, str) or not file.strip()):
            raise ConfigError(f"{owner}: file must be the path of a device table, got {file!r}")
        path = Path(file).expanduser() if file is not None else Path(str(files("nvmkit_plugins.devices") / DEFAULT_TABLE))
        table = load_device_table(path)
        digest = table.sha256
        if sha256 is not None and sha256 != digest:
            raise ConfigError(f"{owner}: {path} has changed since this configuration was recorded "
                              f"(sha256 {digest[:12]}..., recorded {str(sha256)[:12]}...); "
                              "restore the file or drop sha256 to use the new one")
        self.file, self.sha256 = file, digest
        self.extrapolate_drift = check_flag(owner, "extrapolate_drift", extrapolate_drift)
        if levels is not None:
            levels = check_int(owner, "levels", levels, minimum=2)
        self.units = table.units  # per file, not per class: the table states its own units
        self._set_range(table.g_min, table.g_max, levels if levels is not None else table.levels)
        self._set_energy(table.read_voltage, table.read_time, table.energy_per_mac)
        self.table = table
        # this file's own provenance, shown by `nvmkit devices show`
        about = "; ".join(x for x in (table.description, table.source and f"source: {table.source}") if x)
        self.citations = {**type(self).citations, **({"file": about} if about else {})}
        if file is not None:  # the bundled default table is not in use: do not cite it
            del self.citations["default_table"]
        self._t_max = float(table.time[-1])

    def _time(self, t) -> float:
        t = float(t)
        if t > self._t_max and not self.extrapolate_drift:
            raise ConfigError(
                f"device 'table': its tables cover 0-{self._t_max:g} s after programming, got "
                f"drift_time = {t:g} s; use drift_time <= {self._t_max:g} or set extrapolate_drift=true")
        return t

    def programming_sigma(self, g, t=0.0):
        return self.table.programming_sigma_at(g, self._time(t), self.extrapolate_drift).astype(np.float32)

    def read_sigma(self, g):
        return self.table.read_sigma_at(g).astype(np.float32)

    def drift(self, g, t):
        t = self._time(t)
        if t <= 0:
            return g
        g = np.asarray(g)
        return (g + self.table.shift_at(g, t, self.extrapolate_drift)).astype(np.float32)


@hookimpl
def nvmkit_devices():
    return [TableDevice]
