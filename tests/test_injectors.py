"""The bundled test-set noise injectors: statistics, clipping, determinism and validation."""

import math

import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.core.registry import create_from_spec, get_registry

N = 200_000  # pixels per statistics test: 4 images of 50k pixels, sub-second


def grey(value=0.5, shape=(4, 250, 200)):
    return np.full(shape, value, dtype=np.float32)


def rng(seed=0):
    return np.random.default_rng(seed)


def std_tolerance(sigma, n, z=5.0):
    """z standard errors of a sample std (sigma / sqrt(2n)) plus float32 rounding."""
    return z * sigma / math.sqrt(2 * n) + 1e-6


def clipped_normal_moments(mu, sd):
    """Mean and std of clip(N(mu, sd^2), 0, 1), by numerical integration of the clipped distribution."""
    z = np.linspace(-12, 12, 400_001)
    pdf = np.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)
    v = np.clip(mu + sd * z, 0, 1)
    dz = z[1] - z[0]
    mean = np.sum(v * pdf) * dz
    return mean, math.sqrt(np.sum((v - mean) ** 2 * pdf) * dz)


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_gaussian_adds_noise_of_the_stated_std(sigma):
    x = grey()
    out = create_from_spec("noise", f"gaussian:{sigma}").apply(x, rng())
    noise = (out - x).ravel().astype(np.float64)
    # at 0.5 +- 5 sigma nothing clips for sigma <= 0.1, so the added noise is exactly N(0, sigma^2)
    assert abs(noise.std() - sigma) < std_tolerance(sigma, noise.size)
    assert abs(noise.mean()) < 5 * sigma / math.sqrt(noise.size)


def test_gaussian_std_matches_the_clipped_normal_where_clipping_acts():
    sigma, mu = 0.3, 0.5
    out = create_from_spec("noise", f"gaussian:{sigma}").apply(grey(mu), rng(1)).ravel().astype(np.float64)
    _, expected = clipped_normal_moments(mu, sigma)
    assert expected < sigma * 0.95  # clipping matters at this level, so the test can tell
    assert abs(out.std() - expected) < std_tolerance(sigma, out.size)
    assert out.min() == 0.0 and out.max() == 1.0


@pytest.mark.parametrize("value", [0.2, 0.5, 0.8])
def test_speckle_is_multiplicative(value):
    """Speckle as implemented: x + x n, n ~ N(0, sigma^2), clipped to [0, 1]; on a grey image of value
    v that is clip(N(v, (v sigma)^2), 0, 1). Mean and std are compared with that distribution's
    (clipping matters at v = 0.8: 1 is 1 sigma away). Fails if the noise is additive (std would
    not scale with v), has the wrong variance or a mean shift, or clips elsewhere."""
    sigma = 0.25
    x = grey(value)
    out = create_from_spec("noise", f"speckle:{sigma}").apply(x, rng(2)).ravel().astype(np.float64)
    mean, sd = clipped_normal_moments(value, value * sigma)
    n = out.size
    # a sample mean has std sd / sqrt(n), a sample std sd / sqrt(2 n): allow 5 of each
    assert abs(out.mean() - mean) < 5 * sd / math.sqrt(n) + 1e-6
    assert abs(out.std() - sd) < std_tolerance(sd, n)
    if value + 5 * sigma * value < 1:  # no clipping at all: (out - x) / x is exactly n ~ N(0, sigma^2)
        noise = (out - value) / value
        assert abs(noise.std() - sigma) < std_tolerance(sigma, n)
    else:
        assert out.max() == 1.0
    if 1 - value <= value * sigma:  # 1 within one sigma: clipping changes the std, so the test can tell
        assert sd < value * sigma * 0.95


def test_speckle_leaves_black_pixels_black():
    x = np.zeros((2, 28, 28), np.float32)
    x[:, 10:18, 10:18] = 0.7
    out = create_from_spec("noise", "speckle:0.5").apply(x, rng(3))
    assert np.all(out[x == 0] == 0)
    assert not np.allclose(out[x > 0], 0.7)


@pytest.mark.parametrize("amount", [0.01, 0.1, 0.3])
def test_salt_and_pepper_hits_the_stated_fraction_half_each(amount):
    x = grey()
    out = create_from_spec("noise", f"salt-and-pepper:{amount}").apply(x, rng(4))
    hit = out != 0.5
    n = out.size
    tol = 5 * math.sqrt(amount * (1 - amount) / n)  # binomial standard error of a fraction
    assert abs(hit.mean() - amount) < tol
    assert set(np.unique(out[hit])) <= {0.0, 1.0}
    salt = (out == 1.0).sum() / max(hit.sum(), 1)
    assert abs(salt - 0.5) < 5 * math.sqrt(0.25 / max(hit.sum(), 1))


@pytest.mark.parametrize("spec", ["gaussian:0.2", "speckle:0.4", "salt-and-pepper:0.2"])
def test_output_is_float32_clipped_same_shape_and_input_untouched(spec):
    x = np.random.default_rng(5).random((3, 28, 28), dtype=np.float32)
    before = x.copy()
    out = create_from_spec("noise", spec).apply(x, rng())
    assert out.dtype == np.float32 and out.shape == x.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("spec", ["gaussian:0.1", "speckle:0.1", "salt-and-pepper:0.1"])
def test_same_seed_same_noise_other_seed_other_noise(spec):
    inj = create_from_spec("noise", spec)
    x = grey(0.5, (2, 28, 28))
    a, b, c = inj.apply(x, rng(7)), inj.apply(x, rng(7)), inj.apply(x, rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("spec", ["gaussian:0", "speckle:0", "salt-and-pepper:0"])
def test_zero_strength_is_the_identity(spec):
    x = np.random.default_rng(6).random((2, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(create_from_spec("noise", spec).apply(x, rng()), x)


@pytest.mark.parametrize("spec", ["gaussian:-0.1", "speckle:-1", "salt-and-pepper:-0.1",
                                  "salt-and-pepper:1.5", "gaussian:nan", "speckle:inf"])
def test_bad_strength_is_a_config_error(spec):
    with pytest.raises(ConfigError):
        create_from_spec("noise", spec)


def test_images_outside_unit_range_are_refused():
    inj = create_from_spec("noise", "gaussian:0.1")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        inj.apply(np.full((1, 4, 4), 255.0, np.float32), rng())
    with pytest.raises(ConfigError, match="Generator"):
        inj.apply(grey(0.5, (1, 4, 4)), 0)


def test_level_and_config_round_trip():
    reg = get_registry()
    for name, param in (("gaussian", "sigma"), ("speckle", "sigma"), ("salt-and-pepper", "amount")):
        cls = reg.get("noise", name)
        assert cls.param_names()[0] == param
        inj = cls.from_config({param: 0.25})
        assert inj.level == 0.25
        assert cls.from_config(inj.get_config()) == inj
