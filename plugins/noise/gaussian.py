"""Additive Gaussian test-set noise, as in the seed: test_set + N(0, sigma^2), clipped to [0, 1]."""

from __future__ import annotations

from typing import ClassVar

from nvmkit import NoiseInjector, check_nonnegative, hookimpl

from ._skimage import noisy

class GaussianNoiseInjector(NoiseInjector):
    """Additive Gaussian pixel noise of std sigma, clipped to [0, 1] (seed: "more info loss")."""

    name: ClassVar[str] = "gaussian"

    def __init__(self, sigma=0.1):
        self.sigma = check_nonnegative(f"noise '{self.name}'", "sigma", sigma)

    def apply(self, x, rng):
        # random_noise is parameterised by the variance; the seed states a standard deviation
        return noisy(f"noise '{self.name}'", x, rng, "gaussian", mean=0.0, var=self.sigma ** 2)

@hookimpl
def nvmkit_noise_injectors():
    return [GaussianNoiseInjector]
