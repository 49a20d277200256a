"""The network-mapper abstract type: a trainable Keras architecture and how it reads its input,
with the checks of its parameters and inputs that network plugins share (Keras-free, so that a
network plugin that imports Keras only in ``build`` loads without it: ``nvmkit devices list``)."""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from nvmkit.core.component import Component, check_nonnegative
from nvmkit.core.errors import ConfigError


class NetworkMapper(Component):
    """Abstract network family (MLP, CNN, RNN, ...)."""

    kind: ClassVar[str] = "network"
    #: training defaults for this family; any of them can be overridden by the run configuration
    training_defaults: ClassVar[dict] = {
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "epochs": 5,
        "batch_size": 128,
    }

    def build(self, input_shape: tuple[int, ...], num_classes: int,
              sigma_neu: float | Sequence[float] = 0.0, seed: int = 0):
        """Return an uncompiled ``keras.Model`` taking ``prepare(x)``-shaped input.

        ``sigma_neu`` is the std of the Gaussian noise added before every ReLU during training
        only (one value for all, or one per noise site, see ``noise_sites``). Logits or softmax
        output; the model must convert with :func:`nvmkit.convert`.
        """
        raise NotImplementedError

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Shape images ``(N, H, W)`` in [0, 1] the way the network reads them."""
        return x

    def noise_sites(self) -> int:
        """Number of pre-activation noise sites (ReLU layers) in the built model."""
        raise NotImplementedError


def site_sigmas(owner: str, sigma_neu, sites: int) -> list[float]:
    """Expand ``sigma_neu`` (one value or one per noise site) to a list of ``sites`` stds."""
    if sigma_neu is None:
        sigma_neu = 0.0
    if isinstance(sigma_neu, (list, tuple, np.ndarray)):
        values = list(np.asarray(sigma_neu, dtype=float).reshape(-1))
        if len(values) != sites:
            raise ConfigError(
                f"{owner}: sigma_neu has {len(values)} values for {sites} noise sites; "
                f"give one value or exactly {sites}"
            )
    else:
        values = [sigma_neu] * sites
    return [check_nonnegative(owner, "sigma_neu", v) for v in values]


def as_images(x: np.ndarray, owner: str) -> np.ndarray:
    """Images ``(N, H, W)`` or ``(N, H, W, 1)`` as float32 in [0, 1] (uint8 pixels are scaled)."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / np.float32(255.0)
    x = x.astype(np.float32, copy=False)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ConfigError(f"{owner}: expected images shaped (N, H, W), got {x.shape}; "
                          "pass a batch of single-channel images")
    return x


def check_sequence(owner: str, name: str, values: Sequence, minimum: int = 1,
                   allow_empty: bool = False) -> list[int]:
    """A list of positive integer widths (hidden sizes, filter counts)."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, (list, tuple)) or (not values and not allow_empty):
        raise ConfigError(f"{owner}: {name} must be a {'' if allow_empty else 'non-empty '}list of "
                          f"integers >= {minimum}, got {values!r}")
    out = []
    for v in values:
        if (isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or not np.isfinite(v)
                or int(v) != v or v < minimum):
            raise ConfigError(f"{owner}: {name} must hold integers >= {minimum}, got {values!r}")
        out.append(int(v))
    return out
