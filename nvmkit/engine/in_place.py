"""In-place (on-chip) learning: a programmed model trained by its device's own pulses.

:class:`InPlaceTraining` keeps the **conductances** of every cell of a converted model (one chip,
``trials = 1``) as its state and trains them the way a crossbar that learns in place does
(Gokmen and Vlasov, Front. Neurosci. 10:333, 2016, Fig. 1; aihwkit's pulsed analog tiles,
Rasch et al., AICAS 2021):

1. **forward** on the crossbars, the engine's read (:mod:`nvmkit.engine.ops`): the weights read
   from the conductances (``(G+ - G-) Wmax / (Gmax - Gmin)``, or the offset scheme's single
   cell), fresh read noise at every read, DAC and ADC;
2. **backward** through the *transposed* crossbars: the error ``delta`` of each layer's outputs
   drives its columns and is read at its rows, ``delta W^T`` on the same programmed, noisy
   conductances (never the float weights), with read noise of its own (a fresh draw, variance
   ``sum_j delta_j^2 var_ij``) and the layer's converters: the error is scaled by its largest
   magnitude per read before the DAC (noise management; Gokmen et al., Front. Neurosci. 11:538,
   2017) and the ADC's full scale is the largest magnitude of the read's ideal outputs (ideal
   bound management), with the forward converters' bits; one conversion per row and column tile
   (``mapping.tile_cols``: each tile's partial sum over its columns converted by its own ADC,
   full scale the tile's largest output, the tiles' conversions summed digitally), as the
   forward read converts per row tile and the training-energy estimator counts them (a
   depthwise layer's crossbar per channel is one tile);
3. **update** by pulses on the programmed cells, the outer product ``-lr x delta^T`` of a
   layer's inputs (rows) and errors (columns) as a parallel crossbar update realises it:

   - ``pulses = "deterministic"`` (default): each cell's pulse count is the desired change in
     units of the device's nominal step, rounded: ``n = round(-lr (x^T delta) / dw)``, with
     ``dw`` the weight change of the nominal step (``nominal_step``: the mean of the up and
     down step magnitudes over the conductance range). Cheap (one pass over the cells) and, with
     an ideal device at fine resolution, plain SGD itself (the exactness tests);
   - ``pulses = "stochastic"``: Gokmen and Vlasov's stochastic pulse trains: for every read
     (sample, time step) each row ``i`` fires a train of ``slots`` (BL) Bernoulli pulses with
     probability ``C_x |x_i|``, each column ``j`` with ``C_d |delta_j|``, signs from the
     signals, and a cell receives one pulse per coincidence: ``E[n_ij] = -lr sum x_i delta_j /
     dw`` (``C_x C_d slots = lr / dw``, balanced per read so that the largest row and column
     probabilities are equal; a probability above 1 is cut to 1, so ``slots`` must be at least
     ``lr max|x| max|delta| / dw`` for the mean to hold: Gokmen et al. 2017's update
     management). The coincidences are summed with one product of bit matrices of
     ``reads x slots`` rows per update (never a reads x rows x columns tensor). Dense and
     recurrent layers only.

   Counts are capped at ``max_pulses`` per update (the device's; a device that states none
   gets one full swing, ``g_range / nominal step``). **A mini-batch forms one update**, from the
   batch's summed gradient (the loss is the batch mean, so the update is plain SGD's step with
   the same rate): one update window per mini-batch, as a chip that accumulates a batch's
   coincidences would; it equals SGD step for step (point 4) and needs no per-sample state.
   What it leaves out: a device that sees a batch's up and down pulses interleaved (per-sample
   rank-1 updates, aihwkit's default) drifts toward its symmetry point within a batch; here
   opposite pulses of one batch cancel before the device sees them. ``batch_size = 1`` is the
   per-sample rank-1 scheme.

   Each pulse moves its cell by the device's step at the cell's state (``pulse_step(g, up)``,
   non-linear and asymmetric as the device states it), times the cell's own device-to-device
   factor ``max(0, 1 + pulse_step_d2d z)`` (fixed per chip, drawn once from the seed), plus
   cycle-to-cycle noise ``pulse_step_sigma(g, up) z'`` (fresh per pulse); a pulse never takes a
   cell past ``g_min`` or ``g_max`` (a cell programmed beyond one stays there until a pulse
   moves it back); stuck cells do not move (the rule of :mod:`nvmkit.core.update`'s numpy
   reference, which a test compares this sampler with). The pulses of one update are applied one
   pulse index at a time in the graph (``tf.while_loop`` up to the largest count), pulse ``k``
   on the cells with more than ``k`` pulses only (gathered, moved, scattered back), so the work
   is the number of pulses; a device whose steps are constant and noiseless is applied in closed
   form (``n`` pulses move a cell by ``n`` steps; the counts and pulses compiled with XLA), so its
   resolution is set by the step alone: the bundled ``ideal`` device with ``update_step =
   2**-24`` (a step of ``g_range 2^-24``, up to 2^24 pulses) is unlimited resolution at float32
   precision.

   **Differential pairs**: a pulse that raises a weight goes to ``G-`` as a down pulse while
   ``G-`` is more than half a nominal step above ``g_min``, else to ``G+`` as an up pulse (and
   the mirror for lowering it): the cell opposite the update is emptied first, so that one cell
   of every pair stays at ``g_min`` as programming leaves it, and a weight crosses zero by
   handing over from one cell to the other. Both up and down steps of the device are used (its
   asymmetry acts). The offset scheme's single cell takes up pulses to raise, down to lower.

Digital parameters (a digital bias, layers that are not mapped) take plain SGD steps with the
same rate. Not modelled while training: drift (the start is the state ``drift_time`` after
programming, and it stays), the column ADCs' offsets and gain errors on the backward read (the
forward read has them), and periodic refresh of saturated pairs; wires, drift compensation and
chip variation are refused. The device's numpy update model is tabulated once (:class:`UpdateTables`, the
:class:`nvmkit.engine.device_aware.Curve` machinery) and interpolated in the graph.

The conductances are the state: the weights are read back from them (:meth:`weights`),
:meth:`evaluate` reads the trained chip itself, :meth:`pulses_fired` counts the pulses each core
took, :meth:`copy_back` writes the weights into the user's model and :meth:`trained_chip` returns
the chip (:class:`TrainedChip`), which a run programs onto every Monte Carlo trial of its converted
model to evaluate the chip that learned, not its weights programmed afresh; the layers' float kernels
are never updated and enter the read only as ``kernel + (read-back - kernel)``. ``headroom``
maps the largest weight to ``g_max / headroom`` (1: the deployment's mapping, the largest weights
cannot grow; the exactness tests use 2).

Random streams: the starting state is the programming ``convert(model, device, crossbar,
seed=seed)`` draws (the same chain, :func:`nvmkit.engine.convert.reprogram`); forward read
noise from the analog layers' seed generators; the backward read noise, the stochastic trains
and the pulse noise from TensorFlow's stateless generators keyed by
``SeedSequence(seed, spawn_key=(5, layer, core, purpose))``, the update step and the read or
pulse index; the device-to-device factors from ``SeedSequence(seed, spawn_key=(5, layer, core,
3))``; the mini-batch order from ``SeedSequence(seed, spawn_key=(5, 0, 0, 4))``.
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
from nvmkit.engine.device_aware import (GRID, Curve, ProgrammingTables, _read_curves, _Seed,
                                         effects_not_trained)

F32 = np.float32
_IN_PLACE = 5  # spawn key (convert.py uses 0, 2 and 3; device-aware training 4)
_BACKWARD, _TRAINS, _PULSE, _D2D, _ORDER = 0, 1, 2, 3, 4  # purposes of the draws
PULSE_SCHEMES = ("deterministic", "stochastic")


def require_update_model(device, what: str = "on-chip learning") -> None:
    """Refuse, in one line naming the fix, anything but a device that states an update model
    (:func:`nvmkit.core.update.require_pulse_update`)."""
    from nvmkit.core.update import require_pulse_update

    if not isinstance(device, Device):
        raise ConfigError(f"{what}: device must be a nvmkit Device, got {type(device).__name__}")
    require_pulse_update(device, what)


class UpdateTables:
    """A device's update model tabulated on ``[g_min, g_max]``: the mean step of an up and of a
    down pulse and their cycle-to-cycle spreads (:class:`Curve`), the nominal step (the mean of
    the two step magnitudes over the grid, the unit pulse counts are quantised in) and the cap
    on pulses per update."""

    def __init__(self, device: Device, n: int = GRID):
        require_update_model(device)
        d = device
        name = f"device '{d.name}'"
        self.device = d

        def curve(fn, what):
            return Curve(lambda g: np.asarray(fn(g), dtype=np.float64), d.g_min, d.g_max,
                         f"{name} {what}", n)

        self.up = curve(lambda g: d.pulse_step(g, True), "pulse_step(up)")
        self.down = curve(lambda g: d.pulse_step(g, False), "pulse_step(down)")
        if np.any(self.up.values < 0) or np.any(self.down.values > 0):
            raise ConfigError(f"{name}: pulse_step(g, up=True) must be >= 0 and pulse_step(g, "
                              "up=False) <= 0 on [g_min, g_max]; fix the device's update model")
        sd = [curve(lambda g, u=u: d.pulse_step_sigma(g, u), f"pulse_step_sigma({w})")
              for u, w in ((True, "up"), (False, "down"))]
        for c in sd:
            if np.any(c.values < 0):
                raise ConfigError(f"{name}: pulse_step_sigma must be >= 0; fix the device's update model")
        self.up_sd, self.down_sd = [None if c.constant == 0.0 else c for c in sd]
        self.nominal = float(np.mean(np.abs(self.up.values)) + np.mean(np.abs(self.down.values))) / 2
        if not self.nominal > 0:
            raise ConfigError(f"{name}: pulse_step is 0 everywhere; a pulse must move the cell")
        self.d2d = float(getattr(d, "pulse_step_d2d", 0.0) or 0.0)
        if self.d2d < 0:
            raise ConfigError(f"{name}: pulse_step_d2d must be >= 0")
        cap = getattr(d, "max_pulses", None)
        self.max_pulses = int(cap) if cap is not None else int(math.ceil(d.g_range / self.nominal))
        if self.max_pulses < 1:
            raise ConfigError(f"{name}: max_pulses must be >= 1")
        #: constant, noiseless steps: n pulses applied in closed form
        self.closed = (self.up.constant is not None and self.down.constant is not None
                       and self.up_sd is None and self.down_sd is None)

    def steps(self, g, up):
        """Mean step and its spread at states ``g`` for pulses of direction ``up`` (bool tensor)."""
        sds = (self.up_sd, self.down_sd)
        if self.up.constant is not None and self.down.constant is not None and all(
                c is None or c.constant is not None for c in sds):  # no table to read
            mean = ops.where(up, self.up.constant, self.down.constant)
            if sds == (None, None):
                return mean, None
            return mean, ops.where(up, *[0.0 if c is None else c.constant for c in sds])
        curves = [c for c in (self.up, self.down, self.up_sd, self.down_sd) if c is not None]
        d = self.device  # the model is stated on [g_min, g_max]: beyond, its value at the bound
        at = _read_curves(curves, ops.clip(g, float(F32(d.g_min)), float(F32(d.g_max))))
        mean = ops.where(up, at[id(self.up)], at[id(self.down)])
        sd = None
        if self.up_sd is not None or self.down_sd is not None:
            zero = ops.zeros_like(g)
            sd = ops.where(up, at[id(self.up_sd)] if self.up_sd is not None else zero,
                           at[id(self.down_sd)] if self.down_sd is not None else zero)
        return mean, sd


# -- the pulses (pure functions of tensors, tested on their own) -------------------------------------

def _bounded(new, g, g_min, g_max):
    """A pulse never takes a cell past g_min or g_max; a cell beyond one stays beyond it (an
    unbounded device: ``g_min``/``g_max`` None, no clip)."""
    if g_min is None:
        return new
    return ops.minimum(ops.maximum(new, ops.minimum(g, g_min)), ops.maximum(g, g_max))


def apply_pulses(states: list, counts, tables: UpdateTables, *, factors=None, stuck=None,
                 seed=None, closed: bool | None = None):
    """The cells after ``counts`` pulses (int32, (rows, cols): + raises the weight, - lowers it).

    ``states``: [G+, G-] of a differential pair or [G] of the offset scheme, float32 (rows,
    cols); ``factors``: each cell's device-to-device step factor (same layout) or None;
    ``stuck``: each cell's stuck mask (bool, same layout) or None; ``seed``: a (2,) int32
    stateless seed of the pulse noise (needed when the device has any). ``closed``: apply the
    closed form (default: when the device's steps are constant and noiseless)."""
    import tensorflow as tf

    d = tables.device
    g_min, g_max = float(F32(d.g_min)), float(F32(d.g_max))
    h = float(F32(tables.nominal / 2))
    lo, hi = (g_min, g_max) if getattr(d, "bounded", True) else (None, None)
    counts = ops.cast(counts, "int32")
    m = ops.abs(counts)
    raise_w = counts > 0
    pair = len(states) == 2
    nf = factors if factors is not None else [None] * len(states)
    closed = tables.closed if closed is None else closed
    if closed:
        out = _closed_form(states, m, raise_w, tables, nf, g_min, lo, hi, h)
    else:
        if (tables.up_sd is not None or tables.down_sd is not None) and seed is None:
            raise NvmkitError("apply_pulses: the device has pulse noise; pass a seed")

        # pulse k moves only the cells with more than k pulses: their (flat) indices shrink from
        # one pulse to the next, so the work is the number of pulses, not max count x cells
        shape = ops.shape(states[0])
        flat = [ops.reshape(g, (-1,)) for g in states]
        m_f, rw_f = ops.reshape(m, (-1,)), ops.reshape(raise_w, (-1,))
        f_f = [None if f is None else ops.reshape(f, (-1,)) for f in nf]
        noisy = tables.up_sd is not None or tables.down_sd is not None
        idx0 = ops.cast(ops.reshape(tf.where(m_f > 0), (-1,)), "int32")

        def body(k, idx, *gs):
            head = [tf.gather(g, idx) for g in gs]
            up_w = tf.gather(rw_f, idx)
            if pair:  # the cell opposite the update first, while it is above g_min + h
                gp, gn = head
                neg_down = up_w & (gn > g_min + h)
                pos_down = (~up_w) & (gp > g_min + h)
                # G+ moves up when raising and G- is empty, down when lowering and it is not
                moves = [(up_w & ~neg_down) | pos_down, ((~up_w) & ~pos_down) | neg_down]
                ups = [up_w, ~up_w]
            else:
                moves, ups = [None], [up_w]
            z = None
            if noisy:
                z = xops.standard_normal(ops.shape(idx), _Seed(
                    tf.random.experimental.stateless_fold_in(seed, k)))
            new = []
            for g, g_all, mv, up, f in zip(head, gs, moves, ups, f_f):
                mean, sd = tables.steps(g, up)
                step = mean if f is None else mean * tf.gather(f, idx)
                if sd is not None:
                    step = step + sd * z
                moved = _bounded(g + step, g, lo, hi)
                if mv is not None:
                    moved = ops.where(mv, moved, g)
                new.append(tf.tensor_scatter_nd_update(g_all, ops.expand_dims(idx, 1), moved))
            nxt = tf.boolean_mask(idx, tf.gather(m_f, idx) > k + 1)
            return (k + 1, nxt, *new)

        loop = tf.while_loop(lambda k, idx, *gs: ops.size(idx) > 0, body,
                             (tf.constant(0, dtype="int32"), idx0, *flat),
                             shape_invariants=(tf.TensorShape([]), tf.TensorShape([None]),
                                               *[g.shape for g in flat]))
        out = [ops.reshape(g, shape) for g in loop[2:]]
    if stuck is not None:
        out = [ops.where(s, g0, g) for g, g0, s in zip(out, states, stuck)]
    return out


def _closed_form(states, m, raise_w, tables: UpdateTables, factors, g_min, lo, hi, h):
    """``m`` pulses at once for constant, noiseless steps: the loop of :func:`apply_pulses` in
    closed form (the same rule for the pairs)."""
    up, down = float(tables.up.constant), -float(tables.down.constant)  # magnitudes
    mf = ops.cast(m, "float32")

    def step(f, size):
        return size if f is None else f * size

    def lower(g, n, f):  # n down pulses
        return ops.where(n > 0, _bounded(g - n * step(f, down), g, lo, hi), g)

    def lift(g, n, f):  # n up pulses
        return ops.where(n > 0, _bounded(g + n * step(f, up), g, lo, hi), g)

    if len(states) == 1:
        g, f = states[0], factors[0]
        return [ops.where(raise_w, lift(g, mf, f), lower(g, mf, f))]
    gp, gn = states
    fp, fn = factors

    def empties(g, f):  # down pulses the cell takes before it is within h of g_min
        size = step(f, down)
        need = ops.ceil((g - (g_min + h)) / ops.maximum(size, 1e-38))
        need = ops.where(g > g_min + h, need, 0.0)
        return ops.where(size > 0, ops.minimum(need, mf), ops.where(g > g_min + h, mf, 0.0))

    n_neg = ops.where(raise_w, empties(gn, fn), 0.0)  # raising: G- first
    n_pos = ops.where(raise_w, 0.0, empties(gp, fp))  # lowering: G+ first
    gp_new = ops.where(raise_w, lift(gp, mf - n_neg, fp), lower(gp, n_pos, fp))
    gn_new = ops.where(raise_w, lower(gn, n_neg, fn), lift(gn, mf - n_pos, fn))
    return [gp_new, gn_new]


def stochastic_counts(x, delta, scale: float, slots: int, seed):
    """Signed coincidence counts (rows, cols) of Gokmen and Vlasov's stochastic pulse trains for
    reads ``x`` (M, rows) and errors ``delta`` (M, cols): ``E = -scale * x^T delta`` while every
    probability stays <= 1 (``scale`` = lr / weight change of one pulse). ``seed``: (2,) int32."""
    import tensorflow as tf

    x = ops.convert_to_tensor(x, dtype="float32")
    delta = ops.convert_to_tensor(delta, dtype="float32")
    ax, ad = ops.abs(x), ops.abs(delta)
    xm = ops.max(ax, axis=-1, keepdims=True)
    dm = ops.max(ad, axis=-1, keepdims=True)
    ok = (xm > 0) & (dm > 0)
    xm_, dm_ = ops.where(ok, xm, 1.0), ops.where(ok, dm, 1.0)
    c = math.sqrt(scale / slots)
    p = ops.where(ok, ax * (c * ops.sqrt(dm_ / xm_)), 0.0)  # (M, rows)
    q = ops.where(ok, ad * (c * ops.sqrt(xm_ / dm_)), 0.0)  # (M, cols)
    s0 = tf.random.experimental.stateless_fold_in(seed, 0)
    s1 = tf.random.experimental.stateless_fold_in(seed, 1)
    mrows, rows, cols = ops.shape(x)[0], x.shape[-1], delta.shape[-1]
    u = tf.random.stateless_uniform((mrows, slots, rows), seed=s0)
    v = tf.random.stateless_uniform((mrows, slots, cols), seed=s1)
    a = ops.cast(u < ops.expand_dims(p, 1), "float32") * ops.expand_dims(ops.sign(x), 1)
    b = ops.cast(v < ops.expand_dims(q, 1), "float32") * ops.expand_dims(ops.sign(delta), 1)
    n = ops.matmul(ops.transpose(ops.reshape(a, (-1, rows))), ops.reshape(b, (-1, cols)))
    return -n


# -- the layers' hooks -------------------------------------------------------------------------------

class _Cells:
    """One core's cells: the conductance variables and what is fixed per chip."""

    def __init__(self, trainer, layer_index: int, core, xbar, states: list, stuck):
        self.core, self.index = core, layer_index
        tag = f"{core.layer.name}_{core.tag or 'core'}"
        self.update_fn = None
        #: pulses fired on this core's cells since training began (a bound or a stuck cell
        #: stops the move, not the pulse)
        self.fired = keras.Variable(0, dtype="int64", trainable=False, name=f"{tag}pulses")
        self.c = core.layer.cores.index(core)
        self.c2w = float(xbar.current_to_weight)
        self.g_offset = float(xbar.g_offset)
        self.w_scale = float(xbar.w_scale)
        self.shape = tuple(states[0].shape[1:])
        self.g = [keras.Variable(np.asarray(s[0], F32), trainable=False, name=f"{tag}g{j}")
                  for j, s in enumerate(states)]
        self.stuck = None if stuck is None else [ops.convert_to_tensor(s) for s in stuck]
        self.factors = None
        d2d = trainer.tables.d2d
        if d2d > 0:
            rng = np.random.default_rng(np.random.SeedSequence(
                trainer.seed, spawn_key=(_IN_PLACE, layer_index, self.c, _D2D)))
            self.factors = [ops.convert_to_tensor(np.maximum(
                1.0 + d2d * rng.standard_normal(self.shape), 0.0).astype(F32)) for _ in states]
        self.keys = {p: int(np.random.SeedSequence(
            trainer.seed, spawn_key=(_IN_PLACE, layer_index, self.c, p)).generate_state(1)[0] >> 1)
            for p in (_BACKWARD, _TRAINS, _PULSE)}

    def weights(self, states=None):
        g = [v.value for v in self.g] if states is None else states
        diff = g[0] - g[1] if len(g) == 2 else g[0] - self.g_offset
        return diff * self.c2w


class _Hook:
    """What an analog layer calls while it trains in place: its state read from the conductances
    (:meth:`state`) and the read wrapped with the transposed backward read (:meth:`wrap_read`)."""

    def __init__(self, trainer: "InPlaceTraining", index: int):
        self.trainer, self.index = trainer, index
        self._last: dict[int, tuple] = {}

    def state(self, core, kernel2d, bias) -> dict:
        import tensorflow as tf

        graph = None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
        last = self._last.get(id(core))
        if graph is not None and last is not None and last[0] is graph and last[1] is kernel2d \
                and last[2] is bias:
            return last[3]
        tr = self.trainer
        cells = tr._cells[id(core)]
        # a tensor of its own (matrix() returns the kernel itself without a bias row): the read
        # is kernel + (read-back - full), so d loss / d full is minus the gradient of the read
        full = tf.identity(core.matrix(kernel2d, bias))
        st = {"delta": ops.expand_dims(cells.weights() - full, 0), "read_sd": None, "read_var": None}
        if core.read_sd is not None:
            st["read_sd"] = core.read_sd.value  # a state-independent read spread: as programmed
        elif core.read_var is not None:
            st["read_var"] = ops.expand_dims(tr._read_variance(cells), 0)
        for name in ("dac_range", "dac_signed", "adc_range"):
            v = getattr(core, name)
            st[name] = None if v is None else v.value
        probe = None
        if tr.pulses == "stochastic":
            probe = ops.zeros(cells.shape, dtype="float32")
            if tr._tape is not None:
                tr._tape.watch(probe)
        tr._record[id(core)] = {"full": full, "probe": probe, "reads": 0}
        st["_probe"] = probe
        if graph is not None:
            self._last[id(core)] = (graph, kernel2d, bias, st)
        return st

    def wrap_read(self, core, read, x, w, st, conv):
        """The forward read with its gradient for ``w`` (``x^T delta``, the update's input) and
        for ``x`` replaced by the transposed read of ``delta`` (:meth:`InPlaceTraining._backward`)."""
        import tensorflow as tf

        tr = self.trainer
        rec = tr._record.get(id(core))
        n = 0
        if rec is not None:
            n, rec["reads"] = rec["reads"], rec["reads"] + 1
        y = read(ops.stop_gradient(x), w)
        cells = tr._cells[id(core)]
        probe = st.get("_probe")

        @tf.custom_gradient
        def gate(x_, p_):
            def grad(dy):
                dx = tr._backward(core, cells, dy, x_, w, st, conv, n)
                counts = tr._trains(core, cells, x_, dy, n) if tr.pulses == "stochastic" \
                    else ops.zeros_like(p_)
                return dx, counts

            return tf.zeros_like(y), grad

        if probe is None:
            probe = ops.zeros((1,), dtype="float32")
        return y + gate(x, probe)


class InPlaceTraining:
    """Train ``model`` in place on ``device``: a converted twin of the model (one programmed chip,
    converters calibrated on ``calibration_data``) whose conductances are updated by the device's
    pulses (see the module docstring).

    ``learning_rate``: SGD's rate (the update is ``-lr`` times the mean-loss gradient, in pulses);
    ``pulses``: ``"deterministic"`` (default) or ``"stochastic"`` (pulse trains of ``slots``
    slots); ``loss``: a Keras loss (default: sparse categorical cross-entropy, on probabilities
    when the model ends in a softmax, else on logits).

    Use :meth:`fit` (epochs or a number of steps) or :meth:`train_step`; :meth:`weights` and
    :meth:`conductances` read the state; :meth:`copy_back` writes the weights read from the
    conductances into the original model.
    """

    def __init__(self, model, device: Device, crossbar: CrossbarConfig | None = None, *,
                 seed: int = 0, learning_rate: float = 0.01, pulses: str = "deterministic",
                 slots: int = 10, headroom: float = 1.0, calibration_data=None, loss=None,
                 fold_batchnorm: bool = True):
        from nvmkit.core.component import check_int, check_positive, check_seed
        from nvmkit.engine.convert import _convert, analog_layers
        from nvmkit.engine.layers import AnalogEinsumDense

        owner = "in-place training"
        if keras.backend.backend() != "tensorflow":
            raise ConfigError(f"{owner} draws its pulses with TensorFlow's stateless generators; "
                              f"run it with KERAS_BACKEND=tensorflow (got {keras.backend.backend()})")
        require_update_model(device, owner)
        self.seed = check_seed(owner, "seed", seed)
        self.learning_rate = check_positive(owner, "learning_rate", learning_rate)
        if pulses not in PULSE_SCHEMES:
            raise ConfigError(f"{owner}: pulses must be one of {', '.join(PULSE_SCHEMES)}, got {pulses!r}")
        self.pulses = pulses
        self.slots = check_int(owner, "slots", slots, 1)
        self.headroom = check_positive(owner, "headroom", headroom)
        if self.headroom < 1:
            raise ConfigError(f"{owner}: headroom must be >= 1 (the largest weight maps to "
                              f"g_max / headroom), got {headroom}")
        config = crossbar if crossbar is not None else CrossbarConfig()
        untrained = effects_not_trained(config)
        if untrained:
            raise ConfigError(f"{owner} does not model {', '.join(untrained)} yet; switch it off "
                              "in the crossbar settings")
        if config.converters.dac_bits is not None and config.converters.dac_bits < 2:
            raise ConfigError(f"{owner} drives the signed errors of the backward read through the "
                              "layers' DACs; set converters.dac_bits >= 2")
        self.tables = UpdateTables(device)
        self.read_tables = ProgrammingTables(device, config)
        self.device, self.crossbar_config = device, config
        self.model, self._originals, self._folds = _convert(
            model, device, config, trials=1, seed=self.seed, calibration_data=calibration_data,
            fold_batchnorm=fold_batchnorm)
        self.layers = analog_layers(self.model)
        if len(self.model.inputs) != 1:
            raise ConfigError(f"{owner} takes models with one input; this one has "
                              f"{len(self.model.inputs)} (train it with DeviceAwareTraining)")
        for layer in self.layers:
            bias = getattr(layer, "bias", None)
            if isinstance(layer, AnalogEinsumDense) and bias is not None \
                    and math.prod(bias.shape) != layer.n_out:
                # its bias row's cells, one per column, would learn apart; one Keras bias value
                # spans several of them
                raise ConfigError(f"{owner}: layer '{layer.name}' has an EinsumDense bias over some "
                                  "of its output axes only (bias_axes), one value for several "
                                  "crossbar columns; give it bias_axes over every output axis of "
                                  "the kernel, or no bias")
        self._tape = None
        self._record: dict[int, dict] = {}
        self._cells: dict[int, _Cells] = {}
        for i, (core, xbar, states, stuck) in enumerate(self._programmed()):
            self._cells[id(core)] = _Cells(self, self._layer_index[id(core)], core, xbar, states, stuck)
        for i, layer in enumerate(self.layers):
            if self.pulses == "stochastic" and any(c.depthwise is not None for c in layer.cores) \
                    or self.pulses == "stochastic" and type(layer).__name__ in (
                        "AnalogConv1D", "AnalogConv2D", "AnalogDepthwiseConv2D", "AnalogSeparableConv2D"):
                raise ConfigError(f"{owner}: stochastic pulse trains are implemented for dense and "
                                  f"recurrent layers, not {layer.name}; use pulses=deterministic")
            layer.programming = _Hook(self, i)
        analog = {id(v) for layer in self.layers for core in layer.cores
                  for v in _core_variables(layer, core)}
        self.digital = [v for v in self.model.trainable_variables if id(v) not in analog]
        self.step = keras.Variable(0, dtype="int64", trainable=False, name="in_place_step")
        self.loss = loss if loss is not None else keras.losses.SparseCategoricalCrossentropy(
            from_logits=not _ends_in_softmax(self.model))
        self._step_fn = None
        self._eval_fn = None

    # -- the starting state: the programming convert drew -------------------------------------
    def _programmed(self):
        """(core, Crossbar, states [(1, rows, cols)] per cell, stuck masks or None) per core, the
        programming :func:`nvmkit.engine.convert.reprogram` drew for this seed (the same streams,
        in the same order), checked against what the layers hold."""
        from nvmkit.engine.convert import _PROGRAM
        from nvmkit.engine.crossbar import STUCK_AT_GMAX, STUCK_AT_GMIN

        out, self._layer_index = [], {}
        from nvmkit.engine.crossbar import Crossbar, ProgrammedCrossbar

        cores = []
        for i, layer in enumerate(self.layers):
            for core, w, b in layer.core_weights():
                xb = core.crossbar(w, b)
                if self.headroom != 1:  # the same mapping with the largest weight at g_max / headroom
                    xb = Crossbar(w, b if core.has_bias else None, xb.device, xb.config, name=xb.name,
                                  w_scale=xb.w_scale * self.headroom)
                cores.append((i, core, xb, w, b))
        gen = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_PROGRAM, 0)))
        for i, core, xb, w, b in cores:
            chip = core.stored_chip()
            p = xb.program(gen, 1, chip=chip.select(0))
            user = np.vstack([w, b[None]]) if core.bias_row else w
            if self.headroom != 1:  # the layers hold this programming (its read noise among it)
                core.assign(ProgrammedCrossbar(xb, p.states), user.astype(F32))
            held = core.delta.numpy()[0] + user
            if not np.allclose(p.weights()[0], held, rtol=0, atol=1e-6 * max(xb.w_scale, 1e-30)):
                raise NvmkitError(f"{core.layer.name}: in-place training's programming differs from "
                                  "convert's; report it as a bug")
            stuck = None
            if chip.stuck is not None:
                mask = chip.select(0).stuck[0]
                stuck = [(mask[j] == STUCK_AT_GMIN) | (mask[j] == STUCK_AT_GMAX)
                         for j in range(xb.devices_per_weight)]
            self._layer_index[id(core)] = i
            out.append((core, xb, p.states, stuck))
        return out

    def _read_variance(self, cells: _Cells):
        """Per-weight read variance (rows, cols) in weight units from the cells' states."""
        tb = self.read_tables
        var = None
        for v in cells.g:
            sd = tb.read(v.value)
            var = ops.square(sd) if var is None else var + ops.square(sd)
        return var * (tb.sigma_scale * cells.c2w) ** 2

    # -- the backward read and the trains --------------------------------------------------------
    def _seed(self, cells: _Cells, purpose: int, n: int):
        import tensorflow as tf

        base = ops.stack([ops.convert_to_tensor(cells.keys[purpose], dtype="int32"),
                          ops.cast(self.step.value, "int32")])
        return tf.random.experimental.stateless_fold_in(base, n)

    def _backward(self, core, cells, dy, x, w, st, conv, n):
        """dL/dx of one read: ``dy`` read through the transposed crossbar (its read noise, the
        layer's DAC and ADC with dynamic full scales)."""
        import tensorflow as tf

        w_in = w[:, :core.n_in]

        def transposed(d, m):
            if conv is None and core.depthwise is None:
                return ops.matmul(d, ops.transpose(m, (0, 2, 1)))
            zero = tf.zeros_like(x)
            with tf.GradientTape() as t:
                t.watch(zero)
                out = conv(zero, m[0]) if conv is not None else xops._product(zero, m, core.depthwise)
            return t.gradient(out, zero, output_gradients=d)

        noisy = (st["read_var"] is not None or st["read_sd"] is not None)
        converted = core.dac_bits is not None or core.adc_bits is not None
        if not noisy and not converted:
            return transposed(dy, w_in)
        # per read (a row of a dense read; a whole sample of a convolution, whose transposed read
        # mixes the output positions)
        axes = -1 if conv is None else tuple(range(1, len(dy.shape)))
        scale = ops.max(ops.abs(dy), axis=axes, keepdims=True)
        scale = ops.where(scale > 0, scale, 1.0)
        d = dy / scale
        if core.dac_bits is not None:
            d = xops.quantize(d, 1.0, core.dac_bits, True, training=False)
        tiles = [(0, core.n_out)]  # one conversion per row and column tile, as the forward's per row tile
        if core.adc_bits is not None and core.depthwise is None:
            tc = core.layer.crossbar_config.mapping.tile_cols
            tiles = [(c, min(c + tc, core.n_out)) for c in range(0, core.n_out, tc)]
        base = self._seed(cells, _BACKWARD, n) if noisy else None
        total = None
        for t, (c0, c1) in enumerate(tiles):
            if len(tiles) == 1:
                dt, wt, var, sd, seed = d, w_in, st["read_var"], st["read_sd"], base
            else:  # the tile's columns: sliced (dense), masked (a convolution's kernel keeps its shape)
                if conv is None:
                    dt, wt = d[..., c0:c1], w_in[..., c0:c1]
                    var = None if st["read_var"] is None else st["read_var"][..., c0:c1]
                    sd = None if st["read_sd"] is None else st["read_sd"][..., c0:c1]
                else:
                    mask = np.zeros(core.n_out, F32)
                    mask[c0:c1] = 1.0
                    dt, wt = d * mask, w_in * mask
                    var = None if st["read_var"] is None else st["read_var"] * mask
                    sd = None if st["read_sd"] is None else st["read_sd"] * mask
                seed = None if base is None else tf.random.experimental.stateless_fold_in(base, t)
            dx = transposed(dt, wt)
            if noisy:
                if var is not None:
                    s2 = transposed(ops.square(dt), var[:, :core.n_in])
                elif conv is None and core.depthwise is None:  # the same for every row: one sum
                    s2 = ops.sum(ops.square(dt) * ops.square(sd), axis=-1, keepdims=True) \
                        * ops.ones((1, 1, core.n_in), dtype="float32")
                else:
                    s2 = transposed(ops.square(dt), ops.square(sd) * ops.ones_like(wt))
                z = xops.standard_normal(ops.shape(dx), _Seed(seed))
                noise = ops.sqrt(ops.maximum(s2, 0.0)) * z
            if core.adc_bits is not None:  # the tile's ADC, its full scale the tile's largest output
                r = ops.max(ops.abs(dx), axis=axes, keepdims=True)
                r = ops.where(r > 0, r, 1.0)
                dx = dx + noise if noisy else dx
                dx = xops.quantize(dx, r, core.adc_bits, True, training=False)
            elif noisy:
                dx = dx + noise
            total = dx if total is None else total + dx
        return total * scale

    def _trains(self, core, cells, x, dy, n):
        """The signed coincidence counts of one read's stochastic pulse trains (rows, cols)."""
        rows_x = ops.reshape(x, (-1, core.n_in))
        if core.bias_row:
            rows_x = ops.concatenate([rows_x, ops.ones_like(rows_x[:, :1])], axis=1)
        delta = ops.reshape(dy, (-1, core.n_out))
        return stochastic_counts(rows_x, delta, self.learning_rate / (self.tables.nominal * cells.c2w),
                                 self.slots, self._seed(cells, _TRAINS, n))

    # -- one update ------------------------------------------------------------------------------
    def _counts(self, cells: _Cells, grad_w, probe_grad):
        """Pulse counts (int32) of one update from the weight gradient (deterministic) or the
        trains' coincidences (stochastic), capped at max_pulses."""
        cap = float(self.tables.max_pulses)
        if self.pulses == "stochastic":
            n = probe_grad
        else:
            n = ops.round(-self.learning_rate * grad_w / (cells.c2w * self.tables.nominal))
        return ops.cast(ops.clip(n, -cap, cap), "int32")

    def _update(self, cells: _Cells):
        """One core's update (counts, then pulses), compiled with XLA when the pulses take the
        closed form (its few dozen elementwise steps over every cell become one fused loop)."""
        import tensorflow as tf

        def update(states, grad_w, probe_grad, seed):
            counts = self._counts(cells, grad_w, probe_grad)
            new = apply_pulses(states, counts, self.tables, factors=cells.factors,
                               stuck=cells.stuck, seed=seed)
            return new, ops.sum(ops.cast(ops.abs(counts), "int64"))

        if not self.tables.closed:
            return update
        if cells.update_fn is None:
            cells.update_fn = tf.function(update, jit_compile=True, autograph=False)
        return cells.update_fn

    def _train_step(self, x, y):
        import tensorflow as tf

        self._record = {}
        with tf.GradientTape() as tape:
            self._tape = tape
            pred = self.model(x, training=True)
            loss = self.loss(y, pred)
            loss = ops.mean(loss) if len(loss.shape) else loss
        self._tape = None
        # a frozen layer (trainable=False, as Keras's transfer learning sets it) is read, not updated
        cores = [c for c in self._cells.values() if id(c.core) in self._record and c.core.layer.trainable]
        fulls = [self._record[id(c.core)]["full"] for c in cores]
        probes = [self._record[id(c.core)]["probe"] for c in cores] if self.pulses == "stochastic" else []
        grads = tape.gradient(loss, [*fulls, *probes, *self.digital],
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        gf, gp, gd = grads[:len(fulls)], grads[len(fulls):len(fulls) + len(probes)], \
            grads[len(fulls) + len(probes):]
        for j, cells in enumerate(cores):
            # the read is kernel + (read-back - full): d loss / d full = - d loss / d w
            new, fired = self._update(cells)([v.value for v in cells.g], -gf[j],
                                             gp[j] if probes else None, self._seed(cells, _PULSE, 0))
            for v, g in zip(cells.g, new):
                v.assign(g)
            cells.fired.assign_add(fired)
        for v, g in zip(self.digital, gd):
            if isinstance(g, tf.IndexedSlices):  # an Embedding's rows: a sparse gradient
                g = tf.convert_to_tensor(g)
            v.assign_sub(self.learning_rate * g)
        self.step.assign_add(1)
        if len(pred.shape) == 2:
            guess = ops.cast(ops.argmax(pred, axis=-1), "int64")
            hits = ops.cast(guess == ops.cast(ops.reshape(y, (-1,)), "int64"), "float32")
        else:  # not a classifier's scores: no accuracy
            hits = ops.zeros((1,))
        return loss, ops.mean(hits)

    def train_step(self, x, y) -> dict:
        """One update on the mini-batch ``(x, y)``; returns its loss and accuracy."""
        import tensorflow as tf

        if self._step_fn is None:
            self._step_fn = tf.function(self._train_step, autograph=False, reduce_retracing=True)
        loss, acc = self._step_fn(ops.convert_to_tensor(np.asarray(x, F32)), ops.convert_to_tensor(y))
        return {"loss": float(loss), "accuracy": float(acc)}

    def fit(self, x, y, *, epochs: int | None = None, steps: int | None = None,
            batch_size: int = 32, shuffle: bool = True, callback=None) -> dict:
        """Train for ``epochs`` passes over ``(x, y)`` or ``steps`` mini-batches (one of them;
        mini-batches drawn in a seeded order, reshuffled every pass). ``callback(epoch, logs)``
        after each pass. Returns the history: per pass, the mean loss and accuracy."""
        from nvmkit.core.component import check_int

        if (epochs is None) == (steps is None):
            raise ConfigError("in-place training: give epochs or steps, not both")
        x, y = np.asarray(x, F32), np.asarray(y)
        batch_size = check_int("in-place training", "batch_size", batch_size, 1)
        per_pass = max(1, math.ceil(len(x) / batch_size))
        total = steps if steps is not None else check_int("in-place training", "epochs", epochs, 1) * per_pass
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_IN_PLACE, 0, 0, _ORDER)))
        history: dict[str, list] = {"loss": [], "accuracy": []}
        done, epoch = 0, 0
        while done < total:
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            losses, accs = [], []
            for s in range(0, len(x), batch_size):
                if done >= total:
                    break
                idx = order[s:s + batch_size]
                logs = self.train_step(x[idx], y[idx])
                losses.append(logs["loss"])
                accs.append(logs["accuracy"])
                done += 1
            logs = {"loss": float(np.mean(losses)), "accuracy": float(np.mean(accs))}
            history["loss"].append(logs["loss"])
            history["accuracy"].append(logs["accuracy"])
            if callback is not None:
                callback(epoch, logs)
            epoch += 1
        return history

    # -- reading the state -----------------------------------------------------------------------
    def conductances(self) -> list[dict]:
        """Per core of every analog layer: ``layer``, ``core``, ``states`` (the cells' conductances,
        numpy, device units: [G+, G-] or [G]) and ``current_to_weight``."""
        return [{"layer": c.core.layer.name, "core": c.core.tag,
                 "states": [v.numpy() for v in c.g], "current_to_weight": c.c2w}
                for c in self._cells.values()]

    def pulses_fired(self) -> list[dict]:
        """Per core: ``layer``, ``core``, ``cells`` (its cell count) and ``pulses`` (the pulses
        fired on its cells since training began, either sign): what a training energy prices
        with the device's ``pulse_energy``."""
        return [{"layer": c.core.layer.name, "core": c.core.tag,
                 "cells": len(c.g) * math.prod(c.shape), "pulses": int(c.fired.numpy())}
                for c in self._cells.values()]

    def pulses_per_cell(self) -> dict[str, float]:
        """Per analog layer (by name), the mean pulses per cell per update step so far (all its
        cores): what ``estimate_training_step(..., pulses_per_cell=...)`` of the crossbar energy
        estimator takes as measured counts."""
        steps = max(int(self.step.numpy()), 1)
        pulses: dict[str, int] = {}
        cells: dict[str, int] = {}
        for row in self.pulses_fired():
            pulses[row["layer"]] = pulses.get(row["layer"], 0) + row["pulses"]
            cells[row["layer"]] = cells.get(row["layer"], 0) + row["cells"]
        return {name: pulses[name] / (cells[name] * steps) for name in pulses}

    def evaluate(self, x, y, batch_size: int = 256) -> float:
        """Accuracy of the trained chip on ``(x, y)``: the model read from its conductances as
        they are (read noise fresh at every read, the converters), one chip, no reprogramming."""
        import tensorflow as tf

        from nvmkit.core.component import check_int

        batch_size = check_int("in-place training", "batch_size", batch_size, 1)
        if self._eval_fn is None:
            self._eval_fn = tf.function(lambda xb: self.model(xb, training=False),
                                        autograph=False, reduce_retracing=True)
        x, y = np.asarray(x, F32), np.asarray(y).reshape(-1)
        correct = 0
        for s in range(0, len(x), batch_size):
            scores = ops.convert_to_numpy(self._eval_fn(ops.convert_to_tensor(x[s:s + batch_size])))
            correct += int(np.sum(scores.argmax(axis=-1) == y[s:s + batch_size]))
        return correct / max(len(x), 1)

    def trained_chip(self) -> "TrainedChip":
        """The chip as training left it (a copy): each core's conductances, the mapping that reads
        them and what the chip keeps; :meth:`TrainedChip.program` makes it the programmed state
        of a converted model's every trial (what ``nvmkit run`` evaluates)."""
        cores = []
        for c in self._cells.values():
            chip = c.core.stored_chip().arrays()
            cores.append({"layer": c.core.layer.name, "core": c.core.tag,
                          "states": [np.array(v.numpy(), dtype=F32) for v in c.g],
                          "w_scale": c.w_scale, "chip": {k: np.array(a) for k, a in chip.items()}})
        return TrainedChip(_plain({"name": self.device.name, "params": self.device.get_config()}),
                           _plain(self.crossbar_config.to_dict()), cores)

    def weights(self) -> list[np.ndarray]:
        """Per core, the weights (rows, cols; bias row last when analog) read from the conductances."""
        return [ops.convert_to_numpy(c.weights()) for c in self._cells.values()]

    def copy_back(self) -> None:
        """Write the weights read from the conductances into the twin's layers and the original
        model (the twin's float kernels take them too, so that ``model`` alone holds them)."""
        import tensorflow as tf

        from nvmkit.engine.device_aware import copy_twin_back

        # every analog weight sits in exactly one cell of one core's matrix: the gradient of
        # sum(full * target) with respect to the layers' variables places each target entry in
        # its variable, whatever the layer's layout
        x = [np.zeros((1, *t.shape[1:]), F32) for t in self.model.inputs]
        self._record = {}
        variables = [v for layer in self.layers for core in layer.cores
                     for v in _core_variables(layer, core)]
        variables = list({id(v): v for v in variables}.values())
        with tf.GradientTape() as tape:
            tape.watch([v.value for v in variables])
            self.model(x[0] if len(x) == 1 else x, training=False)
            total = 0.0
            for cells in self._cells.values():
                rec = self._record.get(id(cells.core))
                if rec is not None:
                    total = total + ops.sum(rec["full"] * ops.stop_gradient(cells.weights()))
        grads = tape.gradient(total, variables)
        for v, g in zip(variables, grads):
            if g is not None:
                v.assign(g)
        copy_twin_back(self.model, self._originals, self._folds)


class TrainedChip:
    """The chip in-place training left, to be evaluated as it is: per core of every analog layer
    (in the converted model's order) the cells' conductances (``states``: [G+, G-] or [G], each
    (rows, cols), device units), ``w_scale`` (the weight mapped to ``g_max``, which reads them:
    the training's mapping, ``headroom`` included) and ``chip`` (what the chip keeps: stuck cells,
    the column ADCs' offsets and gains, :class:`nvmkit.engine.crossbar.Chip` arrays of one chip);
    with the device's name and the crossbar settings it was trained on.

    :meth:`program` makes it the programmed state of every trial of a model converted from the
    trained weights (any ``trials``): the same chip for all trials, so that a Monte Carlo run
    (:func:`nvmkit.engine.evaluate.monte_carlo` with ``keep_programming=True``) redraws only the
    read noise and the test-set noise. :meth:`to_bytes` / :meth:`from_bytes`: an ``.npz``
    (plain arrays, loaded without pickle), what the model cache keeps beside the trained model."""

    FORMAT = 1

    def __init__(self, device: dict, crossbar: dict, cores: list[dict]):
        self.device, self.crossbar, self.cores = _plain(device), _plain(crossbar), cores

    def program(self, model) -> None:
        """Assign the trained conductances to every trial of ``model`` (converted from the trained
        weights with the training's device and crossbar settings; its converters as calibrated)."""
        from nvmkit.engine.convert import analog_layers
        from nvmkit.engine.crossbar import Chip, Crossbar, ProgrammedCrossbar

        cores = [(layer, core, w, b) for layer in analog_layers(model)
                 for core, w, b in layer.core_weights()]
        if len(cores) != len(self.cores):
            raise ConfigError(f"the trained chip has {len(self.cores)} crossbars, the model "
                              f"{len(cores)}; program it on the model it was trained as")
        for (layer, core, w, b), saved in zip(cores, self.cores):
            where = f"{layer.name}{core.tag}"
            device = _plain({"name": layer.device.name, "params": layer.device.get_config()})
            if device != self.device or _plain(layer.crossbar_config.to_dict()) != self.crossbar:
                raise ConfigError(f"{where}: the chip was trained on device '{self.device['name']}' "
                                  f"with other device or crossbar settings than the model's; evaluate it "
                                  "with the training's device and crossbar")
            states = saved["states"]
            if any(s.shape != (core.rows, core.n_out) for s in states):
                raise ConfigError(f"{where}: the trained chip's cells are shaped {states[0].shape}, the "
                                  f"layer's {(core.rows, core.n_out)}; program it on the model it was "
                                  "trained as")
            xb = Crossbar(w, b if core.has_bias else None, layer.device, layer.crossbar_config,
                          name=where, w_scale=saved["w_scale"])
            if len(states) != xb.devices_per_weight:
                raise ConfigError(f"{where}: the trained chip has {len(states)} cells per weight, the "
                                  f"mapping {xb.devices_per_weight}; use the training's crossbar")
            k = layer.trials
            programmed = ProgrammedCrossbar(xb, [np.repeat(s[None], k, axis=0) for s in states])
            user = np.vstack([w, b[None]]) if core.bias_row else w
            core.assign(programmed, user.astype(F32))
            core.assign_chip(Chip(**saved["chip"]))

    def to_bytes(self) -> bytes:
        import io
        import json

        arrays = {"format": np.array(self.FORMAT), "device": np.array(json.dumps(self.device, sort_keys=True)),
                  "crossbar": np.array(json.dumps(self.crossbar, sort_keys=True)),
                  "cores": np.array(len(self.cores))}
        for i, c in enumerate(self.cores):
            arrays[f"{i}/layer"], arrays[f"{i}/core"] = np.array(c["layer"]), np.array(c["core"] or "")
            arrays[f"{i}/w_scale"] = np.array(c["w_scale"], dtype=np.float64)
            for j, g in enumerate(c["states"]):
                arrays[f"{i}/g{j}"] = np.asarray(g, F32)
            for name, a in c["chip"].items():
                arrays[f"{i}/chip_{name}"] = np.asarray(a)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TrainedChip":
        import io
        import json

        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if int(z["format"]) != cls.FORMAT:
                raise ValueError(f"trained-chip format {int(z['format'])}, expected {cls.FORMAT}")
            cores = []
            for i in range(int(z["cores"])):
                states = [z[f"{i}/g{j}"] for j in range(2) if f"{i}/g{j}" in z.files]
                chip = {k.split("/chip_", 1)[1]: z[k] for k in z.files if k.startswith(f"{i}/chip_")}
                cores.append({"layer": str(z[f"{i}/layer"]), "core": str(z[f"{i}/core"]),
                              "states": states, "w_scale": float(z[f"{i}/w_scale"]), "chip": chip})
            return cls(json.loads(str(z["device"])), json.loads(str(z["crossbar"])), cores)


def _plain(data: dict) -> dict:
    """``data`` as JSON reads it back (tuples as lists): what a saved chip is compared with."""
    import json

    return json.loads(json.dumps(data, sort_keys=True))


def _core_variables(layer, core) -> list:
    """The trainable variables whose values sit in ``core``'s crossbar matrix (a digital bias is
    not one of them)."""
    out = [v for v in layer.trainable_variables if "bias" not in v.path.split("/")[-1]]
    if core.bias_row and getattr(layer, "bias", None) is not None:
        out.append(layer.bias)
    return out


def _ends_in_softmax(model) -> bool:
    """Whether the model's output is a softmax (a Softmax layer, a layer with that activation,
    or a nested model ending in one): its loss then takes probabilities, not logits."""
    last = model.outputs[0]._keras_history.operation
    if isinstance(last, keras.Model) and getattr(last, "outputs", None):
        return _ends_in_softmax(last)
    if type(last).__name__ == "Softmax":
        return True
    return getattr(getattr(last, "activation", None), "__name__", "") == "softmax"
