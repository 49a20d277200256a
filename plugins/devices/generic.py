"""A generic cell with every non-ideality a parameter, for what-if studies."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import Device, check_positive, hookimpl


class GenericDevice(Device):
    """Generic cell: range, levels, programming and read spread, power-law drift all parameters.

    Programming error std: sqrt((sigma_prog (Gmax - Gmin))^2 + (sigma_prog_rel G)^2): a
    state-independent part, a fraction of the range, and a multiplicative part proportional to
    the conductance. Read noise has the same two parts, drawn on every read.

    The spreads are per device (per cell), not per weight: with the default differential pair a
    weight is the difference of two cells, so ``sigma_prog = 0.025`` gives each weight a std of
    sqrt(2) x 2.5% of (Gmax - Gmin) = 3.5% of Wmax, i.e. 1.8% of the weight range Wmax - Wmin
    (with the offset scheme, one cell a weight: 2.5% of the weight range). The seed's 2.5%
    "realistic" internal noise is per weight: that is the ``synaptic`` device.

    Drift: G(t) = G (t / drift_t0)^-drift_nu for t > drift_t0, the power law of phase-change
    memory (Ielmini et al., IEEE TED 2007).
    """

    name = "generic"
    units = "uS"
    citations: ClassVar[dict[str, str]] = {
        "sigma_prog": "free parameter, per device (cell): 0.025 gives 1.8% of the weight range per "
                      "weight with differential pairs; the seed's per-weight 2.5% is 'synaptic'",
        "sigma_prog_rel": "free parameter (state-proportional part)",
        "sigma_read": "free parameter",
        "sigma_read_rel": "free parameter (state-proportional part)",
        "g_min": "free parameter (on/off 100 by default)",
        "g_max": "free parameter",
        "levels": "None = continuous",
        "drift_nu": "free parameter; ~0.05 for PCM (Ielmini et al., IEEE TED 2007)",
        "drift_t0": "reference time of the power law",
        "read_voltage": "assumed typical crossbar read bias",
        "read_time": "assumed typical read pulse",
        "energy_per_mac": "None = derived by the energy estimator",
    }
    param_units: ClassVar[dict[str, str]] = {
        "sigma_prog": "fraction of Gmax - Gmin", "sigma_prog_rel": "fraction of G",
        "sigma_read": "fraction of Gmax - Gmin", "sigma_read_rel": "fraction of G",
        "g_min": "uS", "g_max": "uS", "drift_t0": "s", "read_voltage": "V", "read_time": "s",
        "energy_per_mac": "J",
    }

    def __init__(self, sigma_prog: float = 0.025, sigma_prog_rel: float = 0.0,
                 sigma_read: float = 0.0, sigma_read_rel: float = 0.0,
                 g_min: float = 1.0, g_max: float = 100.0, levels: int | None = None,
                 drift_nu: float = 0.0, drift_t0: float = 1.0,
                 read_voltage: float = 0.1, read_time: float = 10e-9,
                 energy_per_mac: float | None = None):
        self.sigma_prog = self._sigma("sigma_prog", sigma_prog)
        self.sigma_prog_rel = self._sigma("sigma_prog_rel", sigma_prog_rel)
        self.sigma_read = self._sigma("sigma_read", sigma_read)
        self.sigma_read_rel = self._sigma("sigma_read_rel", sigma_read_rel)
        self._set_range(g_min, g_max, levels)
        self.drift_nu = self._sigma("drift_nu", drift_nu)
        self.drift_t0 = check_positive(f"device '{self.name}'", "drift_t0", drift_t0)
        self._set_energy(read_voltage, read_time, energy_per_mac)

    def _spread(self, g, frac, rel):
        g = np.asarray(g, dtype=np.float32)
        if not rel:
            return np.full_like(g, frac * self.g_range)
        return np.sqrt(np.float32(frac * self.g_range) ** 2 + np.square(np.float32(rel) * g))

    def programming_sigma(self, g, t=0.0):
        return self._spread(g, self.sigma_prog, self.sigma_prog_rel)

    def read_sigma(self, g):
        return self._spread(g, self.sigma_read, self.sigma_read_rel)

    def drift(self, g, t):
        if not self.drift_nu or t <= self.drift_t0:
            return g
        return g * np.float32((t / self.drift_t0) ** -self.drift_nu)


@hookimpl
def nvmkit_devices():
    return [GenericDevice]
