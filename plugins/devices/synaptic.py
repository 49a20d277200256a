"""The seed's abstract synaptic noise: Gaussian noise on every weight, in units of its range."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import Device, check_flag, hookimpl


class SynapticNoise(Device):
    """Abstract synapse: every weight gets Gaussian noise of std sigma_syn * (Wmax - Wmin).

    The internal-noise model of Bennett et al. (Sandia, "Evaluating complexity and resilience
    trade-offs in emerging memory inference machines"): test-time synaptic noise on every weight
    with std ``sigma_syn (Wmax - Wmin)``, 2.5% in their results, whose effect on a neuron is
    ``sigma_neu = sigma_syn (Wmax - Wmin) sqrt(n) gamma_act`` (gamma_act the RMS input).

    Wmax - Wmin is the crossbar's mapped weight range (``Crossbar.weight_range`` = 2 max|W|). The
    noise is stated per weight and the engine splits it over the cells of the mapping, so the
    weight's std is exact under either scheme: with the default differential pair each of the two
    cells carries sqrt(2) sigma_syn (Gmax - Gmin); with the offset scheme the single cell carries
    sigma_syn (Gmax - Gmin). The conductances are abstract (no clipping to [Gmin, Gmax]), so the
    noise stays Gaussian at zero weights too.

    ``resample`` False (default): the noise is drawn once per programming (per Monte Carlo trial),
    the seed's deployed-weights setting. True: it is drawn afresh on every read (every VMM, every
    RNN time step), as read noise.
    """

    name = "synaptic"
    units = "uS"
    sigma_per_weight = True
    bounded = False
    physical_units = False  # a range of 0 to 1 in units of the weight range: no siemens behind it
    citations: ClassVar[dict[str, str]] = {
        "sigma_syn": "Bennett et al., Sandia (seed study): 2.5% 'realistic internal noise'",
        "resample": "False: static per programming, as the seed deploys noisy weights",
        "levels": "None = continuous weights",
        "read_voltage": "assumed typical crossbar read bias",
        "read_time": "assumed typical read pulse",
        "energy_per_mac": "None = the energy estimator decides (abstract device)",
    }
    param_units: ClassVar[dict[str, str]] = {
        "sigma_syn": "fraction of Wmax - Wmin", "read_voltage": "V", "read_time": "s",
        "energy_per_mac": "J",
    }

    def __init__(self, sigma_syn: float = 0.025, resample: bool = False, levels: int | None = None,
                 read_voltage: float = 0.1, read_time: float = 10e-9,
                 energy_per_mac: float | None = None):
        self.sigma_syn = self._sigma("sigma_syn", sigma_syn)
        self.resample = check_flag(f"device '{self.name}'", "resample", resample)
        self._set_range(0.0, 1.0, levels)
        self._set_energy(read_voltage, read_time, energy_per_mac)

    def programming_sigma(self, g, t=0.0):
        level = 0.0 if self.resample else self.sigma_syn * self.g_range
        return np.full_like(g, level)

    def read_sigma(self, g):
        level = self.sigma_syn * self.g_range if self.resample else 0.0
        return np.full_like(g, level)


@hookimpl
def nvmkit_devices():
    return [SynapticNoise]
