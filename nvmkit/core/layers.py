"""Keras building blocks shared by the bundled networks, including the noise-trained ReLU RNN cell.

Noise-injection regularisation follows the seed study (Bennett et al., Sandia, "Evaluating
complexity and resilience trade-offs in emerging memory inference machines", 2021): Gaussian noise
of std ``sigma_neu`` is added to every pre-activation (the crossbar's column output, before the
ReLU), in training only. Feed-forward layers get it from a standard ``keras.layers.GaussianNoise``
placed between a linear Dense/Conv2D and its ``Activation('relu')``; the recurrent layer needs a
cell of its own because its pre-activation exists only inside the time loop.
"""

from __future__ import annotations

import keras

from nvmkit.core.component import check_nonnegative
from nvmkit.core.errors import ConfigError


@keras.saving.register_keras_serializable(package="nvmkit")
class PreActivationNoiseRNNCell(keras.layers.Layer):
    """A ReLU Elman cell, h_t = ReLU(x_t K + h_{t-1} R + b + n_t), n_t ~ N(0, stddev^2) in training.

    Its weights are named and shaped like ``keras.layers.SimpleRNNCell``'s (``kernel`` (in, H),
    ``recurrent_kernel`` (H, H), ``bias`` (H,)), so a deployed crossbar stacks ``[K; R]`` into one
    array of (in + H) rows that is re-read at every step. The noise is drawn fresh at every time
    step, as read noise on that shared crossbar would be. Wrap it in ``keras.layers.RNN``.
    """

    def __init__(self, units, stddev=0.0, seed=None, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or int(units) != units or int(units) < 1:
            raise ConfigError(f"PreActivationNoiseRNNCell: units must be an integer >= 1, got {units!r}")
        self.units = int(units)
        self.stddev = check_nonnegative("PreActivationNoiseRNNCell", "stddev", stddev)
        self.seed = seed
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = self.units
        self.output_size = self.units
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel",
                                      initializer=self.kernel_initializer)
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), name="recurrent_kernel",
                                                initializer=self.recurrent_initializer)
        self.bias = self.add_weight(shape=(self.units,), name="bias", initializer=self.bias_initializer)

    def call(self, inputs, states, training=False):
        prev = states[0] if isinstance(states, (list, tuple)) else states
        ops = keras.ops
        z = ops.matmul(inputs, self.kernel) + ops.matmul(prev, self.recurrent_kernel) + self.bias
        if training and self.stddev > 0:
            z = z + keras.random.normal(ops.shape(z), stddev=self.stddev, dtype=z.dtype,
                                        seed=self.seed_generator)
        h = ops.relu(z)
        return h, [h]

    def get_initial_state(self, batch_size=None):
        return [keras.ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "stddev": self.stddev,
            "seed": self.seed,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="nvmkit")
class PreActivationNoise(keras.layers.GaussianNoise):
    """``keras.layers.GaussianNoise`` without its cap of 1 on ``stddev``: the same draws, in
    training only. The seed's equivalence gives pre-activation stds above 1 for synaptic noise of
    10% (the pre-activations are not normalised), which Keras refuses."""

    def __init__(self, stddev, seed=None, **kwargs):
        stddev = check_nonnegative("PreActivationNoise", "stddev", stddev)
        super().__init__(min(stddev, 1.0), seed=seed, **kwargs)  # Keras checks 0 <= stddev <= 1
        self.stddev = stddev


def relu_block(sigma: float, seed: int) -> list[keras.layers.Layer]:
    """The layers that follow a linear Dense/Conv2D: optional training-only noise, then ReLU.
    Up to 1 the noise is Keras's GaussianNoise (the models cached before stds above 1 were
    allowed); above it :class:`PreActivationNoise`, the same layer without Keras's cap."""
    if sigma > 1:
        noise = [PreActivationNoise(sigma, seed=seed)]
    else:
        noise = [keras.layers.GaussianNoise(sigma, seed=seed)] if sigma > 0 else []
    return noise + [keras.layers.Activation("relu")]


def initializer(seed: int, kind: str = "glorot_uniform"):
    """A seeded initializer, so a model's initial weights depend only on the mapper's seed."""
    return keras.initializers.get({"class_name": kind, "config": {"seed": int(seed)}})
