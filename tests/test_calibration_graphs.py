"""Converter calibration and the energy footprint on graphs that are not a single chain: a layer
shared by two branches, a model with two inputs, a nested base model, a masked recurrent layer.

A softmax inside a nested head is seen by the training losses.

Each expected range is computed here from Keras's own outputs, independently of nvmkit's
calibration pass: the DAC full scale is max |input| over every input the crossbar reads, the
ADC's max |ideal partial sum| (one tile, bias row included)."""

import keras
import numpy as np
import pytest

from nvmkit.engine.convert import analog_footprint, analog_layers, convert, repeat_trials
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.ideal import IdealDevice

L = keras.layers
CONVERTERS = CrossbarConfig.preset("converters-8bit")  # 8-bit DAC and ADC, ranges calibrated


def ranges(layer):
    core = layer.cores[0]
    return float(core.dac_range.numpy()), float(core.adc_range.numpy())


def by_name(model, name):
    (layer,) = [la for la in analog_layers(model) if la.name == name]
    return layer


def test_a_shared_layer_is_calibrated_on_every_call():
    """One Dense read by x and by 10 x: its one DAC must cover both (calibrating on the first call
    alone clipped the second use's inputs at a tenth of their size)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    shared = L.Dense(4, name="shared")
    a, b = shared(inp), shared(L.Rescaling(10.0)(inp))
    model = keras.Model(inp, L.Concatenate()([a, b]))
    x = np.random.default_rng(0).uniform(-1, 1, (64, 6)).astype("f4")
    analog = convert(model, IdealDevice(), CONVERTERS, calibration_data=x)
    dac, adc = ranges(by_name(analog, "shared"))
    np.testing.assert_allclose(dac, np.abs(10 * x).max(), rtol=1e-6)
    np.testing.assert_allclose(adc, np.abs(model(x)).max(), rtol=1e-5)
    y, ref = np.asarray(analog(x)), np.asarray(model(x))
    # the second use at 8 bits of its own scale, not clipped at the first use's
    np.testing.assert_allclose(y[:, 4:], ref[:, 4:], atol=0.03 * np.abs(ref[:, 4:]).max())


@pytest.mark.parametrize("structure", ["list", "dict"])
def test_a_model_with_two_inputs_is_calibrated_from_its_own_input_structure(structure):
    keras.utils.set_random_seed(1)
    img, tab = keras.Input((5, 5, 2), name="img"), keras.Input((3,), name="tab")
    h = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, name="conv")(img))
    t = L.Dense(4, name="tab_dense")(tab)
    model = keras.Model({"img": img, "tab": tab} if structure == "dict" else [img, tab],
                        L.Dense(2, name="head")(L.Concatenate()([h, t])))
    rng = np.random.default_rng(1)
    xi, xt = rng.random((40, 5, 5, 2)).astype("f4"), 7 * rng.random((40, 3)).astype("f4")
    data = {"img": xi, "tab": xt} if structure == "dict" else [xi, xt]
    analog = convert(model, IdealDevice(), CONVERTERS, calibration_data=data)
    np.testing.assert_allclose(ranges(by_name(analog, "conv"))[0], xi.max(), rtol=1e-6)
    np.testing.assert_allclose(ranges(by_name(analog, "tab_dense"))[0], xt.max(), rtol=1e-6)
    head_in = keras.Model(model.inputs, model.get_layer("head").input)(data)
    np.testing.assert_allclose(ranges(by_name(analog, "head"))[0], np.abs(head_in).max(), rtol=1e-6)


def test_a_nested_base_model_is_calibrated_inside():
    """keras.io's transfer-learning shape: a base model called as a layer. Its inner tensors cannot
    be tapped from the outer inputs; calibration used to refuse the model."""
    keras.utils.set_random_seed(2)
    base_in = keras.Input((8, 8, 3))
    base = keras.Model(base_in, L.Conv2D(5, 3, activation="relu", name="inner")(base_in), name="base")
    inp = keras.Input((8, 8, 3))
    feat = L.GlobalAveragePooling2D()(base(L.Rescaling(2.0)(inp)))
    model = keras.Model(inp, L.Dense(3, name="head")(feat))
    x = np.random.default_rng(2).random((30, 8, 8, 3)).astype("f4")
    analog = convert(model, IdealDevice(), CONVERTERS, calibration_data=x)
    np.testing.assert_allclose(ranges(by_name(analog, "inner"))[0], 2 * x.max(), rtol=1e-6)
    pooled = np.asarray(keras.Model(inp, feat)(x))
    np.testing.assert_allclose(ranges(by_name(analog, "head"))[0], np.abs(pooled).max(), rtol=1e-6)
    np.testing.assert_allclose(ranges(by_name(analog, "head"))[1], np.abs(model(x)).max(), rtol=1e-5)


def test_a_masked_lstm_is_calibrated_on_the_state_it_keeps():
    """The crossbar reads [x_t, h_(t-1)] at every step; at a masked step the state is kept, so the
    ADC's range comes from Keras's own masked states. Padding whose embedding is large drives an
    unmasked state elsewhere, which the ADC range would show."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((8,), dtype="int32")
    emb = L.Embedding(6, 3, mask_zero=True, name="emb")
    seq = L.LSTM(4, return_sequences=True, name="lstm")(emb(inp))
    model = keras.Model(inp, seq)
    emb.embeddings.assign(np.vstack([np.full((1, 3), 3.0), np.asarray(emb.embeddings)[1:]]))
    rng = np.random.default_rng(3)
    x = rng.integers(1, 6, (20, 8)).astype("int32")
    x[:, 4:] = 0  # second half padding
    analog = convert(model, IdealDevice(), CONVERTERS, calibration_data=x)
    dac, adc = ranges(by_name(analog, "lstm"))
    e = np.asarray(emb(x))
    h = np.asarray(model(x))  # Keras repeats the last output at a masked step: the kept state
    prev = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], axis=1)
    rows = np.concatenate([e, prev], axis=-1).reshape(-1, 7)
    lstm = model.get_layer("lstm")
    w = np.vstack([np.asarray(lstm.cell.kernel), np.asarray(lstm.cell.recurrent_kernel)])
    np.testing.assert_allclose(dac, np.abs(rows).max(), rtol=1e-6)
    np.testing.assert_allclose(adc, np.abs(rows @ w + np.asarray(lstm.cell.bias)).max(), rtol=1e-5)


def _reads(model):
    return sum(fp.reads_per_inference for fp in analog_footprint(model) if fp.tiles)


def test_the_footprint_counts_every_call_of_a_shared_layer_and_a_nested_model():
    """A crossbar read twice per inference costs two reads: a layer shared by two branches, and a
    base model called on two inputs (a siamese network), as the same layers apart cost."""
    inp_a, inp_b = keras.Input((6,)), keras.Input((6,))
    shared = L.Dense(4)
    one = keras.Model([inp_a, inp_b], L.Add()([shared(inp_a), shared(inp_b)]))
    two = keras.Model([inp_a, inp_b], L.Add()([L.Dense(4)(inp_a), L.Dense(4)(inp_b)]))
    enc_in = keras.Input((6,))
    encoder = keras.Model(enc_in, L.Dense(3)(L.Dense(5)(enc_in)))
    siamese = keras.Model([inp_a, inp_b], L.Subtract()([encoder(inp_a), encoder(inp_b)]))
    dev = IdealDevice()
    r = [_reads(convert(m, dev, CrossbarConfig.preset("ideal"))) for m in (one, two, siamese)]
    assert r == [2, 2, 4]


def test_the_footprint_of_a_masked_recurrent_layer_counts_its_time_steps():
    """The converted layer is called with [x, mask]; its footprint reads the data's shape."""
    inp = keras.Input((9,), dtype="int32")
    h = L.LSTM(4)(L.Embedding(5, 3, mask_zero=True)(inp))
    model = keras.Model(inp, L.Dense(2)(h))
    fps = [fp for fp in analog_footprint(convert(model, IdealDevice(), CrossbarConfig.preset("ideal")))
           if fp.tiles]
    assert [fp.kind for fp in fps] == ["rnn", "dense"]
    assert fps[0].reads_per_inference == 9 and fps[0].extra["time_steps"] == 9


def test_calibration_data_of_uneven_inputs_is_one_line():
    inp_a, inp_b = keras.Input((2,)), keras.Input((2,))
    model = keras.Model([inp_a, inp_b], L.Dense(1)(L.Concatenate()([inp_a, inp_b])))
    from nvmkit.core.errors import ConfigError
    with pytest.raises(ConfigError, match="same number for every model input"):
        convert(model, IdealDevice(), CONVERTERS,
                calibration_data=[np.zeros((3, 2), "f4"), np.zeros((2, 2), "f4")])


def test_trials_are_calibrated_once_on_the_float_pass():
    """Calibration runs the float reference (one copy), whatever the trial count: the ranges of a
    3-trial conversion equal a 1-trial one's, and inference runs on repeated inputs."""
    inp = keras.Input((5,))
    shared = L.Dense(3)
    model = keras.Model(inp, shared(shared(L.Dense(3)(inp))))
    x = np.random.default_rng(4).normal(size=(16, 5)).astype("f4")
    one = convert(model, IdealDevice(), CONVERTERS, calibration_data=x)
    three = convert(model, IdealDevice(), CONVERTERS, trials=3, calibration_data=x)
    assert [ranges(la) for la in analog_layers(one)] == [ranges(la) for la in analog_layers(three)]
    y = np.asarray(three(repeat_trials(x, 3)))
    ref = np.asarray(one(x))
    np.testing.assert_allclose(y[::3], ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_a_nested_head_ending_in_softmax_is_seen_as_probabilities():
    """Training losses take probabilities when the output is a softmax, also one inside a nested
    head model (a head read as logits would be trained through a loss on the wrong quantity)."""
    from nvmkit.engine.in_place import _ends_in_softmax

    inp = keras.Input((4,))
    soft = keras.Sequential([keras.Input((3,)), L.Dense(2), L.Softmax()])
    act = keras.Sequential([keras.Input((3,)), L.Dense(2, activation="softmax")])
    logits = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    seen = [_ends_in_softmax(keras.Model(inp, head(L.Dense(3)(inp)))) for head in (soft, act, logits)]
    assert seen == [True, True, False]


def test_a_relu_is_the_neurons_of_the_crossbar_it_reads_not_of_the_last_one_listed():
    """Two branches (Inception-style): each ReLU's activations go to the convolution it reads,
    also across a nested model's boundary (its first layer a ReLU), never to the last crossbar in
    the layer list."""
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(inp)
    b = L.Conv2D(4, 3, strides=2, padding="same", name="b")(inp)
    relu_in = keras.Input((4, 4, 4))
    nested = keras.Model(relu_in, L.ReLU()(relu_in), name="nested_relu")
    merged = L.Concatenate()([L.Flatten()(L.ReLU()(a)), L.Flatten()(nested(b))])
    model = keras.Model(inp, L.Dense(2, name="d")(merged))
    fps = {fp.name: fp for fp in analog_footprint(convert(model, IdealDevice(),
                                                          CrossbarConfig.preset("ideal")))}
    assert (fps["a"].activations, fps["b"].activations, fps["d"].activations) == (8 * 8 * 4, 4 * 4 * 4, 0)
    assert not any(fp.kind == "relu" for fp in fps.values())


def test_unrolled_pricing_of_a_depthwise_convolution_is_refused_in_one_line():
    """The Toeplitz count takes a kernel-wise crossbar; a depthwise footprint's rows are one
    channel's, which gave a negative row count (and energy)."""
    from nvmkit import create_from_spec
    from nvmkit.core.errors import ConfigError

    inp = keras.Input((2, 2, 8))
    model = keras.Model(inp, L.DepthwiseConv2D(3, padding="same", name="dw")(inp))
    fp = analog_footprint(convert(model, IdealDevice(), CrossbarConfig.preset("ideal")))
    estimator = create_from_spec("energy", "crossbar:conv_mapping=unrolled")
    with pytest.raises(ConfigError, match="'dw'.*conv_mapping='im2col'"):
        estimator.estimate(fp, IdealDevice())
    assert create_from_spec("energy", "crossbar").estimate(fp, IdealDevice()).total > 0


def test_a_separable_convolutions_two_crossbars_describe_themselves():
    """The depthwise part has C x multiplier columns, the pointwise part is a 1x1 convolution of
    those channels (an estimator reading the kernel or channels would otherwise price the pointwise
    crossbar as a 3x3 one)."""
    inp = keras.Input((6, 6, 4))
    model = keras.Model(inp, L.SeparableConv2D(5, 3, depth_multiplier=2, strides=2, name="sep")(inp))
    dw, pw = analog_footprint(convert(model, IdealDevice(), CrossbarConfig.preset("ideal")))
    assert (dw.extra["kernel"], dw.extra["in_channels"], dw.extra["filters"], dw.extra["depthwise"]) \
        == ([3, 3], 4, 8, True)
    assert (pw.extra["kernel"], pw.extra["strides"], pw.extra["in_channels"], pw.extra["filters"]) \
        == ([1, 1], [1, 1], 8, 5)
    assert pw.n_in == 8 + 1 and dw.extra["output_positions"] == pw.extra["output_positions"] == 4


def test_a_footprint_of_inputs_of_unknown_length_is_one_line():
    """A sequence length known only at run time leaves the reads per inference unknown: said in
    one line naming the layer (it was a TypeError from multiplying None)."""
    from nvmkit.core.errors import ConfigError

    inp = keras.Input((None, 4))
    model = keras.Model(inp, L.Dense(2, name="per_step")(inp))
    with pytest.raises(ConfigError, match="'per_step'.*fixed shape") as e:
        analog_footprint(convert(model, IdealDevice(), CrossbarConfig.preset("ideal")))
    assert "\n" not in str(e.value)
