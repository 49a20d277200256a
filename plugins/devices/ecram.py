"""Electrochemical RAM (redox transistor): many linear states, nA read currents, low noise."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import ConfigError, ConstantStep, Device, check_positive, hookimpl

K_BOLTZMANN = 1.380649e-23  # J/K (SI, exact)


class ECRAM(Device):
    """ECRAM after Fuller et al., Science 2019 and Li et al., Frontiers 2021: reads under 10 nA.

    E. J. Fuller et al., "Parallel programming of an ionic floating-gate memory array for scalable
    neuromorphic computing", Science 364, 570 (2019): polymer redox transistors read with currents
    below 10 nA, >1e9 write-read cycles at >1 MHz. Y. Li et al., "In situ parallel training of
    analog neural network using electrochemical random-access memory", Front. Neurosci. 15 (2021):
    linear switching across hundreds of analog states, cycle-to-cycle noise below 0.5% of the range.

    Model: a cell is its read current at ``read_voltage`` (nA), up to ``i_max`` = 10 nA, with
    ``levels`` linear states; programming error is state-independent, ``sigma_prog`` = 0.5% of the
    range. Read noise is the Johnson-Nyquist thermal noise of the channel conductance G = I / V
    integrated over the read: sigma_I = sqrt(4 k T G df), df = 1 / (2 t_read), i.e.
    sqrt(2 k T I / (V t_read)), 0.03 nA (0.3% of range) at 10 nA, 0.1 V, 1 us, 300 K, plus an
    optional extra part ``sigma_read`` (fraction of range). No drift is modelled: the ionic
    floating gate isolates the gate so the state is retained (Fuller et al., 2019).

    Energy per MAC is derived, not quoted: one read of a weight drives at most one cell of a
    differential pair near ``i_max``, so E_MAC <= V_read I_max t_read = 0.1 V x 10 nA x 1 us = 1 fJ
    (array only; the converters dominate at such currents).

    Update model (on-chip learning): near-linear and symmetric, as both sources report ("linear
    switching properties across hundreds of analog states", Li et al., 2021): a constant step of
    ``update_step`` = 1/500 of the range per pulse in either direction (the 500 states of the
    polymer ENODe, van de Burgt et al., Nat. Mater. 2017; no non-linearity or asymmetry is
    modelled), up to hard bounds. Cycle-to-cycle spread of one pulse's step: ``update_sigma`` =
    0.5% of the range, additive (Li et al., 2021: cycle-to-cycle noise below 0.5%; the stated
    bound is used as the value, the worst case it allows, and read as a fraction of the range, as
    Agarwal et al., IJCNN 2016, state write noise; as a fraction of one step it would be 1/500 of
    this: ``ecram:update_sigma=1e-5``). Device-to-device spread of the step:
    none stated by the sources (``pulse_step_d2d`` 0, a parameter). Pulse energy: ~1 fJ per
    pulse, the switching energy Tang et al. (IEEE IEDM 2018) project for 100 x 100 nm^2 Li-ion
    ECRAM (a projection for another ECRAM; Fuller et al., Adv. Mater. 2017, project < 10 aJ per
    write at 200 x 200 nm^2); no energy per pulse is stated for the polymer cells of Fuller et al.
    2019. Pulses per update window: not stated (``max_pulses`` None).
    """

    name = "ecram"
    units = "nA"
    citations: ClassVar[dict[str, str]] = {
        "levels": "hundreds of linear states: Li et al., Front. Neurosci. 2021; 500 states in the "
                  "polymer ENODe, van de Burgt et al., Nat. Mater. 2017",
        "i_max": "read currents < 10 nA, Fuller et al., Science 2019",
        "on_off_ratio": "assumed (not stated by the sources)",
        "sigma_prog": "cycle-to-cycle noise < 0.5% of range, Li et al., Front. Neurosci. 2021",
        "sigma_read": "extra read noise beyond thermal; none cited (default 0)",
        "temperature": "room temperature, for Johnson-Nyquist noise (Johnson 1928; Nyquist 1928)",
        "read_voltage": "assumed typical read bias",
        "read_time": "1 us: >1 MHz write-read frequency, Fuller et al., Science 2019",
        "energy_per_mac": "derived: read_voltage x i_max x read_time (array only)",
        "update_step": "1/500 of the range per pulse, linear and symmetric: hundreds of linear states, Li et al., "
                       "Front. Neurosci. 2021; 500 states, van de Burgt et al., Nat. Mater. 2017",
        "update_sigma": "cycle-to-cycle noise < 0.5%, Li et al., Front. Neurosci. 2021 (the bound, used as the value)",
        "pulse_step_d2d": "not stated by the sources (0)",
        "max_pulses": "not stated by the sources (None)",
        "pulse_energy": "~1 fJ switching energy projected for 100x100 nm^2 ECRAM, Tang et al., IEEE IEDM 2018 "
                        "(Fuller et al., Adv. Mater. 2017: < 10 aJ projected at 200x200 nm^2)",
    }
    param_units: ClassVar[dict[str, str]] = {
        "i_max": "nA", "sigma_prog": "fraction of Imax - Imin", "sigma_read": "fraction of Imax - Imin",
        "temperature": "K", "read_voltage": "V", "read_time": "s",
        "update_step": "fraction of Imax - Imin per pulse", "update_sigma": "fraction of Imax - Imin per pulse",
        "pulse_step_d2d": "fraction of the step", "max_pulses": "pulses per update", "pulse_energy": "J",
    }
    late_params = ("update_step", "update_sigma", "pulse_step_d2d", "max_pulses", "pulse_energy")

    def __init__(self, levels: int | None = 500, i_max: float = 10.0, on_off_ratio: float = 10.0,
                 sigma_prog: float = 0.005, sigma_read: float = 0.0, temperature: float = 300.0,
                 read_voltage: float = 0.1, read_time: float = 1e-6, update_step: float = 0.002,
                 update_sigma: float = 0.005, pulse_step_d2d: float = 0.0, max_pulses: int | None = None,
                 pulse_energy: float | None = 1e-15):
        owner = f"device '{self.name}'"
        self.i_max = check_positive(owner, "i_max", i_max)
        ratio = check_positive(owner, "on_off_ratio", on_off_ratio)
        if ratio <= 1:
            raise ConfigError(f"{owner}: on_off_ratio must be > 1, got {on_off_ratio}")
        self._ratio = ratio
        self.sigma_prog = self._sigma("sigma_prog", sigma_prog)
        self.sigma_read = self._sigma("sigma_read", sigma_read)
        self.temperature = check_positive(owner, "temperature", temperature)
        self._set_range(self.i_max / ratio, self.i_max, levels)
        self._set_energy(read_voltage, read_time)
        self._set_update(ConstantStep(update_step, sigma=update_sigma, owner=owner,
                                      names={"step": "update_step", "sigma": "update_sigma"}), pulse_step_d2d,
                         max_pulses, pulse_energy)
        self.update_step, self.update_sigma = self.update_model.step_size, self.update_model.sigma_abs

    @property
    def on_off_ratio(self) -> float:  # a parameter here, not derived from the range
        return self._ratio

    @property
    def energy_per_mac(self) -> float:
        return self.read_voltage * self.i_max * 1e-9 * self.read_time

    def programming_sigma(self, g, t=0.0):
        return np.full_like(np.asarray(g, dtype=np.float32), self.sigma_prog * self.g_range)

    def read_sigma(self, g):
        i_amp = np.maximum(np.asarray(g, dtype=np.float32), np.float32(0)) * np.float32(1e-9)
        thermal = np.sqrt(np.float32(2 * K_BOLTZMANN * self.temperature / (self.read_voltage * self.read_time))
                          * i_amp) * np.float32(1e9)
        if not self.sigma_read:
            return thermal
        return np.sqrt(np.square(thermal) + np.float32(self.sigma_read * self.g_range) ** 2)


@hookimpl
def nvmkit_devices():
    return [ECRAM]
