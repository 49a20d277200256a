"""In-place training as a training method (issue 22, point 3): configuration, cache key, the
refusal of a device without an update model, and ``train`` / ``fine_tune`` through it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nvmkit import ConfigError, CrossbarConfig, RunConfig, get_registry
from nvmkit.workflow.config import TrainingConfig
from nvmkit.workflow.training import cache_key, cache_key_data, fine_tune, train

sys.path.insert(0, str(Path(__file__).parent))
from test_in_place import LinearDevice, NoUpdate  # noqa: E402


def test_method_spec_reads_into_the_fields_and_fills_defaults():
    """``in-place:steps=20,lr=0.05,pulses=stochastic`` sets the fields; defaults are filled;
    in-place settings with another method are refused. Catches: a spec key read into the wrong
    field, settings silently ignored."""
    cfg = TrainingConfig(method="in-place:steps=20,lr=0.05,pulses=stochastic,slots=4")
    assert (cfg.method, cfg.in_place_steps, cfg.in_place_learning_rate, cfg.pulses, cfg.pulse_slots) \
        == ("in-place", 20, 0.05, "stochastic", 4)
    full = cfg.with_method()
    assert full.in_place_start == "plain" and full.headroom == 1.0 and full.in_place_epochs is None
    assert TrainingConfig(method="in-place").with_method().in_place_epochs == 1
    assert TrainingConfig(method="in-place").with_method().pulses == "deterministic"
    for bad, words in (({"method": "plain", "pulses": "stochastic"}, "belongs to in-place"),
                       ({"method": "in-place:pulses=random"}, "pulses must be one of"),
                       ({"method": "in-place:steps=2,epochs=1"}, "steps or epochs"),
                       ({"method": "in-place:headroom=0.5"}, "headroom must be >= 1"),
                       ({"method": "in-place", "sigma_neu": 0.1}, "without pre-activation")):
        with pytest.raises(ConfigError, match=words) as err:
            TrainingConfig.from_dict(bad)
        assert "\n" not in str(err.value)


def test_cache_key_holds_the_deployment_and_the_in_place_settings():
    """An in-place model's key changes with its settings; a plain model's key has none of them.
    Catches: an in-place model loaded for other settings, plain keys changed by the new fields."""
    mapper = get_registry().create("network", "mlp", {"hidden": [16]})
    x, y = np.zeros((4, 28, 28), np.float32), np.arange(4)
    plain = cache_key_data(mapper, TrainingConfig().resolved(mapper), "mnist", True, x, y)
    assert not {"method", "pulses", "in_place_steps", "headroom"} & set(plain["training"])
    keys = {cache_key(cache_key_data(mapper, TrainingConfig(method=m).resolved(mapper), "mnist", True,
                                     x, y))
            for m in ("in-place:steps=5", "in-place:steps=6", "in-place:steps=5,pulses=stochastic")}
    assert len(keys) == 3


def test_a_run_refuses_a_device_without_an_update_model_before_any_work():
    from nvmkit.workflow.pipeline import resolve

    device = get_registry().create("device", "synaptic", {})
    if device.pulse_updatable:
        pytest.skip("the synaptic device now states an update model")
    cfg = RunConfig.from_dict({"device": "synaptic", "training": {"method": "in-place:steps=2"}})
    with pytest.raises(ConfigError, match="states no update model") as err:
        resolve(cfg)
    assert "\n" not in str(err.value)


def test_train_fine_tunes_the_plain_model_in_place_and_caches_it(tmp_path):
    """``train`` with method in-place: the plain model (trained first, cached) fine-tuned by
    pulses for the given steps; the result differs from the plain model, is cached under its own
    key and loads from there; a device without an update model is refused in one line.
    Catches: the plain model returned untrained, the in-place model cached under the plain key."""
    mapper = get_registry().create("network", "mlp", {"hidden": [16]})
    rng = np.random.default_rng(0)
    data = (rng.random((256, 28, 28), dtype=np.float32), rng.integers(0, 10, 256))
    base = {"epochs": 1, "batch_size": 64}
    plain = train(mapper, data, base, seed=0, cache_dir=tmp_path)
    cfg = {**base, "method": "in-place:steps=3,lr=0.5"}
    dev, xb = LinearDevice(step=1e-3), CrossbarConfig.preset("ideal")
    tuned = train(mapper, data, cfg, seed=0, cache_dir=tmp_path, device=dev, crossbar=xb)
    w_plain, w_tuned = plain.layers[0].kernel.numpy(), tuned.layers[0].kernel.numpy()
    assert np.abs(w_plain - w_tuned).max() > 1e-3
    assert len(list(tmp_path.glob("*.keras"))) == 2
    again = train(mapper, data, cfg, seed=0, cache_dir=tmp_path, device=dev, crossbar=xb)
    np.testing.assert_array_equal(again.layers[0].kernel.numpy(), w_tuned)
    with pytest.raises(ConfigError, match="states no update model"):
        train(mapper, data, {**cfg, "method": "in-place:steps=4"}, seed=0, cache_dir=tmp_path,
              device=NoUpdate(), crossbar=xb)


def test_fine_tune_of_a_model_file_runs_in_place():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, activation="softmax")])
    w0 = model.layers[0].kernel.numpy().copy()
    rng = np.random.default_rng(1)
    history = fine_tune(model, rng.random((64, 10)).astype(np.float32), rng.integers(0, 3, 64),
                        {"method": "in-place:epochs=1,lr=0.5", "batch_size": 16}, seed=0,
                        device=LinearDevice(step=1e-3), crossbar=CrossbarConfig.preset("ideal"))
    assert len(history["in_place_loss"]) == 1
    assert np.abs(model.layers[0].kernel.numpy() - w0).max() > 1e-3


class _WithTestDevice:
    """The plugin registry with the tests' linear device under the name ``linear-test``."""

    def __init__(self):
        self.reg = get_registry()

    def create(self, kind, name, params=None):
        if kind == "device" and name == "linear-test":
            return LinearDevice(**(params or {}))
        return self.reg.create(kind, name, params)

    def __getattr__(self, name):
        return getattr(self.reg, name)


def test_a_run_trains_in_place_and_records_the_method(tmp_path, monkeypatch):
    """``nvmkit run``'s pipeline with ``training.method = "in-place:steps=3,lr=0.1"``: the plain
    model trained first, then 3 pulse updates on the run's device; the result records the method
    with its settings. Catches: the method lost between the configuration and the training
    (planted: the pipeline's fine_tune / train calls without the device)."""
    from nvmkit.workflow.pipeline import run

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = RunConfig.from_dict({"network": "mlp:hidden=16", "device": "linear-test:step=0.001",
                               "training": {"epochs": 1, "method": "in-place:steps=3,lr=0.1"},
                               "trials": 2, "noise": "none", "energy": "none",
                               "scenarios": ["internal"]})
    result = run(cfg, reg=_WithTestDevice())
    training = result.config["training"]
    assert (training["method"], training["in_place_steps"], training["in_place_learning_rate"],
            training["pulses"]) == ("in-place", 3, 0.1, "deterministic")
    assert result.timing["train_epochs"] == 2  # one plain epoch, one (partial) in-place pass
    assert len(list((tmp_path / "cache").glob("*.keras"))) == 2
    assert 0.0 < result.accuracy["internal"]["mean"] <= 1.0


def test_measured_pulse_counts_price_a_training_step():
    """``pulses_per_cell()`` names the layers as the converted model's footprint does, so the
    crossbar estimator prices a training step with the counts measured in place; its update
    energy is the counted pulses times the device's pulse energy. Catches: counts keyed by
    another name (the estimator refuses them), counts per core instead of per cell and step."""
    import keras

    from nvmkit import analog_footprint
    from nvmkit.engine.in_place import InPlaceTraining

    reg = get_registry()
    device = reg.create("device", "ecram", {})
    estimator = reg.create("energy", "crossbar", {})
    if not device.pulse_updatable or not hasattr(estimator, "estimate_training_step"):
        pytest.skip("ecram's update model or the training-step energy is not here")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(0)
    tr = InPlaceTraining(model, device, CrossbarConfig(), learning_rate=0.1)
    tr.fit(rng.random((64, 10)).astype(np.float32), rng.integers(0, 3, 64), steps=4, batch_size=16)
    per_cell = tr.pulses_per_cell()
    fired = sum(r["pulses"] for r in tr.pulses_fired())
    assert fired > 0
    report = estimator.estimate_training_step(analog_footprint(tr.model), device,
                                              pulses_per_cell=per_cell, batch_size=16,
                                              pulses="deterministic")
    pulses = sum(t.count for t in report.terms if t.component == "update_pulses")
    np.testing.assert_allclose(pulses, fired / 4, rtol=1e-6)  # per step
