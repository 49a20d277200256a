"""The bias row's current added inside the read noise's (or the ADC's) XLA pass at inference (issue
21, point 9): bit for bit the sum done apart before it, so that no documented number moves; when
training the sum stays apart (``_bias_in_pass``)."""

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
    """For the fused call ``noise`` and the call on ``y + b`` ``apart``: the forward values as an
    inference computes them (no tape), and the gradients to y and the bias of ``sum(r * out)`` (a
    random ``r``, so that every output's gradient differs)."""
    r = tf.constant(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32))
    out = []
    for fn in (noise, apart):
        yv, bv = tf.Variable(y), tf.Variable(b)

        @tf.function
        def forward():
            return fn(yv, bv)

        @tf.function
        def grads():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(r * fn(yv, bv))
            return tape.gradient(loss, [yv, bv])

        out.append([np.asarray(forward()), *[None if g is None else np.asarray(g) for g in grads()]])
    return out


def _same_gradients(g1, g2):
    """The fused pass's gradient is XLA's: the same sums in another order, to float32 rounding."""
    for a, b in zip(g1, g2):
        assert a is not None and b is not None and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", ["variance", "row and column"])
@pytest.mark.parametrize("one_pass", [True, False])  # the read's two paths (ONE_PASS_NOISE_SIZE)
def test_the_bias_in_the_noise_pass_is_the_sum_apart(case, mode, one_pass, monkeypatch):
    """``_add_read_noise(y, bias=b, s2_bias=vb)`` equals ``_add_read_noise(y + b, s2=s2 + vb)`` bit
    for bit, and its gradients to y and to the bias are those of the sum (to float32 rounding).
    Fails if the pass drops the bias or its variance, adds either twice, or its gradient reaches
    the bias wrongly."""
    monkeypatch.setattr(xops, "ONE_PASS_NOISE_SIZE", 0 if one_pass else 1 << 62)
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
    _same_gradients((dy1, db1), (dy2, db2))
    assert np.abs(o1 - (y + b)).max() > 0.1  # noise was drawn
    assert np.abs(db1).max() > 0


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
    _same_gradients((dy1, db1), (dy2, db2))
    assert np.abs(o1 - (y + b)).max() > 0.01


@pytest.mark.parametrize("training", [False, True])
def test_the_bias_in_the_adc_pass_is_the_sum_apart(training):
    """Without read noise the bias row's current is added in the ADC's own pass (at inference
    the levels' XLA pass): ``quantize(v, add=b)`` equals ``quantize(v + b)`` bit for bit, with
    sums placed exactly on the thresholds between levels and beyond the full scale, and so do
    the straight-through gradients when training. Fails if the ADC drops the bias, adds it
    twice or after rounding (inference has no gradient: rounding's is None)."""
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
    if training:
        assert np.array_equal(dv1, dv2) and np.array_equal(db1, db2) and np.abs(db1).max() > 0
    else:
        assert dv1 is db1 is dv2 is db2 is None
    assert len(np.unique(o1)) > 10 and np.abs(o1).max() == pytest.approx(3.0)  # rounded, clipped


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("adc_bits", [None, 6])
@pytest.mark.parametrize("noise", ["variance", "row and column", "none"])
def test_training_keeps_the_sum_apart(monkeypatch, noise, adc_bits, conv):
    """The read hands the bias row to the noise's or the ADC's pass at inference only: when
    training, ``y + bias`` (and its variance) are summed apart, before the pass, as before, so that
    what training computes does not move (inside the pass, XLA's gradient and TensorFlow's forward
    variant for a gradient, with a batch size known at run time, compile to other bits), and the
    two give the same output bit for bit (the straight-through ADC's forward value is its levels).
    Fails if training fuses the bias, inference stops fusing it, fuses it twice, also adds it apart,
    or either path drops it or its variance."""
    seen = []
    real_noise, real_quantize = xops._add_read_noise, xops.quantize
    monkeypatch.setattr(xops, "_add_read_noise", lambda y, seed, **k: (
        seen.append(("noise", k.get("bias") is not None, k.get("s2_bias") is not None))
        or real_noise(y, seed, **k)))
    monkeypatch.setattr(xops, "quantize", lambda *a, add=None, **k: (
        seen.append(("adc", add is not None, False)) or real_quantize(*a, add=add, **k)))
    rng = np.random.default_rng(3)
    w = tf.constant(rng.standard_normal((1, 10, 4)).astype(np.float32))  # 9 input rows + bias row
    kw = {}
    if noise == "variance":
        kw["var"] = tf.constant(rng.random((1, 10, 4)).astype(np.float32) * 0.01)
    elif noise == "row and column":
        kw["col_sd"] = tf.constant(rng.random((1, 1, 4)).astype(np.float32) * 0.1)
    if adc_bits:
        kw.update(adc_range=tf.constant(5.0), adc_bits=adc_bits)
    if conv:
        x = tf.constant(rng.random((2, 5, 5, 1)).astype(np.float32))
        conv_fn = lambda images, m: tf.nn.conv2d(images, tf.reshape(m, (3, 3, 1, -1)), 1, "VALID")  # noqa: E731
        call = lambda training: xops.read_conv(x, w, trials=1, conv=conv_fn, n_in=9, bias_row=True,  # noqa: E731
                                               blocks=[(0, 10)], seed=keras.random.SeedGenerator(2),
                                               training=training, **kw)
    else:
        x = tf.constant(rng.random((1, 3, 9)).astype(np.float32))
        call = lambda training: xops.read(x, w, n_in=9, bias_row=True, blocks=[(0, 10)],  # noqa: E731
                                          seed=keras.random.SeedGenerator(2), training=training, **kw)
    outputs = []
    for training in (True, False):
        seen.clear()
        outputs.append(np.asarray(call(training)))
        fused = [s for s in seen if s[1]]
        if training:
            assert fused == [] and not any(s[2] for s in seen)
        elif noise == "none" and not adc_bits:
            assert seen == []  # no pass follows: the sum is the read's last op
        else:
            assert len(fused) == 1 and fused[0][0] == ("noise" if noise != "none" else "adc")
            assert fused[0][2] == (noise == "variance")
    assert np.array_equal(outputs[0], outputs[1])  # the same seed: the same draws, either way
    if noise != "none":
        quiet = {k: a for k, a in kw.items() if k not in ("var", "col_sd")}
        kw.clear()
        kw.update(quiet)
        assert not np.array_equal(np.asarray(call(False)), outputs[1])  # the noise was drawn
