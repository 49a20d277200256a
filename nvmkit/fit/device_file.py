"""The device-table file: what ``nvmkit devices fit`` writes and the ``table`` device reads.

One TOML file describes a cell by tables against the target conductance ``g`` (the knots) and the
time since programming ``time`` (seconds, first entry 0):

- ``programming_sigma[time][g]``: std of the programmed conductance between cells;
- ``read_sigma[g]``: std of one read of one cell (cycle-to-cycle), time independent;
- ``mean[time][g]``: mean conductance of the cells programmed to ``g``, ``time`` after programming
  (a fit writes the mean at t = 0 plus the cells' mean change since then); the device drifts a
  cell by ``mean[time] - mean[0]`` (so it never drifts at t = 0).

plus the range (``g_min``, ``g_max``), the level count, the units (a conductance or a read
current, as ``nvmkit.Device`` states them) and the read energy parameters. The format is defined
here once, for the writer and the reader; every problem is one line that names the key.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nvmkit.core.atomic import atomic_write
from nvmkit.core.errors import ConfigError
from nvmkit.core.params import load_toml

FORMAT = "nvmkit-device-table"
VERSION = 1
#: units a device table may state: a conductance, or a read current at the read voltage
CONDUCTANCE_UNITS = ("S", "mS", "uS", "nS")
CURRENT_UNITS = ("A", "mA", "uA", "nA")
UNITS = CONDUCTANCE_UNITS + CURRENT_UNITS
_TOP_KEYS = {"format", "version", "description", "source", "units", "g_min", "g_max", "levels",
             "read_voltage", "read_time", "energy_per_mac", "tables"}
_TABLE_KEYS = {"g", "time", "programming_sigma", "read_sigma", "mean"}


@dataclass
class DeviceTable:
    """A validated device table (arrays are float64; ``time`` in seconds)."""

    units: str
    g_min: float
    g_max: float
    g: np.ndarray
    time: np.ndarray
    programming_sigma: np.ndarray  # (len(time), len(g))
    read_sigma: np.ndarray  # (len(g),)
    mean: np.ndarray  # (len(time), len(g))
    levels: int | None = None
    read_voltage: float = 0.1
    read_time: float = 10e-9
    energy_per_mac: float | None = None
    description: str = ""
    source: str = ""
    origin: str = field(default="<table>", repr=False)  # where it was read from, for messages
    sha256: str = field(default="", repr=False)  # of the file it was read from

    def __post_init__(self) -> None:
        self._validate()

    # -- validation: one line naming the key -----------------------------------------------------
    def _fail(self, key: str, problem: str):
        raise ConfigError(f"device table {self.origin}: key '{key}' {problem}")

    def _validate(self) -> None:
        if self.units not in UNITS:
            self._fail("units", f"must be a conductance ({', '.join(CONDUCTANCE_UNITS)}) or a read "
                                f"current ({', '.join(CURRENT_UNITS)}), got {self.units!r}")
        for key in ("g_min", "g_max", "read_voltage", "read_time"):
            setattr(self, key, self._number(key, getattr(self, key), positive=key.startswith("read")))
        if self.g_min >= self.g_max:
            self._fail("g_max", f"({self.g_max:g}) must be above g_min ({self.g_min:g})")
        if self.energy_per_mac is not None:
            self.energy_per_mac = self._number("energy_per_mac", self.energy_per_mac, positive=True)
        if self.levels is not None and (isinstance(self.levels, bool) or not isinstance(self.levels, int)
                                        or self.levels < 2):
            self._fail("levels", f"must be an integer >= 2 (or absent for a continuous cell), got {self.levels!r}")
        self.g = self._array("tables.g", self.g, 1)
        self.time = self._array("tables.time", self.time, 1)
        n_g, n_t = len(self.g), len(self.time)
        if n_g < 2:
            self._fail("tables.g", f"needs at least 2 target conductances, got {n_g}")
        if np.any(self.g < 0) or np.any(np.diff(self.g) <= 0):
            self._fail("tables.g", "must be non-negative and strictly increasing")
        if self.time[0] != 0 or np.any(np.diff(self.time) <= 0):
            self._fail("tables.time", "must start at 0 (the programming instant) and strictly increase (seconds)")
        self.read_sigma = self._array("tables.read_sigma", self.read_sigma, 1, (n_g,))
        self.programming_sigma = self._array("tables.programming_sigma", self.programming_sigma, 2, (n_t, n_g))
        self.mean = self._array("tables.mean", self.mean, 2, (n_t, n_g))
        for key in ("read_sigma", "programming_sigma"):
            if np.any(getattr(self, key) < 0):
                self._fail(f"tables.{key}", "must be >= 0 (a standard deviation)")

    def _number(self, key, value, positive=False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value):
            self._fail(key, f"must be a finite number, got {value!r}")
        if value < 0 or (positive and value == 0):
            self._fail(key, f"must be {'> 0' if positive else '>= 0'}, got {value!r}")
        return float(value)

    def _array(self, key, value, ndim, shape=None) -> np.ndarray:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            self._fail(key, "must be a list of numbers" + (" per time" if ndim == 2 else ""))
        if arr.ndim != ndim:
            self._fail(key, "must be a list of numbers" if ndim == 1 else "must be a list of rows, one per tables.time")
        if shape is not None and arr.shape != shape:
            want = f"{shape[0]} values (one per tables.g)" if ndim == 1 else \
                f"{shape[0]} rows (one per tables.time) of {shape[1]} values (one per tables.g)"
            self._fail(key, f"must have {want}, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            self._fail(key, "must hold finite numbers only")
        return arr

    # -- the curves: what the ``table`` device simulates ---------------------------------------------
    def programming_sigma_at(self, g, t: float = 0.0, extrapolate: bool = False) -> np.ndarray:
        return np.maximum(self._curve("programming_sigma")(g, t, extrapolate), 0.0)

    def read_sigma_at(self, g) -> np.ndarray:
        return np.maximum(self._curve("read_sigma")(g, 0.0), 0.0)

    def shift_at(self, g, t: float, extrapolate: bool = False) -> np.ndarray:
        """Change of the mean conductance since programming, for a cell at ``g``."""
        return self._curve("shift")(g, t, extrapolate)

    def _curve(self, key: str) -> "Curve":
        cache = self.__dict__.setdefault("_curves", {})
        if key not in cache:
            rows = {"programming_sigma": self.programming_sigma, "read_sigma": self.read_sigma[None, :],
                    "shift": self.mean - self.mean[0]}[key]
            cache[key] = Curve(self.g, self.time[: len(rows)], rows)
        return cache[key]

    # -- TOML --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        if self.description:
            out["description"] = self.description
        if self.source:
            out["source"] = self.source
        out.update(units=self.units, g_min=self.g_min, g_max=self.g_max)
        if self.levels is not None:
            out["levels"] = self.levels
        out.update(read_voltage=self.read_voltage, read_time=self.read_time)
        if self.energy_per_mac is not None:
            out["energy_per_mac"] = self.energy_per_mac
        out["tables"] = {
            "g": _round(self.g), "time": _round(self.time),
            "programming_sigma": _round(self.programming_sigma), "read_sigma": _round(self.read_sigma),
            "mean": _round(self.mean),
        }
        return out

    def to_toml(self) -> str:
        import tomli_w

        head = ("# nvmkit device table (format 1): use it with --device table:file=THIS_FILE\n"
                "# tables.g: target conductances (knots); tables.time: seconds since programming;\n"
                "# programming_sigma and mean: one row per time; read_sigma: one value per knot.\n")
        return head + tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<table>") -> "DeviceTable":
        def fail(key, problem):
            raise ConfigError(f"device table {origin}: key '{key}' {problem}")

        if data.get("format") != FORMAT:
            fail("format", f"must be {FORMAT!r} (is this a device table written by `nvmkit devices fit`?)")
        if data.get("version") != VERSION:
            fail("version", f"must be {VERSION}, got {data.get('version')!r}; this nvmkit reads format {VERSION}")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            fail(unknown[0], f"is unknown; valid keys: {', '.join(sorted(_TOP_KEYS))}")
        for key in ("units", "g_min", "g_max", "tables"):
            if key not in data:
                fail(key, "is missing")
        tables = data["tables"]
        if not isinstance(tables, dict):
            fail("tables", "must be a table ([tables])")
        unknown = sorted(set(tables) - _TABLE_KEYS)
        if unknown:
            fail(f"tables.{unknown[0]}", f"is unknown; valid keys: {', '.join(sorted(_TABLE_KEYS))}")
        missing = sorted(_TABLE_KEYS - set(tables))
        if missing:
            fail(f"tables.{missing[0]}", "is missing")
        for key in ("description", "source"):
            if not isinstance(data.get(key, ""), str):
                fail(key, "must be a string")
        return cls(units=data["units"], g_min=data["g_min"], g_max=data["g_max"], levels=data.get("levels"),
                   read_voltage=data.get("read_voltage", 0.1), read_time=data.get("read_time", 10e-9),
                   energy_per_mac=data.get("energy_per_mac"), description=data.get("description", ""),
                   source=data.get("source", ""), origin=origin, **{k: tables[k] for k in _TABLE_KEYS})


class Curve:
    """A quantity tabulated at knots ``g`` for each time: monotone cubic in ``g`` (PCHIP: Fritsch
    and Carlson, "Monotone piecewise cubic interpolation", SIAM J. Numer. Anal. 17, 1980), which
    never overshoots the tabulated values between knots; held at the end values outside the
    knots; linear in time between the tabulated times (past the last one: held, or with
    ``extrapolate`` the last segment's trend continued)."""

    def __init__(self, g: np.ndarray, time: np.ndarray, rows: np.ndarray):
        from scipy.interpolate import PchipInterpolator

        self.g_lo, self.g_hi, self.time = float(g[0]), float(g[-1]), time
        self.rows = [PchipInterpolator(g, row) for row in rows]

    def __call__(self, g, t: float, extrapolate: bool = False) -> np.ndarray:
        x = np.clip(np.asarray(g, dtype=np.float64), self.g_lo, self.g_hi)
        time = self.time
        if len(self.rows) == 1 or t <= 0:
            return self.rows[0](x)
        if t >= time[-1] and not extrapolate:
            return self.rows[-1](x)
        i = min(int(np.searchsorted(time, t, side="right")) - 1, len(time) - 2)
        f = (t - time[i]) / (time[i + 1] - time[i])  # > 1 only when extrapolating
        lo, hi = self.rows[i](x), self.rows[i + 1](x)
        return lo + f * (hi - lo)


def _round(arr: np.ndarray):
    """Plain floats at 7 significant digits: a readable file, far below any sampling error."""
    return [float(f"{v:.7g}") for v in arr] if arr.ndim == 1 else [_round(row) for row in arr]


def load_device_table(path) -> DeviceTable:
    """Read and validate a device-table TOML file (ConfigError naming the file and key); the
    table's ``sha256`` is that of the file's bytes, so a run can record exactly what it used."""
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a UTF-8 text file"
        raise ConfigError(f"cannot read device table file {path}: {reason}; check the path") from None
    table = DeviceTable.from_dict(load_toml(text, f"device table {path}"), origin=str(path))
    table.sha256 = hashlib.sha256(raw).hexdigest()
    return table


def is_device_table_file(path) -> bool:
    """Whether ``path`` holds a device table nvmkit wrote (TOML with its ``format`` key), which a
    new fit may replace; any other file is the user's and is never overwritten."""
    try:
        data = load_toml(Path(path).read_bytes().decode("utf-8"), f"device table {path}")
    except (OSError, UnicodeDecodeError, ConfigError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` so that no reader ever sees a half-written file (see nvmkit.core.atomic)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    atomic_write(path, text)


def tabulate_device(device, g, time=(0.0,), description: str = "", source: str = "") -> DeviceTable:
    """A device's own curves sampled at knots ``g`` and times ``time`` (s): the table form of
    any ``nvmkit.Device`` (its programming bias is zero, so ``mean[0] = g``)."""
    g = np.asarray(g, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    g32 = g.astype(np.float32)
    return DeviceTable(
        units=device.units, g_min=device.g_min, g_max=device.g_max, levels=device.levels, g=g, time=time,
        programming_sigma=np.stack([np.asarray(device.programming_sigma(g32, t), np.float64) for t in time]),
        read_sigma=np.asarray(device.read_sigma(g32), np.float64),
        mean=np.stack([np.asarray(device.drift(g, t), np.float64) for t in time]),
        read_voltage=device.read_voltage, read_time=device.read_time, energy_per_mac=device.energy_per_mac,
        description=description, source=source)
