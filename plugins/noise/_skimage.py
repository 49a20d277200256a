"""The shared path of the bundled test-set noise injectors: validate, call scikit-image, cast."""

from __future__ import annotations

import numpy as np
from skimage.util import random_noise

from nvmkit import ConfigError


def noisy(owner: str, x, rng: np.random.Generator, mode: str, **kwargs) -> np.ndarray:
    """``skimage.util.random_noise`` on the whole batch at once, clipped to [0, 1], float32 out."""
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"{owner}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                          f"got {type(rng).__name__}")
    x = np.asarray(x, dtype=np.float32)
    if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise ConfigError(f"{owner}: images must be finite and within [0, 1]; scale pixels to [0, 1] first")
    # random_noise clips to [-1, 1] when it sees a negative pixel; inputs here are in [0, 1], so it clips
    # to [0, 1]. The explicit clip keeps that true whatever scikit-image decides for an empty array.
    out = random_noise(x, mode=mode, rng=rng, clip=True, **kwargs)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
