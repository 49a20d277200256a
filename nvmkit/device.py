"""The device-model abstract type: what one memory cell does to a conductance.

Conductances are in the device's own ``units`` (``uS`` for ReRAM; ``nA`` of read current at the
read voltage for SONOS, as the measured fits are stated). The crossbar engine only needs ratios
between conductances and the device's spread, so any consistent unit works.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .component import Component, check_int, check_nonnegative
from .errors import ConfigError


class Device(Component):
    """Abstract device model. Subclasses set ``name`` and call ``_set_range`` in ``__init__``."""

    kind: ClassVar[str] = "device"
    units: ClassVar[str] = "uS"
    #: parameter name -> where its value comes from (paper, measured fit). Shown by
    #: ``nvmkit devices show NAME``; every physical parameter should have an entry.
    citations: ClassVar[dict[str, str]] = {}

    g_min: float
    g_max: float
    levels: int | None  # programmable levels between g_min and g_max; None = continuous
    read_voltage: float = 0.1  # V, used by energy estimators
    read_time: float = 10e-9  # s, used by energy estimators

    def _set_range(self, g_min, g_max, levels=None) -> None:
        owner = f"device '{self.name}'"
        g_min = check_nonnegative(owner, "g_min", g_min)
        g_max = check_nonnegative(owner, "g_max", g_max)
        if g_min >= g_max:
            raise ConfigError(f"{owner}: g_min ({g_min}) must be below g_max ({g_max})")
        if levels is not None:
            levels = check_int(owner, "levels", levels, minimum=2)
        self.g_min, self.g_max, self.levels = float(g_min), float(g_max), levels

    @property
    def g_range(self) -> float:
        return self.g_max - self.g_min

    @property
    def on_off_ratio(self) -> float:
        return self.g_max / self.g_min if self.g_min > 0 else float("inf")

    # -- physics: override what the device has; the defaults are an ideal cell ---------------
    def programming_sigma(self, g: np.ndarray, t: float = 0.0) -> np.ndarray:
        """Std of the programming error at target conductance ``g`` (same units as ``g``), as
        observed ``t`` seconds after programming (devices whose spread widens with time use it)."""
        return np.zeros_like(g)

    def read_sigma(self, g: np.ndarray) -> np.ndarray:
        """Std of the cycle-to-cycle read noise of a cell at conductance ``g``, per read."""
        return np.zeros_like(g)

    def drift(self, g: np.ndarray, t: float) -> np.ndarray:
        """Conductance ``t`` seconds after programming (default: no drift)."""
        return g

    def cell_read_energy(self, g: np.ndarray | float) -> np.ndarray | float:
        """Energy of reading one cell once, V^2 G t (J), with G converted from ``units``."""
        scale = {"S": 1.0, "mS": 1e-3, "uS": 1e-6, "nS": 1e-9}.get(self.units)
        if scale is None:  # current-read devices (nA at read_voltage): E = V I t
            return self.read_voltage * np.asarray(g) * 1e-9 * self.read_time
        return self.read_voltage**2 * np.asarray(g) * scale * self.read_time
