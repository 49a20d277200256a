"""HfO2 ReRAM with the measured programming error of Milo et al., IRPS 2021."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import ConfigError, Device, hookimpl

# Milo et al., IRPS 2021, Fig. 4 (IGVVA-100 write-verify): std of the programmed conductance vs
# target, a linear fit sigma_G = max(A G + B, 0) with G and sigma_G in uS (as published in
# CrossSim 3's RRAM_Milo device model, sandialabs/cross-sim)
MILO_A = -0.009107
MILO_B = 4.782321
ERROR_MODELS = ("milo", "constant")


class ReRAM(Device):
    """HfO2 ReRAM after Milo et al., IRPS 2021: 50-225 uS, state-dependent programming error.

    V. Milo et al., "Optimized programming algorithms for multilevel RRAM in hardware neural
    networks", IEEE IRPS 2021: multilevel HfO2 cells programmed with incremental gate-voltage
    write-verify between 50 and 225 uS (on/off 4.5). The spread of the programmed conductance
    falls linearly with the target: sigma_G = max(-0.009107 G + 4.782321, 0) uS, i.e. 4.33 uS at
    50 uS and 2.73 uS at 225 uS. ``error_model = "constant"`` instead gives a generic,
    state-independent ReRAM with sigma = ``sigma_prog`` (Gmax - Gmin). Drift can be studied with
    the crossbar's power-law option.

    Read noise: none by default, and that is a choice, not a claim that the cells are quiet.
    Milo et al. characterise the programmed spread only. HfOx cells do fluctuate from read to
    read (random telegraph and 1/f noise, whose relative amplitude grows as the conductance
    falls: Ambrogio et al., "Noise-induced resistance broadening in resistive switching memory,
    Part I", IEEE TED 2015), but we found no published curve of read noise against conductance
    for these cells (this stack, the 50-225 uS multilevel window, a stated read bandwidth) to
    take numbers from, and a curve of other cells would be a guess presented as a citation. Two
    free parameters let a study add it, per read and per cell: std =
    sqrt((sigma_read (Gmax - Gmin))^2 + (sigma_read_rel G)^2), a state-independent part and a
    part proportional to the conductance (a fixed relative fluctuation dG/G), both 0 unless set.

    Energy: 11 fJ per multiply-accumulate for an analog ReRAM crossbar (Marinella et al., "Multiscale
    co-design analysis of energy, latency, area, and accuracy of a ReRAM analog neural training
    accelerator", IEEE JETCAS 2018).
    """

    name = "reram"
    units = "uS"
    citations: ClassVar[dict[str, str]] = {
        "levels": "None = continuous; set the number of write-verify target levels",
        "error_model": "'milo': sigma_G = max(-0.009107 G + 4.782321, 0) uS, Milo et al., IRPS 2021, Fig. 4",
        "sigma_prog": "used by error_model='constant' only (generic state-independent ReRAM)",
        "sigma_read": "Milo et al. report none; free parameter (state-independent part)",
        "sigma_read_rel": "free parameter (part proportional to G); 0: no read-noise curve "
                          "published for these cells (docstring)",
        "g_min": "50 uS, Milo et al., IRPS 2021 (on/off 4.5)",
        "g_max": "225 uS, Milo et al., IRPS 2021",
        "read_voltage": "assumed typical non-disturbing ReRAM read bias",
        "read_time": "assumed typical read pulse",
        "energy_per_mac": "11 fJ/MAC, Marinella et al., IEEE JETCAS 2018",
    }
    param_units: ClassVar[dict[str, str]] = {
        "sigma_prog": "fraction of Gmax - Gmin", "sigma_read": "fraction of Gmax - Gmin",
        "sigma_read_rel": "fraction of G",
        "g_min": "uS", "g_max": "uS", "read_voltage": "V", "read_time": "s", "energy_per_mac": "J",
    }

    def __init__(self, levels: int | None = None, error_model: str = "milo",
                 sigma_prog: float = 0.025, sigma_read: float = 0.0, sigma_read_rel: float = 0.0,
                 g_min: float = 50.0, g_max: float = 225.0,
                 read_voltage: float = 0.1, read_time: float = 10e-9,
                 energy_per_mac: float | None = 11e-15):
        if error_model not in ERROR_MODELS:
            raise ConfigError(f"device 'reram': error_model must be one of {', '.join(ERROR_MODELS)}, "
                              f"got {error_model!r}")
        self.error_model = error_model
        self.sigma_prog = self._sigma("sigma_prog", sigma_prog)
        self.sigma_read = self._sigma("sigma_read", sigma_read)
        self.sigma_read_rel = self._sigma("sigma_read_rel", sigma_read_rel)
        self._set_range(g_min, g_max, levels)
        self._set_energy(read_voltage, read_time, energy_per_mac)

    def programming_sigma(self, g, t=0.0):
        g = np.asarray(g, dtype=np.float32)
        if self.error_model == "constant":
            return np.full_like(g, self.sigma_prog * self.g_range)
        return np.maximum(np.float32(MILO_A) * g + np.float32(MILO_B), np.float32(0))

    def read_sigma(self, g):
        g = np.asarray(g, dtype=np.float32)
        if not self.sigma_read_rel:
            return np.full_like(g, self.sigma_read * self.g_range)
        return np.sqrt(np.float32(self.sigma_read * self.g_range) ** 2
                       + np.square(np.float32(self.sigma_read_rel) * g))


@hookimpl
def nvmkit_devices():
    return [ReRAM]
