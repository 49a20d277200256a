"""A converted model is a real Keras model: it saves and loads as .keras in safe mode with its
programmed state, and it trains (gradients flow through the analog layers to the user's
weights)."""

import keras
import numpy as np
import pytest

from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.engine.convert import analog_layers, convert, describe_analog, repeat_trials, reprogram
from nvmkit_plugins.devices.reram import ReRAM
from nvmkit_plugins.devices.sonos import SONOS

L = keras.layers


def small_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                             L.DepthwiseConv2D(3), L.BatchNormalization(), L.Flatten(),
                             L.Dense(3, activation="softmax")])


def test_save_and_load_in_safe_mode_keeps_the_programmed_hardware(tmp_path):
    """Fails if a layer's config does not round-trip (device, crossbar settings, trials) or if
    the programmed state (non-trainable variables) or the calibrated ranges are not saved."""
    x = np.random.default_rng(0).random((6, 8, 8, 1)).astype("f4")
    m = small_cnn()
    m(x)
    c = CrossbarConfig.from_dict({"nonideal": {"read_noise": False}, "converters": {"adc_bits": 8}})
    analog = convert(m, SONOS(), c, trials=2, seed=3, calibration_data=x)
    xr = repeat_trials(x, 2)
    before = analog.predict(xr, verbose=0, batch_size=4)
    path = tmp_path / "analog.keras"
    analog.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(xr, verbose=0, batch_size=4), before)
    a, b = analog_layers(analog), analog_layers(loaded)
    assert [type(layer).__name__ for layer in b] == [type(layer).__name__ for layer in a]
    assert b[0].device.get_config() == a[0].device.get_config() and b[0].trials == 2
    assert b[0].crossbar_config == c


def test_gradient_step_changes_user_weights_and_lowers_the_loss():
    """fit() through analog layers with programming error, read noise and an 8-bit ADC
    (straight-through): the user's kernel moves and, re-programmed with the same seed, the loss
    drops. Fails if the read cuts the gradient (e.g. a stop_gradient on the weights, or a
    rounding without straight-through)."""
    rng = np.random.default_rng(1)
    x = rng.random((64, 8, 8, 1)).astype("f4")
    bands = np.stack([x[:, :3].sum((1, 2, 3)), x[:, 3:5].sum((1, 2, 3)) * 1.5, x[:, 5:].sum((1, 2, 3))], 1)
    y = bands.argmax(1)  # which band of rows is brightest: learnable
    m = small_cnn(1)
    m(x)
    c = CrossbarConfig.preset("converters-8bit")
    analog = convert(m, ReRAM(), c, seed=5, calibration_data=x)
    analog.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    first = analog.evaluate(x, y, verbose=0)
    k0 = analog_layers(analog)[0].kernel.numpy().copy()
    analog.fit(x, y, epochs=10, batch_size=16, verbose=0, shuffle=False)
    assert not np.allclose(analog_layers(analog)[0].kernel.numpy(), k0)
    reprogram(analog, 5)
    assert analog.evaluate(x, y, verbose=0) < first - 0.05  # read-noise jitter of the loss: ~1e-3
    assert all(np.isfinite(v.numpy()).all() for v in analog.trainable_variables)


def test_describe_names_device_tiles_and_mapping():
    m = small_cnn()
    analog = convert(m, SONOS(), CrossbarConfig.from_dict({"mapping": {"scheme": "offset"}}))
    text = describe_analog(analog)
    assert "sonos, offset mapping, 10x4 on 1 tile(s)" in text
    assert "4x(10x1) on 4 tile(s)" in text  # depthwise: one crossbar per channel, BN folded


def test_summary_shows_each_analog_layers_device_tiles_and_mapping_after_a_safe_mode_load(tmp_path):
    """summary() of the converted model, captured through print_fn, names for every analog layer
    its device, mapping and tiles, and still does after a .keras save and a safe-mode load.
    Fails if convert returns a plain Keras model (Keras's table lists the analog layers by class
    only), or if the model class is lost on saving (not registered as serializable: load_model
    refuses it in safe mode or gives back a plain Functional whose summary has no hardware)."""
    m = small_cnn()
    c = CrossbarConfig.from_dict({"mapping": {"scheme": "offset", "tile_rows": 8, "tile_cols": 2}})
    analog = convert(m, ReRAM(), c)
    # tiles of 8x2 counted by hand: conv 3x3x1 + bias row = 10 rows x 4 filters -> 2 x 2 tiles;
    # depthwise: 4 channels of 10 x 1 -> 4 x 2 x 1; dense: 64 + bias = 65 rows x 3 -> 9 x 2
    conv, depthwise, dense = (m.layers[i].name for i in (0, 1, 4))  # Keras numbers the names
    expected = {conv: "10x4 on 4 tile(s) of 8x2", depthwise: "4x(10x1) on 8 tile(s) of 8x2",
                dense: "65x3 on 18 tile(s) of 8x2"}
    path = tmp_path / "analog.keras"
    analog.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for model in (analog, loaded):
        lines: list[str] = []
        model.summary(print_fn=lines.append)
        text = "\n".join(lines)
        assert "Total params" in text  # Keras's own table is still there
        for name, tiles in expected.items():
            (row,) = [r for r in text.splitlines() if r.split()[:1] == [name]]
            assert "reram" in row and "offset mapping" in row and tiles in row, row
    x = np.random.default_rng(2).random((4, 8, 8, 1)).astype("f4")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), analog.predict(x, verbose=0))


def test_a_device_written_against_the_plugin_guide_converts():
    """The device of docs/plugins.md, as written there (numpy functions of the conductance),
    runs in converted models unchanged: programmed with its own spread, saved configs name it."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    space: dict = {}
    exec(compile(code, "plugins.md", "exec"), space)  # noqa: S102 - the guide's own example
    device = space["PCMLite"]()
    w = np.full((50, 20), 0.5, dtype="f4")
    w[0, 0] = 1.0  # Wmax: the other weights target G+ = 12.5 uS
    m = keras.Sequential([keras.Input((50,)), L.Dense(20, use_bias=False)])
    m.set_weights([w])
    analog = convert(m, device, CrossbarConfig.from_dict({"nonideal": {"clip_conductance": False}}),
                     trials=4)
    (layer,) = analog_layers(analog)
    dw = layer.cores[0].delta.numpy()[:, 1:, :].astype(np.float64)  # weight error, weight units
    gain = 1.0 / device.g_range  # Wmax = 1 spans g_range (differential: one cell carries it)
    sigma = float(device.programming_sigma(np.float32([12.5]))[0]) * gain  # G- at 0: sigma(0) too
    sigma = np.hypot(sigma, float(device.programming_sigma(np.float32([0.0]))[0]) * gain)
    # std of a sample std over N draws: sigma / sqrt(2 N); 5 of those
    assert abs(dw.std() - sigma) < 5 * sigma / np.sqrt(2 * dw.size)
    assert layer.get_config()["device"]["name"] == "pcm-lite"


def test_monte_carlo_trials_equal_a_per_trial_reference_forward_pass():
    """Same seed, same streams: trial k's accuracy equals that of the user's Keras model carrying
    trial k's programmed weights, on trial k's noisy test images (stream (1, k), drawn batch by
    batch), computed here trial by trial in plain Keras (programming error only, so the reference
    is exact up to a float-rounding flip of an argmax). Fails if trials or samples are mixed in
    the (K, b) -> B*K layout, or if a trial's test-set noise stream differs."""
    from nvmkit.core.noise import NoiseInjector
    from nvmkit.engine.evaluate import monte_carlo
    from nvmkit.workflow.data import load_sample

    class Gauss(NoiseInjector):
        name = "test-gauss"

        def apply(self, x, rng):
            return x + rng.normal(0, 0.3, x.shape).astype(x.dtype)

    ds = load_sample("mnist")
    x, y = (ds.x_test[:300] / 255.0).astype("f4"), ds.y_test[:300]
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, strides=2, activation="relu"),
                          L.Flatten(), L.Dense(10)])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit((ds.x_train[:600] / 255.0)[..., None], ds.y_train[:600], epochs=2, verbose=0, batch_size=64)
    c = CrossbarConfig.from_dict({"nonideal": {"read_noise": False}})
    prep = lambda a: a[..., None]  # noqa: E731
    trials, seed, bs = 3, 4, 128
    analog = convert(m, ReRAM(), c, trials=trials)
    new = monte_carlo(analog, x, y, trials=trials, seed=seed, injector=Gauss(), prepare=prep,
                      batch_size=bs)
    programmed = [layer.cores[0] for layer in analog_layers(analog)]  # conv, dense: bias rows last
    user = [w for w in m.get_weights()]
    reference = []
    for k in range(trials):
        weights = []
        for core, (kernel, bias) in zip(programmed, zip(user[0::2], user[1::2])):
            full = np.vstack([kernel.reshape(-1, kernel.shape[-1]), bias[None]])
            full = full + core.delta.numpy()[k]
            weights += [full[:-1].reshape(kernel.shape), full[-1]]
        ref = keras.models.clone_model(m)
        ref.set_weights(weights)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, k)))
        noisy = np.concatenate([Gauss().apply(x[s:s + bs], rng) for s in range(0, len(x), bs)])
        reference.append(float(np.mean(np.asarray(ref(prep(noisy))).argmax(-1) == y)))
    assert len(set(reference)) > 1  # the trials differ: a mix-up would show
    np.testing.assert_allclose(new.per_trial, reference, atol=2 / len(x))


def test_xla_compiled_predict_matches_and_fit_learns():
    """Keras compiles with XLA by default on a GPU (``jit_compile="auto"``), so every op of the
    read must be XLA-compilable: fails if one is not (a shape known only at run time where XLA
    needs a constant, a numpy call inside ``call``), if the compiled read differs from the
    graph one, or if compiled training does not learn (a gradient cut in the compiled read).
    Runs XLA on the CPU, the same compiler path a GPU takes."""
    x = np.random.default_rng(1).random((8, 8, 8, 1)).astype("f4")
    y = np.arange(8) % 3
    m = small_cnn()
    m(x)
    c = CrossbarConfig.from_dict({"nonideal": {"read_noise": False}, "converters": {"adc_bits": 8}})
    xr, yr = repeat_trials(x, 2), np.repeat(y, 2)
    plain = convert(m, SONOS(), c, trials=2, seed=5, calibration_data=x)
    plain.compile(jit_compile=False)  # a graph on any machine (Keras picks XLA on a GPU otherwise)
    want = plain.predict(xr, verbose=0, batch_size=16)
    xla = convert(m, SONOS(), c, trials=2, seed=5, calibration_data=x)
    xla.compile("sgd", "sparse_categorical_crossentropy", jit_compile=True)
    np.testing.assert_allclose(xla.predict(xr, verbose=0, batch_size=16), want, rtol=1e-5, atol=1e-6)
    # XLA-compiled training through every device effect (programming error, read noise) must
    # learn: the band task of the gradient test above, 64 images, 2 trials each. A model that
    # did not train stays near the majority class's share p0 (22/64 here); a binomial fraction
    # of 64 decisions has std sqrt(p0 (1 - p0) / 64) = 0.06, so above p0 + 5 std (0.64) it learned
    # (the two trials' rows of an image are not independent: 64, not 128, decisions counted)
    xt = np.random.default_rng(1).random((64, 8, 8, 1)).astype("f4")
    bands = np.stack([xt[:, :3].sum((1, 2, 3)), xt[:, 3:5].sum((1, 2, 3)) * 1.5,
                      xt[:, 5:].sum((1, 2, 3))], 1)
    yt = bands.argmax(1)
    p0 = np.bincount(yt).max() / len(yt)
    noisy = convert(m, SONOS(), CrossbarConfig(), trials=2, seed=5)
    noisy.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", jit_compile=True)
    xtr, ytr = repeat_trials(xt, 2), np.repeat(yt, 2)
    loss = noisy.fit(xtr, ytr, epochs=10, batch_size=16, verbose=0, shuffle=False).history["loss"]
    assert np.isfinite(loss).all()
    accuracy = np.mean(noisy.predict(xtr, batch_size=16, verbose=0).argmax(-1) == ytr)
    assert accuracy > p0 + 5 * np.sqrt(p0 * (1 - p0) / len(yt)), (accuracy, p0, loss)


@pytest.mark.parametrize("imports", ["import nvmkit, keras", "import keras, nvmkit"])
def test_a_saved_model_loads_in_a_fresh_process_after_import_nvmkit(tmp_path, imports):
    """docs/api.md: a converted model (and a network with nvmkit's RNN cell) loads in safe mode once
    nvmkit is imported, whichever of nvmkit and Keras comes first. ``import nvmkit`` is lazy, so the
    classes register when Keras is imported; a test in this process cannot see that (every class
    is registered here already). The bug it catches: AnalogModel 'could not be located'."""
    import subprocess
    import sys

    from nvmkit.core.layers import PreActivationNoiseRNNCell

    dense = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    convert(dense, ReRAM(), trials=2).save(tmp_path / "analog.keras")
    cell = PreActivationNoiseRNNCell(4, 0.1, seed=1)
    keras.Sequential([keras.Input((3, 5)), keras.layers.RNN(cell)]).save(tmp_path / "rnn.keras")
    probe = (f"{imports}\n"
             f"a = keras.saving.load_model({str(tmp_path / 'analog.keras')!r}, safe_mode=True)\n"
             f"r = keras.saving.load_model({str(tmp_path / 'rnn.keras')!r}, safe_mode=True)\n"
             "print(type(a).__name__, type(r.layers[0].cell).__name__)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["AnalogModel", "PreActivationNoiseRNNCell"]
