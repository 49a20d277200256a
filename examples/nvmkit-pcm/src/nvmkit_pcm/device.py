"""Phase-change memory (PCM): program-and-verify error, 1/f read noise and power-law drift.

The statistical model of doped-Ge2Sb2Te5 mushroom cells measured on a one-million-device array:
S. R. Nandakumar et al., "Phase-change memory models for deep learning training and inference",
IEEE ICECS 2019, pp. 727-730; used for network inference by V. Joshi et al., "Accurate deep neural
network inference using computational phase-change memory", Nat. Commun. 11, 2473 (2020). The fits
are stated in uS for G_max = 25 uS, on the normalised target g_T = G / G_max:

- programming error: sigma_prog = max(-1.1731 g_T^2 + 1.9650 g_T + 0.2635, 0) uS;
- drift: G(t) = G(t0) (t / t0)^(-nu), nu normal from cell to cell with
  mu_nu = clip(-0.0155 ln g_T + 0.0244, 0.049, 0.1) and sigma_nu = clip(-0.0125 ln g_T - 0.0059, 0.008, 0.045);
- read noise: 1/f noise, S_G / G^2 = Q / f, whose std over a band [f_lo, f_hi] is
  G Q_s sqrt(ln(f_hi / f_lo)), with Q_s = min(0.0088 / g_T^0.65, 0.2) and a read pulse of 250 ns
  (f_hi = 1 / (2 t_read)).

nvmkit programs a cell (target + programming_sigma * N(0, 1)), then drifts it, then reads it with
fresh read_sigma noise at every read. The model maps onto those three steps as follows:

- ``drift(g, t)`` is the mean over the nu spread: for nu ~ N(mu, s^2) and L = ln(t / t0),
  E[(t / t0)^-nu] = exp(-mu L + s^2 L^2 / 2) (a log-normal mean).
- ``programming_sigma(g, t)`` is everything frozen during one inference, in pre-drift units: the
  programming error, the spread of nu (relative std sqrt(exp(s^2 L^2) - 1) of the log-normal), and
  the 1/f noise slower than one inference (band 1/(t + t_read) .. 1/(read_window + t_read)).
- ``read_sigma(g)`` is the 1/f noise faster than one inference (band 1/(read_window + t_read) ..
  1/(2 t_read)), drawn afresh at every read.
"""

from __future__ import annotations

import numpy as np

from nvmkit import Device, check_nonnegative, check_positive, hookimpl

F32 = np.float32
G_REF = 25.0  # uS: the G_max the fits are stated for
PROG_COEFFS = (0.2635, 1.9650, -1.1731)  # sigma_prog = c0 + c1 g_T + c2 g_T^2 (uS at G_max = 25 uS)
NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)  # slope on ln g_T, intercept, clip low, clip high
NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
Q_S = (0.0088, 0.65, 0.2)  # Q_s = min(a / g_T^b, cap)
G_T_FLOOR = 1e-6  # keeps ln g_T finite at G = 0; every fit saturates at its clip long before


class PCM(Device):
    """Phase-change memory after Nandakumar et al. 2019 / Joshi et al. 2020: 0-25 uS, drift, 1/f noise.

    Parameters: ``levels`` (None = continuous), ``g_min``/``g_max`` (uS), ``t0`` (s, the time of
    the first read after programming, from which drift is counted), ``read_window`` (s, how long
    one inference lasts: 1/f noise slower than this is frozen during it), the scale factors
    ``prog_noise_scale``, ``read_noise_scale`` and ``drift_scale`` (1 = as measured; 0 switches an
    effect off), and the energy parameters ``read_voltage`` (V), ``read_time`` (s) and
    ``energy_per_mac`` (J). Changing ``g_max`` scales every absolute spread with it.
    """

    name = "pcm"
    units = "uS"
    citations = {
        "levels": "None = continuous: program-and-verify targets any conductance (Joshi et al. 2020)",
        "g_min": "0 uS: a RESET (amorphous) cell, the 'off' device of a differential pair (Joshi et al. 2020)",
        "g_max": "25 uS, Nandakumar et al., IEEE ICECS 2019; Joshi et al., Nat. Commun. 11, 2473 (2020)",
        "t0": "20 s, reference read time after programming, as in the IBM PCM model (aihwkit PCMLikeNoiseModel t_0)",
        "read_window": "1 us: assumed duration of one inference through a few crossbar layers",
        "prog_noise_scale": "1 = sigma_prog = max(-1.1731 g_T^2 + 1.9650 g_T + 0.2635, 0) uS, Nandakumar et al. 2019",
        "read_noise_scale": "1 = Q_s = min(0.0088 / g_T^0.65, 0.2), Nandakumar et al. 2019",
        "drift_scale": "1 = mu_nu = clip(-0.0155 ln g_T + 0.0244, 0.049, 0.1), "
                       "sigma_nu = clip(-0.0125 ln g_T - 0.0059, 0.008, 0.045), Nandakumar et al. 2019",
        "read_voltage": "0.2 V: assumed; PCM is read well below its threshold-switching voltage "
                        "(Le Gallo & Sebastian, J. Phys. D 53, 213002, 2020)",
        "read_time": "250 ns read pulse, Nandakumar et al. 2019 (t_read of the 1/f noise integral)",
        "energy_per_mac": "190 fJ, a whole-core figure (array, drivers, ADCs): 10.5 TOPS/W at 2 ops per MAC "
                          "measured on the HERMES PCM core, Khaddam-Aljameh et al., IEEE JSSC 57(4), 2022",
    }
    param_units = {
        "g_min": "uS", "g_max": "uS", "t0": "s", "read_window": "s", "read_voltage": "V",
        "read_time": "s", "energy_per_mac": "J",
    }

    def __init__(self, levels=None, g_min=0.0, g_max=G_REF, t0=20.0, read_window=1e-6,
                 prog_noise_scale=1.0, read_noise_scale=1.0, drift_scale=1.0,
                 read_voltage=0.2, read_time=250e-9, energy_per_mac=1.9e-13):
        owner = f"device '{self.name}'"
        self._set_range(g_min, g_max, levels)
        self.t0 = check_positive(owner, "t0", t0)
        self.read_window = check_positive(owner, "read_window", read_window)
        self.prog_noise_scale = check_nonnegative(owner, "prog_noise_scale", prog_noise_scale)
        self.read_noise_scale = check_nonnegative(owner, "read_noise_scale", read_noise_scale)
        self.drift_scale = check_nonnegative(owner, "drift_scale", drift_scale)
        self._set_energy(read_voltage, read_time, energy_per_mac)

    # -- the fits, on the normalised target g_T -------------------------------------------------
    def _g_t(self, g) -> np.ndarray:
        return np.maximum(np.abs(np.asarray(g, dtype=F32)) / F32(self.g_max), F32(G_T_FLOOR))

    def sigma_prog(self, g) -> np.ndarray:
        """Std of program-and-verify error (uS), scaled with g_max from the 25 uS fit."""
        x = self._g_t(g)
        c0, c1, c2 = (F32(c) for c in PROG_COEFFS)
        s = np.maximum(c0 + x * (c1 + x * c2), F32(0))
        return s * F32(self.prog_noise_scale * self.g_max / G_REF)

    def nu(self, g) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the drift exponent at conductance ``g``."""
        ln = np.log(self._g_t(g))
        (am, bm, lo_m, hi_m), (as_, bs, lo_s, hi_s) = NU_MEAN, NU_STD
        mu = np.clip(F32(am) * ln + F32(bm), F32(lo_m), F32(hi_m))
        sd = np.clip(F32(as_) * ln + F32(bs), F32(lo_s), F32(hi_s))
        k = F32(self.drift_scale)
        return mu * k, sd * k

    def q_s(self, g) -> np.ndarray:
        a, b, cap = Q_S
        return np.minimum(F32(a) / self._g_t(g) ** F32(b), F32(cap))

    def _log_t(self, t: float) -> float:
        return float(np.log(max(float(t), self.t0) / self.t0))

    def _band(self, slow_period: float, fast_period: float) -> float:
        """ln of the 1/f band between two periods (s), 0 if empty: the variance per (Q_s G)^2."""
        return max(float(np.log((slow_period + self.read_time) / (fast_period + self.read_time))), 0.0)

    # -- the Device interface -------------------------------------------------------------------
    def programming_sigma(self, g, t=0.0):
        g = np.asarray(g, dtype=F32)
        mag = np.abs(g)
        var = np.square(self.sigma_prog(g))
        L = self._log_t(t)
        if L > 0:
            _, sd = self.nu(g)
            var += np.square(mag) * np.expm1(np.square(sd * F32(L)))
        slow = self._band(float(t), self.read_window)
        if slow > 0:
            var += np.square(mag * self.q_s(g) * F32(self.read_noise_scale)) * F32(slow)
        return np.sqrt(var).astype(F32, copy=False)

    def read_sigma(self, g):
        g = np.asarray(g, dtype=F32)
        fast = self._band(self.read_window, self.read_time)  # f_hi = 1 / (2 t_read)
        return (np.abs(g) * self.q_s(g) * F32(self.read_noise_scale * np.sqrt(fast))).astype(F32, copy=False)

    def drift(self, g, t):
        g = np.asarray(g, dtype=F32)
        L = self._log_t(t)
        if L == 0 or self.drift_scale == 0:
            return g
        mu, sd = self.nu(g)
        return g * np.exp(-mu * F32(L) + F32(0.5) * np.square(sd * F32(L)))


@hookimpl
def nvmkit_devices():
    return [PCM]
