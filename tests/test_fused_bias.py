"""The bias row's current added inside the read noise's XLA pass (issue 21, point 9): bit for bit
the sum done apart before the noise, forward and gradient, so that no documented number moves."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nvmkit.engine import ops as xops

CASES = {  # y's shape, the bias's shape (as read and read_conv pass them)
    "dense": ((2, 7, 5), (2, 1, 5)),  # (K, M, cols) + (K, 1, cols)
    "conv": ((3, 4, 6, 5), (5,)),  # (B, Ho, Wo, cols) + (cols,)
}


def _both(y, b, noise, apart):
    """Forward values and the gradients to y and the bias of ``sum(r * out)`` (a random ``r``, so
    that every output's gradient differs) of the fused call and the call on ``y + b``."""
    r = tf.constant(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32))
    out = []
    for fn in (noise, apart):
        yv, bv = tf.Variable(y), tf.Variable(b)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                o = fn(yv, bv)
                loss = tf.reduce_sum(r * o)
            return (o, *tape.gradient(loss, [yv, bv]))

        out.append([np.asarray(t) for t in step()])
    return out


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", ["variance", "row and column"])
def test_the_bias_in_the_noise_pass_is_the_sum_apart(case, mode):
    """``_add_read_noise(y, bias=b, s2_bias=vb)`` equals ``_add_read_noise(y + b, s2=s2 + vb)`` bit
    for bit, and so do the gradients to y and to the bias (TensorFlow's own reduction of the
    broadcast sum). Fails if the pass drops the bias or its variance, adds either twice, or its
    gradient sums the bias over other axes or in XLA's order (float32 rounding apart)."""
    y_shape, b_shape = CASES[case]
    rng = np.random.default_rng(2)
    y = rng.standard_normal(y_shape).astype(np.float32) * 100  # large: a sum's order shows
    b = rng.standard_normal(b_shape).astype(np.float32) * 100
    if mode == "variance":
        s2 = tf.constant((rng.random(y_shape) + 0.5).astype(np.float32))
        vb = tf.constant((rng.random(b_shape) + 0.5).astype(np.float32))
        gens = keras.random.SeedGenerator(3), keras.random.SeedGenerator(3)
        noise = lambda yv, bv: xops._add_read_noise(yv, gens[0], s2=s2, bias=bv, s2_bias=vb)  # noqa: E731
        apart = lambda yv, bv: xops._add_read_noise(yv + bv, gens[1], s2=s2 + vb)  # noqa: E731
    else:
        row = tf.constant((rng.random((*y_shape[:-1], 1)) + 0.5).astype(np.float32))
        col = tf.constant((rng.random(y_shape[-1]) + 0.5).astype(np.float32))
        gens = keras.random.SeedGenerator(3), keras.random.SeedGenerator(3)
        noise = lambda yv, bv: xops._add_read_noise(yv, gens[0], row_sd=row, col_sd=col, bias=bv)  # noqa: E731
        apart = lambda yv, bv: xops._add_read_noise(yv + bv, gens[1], row_sd=row, col_sd=col)  # noqa: E731
    (o1, dy1, db1), (o2, dy2, db2) = _both(y, b, noise, apart)
    assert np.array_equal(o1, o2)
    assert np.array_equal(dy1, dy2) and np.array_equal(db1, db2)
    assert np.abs(o1 - (y + b)).max() > 0.1  # noise was drawn
    assert db1.shape == b.shape and np.abs(db1).max() > 0


def test_the_bias_in_the_taps_pass_is_the_sum_apart():
    """The same for a small convolution's variance map computed tap by tap
    (``_add_read_noise_from_taps``, which also adds the bias row's variance)."""
    rng = np.random.default_rng(4)
    images = tf.constant(rng.random((2, 9, 9, 2), dtype=np.float32))
    v = tf.constant((rng.random((18, 5)) + 0.1).astype(np.float32))
    vb = tf.constant((rng.random(5) + 0.1).astype(np.float32))
    geometry = ((3, 3), (1, 1), (1, 1), "valid")
    y = rng.standard_normal((2, 7, 7, 5)).astype(np.float32) * 100
    b = rng.standard_normal(5).astype(np.float32) * 100
    gens = keras.random.SeedGenerator(6), keras.random.SeedGenerator(6)
    noise = lambda yv, bv: xops._add_read_noise_from_taps(yv, gens[0], images, v, vb, geometry, bias=bv)  # noqa: E731
    apart = lambda yv, bv: xops._add_read_noise_from_taps(yv + bv, gens[1], images, v, vb, geometry)  # noqa: E731
    (o1, dy1, db1), (o2, dy2, db2) = _both(y, b, noise, apart)
    assert np.array_equal(o1, o2)
    assert np.array_equal(dy1, dy2) and np.array_equal(db1, db2)
    assert np.abs(o1 - (y + b)).max() > 0.01


@pytest.mark.parametrize("training", [False, True])
def test_the_bias_in_the_adc_pass_is_the_sum_apart(training):
    """Without read noise the bias row's current is added in the ADC's own pass (at inference
    the levels' XLA pass): ``quantize(v, add=b)`` equals ``quantize(v + b)`` bit for bit, with
    sums placed exactly on the thresholds between levels and beyond the full scale, and so do
    the straight-through gradients when training. Fails if the ADC drops the bias, adds it
    twice or after rounding."""
    rng = np.random.default_rng(7)
    full_scale, bits = tf.constant(3.0), 5
    step = 3.0 / (2 ** (bits - 1) - 1)
    b = rng.standard_normal(6).astype(np.float32)
    halves = (rng.integers(-20, 20, (50, 6)) + 0.5) * step  # thresholds, and beyond +-3
    v = np.concatenate([rng.uniform(-4, 4, (200, 6)), halves - b]).astype(np.float32)
    noise = lambda vv, bv: xops.quantize(vv, full_scale, bits, True, training, add=bv)  # noqa: E731
    apart = lambda vv, bv: xops.quantize(vv + bv, full_scale, bits, True, training)  # noqa: E731
    (o1, dv1, db1), (o2, dv2, db2) = _both(v, b, noise, apart)
    assert np.array_equal(o1, o2)
    assert np.array_equal(dv1, dv2) and np.array_equal(db1, db2)
    assert len(np.unique(o1)) > 10 and np.abs(o1).max() == pytest.approx(3.0)  # rounded, clipped
