"""Measurement files: one row per read of one cell, as a device lab records them.

A CSV file with a header row of named columns (any order, case-insensitive, other columns ignored):

- ``target``: the conductance the cell was programmed to (required);
- ``measured``: the conductance read back (required);
- ``cell``: a cell identifier (optional; without it every row is a different cell);
- ``read``: the read index (optional, an integer >= 0, informative: repeated reads are the rows
  that share a cell and a time);
- ``time``: time since programming (optional; without it every read is at t = 0). Every cell read
  later must also have been read at time 0: that first read is the programming reference.

Units are stated in comment lines before the header, ``# units: nA`` (a conductance ``S``, ``mS``,
``uS``, ``nS`` or a read current ``A``, ``mA``, ``uA``, ``nA``) and ``# time_units: days`` (``s``,
``min``, ``h``, ``days``; default ``s``), or given as options, which must then agree with the file.
Every problem is one :class:`DataError` line naming the file line and column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nvmkit.core.errors import DataError
from nvmkit.fit.device_file import CONDUCTANCE_UNITS, CURRENT_UNITS, UNITS

TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "days": 86400.0}
REQUIRED = ("target", "measured")
OPTIONAL = ("cell", "read", "time")


@dataclass
class Measurements:
    """Validated reads: ``target``, ``measured`` (float64, in ``units``), ``cell`` (str codes or
    None), ``read`` (int or None), ``time`` (seconds, or None); ``line`` is each row's line in the
    file, for messages."""

    target: np.ndarray
    measured: np.ndarray
    units: str
    cell: np.ndarray | None = None
    read: np.ndarray | None = None
    time: np.ndarray | None = None
    line: np.ndarray | None = None
    origin: str = "<measurements>"
    sha256: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        n = len(self.target)
        self.target = np.asarray(self.target, dtype=np.float64)
        self.measured = np.asarray(self.measured, dtype=np.float64)
        if self.line is None:
            self.line = np.arange(n) + 2  # as if written under a one-line header
        if self.cell is not None:
            self.cell = np.asarray(self.cell).astype(str)
        if self.read is not None:
            self.read = np.asarray(self.read, dtype=np.int64)
        if self.time is not None:
            self.time = np.asarray(self.time, dtype=np.float64)
        self._validate()

    def _fail(self, row: int | None, column: str, problem: str):
        where = f"line {int(self.line[row])}, column '{column}'" if row is not None else f"column '{column}'"
        raise DataError(f"{self.origin}: {where}: {problem}")

    def _validate(self) -> None:
        if self.units not in UNITS:
            raise DataError(f"{self.origin}: units {self.units!r} are not a conductance "
                            f"({', '.join(CONDUCTANCE_UNITS)}) or a read current ({', '.join(CURRENT_UNITS)}); "
                            "state them with '# units: nA' or --units")
        if len(self.target) == 0:
            raise DataError(f"{self.origin}: no measurements (only a header); add one row per read")
        for column in ("target", "measured"):
            values = getattr(self, column)
            bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
            if bad.size:
                self._fail(bad[0], column, f"{values[bad[0]]:g} {self.units} is not a conductance "
                                           "(must be finite and >= 0)")
        if self.time is not None:
            bad = np.flatnonzero(~np.isfinite(self.time) | (self.time < 0))
            if bad.size:
                self._fail(bad[0], "time", f"{self.time[bad[0]]:g} s is not a time since programming (must be >= 0)")
        if self.read is not None and np.any(self.read < 0):
            self._fail(int(np.flatnonzero(self.read < 0)[0]), "read", "read index must be an integer >= 0")
        levels = np.unique(self.target)
        if len(levels) < 2:
            self._fail(None, "target", f"only one target level ({levels[0]:g} {self.units}); measure cells "
                                       "programmed to at least two levels to fit curves across the range")
        if self.cell is not None:
            self._check_cells()
        if self.time is not None:
            self._check_reference()

    def _check_cells(self) -> None:
        """A cell has one target: a second one is a copy-paste slip or a reused id."""
        _, first, inverse = np.unique(self.cell, return_index=True, return_inverse=True)
        first = first[inverse.ravel()]  # each row's cell's first row
        clash = np.flatnonzero(self.target != self.target[first])
        if clash.size:
            r = clash[0]
            self._fail(r, "target", f"cell {str(self.cell[r])!r} was programmed to {self.target[first[r]]:g} "
                                    f"on line {int(self.line[first[r]])} but to {self.target[r]:g} here; "
                                    "give each programmed cell its own id")

    def _check_reference(self) -> None:
        """Reads after t = 0 are drift only relative to the cell's (or level's) read at t = 0."""
        later = self.time > 0
        if self.cell is not None:
            bad = np.flatnonzero(later & ~np.isin(self.cell, self.cell[~later]))
            if bad.size:
                r = bad[0]
                self._fail(r, "time", f"cell {str(self.cell[r])!r} is read at {self.time[r]:g} s but never at time 0; "
                                      "add its first read after programming (time 0) as the drift reference")
        else:
            bad = np.flatnonzero(later & ~np.isin(self.target, self.target[~later]))
            if bad.size:
                r = bad[0]
                self._fail(r, "time", f"target {self.target[r]:g} is read at {self.time[r]:g} s but never at "
                                      "time 0; add reads at time 0 as the drift reference")

    # -- derived ------------------------------------------------------------------------------------
    @property
    def times(self) -> np.ndarray:
        return np.unique(self.time) if self.time is not None else np.zeros(1)

    @property
    def targets(self) -> np.ndarray:
        return np.unique(self.target)

    def to_csv(self, time_units: str = "s", comment: str = "") -> str:
        """The measurements as a CSV file this module reads back."""
        scale = TIME_UNITS[time_units]
        out = io.StringIO()
        for line in comment.splitlines():
            out.write(f"# {line}\n")
        out.write(f"# units: {self.units}\n")
        columns = ["target", "measured"]
        values = [self.target, self.measured]
        if self.cell is not None:
            columns.append("cell")
            values.append(self.cell)
        if self.read is not None:
            columns.append("read")
            values.append(self.read)
        if self.time is not None:
            out.write(f"# time_units: {time_units}\n")
            columns.append("time")
            values.append(self.time / scale)
        out.write(",".join(columns) + "\n")
        fmt = [_fmt_number if c in ("target", "measured", "time") else str for c in columns]
        for row in zip(*values):
            out.write(",".join(f(v) for f, v in zip(fmt, row)) + "\n")
        return out.getvalue()


def _fmt_number(v) -> str:
    return f"{float(v):.6g}"


def read_measurements(path, units: str | None = None, time_units: str | None = None) -> Measurements:
    """Read and validate a measurement CSV (DataError naming the line and column)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a UTF-8 text file"
        raise DataError(f"cannot read measurement file {path}: {reason}; check the path") from None
    origin = str(path)
    lines = text.splitlines()
    stated: dict[str, str] = {}
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
        key, sep, value = lines[i].lstrip().lstrip("#").replace("=", ":", 1).partition(":")
        if sep and key.strip().lower() in ("units", "time_units"):
            stated[key.strip().lower()] = value.strip()
        i += 1
    if i == len(lines):
        raise DataError(f"{origin}: no header row; the first line that is not a comment must name the "
                        f"columns ({', '.join(REQUIRED)}, optionally {', '.join(OPTIONAL)})")
    units = _agree(origin, "units", stated.get("units"), units)
    time_units = _agree(origin, "time_units", stated.get("time_units"), time_units)
    if units is None:
        raise DataError(f"{origin}: units not stated; add '# units: nA' (or uS, ...) before the header, or pass --units")
    reader = csv.reader(lines[i:])
    header = [h.strip().lower() for h in next(reader)]
    dupes = sorted({h for h in header if header.count(h) > 1 and h})
    if dupes:
        raise DataError(f"{origin}: line {i + 1}: column '{dupes[0]}' appears twice in the header")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"{origin}: line {i + 1}: missing column '{missing[0]}'; the header must name "
                        f"{', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)}), found {', '.join(header)}")
    rows, line_no = [], []
    for offset, row in enumerate(reader, start=i + 2):
        if not row or all(not f.strip() for f in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{origin}: line {offset}: {len(row)} fields, but the header names {len(header)}")
        rows.append(row)
        line_no.append(offset)
    line_arr = np.asarray(line_no, dtype=np.int64)
    columns = {name: [r[header.index(name)].strip() for r in rows] for name in REQUIRED + OPTIONAL
               if name in header}

    def numbers(name, integer=False):
        col = columns[name]
        try:
            arr = np.asarray(col, dtype=np.float64)
        except ValueError:
            arr = None
        if arr is None or (integer and not np.all(np.mod(arr, 1) == 0)):
            for j, v in enumerate(col):
                try:
                    x = float(v)
                    ok = not integer or (math.isfinite(x) and x.is_integer())
                except ValueError:
                    ok = False
                if not ok:
                    kind = "an integer" if integer else "a number"
                    raise DataError(f"{origin}: line {line_no[j]}, column '{name}': "
                                    f"{v!r} is not {kind}" + ("" if v else " (empty field)"))
        return arr

    if time_units is not None and time_units not in TIME_UNITS:
        raise DataError(f"{origin}: time_units {time_units!r} unknown; use one of {', '.join(TIME_UNITS)}")
    scale = TIME_UNITS[time_units or "s"]
    data = {"target": numbers("target"), "measured": numbers("measured")}
    if "read" in columns:
        data["read"] = numbers("read", integer=True)
    if "time" in columns:
        data["time"] = numbers("time") * scale
    if "cell" in columns:
        empty = [j for j, v in enumerate(columns["cell"]) if not v]
        if empty:
            raise DataError(f"{origin}: line {line_no[empty[0]]}, column 'cell': empty cell id")
        data["cell"] = np.asarray(columns["cell"])
    return Measurements(units=units, line=line_arr, origin=origin, sha256=hashlib.sha256(raw).hexdigest(), **data)


def _agree(origin: str, key: str, in_file: str | None, given: str | None) -> str | None:
    if in_file is not None and given is not None and in_file != given:
        raise DataError(f"{origin}: the file states {key} {in_file!r} but {given!r} was given; drop the option "
                        "or correct the file")
    return given if given is not None else in_file
