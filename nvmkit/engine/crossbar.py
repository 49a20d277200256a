"""The crossbar's mapping and programming: one weight matrix on tiles of a device.

A :class:`Crossbar` maps ``W`` (and its bias) to target conductances (differential or offset
scheme, levels, clipping) and :meth:`Crossbar.program` draws the programmed state of ``K`` Monte
Carlo trials (programming error, drift, stuck cells) by calling the device model's numpy
functions (docs/plugins.md), once per trial. The programmed state (:class:`ProgrammedCrossbar`:
weights in weight units and the per-weight read variance) is what the analog Keras layers of
:mod:`nvmkit.engine.layers` keep; the read itself (read noise, converters) is Keras ops, in
:mod:`nvmkit.engine.ops`: there is one engine.

Gaussian draws of the programming come from :func:`standard_normal`, a chunked float32
Box-Muller transform over the generator's raw bits (two seeded streams on two threads for large
draws), 3-5x faster than ``Generator.standard_normal``.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from nvmkit.core.component import check_int
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError, NvmkitError
from nvmkit.core.footprint import TileShape

F32 = np.float32

_ONE_BITS = np.uint32(0x3F800000)  # float32 1.0: OR-ed with 23 random mantissa bits -> [1, 2)
_TWO_PI = F32(2.0 * np.pi)
_CHUNK = 1 << 15  # pairs per Box-Muller step: the temporaries stay in cache
_STREAMS = 2  # large draws are split into this many independent streams ...
_SPLIT_AT = 1 << 18  # ... from this many samples on
_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (owning pid, pool)


def standard_normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal float32 samples of ``shape``, drawn from ``rng``'s bit stream.

    Box-Muller (1958) on uniforms with 23-bit resolution: exact in distribution except that
    |z| is capped near 5.6 (probability 2e-8 of a normal sample lying beyond). A large draw is
    split into ``_STREAMS`` halves, each from its own generator seeded from ``rng``, and filled
    on two threads when the machine has two cores (numpy releases the GIL): the result depends
    only on ``rng``'s state and ``shape``, never on the thread count.
    """
    shape = tuple(int(s) for s in shape) if np.iterable(shape) else (int(shape),)
    n = math.prod(shape)
    out = np.empty(n + (n & 1), dtype=F32)
    if n < _SPLIT_AT:
        _box_muller(rng.bit_generator, out)
        return out[:n].reshape(shape)
    seeds = rng.bit_generator.random_raw(_STREAMS)
    half = (out.size // _STREAMS) & ~1
    parts = [out[:half], out[half:]]
    gens = [np.random.PCG64(int(seed)) for seed in seeds]
    if (os.cpu_count() or 1) > 1:
        pool = _pool()
        for f in [pool.submit(_box_muller, g, p) for g, p in zip(gens, parts)]:
            f.result()
    else:
        for g, p in zip(gens, parts):
            _box_muller(g, p)
    return out[:n].reshape(shape)


def _pool() -> ThreadPoolExecutor:
    """The process's sampling threads (a forked child, e.g. a dask worker, gets its own)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=_STREAMS, thread_name_prefix="nvmkit-normal"))
    return _POOL[1]


def _box_muller(bits, out: np.ndarray) -> None:
    """Fill ``out`` (float32, even length) with standard normals from bit generator ``bits``."""
    m = out.size // 2
    lo, hi = out[:m], out[m:]
    for s in range(0, m, _CHUNK):
        e = min(s + _CHUNK, m)
        k = e - s
        w = bits.random_raw(k).view(np.uint32)  # 2k independent 32-bit words
        w >>= np.uint32(9)
        w |= _ONE_BITS
        u = w.view(F32)
        r, theta = u[:k], u[k:]
        np.subtract(F32(2.0), r, out=r)  # (0, 1]: log is finite
        np.log(r, out=r)
        r *= F32(-2.0)
        np.sqrt(r, out=r)
        theta -= F32(1.0)
        theta *= _TWO_PI
        np.cos(theta, out=lo[s:e])
        lo[s:e] *= r
        np.sin(theta, out=hi[s:e])
        hi[s:e] *= r


class Crossbar:
    """A weight matrix ``W`` (n_in x n_out, used as ``x @ W + b``) mapped onto one device.

    Holds the *target* conductances (one array per cell of a weight: G+ and G- for the
    differential scheme, G for the offset scheme); :meth:`program` draws the programmed state of
    K Monte Carlo trials.
    """

    def __init__(self, weights, bias, device: Device, config: CrossbarConfig | None = None,
                 name: str = "crossbar", w_scale: float | None = None):
        self.name = name
        if not isinstance(device, Device):
            raise ConfigError(f"{name}: device must be a nvmkit Device, got {type(device).__name__}; "
                              "create one with get_registry().create('device', NAME)")
        self.device = device
        self.config = config or CrossbarConfig()
        # the sections validate on construction; re-check here because a caller may have set a
        # field afterwards (config.converters.adc_bits = 256 would otherwise reach the engine)
        for section in (self.config.mapping, self.config.nonideal, self.config.converters,
                        self.config.chip):
            section.validate()
        w = np.asarray(weights, dtype=F32)
        if w.ndim != 2 or 0 in w.shape:
            raise ConfigError(f"{name}: weights must be a non-empty matrix (n_in x n_out), got shape {w.shape}")
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
        w_scale_given = w_scale
        w_scale = float(np.percentile(mags, m.clip_percentile)) if m.clip_percentile < 100 else float(mags.max())
        self.w_scale = w_scale if w_scale > 0 else 1.0
        if w_scale_given is not None:  # the weight mapped to g_max, given (in-place learning's headroom)
            self.w_scale = float(w_scale_given)
        full = np.clip(full, -self.w_scale, self.w_scale)

        d = device
        g_min, g_rng = F32(d.g_min), F32(d.g_range)
        unit = full / F32(self.w_scale)  # in [-1, 1]
        if m.scheme == "differential":
            # zero weight -> both cells at Gmin; |W| = Wmax -> one cell at Gmax
            targets = [g_min + np.maximum(unit, 0) * g_rng, g_min + np.maximum(-unit, 0) * g_rng]
            self.current_to_weight = self.w_scale / float(g_rng)
            self.g_offset = 0.0
        else:
            targets = [g_min + (unit + 1) * F32(0.5) * g_rng]
            self.current_to_weight = 2 * self.w_scale / float(g_rng)
            self.g_offset = float(d.g_min + 0.5 * d.g_range)  # subtracted via an ideal reference column
        if self.config.nonideal.quantize and d.levels:
            step = g_rng / F32(d.levels - 1)
            targets = [g_min + np.round((g - g_min) / step) * step for g in targets]
        self.targets = [np.ascontiguousarray(t, dtype=F32) for t in targets]
        # A per-weight spread (abstract synaptic noise) is split over the cells of a weight so that
        # the weight's std is exactly sigma * (Wmax - Wmin) / g_range for either scheme.
        self.sigma_scale = (
            self.weight_range / (float(g_rng) * self.current_to_weight * math.sqrt(len(targets)))
            if d.sigma_per_weight else 1.0
        )
        self.row_blocks = [(r, min(r + m.tile_rows, self.rows)) for r in range(0, self.rows, m.tile_rows)]

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
        g *= F32(self.current_to_weight)
        return g

    def _checked_sigma(self, sigma, what: str) -> np.ndarray:
        sigma = np.asarray(sigma, dtype=F32)
        if not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
            raise NvmkitError(f"device '{self.device.name}' returned a negative or non-finite {what} "
                              "sigma; fix the device model's parameters")
        return sigma * F32(self.sigma_scale) if self.sigma_scale != 1.0 else sigma

    # -- programming ------------------------------------------------------------------------
    def program(self, rng: np.random.Generator, trials: int = 1,
                chip: "Chip | None" = None) -> "ProgrammedCrossbar":
        """Draw the programmed conductances of ``trials`` independent programmings.

        ``chip``: the chip programmed (:meth:`draw_chip`; one for all trials, or one per trial):
        each cell's own range and its stuck cells. None: each trial is a new chip drawn from
        ``rng`` (stuck cells as the engine always drew them, after the drift).
        """
        trials = check_int(self.name, "trials", trials, 1)
        legacy_stuck = chip is None
        if chip is None:
            chip = Chip.stack([self.draw_chip(lambda _effect: rng, stuck=False, adc=False)
                               for _ in range(trials)]) if self.config.chip.varies else Chip()
        elif chip.chips not in (0, 1, trials):
            raise ConfigError(f"{self.name}: a chip for {chip.chips} trials cannot program {trials}; "
                              "give one chip or one per trial")
        ni, d = self.config.nonideal, self.device
        t = ni.drift_time
        g_min, g_max = F32(d.g_min), F32(d.g_max)
        # Two ways a device states its spread (issue 11, point 8; Device.spread_measured_after_drift):
        # - measured t after programming around the drifted mean (SONOS: a fit per day, Agrawal
        #   et al., IEDM 2022, Fig. 10): the mean shift drift(target, t) - target is added to the
        #   programmed state; applying the drift to the noisy current would scale the spread by
        #   the drift's slope (27.4 instead of 29.6 nA at 400 nA after 5 days).
        # - drawn at programming (default): the device's drift acts on each programmed cell.
        # The power-law drift model always acts per cell (multiplicative).
        mean_first = t > 0 and ni.drift_model == "device" and d.spread_measured_after_drift
        compensate = t > 0 and ni.drift_compensation != "none"
        floor = g_min if ni.clip_floor == "g_min" else F32(0)
        states, states_t0 = [], []
        for i, target in enumerate(self.targets):
            shape = (trials, *target.shape)
            lo, hi, target = self._cell_range(chip, i, target)  # this chip's cells (target if uniform)
            g = z = None
            if ni.programming_error:
                sigma = self._checked_sigma(d.programming_sigma(target, t), "programming")
                if np.any(sigma):
                    g = standard_normal(rng, shape)
                    if compensate and mean_first:
                        z = g.copy()  # each cell's deviate, for its state at t0 (_state_at_t0)
                    g *= sigma
                    g += target
            if g is None:
                g = np.repeat(target[None], trials, axis=0) if lo is None else \
                    np.broadcast_to(target, shape).copy()
            if ni.clip_conductance and d.bounded:
                if lo is None:
                    np.clip(g, floor, g_max, out=g)
                else:  # the cell's own range; its floor 0 or its own Gmin (clip_floor)
                    np.clip(g, F32(0) if ni.clip_floor == "zero" else lo, hi, out=g)
            if compensate:
                states_t0.append(self._state_at_t0(target, g, z, mean_first, floor))
            if mean_first:
                g += np.asarray(d.drift(target.copy(), t), dtype=F32) - target
                if d.bounded:  # a conductance (or read current) cannot change sign
                    np.maximum(g, F32(0), out=g)
            elif t > 0:
                g = self._drift(g, t, rng)
            if chip.stuck is not None:  # a stuck cell is stuck from programming on
                g = _stick(g, chip.stuck[:, i], g_min if lo is None else lo, g_max if hi is None else hi)
                if compensate:
                    states_t0[-1] = _stick(states_t0[-1], chip.stuck[:, i], g_min if lo is None else lo,
                                           g_max if hi is None else hi)
            elif legacy_stuck and (ni.stuck_at_gmin or ni.stuck_at_gmax):
                u = rng.random(shape, dtype=F32)
                for s in [g, *states_t0[-1:]]:  # a stuck cell is stuck from programming on
                    s[u < F32(ni.stuck_at_gmin)] = g_min
                    s[u >= F32(1 - ni.stuck_at_gmax)] = g_max
            states.append(g)
        scale = self.drift_compensation(states_t0, states) if compensate else None
        return ProgrammedCrossbar(self, states, drift_scale=scale)

    # -- drift compensation (NonIdealityConfig.drift_compensation) -----------------------------
    def _state_at_t0(self, target, g, z, mean_first: bool, floor) -> np.ndarray:
        """The cells as programmed, before any drift: the state the reference read at t0 sees.
        Drift acting on each cell: the programmed (clipped) state itself. A spread measured
        after drift (SONOS): the same cells' deviates ``z`` at the spread of t = 0."""
        if not mean_first:
            return g.copy()
        if z is None:
            return np.repeat(target[None], g.shape[0], axis=0)
        d, ni = self.device, self.config.nonideal
        g0 = z * self._checked_sigma(d.programming_sigma(target, 0.0), "programming") + target
        if ni.clip_conductance and d.bounded:
            np.clip(g0, floor, F32(d.g_max), out=g0)
        return g0

    def drift_compensation(self, states_t0: list[np.ndarray], states: list[np.ndarray]) -> np.ndarray:
        """Global drift compensation, per trial: ``m0 / mt`` with ``m`` the mean |output| of a
        reference read with one-hot inputs on every row (the mean |weight| of the array) as
        programmed (``states_t0``) and as read at ``drift_time`` (``states``); 1 where the
        drifted read is 0. (K,) float32."""
        m0 = np.abs(self._to_weight(states_t0)).mean(axis=(1, 2), dtype=np.float64)
        mt = np.abs(self._to_weight(states)).mean(axis=(1, 2), dtype=np.float64)
        ok = mt > 0
        return np.where(ok, m0 / np.where(ok, mt, 1), 1).astype(F32)

    def _cell_range(self, chip: "Chip", i: int, target: np.ndarray):
        """(Gmin, Gmax, target) of cell kind ``i`` on ``chip``: (None, None, target) on a uniform
        chip; else each cell's own range (C, rows, cols) and the target moved into it: a target
        at fraction f of the device's range lands at fraction f of the cell's (open-loop
        programming to a level, see :meth:`draw_chip`)."""
        if chip.g_lo is None:
            return None, None, target
        lo, hi = chip.g_lo[:, i], chip.g_hi[:, i]
        frac = (target - F32(self.device.g_min)) / F32(self.device.g_range)
        return lo, hi, lo + frac * (hi - lo)

    # -- the chip: what stays when a chip is reprogrammed --------------------------------------
    def draw_chip(self, streams: Callable[[int], np.random.Generator], *, stuck: bool = True,
                  adc: bool = True) -> "Chip":
        """One chip's fixed quantities for this crossbar; ``streams(effect)`` gives the generator of
        each effect (``CHIP_EFFECTS``), so that switching one effect on does not move the draws of
        another. Only what the configuration switches on is drawn (nothing by default).

        - **Range spread** (``chip.gmin_spread``, ``gmax_spread``): each cell's Gmin and Gmax are
          lognormal around the device's, ``G exp(sigma z)`` (median the device's value): the
          cell-to-cell distributions of the low and high resistance states of oxide ReRAM are
          close to lognormal (Ambrogio et al., "Statistical fluctuations in HfOx resistive-switching
          memory, Part I", IEEE TED 61(8), 2014: the resistance distributions after set and
          reset; cited from memory: a search of the reference corpus, issue 21, did not find it). A cell's Gmax is kept >= its Gmin. Open-loop programming is
          assumed: a level at fraction f of the device's range lands at fraction f of the cell's;
          the programming error (the device's, at the cell's target) comes on top, clipping and
          stuck cells use the cell's own bounds.
        - **Spatially correlated variation** multiplies every conductance of a region (both ends
          of a cell's range): ``tile_spread``, one lognormal factor per tile (array-to-array
          spread); ``gradient``, a linear ramp across each tile, ``1 + gradient (cos a * u +
          sin a * v)`` with ``u, v`` in [-1/2, 1/2] the cell's position across the tile's rows and
          columns and the direction ``a`` uniform per tile: the distance term of Pelgrom's
          mismatch model, a parameter that changes linearly across the die (Pelgrom, Duinmaijer and
          Welbers, "Matching properties of MOS transistors", IEEE JSSC 24(5), 1433-1439, 1989;
          checked).
        - **Stuck cells** (``nonideal.stuck_at_gmin``/``stuck_at_gmax``): one uniform draw per cell.
        - **ADC offset and gain error** (``converters.adc_offset``, ``adc_gain_error``): one normal
          draw per column of each row tile (each tile column has its own ADC), in LSB and as a
          relative gain. Offset and gain error are the static errors defined by IEEE Std
          1241-2010 (terminology and test methods for ADCs); device mismatch makes them differ
          from column to column and stay put (Pelgrom 1989), which is why in-memory chips correct
          each column's ADC output by its own affine map (Le Gallo et al., "A 64-core
          mixed-signal in-memory compute chip based on phase-change memory for deep neural network
          inference", Nature Electronics 6, 2023; title, journal and year checked, the per-column
          affine correction cited from memory of the paper, not rechecked).
          The spreads default to 0. The input-referred noise of a cited design is the preset
          ``converters-aimc`` (0.508 LSB at 8 bits, Rasch et al., Nat. Commun. 2023:
          :data:`nvmkit.engine.crossbar_config.AIMC_OUTPUT_NOISE_LSB`), whose columns are
          calibrated (no static offset or gain error left). No published in-memory ADC that
          states the uncalibrated offset and gain error in LSB was found for issue 21 (the
          figures that are published are circuit quantities: CrossSim's SAR and ramp ADC models,
          after Spear et al., "The impact of analog-to-digital converter architecture and
          variability on analog neural network accuracy", IEEE JXCDC 9(2), 2023,
          doi:10.1109/JXCDC.2023.3315134 (title, journal and DOI checked; its abstract sweeps
          accuracy against capacitance mismatch, comparator offset and ENOB), draw capacitor
          mismatch, finite op-amp gain and comparator offset voltages, with spreads of 0 by
          default, not LSB offsets of a design), and chips calibrate each column's
          offset and gain after fabrication, so what is left is design- and calibration-specific.
          A study sets them (``converters.adc_offset``, ``adc_gain_error``, ``adc_noise``).
        """
        ch, ni, conv, d = self.config.chip, self.config.nonideal, self.config.converters, self.device
        shape = (1, len(self.targets), *self.targets[0].shape)  # one chip, every cell kind
        chip = Chip()
        if ch.varies:
            lo = np.full(shape, F32(d.g_min), dtype=F32)
            hi = np.full(shape, F32(d.g_max), dtype=F32)
            if ch.gmin_spread:
                lo *= np.exp(standard_normal(streams(CHIP_EFFECTS["gmin"]), shape) * F32(ch.gmin_spread))
            if ch.gmax_spread:
                hi *= np.exp(standard_normal(streams(CHIP_EFFECTS["gmax"]), shape) * F32(ch.gmax_spread))
            s = self._spatial_factor(streams)
            if s is not None:
                lo *= s
                hi *= s
            np.maximum(hi, lo, out=hi)
            chip.g_lo, chip.g_hi = lo, hi
        if stuck and (ni.stuck_at_gmin or ni.stuck_at_gmax):
            u = streams(CHIP_EFFECTS["stuck"]).random(shape, dtype=F32)
            mask = np.zeros(shape, dtype=np.int8)
            mask[u < F32(ni.stuck_at_gmin)] = STUCK_AT_GMIN
            mask[u >= F32(1 - ni.stuck_at_gmax)] = STUCK_AT_GMAX
            chip.stuck = mask
        adc_shape = (1, len(self.row_blocks), self.n_out)
        if adc and conv.adc_offset:
            chip.adc_offset = standard_normal(streams(CHIP_EFFECTS["adc_offset"]), adc_shape) * F32(conv.adc_offset)
        if adc and conv.adc_gain_error:
            chip.adc_gain = standard_normal(streams(CHIP_EFFECTS["adc_gain"]), adc_shape) * F32(conv.adc_gain_error)
        return chip

    def _spatial_factor(self, streams) -> np.ndarray | None:
        """(rows, cols) factor of the spatially correlated variation, None when it is off."""
        ch, m = self.config.chip, self.config.mapping
        if not (ch.tile_spread or ch.gradient):
            return None
        tr, tc = m.tile_rows, m.tile_cols
        r_tile, r_in = np.divmod(np.arange(self.rows), tr)
        c_tile, c_in = np.divmod(np.arange(self.n_out), tc)
        tiles = (int(r_tile[-1]) + 1, int(c_tile[-1]) + 1)
        s = np.ones((self.rows, self.n_out), dtype=F32)
        if ch.tile_spread:
            f = np.exp(standard_normal(streams(CHIP_EFFECTS["tile"]), tiles) * F32(ch.tile_spread))
            s *= f[r_tile[:, None], c_tile[None, :]]
        if ch.gradient:
            a = streams(CHIP_EFFECTS["gradient"]).uniform(0.0, 2.0 * np.pi, tiles)
            u = ((r_in + 0.5) / tr - 0.5).astype(F32)[:, None]  # the tile's physical size: a
            v = ((c_in + 0.5) / tc - 0.5).astype(F32)[None, :]  # partial tile sits in its corner
            cos, sin = np.cos(a).astype(F32), np.sin(a).astype(F32)
            ramp = cos[r_tile[:, None], c_tile[None, :]] * u + sin[r_tile[:, None], c_tile[None, :]] * v
            s *= F32(1) + F32(ch.gradient) * ramp
        return s

    def _drift(self, g: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
        """Drift acting on each programmed cell: the power law, or the device's own drift."""
        ni, d = self.config.nonideal, self.device
        if ni.drift_model == "power-law":
            if t > ni.drift_t0:
                log_ratio = F32(math.log(t / ni.drift_t0))
                nu = F32(ni.drift_nu)
                if ni.drift_nu_sigma:
                    nu = standard_normal(rng, g.shape) * F32(ni.drift_nu_sigma) + nu
                g *= np.exp(-nu * log_ratio)
        else:
            g = np.asarray(d.drift(g, t), dtype=F32)
        if d.bounded:  # a conductance (or read current) cannot change sign
            np.maximum(g, F32(0), out=g)
        return g


#: the stream of each per-chip effect (a chip's SeedSequence spawn key ends with it)
CHIP_EFFECTS = {"gmin": 0, "gmax": 1, "tile": 2, "gradient": 3, "stuck": 4, "adc_offset": 5, "adc_gain": 6}
STUCK_AT_GMIN, STUCK_AT_GMAX = 1, 2  # codes of Chip.stuck (0: a working cell)


@dataclass
class Chip:
    """What a chip keeps when it is reprogrammed, for one crossbar, for C chips (the first axis;
    C = 1 when all trials program the same chip). Each field is None when its effect is off."""

    g_lo: np.ndarray | None = None  # (C, cells, rows, cols): each cell's own Gmin, device units
    g_hi: np.ndarray | None = None  # (C, cells, rows, cols): each cell's own Gmax
    stuck: np.ndarray | None = None  # (C, cells, rows, cols) int8: STUCK_AT_GMIN/GMAX, 0 working
    adc_offset: np.ndarray | None = None  # (C, row tiles, cols): each column ADC's offset, LSB
    adc_gain: np.ndarray | None = None  # (C, row tiles, cols): its relative gain error

    def arrays(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @property
    def chips(self) -> int:
        """C, or 0 for a chip without any per-chip quantity."""
        return next((a.shape[0] for a in self.arrays().values()), 0)

    def select(self, k: int) -> "Chip":
        """Chip ``k`` (a one-chip Chip); with a single chip, that chip for every ``k``."""
        return Chip(**{n: a[k:k + 1] if a.shape[0] > 1 else a for n, a in self.arrays().items()})

    @staticmethod
    def stack(chips: "list[Chip]") -> "Chip":
        names = chips[0].arrays() if chips else {}
        return Chip(**{n: np.concatenate([getattr(c, n) for c in chips]) for n in names})


def _stick(g: np.ndarray, mask: np.ndarray, lo, hi) -> np.ndarray:
    """``g`` with the stuck cells of ``mask`` (C, rows, cols) at their Gmin or Gmax."""
    g = np.where(mask == STUCK_AT_GMIN, lo, g)
    return np.where(mask == STUCK_AT_GMAX, hi, g).astype(F32, copy=False)


class ProgrammedCrossbar:
    """The programmed state of K trials: weights (K, rows, cols) in weight units and the per-weight
    read variance, as the analog layers keep it (``_var`` (K, rows, cols), or ``_col_sd`` (K, cols)
    when it does not depend on the row; both None without read noise)."""

    def __init__(self, crossbar: Crossbar, states: list[np.ndarray], drift_scale=None):
        self.xbar = crossbar
        self.states = states  # each (K, rows, cols), in device units
        self.trials = states[0].shape[0]
        #: (K,) output scale of global drift compensation, or None (off, or no drift)
        self.drift_scale = None if drift_scale is None else np.asarray(drift_scale, F32).reshape(-1)
        self._w = crossbar._to_weight(states)  # (K, rows, cols) in weight units
        d, ni = crossbar.device, crossbar.config.nonideal
        self._var = None  # (K, rows, cols): per-weight read variance, weight units squared
        self._col_sd = None  # (K, cols): the same when it does not depend on the row
        if ni.read_noise:
            gain = F32(crossbar.current_to_weight)
            var = None
            for s in states:
                sd = crossbar._checked_sigma(d.read_sigma(s), "read") * gain
                var = np.square(sd) if var is None else var + np.square(sd)
            if np.any(var):
                if np.all(var == var[:, :1, :]):
                    self._col_sd = np.sqrt(var[:, 0, :])
                else:
                    self._var = var

    def weights(self) -> np.ndarray:
        """Programmed weights (K, rows, n_out) in weight units (bias row last when analog)."""
        return self._w
