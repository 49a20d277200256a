"""Device-aware training (issue 20): the device's curves in the graph, the programming drawn afresh
per mini-batch with the device's spread, training equal to plain training on the ideal device,
a device-aware model beating the plain one on its device, any model and any device (a
third-party one without Keras code), the configuration key in the CLI, TOML and Python, the cache
and a recorded result rerunning."""

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from nvmkit import (ConfigError, CrossbarConfig, Device, RunConfig, convert, create_from_spec,
                    get_registry, load_dataset, monte_carlo, run)
from nvmkit.engine.crossbar import Crossbar
from nvmkit.engine.device_aware import GRID, DeviceAwareTraining, ProgrammingTables
from nvmkit.workflow.config import TrainingConfig
from nvmkit.workflow.training import (cache_key, cache_key_data, deployment_key_data, fine_tune,
                                      fit_on_device, train)

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400.0


def device(spec):
    return create_from_spec("device", spec)


def mlp(n_in=20, hidden=48, classes=10, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(hidden, activation="relu"),
                             keras.layers.Dense(classes, activation="softmax")])


def crossbar(**nonideal):
    return CrossbarConfig.from_dict({"nonideal": nonideal})


@pytest.fixture(scope="module")
def sample():
    return load_dataset("mnist", source="sample")


def pcm_class(monkeypatch):
    """The worked third-party device of examples/nvmkit-pcm (numpy only, no Keras code)."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "nvmkit-pcm" / "src"))
    from nvmkit_pcm.device import PCM

    return PCM


# -- the device's curves -------------------------------------------------------------------------

CURVE_CASES = [("ideal", {}), ("synaptic:0.05", {}), ("generic", {}), ("reram", {}),
               ("reram:levels=8,sigma_read=0.01", {}), ("sonos", {}), ("sonos", {"drift_time": DAY}),
               ("sonos", {"drift_time": 2.5 * DAY, "clip_conductance": False}), ("ecram", {}),
               ("table", {}), ("generic", {"drift_time": 1e4, "drift_model": "power-law"})]


@pytest.mark.parametrize("spec,nonideal", CURVE_CASES)
def test_curves_match_the_device_within_their_stated_bound(spec, nonideal):
    """Bug caught: an interpolation reading the wrong grid point (planted: index i + 1 for i; the
    error became the slope times a step, far above the bound)."""
    d = device(spec)
    t = nonideal.get("drift_time", 0.0)
    tb = ProgrammingTables(d, crossbar(**nonideal))
    functions = {"prog": lambda g: d.programming_sigma(g, t), "read": d.read_sigma,
                 "drift": lambda g: d.drift(g, t),
                 "shift": lambda g: np.asarray(d.drift(g.copy(), t), np.float64) - g}
    rng = np.random.default_rng(0)
    checked = 0
    for name, fn in functions.items():
        curve = getattr(tb, name)
        if curve is None:
            continue
        g = rng.uniform(curve.lo, curve.hi, 20_000).astype(np.float32)
        exact = np.asarray(fn(g.copy()), dtype=np.float64)
        got = curve.numpy(g)
        assert np.max(np.abs(got - exact)) <= curve.bound, (name, curve.bound)
        # the Keras interpolation is the numpy one
        np.testing.assert_allclose(keras.ops.convert_to_numpy(curve(keras.ops.convert_to_tensor(g))), got,
                                   rtol=1e-6, atol=1e-6 * (np.abs(got).max() + 1e-30))
        # and the bound is tight enough to matter: far below the curve's own scale (1e-3: the
        # SONOS fits clamped above 1450 nA have a kink there, where linear interpolation errs by
        # up to a quarter grid step times the change of slope; smooth curves stay below 1e-4)
        assert curve.bound <= 1e-3 * max(np.abs(curve.values).max(), 1e-30) + 1e-12, (name, curve.bound)
        checked += 1
    assert checked or d.name in ("ideal",)


def test_sonos_spread_interpolates_within_the_analytic_bound():
    """sigma(I) = A (1 - exp(-I/B)): linear interpolation errs by at most h^2 max|sigma''| / 8 =
    h^2 A / (8 B^2) on a grid of step h (plus float32 rounding). Bug caught: the interpolation's
    weight applied to the wrong end (planted: f -> 1 - f)."""
    from nvmkit_plugins.devices.sonos import FIT_A, FIT_B

    d = device("sonos")
    curve = ProgrammingTables(d, crossbar()).prog
    a, b = FIT_A[0], FIT_B[0]
    h = (d.g_max - d.g_min) / GRID
    analytic = h**2 * a / (8 * b**2) + 4 * 2.0**-24 * a
    g = np.random.default_rng(1).uniform(d.g_min, d.g_max, 50_000).astype(np.float32)
    err = np.abs(curve.numpy(g) - d.programming_sigma(g).astype(np.float64))
    assert err.max() <= analytic
    assert curve.bound >= err.max()


# -- the programming the training reads -------------------------------------------------------------

def z_bound(n: int) -> tuple[float, float]:
    """6 standard errors of a standard normal sample's mean and standard deviation."""
    return 6 / math.sqrt(n), 6 / math.sqrt(2 * (n - 1))


def test_programming_has_the_devices_spread_and_is_fresh_per_minibatch():
    """The cells' deviations from their targets, divided by the device's programming_sigma at the
    target, are standard normal; two steps draw independent programmings; one step always the same
    one; with reprogram_every=3, steps 0-2 share one; the targets are Crossbar's. Bugs caught:
    the per-weight split of a spread applied to a physical device (planted: sigma_scale sqrt(2)
    for ReRAM), one draw reused across steps (planted: the window fixed at 0), a mapping off
    Crossbar's (planted: targets scaled by 0.999)."""
    d = device("reram")  # Milo et al.: a state-dependent spread, 4.33 uS at Gmin, 2.73 uS at Gmax
    xb = crossbar(clip_conductance=False, read_noise=False)
    model = mlp(hidden=400)
    trainer = DeviceAwareTraining(model, d, xb, seed=5)
    at = {s: trainer.programmed(s) for s in (0, 1, 0)}
    first, again, nxt = trainer.programmed(0), trainer.programmed(0), trainer.programmed(1)
    z_all, r_all = [], []
    for core, same, other in zip(first, again, nxt):
        w = np.vstack([model.layers[0].kernel.numpy(), model.layers[0].bias.numpy()[None]]) \
            if core["layer"] == model.layers[0].name else \
            np.vstack([model.layers[1].kernel.numpy(), model.layers[1].bias.numpy()[None]])
        reference = Crossbar(w[:-1], w[-1], d, xb)
        for j in range(2):
            np.testing.assert_allclose(core["targets"][j], reference.targets[j], rtol=1e-6, atol=1e-4)
            sigma = d.programming_sigma(core["targets"][j])
            z = (core["states"][j] - core["targets"][j]) / sigma
            z_other = (other["states"][j] - other["targets"][j]) / sigma
            z_all.append(z.ravel())
            r_all.append((z.ravel(), z_other.ravel()))
            np.testing.assert_array_equal(core["states"][j], same["states"][j])
        np.testing.assert_allclose(core["w_scale"], reference.w_scale, rtol=1e-6)
    z = np.concatenate(z_all)
    mean_tol, sd_tol = z_bound(z.size)
    assert abs(z.mean()) < mean_tol and abs(z.std() - 1) < sd_tol, (z.mean(), z.std(), z.size)
    za = np.concatenate([p[0] for p in r_all])
    zb = np.concatenate([p[1] for p in r_all])
    assert abs(np.corrcoef(za, zb)[0, 1]) < 6 / math.sqrt(za.size)
    del at

    windows = DeviceAwareTraining(mlp(hidden=8), d, xb, seed=5, reprogram_every=3)
    w = [windows.programmed(s)[0]["weights"] for s in range(5)]
    np.testing.assert_array_equal(w[0], w[1])
    np.testing.assert_array_equal(w[0], w[2])
    assert not np.array_equal(w[2], w[3]) and np.array_equal(w[3], w[4])


def test_drift_read_noise_and_stuck_cells_follow_the_device():
    """SONOS one day after programming: the spread measured around the drifted mean (Agrawal et
    al., IEDM 2022, Fig. 10), the state-dependent read variance of the programmed cells, and
    stuck cells at their fractions. Bugs caught: the mean shift applied to the noisy cells
    (planted: shift of the state instead of the target), the read variance at other states
    (planted: states x 0.9), the stuck fractions swapped (planted)."""
    d = device("sonos")
    xb = crossbar(drift_time=DAY, stuck_at_gmin=0.02, stuck_at_gmax=0.05)
    model = mlp(hidden=400)
    core = DeviceAwareTraining(model, d, xb, seed=2).programmed(7)[0]
    z_all, stuck_min, stuck_max, free = [], 0, 0, 0
    g_max = np.float32(d.g_max)
    for j in range(2):
        t, s = core["targets"][j], core["states"][j]
        at_max = s == g_max
        at_min = s == np.float32(d.g_min)
        inside = (t > d.g_min + 1.0) & (t < d.g_max - 100.0)  # where neither clip nor drift gives an end
        stuck_min += int(np.sum(at_min & inside))
        stuck_max += int(np.sum(at_max & inside))
        free += int(np.sum(inside))
        ok = ~at_max & ~at_min & (t > 50.0)  # away from Gmin, where clipping binds
        mean = np.asarray(d.drift(t.copy(), DAY), np.float64)
        z_all.append(((s - mean) / d.programming_sigma(t, DAY))[ok])
        np.testing.assert_allclose(
            core["read_var"],
            np.square(core["current_to_weight"]) * (np.square(d.read_sigma(core["states"][0]))
                                                     + np.square(d.read_sigma(core["states"][1]))),
            rtol=1e-4, atol=1e-12)
    z = np.concatenate(z_all)
    mean_tol, sd_tol = z_bound(z.size)
    assert abs(z.mean()) < mean_tol and abs(z.std() - 1) < sd_tol, (z.mean(), z.std())
    for count, p in ((stuck_min, 0.02), (stuck_max, 0.05)):
        assert abs(count / free - p) < 6 * math.sqrt(p * (1 - p) / free), (count, free, p)

    # without stuck cells every idle cell of a pair (at Gmin, a spread below float32's step of the
    # range) holds one state, and its read spread is one number: the same variance
    plain = DeviceAwareTraining(model, d, crossbar(drift_time=DAY), seed=2)
    assert plain.tables.quiet_gmin and plain.tables.idle_read is not None
    core = plain.programmed(7)[0]
    idle = np.where(core["targets"][0] > d.g_min, core["states"][1], core["states"][0])
    assert np.ptp(idle) == 0
    np.testing.assert_allclose(
        core["read_var"],
        np.square(core["current_to_weight"]) * (np.square(d.read_sigma(core["states"][0]))
                                                 + np.square(d.read_sigma(core["states"][1]))),
        rtol=1e-4, atol=1e-12)


def test_fit_reads_a_fresh_programming_every_minibatch():
    """Inside fit: one batch, a learning rate of 0 (the weights stay), no read noise; the loss of
    each step changes only with the programming. reprogram_every=1: every step differs;
    reprogram_every=2: pairs of steps agree. Bug caught: the programming keyed to a step that
    does not advance in fit (planted: the trainer's own step variable instead of the
    optimizer's; every loss equal)."""
    rng = np.random.default_rng(0)
    x = rng.random((32, 20), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    d = device("reram:error_model=constant,sigma_prog=0.05")
    losses = {}
    for every in (1, 2):
        trainer = DeviceAwareTraining(mlp(), d, crossbar(read_noise=False), seed=0, reprogram_every=every)
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                        loss="sparse_categorical_crossentropy", jit_compile=False)
        hist = trainer.fit(x, y, epochs=6, batch_size=32, shuffle=False, verbose=0).history["loss"]
        losses[every] = hist
        assert int(keras.ops.convert_to_numpy(trainer.step)) == 6
    assert len(set(losses[1])) == 6
    pairs = losses[2]
    assert [pairs[0], pairs[2], pairs[4]] == [pairs[1], pairs[3], pairs[5]]
    assert len({pairs[0], pairs[2], pairs[4]}) == 3


# -- equivalence, benefit ------------------------------------------------------------------------

def test_ideal_device_training_equals_plain_training(tmp_path, sample):
    """On the ideal device with the ideal preset, device-aware training gives the plain weights to
    float32 precision: from scratch through train(), and fine-tuning a model (fit_on_device
    against fine_tune). Bugs caught: the straight-through path cut (planted: the read weights
    stop_gradient(programmed), so no gradient reached the weights), the programmed weights
    scaled wrongly (planted: current_to_weight without w_scale)."""
    mapper = get_registry().create("network", "mlp", {"hidden": [32]})
    ideal, preset = device("ideal"), CrossbarConfig.preset("ideal")
    base = {"epochs": 1, "batch_size": 128}
    plain = train(mapper, sample, base, seed=3, cache_dir=tmp_path)
    aware = train(mapper, sample, {**base, "method": "device:start=scratch"}, seed=3,
                  cache_dir=tmp_path, device=ideal, crossbar=preset)
    for a, b in zip(plain.get_weights(), aware.get_weights()):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
    untrained = mapper.build(sample.input_shape, 10, 0.0, 3)
    assert max(np.abs(a - u).max() for a, u in zip(plain.get_weights(), untrained.get_weights())) > 1e-2

    x, y = mapper.prepare(sample.x_train[:1000]), sample.y_train[:1000]
    one, two = (keras.models.clone_model(plain) for _ in range(2))
    for m in (one, two):
        m.set_weights(plain.get_weights())
    fine_tune(one, x, y, {"epochs": 1, "batch_size": 100}, seed=4)
    fit_on_device(two, x, y, TrainingConfig(method="device", device_epochs=1, batch_size=100),
                  device=ideal, crossbar=preset, seed=4)
    moved = max(np.abs(a - p).max() for a, p in zip(one.get_weights(), plain.get_weights()))
    assert moved > 1e-3
    for a, b in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())


def test_device_aware_model_beats_the_plain_model_on_its_device(tmp_path, sample):
    """A ternary ReRAM (3 write-verify levels, Milo et al.'s spread): an MLP trained 3 plain epochs,
    then 1 epoch through the device, against the same schedule through the ideal device (plain
    training, as the equivalence test shows), each deployed on the ReRAM with 10 trials. The
    device-aware mean must exceed the plain one by 3 standard errors of the difference
    (sqrt(s1^2/K + s2^2/K) from the trials' spread). Bug caught: training blind to the device
    (planted: the programmed deviation multiplied by 0; both models came out equal)."""
    mapper = get_registry().create("network", "mlp", {"hidden": [64]})
    d, xb, k = device("reram:levels=3"), CrossbarConfig(), 10
    schedule = {"epochs": 3, "method": "device", "device_epochs": 1}
    plain = train(mapper, sample, schedule, seed=0, cache_dir=tmp_path, device=device("ideal"),
                  crossbar=CrossbarConfig.preset("ideal"))
    aware = train(mapper, sample, schedule, seed=0, cache_dir=tmp_path, device=d, crossbar=xb)
    res = {name: monte_carlo(convert(m, d, xb, trials=k, seed=1), sample.x_test, sample.y_test,
                             trials=k, seed=1, prepare=mapper.prepare)
           for name, m in (("plain", plain), ("device", aware))}
    se = math.sqrt((res["plain"].std ** 2 + res["device"].std ** 2) / k)
    assert res["device"].mean - res["plain"].mean > 3 * se, {n: (r.mean, r.std) for n, r in res.items()}


# -- any model, any device --------------------------------------------------------------------------

def zoo() -> list:
    """Models with every kind of layer convert maps: a folded BatchNormalization without a bias,
    depthwise, separable and grouped convolutions, Conv1D, an LSTM and a GRU, TimeDistributed."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 4))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    bn = keras.layers.BatchNormalization()
    h = bn(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same")(h)
    h = keras.layers.SeparableConv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(8, 1, groups=2)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    conv = keras.Model(inp, keras.layers.Dense(5, activation="softmax")(h))
    rng = np.random.default_rng(0)  # statistics as a trained BatchNormalization holds them
    bn.set_weights([rng.uniform(0.5, 2, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.3, 8),
                    rng.uniform(0.2, 3, 8)])
    seq_in = keras.Input((3, 4))
    s = keras.layers.Conv1D(6, 2, padding="causal")(seq_in)
    s = keras.layers.TimeDistributed(keras.layers.Dense(6))(s)
    s = keras.layers.LSTM(6, return_sequences=True)(s)
    s = keras.layers.GRU(5)(s)
    rnn = keras.Model(seq_in, keras.layers.Dense(5)(s))  # logits
    return [(conv, (8, 8, 4)), (rnn, (3, 4))]


@pytest.mark.parametrize("which", [0, 1])
def test_any_model_trains_on_the_device_and_its_weights_come_back(which):
    """After device-aware training the user's model holds the trained weights: converting it
    again (BatchNormalization folded again) reads exactly what the trained twin read, on the ideal
    device; on ReRAM (levels, read noise, power-law drift, stuck cells, 8-bit DAC and ADC, whose
    gradients pass straight through) the training runs and moves every trainable weight. Bugs caught: a folded BatchNormalization not made an identity
    (planted: its moving variance left as it was), a depthwise kernel copied back in the wrong
    order (planted: its two spatial axes swapped)."""
    model, shape = zoo()[which]
    x = np.random.default_rng(0).random((64, *shape), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 5, 64)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=which == 1)
    before = [w.copy() for w in model.get_weights()]
    twin = DeviceAwareTraining(model, device("ideal"), CrossbarConfig.preset("ideal"), seed=0)
    twin.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=False)
    twin.fit(x, y, epochs=2, batch_size=32, verbose=0)
    for layer in twin.layers:
        layer.programming = None  # read the twin's (ideal) programming as convert would
    trained_out = twin.model.predict(x, verbose=0)
    twin.copy_back()
    again = convert(model, device("ideal"), CrossbarConfig.preset("ideal"))
    np.testing.assert_allclose(again.predict(x, verbose=0), trained_out, rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))

    model2, _ = zoo()[which]
    # a folded BatchNormalization trains inside its convolution and comes back as an identity
    start = {v.path: v.numpy().copy() for v in model2.trainable_variables
             if not v.path.startswith("batch_normalization")}
    noisy = DeviceAwareTraining(model2, device("reram:sigma_read=0.01,levels=32"),
                                CrossbarConfig.from_dict({
                                    "nonideal": {"drift_time": 10.0, "drift_model": "power-law",
                                                 "drift_nu_sigma": 0.01, "stuck_at_gmin": 0.01},
                                    "converters": {"dac_bits": 8, "adc_bits": 8}}),
                                seed=0, calibration_data=x)
    noisy.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=False)
    noisy.fit(x, y, epochs=1, batch_size=32, verbose=0)
    noisy.copy_back()
    still = [v.path for v in model2.trainable_variables
             if v.path in start and np.array_equal(v.numpy(), start[v.path])]
    assert len(start) >= 6 and not still, still


def test_a_third_party_device_trains_without_keras_code(monkeypatch):
    """examples/nvmkit-pcm's PCM (numpy functions only: a spread that depends on the state and on
    the time, 1/f read noise, drift) programs the training graph with its own spread, one hour
    after programming. Bug caught: the time not passed to programming_sigma (planted: t = 0)."""
    pcm = pcm_class(monkeypatch)()
    t = 3600.0
    xb = crossbar(drift_time=t, clip_conductance=False)
    core = DeviceAwareTraining(mlp(hidden=400), pcm, xb, seed=4).programmed(3)[0]
    z_all = []
    for j in range(2):
        tgt, s = core["targets"][j], core["states"][j]
        sigma = pcm.programming_sigma(tgt, t)
        ok = tgt > 6 * sigma  # away from 0, where a drifted cell is held at 0 (no negative current)
        # the programmed cell, then its drift (a deterministic mean per cell): undo the drift by
        # interpolating the device's monotone drift back to the pre-drift state
        grid = np.linspace(pcm.g_min, pcm.g_max * 1.3, 20001).astype(np.float32)
        before = np.interp(s, pcm.drift(grid.copy(), t), grid)
        z_all.append(((before - tgt) / np.where(ok, sigma, 1))[ok])
    z = np.concatenate(z_all)
    mean_tol, sd_tol = z_bound(z.size)
    assert abs(z.mean()) < mean_tol + 0.01 and abs(z.std() - 1) < sd_tol + 0.01, (z.mean(), z.std())
    trainer = DeviceAwareTraining(mlp(), pcm, xb, seed=0)
    trainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=False)
    x = np.random.default_rng(0).random((64, 20), dtype=np.float32)
    hist = trainer.fit(x, np.arange(64) % 10, epochs=2, batch_size=32, verbose=0).history["loss"]
    assert np.all(np.isfinite(hist))


# -- configuration, cache, CLI, result -----------------------------------------------------------

def test_the_method_key_reads_the_same_everywhere():
    """training.method as a name, a spec (the CLI's --training-method) or separate keys, with its
    one-line refusals. Bugs caught: a spec's settings dropped, a plain method keeping noise."""
    spec = TrainingConfig(method="device:epochs=2,every=4,start=scratch,learning_rate=1e-4")
    keys = TrainingConfig.from_dict({"method": "device", "device_epochs": 2, "reprogram_every": 4,
                                     "device_start": "scratch", "device_learning_rate": 1e-4})
    assert spec == keys and spec.method == "device"
    assert TrainingConfig(method="preactivation:0.1").sigma_neu == 0.1
    assert TrainingConfig(sigma_neu=0.2).with_method().method == "preactivation"
    assert TrainingConfig().with_method().method == "plain"
    filled = TrainingConfig(method="device").with_method()
    assert (filled.device_epochs, filled.device_start, filled.reprogram_every) == (1, "plain", 1)
    assert TrainingConfig.from_dict(filled.to_dict()) == filled  # the dict/TOML round trip
    for bad, words in (({"method": "hardware"}, "plain, preactivation, device"),
                       ({"method": "plain", "sigma_neu": 0.1}, "preactivation"),
                       ({"method": "device", "sigma_neu": 0.1}, "remove sigma_neu"),
                       ({"device_epochs": 2}, "training.method"),
                       ({"method": "device:epochs=0"}, "device_epochs"),
                       ({"method": "device:every=2", "reprogram_every": 3}, "two values"),
                       ({"method": "device:rate=1"}, "its settings"),
                       ({"method": "device", "device_start": "middle"}, "plain, scratch")):
        with pytest.raises(ConfigError, match=words) as err:
            TrainingConfig.from_dict(bad)
        assert "\n" not in str(err.value)


def test_cache_key_holds_the_deployment_only_for_device_training(sample, tmp_path):
    """Plain and pre-activation keys are what they were before training methods existed (no
    method in them); a device-aware key changes with the device and with the crossbar. Bug
    caught: a device-aware model loaded for another device (planted: deployment left out of the
    key)."""
    mapper = get_registry().create("network", "mlp", {"hidden": [16]})
    x, y = sample.x_train[:100], sample.y_train[:100]
    plain = TrainingConfig().resolved(mapper)
    data = cache_key_data(mapper, plain, "mnist", True, x, y)
    assert not {"method", "device_epochs", "device_start", "reprogram_every"} & set(data["training"])
    aware = TrainingConfig(method="device").resolved(mapper)
    keys = set()
    for d, xb in ((device("reram"), CrossbarConfig()), (device("sonos"), CrossbarConfig()),
                  (device("reram"), crossbar(drift_time=10.0))):
        keys.add(cache_key({**cache_key_data(mapper, aware, "mnist", True, x, y),
                            **deployment_key_data(d, xb)}))
    assert len(keys) == 3

    # train() keys its files so: one plain model, then one per deployment
    rng = np.random.default_rng(0)
    tiny = (rng.random((256, 28, 28), dtype=np.float32), rng.integers(0, 10, 256))
    for d, xb in ((device("reram"), CrossbarConfig()), (device("sonos"), CrossbarConfig()),
                  (device("reram"), crossbar(drift_time=10.0)), (device("reram"), CrossbarConfig())):
        train(mapper, tiny, {"epochs": 1, "method": "device"}, seed=0, cache_dir=tmp_path,
              device=d, crossbar=xb)
    assert len(list(tmp_path.glob("*.keras"))) == 4

    from nvmkit.sweeps.experiment import model_key

    resolved = {"dataset": {"name": "mnist"}, "network": {"name": "mlp"}, "seed": 0,
                "training": aware.to_dict(), "device": {"name": "reram"}, "crossbar": {}}
    other = {**resolved, "device": {"name": "sonos"}}
    assert model_key(resolved) != model_key(other)
    plain_points = [{**r, "training": plain.to_dict()} for r in (resolved, other)]
    assert model_key(plain_points[0]) == model_key(plain_points[1])


def test_cli_result_records_the_method_and_reruns(tmp_path, monkeypatch):
    """``nvmkit run --training-method device:epochs=1`` trains through the run's device, the
    result records the method, and the recorded result reruns from the cache to the same
    accuracies; a user's .keras file trains the same way. Bug caught: the method not recorded
    (planted: the resolved training without the method and its settings)."""
    from typer.testing import CliRunner

    from nvmkit.cli import app
    import nvmkit.workflow.training as training

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    args = ["run", "--network", "mlp:hidden=16", "--device", "reram:levels=4", "--epochs", "1",
            "--training-method", "device:epochs=1", "--trials", "2", "--noise", "none",
            "--energy", "none", "--set", "scenarios=[\"internal\"]", "-o", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    record = json.loads(out.read_text())
    assert record["config"]["training"]["method"] == "device"
    assert record["config"]["training"]["device_epochs"] == 1

    monkeypatch.setattr(training, "fit_on_device", lambda *a, **k: pytest.fail("must load the cache"))
    again = run(RunConfig.from_file(out))
    assert again.accuracy["internal"]["per_trial"] == record["accuracy"]["internal"]["per_trial"]

    monkeypatch.undo()
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "mine.keras")
    mine = run(RunConfig.from_dict({"model": str(tmp_path / "mine.keras"), "device": "reram",
                                    "training": {"method": "device"}, "trials": 2, "noise": "none",
                                    "energy": "none", "scenarios": ["digital"]}))
    assert mine.config["training"]["method"] == "device"
    assert mine.timing["train_epochs"] == 1
