"""The test-set noise injector abstract type."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit.core.component import Component


class NoiseInjector(Component):
    """Abstract test-set noise. Subclasses take their strength as the first constructor parameter."""

    kind: ClassVar[str] = "noise"

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return a noisy copy of ``x`` (float32 pixels in [0, 1], any shape), clipped to [0, 1].

        Must be vectorised over the whole array and draw every random number from ``rng``.
        """
        raise NotImplementedError

    @property
    def level(self) -> float:
        """The injector's strength (its first parameter), used for sweeps and plots."""
        return float(getattr(self, self.param_names()[0]))
