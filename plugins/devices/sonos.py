"""40 nm SONOS charge-trap memory with measured programming error, read noise and drift."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import ConfigError, Device, check_flag, check_positive, hookimpl

DAY = 86400.0  # s

# Fits to 128k measured 40 nm SONOS cells, Agrawal et al., IEDM 2022, as published with CrossSim 3
# (sandialabs/cross-sim, SONOS device model). Currents in nA.
# Programming spread sigma_I = A (1 - exp(-I / B)) at t days after programming (Fig. 10(a)):
FIT_DAYS = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
FIT_A = np.array([19.88665, 25.59102, 28.72753, 31.04318, 33.76214, 34.57909])
FIT_B = np.array([176.3115, 186.85544, 193.56834, 198.90332, 204.77023, 207.34309])
# Mean drift I(t) - I(0) = sum_k c_k I^k, degree-10 polynomial per day (Fig. 10(b)); none at t = 0
DRIFT_POLY = np.array([
    [0.0] * 11,
    [6.83650e-01, 6.51250e-03, -4.03163e-04, 3.37944e-06, -1.87435e-08, 5.88902e-11,
     -1.07685e-13, 1.17751e-16, -7.60016e-20, 2.67255e-23, -3.94954e-27],
    [6.60925e-01, 8.60627e-03, -1.72936e-04, 7.44096e-07, -5.94866e-09, 2.36734e-11,
     -4.83740e-14, 5.56072e-17, -3.65397e-20, 1.28405e-23, -1.87450e-27],
    [1.15821e00, 1.96116e-02, -4.70807e-04, 3.67510e-06, -2.08786e-08, 6.59752e-11,
     -1.19499e-13, 1.28435e-16, -8.11574e-20, 2.78802e-23, -4.02057e-27],
    [8.72216e-01, 1.70926e-02, -2.23370e-04, 1.57526e-06, -1.32779e-08, 5.08256e-11,
     -1.01251e-13, 1.14633e-16, -7.46124e-20, 2.60559e-23, -3.78724e-27],
    [1.15294e00, 1.03149e-02, -6.05199e-05, 1.76086e-08, -6.46690e-09, 3.39044e-11,
     -7.53872e-14, 8.98185e-17, -6.00346e-20, 2.12615e-23, -3.11099e-27],
])
# The degree-10 drift polynomials bend away above about 1450 nA (day 1: -45 nA at 1450 nA,
# -246 nA at 1600 nA; nothing in the fitted data falls that steeply), so they are evaluated at
# min(I, DRIFT_FIT_MAX): above it a cell's mean shift is that of a 1450 nA cell.
DRIFT_FIT_MAX = 1450.0  # nA
# Read noise sigma_I = A (1 - exp(-I / B)), time independent (Fig. 11(b)):
READ_A, READ_B = 12.58037, 215.36557


class SONOS(Device):
    """40 nm SONOS after Agrawal et al., IEDM 2022: read current up to 1600 nA, on/off 1e7.

    V. Agrawal et al., "Subthreshold operation of SONOS analog memory to enable accurate low-power
    neural network inference", IEEE IEDM 2022, and T. P. Xiao et al., "An accurate, error-tolerant,
    and energy-efficient neural network inference engine based on SONOS analog memory", IEEE
    TCAS-I 2022. A cell is described by its read current at the read voltage (nA), as the fits are
    stated. From 128k measured cells:

    - programming error sigma_I = A (1 - exp(-I/B)), A = 19.887 nA and B = 176.31 nA right after
      programming, widening with time (25.59/186.86 at 1 day, 34.58/207.34 at 5 days; the fits at
      each whole day are interpolated linearly in time);
    - read noise sigma_I = 12.580 (1 - exp(-I/215.37)) nA, drawn on every read;
    - drift: the mean current moves by a measured, state-dependent amount (a degree-10
      polynomial in I per day, interpolated linearly in time; the mean of mid and high currents
      falls by tens of nA within days). Above 1450 nA the degree-10 polynomials diverge (at
      1600 nA the day-1 fit gives -246 nA against -45 nA at 1450 nA), so the shift is clamped
      there: a cell above 1450 nA moves as a 1450 nA cell does.

    The fits cover 0 to 5 days; a longer ``drift_time`` is refused unless
    ``extrapolate_drift`` is set (then they are extended linearly from the 4-5 day trend).

    Update model (on-chip learning): none. The sources characterise closed-loop tuning to an analog
    target current (program and verify), not the conductance step of one program or erase pulse
    as a function of the state, and we found no source giving SONOS program/erase pulse steps to
    take numbers from; so this device states no ``pulse_step``, works for inference (and for
    on-chip fine-tuning of drift only once such a model is given) and is refused for on-chip
    learning in one line.

    Energy: 100 TOPS/W for a 40 nm SONOS in-memory-computing array (Agrawal et al., IMW 2020),
    i.e. 20 fJ per multiply-accumulate (one MAC = 2 operations).
    """

    name = "sonos"
    units = "nA"
    #: the spread fits are of cells measured each day around that day's mean (Fig. 10)
    spread_measured_after_drift = True
    citations: ClassVar[dict[str, str]] = {
        "levels": "None = continuous (closed-loop tuning to an analog target current)",
        "i_max": "1600 nA, Agrawal et al., IEDM 2022 / Xiao et al., TCAS-I 2022",
        "on_off_ratio": "1e7, Agrawal et al., IEDM 2022 (subthreshold operation)",
        "extrapolate_drift": "fits measured over 0-5 days (Agrawal et al., IEDM 2022, Fig. 10)",
        "read_voltage": "assumed typical read bias",
        "read_time": "assumed typical read pulse",
        "energy_per_mac": "20 fJ/MAC from 100 TOPS/W, Agrawal et al., IMW 2020",
        "pulse_step": "no update model: no source found giving SONOS program/erase pulse steps (refused for on-chip learning)",
        "programming_sigma": "A (1 - exp(-I/B)); A, B at 0-5 days, Agrawal et al., IEDM 2022, Fig. 10(a)",
        "read_sigma": "12.580 (1 - exp(-I/215.37)) nA, Agrawal et al., IEDM 2022, Fig. 11(b)",
        "drift": "degree-10 polynomial mean shift per day, Agrawal et al., IEDM 2022, Fig. 10(b); "
                 "clamped: above 1450 nA, where the polynomials diverge, the shift of a 1450 nA cell",
    }
    param_units: ClassVar[dict[str, str]] = {
        "i_max": "nA", "read_voltage": "V", "read_time": "s", "energy_per_mac": "J",
    }

    def __init__(self, levels: int | None = None, i_max: float = 1600.0, on_off_ratio: float = 1e7,
                 extrapolate_drift: bool = False, read_voltage: float = 0.1,
                 read_time: float = 10e-9, energy_per_mac: float | None = 20e-15):
        owner = f"device '{self.name}'"
        self.i_max = check_positive(owner, "i_max", i_max)
        ratio = check_positive(owner, "on_off_ratio", on_off_ratio)
        if ratio <= 1:
            raise ConfigError(f"{owner}: on_off_ratio must be > 1, got {on_off_ratio}")
        self.extrapolate_drift = check_flag(owner, "extrapolate_drift", extrapolate_drift)
        self._set_range(self.i_max / ratio, self.i_max, levels)
        self._ratio = ratio
        self._set_energy(read_voltage, read_time, energy_per_mac)

    @property
    def on_off_ratio(self) -> float:  # a parameter here, not derived from the range
        return self._ratio

    def _days(self, t: float) -> float:
        days = float(t) / DAY
        if days > FIT_DAYS[-1] and not self.extrapolate_drift:
            raise ConfigError(
                f"device 'sonos': its drift fits cover 0-5 days, got drift_time = {days:.3g} days; "
                "use drift_time <= 432000 s or set extrapolate_drift=true"
            )
        return days

    @staticmethod
    def _at(days: float, table: np.ndarray) -> np.ndarray:
        """Linear interpolation in time of a per-day table (rows = FIT_DAYS)."""
        if days <= FIT_DAYS[-1]:
            i = min(int(np.searchsorted(FIT_DAYS, days, side="right")) - 1, len(FIT_DAYS) - 2)
        else:
            i = len(FIT_DAYS) - 2  # extend the last segment's trend
        f = (days - FIT_DAYS[i]) / (FIT_DAYS[i + 1] - FIT_DAYS[i])
        return table[i] + f * (table[i + 1] - table[i])

    def programming_sigma(self, g, t=0.0):
        days = self._days(t)
        a, b = float(self._at(days, FIT_A)), float(self._at(days, FIT_B))
        i = np.maximum(np.asarray(g, dtype=np.float32), np.float32(0))
        return np.float32(a) * -np.expm1(-i / np.float32(b))

    def read_sigma(self, g):
        i = np.maximum(np.asarray(g, dtype=np.float32), np.float32(0))
        return np.float32(READ_A) * -np.expm1(-i / np.float32(READ_B))

    def drift(self, g, t):
        days = self._days(t)
        if days <= 0:
            return g
        coeffs = self._at(days, DRIFT_POLY)
        # float64: the degree-10 terms cancel to ~1e-5 relative at 1600 nA
        at = np.minimum(np.asarray(g, dtype=np.float64), DRIFT_FIT_MAX)
        shift = np.polynomial.polynomial.polyval(at, coeffs)
        return (g + shift).astype(np.float32)


@hookimpl
def nvmkit_devices():
    return [SONOS]
