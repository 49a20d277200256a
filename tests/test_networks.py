"""The bundled network mappers (mlp, cnn, rnn) and the noise-trained ReLU RNN cell."""

import math

import keras
import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.core.layers import PreActivationNoiseRNNCell
from nvmkit.core.network import as_images
from nvmkit.core.registry import get_registry

# the layer vocabulary the deploy side understands (the contract between the two halves of issue 4)
ALLOWED = (keras.layers.InputLayer, keras.layers.Dense, keras.layers.Conv2D, keras.layers.MaxPooling2D,
           keras.layers.Flatten, keras.layers.Reshape, keras.layers.Activation, keras.layers.ReLU,
           keras.layers.GaussianNoise, keras.layers.Dropout, keras.layers.RNN)
SMALL = {"mlp": {"hidden": [32, 16]}, "cnn": {"filters": [4, 8], "dense": [16]},
         "rnn": {"time_steps": 7, "units": 12}}


def mapper(name, **params):
    return get_registry().create("network", name, params)


def images(n=6, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn"])
def test_built_model_reads_prepared_input_and_uses_only_contract_layers(name):
    m = mapper(name, **SMALL[name])
    model = m.build((28, 28), 10, sigma_neu=0.1, seed=0)
    x = m.prepare(images())
    assert x.dtype == np.float32
    assert tuple(model.input_shape[1:]) == x.shape[1:]
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (6, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    for layer in model.layers:
        assert isinstance(layer, ALLOWED), layer
        if isinstance(layer, keras.layers.RNN):
            assert isinstance(layer.cell, PreActivationNoiseRNNCell)
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Activation) and last.activation.__name__ == "softmax"
    assert isinstance(model.layers[-2], keras.layers.Dense) and model.layers[-2].activation.__name__ == "linear"


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_noise_sits_between_each_linear_layer_and_its_relu(name):
    m = mapper(name, **SMALL[name])
    sigmas = [0.1 * (i + 1) for i in range(m.noise_sites())]
    layers = m.build((28, 28), 10, sigma_neu=sigmas, seed=0).layers
    relus = [i for i, layer in enumerate(layers)
             if isinstance(layer, keras.layers.Activation) and layer.activation.__name__ == "relu"]
    assert len(relus) == m.noise_sites()
    for i, sigma in zip(relus, sigmas):
        noise, linear = layers[i - 1], layers[i - 2]
        assert isinstance(noise, keras.layers.GaussianNoise) and math.isclose(noise.stddev, sigma)
        assert isinstance(linear, (keras.layers.Dense, keras.layers.Conv2D))
        assert linear.activation.__name__ == "linear"
    plain = m.build((28, 28), 10, sigma_neu=0.0, seed=0)
    assert not any(isinstance(layer, keras.layers.GaussianNoise) for layer in plain.layers)


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn"])
def test_noise_acts_in_training_only(name):
    m = mapper(name, **SMALL[name])
    model = m.build((28, 28), 10, sigma_neu=0.5, seed=0)
    x = m.prepare(images())
    a, b = np.asarray(model(x, training=False)), np.asarray(model(x, training=False))
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(model(x, training=True)) - a).max() > 1e-4


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn"])
def test_same_seed_same_initial_weights(name):
    m = mapper(name, **SMALL[name])
    w1 = m.build((28, 28), 10, seed=3).get_weights()
    w2 = m.build((28, 28), 10, seed=3).get_weights()
    w3 = m.build((28, 28), 10, seed=4).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w3))


def test_wrong_number_of_site_sigmas_is_a_config_error():
    m = mapper("mlp", hidden=[8, 8])
    with pytest.raises(ConfigError, match="2 noise sites"):
        m.build((28, 28), 10, sigma_neu=[0.1, 0.1, 0.1])
    with pytest.raises(ConfigError):
        m.build((28, 28), 10, sigma_neu=-0.1)


def test_defaults_match_the_documented_architectures():
    mlp, cnn, rnn = mapper("mlp"), mapper("cnn"), mapper("rnn")
    assert mlp.hidden == [500] and mlp.noise_sites() == 1
    assert cnn.filters == [32, 64] and cnn.dense == [128] and cnn.noise_sites() == 3
    assert (rnn.time_steps, rnn.units, rnn.noise_sites()) == (4, 128, 1)
    dense = [layer.units for layer in mlp.build((28, 28), 10).layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [500, 10]
    for m in (mlp, cnn, rnn):
        assert type(m).from_config(m.get_config()) == m
        assert set(m.training_defaults) >= {"optimizer", "learning_rate", "epochs", "batch_size"}


def test_rnn_reads_the_image_pixelwise_in_t_slices():
    x = images(3)
    for t in (2, 4, 7, 14, 28, 112):
        seq = mapper("rnn", time_steps=t).prepare(x)
        assert seq.shape == (3, t, 784 // t)
        np.testing.assert_array_equal(seq.reshape(3, -1), x.reshape(3, -1))
        np.testing.assert_array_equal(seq[:, 1], x.reshape(3, -1)[:, 784 // t: 2 * 784 // t])


@pytest.mark.parametrize("t", [3, 5, 10, 0])
def test_rnn_time_steps_must_divide_the_pixel_count(t):
    with pytest.raises(ConfigError) as err:
        mapper("rnn", time_steps=t)
    if t:
        assert "valid values: 1, 2, 4, 7, 8, 14, 16, 28, 49, 56, 98, 112, 196, 392, 784" in str(err.value)


def test_rnn_cell_computes_the_relu_elman_recurrence():
    t, d, h = 5, 6, 4
    cell = PreActivationNoiseRNNCell(h, stddev=0.3, seed=1)
    layer = keras.layers.RNN(cell, return_sequences=True)
    x = np.random.default_rng(2).normal(size=(3, t, d)).astype(np.float32)
    out = np.asarray(layer(x))
    k, r, b = (np.asarray(v) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
    assert (k.shape, r.shape, b.shape) == ((d, h), (h, h), (h,))
    assert [w.name for w in cell.weights] == ["kernel", "recurrent_kernel", "bias"]
    state = np.zeros((3, h))
    for step in range(t):
        state = np.maximum(x[:, step] @ k + state @ r + b, 0)
        np.testing.assert_allclose(out[:, step], state, rtol=1e-5, atol=1e-5)


def test_rnn_cell_noise_is_fresh_at_every_step_with_the_stated_std():
    sigma, t, h, n = 0.7, 6, 50, 400
    cell = PreActivationNoiseRNNCell(h, stddev=sigma, seed=5, kernel_initializer="zeros",
                                     recurrent_initializer="zeros")
    out = np.asarray(keras.layers.RNN(cell, return_sequences=True)(np.zeros((n, t, 3), np.float32),
                                                                     training=True)).astype(np.float64)
    # with zero weights h_t = ReLU(noise_t): E[h^2] = sigma^2 / 2, P(h > 0) = 1/2
    m = out.size
    second = np.mean(out ** 2)
    assert abs(second - sigma ** 2 / 2) < 5 * sigma ** 2 * math.sqrt(2.5 / m)  # var of relu(n)^2 = 5/4 s^4
    assert abs(np.mean(out > 0) - 0.5) < 5 * math.sqrt(0.25 / m)
    # each step draws anew: consecutive steps are uncorrelated
    corr = np.corrcoef(out[:, 0].ravel(), out[:, 1].ravel())[0, 1]
    assert abs(corr) < 5 / math.sqrt(n * h)


def test_rnn_model_survives_a_safe_mode_round_trip(tmp_path):
    m = mapper("rnn", time_steps=7, units=8)
    model = m.build((28, 28), 10, sigma_neu=0.2, seed=0)
    path = tmp_path / "rnn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = m.prepare(images(4))
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)
    assert loaded.layers[0].cell.stddev == 0.2


@pytest.mark.parametrize("name,params", [
    ("mlp", {"hidden": []}), ("mlp", {"hidden": [0]}), ("mlp", {"hidden": ["wide"]}),
    ("mlp", {"width": [10]}), ("cnn", {"padding": "full"}), ("cnn", {"dropout": 1.0}),
    ("cnn", {"kernel_size": 0}), ("rnn", {"units": 0}), ("rnn", {"time_steps": 2.5}),
])
def test_bad_parameters_are_config_errors(name, params):
    with pytest.raises(ConfigError):
        mapper(name, **params)


def test_cnn_that_shrinks_the_image_to_nothing_is_refused():
    with pytest.raises(ConfigError, match="shrink"):
        mapper("cnn", filters=[4, 4, 4, 4]).build((28, 28), 10)


def test_images_are_float32_in_unit_range():
    raw = np.full((2, 28, 28), 255, np.uint8)
    np.testing.assert_array_equal(as_images(raw, "t"), np.ones((2, 28, 28), np.float32))
    assert mapper("cnn").prepare(raw).shape == (2, 28, 28, 1)
    assert mapper("mlp").prepare(raw[..., None]).shape == (2, 784)
    with pytest.raises(ConfigError, match=r"\(N, H, W\)"):
        mapper("mlp").prepare(np.zeros((2, 784), np.float32))
