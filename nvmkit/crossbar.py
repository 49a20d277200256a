"""The crossbar engine: one weight matrix mapped onto tiles of a device, programmed and read.

Hot-path notes (why it is fast):
- Monte Carlo trials are a leading axis ``K`` of every conductance array, so one batched matmul
  serves all trials.
- Gaussian read noise that is independent per cell is sampled exactly in output space: the column
  current ``sum_i x_i (G_ij + n_ij)``, ``n_ij ~ N(0, s_ij^2)``, equals
  ``sum_i x_i G_ij + N(0, sum_i x_i^2 s_ij^2)``: one extra matmul and one draw per output instead
  of a draw per cell and input, and never a batch x rows x cols tensor.
- Everything stays float32.
"""

from __future__ import annotations

import numpy as np

from .crossbar_config import CrossbarConfig
from .device import Device
from .errors import ConfigError
from .footprint import TileShape

F32 = np.float32


class Crossbar:
    """A weight matrix ``W`` (n_in x n_out, used as ``x @ W + b``) mapped onto one device.

    Holds the *target* conductances; :meth:`program` draws the programmed state of K trials.
    """

    def __init__(self, weights, bias, device: Device, config: CrossbarConfig | None = None,
                 name: str = "crossbar"):
        self.name = name
        self.device = device
        self.config = config or CrossbarConfig()
        w = np.asarray(weights, dtype=F32)
        if w.ndim != 2:
            raise ConfigError(f"{name}: weights must be a matrix (n_in x n_out), got shape {w.shape}")
        b = None if bias is None else np.asarray(bias, dtype=F32).reshape(-1)
        if b is not None and b.shape[0] != w.shape[1]:
            raise ConfigError(f"{name}: bias has {b.shape[0]} entries for {w.shape[1]} columns")
        for label, arr in (("weights", w), ("bias", b)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise ConfigError(f"{name}: {label} contain NaN or inf; retrain or fix the model")
        self.n_in, self.n_out = w.shape
        m = self.config.mapping
        self.bias_row = b is not None and m.bias == "row"
        self.digital_bias = b if (b is not None and m.bias == "digital") else None
        full = np.vstack([w, b[None, :]]) if self.bias_row else w
        self.rows = full.shape[0]

        mags = np.abs(full)
        w_scale = float(np.percentile(mags, m.clip_percentile)) if m.clip_percentile < 100 else float(mags.max())
        self.w_scale = w_scale if w_scale > 0 else 1.0
        full = np.clip(full, -self.w_scale, self.w_scale)

        d = device
        g_min, g_rng = F32(d.g_min), F32(d.g_range)
        if m.scheme == "differential":
            # zero weight -> both cells at Gmin; |W| = Wmax -> one cell at Gmax
            targets = [g_min + np.maximum(full, 0) / self.w_scale * g_rng,
                       g_min + np.maximum(-full, 0) / self.w_scale * g_rng]
            self.current_to_weight = self.w_scale / float(g_rng)
            self.g_offset = 0.0
        else:
            targets = [g_min + (full / self.w_scale + 1) * F32(0.5) * g_rng]
            self.current_to_weight = 2 * self.w_scale / float(g_rng)
            self.g_offset = float(g_min + 0.5 * g_rng)  # subtracted via an ideal reference column
        if self.config.nonideal.quantize and d.levels:
            step = g_rng / F32(d.levels - 1)
            targets = [g_min + np.round((g - g_min) / step) * step for g in targets]
        self.targets = [t.astype(F32) for t in targets]
        self.row_blocks = [(r, min(r + m.tile_rows, self.rows)) for r in range(0, self.rows, m.tile_rows)]
        self.dac_range: float | None = self.config.converters.dac_range
        self.adc_range: float | None = self.config.converters.adc_range
        self.dac_signed = False

    # -- geometry ---------------------------------------------------------------------------
    @property
    def weight_range(self) -> float:
        """Wmax - Wmin of the mapped (representable) weights."""
        return 2.0 * self.w_scale

    @property
    def devices_per_weight(self) -> int:
        return len(self.targets)

    @property
    def tiles(self) -> tuple[TileShape, ...]:
        tc = self.config.mapping.tile_cols
        return tuple(
            TileShape(r1 - r0, min(c + tc, self.n_out) - c)
            for r0, r1 in self.row_blocks
            for c in range(0, self.n_out, tc)
        )

    def target_weights(self) -> np.ndarray:
        """The weights the target conductances represent (rows incl. bias row), in weight units."""
        return self._to_weight(self.targets)

    def _to_weight(self, gs) -> np.ndarray:
        g = gs[0] - gs[1] if len(gs) == 2 else gs[0] - F32(self.g_offset)
        return g * F32(self.current_to_weight)

    # -- programming ------------------------------------------------------------------------
    def program(self, rng: np.random.Generator, trials: int = 1) -> "ProgrammedCrossbar":
        """Draw the programmed conductances of ``trials`` independent programmings."""
        ni, d = self.config.nonideal, self.device
        t = ni.drift_time
        states = []
        for target in self.targets:
            g = np.broadcast_to(target, (trials, *target.shape))
            if ni.programming_error:
                sigma = np.asarray(d.programming_sigma(target, t), dtype=F32)
                if np.any(sigma < 0):
                    raise ConfigError(f"device '{d.name}' returned a negative programming sigma")
                if np.any(sigma):
                    g = g + sigma * rng.standard_normal(g.shape, dtype=F32)
            if t > 0:
                g = np.asarray(d.drift(g, t), dtype=F32)
            if ni.stuck_at_gmin or ni.stuck_at_gmax:
                u = rng.random(g.shape, dtype=F32)
                g = np.where(u < ni.stuck_at_gmin, F32(d.g_min), g)
                g = np.where(u > 1 - ni.stuck_at_gmax, F32(d.g_max), g)
            if ni.clip_conductance:
                g = np.clip(g, F32(d.g_min), F32(d.g_max))
            states.append(np.ascontiguousarray(g, dtype=F32))
        return ProgrammedCrossbar(self, states)

    def calibrate(self, x: np.ndarray) -> None:
        """Set uncalibrated converter ranges from representative inputs ``x`` (..., n_in)."""
        x = np.asarray(x, dtype=F32)
        if self.dac_range is None:
            self.dac_range = float(np.abs(x).max()) or 1.0
        self.dac_signed = bool(x.min() < 0)
        if self.adc_range is None:
            ideal = ProgrammedCrossbar(self, [t[None] for t in self.targets])
            peaks = [float(np.abs(ideal._block_current(x.reshape(1, -1, self.n_in), r0, r1)).max())
                     for r0, r1 in self.row_blocks]
            self.adc_range = max(peaks) or 1.0


class ProgrammedCrossbar:
    """The programmed state of K trials; :meth:`read` is one analog VMM per input row."""

    def __init__(self, crossbar: Crossbar, states: list[np.ndarray]):
        self.xbar = crossbar
        self.states = states  # each (K, rows, cols)
        self.trials = states[0].shape[0]
        d, ni = crossbar.device, crossbar.config.nonideal
        self.g = states[0] - states[1] if len(states) == 2 else states[0]
        self.read_var = None
        if ni.read_noise:
            var = sum(np.square(np.asarray(d.read_sigma(s), dtype=F32)) for s in states)
            if np.any(var):
                self.read_var = var.astype(F32)

    def weights(self) -> np.ndarray:
        """Programmed weights (K, rows, n_out) in weight units (bias row last when analog)."""
        return self.xbar._to_weight(self.states)

    def _block_current(self, x, r0, r1, rng=None):
        """Column currents of row block [r0, r1) for inputs x (K|1, B, n_in)."""
        xb = self.xbar
        hi = min(r1, xb.n_in)
        xs = x[..., r0:hi]
        y = np.matmul(xs, self.g[:, r0:hi])
        has_bias = xb.bias_row and r1 > xb.n_in
        if has_bias:  # the bias row is driven at full scale (input 1)
            y += self.g[:, xb.n_in][:, None, :]
        if xb.g_offset:
            y -= F32(xb.g_offset) * (xs.sum(axis=-1, keepdims=True) + (1 if has_bias else 0))
        if rng is not None and self.read_var is not None:
            var = np.matmul(np.square(xs), self.read_var[:, r0:hi])
            if has_bias:
                var += self.read_var[:, xb.n_in][:, None, :]
            y += np.sqrt(var) * rng.standard_normal(var.shape, dtype=F32)
        return y

    def read(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One read of every tile: ``x`` (K or 1, B, n_in) -> (K, B, n_out) in weight units.

        Read noise is fresh on every call; programming error is the state's, shared by all reads.
        """
        xb = self.xbar
        x = np.asarray(x, dtype=F32)
        if x.ndim == 2:
            x = x[None]
        conv = xb.config.converters
        if conv.dac_bits is not None:
            x = _quantize(x, xb.dac_range, conv.dac_bits, xb.dac_signed, xb.name, "DAC")
        out = None
        for r0, r1 in xb.row_blocks:
            y = self._block_current(x, r0, r1, rng)
            if conv.adc_bits is not None:
                y = _quantize(y, xb.adc_range, conv.adc_bits, True, xb.name, "ADC")
            out = y if out is None else out + y
        out *= F32(xb.current_to_weight)
        if xb.digital_bias is not None:
            out += xb.digital_bias
        return out


def _quantize(v, full_scale, bits, signed, name, what):
    if full_scale is None:
        raise ConfigError(
            f"{name}: the {what} range is not calibrated; call AnalogNetwork.calibrate(x) or set "
            f"converters.{what.lower()}_range"
        )
    lo = -full_scale if signed else 0.0
    step = F32((full_scale - lo) / (2**bits - 1))
    return (np.round((np.clip(v, lo, full_scale) - F32(lo)) / step) * step + F32(lo)).astype(F32)
