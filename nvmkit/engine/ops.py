"""The crossbar read in Keras ops: one analog matrix product with its read noise and converters.

This is the part of the engine that runs on every inference, so it is written in ``keras.ops``
(it runs on whatever device the backend uses; TensorFlow is tested), with two backend calls
where Keras has no op: raw random words (:func:`random_words`) and TensorFlow's fused norm
(:func:`sum_of_squares`).
Programming (mapping, levels, programming error, clipping, drift, stuck cells) happens once per
Monte Carlo trial and calls the device model's numpy functions (docs/plugins.md); it lives in
:class:`nvmkit.engine.crossbar.Crossbar`, whose result the analog layers keep in non-trainable
variables.

Monte Carlo layout: a converted model with ``K`` programmed copies takes a batch of ``B * K``
rows in which each input sample is repeated ``K`` times (sample-major, trial-minor, as
``numpy.repeat(x, K, axis=0)`` gives). Any Keras batching whose size is a multiple of ``K``
therefore keeps whole groups, and digital layers just see a bigger batch. An analog layer
regroups its input to ``(K, B * positions, n_in)`` and reads trial ``k``'s copy for group ``k``:
one batched matrix product for all trials, no Python loop over samples or trials.

Read noise: for ``y_j = sum_i x_i (G_ij + n_ij)`` with independent ``n_ij ~ N(0, s_ij^2)``,
``y_j`` is exactly ``sum_i x_i G_ij + N(0, sum_i x_i^2 s_ij^2)``: one product of ``x**2`` with the
cell variances and one normal draw per output, never a batch x rows x cols tensor. When
``s_ij`` does not depend on the row the product collapses to ``sum_i x_i^2 * s_j^2``. A
convolution of few input rows (a first layer) sums that product tap by tap inside the noise's
own pass instead of by a second convolution (:data:`DIRECT_VARIANCE_ROWS`). Without an
ADC the tiles' partial sums are added in analog-free float, so one draw with the summed
variance is exact in distribution; with an ADC each row tile is read, noised and converted on
its own, as in hardware.

Straight-through gradients: converters round in the forward pass and pass the gradient
unchanged (Bengio et al., arXiv:1308.3432, 2013); read noise is a constant of the backward pass.
The straight-through expression costs two extra passes over the tensor per converter, so it is
built only when the layer is called with ``training`` true (Keras's ``fit`` does; a custom
training loop must call the model with ``training=True``, as for Dropout); at inference the
converter returns the rounded value itself, bit-identical to the straight-through forward value.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops


def group_trials(x, trials: int):
    """(B*K, *positions, n) in sample-major order -> (K, B*prod(positions), n)."""
    n = x.shape[-1]
    if trials == 1:
        return ops.reshape(x, (1, -1, n))
    positions = math.prod(x.shape[1:-1])
    if positions == 1:  # the mirror of ungroup_trials, so that TensorFlow's graph optimiser
        # cancels an ungroup followed by a group (Dense after Dense) instead of transposing twice
        return ops.transpose(ops.reshape(x, (-1, trials, n)), (1, 0, 2))
    x = ops.reshape(x, (-1, trials, positions, n))
    x = ops.transpose(x, (1, 0, 2, 3))
    return ops.reshape(x, (trials, -1, n))


def ungroup_trials(y, trials: int, inner_shape: tuple[int, ...]):
    """(K, B*prod(inner[:-1]), m) -> (B*K, *inner_shape): the inverse of :func:`group_trials`."""
    if trials == 1:
        return ops.reshape(y, (-1, *inner_shape))
    y = ops.reshape(y, (trials, -1, math.prod(inner_shape)))
    y = ops.transpose(y, (1, 0, 2))
    return ops.reshape(y, (-1, *inner_shape))


def random_words(shape, seed):
    """Uniform random 32-bit words of ``shape`` (int32; all 2^32 bit patterns equally likely),
    drawn from a Keras seed generator.

    Keras has no op for a generator's raw bits (``keras.random.randint`` spends a whole 32-bit
    draw on each bounded integer and cannot span 2^32 values), so this calls the backend's own:
    TensorFlow's stateless Philox generator (Salmon et al., SC 2011) with
    ``minval=maxval=None``, seeded as ``keras.random`` seeds it, or ``jax.random.bits``. Other
    backends join two 16-bit ``keras.random.randint`` draws (:func:`_words_from_randint`).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        state = seed.next()
        if state.dtype != tf.int32:  # Keras keeps TF seed states in int64; map them as it does
            state = tf.cast(tf.math.floormod(state, tf.int32.max - 1), tf.int32)
        return tf.random.stateless_uniform(shape, seed=state, minval=None, maxval=None, dtype=tf.int32)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        bits = jax.random.bits(jnp.asarray(seed.next(), dtype=jnp.uint32), tuple(shape), jnp.uint32)
        return jax.lax.bitcast_convert_type(bits, jnp.int32)
    return _words_from_randint(shape, seed)


def _words_from_randint(shape, seed):
    """Random 32-bit words from two 16-bit ``keras.random.randint`` draws (any backend)."""
    hi = keras.random.randint(shape, 0, 1 << 16, dtype="int32", seed=seed)
    lo = keras.random.randint(shape, 0, 1 << 16, dtype="int32", seed=seed)
    return ops.bitwise_or(ops.left_shift(hi, 16), lo)  # wraps to negative int32 above 2^31 - 1


#: Bits of a pair's 32-bit word: the radius from the high RADIUS_BITS, the angle from the low
#: ANGLE_BITS (see :func:`standard_normal`).
RADIUS_BITS, ANGLE_BITS = 18, 14
#: Largest |z| the sampler gives: the radius at u = 2^-(RADIUS_BITS + 1), sqrt(38 ln 2) = 5.132
MAX_ABS_NORMAL = math.sqrt(2.0 * (RADIUS_BITS + 1) * math.log(2.0))
#: Largest distance of the sampler's CDF from the normal CDF, computed exactly over all the
#: radii and angles it produces by tests/test_sampler.py (2.1e-5, nearly all from the angle's
#: grid; the issue allowed 1e-4)
CDF_ERROR_BOUND = 2.5e-5


def standard_normal(shape, seed, dtype="float32"):
    """Standard normal samples of ``shape`` by the Box-Muller transform (Box and Muller, 1958):
    ``r * cos(theta)`` and ``r * sin(theta)`` from each (radius, angle) pair, one 32-bit random
    word a pair (16 bits a sample).

    Bits: the random words dominate a noisy read's cost (TensorFlow's Philox takes several ns a
    word on a CPU), so the sampler is as coarse as its stated accuracy allows (issue 21, point
    9; it took 48 bits a pair before). A word's high 18 bits, read as a signed ``k`` in
    [-2^17, 2^17), give the radius: ``u = (k + 2^17 + 1/2) / 2^18`` in (0, 1), the centres of
    2^18 equal cells, and ``r = sqrt(-2 ln u)``, so |z| <= 5.132 (:data:`MAX_ABS_NORMAL`); its
    low 14 bits ``j`` give the angle ``theta = (j + 1/2) 2 pi / 2^14``, the centres of 2^14
    equal arcs. Radius and angle come from disjoint bits, so they are independent. Accuracy,
    computed exactly over every radius and angle the implementation produces
    (``tests/test_sampler.py``): the CDF of a sample lies within 2.1e-5 of the normal CDF
    (:data:`CDF_ERROR_BOUND`; nearly all of it from the angle's grid, near 0; the radius's adds
    at most 2^-19), and the tails reach 5.13 sigma, with a probability beyond 5 sigma of
    2.76e-7 against the normal's 2.87e-7 (each tail).

    Layout: the words are drawn in ``c`` blocks of ``m`` (:func:`normal_words_shape`: one block
    of all ``q = ceil(n / 2)`` words up to :data:`PAIR_CHUNK` of them, else blocks of
    PAIR_CHUNK, the last block filled with words of its own); block ``b`` gives ``m`` cosines,
    then the ``m`` sines of the same words; the first ``n`` samples are returned.

    Cost: the transform is plain arithmetic (``ln`` and ``cos``/``sin`` of the angle's grid by
    Cephes's polynomials, :func:`_log_unit`, :func:`_cos_sin_of_arc`; within 1e-6 of a float64
    transform of the same bit fields), so that on TensorFlow XLA compiles it into one pass over
    the words (:func:`_fused`), in the read together with the noise's scale and sum
    (:func:`_add_read_noise`): TensorFlow's own ``log``, ``cos`` and ``sin`` cost a pass over
    the tensor each, XLA's were slower still on the development CPU.
    """
    shape, n, w = _words(shape, seed)
    return _samples(w, n, shape, dtype, transform=box_muller_pairs)


#: Words per block of a large draw (:func:`standard_normal`)
PAIR_CHUNK = 1 << 18


def normal_words_shape(shape):
    """(shape, its size n, (c, m)): the blocks of words :func:`standard_normal` draws, one word a
    pair of samples: ``q = ceil(n / 2)``, ``m = min(q, PAIR_CHUNK)``, ``c = ceil(q / m)``."""
    if all(isinstance(d, numbers.Integral) for d in shape):  # static (always under JAX's jit)
        shape = tuple(int(d) for d in shape)
        n = math.prod(shape)
        q = max((n + 1) // 2, 1)
        m = min(q, PAIR_CHUNK)
        return shape, n, (-(-q // m), m)
    # a batch size known only at run time (TensorFlow graphs): the same draws
    n = ops.prod(ops.convert_to_tensor(shape))
    q = ops.maximum((n + 1) // 2, 1)
    m = ops.minimum(q, PAIR_CHUNK)
    return shape, n, ((q + m - 1) // m, m)


def _words(shape, seed):
    """(shape, n, words (c, m) int32): the random words of :func:`standard_normal`."""
    shape, n, (c, m) = normal_words_shape(shape)
    w = ops.reshape(random_words(ops.reshape(c * m, (1,)) if not isinstance(c, int) else (c * m,),
                                 seed), (c, m))
    return shape, n, w


def _samples(w, n, shape, dtype="float32", transform=None):
    """The first ``n`` normals of the words' pairs in ``shape`` (see :func:`standard_normal`)."""
    z = ops.reshape(ops.reshape((transform or _pairs_of_words)(w), (-1,))[:n], shape)
    if keras.backend.standardize_dtype(dtype) != "float32":  # e.g. float16 outputs (mixed precision)
        z = ops.cast(z, dtype)
    return z


def box_muller_pairs(w):
    """(..., m) int32 random words -> (..., 2, m) float32 standard normals: the cosines of the m
    pairs, then their sines (see :func:`standard_normal`). Always float32: ``u`` is exact
    there. On TensorFlow compiled by XLA (:func:`_fused`), as the read computes it."""
    return (_fused(_pairs_of_words) if keras.backend.backend() == "tensorflow"
            else _pairs_of_words)(w)


def _pairs_of_words(w):
    """The transform of :func:`standard_normal` in plain arithmetic (see :func:`_log_unit` and
    :func:`_cos_sin_of_arc`), so that XLA fuses it into one pass with what follows."""
    k = ops.right_shift(w, ANGLE_BITS)  # arithmetic shift: k in [-2^17, 2^17)
    u = ops.cast(k, "float32") * 2.0**-RADIUS_BITS + (0.5 + 2.0**-(RADIUS_BITS + 1))  # exact
    r = ops.sqrt(_log_unit(u) * -2.0)
    cos, sin = _cos_sin_of_arc(ops.bitwise_and(w, (1 << ANGLE_BITS) - 1))
    return ops.stack([r * cos, r * sin], axis=-2)


def _log_unit(u):
    """ln(u) in float32 for 0 < u < 1 (normal floats), to about 1 ulp: Cephes's ``logf``
    (S. L. Moshier, *Methods and Programs for Mathematical Functions*, 1989; Cephes Math
    Library, file logf.c): u = m 2^e with m in [sqrt(1/2), sqrt(2)), ln(m) from its degree-9
    polynomial in x = m - 1 and e ln 2 in two parts. Here so that the transform is plain
    arithmetic that XLA fuses (its own ``log`` and TensorFlow's cost a pass each); checked
    against float64 in ``tests/test_sampler.py``."""
    bits = _bitcast(u, "int32")
    e = ops.right_shift(bits, 23) - 127  # u > 0: the sign bit is 0
    m = _bitcast(ops.bitwise_or(ops.bitwise_and(bits, 0x007FFFFF), 0x3F800000), "float32")  # [1, 2)
    big = m > 1.41421356
    m = ops.where(big, m * 0.5, m)
    x = m - 1.0
    fe = ops.cast(ops.where(big, e + 1, e), "float32")
    z = x * x
    p = 7.0376836292e-2
    for c in (-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
              -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1):
        p = p * x + c
    y = p * x * z + fe * -2.12194440e-4 - 0.5 * z
    return x + y + fe * 0.693359375


def _bitcast(x, dtype: str):
    """The bits of a 32-bit ``x`` read as ``dtype`` (Keras's ``view`` needs a static shape on
    TensorFlow, which a tensor of unknown rank in a traced function lacks)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.bitcast(x, dtype)
    if backend == "jax":
        import jax

        return jax.lax.bitcast_convert_type(x, dtype)
    return ops.view(x, dtype)


def _cos_sin_of_arc(j):
    """cos and sin of ``theta = (j + 1/2) 2 pi / 2^ANGLE_BITS`` for integer ``j`` in
    [0, 2^ANGLE_BITS), to about 1e-7: the octant from j's high 3 bits, the angle within it (or
    its complement, in odd octants) ``x`` in (0, pi/4), exact up to one rounding, Cephes's
    ``sinf``/``cosf`` polynomials of x (Moshier 1989, files sinf.c and cosf.c), then a rotation
    by quarter turns."""
    per = 1 << (ANGLE_BITS - 3)  # arcs per octant
    octant = ops.right_shift(j, ANGLE_BITS - 3)
    i = ops.bitwise_and(j, per - 1)
    odd = ops.bitwise_and(octant, 1) == 1
    x = (ops.cast(ops.where(odd, per - 1 - i, i), "float32") + 0.5) * (2.0 * math.pi / 2**ANGLE_BITS)
    z = x * x
    s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * x + x
    c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z \
        - 0.5 * z + 1.0
    s = ops.where(odd, -s, s)  # theta = q pi/2 + x (even octant) or q pi/2 - x (odd), q below
    q = ops.bitwise_and(ops.right_shift(octant + 1, 1), 3)
    cos = ops.where(q == 0, c, ops.where(q == 1, -s, ops.where(q == 2, -c, s)))
    sin = ops.where(q == 0, s, ops.where(q == 1, c, ops.where(q == 2, -s, -c)))
    return cos, sin


def straight_through(v, q):
    """Forward value exactly ``q``; gradient as if it were ``v``."""
    return ops.stop_gradient(q) + (v - ops.stop_gradient(v))


def builds_gradient(training) -> bool:
    """Whether a call with this ``training`` flag needs the straight-through expression: a
    Python True, or a flag only known at run time (a tensor); None and False are inference."""
    return training is not None and training is not False


def quantize(v, full_scale, bits: int, signed, training=True, add=None):
    """Round ``v`` to a converter's levels, straight-through when ``training`` (see
    :func:`builds_gradient`; at inference the rounded value itself, the same numbers). ``add``:
    a tensor added to ``v`` first (broadcast; an ADC's bias row current), at inference in the
    levels' own pass, the same numbers as the sum done apart.

    Unsigned: 2^b levels on [0, R]. Signed: 2^b - 1 levels on [-R, R], one of them exactly 0
    (sign-magnitude, as CrossSim's converters; with 2^b levels an exact 0 would sit on a
    threshold and read as +-1/2 step). ``signed`` may be a Python bool or a 0-d tensor (a DAC
    calibrated on data learns whether its inputs are signed).
    """
    if builds_gradient(training):
        v = v if add is None else v + add
        return straight_through(v, _rounded(v, full_scale, bits, signed))
    return _rounded(v, full_scale, bits, signed,
                    levels_of=_fused(_levels) if keras.backend.backend() == "tensorflow" else _levels,
                    add=add)


def _rounded(v, full_scale, bits: int, signed, levels_of=None, add=None):
    """The converter's levels of :func:`quantize`: ``round(clip(v, lo, R) / step) * step``.
    ``levels_of``: what computes that from ``lo`` and ``step`` (on TensorFlow at inference one
    XLA-fused pass, :func:`_fused`; the scalars ``lo`` and ``step`` are computed before it,
    op by op, because XLA turns a division by a constant into a product by its reciprocal)."""
    if isinstance(signed, bool):
        levels = float(2 ** (bits - 1) - 1 if signed else 2**bits - 1)
        lo = -full_scale if signed else ops.zeros_like(full_scale)
    else:
        s = ops.cast(signed, v.dtype)
        levels = s * float(2 ** (bits - 1) - 1) + (1 - s) * float(2**bits - 1)
        lo = -full_scale * s
    step = full_scale / levels
    return (levels_of or _levels)(v, lo, full_scale, step, **({} if add is None else {"add": add}))


def _levels(v, lo, hi, step, add=None):
    v = v if add is None else v + add
    return ops.round(ops.clip(v, lo, hi) / step) * step


_FUSED: dict = {}


def _fused(fn, **static):
    """``fn`` with its keyword arguments ``static`` fixed (Python values), compiled by XLA as one
    TensorFlow function (``jit_compile``), cached per argument shapes. For chains of cheap
    elementwise ops: TensorFlow runs each op as a pass over the whole tensor, XLA fuses the chain
    into one pass (the converters' clip, divide, round and multiply; README, Performance). The
    numbers are the same where the chain allows it: XLA on the CPU computes IEEE divisions by a
    tensor and round-half-to-even as TensorFlow's kernels do (no fast math;
    ``tests/test_converter_inference.py`` compares the converters bit for bit at every
    threshold), but it turns a division by a constant into a product by its reciprocal and may
    contract a product and a sum into one fused multiply-add, so such chains can differ in the
    last bit. Not for XLA's own transcendental functions or random numbers, which it computed
    slower than TensorFlow's kernels on the development CPU (``log``/``cos``/``sin`` and the
    Philox words; the sampler's transform is plain arithmetic for this reason,
    :func:`standard_normal`)."""
    def call(*args, **kwargs):
        # one tf.function per function, static values and argument shapes (traced once each: a
        # shared one retraced for every layer's shapes, and with reduce_retracing its traces for
        # relaxed shapes mixed up static ones)
        sig = tuple((str(a.shape), str(a.dtype)) if hasattr(a, "shape") else a
                    for a in (*args, *(kwargs[k] for k in sorted(kwargs))))
        key = (fn, tuple(sorted(static.items())), tuple(sorted(kwargs)), sig)
        f = _FUSED.get(key)
        if f is None:
            import tensorflow as tf

            f = _FUSED[key] = tf.function(lambda *a, **kw: fn(*a, **kw, **static), jit_compile=True)
        return f(*args, **kwargs)

    return call


def _product(x, w, depthwise: tuple[int, int] | None):
    """(K|1, M, r) x (K|1, r, m) -> (max K, M, m). ``depthwise=(C, mult)``: r = p*C inputs in
    (p, c) order and m = C*mult columns, column (c, j) reading only channel c."""
    if depthwise is None:
        if w.shape[0] == 1 and x.shape[0] == 1:
            return ops.expand_dims(ops.matmul(x[0], w[0]), 0)
        return ops.matmul(x, w)
    c, mult = depthwise
    xk = ops.reshape(x, (x.shape[0], -1, x.shape[-1] // c, c))
    wk = ops.reshape(w, (w.shape[0], w.shape[1], c, mult))
    y = ops.einsum("kmpc,kpcj->kmcj", xk, wk)
    return ops.reshape(y, (y.shape[0], -1, c * mult))


def _bias_in_pass(training, noisy: bool, adc_errors) -> bool:
    """Whether a read adds its bias row's current inside the pass that follows (the noise's, else
    the ADC's) rather than in a pass of its own over the tile's partial sums: at inference only,
    where the sums are the same IEEE additions in the same order, bit for bit. When training, the
    sum stays apart: compiled into the noise's pass, the pass's gradient would sum the bias's share
    in XLA's order, and with a batch size known only at run time (``fit``) TensorFlow's forward
    variant of the pass that keeps what the gradient needs compiles to other bits than before (one
    or two ulp; found by review), so training, and every documented result trained through the
    device, would move. Never with ADC errors and no read noise: the errors act on the sum."""
    return not builds_gradient(training) and (noisy or adc_errors is None)


def read(x, w, *, n_in: int, bias_row: bool, blocks, seed=None, var=None, col_sd=None,
         adc_range=None, adc_bits: int | None = None, depthwise=None, adc_errors=None,
         training=True):
    """One analog read of every tile.

    ``x`` (K|1, M, inputs) after the DAC; ``w`` (K|1, rows, cols) effective weights in weight
    units, the bias row (if any) last; ``n_in`` the weight rows driven by inputs; ``var``
    (K, rows, cols) per-weight read variance, or ``col_sd`` (K, 1, cols) when it does not depend
    on the row; ``blocks`` the row tiles [(r0, r1), ...] in weight rows. ``depthwise=(C, mult)``:
    each channel has its own crossbar of the same rows (inputs are (row, channel) pairs).
    ``adc_errors``: the ADCs' offsets, gain errors and noise (:class:`AdcErrors`), or None.
    ``training``: whether the ADC builds its straight-through gradient (:func:`quantize`).
    Returns (K, M, cols) in weight units.
    """
    noisy = seed is not None and (var is not None or col_sd is not None)
    if adc_bits is None:
        blocks = [(0, blocks[-1][1])]  # tiles add exactly without an ADC (see module docstring)
    per_row = 1 if depthwise is None else depthwise[0]
    out = None
    for block, (r0, r1) in enumerate(blocks):
        hi = min(r1, n_in)
        xs = x if (r0, hi) == (0, n_in) else x[..., r0 * per_row:hi * per_row]
        y = _product(xs, w[:, r0:hi], depthwise)
        has_bias = bias_row and r1 > n_in
        fuse = has_bias and _bias_in_pass(training, noisy, adc_errors)
        bias = ops.expand_dims(w[:, -1], 1) if fuse else None  # added by the pass that follows
        if has_bias and not fuse:
            y = y + ops.expand_dims(w[:, -1], 1)
        if noisy:
            if col_sd is not None and depthwise is None:
                s2 = sum_of_squares(xs)
                if has_bias:
                    s2 = s2 + 1.0
                y = _add_read_noise(y, seed, row_sd=ops.sqrt(s2), col_sd=col_sd, bias=bias)
            else:
                v = var if var is not None else ops.square(col_sd) * ops.ones_like(w)
                s2 = _product(ops.square(xs), v[:, r0:hi], depthwise)
                if has_bias and not fuse:
                    s2 = s2 + ops.expand_dims(v[:, -1], 1)
                y = _add_read_noise(y, seed, s2=s2, bias=bias,
                                    s2_bias=ops.expand_dims(v[:, -1], 1) if fuse else None)
        if adc_errors is not None:
            y = adc_errors.apply(y, block, adc_range, adc_bits, seed)
        y = _adc(y, adc_range, adc_bits, training, add=None if noisy else bias)
        out = y if out is None else out + y
    return out


def patches(x, size, strides, dilation, padding: str):
    """im2col for channels-last images: (N, H, W, C) -> (N, Ho, Wo, kh*kw*C), each patch in
    (kh, kw, C) order, as a Keras kernel (kh, kw, C, F) flattens. kh*kw strided slices: cheap
    next to the matrix product that follows (keras.ops.image.extract_patches instead multiplies
    by an identity kernel)."""
    cols = tap_views(x, size, strides, dilation, padding)
    return cols[0] if len(cols) == 1 else ops.concatenate(cols, axis=-1)


def tap_views(x, size, strides, dilation, padding: str):
    """The kh*kw strided slices of :func:`patches` (N, Ho, Wo, C), one per kernel tap, in
    (kh, kw) order, not concatenated."""
    h, w = x.shape[1], x.shape[2]
    (kh, kw), (sh, sw), (dh, dw) = size, strides, dilation
    pads, (ho, wo) = window_geometry((h, w), (kh, kw), (sh, sw), (dh, dw), padding)
    if any(p != (0, 0) for p in pads):
        x = ops.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    return [x[:, i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw, :]
            for i in range(kh) for j in range(kw)]


def window_geometry(in_hw, size, strides, dilation, padding):
    """Padding ((top, bottom), (left, right)) and output size of a sliding window, with
    TensorFlow's 'same' rule (out = ceil(in / stride), the smaller half of the padding first)
    and 'causal' (all padding before: Conv1D)."""
    pads, out = [], []
    for n, k, s, d in zip(in_hw, size, strides, dilation):
        span = (k - 1) * d + 1
        if padding == "same":
            o = -(-n // s)
            total = max((o - 1) * s + span - n, 0)
            p = (total // 2, total - total // 2)
        elif padding == "causal":
            p = (span - 1, 0)
        else:
            p = (0, 0)
        pads.append(p)
        out.append((n + p[0] + p[1] - span) // s + 1)
    return tuple(pads), tuple(out)


def read_conv(x, w, *, trials: int, conv, n_in: int, bias_row: bool, blocks, seed=None, var=None,
              col_sd=None, adc_range=None, adc_bits: int | None = None, depthwise: bool = False,
              adc_errors=None, training=True, geometry=None):
    """The analog read of a convolution without im2col: the same physics as :func:`read`, with
    each product a convolution (the crossbar read once per output position).

    ``x`` (B*K, H, W, C) images after the DAC, sample-major; ``w`` (K|1, rows, cols) as in
    :func:`read`; ``conv(images, matrix)`` convolves with a weight matrix of ``n_in`` rows
    (patch order (kh, kw, C)) -> (B, Ho, Wo, matrix columns). Read noise: the variance map is
    the convolution of ``x**2`` with the cell variances (a single all-ones filter when the
    variance does not depend on the row), one draw per output. Each trial's copy convolves its
    own slice of the batch; the ``K`` convolutions are ops of one graph (traced once), never a
    loop over samples, and the result is stacked back in sample-major order without a copy of
    the patches (a convolution is 3-4x faster than im2col + matmul on a CPU).

    ``geometry=(size, strides, dilation, padding)`` of the convolution, when given, lets a layer
    of at most :data:`DIRECT_VARIANCE_ROWS` input rows (a first layer: 3x3 on one or three
    channels) compute its variance map inside the noise's XLA pass, tap by tap, instead of by a
    second convolution (:func:`_noisy_from_taps`; TensorFlow, state-dependent read noise, all of
    its input rows in one row tile; the bias row may sit in a tile of its own).
    """
    noisy = seed is not None and (var is not None or col_sd is not None)
    direct = (noisy and var is not None and geometry is not None and not depthwise
              and n_in <= DIRECT_VARIANCE_ROWS and keras.backend.backend() == "tensorflow")
    if adc_bits is None:
        blocks = [(0, blocks[-1][1])]
    if trials == 1:
        parts = [x]
    else:
        x5 = ops.reshape(x, (-1, trials, *x.shape[1:]))
        parts = [x5[:, k] for k in range(trials)]
    outs = []
    for k, xk in enumerate(parts):
        wk = w[k] if w.shape[0] > 1 else w[0]
        out = None
        for block, (r0, r1) in enumerate(blocks):
            hi = min(r1, n_in)
            whole = (r0, hi) == (0, n_in)
            y = conv(xk, wk[:n_in] if whole else _rows_only(wk[:n_in], r0, hi))
            has_bias = bias_row and r1 > n_in
            fuse = has_bias and _bias_in_pass(training, noisy, adc_errors)
            bias = wk[n_in] if fuse else None  # added by the pass that follows
            if has_bias and not fuse:
                y = y + wk[n_in]
            if noisy:
                if col_sd is not None and not depthwise:
                    ones = ops.ones((n_in, 1), dtype=x.dtype)
                    s2 = conv(ops.square(xk), ones if whole else _rows_only(ones, r0, hi))
                    if has_bias:
                        s2 = s2 + 1.0
                    y = _add_read_noise(y, seed, row_sd=ops.sqrt(s2),
                                        col_sd=col_sd[k if col_sd.shape[0] > 1 else 0, 0], bias=bias)
                else:
                    vk = (var[k] if var.shape[0] > 1 else var[0]) if var is not None else \
                        ops.square(col_sd[k if col_sd.shape[0] > 1 else 0]) * ops.ones_like(wk)
                    if direct and whole:
                        y = _add_read_noise_from_taps(y, seed, xk, vk[:n_in],
                                                      vk[n_in] if has_bias else None, geometry, bias=bias)
                    else:
                        s2 = conv(ops.square(xk), vk[:n_in] if whole else _rows_only(vk[:n_in], r0, hi))
                        if has_bias and not fuse:
                            s2 = s2 + vk[n_in]
                        y = _add_read_noise(y, seed, s2=s2, bias=bias,
                                            s2_bias=vk[n_in] if fuse else None)
            if adc_errors is not None:
                y = adc_errors.apply(y, block, adc_range, adc_bits, seed, trial=k)
            y = _adc(y, adc_range, adc_bits, training, add=None if noisy else bias)
            out = y if out is None else out + y
        outs.append(out)
    if trials == 1:
        return outs[0]
    y = ops.stack(outs, axis=1)  # (B, K, Ho, Wo, cols): sample-major already
    return ops.reshape(y, (-1, *y.shape[2:]))


def _rows_only(m, r0, hi):
    """``m`` with every row outside [r0, hi) zeroed: one row tile's share of the product."""
    n, c = m.shape
    parts = [ops.zeros((r0, c), dtype=m.dtype)] if r0 else []
    parts.append(m[r0:hi])
    if hi < n:
        parts.append(ops.zeros((n - hi, c), dtype=m.dtype))
    return ops.concatenate(parts, axis=0)


def _add_read_noise(y, seed, s2=None, row_sd=None, col_sd=None, bias=None, s2_bias=None):
    """One tile's partial sums plus their read noise, drawn afresh at this read: variance ``s2``
    per output, or std ``row_sd * col_sd`` (an input vector's norm times a column's cell std),
    applied as ``row_sd * (z * col_sd)`` so that the std is never formed as an outer product of
    its own. The noise is a constant to the gradient (training sees the noisy forward pass).
    ``bias``: the bias row's current, added to ``y`` first, and ``s2_bias`` its variance, added to
    ``s2`` (both broadcast along y's rows), in the same pass: as ``y + bias`` and ``s2 + s2_bias``
    done before the call, bit for bit, without a pass over y (and s2) of their own.
    On TensorFlow the words' transform into normals (:func:`standard_normal`), their layout in
    y's shape (the first ``n`` of the pairs) and the std and sum are one XLA-compiled pass
    (:func:`_noisy_from_words`): the same numbers, bit for bit, as the transform, TensorFlow's
    slice of its first ``n`` and the sum done apart, which cost a third more on the default CNN's
    first layer (they wrote the normals out, then copied them for the slice, then read them
    again; ``benchmarks/bench_read_parts.py``)."""
    shape, n, w = _words(ops.shape(y), seed)
    given = {k: v for k, v in (("s2", s2), ("row_sd", row_sd), ("col_sd", col_sd), ("bias", bias),
                               ("s2_bias", s2_bias)) if v is not None}
    if keras.backend.backend() == "tensorflow":
        if isinstance(n, int) and n < ONE_PASS_NOISE_SIZE:
            z = _samples(w, n, shape, y.dtype, transform=box_muller_pairs)
            return _fused(_noisy)(y, z, **given)
        return _fused(_noisy_from_words)(w, y, **given)
    return _noisy(y, _samples(w, n, shape, y.dtype), **given)


#: Smallest read (outputs, trials included, known when the graph is traced) whose noise is one
#: XLA pass from the words (:func:`_noisy_from_words`); a smaller one takes the transform, the
#: slice and the sum apart, the same numbers bit for bit. The one pass saves the normals' round
#: trip through memory on large reads (1.72 -> 1.51 ms for 10,000 x 256 outputs, 3.9 -> 3.7 ms
#: for 200,000 x 32) but costs four times more on small ones (0.21 -> 0.81 ms for 1,000 x 256,
#: a recurrent layer's step: the 2-layer LSTM of benchmarks/bench_crossbar.py went from 2.1x to
#: 5x its Keras pass), an overhead of its loop that the large reads hide.
ONE_PASS_NOISE_SIZE = 1 << 20


def _noisy_from_words(w, y, s2=None, row_sd=None, col_sd=None, bias=None, s2_bias=None):
    """:func:`_noisy` with the normals of the random words ``w`` (:func:`_pairs_of_words`, the
    first ``size(y)`` of them in y's shape): what XLA compiles as one pass."""
    return _noisy(y, _samples(w, ops.size(y), ops.shape(y), y.dtype, transform=_pairs_of_words),
                  s2=s2, row_sd=row_sd, col_sd=col_sd, bias=bias, s2_bias=s2_bias)


#: Largest number of input rows (kh * kw * C) for which a convolution's variance map is computed
#: tap by tap inside the noise's pass (:func:`read_conv`): 27 covers 3x3 kernels on RGB images
#: and 5x5 on one channel. Such a layer's convolution has few multiply-adds an output and costs
#: little more than writing its output, so the second convolution (of ``x**2`` with the cell
#: variances) cost as much as the layer's own (130 ms against 132 ms on the default CNN's first
#: layer, 2,000 images; ``benchmarks/bench_read_parts.py``); its n_in products an output inside
#: the noise's pass cost a fraction of that. Deeper layers (hundreds of rows) keep the convolution.
DIRECT_VARIANCE_ROWS = 27


def _add_read_noise_from_taps(y, seed, images, v, v_bias, geometry, bias=None):
    """:func:`_add_read_noise` for a convolution whose variance map is computed in the same
    XLA pass as the noise (:func:`_noisy_from_taps`): ``images`` (N, H, W, C) after the DAC,
    ``v`` (n_in, cols) the cell variances in patch order (kh, kw, C), ``v_bias`` (cols,) the
    bias row's or None, ``geometry=(size, strides, dilation, padding)``, ``bias`` (cols,) the
    bias row's current, added to ``y`` in the same pass (or None). The same random words as
    :func:`_add_read_noise`, drawn the same way."""
    shape, n, w = _words(ops.shape(y), seed)
    size, strides, dilation, padding = geometry
    f = _fused(_noisy_from_taps, size=tuple(size), strides=tuple(strides),
               dilation=tuple(dilation), padding=padding)
    given = {k: a for k, a in (("v_bias", v_bias), ("bias", bias)) if a is not None}
    return f(w, y, images, v, **given)


def _noisy_from_taps(w, y, images, v, v_bias=None, bias=None, *, size, strides, dilation, padding):
    """``y`` plus its read noise with the variance map ``sum_i x_i**2 v_ij`` summed tap by tap
    (each tap's strided view of the images, channel by channel, in patch order, then the bias
    row's variance), all in one XLA pass with the words' transform and the sum (see
    :func:`_noisy_from_words`). The sum's order differs from a convolution's, so the variance
    agrees with :func:`read_conv`'s convolution to float32 rounding, not bit for bit. Summed in
    float32 whatever the layer's dtype: under mixed precision the cell variances (SONOS's reach
    1e-6 weight units squared, below float16's normal range) would otherwise be rounded to float16
    product by product, several times the convolution's error."""
    images, v = ops.cast(images, "float32"), ops.cast(v, "float32")
    if v_bias is not None:
        v_bias = ops.cast(v_bias, "float32")
    c = images.shape[-1]
    s2 = None
    for t, xt in enumerate(tap_views(images, size, strides, dilation, padding)):
        x2 = ops.square(xt)
        for ch in range(c):
            term = x2[..., ch:ch + 1] * v[t * c + ch]
            s2 = term if s2 is None else s2 + term
    if v_bias is not None:
        s2 = s2 + v_bias
    return _noisy_from_words(w, y, s2=ops.cast(s2, y.dtype), bias=bias)


def _noisy(y, z, s2=None, row_sd=None, col_sd=None, bias=None, s2_bias=None):
    """``y`` (plus ``bias``) plus the normals ``z`` (of y's shape) times their std (see
    :func:`_add_read_noise`)."""
    if bias is not None:
        y = y + bias
    if s2_bias is not None:
        s2 = s2 + s2_bias
    noise = ops.sqrt(s2) * z if s2 is not None else row_sd * (z * col_sd)
    return y + ops.stop_gradient(noise)


def double_cumsum(x, axis: int, suffix_first: bool):
    """Two cumulative sums of ``x`` along ``axis``: the suffix sum, then the prefix sum of it
    (``suffix_first``), or the prefix sum, then the suffix sum of it (the IR drop's row and column
    terms, :func:`nvmkit.engine.wires.drop_fraction`). Each is the sequential float32 sum that
    ``ops.cumsum`` computes (``s_i = s_(i-1) + x_i``; a suffix sum is one from the end), so the
    numbers are the same bit for bit where TensorFlow's ``cumsum`` sums in sequence, as its CPU
    kernel does (a GPU kernel may scan in blocks, another order: there the loop keeps the
    sequential sums, not that kernel's bits; unchecked, no GPU was available). TensorFlow's
    ``cumsum`` took about 6 ns an element on the development CPU, and each suffix sum two flips
    more: there both sums run as one XLA-compiled pair of loops along the axis, 1.6-1.7x faster
    for the whole IR-drop correction (``benchmarks/bench_read_parts.py``; README, Performance).
    Both orders are self-adjoint (a prefix sum's transpose is the suffix sum), so the gradient is
    the same two sums of the incoming gradient, in the order TensorFlow's own gradient of the two
    ``cumsum`` calls takes. ``tests/test_wires.py`` compares values and gradients bit for bit."""
    axis = axis % len(x.shape)
    if keras.backend.backend() != "tensorflow" or not x.shape[axis]:  # or a length unknown / 0
        return _double_cumsum_ops(x, axis, suffix_first)
    import tensorflow as tf

    f = _fused(_double_scan, axis=axis, suffix_first=suffix_first)

    @tf.custom_gradient
    def both(v):
        # stop_gradient: the compiled loops are never differentiated themselves (XLA cannot hand
        # a loop's saved state back to TensorFlow); the gradient is this same linear map of the
        # incoming one, itself differentiable again (second derivatives, forward mode)
        return f(tf.stop_gradient(v)), both

    return both(x)


def _double_cumsum_ops(x, axis: int, suffix_first: bool):
    """:func:`double_cumsum` by ``ops.cumsum`` and flips (any backend; the reference)."""
    def suffix(v):
        return ops.flip(ops.cumsum(ops.flip(v, axis), axis=axis), axis)

    if suffix_first:
        return ops.cumsum(suffix(x), axis=axis)
    return suffix(ops.cumsum(x, axis=axis))


def _double_scan(x, axis: int, suffix_first: bool):
    """The loops of :func:`double_cumsum` (TensorFlow, compiled by XLA): the axis moved first,
    one add of a slice per step, twice, and moved back."""
    import tensorflow as tf

    n = int(x.shape[axis])  # the weights' shapes are static; XLA needs the loop's length

    def scan(v, reverse):
        order = tf.range(n - 1, -1, -1) if reverse else tf.range(n)
        out = tf.TensorArray(v.dtype, size=n, element_shape=v.shape[1:])
        acc = v[order[0]]
        out = out.write(order[0], acc)

        def step(k, acc, out):
            i = order[k]
            acc = acc + v[i]
            return k + 1, acc, out.write(i, acc)

        _, _, out = tf.while_loop(lambda k, a, o: k < n, step, (tf.constant(1), acc, out),
                                  maximum_iterations=n)
        return out.stack()

    perm = [axis] + [i for i in range(len(x.shape)) if i != axis]
    v = tf.transpose(x, perm)
    v = scan(scan(v, True), False) if suffix_first else scan(scan(v, False), True)
    return tf.transpose(v, [perm.index(i) for i in range(len(perm))])


def sum_of_squares(x):
    """``sum(x**2)`` over the last axis, kept. On TensorFlow through its fused Euclidean norm:
    one pass over ``x`` instead of a square and a sum, which Keras has no op for."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return ops.square(tf.math.reduce_euclidean_norm(x, axis=-1, keepdims=True))
    return ops.sum(ops.square(x), axis=-1, keepdims=True)


def _adc(y, adc_range, adc_bits, training=True, add=None):
    """Each tile's partial sums (plus ``add``, the bias row's current, in the ADC's own pass at
    inference) through its own signed ADC (none: ideal converter)."""
    if adc_bits is None:
        return y if add is None else y + add
    return quantize(y, adc_range, adc_bits, True, training, add=add)


class AdcErrors:
    """The errors of every column's ADC, applied to a tile's partial sums before they are
    converted: ``(1 + gain) y + (offset + noise z) LSB``, with ``offset`` and ``gain`` fixed per
    chip (K|1, row tiles, cols) and ``z`` a standard normal drawn afresh at every conversion (the
    input-referred noise, ``noise`` in LSB). LSB = full scale / (2^(b-1) - 1), the signed ADC's
    step (:func:`quantize`). The model, its sources and where the per-chip values come from:
    :meth:`nvmkit.engine.crossbar.Crossbar.draw_chip`; the definitions are IEEE Std 1241-2010's.

    The gain error scales the partial sum and its gradient alike (a real linear error); offsets and
    noise are constants of the backward pass.
    """

    def __init__(self, offset=None, gain=None, noise: float = 0.0):
        self.offset, self.gain, self.noise = offset, gain, float(noise)

    def apply(self, y, block: int, full_scale, bits: int, seed, trial: int | None = None):
        """Tile ``block``'s partial sums ``y`` as its ADCs take them: (K|1, M, cols) from
        :func:`read`, or (..., cols) of trial ``trial`` from :func:`read_conv`."""
        lsb = full_scale / float(2 ** (bits - 1) - 1)
        if self.gain is not None:
            y = y * (1.0 + self._column(self.gain, block, trial))
        if self.offset is not None:
            y = y + self._column(self.offset, block, trial) * lsb
        if self.noise:
            z = standard_normal(ops.shape(y), seed, y.dtype)
            y = y + ops.stop_gradient(z * (self.noise * lsb))
        return y

    @staticmethod
    def _column(v, block: int, trial: int | None):
        """(K|1, 1, cols) of row tile ``block`` for the trial-grouped read; (cols,) of one trial."""
        if trial is None:
            return v[:, block:block + 1, :]
        return v[trial if v.shape[0] > 1 else 0, block]
