"""Transformers on crossbars: EinsumDense and MultiHeadAttention's projections (keras.io's
"Text classification with Transformer" block and a ViT-style encoder, neither written here).

On the ideal device the converted model equals Keras's to float32 rounding with every projection
analog (a projection silently left digital computes the same outputs, so each test also counts
them); on a noisy device every projection adds fresh read noise per call and its own programming
per trial; the attention between projections stays digital."""

import keras
import numpy as np
import pytest

from nvmkit import DeviceAwareTraining, get_registry
from nvmkit.core.errors import ConfigError
from nvmkit.engine.convert import (analog_footprint, analog_layers, convert, repeat_trials,
                                   reprogram)
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.engine.layers import AnalogEinsumDense
from nvmkit_plugins.devices.ideal import IdealDevice

L = keras.layers
IDEAL = CrossbarConfig.preset("ideal")
PROGRAMMED_ONLY = CrossbarConfig.from_dict({"nonideal": {"read_noise": False}})


def text_transformer(maxlen=10, vocab=40, dim=16, heads=2):
    """keras.io's text classification Transformer: token + position embeddings, one block."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((maxlen,), dtype="int32")
    x = L.Embedding(vocab, dim)(inp) + L.Embedding(maxlen, dim)(keras.ops.arange(maxlen))
    att = L.MultiHeadAttention(num_heads=heads, key_dim=dim, name="mha")(x, x)
    x1 = L.LayerNormalization(epsilon=1e-6)(x + att)
    x2 = L.LayerNormalization(epsilon=1e-6)(x1 + L.Dense(dim)(L.Dense(32, activation="relu")(x1)))
    h = L.Dense(20, activation="relu")(L.GlobalAveragePooling1D()(x2))
    return keras.Model(inp, L.Dense(2, activation="softmax")(h))


def vit_encoder(gate=False):
    """Patches projected by Dense, two pre-norm blocks (the second with a separate key input and,
    optionally, MultiHeadAttention's gate), a Dense head."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((5, 6))
    x = L.Dense(8)(inp)
    for i in range(2):
        y = L.LayerNormalization()(x)
        kw = {"use_gate": True} if gate and i else {}
        y = L.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, **kw)(y, y, L.Dense(8)(y) if i else None)
        x = x + y
        x = x + L.Dense(8, activation="gelu")(L.LayerNormalization()(x))
    return keras.Model(inp, L.Dense(3)(L.Flatten()(x)))


def projections(model) -> int:
    """MultiHeadAttention's projections and the Dense/EinsumDense layers, counted from Keras's own
    layers, not from nvmkit's walk."""
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, L.MultiHeadAttention):
            n += 4 + bool(getattr(layer, "_use_gate", False))
        elif type(layer).__name__ in ("Dense", "EinsumDense") and not _inside_attention(model, layer):
            n += 1
    return n


def _inside_attention(model, layer) -> bool:
    return any(layer is sub for mha in model._flatten_layers(include_self=False, recursive=True)
               if isinstance(mha, L.MultiHeadAttention)
               for sub in mha._flatten_layers(include_self=False, recursive=True))


def tokens(n=6, maxlen=10, vocab=40):
    return np.random.default_rng(0).integers(0, vocab, (n, maxlen))


@pytest.mark.parametrize("build, data", [
    (text_transformer, lambda: tokens()),
    (vit_encoder, lambda: np.random.default_rng(1).normal(size=(6, 5, 6)).astype("f4")),
    (lambda: vit_encoder(gate=True), lambda: np.random.default_rng(1).normal(size=(6, 5, 6)).astype("f4")),
])
def test_a_transformer_converts_exactly_with_every_projection_analog(build, data):
    model, x = build(), data()
    ref = np.asarray(model(x))
    analog = convert(model, IdealDevice(), IDEAL, trials=2)
    assert len(analog_layers(analog)) == projections(model)
    assert sum(isinstance(la, AnalogEinsumDense) for la in analog_layers(analog)) >= 4
    y = np.asarray(analog(repeat_trials(x, 2)))
    np.testing.assert_allclose(y, repeat_trials(ref, 2), rtol=0, atol=2e-6 * np.abs(ref).max())


def test_every_projection_reads_with_fresh_noise_and_programs_per_trial():
    """SONOS: two calls differ (read noise drawn per read); trials differ (each its own
    programming); with the read noise off two calls agree and trial k does not depend on how many
    trials run together."""
    model, x = vit_encoder(), np.random.default_rng(1).normal(size=(4, 5, 6)).astype("f4")
    sonos = get_registry().create("device", "sonos")
    noisy = convert(model, sonos, trials=2, seed=3)
    a, b = (np.asarray(noisy(repeat_trials(x, 2))) for _ in range(2))
    assert np.abs(a - b).max() > 1e-4
    assert np.abs(a[::2] - a[1::2]).max() > 1e-3
    two = convert(model, sonos, PROGRAMMED_ONLY, trials=2, seed=3)
    one = convert(model, sonos, PROGRAMMED_ONLY, trials=1, seed=3)
    y2 = np.asarray(two(repeat_trials(x, 2)))
    np.testing.assert_array_equal(y2, np.asarray(two(repeat_trials(x, 2))))
    np.testing.assert_allclose(np.asarray(one(x)), y2[::2], rtol=0, atol=1e-5 * np.abs(y2).max())
    # each projection reads with a noise stream of its own (query, key and value read the same
    # inputs: one stream shared between them would correlate their read noise)
    seeds = [la.seed for la in analog_layers(noisy)]
    assert len(set(seeds)) == len(seeds) == projections(model)
    # a projection whose programming were drawn once for all trials would make these equal
    for layer in analog_layers(two):
        delta = layer.cores[0].delta.numpy()
        assert np.abs(delta[0] - delta[1]).max() > 0, layer.name


def test_a_converted_transformer_saves_and_loads_its_programmed_crossbars(tmp_path):
    model, x = text_transformer(), tokens()
    analog = convert(model, get_registry().create("device", "sonos"), PROGRAMMED_ONLY, trials=2, seed=4)
    path = tmp_path / "t.keras"
    analog.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(repeat_trials(x, 2))),
                                  np.asarray(analog(repeat_trials(x, 2))))
    reprogram(loaded, 5)  # a new programming moves the outputs: the state was not lost on load
    assert np.abs(np.asarray(loaded(repeat_trials(x, 2))) - np.asarray(analog(repeat_trials(x, 2)))).max() > 0


def test_each_projection_calibrates_its_converters_on_what_it_reads():
    """8-bit converters: the query/key/value DACs see the block's input, the output projection's
    the attention's weighted values, each computed here with Keras's own layer."""
    model, x = vit_encoder(), np.random.default_rng(1).normal(size=(40, 5, 6)).astype("f4")
    analog = convert(model, IdealDevice(), CrossbarConfig.preset("converters-8bit"), calibration_data=x)
    mha = [la for la in model.layers if isinstance(la, L.MultiHeadAttention)][0]
    q_in = np.asarray(keras.Model(model.inputs, mha.input[0] if isinstance(mha.input, list)
                                  else mha.input)(x))
    by = {la.name: la for la in analog_layers(analog)}
    first = [n for n in by if n.endswith("_query")][0].removesuffix("_query")
    for proj in ("query", "key", "value"):
        np.testing.assert_allclose(float(by[f"{first}_{proj}"].cores[0].dac_range.numpy()),
                                   np.abs(q_in).max(), rtol=1e-6)
    q, v = mha._query_dense(q_in), mha._value_dense(q_in)
    k = mha._key_dense(q_in)
    attended, _ = mha._compute_attention(q, k, v)
    np.testing.assert_allclose(float(by[f"{first}_attention_output"].cores[0].dac_range.numpy()),
                               np.abs(np.asarray(attended)).max(), rtol=1e-5)
    ref = np.asarray(model(x))
    assert np.abs(np.asarray(analog(x)) - ref).max() < 0.1 * np.abs(ref).max()


def test_the_footprint_has_each_projection_and_the_digital_attention():
    model = text_transformer(maxlen=10, dim=16, heads=2)
    fps = {fp.name: fp for fp in analog_footprint(convert(model, IdealDevice(), IDEAL))}
    for proj, n_in, n_out in (("query", 16, 32), ("key", 16, 32), ("value", 16, 32),
                              ("attention_output", 32, 16)):
        fp = fps[f"mha_{proj}"]
        assert (fp.kind, fp.reads_per_inference, fp.n_in, fp.n_out) == ("dense", 10, n_in + 1, n_out)
    att = fps["mha/attention"]
    assert att.kind == "attention" and not att.tiles
    assert att.digital_ops == 2 * 10 * 10 * (16 + 16 + 1)


def test_device_aware_training_of_a_transformer_copies_every_projection_back():
    """On the ideal device the trained twin and the user's model, after copy_back, agree; the
    weights moved (a projection not copied back would leave the user's model where it was)."""
    model, x = vit_encoder(), np.random.default_rng(1).normal(size=(16, 5, 6)).astype("f4")
    before = np.asarray(model(x))
    y = np.random.default_rng(2).integers(0, 3, 16)
    trainer = DeviceAwareTraining(model, IdealDevice(), IDEAL)
    trainer.compile(optimizer=keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(x, y, epochs=2, batch_size=8, verbose=0)
    trainer.copy_back()
    after = np.asarray(model(x))
    assert np.abs(after - before).max() > 1e-2
    np.testing.assert_allclose(after, np.asarray(trainer.model(x)), rtol=0, atol=1e-5 * np.abs(after).max())
    mha = [la for la in model.layers if isinstance(la, L.MultiHeadAttention)][0]
    twin = [la for la in trainer.model.layers if type(la).__name__ == "AnalogMultiHeadAttention"][0]
    for attr in ("_query_dense", "_key_dense", "_value_dense", "_output_dense"):
        np.testing.assert_array_equal(np.asarray(getattr(mha, attr).kernel),
                                      np.asarray(getattr(twin, attr).kernel))


@pytest.mark.parametrize("equation, x_shape, out_shape, bias", [
    ("ab,bc->ac", (7,), (5,), "c"),
    ("abc,cd->abd", (3, 7), (None, 5), "d"),
    ("abc,cde->abde", (3, 7), (None, 2, 4), "de"),
    ("abcd,cde->abe", (3, 2, 4), (None, 6), "e"),
    ("abc,cde->abde", (3, 7), (None, 2, 4), "e"),
    ("...b,bc->...c", (2, 3, 7), (5,), None),
])
def test_einsum_dense_products_over_the_last_axes_are_exact(equation, x_shape, out_shape, bias):
    keras.utils.set_random_seed(2)
    inp = keras.Input(x_shape)
    layer = L.EinsumDense(equation, out_shape, bias_axes=bias, activation="tanh")
    model = keras.Model(inp, layer(inp))
    if layer.bias is not None:
        layer.bias.assign(np.random.default_rng(0).normal(size=layer.bias.shape))
    x = np.random.default_rng(3).normal(size=(4, *x_shape)).astype("f4")
    ref = np.asarray(model(x))
    analog = convert(model, IdealDevice(), IDEAL, trials=2)
    assert isinstance(analog_layers(analog)[0], AnalogEinsumDense)
    np.testing.assert_allclose(np.asarray(analog(repeat_trials(x, 2))), repeat_trials(ref, 2),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("equation, out_shape", [
    ("abc,acd->abd", (None, 5)),  # the kernel shares the batch axis: not one crossbar
    ("abc,cd->adb", (5, None)),   # output axes reordered
    ("abc,bd->acd", (None, 5)),   # contracts an inner axis
])
def test_other_einsum_dense_equations_are_refused_in_one_line(equation, out_shape):
    inp = keras.Input((3, 7))
    try:
        model = keras.Model(inp, L.EinsumDense(equation, out_shape)(inp))
    except ValueError:
        pytest.skip("Keras itself refuses this equation")
    with pytest.raises(ConfigError, match=r"not a product over the input's last axes") as e:
        convert(model, IdealDevice(), IDEAL)
    assert "\n" not in str(e.value)


def test_the_energy_report_prices_the_projections_and_the_digital_attention():
    from nvmkit import energy_report

    report = energy_report(model=text_transformer(maxlen=10, dim=16, heads=2), device="sonos")
    att = [t for t in report.terms if t.layer == "mha/attention"]
    assert [(t.component, t.count) for t in att] == [("digital", 2 * 10 * 10 * 33)]
    macs = {t.layer: t.count for t in report.terms if t.component == "vmm"}
    assert macs["mha_query"] == macs["mha_key"] == macs["mha_value"] == 10 * 17 * 32
    assert macs["mha_attention_output"] == 10 * 33 * 16


@pytest.mark.parametrize("axes", [(2,), (1,), (1, 2), None])
def test_the_attention_count_follows_its_attention_axes(axes):
    """Over a subset of axes the other position axes are batch-like: each query position meets
    the key positions along the attended axes only. Expected from the scores Keras computes."""
    inp = keras.Input((3, 4, 8))
    mha = L.MultiHeadAttention(2, 4, attention_axes=axes)
    model = keras.Model(inp, mha(inp, inp))
    x = np.random.default_rng(0).normal(size=(1, 3, 4, 8)).astype("f4")
    _, scores = mha(x, x, return_attention_scores=True)
    (att,) = [fp for fp in analog_footprint(convert(model, IdealDevice(), IDEAL)) if fp.kind == "attention"]
    assert att.digital_ops == np.asarray(scores).size * (4 + 4 + 1)


@pytest.mark.parametrize("equation, out_shape", [("abc,c->ab", (3,)), ("abc,c->ab", (None,)),
                                                 ("abcd,cd->ab", (3,))])
def test_an_einsum_dense_into_one_column_is_exact(equation, out_shape):
    """No kernel output axis: one crossbar column (``partial_output_shape[-0:]`` is the whole
    shape, which once made the kernel two-dimensional)."""
    inp = keras.Input((3, 7) if equation.startswith("abc,") else (3, 2, 4))
    model = keras.Model(inp, L.EinsumDense(equation, out_shape)(inp))
    x = np.random.default_rng(4).normal(size=(2, *inp.shape[1:])).astype("f4")
    analog = convert(model, IdealDevice(), IDEAL)
    np.testing.assert_allclose(np.asarray(analog(x)), np.asarray(model(x)), rtol=0, atol=1e-6)


def test_in_place_learning_refuses_what_its_cells_cannot_learn_and_trains_an_embedding():
    """A bias over some output axes only (one value over several columns, whose cells would
    learn apart) and a second model input are refused in one line; a transformer whose tokens go
    through an Embedding trains (its gradient is a sparse one)."""
    from nvmkit import InPlaceTraining

    ecram = get_registry().create("device", "ecram")
    inp = keras.Input((3, 7))
    partial = keras.Model(inp, L.EinsumDense("abc,cde->abde", (None, 2, 4), bias_axes="d")(inp))
    with pytest.raises(ConfigError, match="bias over some of its output axes") as e:
        InPlaceTraining(partial, ecram)
    assert "\n" not in str(e.value)
    a, b = keras.Input((4,)), keras.Input((4,))
    two = keras.Model([a, b], L.Dense(2)(L.Concatenate()([a, b])))
    with pytest.raises(ConfigError, match="one input"):
        InPlaceTraining(two, ecram)
    model, x = text_transformer(), tokens(16)
    emb = np.asarray(model.layers[1].embeddings)
    trainer = InPlaceTraining(model, ecram, learning_rate=0.05)
    trainer.fit(x, np.arange(16) % 2, epochs=1, batch_size=8)
    trainer.copy_back()
    assert np.abs(np.asarray(model.layers[1].embeddings) - emb).max() > 0


def test_a_frozen_layer_stays_frozen_in_device_aware_and_in_place_training():
    """keras.io's transfer learning freezes a base (trainable=False): training through the device
    must leave it as it is, also a frozen attention layer's projections (a twin created trainable
    would train them without a word)."""
    from nvmkit import InPlaceTraining

    model = vit_encoder()
    frozen = [la for la in model.layers if isinstance(la, L.MultiHeadAttention)][0]
    first = model.layers[1]  # the patch projection
    for layer in (frozen, first):
        layer.trainable = False
    x = np.random.default_rng(1).normal(size=(16, 5, 6)).astype("f4")
    y = np.random.default_rng(2).integers(0, 3, 16)
    kept = [np.asarray(v).copy() for v in (*frozen.weights, *first.weights)]
    head = np.asarray(model.layers[-1].kernel).copy()
    trainer = DeviceAwareTraining(model, IdealDevice(), IDEAL)
    trainer.compile(optimizer=keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    trainer.copy_back()
    for a, b in zip(kept, (*frozen.weights, *first.weights)):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert np.abs(np.asarray(model.layers[-1].kernel) - head).max() > 0
    in_place = InPlaceTraining(model, get_registry().create("device", "ecram"), learning_rate=0.05)
    in_place.fit(x, y, epochs=1, batch_size=8)
    fired = {c["layer"]: c["pulses"] for c in in_place.pulses_fired()}
    still = {first.name, *(f"{frozen.name}_{p}" for p in ("query", "key", "value", "attention_output"))}
    assert still <= set(fired) and all(fired[n] == 0 for n in still), fired
    assert fired[model.layers[-1].name] > 0


def test_a_batchnorm_after_an_einsum_dense_stays_digital_and_exact():
    """Folding takes a per-channel scale of a Dense or convolution kernel; an EinsumDense (its
    bias over some axes, or none) keeps its BatchNormalization digital. Folding it would fail
    (no bias to fold into) or scale the wrong axis."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((3, 7))
    bn = L.BatchNormalization()
    model = keras.Model(inp, bn(L.EinsumDense("abc,cd->abd", (None, 4))(inp)))
    bn.moving_mean.assign(np.arange(4, dtype="f4"))
    bn.moving_variance.assign(np.full(4, 2.0, "f4"))
    x = np.random.default_rng(5).normal(size=(2, 3, 7)).astype("f4")
    analog = convert(model, IdealDevice(), IDEAL)
    assert [type(la).__name__ for la in analog.layers[1:]] == ["AnalogEinsumDense", "BatchNormalization"]
    np.testing.assert_allclose(np.asarray(analog(x)), np.asarray(model(x)), rtol=0, atol=1e-5)


def test_cross_attention_prices_each_projection_on_its_own_sequence():
    """Query of 3 positions, value (and key) of 5, of other widths: each projection reads its own
    input (a query read counted on the value's sequence, or the reverse, fails here)."""
    q_in, v_in = keras.Input((3, 6)), keras.Input((5, 10))
    mha = L.MultiHeadAttention(num_heads=2, key_dim=4, name="cross")
    model = keras.Model([q_in, v_in], mha(q_in, v_in))
    fps = {fp.name: fp for fp in analog_footprint(convert(model, IdealDevice(), IDEAL))}
    assert (fps["cross_query"].reads_per_inference, fps["cross_query"].n_in) == (3, 6 + 1)
    assert (fps["cross_key"].reads_per_inference, fps["cross_key"].n_in) == (5, 10 + 1)
    assert (fps["cross_value"].reads_per_inference, fps["cross_value"].n_in) == (5, 10 + 1)
    assert (fps["cross_attention_output"].reads_per_inference, fps["cross_attention_output"].n_out) == (3, 6)
    assert fps["cross/attention"].digital_ops == 2 * 3 * 5 * (4 + 4 + 1)
