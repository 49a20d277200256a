"""HfO2 ReRAM with the measured programming error of Milo et al., IRPS 2021."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import ConfigError, Device, SoftBoundsStep, hookimpl

# Milo et al., IRPS 2021, Fig. 4 (IGVVA-100 write-verify): std of the programmed conductance vs
# target, a linear fit sigma_G = max(A G + B, 0) with G and sigma_G in uS (as published in
# CrossSim 3's RRAM_Milo device model, sandialabs/cross-sim)
MILO_A = -0.009107
MILO_B = 4.782321
ERROR_MODELS = ("milo", "constant")
# The pulse response: the soft-bounds fit of IBM's aihwkit (ReRamSBPresetDevice, "loose fit" to the
# HfO2 ReRAM of Gong et al., Nat. Commun. 9, 2102, 2018), a weight range [-0.75, 1.25] with
# dw_min = 0.002 at w = 0, additive cycle-to-cycle std 3.75 dw_min, device-to-device 0.3 dw_min.
# In units of the range (2): the up step is 0.16% of the range at Gmin and falls linearly to 0 at
# Gmax; the down step is 0.2667% at Gmax and falls to 0 at Gmin; c2c std 0.375% of the range.
GONG_UP_AT_GMIN = 0.0016
GONG_DOWN_AT_GMAX = 0.002 * 2.0 / 0.75 / 2.0  # dw_min (1 - w_max / w_min) / range = 0.0026667
GONG_SIGMA = 3.75 * 0.002 / 2.0  # 0.00375
GONG_D2D = 0.3


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

    Update model (on-chip learning): asymmetric and non-linear, the soft-bounds pulse response
    fitted to HfO2 ReRAM measurements (Gong et al., "Signal and noise extraction from analog
    memory elements for neuromorphic computing", Nat. Commun. 9, 2102, 2018) as IBM's aihwkit
    states it (``ReRamSBPresetDevice``, a loose fit): the up step is 0.16% of the range at g_min
    and shrinks linearly to 0 at g_max; the down step is 0.267% at g_max and shrinks to 0 at
    g_min; their sizes are equal at 37.5% of the range (the symmetry point, to which random up and
    down pulses drive every cell: the "asymmetric nonlinearity" that Agarwal et al., IJCNN 2016,
    found to cause weight decay and the largest loss of accuracy). Cycle-to-cycle std of one
    step: 0.375% of the range, additive (3.75 times the mid-range step: as noisy as these cells
    are); device-to-device spread of the step: 30%. The fit is stated on a normalised weight
    range; here it is put on this device's window (50-225 uS of Milo et al., another HfO2 stack),
    which is a choice. No write energy per pulse is stated by these sources (``pulse_energy``
    None), nor the pulses an update window allows (``max_pulses`` None).

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
        "update_model": "soft bounds, up 0.16% of range at Gmin, down 0.267% at Gmax: fit to Gong et al., "
                        "Nat. Commun. 2018 (aihwkit ReRamSBPresetDevice)",
        "update_sigma": "0.375% of range per pulse, additive: Gong et al., Nat. Commun. 2018 (aihwkit ReRamSBPresetDevice)",
        "pulse_step_d2d": "0.3: aihwkit ReRamSBPresetDevice (dw_min_dtod) for Gong et al., Nat. Commun. 2018",
        "max_pulses": "not stated by the sources (None)",
        "pulse_energy": "not stated by the sources (None)",
    }
    param_units: ClassVar[dict[str, str]] = {
        "sigma_prog": "fraction of Gmax - Gmin", "sigma_read": "fraction of Gmax - Gmin",
        "sigma_read_rel": "fraction of G",
        "g_min": "uS", "g_max": "uS", "read_voltage": "V", "read_time": "s", "energy_per_mac": "J",
        "update_sigma": "fraction of Gmax - Gmin per pulse", "pulse_step_d2d": "fraction of the step",
        "max_pulses": "pulses per update", "pulse_energy": "J",
    }
    late_params = ("update_sigma", "pulse_step_d2d", "max_pulses", "pulse_energy")

    def __init__(self, levels: int | None = None, error_model: str = "milo",
                 sigma_prog: float = 0.025, sigma_read: float = 0.0, sigma_read_rel: float = 0.0,
                 g_min: float = 50.0, g_max: float = 225.0,
                 read_voltage: float = 0.1, read_time: float = 10e-9,
                 energy_per_mac: float | None = 11e-15,
                 update_sigma: float = GONG_SIGMA, pulse_step_d2d: float = GONG_D2D,
                 max_pulses: int | None = None, pulse_energy: float | None = None):
        if error_model not in ERROR_MODELS:
            raise ConfigError(f"device 'reram': error_model must be one of {', '.join(ERROR_MODELS)}, "
                              f"got {error_model!r}")
        self.error_model = error_model
        self.sigma_prog = self._sigma("sigma_prog", sigma_prog)
        self.sigma_read = self._sigma("sigma_read", sigma_read)
        self.sigma_read_rel = self._sigma("sigma_read_rel", sigma_read_rel)
        self._set_range(g_min, g_max, levels)
        self._set_energy(read_voltage, read_time, energy_per_mac)
        up, down = GONG_UP_AT_GMIN, GONG_DOWN_AT_GMAX  # soft bounds: 2 step (1 +- a) at the far bound
        model = SoftBoundsStep((up + down) / 4, asymmetry=(up - down) / (up + down), nonlinearity=1.0,
                               sigma=update_sigma, owner="device 'reram'", names={"sigma": "update_sigma"})
        self._set_update(model, pulse_step_d2d, max_pulses, pulse_energy)
        self.update_sigma = model.sigma_abs

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
