"""Models nobody on the project wrote convert as documented (issue 19): Keras application
architectures, two instances of one nested base, a loaded Sequential model, adapted preprocessing
layers, TimeDistributed, masked sequences and grouped convolutions.

Every exactness check here also counts the weight layers: the converted model must hold one analog
layer per Dense/Conv/RNN weight layer of the original, nested and wrapped ones included, because
on the ideal device a layer silently left digital computes the same outputs."""

import keras
import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.engine.convert import (_REFUSED, analog_footprint, analog_layers, convert,
                                   repeat_trials)
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.engine.layers import AnalogDepthwiseConv2D, AnalogTimeDistributed, FoldedBatchNormalization
from nvmkit_plugins.devices.ideal import IdealDevice
from nvmkit import create_from_spec

L = keras.layers
IDEAL = CrossbarConfig.preset("ideal")
#: a noisy device whose programming differs per trial but whose reads are deterministic, so two
#: converted models with the same programming must agree output by output
PROGRAMMED_ONLY = CrossbarConfig.from_dict({"nonideal": {"read_noise": False}})
WEIGHT_KINDS = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "SimpleRNN",
                "LSTM", "GRU", "EinsumDense")  # a MultiHeadAttention's projections: EinsumDense


def weight_layers(model) -> int:
    """The original's weight layers, walked independently of nvmkit's own walk."""
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        n += type(layer).__name__ in WEIGHT_KINDS
    return n


def random_state(model, seed):
    """Non-trivial BatchNormalization statistics and adapted Normalization state."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            if layer.scale:
                layer.gamma.assign(rng.normal(1.0, 0.3, n))
            if layer.center:
                layer.beta.assign(rng.normal(0.0, 0.3, n))
        if isinstance(layer, L.Normalization) and layer.variables:
            mean, var = layer.adapt_mean, layer.adapt_variance
            mean.assign(rng.normal(0.5, 0.2, mean.shape))
            var.assign(rng.uniform(0.01, 0.1, var.shape))
            layer.finalize_state()
    return model


def exact(model, x, trials=2, rel=2e-5, **kw):
    """Converted on the ideal device: every weight layer analog, outputs equal to float32
    precision relative to the output scale, for each of ``trials`` Monte Carlo copies."""
    ref = np.asarray(model(x, training=False))
    analog = convert(model, IdealDevice(), IDEAL, trials=trials, **kw)
    assert len(analog_layers(analog)) == weight_layers(model)
    y = np.asarray(analog(repeat_trials(x, trials), training=False))
    np.testing.assert_allclose(y, repeat_trials(ref, trials), rtol=0,
                               atol=rel * float(np.abs(ref).max()))
    return analog


# -- 1. BatchNormalization folding by layer identity ----------------------------------------------

def _tower(name, seed):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(inp)  # the same inner names in every instance
    x = L.BatchNormalization(name="bn")(x)
    return random_state(keras.Model(inp, L.ReLU(name="relu")(x), name=name), seed)


def test_two_instances_of_one_nested_base_fold_their_own_batchnorm():
    """Bug: folds keyed by name put tower b's BatchNormalization into tower a's convolution
    (outputs off by O(1))."""
    inp = keras.Input((8, 8, 3))
    a, b = _tower("tower_a", 1), _tower("tower_b", 2)
    m = keras.Model(inp, L.Concatenate()([a(inp), b(inp)]))
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype("f4")
    analog = exact(m, x)
    folded = [layer for layer in analog._flatten_layers() if isinstance(layer, FoldedBatchNormalization)]
    assert len(folded) == 2


def test_a_sequential_model_saved_and_loaded_folds_as_in_memory(tmp_path):
    """Bug: Keras rebuilds a loaded Sequential model layer by layer, leaving extra nodes; the
    fold check read them and never folded (and energy priced the BatchNormalization digital)."""
    m = random_state(keras.Sequential([keras.Input((6,)), L.Dense(5), L.BatchNormalization(),
                                       L.Dense(3)]), 3)
    m.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(1).random((5, 6)).astype("f4")
    for model in (m, loaded):
        analog = exact(model, x)
        assert [type(layer).__name__ for layer in analog.layers].count("FoldedBatchNormalization") == 1
        assert not [fp for fp in analog_footprint(analog) if "batch" in fp.kind]


def test_a_batchnorm_whose_input_is_also_read_elsewhere_stays_digital():
    """The fold would change the other reader's input: the weight layer's output is a model
    output too."""
    inp = keras.Input((6,))
    z = L.Dense(4)(inp)
    m = random_state(keras.Model(inp, [z, L.BatchNormalization()(z)]), 4)
    x = np.random.default_rng(2).random((3, 6)).astype("f4")
    analog = convert(m, IdealDevice(), IDEAL)
    assert not [layer for layer in analog.layers if isinstance(layer, FoldedBatchNormalization)]
    for r, y in zip(m(x), analog(x)):
        np.testing.assert_allclose(np.asarray(y), np.asarray(r), atol=1e-5)


# -- 3. digital layers keep the state they compute with -------------------------------------------

def test_adapted_normalization_and_discretization_keep_their_state():
    """Bug: from_config + set_weights leaves Normalization's applied mean/variance at their
    initial values (finalize_state not called): the converted model skipped the user's input
    normalisation."""
    rng = np.random.default_rng(5)
    data = rng.normal(5.0, 3.0, (200, 6)).astype("f4")
    norm = L.Normalization()
    norm.adapt(data)
    disc = L.Discretization(num_bins=4, output_mode="int")
    disc.adapt(data[:, :1])
    inp = keras.Input((6,))
    x = L.Dense(3)(norm(inp))
    bins = keras.ops.cast(disc(inp[:, :1]), "float32")
    m = keras.Model(inp, L.Concatenate()([x, bins]))
    exact(m, data[:16])
    # not vacuous: the former copy (from_config + set_weights, no derived state) computes otherwise
    bare = L.Normalization.from_config(norm.get_config())
    bare.build((None, 6))
    bare.set_weights(norm.get_weights())
    assert float(np.abs(np.asarray(bare(data[:4])) - np.asarray(norm(data[:4]))).max()) > 1.0


# -- 4. wrappers: TimeDistributed on crossbars, others refused ------------------------------------

def test_time_distributed_dense_and_conv2d_are_analog_and_exact():
    rng = np.random.default_rng(6)
    inp = keras.Input((5, 6))
    y = L.TimeDistributed(L.Dense(4, activation="relu"))(inp)
    m = keras.Model(inp, L.LSTM(3)(y))
    exact(m, rng.random((4, 5, 6)).astype("f4"))

    inp = keras.Input((3, 8, 8, 2))
    y = L.TimeDistributed(L.Conv2D(4, 3))(inp)
    y = L.TimeDistributed(L.Flatten())(y)
    m = keras.Model(inp, L.GRU(3)(y))
    analog = exact(m, rng.random((4, 3, 8, 8, 2)).astype("f4"))
    conv = [fp for fp in analog_footprint(analog) if fp.kind == "conv"][0]
    assert conv.reads_per_inference == 3 * 6 * 6  # every frame's every output position


def test_time_distributed_model_cnn_lstm_video():
    """keras.io's video classifier shape: a CNN (with BatchNormalization) applied to every frame."""
    cnn = random_state(keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(4, 3),
                                         L.BatchNormalization(), L.ReLU(),
                                         L.GlobalAveragePooling2D()], name="frame_cnn"), 7)
    inp = keras.Input((3, 8, 8, 2))
    m = keras.Model(inp, L.Dense(2)(L.LSTM(3)(L.TimeDistributed(cnn)(inp))))
    exact(m, np.random.default_rng(8).random((4, 3, 8, 8, 2)).astype("f4"))


def test_time_distributed_keeps_each_trial_on_its_own_crossbars():
    """Bug: folding time into a batch that holds K trials per sample with a plain reshape hands
    trial k's time steps to other trials' crossbars. On a device with programming error, the
    wrapped Conv2D must give what the same Conv2D gives on the frames as samples, trial by trial
    (same seed, same layer index: the same programming)."""
    rng = np.random.default_rng(9)
    frames = rng.random((4, 3, 6, 6, 2)).astype("f4")
    conv = L.Conv2D(5, 3, name="c")
    inp = keras.Input((3, 6, 6, 2))
    wrapped = keras.Model(inp, L.TimeDistributed(conv)(inp))
    flat_in = keras.Input((6, 6, 2))
    plain = keras.Model(flat_in, conv(flat_in))
    k = 3
    a = convert(wrapped, create_from_spec("device", "reram"), PROGRAMMED_ONLY, trials=k, seed=4)
    b = convert(plain, create_from_spec("device", "reram"), PROGRAMMED_ONLY, trials=k, seed=4)
    ya = np.asarray(a(repeat_trials(frames, k)))  # (B*K, T, ...): rows (b, k)
    yb = np.asarray(b(repeat_trials(frames.reshape(-1, 6, 6, 2), k)))  # rows ((b, t), k)
    ya = ya.reshape(4, k, 3, *ya.shape[2:]).transpose(0, 2, 1, 3, 4, 5)
    np.testing.assert_allclose(ya.reshape(yb.shape), yb, rtol=1e-6, atol=1e-6)
    # and the trials do differ (else the check above proves nothing)
    assert np.abs(yb.reshape(12, k, -1)[:, 0] - yb.reshape(12, k, -1)[:, 1]).max() > 1e-3


def test_a_converted_time_distributed_model_saves_and_loads(tmp_path):
    inp = keras.Input((4, 5))
    m = keras.Model(inp, L.TimeDistributed(L.Dense(3))(inp))
    analog = convert(m, create_from_spec("device", "reram"), PROGRAMMED_ONLY, trials=2, seed=1)
    analog.save(tmp_path / "a.keras")
    back = keras.models.load_model(tmp_path / "a.keras")
    assert isinstance(back.layers[1], AnalogTimeDistributed)
    x = repeat_trials(np.random.default_rng(3).random((3, 4, 5)).astype("f4"), 2)
    np.testing.assert_array_equal(np.asarray(back(x)), np.asarray(analog(x)))


def test_bidirectional_and_other_wrappers_of_weight_layers_are_refused_in_one_line():
    inp = keras.Input((5, 3))
    m = keras.Model(inp, L.Bidirectional(L.LSTM(2))(inp))
    with pytest.raises(ConfigError, match=r"two LSTMs \(the second with go_backwards=True\)") as e:
        convert(m, IdealDevice(), IDEAL)
    assert "\n" not in str(e.value) and "LSTM, GRU" in str(e.value)


# -- 5. masks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [L.LSTM, L.GRU, L.SimpleRNN])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_masked_sequences_keep_the_state_as_keras(cls, return_sequences):
    """Bug: Embedding(mask_zero=True) -> LSTM converted, then predict failed with an 8-line
    Keras error; a mask ignored would run the padded steps."""
    keras.utils.set_random_seed(10)
    inp = keras.Input((7,), dtype="int32")
    emb = L.Embedding(10, 4, mask_zero=True, embeddings_initializer=keras.initializers.RandomNormal(0, 1))
    y = cls(5, return_sequences=return_sequences)(emb(inp))
    if return_sequences:
        y = L.Dense(2)(y)
    m = keras.Model(inp, y)
    ids = np.random.default_rng(11).integers(1, 10, (6, 7))
    ids[:, 4:] = 0
    ids[0, 2] = 0  # a masked step inside the sequence
    analog = exact(m, ids)
    # the mask mattered: the same ids without it give other outputs
    unmasked = np.asarray(m(np.where(ids == 0, 3, ids)))
    assert np.abs(unmasked - np.asarray(m(ids))).max() > 1e-4
    assert analog.predict(repeat_trials(ids, 2), batch_size=4, verbose=0).shape[0] == 12


# -- 2. grouped convolutions ----------------------------------------------------------------------

@pytest.mark.parametrize("cls,shape,groups", [(L.Conv2D, (8, 8, 6), 6), (L.Conv2D, (8, 8, 6), 2),
                                              (L.Conv1D, (9, 6), 3)])
def test_grouped_convolutions_on_crossbars(cls, shape, groups):
    m = random_state(keras.Sequential([keras.Input(shape), cls(12, 3, groups=groups, padding="same"),
                                       L.BatchNormalization()]), groups)
    analog = exact(m, np.random.default_rng(12).random((4, *shape)).astype("f4"))
    (layer,) = analog_layers(analog)
    fps = [fp for fp in analog_footprint(analog) if fp.tiles]
    if groups == shape[-1]:  # depthwise: one crossbar of kh*kw (+ bias) rows per channel
        assert isinstance(layer, AnalogDepthwiseConv2D)
    else:  # one crossbar per group, its channels' rows only
        rows = (9 if cls is L.Conv2D else 3) * shape[-1] // groups + 1
        assert [(fp.n_in, fp.n_out) for fp in fps] == [(rows, 12 // groups)] * groups


# -- 3. refusals ----------------------------------------------------------------------------------

def _refused_models():
    yield "Conv3D", keras.Sequential([keras.Input((4, 4, 4, 1)), L.Conv3D(2, 2)])
    yield "Conv1DTranspose", keras.Sequential([keras.Input((4, 2)), L.Conv1DTranspose(2, 2)])
    yield "Conv2DTranspose", keras.Sequential([keras.Input((4, 4, 2)), L.Conv2DTranspose(2, 2)])
    yield "Conv3DTranspose", keras.Sequential([keras.Input((4, 4, 4, 1)), L.Conv3DTranspose(2, 2)])
    yield "SeparableConv1D", keras.Sequential([keras.Input((6, 2)), L.SeparableConv1D(2, 2)])
    yield "DepthwiseConv1D", keras.Sequential([keras.Input((6, 2)), L.DepthwiseConv1D(2)])
    yield "RNN", keras.Sequential([keras.Input((3, 2)), L.RNN([L.LSTMCell(2), L.LSTMCell(2)])])
    yield "Bidirectional", keras.Sequential([keras.Input((3, 2)), L.Bidirectional(L.GRU(2))])
    yield "ConvLSTM1D", keras.Sequential([keras.Input((2, 5, 1)), L.ConvLSTM1D(2, 2)])
    yield "ConvLSTM2D", keras.Sequential([keras.Input((2, 5, 5, 1)), L.ConvLSTM2D(2, 2)])
    yield "ConvLSTM3D", keras.Sequential([keras.Input((2, 3, 3, 3, 1)), L.ConvLSTM3D(2, 2)])


def test_every_refused_layer_gets_one_line_with_what_to_do():
    seen = set()
    for cls, model in _refused_models():
        with pytest.raises(ConfigError) as e:
            convert(model, IdealDevice(), IDEAL)
        msg = str(e.value)
        assert "\n" not in msg and f"({cls})" in msg and _REFUSED[cls] in msg, msg
        assert "SimpleRNN, LSTM, GRU" in msg  # the supported list names the recurrent layers
        seen.add(cls)
    assert seen == set(_REFUSED)  # a refusal added without a test fails here


def test_the_docs_layer_table_refuses_what_convert_refuses():
    import pathlib
    import re

    table = (pathlib.Path(__file__).parents[1] / "docs" / "api.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| `Dense`"))
    refused_cell = row.rstrip(" |").rsplit(" | ", 1)[-1]
    for cls in _REFUSED:
        assert re.search(rf"`{cls}`", refused_cell), f"docs/api.md's refused column lacks {cls}"


def test_a_custom_layer_holding_a_weight_matrix_is_said_to_run_digitally():
    @keras.saving.register_keras_serializable(package="test_nvmkit")
    class MyProjection(L.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 3))

        def call(self, x):
            return x @ self.w

    m = keras.Sequential([keras.Input((4,)), MyProjection(), L.Dense(2)])
    with pytest.warns(UserWarning, match=r"MyProjection\) holds a weight matrix and runs digitally"):
        convert(m, IdealDevice(), IDEAL)


# -- the sweep of real architectures ---------------------------------------------------------------

APPLICATIONS = ["MobileNetV2", "ResNet50V2", "DenseNet121", "EfficientNetB0", "NASNetMobile",
                "ConvNeXtTiny"]


@pytest.mark.slow
@pytest.mark.parametrize("name", APPLICATIONS)
def test_keras_applications_convert_exactly_with_every_weight_layer_analog(name):
    """Published architectures with random weights, random BatchNormalization statistics and
    (EfficientNet) an adapted input Normalization; the smallest input each takes. Relative to the
    output scale the float32 rounding of folding and of the crossbar round trip stays below 2e-5
    (measured: at most 1.2e-6 for NASNetMobile)."""
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10,
                                              classifier_activation=None)
    random_state(model, 0)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("f4")
    analog = exact(model, x, trials=1)
    layerwise(model, analog, x)


def layerwise(model, analog, x, rel=2e-5):
    """Every top-level layer's output of the converted model equals the original's, relative to
    that layer's own scale: with random BatchNormalization statistics an application's output
    hardly depends on its input, so a wrong early layer can pass the output check alone. A weight
    layer whose BatchNormalization was folded is compared after that BatchNormalization."""
    folded = {la.input._keras_history.operation.name for la in analog.layers
              if isinstance(la, FoldedBatchNormalization)}
    names = [la.name for la in model.layers if not isinstance(la, L.InputLayer)
             and la.name not in folded and not isinstance(la.output, (list, tuple))]
    taps = [keras.Model(m.inputs, [m.get_layer(n).output for n in names]) for m in (model, analog)]
    for name, ref, got in zip(names, *(t(x, training=False) for t in taps)):
        ref, got = np.asarray(ref), np.asarray(got)
        np.testing.assert_allclose(got, ref, rtol=0, atol=rel * (float(np.abs(ref).max()) or 1.0),
                                   err_msg=f"layer {name}")


def _refused_settings():
    yield "channels_first", keras.Sequential([keras.Input((2, 6, 6)),
                                              L.Conv2D(2, 3, data_format="channels_first")])
    yield "stateful=True", keras.Sequential([keras.Input((3, 2), batch_size=2),
                                             L.SimpleRNN(2, stateful=True)])
    inp = keras.Input((3, 2))
    yield "return_state=True", keras.Model(inp, L.GRU(2, return_state=True)(inp)[0])
    yield "reset_after=False", keras.Sequential([keras.Input((3, 2)), L.GRU(2, reset_after=False)])


@pytest.mark.parametrize("needle", ["channels_first", "stateful=True", "return_state=True",
                                    "reset_after=False"])
def test_every_refused_setting_of_the_docs_table_is_one_line(needle):
    model = dict((k, m) for k, m in _refused_settings() if m is not None)[needle]
    with pytest.raises(ConfigError, match=needle.split("=")[0]) as e:
        convert(model, IdealDevice(), IDEAL)
    assert "\n" not in str(e.value) and str(e.value).startswith("convert: layer")
