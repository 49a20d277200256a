"""Salt-and-pepper test-set noise, as in the seed: a fraction of pixels pushed to 0 or 1."""

from __future__ import annotations

from typing import ClassVar

from nvmkit import NoiseInjector, check_fraction, hookimpl

from ._skimage import noisy


class SaltAndPepperNoiseInjector(NoiseInjector):
    """Each pixel is replaced with probability amount, by 0 or 1 with equal odds (localised info loss)."""

    name: ClassVar[str] = "salt-and-pepper"

    def __init__(self, amount=0.05):
        self.amount = check_fraction(f"noise '{self.name}'", "amount", amount)

    def apply(self, x, rng):
        return noisy(f"noise '{self.name}'", x, rng, "s&p", amount=self.amount, salt_vs_pepper=0.5)


@hookimpl
def nvmkit_noise_injectors():
    return [SaltAndPepperNoiseInjector]
