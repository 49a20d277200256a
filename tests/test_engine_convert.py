"""convert(): any Sequential or functional Keras model onto crossbars. With the ideal device and
the ideal crossbar preset the converted model must equal the original to float32 precision:
one test per everyday model shape of issue 11 (random weights: exactness needs no training).

Each test fails if the analog layer mis-orders a patch or kernel (im2col order, depthwise channel
order), mishandles padding/strides/dilation, drops the bias, folds BatchNormalization wrongly,
loses a digital layer's weights, or mixes up Monte Carlo groups (every test runs 2 trials on
the repeated batch and checks both copies)."""

import keras
import numpy as np
import pytest

from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.workflow.data import load_sample
from nvmkit.engine.convert import convert, repeat_trials
from nvmkit.engine.layers import AnalogLayer
from nvmkit.core.errors import ConfigError
from nvmkit_plugins.devices.ideal import IdealDevice

L = keras.layers
IDEAL = CrossbarConfig.preset("ideal")
TRIALS = 2


def randomize(model, seed):
    """Random weights (biases nonzero so the bias row is exercised; BN variances positive)."""
    rng = np.random.default_rng(seed)
    new = []
    for v, w in zip(model.weights, model.get_weights()):
        a = rng.normal(0, 0.5, w.shape)
        new.append((np.abs(a) + 0.1 if "variance" in v.path else a).astype("f4"))
    model.set_weights(new)
    return model


@pytest.fixture(scope="module")
def mnist():
    ds = load_sample("mnist")
    return (ds.x_test[:8] / 255.0).astype("f4")


def assert_exact(model, x, config=IDEAL, **kw):
    ref = keras.ops.convert_to_numpy(model(x, training=False))
    analog = convert(model, IdealDevice(), config, trials=TRIALS, **kw)
    # eager call: no graph tracing (predict, with Keras's batching, is exercised elsewhere)
    y = keras.ops.convert_to_numpy(analog(repeat_trials(x, TRIALS), training=False))
    assert y.shape == (len(x) * TRIALS, *ref.shape[1:])
    # float32: the mapping round trip W -> (G+ - G-) -> W and the sums of a few hundred terms
    tol = 2e-5 * max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(y, repeat_trials(ref, TRIALS), rtol=2e-5, atol=tol)
    assert any(isinstance(layer, AnalogLayer) for layer in analog.layers)
    return analog


def test_dense_with_dropout(rng_x=np.random.default_rng(0)):
    m = randomize(keras.Sequential([keras.Input((12,)), L.Dense(9, activation="relu"), L.Dropout(0.3),
                                    L.Dense(4, activation="softmax")]), 0)
    assert_exact(m, rng_x.random((10, 12)).astype("f4"))


def test_dense_without_bias_and_digital_bias():
    m = randomize(keras.Sequential([keras.Input((12,)), L.Dense(9, use_bias=False), L.ReLU(),
                                    L.Dense(4)]), 1)
    x = np.random.default_rng(1).random((10, 12)).astype("f4")
    assert_exact(m, x)
    assert_exact(m, x, CrossbarConfig.from_dict({**IDEAL.to_dict(), "mapping": {"bias": "digital"}}))


def test_dense_with_tanh_and_sigmoid_and_tiles():
    m = randomize(keras.Sequential([keras.Input((40,)), L.Dense(30, activation="tanh"),
                                    L.Dense(20, activation="sigmoid"), L.Dense(3)]), 2)
    small_tiles = CrossbarConfig.from_dict({**IDEAL.to_dict(), "mapping": {"tile_rows": 16, "tile_cols": 8,
                                                                            "scheme": "offset"}})
    assert_exact(m, np.random.default_rng(2).random((10, 40)).astype("f4"), small_tiles)


def test_batchnorm_after_dense_folded_and_kept():
    m = randomize(keras.Sequential([keras.Input((12,)), L.Dense(9), L.BatchNormalization(), L.ReLU(),
                                    L.Dense(4)]), 3)
    x = np.random.default_rng(3).random((10, 12)).astype("f4")
    folded = assert_exact(m, x)
    assert not any(isinstance(layer, L.BatchNormalization) for layer in folded.layers)
    kept = assert_exact(m, x, fold_batchnorm=False)
    assert any(isinstance(layer, L.BatchNormalization) for layer in kept.layers)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_strided_and_same(mnist, padding):
    m = randomize(keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(4, 3, padding=padding, activation="relu"),
        L.Conv2D(3, (2, 3), strides=2, padding=padding), L.MaxPooling2D(), L.Flatten(),
        L.Dense(5, activation="softmax")]), 4)
    assert_exact(m, mnist[..., None])


def test_conv2d_batchnorm_relu(mnist):
    m = randomize(keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(4, 3, strides=2), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(5, 3, dilation_rate=2, padding="same"), L.BatchNormalization(), L.Activation("relu"),
        L.Flatten(), L.Dense(4)]), 5)
    assert_exact(m, mnist[..., None])


def test_average_and_global_average_pooling(mnist):
    m = randomize(keras.Sequential([
        keras.Input((28, 28, 1)), L.Rescaling(2.0, offset=-1.0), L.ZeroPadding2D(1),
        L.Conv2D(4, 3, activation="relu"), L.AveragePooling2D(2), L.Conv2D(6, 3),
        L.LeakyReLU(0.1), L.GlobalAveragePooling2D(), L.Dense(5, activation="gelu"),
        L.ReLU(max_value=6.0), L.Dense(3)]), 6)
    assert_exact(m, mnist[..., None])


def test_depthwise_and_separable(mnist):
    m = randomize(keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(3, 3, strides=2), L.DepthwiseConv2D(3, depth_multiplier=2,
                                                                               padding="same"),
        L.BatchNormalization(), L.ReLU(), L.SeparableConv2D(4, 3, strides=2, depth_multiplier=2),
        L.BatchNormalization(), L.GlobalAveragePooling2D(), L.Dense(3)]), 7)
    assert_exact(m, mnist[..., None])


def test_functional_residual_resnet_style(mnist):
    inp = keras.Input((28, 28, 1))
    h = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    for _ in range(2):
        r = L.Conv2D(8, 3, padding="same", use_bias=False)(h)
        r = L.BatchNormalization()(r)
        r = L.ReLU()(r)
        r = L.Conv2D(8, 3, padding="same", use_bias=False)(r)
        r = L.BatchNormalization()(r)
        h = L.ReLU()(L.Add()([h, r]))
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(h))
    m = randomize(keras.Model(inp, out), 8)
    assert_exact(m, mnist[..., None])


def test_conv1d(mnist):
    m = randomize(keras.Sequential([
        keras.Input((28, 28)), L.Conv1D(6, 3, activation="relu"), L.Conv1D(4, 5, strides=2,
                                                                          padding="causal"),
        L.Conv1D(4, 3, padding="same", dilation_rate=2), L.GlobalMaxPooling1D(), L.Dense(3)]), 9)
    assert_exact(m, mnist)


def test_nested_model_and_multiple_outputs(mnist):
    inner = keras.Sequential([keras.Input((16,)), L.Dense(8, activation="relu")], name="inner")
    inp = keras.Input((28, 28))
    f = L.Dense(16)(L.Flatten()(L.Cropping1D((6, 6))(inp)))
    h = inner(f)
    out1 = L.Dense(3, activation="softmax")(h)
    out2 = L.Concatenate()([L.Dense(2)(h), L.LayerNormalization()(h)])
    m = randomize(keras.Model(inp, [out1, out2]), 10)
    refs = m.predict(mnist, verbose=0)
    analog = convert(m, IdealDevice(), IDEAL, trials=TRIALS)
    ys = analog.predict(repeat_trials(mnist, TRIALS), verbose=0, batch_size=8)
    for y, ref in zip(ys, refs):
        np.testing.assert_allclose(y, repeat_trials(ref, TRIALS), rtol=2e-5, atol=2e-5)


def test_saved_and_loaded_keras_model(tmp_path, mnist):
    m = randomize(keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(3, 3, strides=2),
                                    L.Flatten(), L.Dense(4)]), 11)
    path = tmp_path / "user.keras"
    m.save(path)
    assert_exact(keras.models.load_model(path), mnist[..., None])


def test_refusals_are_one_line():
    m = keras.Sequential([keras.Input((4, 4, 4, 1)), L.Conv3D(2, 2)])
    with pytest.raises(ConfigError, match="Conv3D") as exc:
        convert(m, IdealDevice(), IDEAL)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="Device"):
        convert(keras.Sequential([keras.Input((3,)), L.Dense(2)]), "ideal")
    m = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    with pytest.raises(ConfigError, match="calibration_data"):
        convert(m, IdealDevice(), CrossbarConfig.preset("converters-8bit"))


def test_simple_rnn_any_activation(mnist):
    m = randomize(keras.Sequential([keras.Input((28, 28)), L.SimpleRNN(8, return_sequences=True),
                                    L.SimpleRNN(6, activation="relu", return_sequences=True),
                                    L.SimpleRNN(5, activation="sigmoid"), L.Dense(3)]), 12)
    assert_exact(m, mnist)


def test_simple_rnn_sequences_backwards_and_seed_cell(mnist):
    from nvmkit import PreActivationNoiseRNNCell

    m = randomize(keras.Sequential([
        keras.Input((28, 28)), L.SimpleRNN(6, return_sequences=True, go_backwards=True),
        L.RNN(PreActivationNoiseRNNCell(5, stddev=0.3)), L.Dense(3)]), 13)
    assert_exact(m, mnist)


def test_two_layer_lstm_on_mnist_rows(mnist):
    m = randomize(keras.Sequential([keras.Input((28, 28)), L.LSTM(10, return_sequences=True),
                                    L.LSTM(8), L.Dense(10, activation="softmax")]), 14)
    assert_exact(m, mnist)


def test_gru_on_mnist_rows(mnist):
    m = randomize(keras.Sequential([keras.Input((28, 28)), L.GRU(10), L.Dense(10, activation="softmax")]), 15)
    assert_exact(m, mnist)
    bad = keras.Sequential([keras.Input((28, 28)), L.GRU(4, reset_after=False)])
    with pytest.raises(ConfigError, match="reset_after"):
        convert(bad, IdealDevice(), IDEAL)


def test_trials_that_cannot_fit_in_memory_are_refused_before_allocation(monkeypatch):
    """K programmed copies are held at once; a trial count whose copies exceed the machine's memory
    is a one-line error naming how many trials fit, raised before any variable is made (the bug:
    --trials 1e9 passed validation and died of memory, or swapped, after the training)."""
    import keras

    import nvmkit.engine.convert as conv
    from nvmkit import ConfigError, CrossbarConfig, convert
    from nvmkit_plugins.devices.generic import GenericDevice

    # 55 crossbar weights; the LayerNormalization's 10 stay digital and are not copied per trial
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(5), keras.layers.LayerNormalization()])
    monkeypatch.setattr(conv, "machine_memory", lambda: 55 * 4 * 100)  # room for 100 trials
    with pytest.raises(ConfigError, match=r"use fewer trials \(the copies of 100 alone fill it\)"):
        convert(model, GenericDevice(), CrossbarConfig(), trials=101)
    assert conv.analog_layers(convert(model, GenericDevice(), CrossbarConfig(), trials=100))[0].trials == 100
    monkeypatch.setattr(conv, "machine_memory", lambda: None)  # an OS that does not say: no check
    convert(model, GenericDevice(), CrossbarConfig(), trials=101)
