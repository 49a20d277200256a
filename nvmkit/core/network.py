"""The network-mapper abstract type: a trainable Keras architecture and how it reads its input."""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from nvmkit.core.component import Component


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
