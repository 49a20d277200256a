"""The trained chip is what a run evaluates after in-place training (issue 22, point 3; the option
B of the seed, on-chip fine-tuning): the conductances the training left are every trial's
programmed state, read noise and test-set noise still fresh per trial, and the cache keeps them.

Each test names the bug it catches; each planted version was run once and failed (the branch's
report lists them)."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from nvmkit import CrossbarConfig, RunConfig, convert
from nvmkit.engine.convert import analog_layers
from nvmkit.engine.evaluate import monte_carlo

sys.path.insert(0, str(Path(__file__).parent))
from test_in_place import LinearDevice, _cnn, _mlp, _rnn  # noqa: E402
from test_in_place_workflow import _WithTestDevice  # noqa: E402

tf = pytest.importorskip("tensorflow")


def _data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 10)).astype(np.float32), rng.integers(0, 3, n)


def _trained(device, steps=4, crossbar=None):
    """An MLP trained in place for a few steps; its weights read back into the model."""
    from nvmkit.engine.in_place import InPlaceTraining

    model = _mlp()
    x, y = _data()
    tr = InPlaceTraining(model, device, crossbar or CrossbarConfig(), seed=3, learning_rate=0.2,
                         calibration_data=x[:64])
    tr.fit(x, y, steps=steps, batch_size=32)
    tr.copy_back()
    return model, tr, x, y


def _programmed_weights(net) -> list[np.ndarray]:
    """Each core's programmed weights (K, rows, cols) as the read sees them: user + delta."""
    out = []
    for layer in analog_layers(net):
        for core, w, b in layer.core_weights():
            user = np.vstack([w, b[None]]) if core.bias_row else w
            out.append(user[None] + core.delta.numpy())
    return out


def test_every_trial_reads_the_trained_conductances_not_a_fresh_programming():
    """After ``TrainedChip.program`` (through an ``.npz`` round trip) every trial's programmed
    weights are those the trained conductances hold (to float32 rounding), while a fresh
    programming of the same weights (what a run did before: ``convert`` + ``reprogram``) is off by
    the device's programming error. The chip keeps its ADC offsets (drawn once for the training).
    Catches: the learned weights programmed afresh on each trial's chip (planted: the pipeline
    without ``chip.program`` / ``keep_programming``, or ``monte_carlo`` reprogramming despite
    ``keep_programming``); a chip saved without its cells (npz keys lost)."""
    from nvmkit.engine.in_place import TrainedChip

    xbar = CrossbarConfig.from_dict({"converters": {"adc_bits": 8, "adc_offset": 0.5}})
    model, tr, x, y = _trained(LinearDevice(step=1e-3, prog=0.1), crossbar=xbar)
    chip = TrainedChip.from_bytes(tr.trained_chip().to_bytes())
    net = convert(model, tr.device, xbar, trials=3, seed=11, calibration_data=x[:64])
    fresh = _programmed_weights(net)
    chip.program(net)
    monte_carlo(net, x, y, trials=3, seed=5, keep_programming=True)  # must not reprogram
    for got, old, want in zip(_programmed_weights(net), fresh, tr.weights()):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=0, atol=1e-6 * scale)
        assert np.abs(old - want[None]).max() > 0.05 * scale  # a fresh chip is another chip
    offsets = [c.core.stored_chip().adc_offset for c in tr._cells.values()]
    for layer, want in zip(analog_layers(net), offsets):
        got = layer.cores[0].stored_chip().adc_offset
        np.testing.assert_array_equal(got, np.broadcast_to(want, got.shape))
    with pytest.raises(Exception, match="other device or crossbar settings"):
        chip.program(convert(model, tr.device, CrossbarConfig(), trials=2, seed=0))


@pytest.mark.parametrize("build, shape", [(_cnn, (6, 6, 1)), (_rnn, (4, 5))], ids=["conv", "rnn"])
def test_the_trained_chip_programs_conv_and_recurrent_layers(build, shape):
    """``program`` finds every core of a convolution and a recurrent layer ([W; U; b] in one
    crossbar) in the converted model's order: each trial holds the trained weights. Catches: the
    cores matched out of order or a layer kind skipped (its fresh programming left in place)."""
    from nvmkit.engine.in_place import InPlaceTraining

    model = build()
    rng = np.random.default_rng(0)
    x, y = rng.random((32, *shape)).astype(np.float32), rng.integers(0, 3, 32)
    tr = InPlaceTraining(model, LinearDevice(step=1e-3, prog=0.1), CrossbarConfig(), seed=3,
                         learning_rate=0.2, calibration_data=x)
    tr.fit(x, y, steps=2, batch_size=16)
    tr.copy_back()
    net = convert(model, tr.device, CrossbarConfig(), trials=2, seed=11, calibration_data=x)
    fresh = _programmed_weights(net)
    tr.trained_chip().program(net)
    for got, old, want in zip(_programmed_weights(net), fresh, tr.weights()):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=0, atol=1e-6 * scale)
        assert np.abs(old - want[None]).max() > 0.05 * scale


def test_read_noise_stays_fresh_per_trial_and_reruns_the_same():
    """With the trained chip held, trials differ by their read noise alone: on a device with read
    noise the trials' outputs differ (and one call reruns to the same outputs from the same seed);
    on a noiseless device all trials give the same outputs. Catches: the chip loaded without its
    read noise (planted: ``program`` through an ideal crossbar, the read spread zeroed); the
    read-noise streams not reseeded with ``keep_programming`` (a second call differs)."""
    for read, noisy in ((0.03, True), (0.0, False)):
        model, tr, x, y = _trained(LinearDevice(step=1e-3, prog=0.1, read=read))
        net = convert(model, tr.device, CrossbarConfig(), trials=4, seed=0, calibration_data=x[:64])
        tr.trained_chip().program(net)
        a = monte_carlo(net, x, y, trials=4, seed=2, keep_programming=True)
        b = monte_carlo(net, x, y, trials=4, seed=2, keep_programming=True)
        assert a.per_trial == b.per_trial
        from nvmkit.engine.convert import reseed_reads

        reseed_reads(net, 2)
        out = keras.ops.convert_to_numpy(net(np.repeat(x[:32], 4, axis=0))).reshape(32, 4, -1)
        spread = np.abs(out - out[:, :1]).max()
        if noisy:
            assert spread > 1e-3
        else:
            assert spread == 0.0
            assert len(set(a.per_trial)) == 1


def _run_config(tmp_path, device, **extra):
    return RunConfig.from_dict({
        "network": "mlp:hidden=16", "device": device, "seed": 1,
        "dataset": {"name": "mnist", "source": "sample", "test_size": 300},
        "training": {"epochs": 1, "method": "in-place:steps=3,lr=0.1"},
        "trials": 3, "noise": "gaussian:0.2", "energy": "none",
        "scenarios": ["digital", "internal", "both"], **extra})


def test_a_run_scores_the_trained_chip_and_says_so(tmp_path, monkeypatch):
    """``nvmkit run`` with in-place training on a device with a large programming error and no
    read noise: every internal trial reads the trained chip, which holds exactly the learned
    weights, so each trial's accuracy is the digital accuracy of those weights (no converters in
    the default crossbar), and the result says what it evaluated. Fresh programming (the old
    behaviour) gives trials that differ from it. Catches: the pipeline deploying the read-back
    weights on fresh chips (planted: ``chip.program`` skipped and ``keep_programming=False``); the
    record missing."""
    from nvmkit.workflow.pipeline import run

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    result = run(_run_config(tmp_path, "linear-test:step=0.001,prog=0.3"), reg=_WithTestDevice())
    digital = result.accuracy["digital"]["mean"]
    internal = result.accuracy["internal"]
    assert internal["per_trial"] == [digital] * 3
    for scenario, redraw in (("internal", ["read noise"]), ("both", ["read noise", "test-set noise"])):
        evaluated = result.accuracy[scenario]["evaluated"]
        assert evaluated["programmed_state"] == "trained chip" and evaluated["trials_redraw"] == redraw
    assert len(set(result.accuracy["both"]["per_trial"])) > 1  # test-set noise fresh per trial
    assert "evaluated" not in result.accuracy["digital"]


def test_the_recorded_configuration_reruns_to_the_same_trials_from_the_cache(tmp_path, monkeypatch):
    """A run's recorded configuration, run again, loads the in-place model and its trained chip
    from the cache (no training) and gives the same per-trial accuracies; trained again
    (``use_cache = false``) it gives them too (the training is seeded). Read noise on, so the
    trials differ. Catches: the cache keeping only the weights read back (planted: the chip not
    saved: the rerun trains again; the chip not attached on a cache hit: the run stops); the
    rerun evaluating anything but the trained chip."""
    from nvmkit.workflow.pipeline import run

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    reg = _WithTestDevice()
    first = run(_run_config(tmp_path, "linear-test:step=0.001,prog=0.1,read=0.05"), reg=reg)
    assert len(set(first.accuracy["internal"]["per_trial"])) > 1  # read noise fresh per trial
    assert len(list((tmp_path / "cache").glob("*.chip.npz"))) == 1
    again = run(RunConfig.from_dict(first.config), reg=reg)
    assert again.timing["train_epochs"] == 0  # from the cache
    fresh = run(RunConfig.from_dict({**first.config, "training": {**first.config["training"],
                                                                 "use_cache": False}}), reg=reg)
    assert fresh.timing["train_epochs"] > 0
    for other in (again, fresh):
        for s in ("internal", "both"):
            assert other.accuracy[s]["per_trial"] == first.accuracy[s]["per_trial"]


def test_a_cached_model_without_its_chip_is_trained_again(tmp_path):
    """A cached in-place model whose chip file is missing (an older cache) is trained again with a
    warning, and the chip written. Catches: the model loaded with no chip (the run would stop, or
    evaluate something else)."""
    from nvmkit import get_registry
    from nvmkit.core.errors import NvmkitWarning
    from nvmkit.workflow.training import chip_path, train, trained_chip

    mapper = get_registry().create("network", "mlp", {"hidden": [8]})
    rng = np.random.default_rng(0)
    data = (rng.random((64, 28, 28), dtype=np.float32), rng.integers(0, 10, 64))
    cfg = {"epochs": 1, "batch_size": 32, "method": "in-place:steps=2,lr=0.1"}
    dev, xb = LinearDevice(step=1e-3), CrossbarConfig.preset("ideal")
    model = train(mapper, data, cfg, seed=0, cache_dir=tmp_path, device=dev, crossbar=xb)
    assert trained_chip(model) is not None
    (chip_file,) = tmp_path.glob("*.chip.npz")
    assert chip_path(chip_file.with_suffix("").with_suffix(".keras")) == chip_file
    chip_file.unlink()
    with pytest.warns(NvmkitWarning, match="no trained chip"):
        again = train(mapper, data, cfg, seed=0, cache_dir=tmp_path, device=dev, crossbar=xb)
    assert trained_chip(again) is not None and chip_file.is_file()
