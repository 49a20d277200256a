"""The multilayer perceptron: dense ReLU layers and a softmax readout (default 784-500-10)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import NetworkMapper, as_images, check_sequence, hookimpl, site_sigmas


class MLP(NetworkMapper):
    """Dense ReLU network on flattened pixels, one crossbar per layer (default 784-500-10)."""

    name: ClassVar[str] = "mlp"
    # Adam, 1e-3 decayed to 0 by a cosine over 10 epochs, batch 128 (measured: MNIST 98.2%,
    # Fashion-MNIST 88.9% test accuracy; a constant rate peaks near 87.5% on Fashion and then overfits)
    training_defaults: ClassVar[dict] = {
        "optimizer": "adam", "learning_rate": 1e-3, "epochs": 10, "batch_size": 128, "schedule": "cosine",
    }

    def __init__(self, hidden=(500,)):
        self.hidden = check_sequence(f"network '{self.name}'", "hidden", hidden)

    def build(self, input_shape, num_classes, sigma_neu=0.0, seed=0):
        # here, not at the top: listing devices loads every plugin and needs no Keras (nvmkit's
        # building blocks first: their import keeps TensorFlow's start-up chatter off stderr)
        from nvmkit import initializer, relu_block

        import keras

        sigmas = site_sigmas(f"network '{self.name}'", sigma_neu, self.noise_sites())
        layers: list = [keras.Input((int(np.prod(input_shape)),))]
        for i, (width, sigma) in enumerate(zip(self.hidden, sigmas)):
            layers.append(keras.layers.Dense(width, kernel_initializer=initializer(seed + i)))
            layers += relu_block(sigma, seed + 1000 + i)
        layers += [keras.layers.Dense(num_classes, kernel_initializer=initializer(seed + len(self.hidden))),
                   keras.layers.Activation("softmax")]
        return keras.Sequential(layers, name=self.name)

    def prepare(self, x):
        x = as_images(x, f"network '{self.name}'")
        return x.reshape(len(x), -1)

    def noise_sites(self) -> int:
        return len(self.hidden)


@hookimpl
def nvmkit_network_mappers():
    return [MLP]
