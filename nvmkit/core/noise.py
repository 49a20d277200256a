"""The test-set noise injector abstract type."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit.core.component import Component


class NoiseInjector(Component):
    """Abstract test-set noise. Subclasses take their strength as the first constructor parameter."""

    kind: ClassVar[str] = "noise"

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return a noisy copy of ``x``, clipped to [0, 1], float32, of the same shape.

        ``x`` is a batch of images as the data set holds them: float32 ``(N, H, W)`` with pixels in
        [0, 1], ``(N, 28, 28)`` for MNIST and Fashion-MNIST; axis 0 is the batch (N may be 1). Each
        image is perturbed on its own: output image i depends on input image i and the draws from
        ``rng`` only, never on the other images of the batch (the engine cuts the test set into
        batches of a memory budget, so anything else would also depend on the batch size). Must be
        vectorised over the whole batch and draw every random number from ``rng``.
        """
        raise NotImplementedError

    @property
    def level(self) -> float:
        """The injector's strength (its first parameter), used for sweeps and plots."""
        return float(getattr(self, self.param_names()[0]))
