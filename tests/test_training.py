"""Training: configuration, seeding, the on-disk model cache and the sigma_syn -> sigma_neu rule."""

import math

import keras
import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.core.registry import get_registry
from nvmkit.workflow.training import (TrainingConfig, cache_key, cache_key_data, default_cache_dir,
                             noise_site_stats, train)

FAST = {"epochs": 2, "batch_size": 64}


def mapper(name="mlp", **params):
    params = params or {"mlp": {"hidden": [16]}, "rnn": {"time_steps": 7, "units": 8}}.get(name, {})
    return get_registry().create("network", name, params)


@pytest.fixture(scope="module")
def data():
    """600 images of two classes that differ in brightness layout: learnable in two epochs."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    x = rng.random((600, 28, 28), dtype=np.float32) * 0.3
    x[y == 1, :14] += 0.6
    x[y == 0, 14:] += 0.6
    return x, y


def weights_equal(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(u, v) for u, v in zip(wa, wb))


def test_config_validation():
    for bad in ({"optimizer": "adamm"}, {"learning_rate": -1}, {"epochs": 0}, {"batch_size": 2.5},
                {"sigma_neu": 0.1, "sigma_syn_target": 0.025}, {"sigma_neu": -0.1},
                {"validation_split": 1.0}, {"lr": 0.1}, {"schedule": "step"}):
        with pytest.raises(ConfigError):
            TrainingConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="adam, adamw"):
        TrainingConfig(optimizer="adamm")


def test_resolved_fills_the_mapper_defaults_and_keeps_overrides():
    m = mapper("cnn")
    cfg = TrainingConfig(epochs=3).resolved(m)
    assert cfg.epochs == 3
    assert cfg.optimizer == m.training_defaults["optimizer"]
    assert cfg.learning_rate == m.training_defaults["learning_rate"]
    assert cfg.batch_size == m.training_defaults["batch_size"]
    assert cfg.schedule == m.training_defaults.get("schedule", "constant")
    assert cfg.sigma_neu == 0.0
    assert TrainingConfig(schedule="constant").resolved(m).schedule == "constant"
    assert TrainingConfig(sigma_syn_target=0.025).resolved(m).sigma_neu is None


def test_run_configuration_training_table_is_accepted():
    cfg = TrainingConfig.coerce(TrainingConfig(epochs=4, sigma_neu=0.1, use_cache=False))
    assert (cfg.epochs, cfg.sigma_neu) == (4, 0.1)
    assert TrainingConfig.coerce({"epochs": 4}) == TrainingConfig(epochs=4)
    assert TrainingConfig.coerce(None) == TrainingConfig()


def test_train_learns_caches_and_reloads(tmp_path, data, monkeypatch):
    epochs = []
    model = train(mapper(), data, FAST, seed=0, cache_dir=tmp_path, progress=lambda e, logs: epochs.append(logs))
    assert len(epochs) == 2 and "accuracy" in epochs[-1]
    x, y = data
    acc = np.mean(np.argmax(model.predict(mapper().prepare(x), verbose=0), axis=1) == y)
    assert acc > 0.9  # two well-separated classes; chance is 0.5
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len([f for f in files if f.endswith(".keras")]) == 1
    assert len([f for f in files if f.endswith(".json")]) == 1
    assert not [f for f in files if f.startswith(".")]  # no temp files left behind

    import nvmkit.workflow.training as training

    def no_fit(*a, **k):
        raise AssertionError("a cached model must not be retrained")

    monkeypatch.setattr(training, "_fit", no_fit)
    again = train(mapper(), data, FAST, seed=0, cache_dir=tmp_path)
    assert weights_equal(model, again)
    loaded_progress = []
    train(mapper(), data, FAST, seed=0, cache_dir=tmp_path, progress=lambda e, l: loaded_progress.append(e))
    assert loaded_progress == []
    with pytest.raises(AssertionError, match="retrained"):
        train(mapper(), data, FAST, seed=0, cache_dir=tmp_path, use_cache=False)
    with pytest.raises(AssertionError, match="retrained"):  # the run config's use_cache is honoured
        train(mapper(), data, TrainingConfig(epochs=2, batch_size=64, use_cache=False), seed=0, cache_dir=tmp_path)


def test_anything_that_affects_training_changes_the_cache_key(data):
    x, y = data
    cfg = TrainingConfig(**FAST, schedule="constant").resolved(mapper()).replace(seed=0)
    base = dict(mapper=mapper(), cfg=cfg,
                dataset="mnist", is_sample=False, x_train=x, y_train=y)
    variants = [{}, {"mapper": mapper("mlp", hidden=[17])}, {"mapper": mapper("rnn")},
                {"cfg": cfg.replace(seed=1)}, {"cfg": cfg.replace(learning_rate=0.01)},
                {"cfg": cfg.replace(sigma_neu=0.1, method="preactivation")},
                {"cfg": cfg.replace(optimizer="sgd")},
                {"cfg": cfg.replace(validation_split=0.1)}, {"cfg": cfg.replace(schedule="cosine")},
                {"cfg": cfg.replace(epochs=3)}, {"cfg": cfg.replace(batch_size=32)},
                {"dataset": "fashion-mnist"}, {"is_sample": True}, {"x_train": x[::-1].copy()}, {"y_train": 1 - y}]
    keys = {cache_key(cache_key_data(**{**base, **v})) for v in variants}
    assert len(keys) == len(variants)
    assert cache_key(cache_key_data(**base)) == cache_key(cache_key_data(**{**base, "x_train": x.copy()}))


def test_no_cache_refreshes_the_model_under_the_same_key(tmp_path, data, monkeypatch):
    # regression: use_cache was part of the key, so --no-cache trained into a file no later run read
    x, y = data
    cfg = TrainingConfig(**FAST).resolved(mapper()).replace(seed=0)
    keyed = [cache_key(cache_key_data(mapper(), cfg.replace(use_cache=u), "mnist", False, x, y))
             for u in (True, False)]
    assert keyed[0] == keyed[1]
    fresh = train(mapper(), data, TrainingConfig(**FAST, use_cache=False), seed=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.keras"))) == 1

    import nvmkit.workflow.training as training

    monkeypatch.setattr(training, "_fit", lambda *a, **k: pytest.fail("the refreshed model must be reused"))
    assert weights_equal(fresh, train(mapper(), data, FAST, seed=0, cache_dir=tmp_path))


def test_same_seed_same_model_different_seed_different_model(tmp_path, data):
    a = train(mapper(), data, FAST, seed=3, cache_dir=tmp_path / "a")
    b = train(mapper(), data, FAST, seed=3, cache_dir=tmp_path / "b")
    c = train(mapper(), data, FAST, seed=4, cache_dir=tmp_path / "c")
    assert weights_equal(a, b)
    assert not weights_equal(a, c)


def test_corrupt_cache_file_is_retrained_with_a_warning(tmp_path, data):
    first = train(mapper(), data, FAST, seed=0, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.keras")
    path.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="unreadable"):
        model = train(mapper(), data, FAST, seed=0, cache_dir=tmp_path)
    assert isinstance(model, keras.Model)
    # retrained under the same seed (the same weights as before), and the file rewritten with them:
    # fails if the broken file is left in place or a different model is cached
    assert weights_equal(model, first)
    assert weights_equal(keras.saving.load_model(path, safe_mode=True), model)


def _cache_path(tmp_path, data, seed=0):
    x, y = data
    cfg = TrainingConfig(**FAST).resolved(mapper()).replace(seed=seed)
    return tmp_path / f"mlp-custom-{cache_key(cache_key_data(mapper(), cfg, 'custom', False, x, y))}.keras"


def test_folder_at_the_cache_path_is_one_line_before_training(tmp_path, data, monkeypatch):
    # regression: a folder where the model file belongs trained the model, then died in os.replace
    # with an IsADirectoryError traceback
    import nvmkit.workflow.training as training

    _cache_path(tmp_path, data).mkdir()
    monkeypatch.setattr(training, "_fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match="is a folder, not a model file") as exc:
        train(mapper(), data, FAST, seed=0, cache_dir=tmp_path)
    assert "\n" not in str(exc.value)


def test_cached_model_refused_by_safe_mode_is_called_unsafe(tmp_path, data):
    # regression: a cached model with Python code in it (a Lambda layer), which Keras's safe mode
    # refuses, was reported as "unreadable (ValueError)" like a truncated file
    path = _cache_path(tmp_path, data)
    inp = keras.Input((28, 28))
    unsafe = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Flatten()(inp)))
    unsafe.save(path)
    with pytest.warns(UserWarning, match="refused by Keras's safe mode as unsafe") as rec:
        model = train(mapper(), data, FAST, seed=0, cache_dir=tmp_path)
    assert not any("unreadable" in str(w.message) for w in rec)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    # replaced by the trained model: the file now loads in safe mode with the same weights
    assert weights_equal(keras.saving.load_model(path, safe_mode=True), model)


@pytest.mark.parametrize("version, ok", [("3.10.0", False), ("3.11.0", False), ("3.11.3", True),
                                         ("3.15.1", True), ("4.0.0.dev2026", True), ("bogus", False)])
def test_keras_with_a_safe_mode_bypass_is_refused(version, ok, monkeypatch, tmp_path):
    import nvmkit.workflow.training as training

    if ok:
        training.check_keras_version(version)
        return
    with pytest.raises(ConfigError, match=r"keras>=3\.11\.3"):
        training.check_keras_version(version)
    # loading a cached model checks the running Keras first, before it opens the file
    monkeypatch.setattr(keras, "__version__", version)
    with pytest.raises(ConfigError, match="safe mode"):
        training._load(tmp_path / "absent.keras", None)


def test_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NVMKIT_CACHE_DIR")
    assert default_cache_dir() == __import__("pathlib").Path("~/.cache/nvmkit/models").expanduser()


def test_noise_site_stats_of_a_dense_layer_by_hand():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.GaussianNoise(0.1),
                              keras.layers.Activation("relu"), keras.layers.Dense(2),
                              keras.layers.Activation("softmax")])
    kernel = np.array([[0.5, -2.0, 0.1]] * 4, np.float32)
    model.layers[0].set_weights([kernel, np.array([0.0, 0.3, 0.0], np.float32)])
    x = np.full((10, 4), 0.5, np.float32)
    (site,) = noise_site_stats(model, x)  # the readout (no ReLU) is not a noise site
    assert site.fan_in == 4
    assert math.isclose(site.weight_range, 4.0)  # 2 max|W|
    assert math.isclose(site.gamma_act, 0.5, rel_tol=1e-6)
    assert math.isclose(site.sigma_neu(0.025), 0.025 * 4.0 * 2.0 * 0.5)


def test_noise_site_stats_of_the_rnn_match_a_direct_recurrence():
    m = mapper("rnn")
    model = m.build((28, 28), 10, seed=0)
    x = m.prepare(np.random.default_rng(1).random((20, 28, 28), dtype=np.float32))
    (site,) = noise_site_stats(model, x)
    cell = model.layers[0].cell
    k, r, b = (np.asarray(v, np.float64) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
    h, rows = np.zeros((20, 8)), []
    for t in range(7):
        rows.append(np.concatenate([x[:, t], h], axis=1))
        h = np.maximum(x[:, t] @ k + h @ r + b, 0)
    rows = np.concatenate(rows)
    assert site.fan_in == 112 + 8
    assert math.isclose(site.gamma_act, float(np.sqrt(np.mean(rows ** 2))), rel_tol=1e-5)
    assert math.isclose(site.weight_range, 2 * max(np.abs(k).max(), np.abs(r).max(), np.abs(b).max()), rel_tol=1e-6)


def test_sigma_syn_target_derives_sigma_neu_from_the_plain_model(tmp_path, data):
    m = mapper("mlp", hidden=[16, 8])
    plain = train(m, data, FAST, seed=0, cache_dir=tmp_path)
    noisy = train(m, data, {**FAST, "sigma_syn_target": 0.05}, seed=0, cache_dir=tmp_path)
    import nvmkit.workflow.training as training

    stats = noise_site_stats(plain, training._gamma_subset(m, data[0], 0))
    got = [layer.stddev for layer in noisy.layers if isinstance(layer, keras.layers.GaussianNoise)]
    assert len(got) == 2
    np.testing.assert_allclose(got, [s.sigma_neu(0.05) for s in stats], rtol=1e-6)
    assert all(g > 0 for g in got)
    assert len(list(tmp_path.glob("*.keras"))) == 2  # the plain pass was reused, not retrained


def test_bad_training_data_is_refused(tmp_path):
    x = np.zeros((4, 28, 28), np.float32)
    with pytest.raises(ConfigError, match="one label per image"):
        train(mapper(), (x, np.zeros(3, int)), FAST, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="integers"):
        train(mapper(), (x, np.zeros(4)), FAST, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="Dataset"):
        train(mapper(), x, FAST, cache_dir=tmp_path)
