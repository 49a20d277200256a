"""Photon shot noise: the signal-dependent (Poisson) part of image-sensor noise.

A pixel of brightness x in [0, 1] collects a Poisson number of photons with mean x N, N being the
count at full white; the image is the count divided by N. Its std, sqrt(x / N), grows with
brightness (unlike additive Gaussian noise, dark pixels stay dark), the Poissonian component of
A. Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for single-image raw-data",
IEEE Trans. Image Process. 17(10), 2008. The strength is stated as ``sigma = 1 / sqrt(N)``, the
relative std at a white pixel, so ``poisson:0.1`` means 100 photons at white.
"""

from __future__ import annotations

import numpy as np

from nvmkit import NoiseInjector, check_nonnegative, hookimpl

# Below this sigma (N > 1e15 photons) the noise is under float32 resolution at 1.0, and numpy's
# Poisson sampler would soon refuse the mean (it must stay below ~9e18).
SIGMA_FLOOR = 3e-8


class PoissonNoise(NoiseInjector):
    """Photon shot noise: Poisson counts with 1/sigma^2 photons at white, rescaled to [0, 1]."""

    name = "poisson"

    def __init__(self, sigma=0.1):
        self.sigma = check_nonnegative(f"noise '{self.name}'", "sigma", sigma)

    def apply(self, x, rng):
        x = np.asarray(x, dtype=np.float32)
        if self.sigma < SIGMA_FLOOR:
            return np.clip(x, 0.0, 1.0)
        photons = 1.0 / self.sigma**2
        counts = rng.poisson(np.clip(x, 0.0, 1.0).astype(np.float64) * photons)
        return np.clip(counts / photons, 0.0, 1.0).astype(np.float32)


@hookimpl
def nvmkit_noise_injectors():
    return [PoissonNoise]
