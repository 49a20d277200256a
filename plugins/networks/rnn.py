"""The seed's time-multiplexed ReLU RNN: the image enters pixel-wise in T equal slices.

One crossbar of (784/T + H) rows x H columns holds the input and recurrent weights stacked and is
re-read at each of the T steps (Bennett et al., Sandia 2021), so T trades input width for reads.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from nvmkit import ConfigError, NetworkMapper, as_images, check_int, hookimpl, site_sigmas

PIXELS = 28 * 28


def valid_time_steps(pixels: int = PIXELS) -> list[int]:
    return [t for t in range(1, pixels + 1) if pixels % t == 0]


class RNN(NetworkMapper):
    """Time-multiplexed ReLU RNN: T pixel-wise slices, H recurrent units, dense readout (T=4, H=128)."""

    name: ClassVar[str] = "rnn"
    # Adam, 1e-3 with cosine decay over 10 epochs, batch 128: T=4, H=128 reaches 97.7% on MNIST and
    # 88.2% on Fashion-MNIST, about 5 s per epoch on 2 CPU cores.
    training_defaults: ClassVar[dict] = {
        "optimizer": "adam", "learning_rate": 1e-3, "epochs": 10, "batch_size": 128, "schedule": "cosine",
    }

    # T=4 (7 image rows per step) is the default because the seed found its RNN best at few time
    # steps (internal noise adds up over the T re-reads of the one crossbar) and because 196 + 128 rows
    # fit one 1152-row SONOS tile; T is a CLI option (--time-steps) for the time-step comparison.
    def __init__(self, time_steps=4, units=128):
        owner = f"network '{self.name}'"
        self.time_steps = check_int(owner, "time_steps", time_steps, 1)
        if PIXELS % self.time_steps:
            raise ConfigError(f"{owner}: time_steps={self.time_steps} does not divide the {PIXELS} pixels; "
                              f"valid values: {', '.join(map(str, valid_time_steps()))}")
        self.units = check_int(owner, "units", units, 1)

    def build(self, input_shape, num_classes, sigma_neu=0.0, seed=0):
        # here, not at the top: listing devices loads every plugin and needs no Keras (nvmkit's
        # building blocks first: their import keeps TensorFlow's start-up chatter off stderr)
        from nvmkit import PreActivationNoiseRNNCell, initializer

        import keras

        owner = f"network '{self.name}'"
        (sigma,) = site_sigmas(owner, sigma_neu, self.noise_sites())
        pixels = int(np.prod(input_shape))
        if pixels % self.time_steps:
            raise ConfigError(f"{owner}: time_steps={self.time_steps} does not divide the {pixels} pixels; "
                              f"valid values: {', '.join(map(str, valid_time_steps(pixels)))}")
        cell = PreActivationNoiseRNNCell(self.units, sigma, seed=seed + 1000,
                                         kernel_initializer=initializer(seed),
                                         recurrent_initializer=initializer(seed + 1, "orthogonal"))
        return keras.Sequential([
            keras.Input((self.time_steps, pixels // self.time_steps)),
            keras.layers.RNN(cell),
            keras.layers.Dense(num_classes, kernel_initializer=initializer(seed + 2)),
            keras.layers.Activation("softmax"),
        ], name=self.name)

    def prepare(self, x):
        x = as_images(x, f"network '{self.name}'")
        pixels = x.shape[1] * x.shape[2]
        if pixels % self.time_steps:
            raise ConfigError(f"network '{self.name}': time_steps={self.time_steps} does not divide the "
                              f"{pixels} pixels; valid values: {', '.join(map(str, valid_time_steps(pixels)))}")
        # row-major flatten then split: step t sees pixels [t*784/T, (t+1)*784/T)
        return x.reshape(len(x), self.time_steps, pixels // self.time_steps)

    def noise_sites(self) -> int:
        return 1


@hookimpl
def nvmkit_network_mappers():
    return [RNN]
