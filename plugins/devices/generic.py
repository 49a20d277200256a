"""Generic cells for what-if studies: every non-ideality a parameter (generic), a parametrised pulse update (softbounds)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import Device, SoftBoundsStep, check_positive, hookimpl


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


class SoftBoundsDevice(Device):
    """Parametrised pulse update for on-chip learning studies: soft bounds, asymmetry, non-linearity.

    An ideal cell for inference (no programming error, read noise or drift, so a study sees the
    update model alone) whose pulse update is ``nvmkit.SoftBoundsStep``: on x = (G - Gmin) /
    (Gmax - Gmin), in units of the range,

        up:    dx+ = update_step (1 + asymmetry) max(1 + nonlinearity (1 - 2x), 0)
        down:  dx- = -update_step (1 - asymmetry) max(1 - nonlinearity (1 - 2x), 0)

    ``nonlinearity`` 0 is a constant step (Gokmen and Vlasov, Front. Neurosci. 2016); 1 is soft
    bounds, the step proportional to the distance to the bound it moves toward (Fusi and Abbott,
    Nat. Neurosci. 2007; Frascaroli et al., Sci. Rep. 2018); in between aihwkit's linear step.
    ``asymmetry`` in (-1, 1): up steps (1 + a) / (1 - a) times the down steps. Up and down steps
    shrink toward opposite bounds, Agarwal et al.'s (IJCNN 2016) *asymmetric* non-linearity;
    ``symmetric_nonlinearity = true`` makes the down step follow the up step's curve (their
    *symmetric* one). Cycle-to-cycle std of a step: sqrt(update_sigma^2 + (update_sigma_rel
    |dx|)^2) of the range; ``pulse_step_d2d``: relative device-to-device spread of the step.
    Every figure is a free parameter: this device is for sweeps (``nvmkit devices show ecram``
    and ``reram`` give cited ones).
    """

    name = "softbounds"
    units = "uS"
    citations: ClassVar[dict[str, str]] = {
        "nonlinearity": "free parameter: 0 constant step (Gokmen and Vlasov, Front. Neurosci. 2016), 1 soft "
                        "bounds (Fusi and Abbott, Nat. Neurosci. 2007; Frascaroli et al., Sci. Rep. 2018)",
        "asymmetry": "free parameter: up/down step ratio (1 + a) / (1 - a) (aihwkit's up_down)",
        "symmetric_nonlinearity": "Agarwal et al., IJCNN 2016: symmetric vs asymmetric non-linearity",
        "update_step": "free parameter (1000 steps across the range at mid-range by default)",
        "update_sigma": "free parameter (additive cycle-to-cycle spread)",
        "update_sigma_rel": "free parameter (multiplicative cycle-to-cycle spread)",
        "pulse_step_d2d": "free parameter",
        "max_pulses": "free parameter (None: not limited by the device)",
        "pulse_energy": "free parameter (None: not stated)",
        "g_min": "free choice (an abstract cell)",
        "g_max": "free choice (an abstract cell)",
        "read_voltage": "assumed typical crossbar read bias",
        "read_time": "assumed typical read pulse",
        "energy_per_mac": "None = derived by the energy estimator",
    }
    param_units: ClassVar[dict[str, str]] = {
        "update_step": "fraction of Gmax - Gmin per pulse", "update_sigma": "fraction of Gmax - Gmin per pulse",
        "update_sigma_rel": "fraction of the mean step", "pulse_step_d2d": "fraction of the step",
        "max_pulses": "pulses per update", "pulse_energy": "J", "g_min": "uS", "g_max": "uS",
        "read_voltage": "V", "read_time": "s", "energy_per_mac": "J",
    }

    def __init__(self, nonlinearity: float = 1.0, asymmetry: float = 0.0, symmetric_nonlinearity: bool = False,
                 update_step: float = 0.001, update_sigma: float = 0.0, update_sigma_rel: float = 0.0,
                 pulse_step_d2d: float = 0.0, max_pulses: int | None = None, pulse_energy: float | None = None,
                 g_min: float = 0.0, g_max: float = 100.0, read_voltage: float = 0.1, read_time: float = 10e-9,
                 energy_per_mac: float | None = None):
        owner = f"device '{self.name}'"
        self._set_range(g_min, g_max)
        self._set_energy(read_voltage, read_time, energy_per_mac)
        model = SoftBoundsStep(update_step, asymmetry, nonlinearity, symmetric_nonlinearity,
                               update_sigma, update_sigma_rel, owner=owner, names={"step": "update_step", "sigma": "update_sigma", "sigma_rel": "update_sigma_rel"})
        self._set_update(model, pulse_step_d2d, max_pulses, pulse_energy)
        self.nonlinearity, self.asymmetry = model.nonlinearity, model.asymmetry
        self.symmetric_nonlinearity = model.symmetric_nonlinearity
        self.update_step, self.update_sigma, self.update_sigma_rel = model.step_size, model.sigma_abs, model.sigma_rel


@hookimpl
def nvmkit_devices():
    return [GenericDevice, SoftBoundsDevice]
