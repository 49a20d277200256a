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
