"""Multiplicative (speckle) test-set noise, as in the seed: x + x * N(0, sigma^2), clipped to [0, 1]."""

from __future__ import annotations

from typing import ClassVar

from nvmkit import NoiseInjector, check_nonnegative, hookimpl

from ._skimage import noisy


class SpeckleNoiseInjector(NoiseInjector):
    """Multiplicative noise x + x*n, n ~ N(0, sigma^2), clipped to [0, 1] (seed: "less info loss")."""

    name: ClassVar[str] = "speckle"

    def __init__(self, sigma=0.1):
        self.sigma = check_nonnegative(f"noise '{self.name}'", "sigma", sigma)

    def apply(self, x, rng):
        # dark pixels stay dark: the perturbation scales with the pixel; random_noise takes a variance
        return noisy(f"noise '{self.name}'", x, rng, "speckle", mean=0.0, var=self.sigma ** 2)


@hookimpl
def nvmkit_noise_injectors():
    return [SpeckleNoiseInjector]
