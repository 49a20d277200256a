"""The read-noise sampler (issue 21, point 9): one 32-bit word a Box-Muller pair, its CDF within
the stated bound of the normal CDF everywhere, its tails to beyond 5 sigma, computed exactly
over every radius and every angle the implementation produces (not sampled)."""

import keras
import numpy as np
import pytest
from scipy.special import ndtr

from nvmkit.engine import ops as xops

R_BITS, A_BITS = xops.RADIUS_BITS, xops.ANGLE_BITS


def _transform(words) -> np.ndarray:
    w = np.asarray(words, dtype=np.int64).astype(np.uint32).view(np.int32)
    return np.asarray(xops.box_muller_pairs(keras.ops.convert_to_tensor(w))).astype(np.float64)


def _reference(words) -> np.ndarray:
    """The transform of standard_normal's docstring, in float64 from the word's bit fields."""
    w = np.asarray(words, dtype=np.int64).astype(np.uint32).view(np.int32).astype(np.int64)
    k = w >> A_BITS  # signed high bits
    u = (k + 2**(R_BITS - 1) + 0.5) / 2.0**R_BITS
    r = np.sqrt(-2.0 * np.log(u))
    theta = 2.0 * np.pi * ((w & (2**A_BITS - 1)) + 0.5) / 2**A_BITS
    return np.stack([r * np.cos(theta), r * np.sin(theta)])


def test_pairs_match_a_float64_reference_of_the_bit_fields():
    """Random words and the extremes (0x7fffffff: the smallest radius; 0x80000000: the largest,
    sqrt(38 ln 2) = 5.132) against the fields read in float64. Fails on overlapping or shifted
    fields (a radius reading angle bits), a logical shift where an arithmetic one is meant
    (negative words), or a wrong radius or angle scale."""
    rng = np.random.default_rng(0)
    w = rng.integers(-2**31, 2**31, size=4096, dtype=np.int64)
    w[:3] = [2**31 - 1, -2**31, -1]
    got, want = _transform(w), _reference(w)
    assert got.shape == (2, 4096)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    r = np.hypot(got[0], got[1])
    assert abs(r[1] - xops.MAX_ABS_NORMAL) < 1e-5 and xops.MAX_ABS_NORMAL > 5
    assert r[0] < 3e-3  # u = 1 - 2^-19


def _grid():
    """Every radius (all 2^18 radius fields, angle field 0) and every angle (all 2^14 angle
    fields) as the implementation computes them in float32."""
    k = np.arange(-2**(R_BITS - 1), 2**(R_BITS - 1), dtype=np.int64)
    z = _transform(k << A_BITS)
    radii = np.sort(np.hypot(z[0], z[1]))
    j = np.arange(2**A_BITS, dtype=np.int64)
    z = _transform(j)
    angles = np.mod(np.arctan2(z[1], z[0]), 2 * np.pi)
    return radii, np.sort(angles)


def _exact_cdf(radii, angles, t):
    """P(r cos(theta) <= t) for r, theta uniform over the given values, exactly: per angle, the
    fraction of radii on the right side of t / cos(theta)."""
    c = np.cos(angles)[:, None]
    s = t[None, :] / c
    n = radii.size
    below = np.searchsorted(radii, s, side="right") / n  # P(r <= s)
    above = 1.0 - np.searchsorted(radii, s, side="left") / n  # P(r >= s)
    return np.where(c > 0, below, above).mean(axis=0)


def test_sampler_cdf_is_within_its_stated_bound_of_the_normal_cdf_everywhere():
    """The exact CDF of r*cos(theta) over all 2^18 x 2^14 (radius, angle) pairs the
    implementation produces, against the normal CDF, on thresholds from -6 to 6 (dense near 0,
    where the angle's grid errs most): within CDF_ERROR_BOUND = 2.5e-5 (measured 2.07e-5; the
    issue allows 1e-4). The sine half is the same distribution (the angles are symmetric).
    Fails on a coarser angle (13 bits: 4.1e-5; 12 bits: 8.3e-5), angles not at arc centres
    (an atom at z = 0), a half circle, or radii off the Rayleigh quantiles."""
    radii, angles = _grid()
    step = 2 * np.pi / 2**A_BITS
    np.testing.assert_allclose(angles, step * (np.arange(2**A_BITS) + 0.5), atol=3e-6)  # the grid
    t = np.concatenate([np.linspace(-6, 6, 1201), np.logspace(-7, -1, 200), -np.logspace(-7, -1, 200)])
    worst = 0.0
    for part in np.array_split(t, 16):
        worst = max(worst, float(np.abs(_exact_cdf(radii, angles, part) - ndtr(part)).max()))
    assert worst < xops.CDF_ERROR_BOUND <= 1e-4
    assert worst > 1e-5  # the bound is tight to within 2.5x: a coarse grid is really measured


def test_sampler_tails_reach_beyond_five_sigma_with_the_normal_tail_probability():
    """Tails: the largest |z| is 5.132 (beyond the 5 sigma the issue asks), and the exact
    probability beyond 5 sigma (2.76e-7 each side) lies within 10% of the normal's 2.87e-7
    (the 1e-4 CDF bound alone would allow any tail). Fails on a radius of fewer bits (17 bits:
    |z| <= 4.99; 16 bits: 4.85, no 5-sigma tail at all)."""
    radii, angles = _grid()
    assert radii[-1] >= 5.0
    t = np.array([-5.0, 5.0])
    f = _exact_cdf(radii, angles, t)
    tail = ndtr(-5.0)
    assert abs(f[0] / tail - 1) < 0.1 and abs((1 - f[1]) / tail - 1) < 0.1


def test_standard_normal_draws_one_word_a_pair():
    """standard_normal asks for ceil(n / 2) words (one block up to PAIR_CHUNK words) and lays the
    pairs out as its docstring says: the cosines of the words, then their sines. Fails if the
    draw takes more bits (e.g. the former 48 a pair) or reuses a word."""
    shape, n, words = xops.normal_words_shape((5, 7))
    assert n == 35 and words == (1, 18)
    z = np.asarray(xops.standard_normal((5, 7), keras.random.SeedGenerator(11))).ravel()
    w = np.asarray(xops.random_words((18,), keras.random.SeedGenerator(11)))
    want = _reference(w.astype(np.int64)).ravel()[:35]
    np.testing.assert_allclose(z, want, rtol=2e-5, atol=2e-6)


def _blocks_reference(n, chunk, seed):
    """The samples of standard_normal((n,)) by its docstring, block by block, in float64."""
    q = (n + 1) // 2
    m = min(q, chunk)
    c = -(-q // m)
    w = np.asarray(xops.random_words((c * m,), keras.random.SeedGenerator(seed))).astype(np.int64)
    return np.concatenate([_reference(b).ravel() for b in w.reshape(c, m)])[:n]


def test_a_large_draw_is_transformed_block_by_block_with_the_same_layout(monkeypatch):
    """Above PAIR_CHUNK words the draw is c blocks of PAIR_CHUNK words, the last one whole, each
    giving its cosines then its sines (on TensorFlow through tf.map_fn, one block at a time).
    PAIR_CHUNK made 8 here: 100 samples = 50 words -> 7 blocks of 8. Fails if the blocks are
    transformed out of order, the last block is padded with words not drawn, or the block
    path's numbers differ from the layout the docstring states."""
    monkeypatch.setattr(xops, "PAIR_CHUNK", 8)
    assert xops.normal_words_shape((100,))[2] == (7, 8)
    z = np.asarray(xops.standard_normal((100,), keras.random.SeedGenerator(5))).astype(np.float64)
    np.testing.assert_allclose(z, _blocks_reference(100, 8, 5), rtol=2e-5, atol=2e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="shapes known only at run time exist in TensorFlow graphs only")
def test_blocks_drawn_with_a_run_time_shape_are_the_static_ones(monkeypatch):
    """The block count known only at run time (an open batch axis: the tf.cond between one
    block and several) draws what the static shape draws, one block or several. Fails if the
    run-time path takes another layout or another count of words."""
    import tensorflow as tf

    monkeypatch.setattr(xops, "PAIR_CHUNK", 8)
    for rows in (2, 9):  # 7 and 32 words: one block; four blocks
        static = np.asarray(xops.standard_normal((rows, 7), keras.random.SeedGenerator(4)))
        gen = keras.random.SeedGenerator(4)
        fn = tf.function(lambda y: xops.standard_normal(keras.ops.shape(y), gen),
                         input_signature=[tf.TensorSpec((None, 7), tf.float32)])
        np.testing.assert_array_equal(fn(tf.zeros((rows, 7))).numpy(), static)


def test_transcendental_polynomials_match_float64_on_every_value_they_take():
    """The transform's ln and cos/sin are Cephes polynomials (plain arithmetic, so that XLA fuses
    them): against float64 on every radius cell's u (all 2^18) and every angle of the grid (all
    2^14). ln within 2 float32 ulps of |ln u| (Cephes states about 1 ulp), cos and sin within
    2e-7 absolutely (float32's own spacing near 1 is 6e-8 to 1.2e-7). Fails on a wrong
    coefficient, a mantissa range not centred on 1 (u near 1 loses its digits), or a wrong
    octant rotation (a sign or a cos/sin swap)."""
    k = np.arange(-2**(R_BITS - 1), 2**(R_BITS - 1), dtype=np.int64)
    u = ((k + 2**(R_BITS - 1) + 0.5) / 2.0**R_BITS).astype(np.float32)
    got = np.asarray(xops._log_unit(keras.ops.convert_to_tensor(u))).astype(np.float64)
    want = np.log(u.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) <= 2.0
    j = np.arange(2**A_BITS, dtype=np.int32)
    c, s = (np.asarray(a).astype(np.float64) for a in xops._cos_sin_of_arc(keras.ops.convert_to_tensor(j)))
    theta = 2 * np.pi * (j + 0.5) / 2**A_BITS
    assert np.max(np.abs(c - np.cos(theta))) < 2e-7 and np.max(np.abs(s - np.sin(theta))) < 2e-7


@pytest.mark.parametrize("mode", ["variance", "row and column"])
@pytest.mark.parametrize("one_pass", [True, False])
def test_the_read_adds_the_sampler_normals_times_their_std(mode, one_pass, monkeypatch):
    """The read's noise (``_add_read_noise``: on TensorFlow the transform and the sum in one
    fused pass) is ``y + std * z`` with ``z`` exactly what ``standard_normal`` draws from the same
    seed: the sampler's tested accuracy is the read's. Odd sizes, several blocks of words
    (PAIR_CHUNK is not patched: 3 x 200,001 outputs = 2.3 blocks), under tf.function as the
    engine runs. Within 2 ulps of the output (XLA may fuse the last product and sum). Fails if
    the fused path lays the normals out otherwise (blocks, cosines then sines), takes the std
    instead of the variance or the reverse, or draws other words. Both of the read's paths: the
    one XLA pass from the words (large reads) and the transform, slice and sum apart (reads below
    ``ONE_PASS_NOISE_SIZE``), which must give the same numbers bit for bit."""
    import tensorflow as tf

    monkeypatch.setattr(xops, "ONE_PASS_NOISE_SIZE", 0 if one_pass else 1 << 62)

    rng = np.random.default_rng(3)
    shape = (3, 200_001)
    y = rng.standard_normal(shape).astype(np.float32)
    if mode == "variance":
        s2 = (rng.random(shape) + 0.5).astype(np.float32)
        std, kw = np.sqrt(s2), {"s2": tf.constant(s2)}
    else:
        row = (rng.random((3, 1)) + 0.5).astype(np.float32)
        col = (rng.random((1, 200_001)) + 0.5).astype(np.float32)
        std, kw = row * col, {"row_sd": tf.constant(row), "col_sd": tf.constant(col)}
    gens = keras.random.SeedGenerator(9), keras.random.SeedGenerator(9)  # the same words
    got = tf.function(lambda: xops._add_read_noise(tf.constant(y), gens[0], **kw))()
    z = np.asarray(tf.function(lambda: xops.standard_normal(shape, gens[1]))())
    want = y.astype(np.float64) + std.astype(np.float64) * z
    np.testing.assert_allclose(np.asarray(got), want, rtol=0,
                               atol=2 * float(np.spacing(np.float32(np.abs(want).max()))))
    assert np.std(z) == pytest.approx(1.0, abs=0.01)  # z is a draw, not zeros
    # bit for bit what the read computed before the transform, the slice of the first n normals
    # and the sum became one XLA pass (the normals drawn apart, then the std and the sum fused):
    # noisy results in the docs stay reproducible
    apart = tf.function(lambda: xops._fused(xops._noisy)(tf.constant(y), tf.constant(z), **kw))()
    assert np.array_equal(np.asarray(got), np.asarray(apart))
