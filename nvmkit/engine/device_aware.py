"""Device-aware training: a model trained through its device, with the programming drawn afresh in
the graph for every mini-batch.

:func:`nvmkit.engine.convert.convert` programs a converted model once per :func:`reprogram`
call, with the device's numpy functions, on the host; ``fit`` on it learns that one draw of the
device. :class:`DeviceAwareTraining` instead trains the converted graph (one programmed copy,
``trials = 1``) while each analog layer draws its programmed state *in the graph*, from its
current weights, at every training step (or every ``reprogram_every`` steps): the same chain as
:meth:`nvmkit.engine.crossbar.Crossbar.program` (mapping to ``[g_min, g_max]`` with the
deployment's scheme and clipping percentile, the device's levels, the programming error at the
spread the device shows ``drift_time`` after programming, clipping to the conductance range, the
drift at ``drift_time``, stuck cells) in Keras ops, so that a GPU runs it where it runs the
training. Read noise stays fresh at every read and the DAC/ADC act in the forward pass with
straight-through gradients, as in inference (:mod:`nvmkit.engine.ops`).

Any device, no Keras code: the device's numpy functions are tabulated once on a fine uniform
conductance grid (:class:`Curve`, :class:`ProgrammingTables`) and interpolated linearly with
Keras ops: ``programming_sigma(g, drift_time)`` on ``[g_min, g_max]`` (targets lie there),
the drift ``drift(g, drift_time)`` (per cell, or the mean shift for devices whose spread is
measured around the drifted mean), and ``read_sigma(g)`` over every state a programmed, drifted
or stuck cell can take (the in-graph normals are capped at |z| <= 5.13, so the programmed states
lie within ``Z_MAX`` standard deviations of their targets). Each curve states an error bound
(:attr:`Curve.bound`).

Gradients: the read uses ``clip(W) + stop_gradient(programmed(W) - clip(W))``, i.e. the weights
clipped to the range they map to (``[-w_scale, w_scale]``: max |W|, where the clip is the
identity, or the mapping's clipping percentile, where weights beyond it get no gradient) with the
device's deviation a constant of the step (fixed through its forward and backward pass, as in
hardware-aware training; Joshi et al., Nat. Commun. 11, 2473, 2020; Rasch et al., Nat. Commun.
14, 5282, 2023). On the ideal device with the ``ideal`` preset the deviation is zero up to
float32 rounding, and training equals plain training.

Cost: per weight and step one or two normals (a pair's idle cell at ``g_min`` draws none when
its spread there is below float32's step of the range, as for SONOS), one gather per curve read,
and, for a state-dependent read noise, the read variance of the programmed cells. The random
words and Box-Muller run as TensorFlow ops (XLA's are slower on a CPU); the rest of a large core's
programming is compiled with XLA in stages that each materialise their outputs.

Random streams: the programming of layer ``i``'s core ``c`` at step ``s`` comes from a stateless
generator keyed by ``SeedSequence(seed, spawn_key=(4, i, c, purpose))`` and the window
``s // reprogram_every`` (``s`` = the optimizer's iteration count), so that every read within
one step (all time steps of a recurrent layer) sees one programming and a rerun draws the same.
The stateless draws need the TensorFlow backend.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError, NvmkitError
from nvmkit.engine import ops as xops
from nvmkit.engine.crossbar_config import CrossbarConfig

F32 = np.float32
#: intervals of every tabulated curve
GRID = 4096
#: programmed states lie within this many standard deviations of their targets (the in-graph
#: Box-Muller normals of :func:`nvmkit.engine.ops.standard_normal` are capped at |z| <= 5.13)
Z_MAX = 6.0
#: cells of a core from which its programming is compiled with XLA (smaller ones: plain ops)
XLA_FROM = 1 << 16
_TRAIN = 4  # spawn key of the training programming (convert.py uses 0 and 2)
_NORMAL, _NU, _STUCK = 0, 1, 2  # purposes of the draws


class Curve:
    """A device function of the conductance, tabulated on ``n + 1`` equally spaced points of
    ``[lo, hi]`` and interpolated linearly (values beyond the grid take its end values).

    ``bound``: an upper bound of the interpolation error, ``max |second difference| / 2`` plus
    the float32 rounding of the stored values. For ``f`` twice differentiable the error on an
    interval of width ``h`` is at most ``h**2 max|f''| / 8``, and a second difference equals
    ``h**2 f''`` somewhere on two intervals, so the bound allows for ``f''`` four times the
    largest sampled curvature; a kink with slope jump ``c`` between two points errs by at most
    ``c h / 4`` and shows as a second difference of at least ``c h / 2``.
    """

    def __init__(self, fn, lo: float, hi: float, what: str, n: int = GRID):
        lo, hi = float(lo), float(hi)
        if not hi > lo:
            hi = lo + max(abs(lo), 1.0) * 1e-6
        self.lo, self.hi, self.n, self.what = lo, hi, int(n), what
        self.step = (hi - lo) / self.n
        grid = np.linspace(lo, hi, self.n + 1).astype(F32)
        values = np.asarray(fn(grid.copy()), dtype=np.float64)
        if values.shape != grid.shape or not np.all(np.isfinite(values)):
            raise NvmkitError(f"{what} returned a non-finite value or the wrong shape on "
                              f"[{lo:.4g}, {hi:.4g}]; fix the device model")
        self.values = values.astype(F32)
        second = np.abs(np.diff(values, 2))
        self.bound = (float(second.max()) / 2 if second.size else 0.0) + \
            float(np.abs(values).max()) * 2.0**-23
        v = self.values
        self.constant = float(v[0]) if np.all(v == v[0]) else None
        self.rises = np.diff(v).astype(F32)
        # a straight line (ReRAM's linear spread): a + b g, exact up to float32 rounding
        self.affine = None
        if self.constant is None:
            slope = (values[-1] - values[0]) / (hi - lo)
            line = values[0] + slope * (grid.astype(np.float64) - lo)
            off = float(np.max(np.abs(values - line)))
            rounding = 4 * 2.0**-23 * float(np.abs(values).max())
            if off <= rounding:
                self.affine = (float(values[0] - slope * lo), float(slope))
                self.bound = off + rounding

    def _position(self, g, lib):
        u = (g - F32(self.lo)) * F32(1.0 / self.step)
        u = lib.clip(u, 0.0, float(self.n))
        i = lib.minimum(lib.floor(u), float(self.n - 1))
        return i, u - i

    def numpy(self, g) -> np.ndarray:
        """The interpolation in numpy (the reference of the Keras one)."""
        g = np.asarray(g, dtype=F32)
        if self.constant is not None:
            return np.full_like(g, self.constant)
        if self.affine is not None:
            return (self.affine[0] + self.affine[1] * g).astype(F32)
        i, f = self._position(g, np)
        i = i.astype(np.int64)
        return self.values[:-1][i] + f * self.rises[i]

    def __call__(self, g):
        """The interpolation in Keras ops (one gather per point; none for a constant or a
        straight line)."""
        return _read_curves([self], g)[id(self)]


class ProgrammingTables:
    """A device's programming, drift and read noise as :class:`Curve` objects, for the crossbar
    settings of a deployment (which effects act, the scheme, ``drift_time``). Built once; the
    device's functions are never called in the training graph.

    ``sigma_scale`` splits a per-weight spread over the cells of a weight as
    :class:`nvmkit.engine.crossbar.Crossbar` does (``sqrt(2)`` per cell of a differential pair
    for a device whose spread is stated per weight, else 1).
    """

    def __init__(self, device: Device, crossbar: CrossbarConfig | None = None, n: int = GRID):
        if not isinstance(device, Device):
            raise ConfigError(f"device-aware training: device must be a nvmkit Device, got "
                              f"{type(device).__name__}")
        cfg = crossbar if crossbar is not None else CrossbarConfig()
        for section in (cfg.mapping, cfg.nonideal, cfg.converters):
            section.validate()
        d, ni = device, cfg.nonideal
        self.device, self.config = d, cfg
        self.cells = 2 if cfg.mapping.scheme == "differential" else 1
        # weight_range / (g_range * current_to_weight * sqrt(cells)), as Crossbar.sigma_scale
        self.sigma_scale = (math.sqrt(2.0) if self.cells == 2 else 1.0) if d.sigma_per_weight else 1.0
        g_min, g_max = d.g_min, d.g_max
        t = ni.drift_time
        name = f"device '{d.name}'"
        self.prog = None
        if ni.programming_error:
            prog = Curve(lambda g: _checked(d.programming_sigma(g, t), name, "programming"),
                         g_min, g_max, f"{name} programming_sigma", n)
            self.prog = None if prog.constant == 0.0 else prog
        # a differential pair's idle cell (at g_min) whose spread is below one float32 step of the
        # conductance range (SONOS: 1.8e-5 nA against 9.5e-5 nA) is programmed without error, and
        # the pair draws one normal, for the cell that carries the weight
        self.quiet_gmin = self.cells == 2 and (
            self.prog is None or float(self.prog.numpy(np.float32(g_min))) * self.sigma_scale
            <= 2.0**-24 * (g_max - g_min))
        lo, hi = g_min, g_max
        if self.prog is not None:
            reach = Z_MAX * float(self.prog.values.max()) * self.sigma_scale
            lo, hi = lo - reach, hi + reach
        if ni.clip_conductance and d.bounded:
            lo, hi = (g_min if ni.clip_floor == "g_min" else min(max(lo, 0.0), g_min)), g_max
        self.mean_first = t > 0 and ni.drift_model == "device" and d.spread_measured_after_drift
        self.shift = self.drift = None
        self.power_law = None  # (nu, nu_sigma, log(t / t0)) when the power law acts
        if self.mean_first:
            self.shift = Curve(lambda g: np.asarray(d.drift(g.copy(), t), dtype=np.float64) - g,
                               g_min, g_max, f"{name} drift", n)
            lo, hi = lo + float(self.shift.values.min()), hi + float(self.shift.values.max())
        elif t > 0 and ni.drift_model == "device":
            self.drift = Curve(lambda g: d.drift(g, t), lo, hi, f"{name} drift", n)
            lo, hi = float(self.drift.values.min()), float(self.drift.values.max())
        elif t > 0 and t > ni.drift_t0:
            log_ratio = math.log(t / ni.drift_t0)
            self.power_law = (ni.drift_nu, ni.drift_nu_sigma, log_ratio)
            nus = (ni.drift_nu - Z_MAX * ni.drift_nu_sigma, ni.drift_nu + Z_MAX * ni.drift_nu_sigma)
            ends = [v * math.exp(-nu * log_ratio) for v in (lo, hi) for nu in nus]
            lo, hi = min(ends), max(ends)
        self.drifts = t > 0
        if t > 0 and d.bounded:
            lo, hi = max(lo, 0.0), max(hi, 0.0)
        if ni.stuck_at_gmin or ni.stuck_at_gmax:
            lo, hi = min(lo, g_min), max(hi, g_max)
        self.state_range = (lo, hi)
        self.read = None
        if ni.read_noise:
            read = Curve(lambda g: _checked(d.read_sigma(g), name, "read"), lo, hi,
                         f"{name} read_sigma", n)
            self.read = None if read.constant == 0.0 else read
        # the idle cell's state when it is the same for every pair (no error, no stuck cells, no
        # per-cell drift exponent): its read spread is then one number, not a gather per weight
        self.idle_read = None
        if self.quiet_gmin and self.read is not None and not (ni.stuck_at_gmin or ni.stuck_at_gmax) \
                and not (self.power_law is not None and self.power_law[1]):
            g = np.float32(g_min)
            if self.mean_first:
                g = g + np.float32(self.shift.numpy(g))
            elif self.drift is not None:
                g = np.float32(self.drift.numpy(g))
            elif self.power_law is not None:
                g = np.float32(g * math.exp(-self.power_law[0] * self.power_law[2]))
            if self.drifts and d.bounded:
                g = max(g, np.float32(0))
            self.idle_read = float(self.read.numpy(np.float32(g)))


def _checked(sigma, name: str, what: str) -> np.ndarray:
    sigma = np.asarray(sigma, dtype=np.float64)
    if not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
        raise NvmkitError(f"{name} returned a negative or non-finite {what} sigma; fix the device "
                          "model's parameters")
    return sigma


def _read_curves(curves: list, g) -> dict:
    """Several curves at the same points: those on one grid share the position and one gather
    of a (value, rise, value, rise, ...) row per point."""
    import tensorflow as tf

    out, tabulated = {}, []
    for curve in curves:
        if curve.constant is not None:
            out[id(curve)] = ops.full_like(g, curve.constant)
        elif curve.affine is not None:
            out[id(curve)] = curve.affine[0] + curve.affine[1] * g
        else:
            tabulated.append(curve)
    groups: dict[tuple, list] = {}
    for curve in tabulated:
        groups.setdefault((curve.lo, curve.step, curve.n), []).append(curve)
    for members in groups.values():
        i, f = members[0]._position(g, ops)
        table = np.concatenate([np.stack([c.values[:-1], c.rises], axis=1) for c in members], axis=1)
        rows = tf.gather(tf.constant(table), ops.cast(i, "int32"), axis=0)
        for k, curve in enumerate(members):
            out[id(curve)] = rows[..., 2 * k] + f * rows[..., 2 * k + 1]
    return out


def _normals(cells: int, shape, seed) -> list:
    """``cells`` arrays of standard normals of ``shape`` from one stream: the Box-Muller transform
    of :func:`nvmkit.engine.ops.standard_normal` (one random word a pair of samples, where
    TensorFlow's ``stateless_normal`` spends two a sample; the random words are most of the
    programming's cost), read as the cells' arrays."""
    n = math.prod(shape)
    q = -(-n * cells // 2)
    z = ops.reshape(xops.box_muller_pairs(xops.random_words((q,), seed)), (-1,))  # (2q,)
    if 2 * q != n * cells:
        z = z[: n * cells]
    z = ops.reshape(z, (cells, *shape))
    return [z[j] for j in range(cells)]


def _uniforms(cells: int, shape, seed) -> list:
    """``cells`` arrays of uniforms in [0, 1) on a 2**-24 grid (the top 24 bits of random words)."""
    words = xops.random_words((cells, *shape), seed)
    u = ops.cast(ops.bitwise_and(ops.right_shift(words, 8), 0xFFFFFF), "float32") * 2.0**-24
    return [u[j] for j in range(cells)]


class _Seed:
    """A fixed stateless seed in the shape :func:`nvmkit.engine.ops.random_words` draws from."""

    def __init__(self, state):
        self.state = state

    def next(self):
        return self.state


class _LayerProgramming:
    """The hook an analog layer calls for its state (``_Core._state``) while it trains on the
    device: the programming of its cores drawn in the graph from their current weights."""

    def __init__(self, trainer: "DeviceAwareTraining", index: int):
        self.trainer, self.index = trainer, index
        self._last: dict[int, tuple] = {}  # id(core) -> (graph, kernel2d, bias, state)

    def state(self, core, kernel2d, bias) -> dict:
        """The state for this read. A recurrent layer reads its cores once per time step with the
        same weight tensors: within one traced graph those reads share one programming (the
        crossbar is programmed once per step), drawn once."""
        import tensorflow as tf

        graph = None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
        last = self._last.get(id(core))
        if graph is not None and last is not None and last[0] is graph and last[1] is kernel2d \
                and last[2] is bias:
            return last[3]
        out = self.trainer._program(core, self.index, kernel2d, bias)
        st = {"delta": out["delta"], "read_sd": out["read_sd"], "read_var": out["read_var"]}
        for name in ("dac_range", "dac_signed", "adc_range"):
            v = getattr(core, name)
            st[name] = None if v is None else v.value
        if graph is not None:
            self._last[id(core)] = (graph, kernel2d, bias, st)
        return st


class DeviceAwareTraining:
    """Train ``model`` through ``device`` and ``crossbar``: a converted twin of the model
    (``convert``, one programmed copy, converters calibrated on ``calibration_data``) whose
    programming every analog layer draws in the graph at every step (or every
    ``reprogram_every`` steps), from ``seed``.

    Use it as a Keras model: :meth:`compile`, :meth:`fit` (``model`` holds the twin), then
    :meth:`copy_back` writes the trained weights into the original model (a BatchNormalization
    that ``convert`` folded into a weight layer is left as an identity, its shift in the weight
    layer's bias or its moving mean, so that the next fold gives the trained weights exactly).
    """

    def __init__(self, model, device: Device, crossbar: CrossbarConfig | None = None, *,
                 seed: int = 0, calibration_data=None, reprogram_every: int = 1,
                 fold_batchnorm: bool = True):
        from nvmkit.core.component import check_int, check_seed
        from nvmkit.engine.convert import _convert, analog_layers

        if keras.backend.backend() != "tensorflow":
            raise ConfigError("device-aware training draws the programming with TensorFlow's stateless "
                              f"generators; run it with KERAS_BACKEND=tensorflow (got "
                              f"{keras.backend.backend()})")
        self.reprogram_every = check_int("device-aware training", "reprogram_every", reprogram_every, 1)
        self.seed = check_seed("device-aware training", "seed", seed)
        config = crossbar if crossbar is not None else CrossbarConfig()
        untrained = effects_not_trained(config)
        if untrained:
            raise ConfigError(f"device-aware training does not draw {', '.join(untrained)} in the "
                              "graph yet; switch it off in the crossbar settings for training, or "
                              "train with method 'plain'")
        # first: a device's refusal (a drift_time beyond its fits) comes before any work
        self.tables = ProgrammingTables(device, config)
        self.device, self.crossbar_config = device, config
        self.source = model
        self.model, self._originals, self._folds = _convert(
            model, device, config, trials=1, seed=self.seed, calibration_data=calibration_data,
            fold_batchnorm=fold_batchnorm)
        self.layers = analog_layers(self.model)
        self.step = keras.Variable(0, dtype="int64", trainable=False, name="device_aware_step")
        self._seeds: dict[tuple, int] = {}
        self._chains: dict[tuple, object] = {}
        for i, layer in enumerate(self.layers):
            if layer.noise_mode == "column" and self.tables.read is not None \
                    and self.tables.read.constant is None:
                raise NvmkitError(f"{layer.name}: device '{device.name}' gave a state-dependent read "
                                  "noise it did not show when probed; report it as a bug")
            layer.programming = _LayerProgramming(self, i)

    # -- Keras model interface --------------------------------------------------------------
    def compile(self, *args, **kwargs) -> None:
        """``compile`` of the twin; its optimizer's iteration count becomes the step that keys
        the programming."""
        self.model.compile(*args, **kwargs)
        self.step = self.model.optimizer.iterations

    def fit(self, *args, **kwargs):
        return self.model.fit(*args, **kwargs)

    # -- the programming in the graph -------------------------------------------------------
    def _seed(self, layer: int, core: int, purpose: int, step):
        key = (layer, core, purpose)
        if key not in self._seeds:
            ss = np.random.SeedSequence(self.seed, spawn_key=(_TRAIN, *key))
            self._seeds[key] = int(ss.generate_state(1)[0] >> 1)
        window = ops.cast(ops.floor_divide(step, self.reprogram_every), "int32")
        return _Seed(ops.stack([ops.convert_to_tensor(self._seeds[key], dtype="int32"), window]))

    def _program(self, core, index: int, kernel2d, bias, step=None, keep_states: bool = False) -> dict:
        """The programmed state of ``core`` (of analog layer ``index``) for its current weights at
        ``step`` (default: the training step), as the layer reads it."""
        step = (self.step.value if hasattr(self.step, "value") else self.step) if step is None else step
        c = core.layer.cores.index(core)
        full = core.matrix(kernel2d, bias)
        drawn = self._draw(core, index, c, ops.stop_gradient(full), step, keep_states)
        w_scale, weights = drawn["w_scale"], ops.stop_gradient(drawn["weights"])
        if self.crossbar_config.mapping.clip_percentile < 100:
            clipped = ops.clip(full, -w_scale, w_scale)  # the weights in the range they map to
            # forward: the programmed weights; backward: d clip(W) / dW (the deviation a constant)
            delta = (clipped - full) + ops.stop_gradient(weights - clipped)
        else:  # the range is max |W|: no weight lies beyond it
            delta = ops.stop_gradient(weights - full)
        out = {"delta": ops.expand_dims(delta, 0), "read_sd": None, "read_var": None}
        for name in ("read_sd", "read_var"):
            if drawn.get(name) is not None:
                out[name] = ops.stop_gradient(drawn[name])
        if keep_states:
            out.update(drawn)
        return out

    def _draw(self, core, index: int, c: int, full, step, keep_states: bool) -> dict:
        """Crossbar.program's chain for one core: the random draws (TensorFlow's stateless
        kernels, Box-Muller in Keras ops), then everything else as one function compiled with
        XLA (``jit_compile``), whose twenty-odd elementwise steps over every cell become a few
        fused loops: a weight-sized pass costs about as much as a small training step's matrix
        product on a CPU. (XLA's own random numbers and transcendentals are slow on a CPU, hence
        the split.)"""
        tb, ni = self.tables, self.crossbar_config.nonideal
        shape = tuple(full.shape)
        noise: dict[str, list] = {"z": [], "nu": [], "u": []}
        if tb.prog is not None:
            noise["z"] = _normals(1 if tb.quiet_gmin else tb.cells, shape,
                                  self._seed(index, c, _NORMAL, step))
        if tb.power_law is not None and tb.power_law[1]:
            noise["nu"] = _normals(tb.cells, shape, self._seed(index, c, _NU, step))
        if ni.stuck_at_gmin or ni.stuck_at_gmax:
            noise["u"] = _uniforms(tb.cells, shape, self._seed(index, c, _STUCK, step))
        xla = math.prod(shape) >= XLA_FROM
        mapped = self._compiled(("map", index, c), self._map, xla)(full)
        out = self._compiled(("cells", index, c, keep_states), self._cells, xla,
                             core=core, keep_states=keep_states)(mapped, noise)
        if tb.read is not None and core.read_var is not None:
            out["read_var"] = self._compiled(("read", index, c), self._read_variance, xla)(
                out.pop("read_states"), out["w_scale"])
        return out

    def _compiled(self, key: tuple, fn, xla: bool, **fixed):
        """``fn`` compiled with XLA, once per core (``xla`` False: ``fn`` itself, for cores too
        small for the compilation to pay). Stages of their own, each materialising its outputs:
        XLA copies an operation into every fused loop that reads it, so a curve's gather read by
        both cells of a pair would run once per reader."""
        if not xla:
            return lambda *args: fn(*args, **fixed)
        if key not in self._chains:
            import tensorflow as tf

            def run(*args):
                return fn(*args, **fixed)

            self._chains[key] = tf.function(run, jit_compile=True, autograph=False)
        return self._chains[key]

    def _map(self, full) -> dict:
        """The mapping of one core's weights (rows, cols) to the target of the cell that carries
        each weight, with the curves read there. In a differential pair one cell of every weight
        sits at ``g_min`` (both for a zero weight), so the curves are read once per weight, at the
        other cell's target, and once at ``g_min``."""
        tb, cfg, d = self.tables, self.crossbar_config, self.device
        ni, m = cfg.nonideal, cfg.mapping
        mags = ops.abs(full)
        if m.clip_percentile < 100:
            w_scale = ops.quantile(ops.reshape(mags, (-1,)), m.clip_percentile / 100.0)
        else:
            w_scale = ops.max(mags)
        w_scale = ops.where(w_scale > 0, w_scale, ops.ones_like(w_scale))
        unit = ops.clip(full, -w_scale, w_scale) / w_scale
        g_min, g_rng = float(F32(d.g_min)), float(F32(d.g_range))
        if m.scheme == "differential":  # the cell that carries the weight; the other stays at g_min
            active = g_min + ops.abs(unit) * g_rng
        else:
            active = g_min + (unit + 1.0) * 0.5 * g_rng
        if ni.quantize and d.levels:
            q = g_rng / (d.levels - 1)
            active = g_min + ops.round((active - g_min) / q) * q
        out = {"w_scale": w_scale, "active": active, "positive": unit > 0}
        curves = {name: cv for name, cv in (("prog", tb.prog), ("shift", tb.shift)) if cv is not None}
        at_active = _read_curves(list(curves.values()), active)
        for name, cv in curves.items():
            out[name] = at_active[id(cv)]
        return out

    def _cells(self, mapped: dict, noise: dict, core, keep_states: bool) -> dict:
        """Programming error, clipping, drift, stuck cells and the read variance of one core's
        cells, given its mapping (:meth:`_map`) and its random draws."""
        tb, cfg, d = self.tables, self.crossbar_config, self.device
        ni, m = cfg.nonideal, cfg.mapping
        w_scale, active, positive = mapped["w_scale"], mapped["active"], mapped["positive"]
        shape = tuple(active.shape)
        g_min, g_max, g_rng = float(F32(d.g_min)), float(F32(d.g_max)), float(F32(d.g_range))
        if m.scheme == "differential":
            current_to_weight, g_offset = w_scale / g_rng, 0.0
            targets = [ops.where(positive, active, g_min), ops.where(positive, g_min, active)]

            def per_cell(name, j):
                low = float(getattr(tb, name).numpy(np.float32(g_min)))
                v = mapped[name]
                return ops.where(positive, v, low) if j == 0 else ops.where(positive, low, v)
        else:
            current_to_weight, g_offset = 2.0 * w_scale / g_rng, float(d.g_min + 0.5 * d.g_range)
            targets = [active]

            def per_cell(name, j):
                return mapped[name]
        states = []
        for j, target in enumerate(targets):
            g = target
            if tb.prog is not None and tb.quiet_gmin:  # one normal, for the cell with the weight
                z = noise["z"][0]
                z = ops.where(positive, z, 0.0) if j == 0 else ops.where(positive, 0.0, z)
                g = target + z * (mapped["prog"] * tb.sigma_scale)
            elif tb.prog is not None:
                sigma = per_cell("prog", j)
                g = target + noise["z"][j] * (sigma * tb.sigma_scale if tb.sigma_scale != 1 else sigma)
            if ni.clip_conductance and d.bounded:  # the floor as Crossbar.program's (clip_floor)
                g = ops.clip(g, g_min if ni.clip_floor == "g_min" else 0.0, g_max)
            if tb.mean_first:
                g = g + per_cell("shift", j)
            elif tb.drift is not None:
                g = tb.drift(g)
            elif tb.power_law is not None:
                nu, nu_sigma, log_ratio = tb.power_law
                if nu_sigma:
                    nu = noise["nu"][j] * nu_sigma + nu
                g = g * ops.exp(-nu * log_ratio)
            if tb.drifts and d.bounded:  # a conductance (or read current) cannot change sign
                g = ops.maximum(g, 0.0)
            if ni.stuck_at_gmin or ni.stuck_at_gmax:
                u = noise["u"][j]
                g = ops.where(u < ni.stuck_at_gmin, g_min, g)
                g = ops.where(u >= 1.0 - ni.stuck_at_gmax, g_max, g)
            states.append(g)
        diff = states[0] - states[1] if len(states) == 2 else states[0] - g_offset
        out = {"w_scale": w_scale, "weights": diff * current_to_weight}
        if tb.read is not None and core.read_var is not None:
            # read by _read_variance, a stage of its own (with one number for every idle cell,
            # the state of the cell that carries the weight)
            out["read_states"] = [ops.where(positive, states[0], states[1])] \
                if tb.idle_read is not None else states
        elif tb.read is not None and core.read_sd is not None:
            sd = math.sqrt(len(states)) * tb.read.constant * tb.sigma_scale * current_to_weight
            out["read_sd"] = sd * ops.ones((1, 1, shape[1]), dtype="float32")
        if keep_states:
            out.update(targets=targets, states=states, current_to_weight=current_to_weight)
        return out

    def _read_variance(self, states: list, w_scale):
        """Per-weight read variance (1, rows, cols) in weight units from the cells' states."""
        tb, d, m = self.tables, self.device, self.crossbar_config.mapping
        current_to_weight = w_scale / float(F32(d.g_range)) * (1.0 if m.scheme == "differential" else 2.0)
        var = None
        for s in states:
            sd = tb.read(s)
            var = ops.square(sd) if var is None else var + ops.square(sd)
        if len(states) == 1 and tb.idle_read is not None:  # the idle cell of every pair
            var = var + tb.idle_read ** 2
        return ops.expand_dims(var * ops.square(tb.sigma_scale * current_to_weight), 0)

    def programmed(self, step: int) -> list[dict]:
        """What the training reads at ``step``, per core of every analog layer (eagerly, numpy):
        ``weights`` (rows, cols) programmed weights in weight units, the cells' ``targets`` and
        programmed ``states`` (device units), ``w_scale``, ``read_var`` or ``read_sd``."""
        out = []
        s = ops.convert_to_tensor(int(step), dtype="int64")
        for i, layer in enumerate(self.layers):
            for core, w, b in layer.core_weights():
                r = self._program(core, i, ops.convert_to_tensor(w),
                                  None if b is None else ops.convert_to_tensor(b), step=s,
                                  keep_states=True)
                out.append({
                    "layer": layer.name, "core": core.tag,
                    "weights": ops.convert_to_numpy(r["weights"]),
                    "targets": [ops.convert_to_numpy(t) for t in r["targets"]],
                    "states": [ops.convert_to_numpy(t) for t in r["states"]],
                    "w_scale": float(ops.convert_to_numpy(r["w_scale"])),
                    "current_to_weight": float(ops.convert_to_numpy(r["current_to_weight"])),
                    "read_var": None if r["read_var"] is None else ops.convert_to_numpy(r["read_var"])[0],
                    "read_sd": None if r["read_sd"] is None else ops.convert_to_numpy(r["read_sd"])[0],
                })
        return out

    # -- back to the user's model -----------------------------------------------------------
    def copy_back(self) -> None:
        """Write the twin's trained weights into the original model."""
        copy_twin_back(self.model, self._originals, self._folds)


def effects_not_trained(config: CrossbarConfig) -> list[str]:
    """The crossbar effects that are switched on in ``config`` and that training through the
    device (device-aware or in place) does not model: training refuses them."""
    return [name for name, on in (
        ("wires (IR drop)", config.wires.on),
        ("nonideal.drift_compensation", config.nonideal.drift_compensation != "none"),
        ("chip variation (gmin/gmax/tile spread, gradient)", config.chip.varies)) if on]


def copy_twin_back(twin, originals: dict, folds: dict) -> None:
    """Write a converted twin's weights into the user's model it was converted from:
    ``originals`` maps id(twin layer) -> the user's layer, ``folds`` id(user layer) -> the
    BatchNormalization folded into it (unfolded on the way back). Shared by device-aware and
    in-place training."""
    from nvmkit.engine.convert import _all_layers, _copy_digital_state
    from nvmkit.engine.layers import AnalogLayer, FoldedBatchNormalization

    for new in _all_layers(twin):
        old = originals.get(id(new))
        if old is None:
            continue
        if isinstance(new, AnalogLayer):
            _copy_analog_back(new, old, folds.get(id(old)))
        elif old.weights and not isinstance(new, FoldedBatchNormalization):
            _copy_digital_state(new, old)


def _copy_analog_back(new, old, bn) -> None:
    """The inverse of ``convert._copy_analog_weights``."""
    from nvmkit.engine.layers import AnalogDepthwiseConv2D, AnalogRecurrent

    if isinstance(new, AnalogRecurrent):
        cell = old.cell
        cell.kernel.assign(new.kernel.value)
        cell.recurrent_kernel.assign(new.recurrent_kernel.value)
        if new.bias is not None:
            cell.bias.assign(ops.reshape(new.bias.value, cell.bias.shape))
        return
    cls = type(old).__name__
    if cls == "SeparableConv2D":
        old.depthwise_kernel.assign(new.depthwise_kernel.value)
        old.pointwise_kernel.assign(new.pointwise_kernel.value)
    elif cls == "DepthwiseConv2D" or isinstance(new, AnalogDepthwiseConv2D):
        old.kernel.assign(ops.reshape(new.depthwise_kernel.value, old.kernel.shape))
    else:
        old.kernel.assign(new.kernel.value)
    b = None if new.bias is None else np.asarray(new.bias.numpy(), dtype=F32)
    if bn is None:
        if b is not None:
            old.bias.assign(b)
        return
    # the folded BatchNormalization becomes an identity scale (gamma 1, variance 1 - epsilon) and
    # the layer's trained bias its shift: in the weight layer's bias, or as minus its moving mean
    channels = bn.moving_mean.shape
    if bn.scale:
        bn.gamma.assign(np.ones(channels, F32))
    if bn.center:
        bn.beta.assign(np.zeros(channels, F32))
    bn.moving_variance.assign(np.full(channels, 1.0 - bn.epsilon, F32))
    if getattr(old, "use_bias", False):
        old.bias.assign(b)
        bn.moving_mean.assign(np.zeros(channels, F32))
    else:
        bn.moving_mean.assign(-b)
