"""The pipeline's scenarios evaluate the crossbars they name: a tiny real run (one epoch of a
784-32-10 MLP on the embedded sample, about a second of training)."""

from __future__ import annotations

import math

import pytest

from nvmkit.workflow import pipeline


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("NVMKIT_CACHE_DIR", str(tmp_path_factory.mktemp("models")))
    try:
        yield pipeline.run({
            "seed": 0, "trials": 3, "scenarios": ["digital", "internal", "external", "both"],
            "dataset": {"name": "mnist", "source": "sample"},
            "network": {"name": "mlp", "params": {"hidden": [32]}},
            "training": {"epochs": 1},
            "device": {"name": "synaptic", "params": {"sigma_syn": 0.2}},  # a very noisy device
            "noise": "gaussian:0.1", "energy": None,
        })
    finally:
        mp.undo()


def test_internal_scenario_runs_on_the_configured_device(noisy_run):
    """Fails if `internal` (or `both`) is evaluated on an ideal crossbar: then internal would equal
    the digital accuracy up to float32 rounding, with no spread across trials, and `both` would
    equal `external` trial by trial (same test-set noise streams, no device noise)."""
    acc = noisy_run.accuracy
    n = noisy_run.dataset["n_test"]
    digital, internal = acc["digital"]["mean"], acc["internal"]
    # one trial's accuracy is a binomial fraction of n test images: std <= sqrt(0.25 / n) (0.016 for
    # n = 1000); a device noise of 20% of the weight range costs far more than 5 of those
    assert digital - internal["mean"] > 5 * math.sqrt(0.25 / n), acc
    assert len(set(internal["per_trial"])) > 1  # each trial programs its own copy
    assert acc["both"]["per_trial"] != acc["external"]["per_trial"]
    assert acc["both"]["mean"] < acc["external"]["mean"] - 5 * math.sqrt(0.25 / n)


def test_training_seed_in_the_configuration_seeds_the_training(tmp_path, monkeypatch):
    """A recorded configuration re-runs as it is: `training.seed = 3` in a run of seed 7 trains the
    model seed 3 trains. Fails if the run's seed silently wins over training.seed (the result would
    record training.seed 3 for a model trained from seed 7): the first two runs would then train
    two different models into two cache files."""
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path))
    base = {"trials": 1, "scenarios": ["digital"], "dataset": {"name": "mnist", "source": "sample"},
            "network": {"name": "mlp", "params": {"hidden": [16]}}, "energy": None}

    def digital(seed, training_seed=None):
        training = {"epochs": 1, **({"seed": training_seed} if training_seed is not None else {})}
        return pipeline.run({**base, "seed": seed, "training": training}).accuracy["digital"]["mean"]

    by_training_seed = digital(7, training_seed=3)
    assert digital(3) == by_training_seed
    assert len(list(tmp_path.glob("*.keras"))) == 1  # the second run loaded the first one's model
    digital(7)  # the run's own seed, when training.seed is not given: another model
    assert len(list(tmp_path.glob("*.keras"))) == 2
