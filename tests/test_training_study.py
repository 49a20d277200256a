"""The training section of the reproduction study (issue 20, points 3 and 4): its plan, the
pre-activation fine-tuning and test-subset settings it needs, the share-won-back arithmetic, the
seed's equivalence test, the table and figure (written atomically) and a recorded point rerun.
Everything on the embedded sample or on hand-made rows; the whole file runs in well under a minute."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.reproduction import seed_study as ss
from nvmkit.reproduction import training_study as tr
from nvmkit.reproduction.reproduce import plan_reproduction
from nvmkit.workflow.config import RunConfig, TrainingConfig, training_identity


# -- the plan ----------------------------------------------------------------------------------------
def _training(plan):
    return [p for s, pts in plan.sections if s.kind == "training" for p in pts]


def test_the_bundled_section_plans_every_method_on_every_deployment():
    """27 points per network and data set: 6 deployments x (plain, sigma_neu 0.1, 0.2, device) and
    the seed's equivalent sigma_neu on each synaptic level, at that level; every fine-tuning for the
    same number of epochs; SONOS read one day after programming. Bugs caught: an equivalence point
    at another level than its deployment's, a method missing on a device, unequal epochs."""
    points = _training(plan_reproduction("seed", sections=["training"]))
    assert len(points) == 162
    seen = {}
    for p in points:
        dep = tr.deployment_of(p.resolved)
        method = tr.method_of(p.resolved, dep)
        seen.setdefault((p.resolved["network"]["name"], p.resolved["dataset"]["name"]), set()).add(
            (dep.label, method))
        t = p.resolved["training"]
        assert t["fine_tune_size"] == (None if method == tr.PLAIN else 10000)  # the same images for all
        if method == tr.DEVICE:
            assert t["device_epochs"] == 1 and t["device_start"] == "plain"
        elif method != tr.PLAIN:
            assert t["preactivation_start"] == "plain" and t["preactivation_epochs"] == 1
        if dep.device == "sonos":
            assert dep.drift_time == 86400
        assert p.resolved["trials"] == 10 and p.resolved["dataset"]["test_size"] == 1000
    assert set(seen) == {(n, d) for n in ss.NETWORKS for d in ss.DATASETS}
    deps = ["σ_syn 2.5%", "σ_syn 5%", "σ_syn 10%", "ReRAM", "SONOS, 1 day", "ECRAM"]
    common = {"plain", "preactivation 0.1", "preactivation 0.2", "device"}
    want = {(d, m) for d in deps for m in common} | {(d, tr.EQUIVALENT) for d in deps[:3]}
    assert all(v == want for v in seen.values())
    # one plain model per network and data set, shared by all six deployments
    plain = [p for p in points if p.resolved["training"]["method"] == "plain"]
    assert len({p.model_key for p in plain}) == 6
    # device-aware models differ per deployment; pre-activation ones do not
    dev = [p for p in points if p.resolved["training"]["method"] == "device"]
    assert len({p.model_key for p in dev}) == 36


def test_preactivation_fine_tuning_settings_validate():
    """The new keys of pre-activation fine-tuning, by TOML and spec; models trained from scratch keep
    their cache keys. Bugs caught: epochs accepted without start = plain (silently ignored), the new
    keys leaking into every existing model's key (every cached model retrained), fine_tune_size
    accepted where nothing is fine-tuned."""
    cfg = TrainingConfig.from_dict({"method": "preactivation:0.1,start=plain,epochs=2"})
    assert (cfg.sigma_neu, cfg.preactivation_start, cfg.preactivation_epochs) == (0.1, "plain", 2)
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg  # the dict/TOML round trip
    assert TrainingConfig(sigma_neu=0.1, preactivation_start="plain").with_method().preactivation_epochs == 1
    for bad, match in (({"sigma_neu": 0.1, "preactivation_epochs": 2}, "preactivation_start"),
                       ({"preactivation_start": "plain"}, "sigma_neu or sigma_syn_target"),
                       ({"method": "device", "preactivation_start": "plain"}, "pre-activation"),
                       ({"sigma_neu": 0.1, "preactivation_start": "init"}, "scratch, plain"),
                       ({"sigma_neu": 0.1, "preactivation_start": "plain", "preactivation_epochs": 0},
                        "preactivation_epochs")):
        with pytest.raises(ConfigError, match=match):
            TrainingConfig.from_dict(bad)
    for bad in ({"fine_tune_size": 100}, {"sigma_neu": 0.1, "fine_tune_size": 100},
                {"method": "device", "fine_tune_size": 0}):
        with pytest.raises(ConfigError, match="fine_tune_size"):
            TrainingConfig.from_dict(bad)
    assert TrainingConfig.from_dict({"method": "device", "fine_tune_size": 100}).fine_tune_size == 100
    from nvmkit.workflow.training import fine_tune_subset

    x, y = np.arange(50).reshape(50, 1), np.arange(50)
    xa, ya = fine_tune_subset(x, y, 20, 0)
    assert np.array_equal(xa[:, 0], ya) and len(set(ya)) == 20 and list(ya) == sorted(ya)
    assert np.array_equal(ya, fine_tune_subset(x, y, 20, 0)[1]) and fine_tune_subset(x, y, None, 0)[0] is x
    # sigma_neu = 0 (a study's base) beside a target: the target decides, under the target's key
    from nvmkit.core.registry import get_registry

    mlp = get_registry().create("network", "mlp")
    both = TrainingConfig(sigma_neu=0.0, sigma_syn_target=0.05).resolved(mlp)
    assert both == TrainingConfig(sigma_syn_target=0.05).resolved(mlp)
    assert "preactivation_start" not in training_identity(TrainingConfig(sigma_neu=0.1).to_dict())
    assert training_identity(TrainingConfig(sigma_neu=0.1).resolved(mlp).to_dict()) == \
        _identity_without_new_keys(TrainingConfig(sigma_neu=0.1).resolved(mlp).to_dict())


def _identity_without_new_keys(table):
    table = {k: v for k, v in table.items() if k not in ("preactivation_start", "preactivation_epochs")}
    return training_identity(table)


def test_test_size_draws_one_fixed_subset_and_keeps_old_keys():
    """dataset.test_size: a subset without repeats, the same for the same seed, refused when larger
    than the test set; a configuration without it keeps its point key. Bugs caught: a subset drawn
    from the global random state (differs between points), the key of every existing result changed."""
    from nvmkit.sweeps.experiment import identity, point_key
    from nvmkit.workflow.data import load_dataset
    from nvmkit.workflow.pipeline import resolve, test_subset

    ds = load_dataset("mnist", source="sample")
    a, b, c = test_subset(ds, 300, 0), test_subset(ds, 300, 0), test_subset(ds, 300, 1)
    assert len(a.x_test) == 300 and np.array_equal(a.x_test, b.x_test) and not np.array_equal(a.x_test, c.x_test)
    idx = [int(np.flatnonzero((ds.x_test == x).all(axis=(1, 2)))[0]) for x in a.x_test]
    assert idx == sorted(set(idx))  # no image twice, kept in the test set's order
    assert np.array_equal(a.y_test, ds.y_test[idx])  # labels follow their images
    assert test_subset(ds, len(ds.x_test), 0) is ds
    with pytest.raises(ConfigError, match="at most 1000"):
        test_subset(ds, 1001, 0)
    with pytest.raises(ConfigError, match="test_size"):
        RunConfig.from_dict({"dataset": {"test_size": 0}})
    plain = resolve(RunConfig.from_dict({"noise": "none"}))
    assert "test_size" not in identity(plain)["dataset"]
    sub = resolve(RunConfig.from_dict({"noise": "none", "dataset": {"test_size": 500}}))
    assert point_key(sub) != point_key(plain)


# -- the arithmetic ----------------------------------------------------------------------------------
def test_share_won_back_arithmetic():
    """(method - plain on device) / (plain clean - plain on device); None when the loss is within the
    noise. Bug caught (planted: the denominator taken as clean - method): every share below."""
    assert tr.share_won_back(0.95, 0.90, 1.00) == pytest.approx(0.5)
    assert tr.share_won_back(1.00, 0.90, 1.00) == pytest.approx(1.0)
    assert tr.share_won_back(0.90, 0.90, 1.00) == 0.0
    assert tr.share_won_back(0.85, 0.90, 0.98) == pytest.approx(-0.625)
    assert tr.share_won_back(0.99, 0.90, 0.96) == pytest.approx(1.5)  # beyond the clean accuracy
    assert tr.share_won_back(0.95, 0.90, 0.905, noise=0.01) is None  # a loss within the noise
    assert tr.share_won_back(0.95, 0.90, 0.90) is None and tr.share_won_back(0.95, 0.91, 0.90) is None


def _row(net, ds, device, method, per_trial, digital, n_test=1000, **training):
    dev = {"name": "synaptic", "params": {"sigma_syn": device}} if isinstance(device, float) else {"name": device}
    t = {"method": method, **training}
    return {"network": net, "dataset": ds, "sample": False, "config": {"device": dev, "training": t, "crossbar": {}},
            "accuracy": {"internal": {"per_trial": per_trial}, "digital": {"per_trial": [digital]}},
            "dataset_info": {"n_test": n_test}, "key": f"{net}{ds}{device}{method}{training}"}


def _rows():
    p = [0.80, 0.82, 0.78, 0.81, 0.79]  # mean 0.80
    return [
        _row("mlp", "mnist", 0.05, "plain", p, 0.90),
        _row("mlp", "mnist", 0.05, "preactivation", [0.85, 0.84, 0.86, 0.85, 0.85], 0.89, sigma_neu=0.1,
             preactivation_start="plain", preactivation_epochs=1),
        _row("mlp", "mnist", 0.05, "preactivation", [0.83, 0.85, 0.84, 0.82, 0.86], 0.89, sigma_syn_target=0.05,
             preactivation_start="plain", preactivation_epochs=1),
        _row("mlp", "mnist", 0.05, "device", [0.88, 0.87, 0.89, 0.88, 0.88], 0.89, device_epochs=1),
        _row("mlp", "mnist", "reram", "plain", [0.8995, 0.9000, 0.9005], 0.90),  # loses nothing
        _row("mlp", "mnist", "reram", "device", [0.9000, 0.9001, 0.8999], 0.90, device_epochs=1),
    ]


def test_cells_shares_summary_and_equivalence_from_rows():
    """Every number recomputed here by hand from the rows: the shares in the table, the summary's
    counts, the equivalence verdict and its Welch interval (against scipy's t quantile)."""
    from scipy import stats

    rows = _rows()
    table = tr.cells(rows)
    assert [(c.deployment.label, c.method) for c in table] == [
        ("σ_syn 5%", "plain"), ("ReRAM", "plain"), ("σ_syn 5%", "preactivation 0.1"),
        ("σ_syn 5%", "equivalent"), ("σ_syn 5%", "device"), ("ReRAM", "device")]
    shares = {(c.deployment.label, c.method): tr.share(table, c) for c in table if c.method != "plain"}
    assert shares[("σ_syn 5%", "preactivation 0.1")] == pytest.approx((0.85 - 0.80) / (0.90 - 0.80))
    assert shares[("σ_syn 5%", "device")] == pytest.approx((0.88 - 0.80) / 0.10)
    assert shares[("ReRAM", "device")] is None  # the loss (0.0000) is within one test image
    text = tr.render_table(table)
    assert "| MNIST | MLP | device-aware | 89.00 to 90.00 | 88.00 ± " in text and "(+80%)" in text and "(n/a)" in text
    hw = stats.t.ppf(0.975, 4) * statistics.stdev([0.80, 0.82, 0.78, 0.81, 0.79]) / math.sqrt(5)
    assert f"80.00 ± {100 * hw:.2f}" in text
    (pre, eq, dev) = tr.summary(table)
    assert (dev.method, dev.cells, dev.best, dev.beats_plain, dev.below_plain) == ("device", 1, 1, 1, 0)
    assert pre.median_share == pytest.approx(0.5) and pre.best == 0
    (e,) = tr.equivalence(table)
    a, b = [0.83, 0.85, 0.84, 0.82, 0.86], [0.88, 0.87, 0.89, 0.88, 0.88]
    va, vb = statistics.variance(a) / 5, statistics.variance(b) / 5
    dof = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    assert e.diff == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert e.half_width == pytest.approx(stats.t.ppf(0.975, math.floor(dof)) * math.sqrt(va + vb))
    assert e.as_well is False  # 4 points below with a CI of about 1.6
    v_reg, v_eq = tr.verdicts(rows)
    assert v_eq.verdict == ss.FAILS and "as well in 0 of 1 cells" in v_eq.evidence
    assert v_reg.verdict == ss.FAILS and "in 0 of 1 cells" in v_reg.evidence
    # a tie within the noise reads "as well"
    close = _rows()
    close[2]["accuracy"]["internal"]["per_trial"] = [0.87, 0.89, 0.88, 0.86, 0.90]
    assert tr.equivalence(tr.cells(close))[0].as_well is True
    assert "**MLP**" in tr.render_equivalence(tr.cells(close))


def test_table_and_figure_are_written_atomically(tmp_path, monkeypatch):
    """The report, its snippet, summary.json and the figure go through atomic_write; the snippet
    carries the training table and the two new verdicts. Bug caught: a figure saved straight to its
    final path (a reader sees half a PNG while it is written)."""
    import nvmkit.core.atomic as atomic
    from nvmkit.reproduction import reproduce as rp
    from nvmkit.reproduction.study import load_study

    written = []
    real = atomic.atomic_write

    def spy(path, content, *a, **k):
        written.append(path.name)
        return real(path, content, *a, **k)

    monkeypatch.setattr(atomic, "atomic_write", spy)
    monkeypatch.setattr(rp, "atomic_write", spy)
    import nvmkit.sweeps.plots as plots

    monkeypatch.setattr(plots, "atomic_write", spy)
    section = load_study("seed-quick").by_kind("training")[0]
    files, verdicts = rp.write_report([(section, _rows())], tmp_path, {})
    assert {"training.png", "training.svg", "report.md", "results.md", "summary.json"} <= set(written)
    assert (tmp_path / "plots" / "training.png").stat().st_size > 1000
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    snippet = (tmp_path / "results.md").read_text()
    assert "## Which training survives which device" in snippet and "### The seed's equivalence, tested" in snippet
    assert [v.claim for v in verdicts[-2:]] == [v.claim for v in tr.verdicts(_rows())]
    summary = json.loads((tmp_path / "summary.json").read_text())
    dev = next(c for c in summary["training"] if c["method"] == "device" and c["sigma_syn"] == 0.05)
    assert dev["share_won_back"] == pytest.approx(0.8) and dev["epochs"] == 1


# -- a real point, rerun from its record -------------------------------------------------------------
def test_a_fine_tuned_point_reruns_from_its_recorded_configuration(tmp_path, monkeypatch):
    """Pre-activation fine-tuning from the plain model on the sample (equivalent sigma_neu of 5%
    synaptic noise, a 300-image test subset): the result records every setting and its recorded
    configuration reruns to the same per-trial accuracies. The fine-tuning starts from the plain
    weights (bug caught, planted: the fine-tuning started from the initialisation)."""
    from nvmkit.workflow.pipeline import run
    from nvmkit.workflow.training import train
    from nvmkit.core.registry import get_registry
    from nvmkit.workflow.data import load_dataset

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = {"network": "mlp:hidden=32", "device": "synaptic:0.05", "noise": "none", "energy": "none",
           "trials": 3, "scenarios": ["digital", "internal"], "dataset": {"source": "sample", "test_size": 300},
           "training": {"epochs": 1, "method": "preactivation", "sigma_syn_target": 0.05,
                        "preactivation_start": "plain"}, "output": str(tmp_path / "r.json")}
    first = run(RunConfig.from_dict(cfg))
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["config"]["training"]["preactivation_epochs"] == 1
    assert record["config"]["dataset"]["test_size"] == 300 and record["dataset"]["n_test"] == 300
    again = run(RunConfig.from_file(tmp_path / "r.json"))
    assert again.accuracy["internal"]["per_trial"] == first.accuracy["internal"]["per_trial"]

    ds = load_dataset("mnist", source="sample")
    mlp = get_registry().create("network", "mlp", {"hidden": [32]})
    plain = train(mlp, ds, {"epochs": 1})
    import keras

    class NoFit:  # the fine-tuning's fit does nothing: what remains is where it started
        history = {}

    seen = []
    monkeypatch.setattr(keras.Model, "fit", lambda self, x, *a, **k: seen.append(len(x)) or NoFit())
    start = train(mlp, ds, {"epochs": 1, "sigma_neu": 0.1, "preactivation_start": "plain", "fine_tune_size": 700})
    assert len(start.layers) > len(plain.layers)  # the noise layers are there
    assert seen == [700]  # fine_tune_size: the fine-tuning saw that many images
    for w0, w1 in zip(plain.get_weights(), start.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w0)


def test_pre_activation_noise_above_one_builds_trains_and_deploys():
    """The seed's equivalence gives sigma_neu above 1 at 10% synaptic noise (1.29 for the MNIST
    CNN's layers in the study), which keras.layers.GaussianNoise refuses. Bug caught (planted:
    relu_block with GaussianNoise at every sigma): the build raises. The layer draws normals of
    its std (200,000 draws: the sample std's relative standard error is 1/sqrt(2N) = 0.16%; 6 of
    them allowed), nothing at inference, survives a save and load, and has no footprint."""
    import keras

    from nvmkit.core.layers import PreActivationNoise
    from nvmkit.core.registry import get_registry
    from nvmkit.engine.convert import analog_footprint, convert

    layer = PreActivationNoise(2.5, seed=3)
    x = np.zeros((4000, 50), "float32")
    drawn = np.asarray(layer(x, training=True), dtype=np.float64)
    n = drawn.size
    assert abs(drawn.std() / 2.5 - 1) < 6 / math.sqrt(2 * n) and abs(drawn.mean()) < 6 * 2.5 / math.sqrt(n)
    assert not np.asarray(layer(x, training=False)).any()
    assert PreActivationNoise.from_config(layer.get_config()).stddev == 2.5
    with pytest.raises(ConfigError, match="stddev"):
        PreActivationNoise(-1.0)
    mlp = get_registry().create("network", "mlp", {"hidden": [16]})
    model = mlp.build((28, 28), 10, [1.7], 0)
    assert [type(la).__name__ for la in model.layers].count("PreActivationNoise") == 1
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(mlp.prepare(np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)), np.arange(64) % 10,
              verbose=0)
    device = get_registry().create("device", "synaptic", {"sigma_syn": 0.05})
    plain = mlp.build((28, 28), 10, 0.0, 0)
    def kinds(m):
        return [(f.kind, f.activations) for f in analog_footprint(convert(m, device, trials=1))]

    assert kinds(model) == kinds(plain)  # the ReLUs still counted on their crossbars
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)).stddev == 2.5
