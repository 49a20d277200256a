"""Sweeps: experiment files, the results database, resume after SIGKILL, results/plot CLI, Dask."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import signal
import statistics
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from nvmkit.core.errors import ConfigError
from nvmkit.sweeps.experiment import load_experiment, parse_experiment, point_key
from nvmkit.sweeps.plots import pareto_front, plot_all
from nvmkit.sweeps.resultsdb import ResultsDB
from nvmkit.sweeps.sweep import RUNNER_ENV, run_sweep

TESTS = Path(__file__).parent
FAKE = "sweep_fake:run"

GRID = """
[experiment]
name = "t"
[base]
trials = 3
dataset.source = "sample"
[grid]
"network.name" = ["mlp", "rnn"]
noise = ["gaussian:0.1", "gaussian:0.3", "speckle:0.2"]
"training.sigma_neu" = [0.0, 0.1]
"""


def _app() -> typer.Typer:
    from nvmkit.cli import app

    return app


def _write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _fake_rows(tmp_path: Path, text: str = GRID) -> tuple[Path, list]:
    points = parse_experiment(text, "exp.toml").points()
    db_path = tmp_path / "fake.db"
    with ResultsDB(db_path) as db:
        summary = run_sweep(points, db, workers=1, runner=FAKE, experiment="t")
    assert summary.inserted == len(points) and not summary.failed
    return db_path, points


# -- experiment expansion ----------------------------------------------------------------------------
def test_grid_expands_to_the_product_and_shares_models_across_test_time_keys():
    points = parse_experiment(GRID, "exp.toml").points()
    assert len(points) == 2 * 3 * 2
    assert len({p.key for p in points}) == 12
    # test-set noise does not change the trained model; network and sigma_neu do
    assert len({p.model_key for p in points}) == 4
    p = points[0]
    assert p.assignments == {"network.name": "mlp", "noise": "gaussian:0.1", "training.sigma_neu": 0.0}
    assert p.config["network"]["name"] == "mlp" and p.config["trials"] == 3
    assert p.resolved["noise"] == {"name": "gaussian", "params": p.resolved["noise"]["params"]}
    assert p.resolved["training"]["epochs"] >= 1  # the network's default, filled in


def test_points_cross_the_grid_and_nested_tables_equal_dotted_keys():
    text = """
    [base]
    dataset.source = "sample"
    [[points]]
    network = {name = "rnn", params = {time_steps = 7}}
    [[points]]
    "network.name" = "mlp"
    [grid]
    device.params.sigma_syn = [0.0, 0.05]
    """
    points = parse_experiment(textwrap.dedent(text), "exp.toml").points()
    assert len(points) == 4
    assert points[0].resolved["network"]["params"]["time_steps"] == 7
    assert [p.resolved["device"]["params"]["sigma_syn"] for p in points] == [0.0, 0.05, 0.0, 0.05]
    assert points[0].resolved["device"]["name"] == "synaptic"  # the base's default device keeps its name


def test_point_key_ignores_output_cache_flag_and_data_location_but_not_seed():
    points = parse_experiment(GRID, "exp.toml").points()
    r = points[0].resolved
    moved = json.loads(json.dumps(r))
    moved["training"]["use_cache"] = False
    moved["output"] = "x.json"
    assert point_key(moved) == point_key(r)
    reseeded = json.loads(json.dumps(r))
    reseeded["seed"] = 1
    assert point_key(reseeded) != point_key(r)


def test_duplicate_points_collapse_to_one():
    text = """
    [base]
    dataset.source = "sample"
    [grid]
    noise = ["none", "gaussian:0.1"]
    trials = [5, 5]
    """
    assert len(parse_experiment(textwrap.dedent(text), "exp.toml").points()) == 2


@pytest.mark.parametrize("text, expected", [
    ('[grid]\n"training.epoch" = [1, 2]\n', ["[grid]", "training.epoch", "did you mean 'training.epochs'"]),
    ("[grid]\ntraining.epoch = [1]\n", ["[grid]", "training.epoch", "training.epochs"]),
    ("[base]\ntrails = 3\n", ["[base]", "trails", "valid keys"]),
    ("[bse]\ntrials = 3\n", ["[bse]", "did you mean 'base'"]),
    ("[grid]\ntrials = 3\n", ["[grid]", "trials", "write trials = [3]"]),
    ('[grid]\n"device.params.sigma_syn" = [0.0, -0.1]\n', ["[grid] device.params.sigma_syn = -0.1", ">= 0"]),
    ('[grid]\n"device.params.sigmaa" = [0.1]\n', ["device.params.sigmaa", "valid parameters", "sigma_syn"]),
    ('[grid]\n"network.name" = ["mlp", "lstm"]\n', ["network.name = lstm", "known networks"]),
    ('[grid]\n"noise.level" = [0.1]\n', ["noise.level", "valid keys under noise: name, params"]),
    ('[grid]\n"device.name" = ["synaptic", "reram"]\n"device.params.sigma_syn" = [0.1]\n',
     ["point 2 of 2", "device.name=reram", "'reram' has no parameter 'sigma_syn'"]),
    ('[base]\noutput = "x.json"\n', ["output"]),
])
def test_bad_experiments_name_file_key_and_fix(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_experiment(path).points()
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    for part in expected:
        assert part in msg, (part, msg)


def test_invalid_experiment_stops_the_cli_before_anything_runs(tmp_path, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv(RUNNER_ENV, FAKE)
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(log))
    path = _write(tmp_path, GRID + '"device.params.sigma_syn" = [0.0, -1.0]\n')
    res = CliRunner().invoke(_app(), ["sweep", str(path), "--db", str(tmp_path / "r.db"), "--workers", "1"])
    assert res.exit_code == 2
    assert "sigma_syn = -1.0" in res.output and str(path) in res.output
    assert not log.exists()  # not one point ran


# -- database and resume ----------------------------------------------------------------------------
def test_db_rows_are_unique_per_key_and_filterable(tmp_path):
    db_path, points = _fake_rows(tmp_path)
    with ResultsDB(db_path) as db:
        assert db.count() == 12
        row = db.rows()[0]
        assert not db.insert(row["key"], {"config": row["config"], "accuracy": row["accuracy"]})
        assert db.count() == 12
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert len(db.rows(["network=rnn"])) == 6
        assert len(db.rows(["network=rnn", "noise_level>0.25"])) == 2
        assert len(db.rows(["noise=speckle", "training.sigma_neu=0.1"])) == 2
        assert len(db.rows(["sigma_neu=none"])) == 0  # resolved: 0.0 was given explicitly
        assert {r["noise_level"] for r in db.rows(["noise=gaussian"])} == {0.1, 0.3}
        r = db.rows(["network=mlp", "noise=gaussian", "noise_level=0.1", "sigma_neu=0"])[0]
        assert r["acc_both_mean"] == pytest.approx(r["accuracy"]["both"]["mean"])
        assert r["energy_total_j"] == pytest.approx(4.2e-9) and r["sample"] is True
        with pytest.raises(ConfigError, match="unknown filter key 'netwrk'"):
            db.rows(["netwrk=rnn"])
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            db.rows(["network"])


def test_sweep_killed_with_sigkill_resumes_with_exactly_one_row_per_point(tmp_path, monkeypatch):
    exp_path = _write(tmp_path, GRID)
    points = load_experiment(exp_path).points()
    n = len(points)
    (tmp_path / "points.pkl").write_bytes(pickle.dumps(points))
    db_path, log = tmp_path / "r.db", tmp_path / "runs.log"
    env = dict(os.environ, SWEEP_FAKE_LOG=str(log), SWEEP_FAKE_SLEEP="0.5",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    script = ("import pickle, sys; from nvmkit.sweeps.resultsdb import ResultsDB; from nvmkit.sweeps.sweep import run_sweep; "
              "run_sweep(pickle.load(open(sys.argv[1], 'rb')), ResultsDB(sys.argv[2]), workers=1, "
              f"runner={FAKE!r})")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "points.pkl"), str(db_path)], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if db_path.exists():
                with sqlite3.connect(db_path, timeout=5) as conn:
                    try:
                        if conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] >= n // 2:
                            break
                    except sqlite3.OperationalError:  # table not created yet
                        pass
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with ResultsDB(db_path) as db:
        killed_at = db.count()
    assert n // 2 <= killed_at < n

    monkeypatch.setenv(RUNNER_ENV, FAKE)
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(log))
    res = CliRunner().invoke(_app(), ["sweep", str(exp_path), "--db", str(db_path), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert f"{killed_at} already in" in res.output
    with ResultsDB(db_path) as db:
        keys = [r["key"] for r in db.rows()]
    assert sorted(keys) == sorted(p.key for p in points)  # every point once, none twice
    started = log.read_text().split()
    # each point ran once, except at most the one in flight when the sweep was killed
    assert n <= len(started) <= n + 1


def test_a_failing_point_is_reported_and_the_others_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNNER_ENV, FAKE)
    monkeypatch.setenv("SWEEP_FAKE_FAIL", "speckle")
    path = _write(tmp_path, GRID)
    db_path = tmp_path / "r.db"
    res = CliRunner().invoke(_app(), ["sweep", str(path), "--db", str(db_path), "--workers", "1"])
    assert res.exit_code == 1
    assert "4 of 12 points failed" in res.output and "fake failure on speckle:0.2" in res.output
    with ResultsDB(db_path) as db:
        assert db.count() == 8 and not db.rows(["noise=speckle"])
    monkeypatch.delenv("SWEEP_FAKE_FAIL")
    res = CliRunner().invoke(_app(), ["sweep", str(path), "--db", str(db_path), "--workers", "1"])
    assert res.exit_code == 0 and "8 already in" in res.output and "4 rows written" in res.output


# -- results and plots ------------------------------------------------------------------------------
def test_results_cli_prints_table_csv_and_json(tmp_path):
    db_path, points = _fake_rows(tmp_path)
    runner = CliRunner()
    table = runner.invoke(_app(), ["results", "--db", str(db_path), "--filter", "network=rnn"])
    assert table.exit_code == 0, table.output
    assert "6 rows" in table.output and "network=rnn" in table.output  # constant column -> caption
    out = runner.invoke(_app(), ["results", "--db", str(db_path), "--csv"])
    recs = list(csv.DictReader(io.StringIO(out.output)))
    assert len(recs) == 12 and {"key", "network", "noise_level", "acc_both_mean", "energy_total_j"} <= set(recs[0])
    assert {r["network"] for r in recs} == {"mlp", "rnn"}
    js = json.loads(runner.invoke(_app(), ["results", "--db", str(db_path), "--json", "--filter", "noise=speckle"]).output)
    assert len(js) == 4 and all(r["config"]["noise"]["name"] == "speckle" for r in js)
    bad = runner.invoke(_app(), ["results", "--db", str(tmp_path / "missing.db")])
    assert bad.exit_code == 2 and "no results database" in bad.output


def test_results_table_shows_a_swept_plugin_parameter(tmp_path):
    """The bug: `nvmkit results` showed the device by name only, so the rows of a sweep over a device
    parameter (docs/plugins.md, "Sweeping over a plugin") looked alike but for their accuracies.
    Fails if a row's swept value is missing from its line, or if the noise level (shown in the noise
    column) or the absent noise of a noise-free row is repeated as a setting."""
    db_path, _ = _fake_rows(tmp_path, """
        [experiment]
        name = "d"
        [base]
        trials = 3
        dataset.source = "sample"
        device.name = "synaptic"
        [grid]
        "device.params.sigma_syn" = [0.01, 0.05]
        noise = ["gaussian:0.1", "none"]
        """)
    text = CliRunner().invoke(_app(), ["results", "--db", str(db_path)], env={"COLUMNS": "200"},
                              catch_exceptions=False).output
    lines = [t for t in text.splitlines() if t.startswith("│ ")]
    assert len(lines) == 4, text
    assert sorted(("sigma_syn=0.01" in t, "sigma_syn=0.05" in t) for t in lines) == [(False, True)] * 2 + [(True, False)] * 2, text
    assert "sigma=" not in text and "noise=" not in text, text
    none = CliRunner().invoke(_app(), ["results", "--db", str(db_path), "--filter", "network=rnn"])
    assert none.exit_code == 0 and none.output.splitlines()[0] == f"0 rows in {db_path}", none.output
    # a sweep that varies only what the columns show gets no settings column
    (tmp_path / "plain").mkdir()
    plain, _ = _fake_rows(tmp_path / "plain")
    assert "settings" not in CliRunner().invoke(_app(), ["results", "--db", str(plain)],
                                                env={"COLUMNS": "200"}).output


def _capture_figures(monkeypatch, *modules) -> dict:
    """Keep every Figure the plot functions save (by file stem), to read back what they drew."""
    figures = {}
    for module in modules:
        save = module._save

        def keep(fig, stem, _save=save):
            figures[stem.name] = fig
            return _save(fig, stem)

        monkeypatch.setattr(module, "_save", keep)
    return figures


def _errorbar_curves(ax) -> list[tuple]:
    """(xs, ys, half error bars) of every errorbar curve on ``ax``, read from the drawn artists."""
    out = []
    for c in ax.containers:
        line, caps, _ = c.lines
        lo, hi = (np.asarray(cap.get_ydata(), float) for cap in caps)
        out.append((tuple(line.get_xdata()), tuple(line.get_ydata()), tuple((hi - lo) / 2)))
    return sorted(out)


def _pooled(rows, scenario) -> tuple[float, float]:
    """100 x (mean, sample std) of the per-trial accuracies the rows hold for ``scenario``."""
    per = [v for r in rows for v in r["accuracy"][scenario]["per_trial"]]
    return 100 * statistics.fmean(per), 100 * (statistics.stdev(per) if len(per) > 1 else 0.0)


def test_plots_draw_exactly_the_database_rows(tmp_path, monkeypatch):
    """The figures are read back point by point and compared with the rows they come from.

    Fails if a plot drops, swaps or mislabels a point, averages the wrong scenario, or draws the
    wrong error bars (std over trials) or bar heights."""
    import nvmkit.sweeps.plots as plots

    db_path, _ = _fake_rows(tmp_path)
    figures = _capture_figures(monkeypatch, plots)
    res = CliRunner().invoke(_app(), ["plot", "--db", str(db_path), "--out", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert files == ["accuracy_mnist__sample_both.png", "accuracy_mnist__sample_both.svg", "energy.png",
                     "energy.svg", "pareto_internal.png", "pareto_internal.svg"]
    for f in (tmp_path / "plots").iterdir():
        assert f.read_bytes().startswith(b"\x89PNG") if f.suffix == ".png" else b"<svg" in f.read_bytes()[:2000]
    with ResultsDB(db_path) as db:
        rows = db.rows()
        assert plot_all(db.rows(["noise=none"]), tmp_path / "none", ["accuracy"]) == []

    # accuracy under test-set noise: a panel per noise, a curve per (network, training), points per level
    panels = {ax.get_title(): ax for ax in figures["accuracy_mnist__sample_both"].axes if ax.containers}
    assert set(panels) == {"gaussian noise", "speckle noise"}
    for noise, ax in ((n, panels[f"{n} noise"]) for n in ("gaussian", "speckle")):
        expected = []
        for net in ("mlp", "rnn"):
            for sigma in (0.0, 0.1):
                mine = [r for r in rows if (r["noise"], r["network"], r["sigma_neu"]) == (noise, net, sigma)]
                levels = sorted({r["noise_level"] for r in mine})
                cells = [_pooled([r for r in mine if r["noise_level"] == lv], "both") for lv in levels]
                expected.append((tuple(levels), tuple(m for m, _ in cells), tuple(s for _, s in cells)))
        got = _errorbar_curves(ax)
        assert len(got) == len(expected) == 4
        for g, e in zip(got, sorted(expected)):
            np.testing.assert_allclose(np.array(g, float), np.array(e, float), rtol=1e-9, err_msg=noise)

    # energy: one bar per network (one device), its height the rows' energy
    ax = figures["energy"].axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    heights = {ticks[round(p.get_x() + p.get_width() / 2)]: p.get_height() for p in ax.patches}
    assert heights == {net: pytest.approx(statistics.fmean(r["energy_total_j"] for r in rows if r["network"] == net))
                       for net in ("mlp", "rnn")}

    # Pareto: one point per (network, training), internal accuracy pooled over the noise rows
    ax = figures["pareto_internal"].axes[0]
    drawn = sorted(tuple(c.get_offsets()[0]) for c in ax.collections if not c.get_label().startswith("_"))
    points = []
    for net in ("mlp", "rnn"):
        for sigma in (0.0, 0.1):
            mine = [r for r in rows if (r["network"], r["sigma_neu"]) == (net, sigma)]
            points.append((statistics.fmean(r["energy_total_j"] for r in mine), _pooled(mine, "internal")[0]))
    np.testing.assert_allclose(drawn, sorted(points), rtol=1e-9)
    front = sorted(p for p in points if not any(q[0] <= p[0] and q[1] > p[1] for q in points))
    (step,) = [line for line in ax.get_lines() if line.get_label() == "Pareto front"]
    np.testing.assert_allclose(np.column_stack([step.get_xdata(), step.get_ydata()]), front, rtol=1e-9)


def test_pareto_front_keeps_only_undominated_points():
    energy = [1.0, 2.0, 3.0, 4.0, 0.5, 2.0]
    acc = [0.90, 0.85, 0.95, 0.94, 0.80, 0.97]
    assert pareto_front(energy, acc) == [4, 0, 5]


# -- Dask and the real pipeline -------------------------------------------------------------------------
TINY = """
[base]
trials = 2
seed = 3
dataset.source = "sample"
network.params.hidden = [32]
training.epochs = 1
[grid]
noise = ["gaussian:0.2", "speckle:0.5"]
"""


@pytest.fixture(scope="module")
def tiny_sequential(tmp_path_factory):
    """The real pipeline, tiny, run point after point in this process: it trains the model into a
    model cache that the worker processes of the tests below load (their env inherits the path)."""
    cache = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NVMKIT_CACHE_DIR", str(cache))
        mp.delenv(RUNNER_ENV, raising=False)
        points = parse_experiment(TINY, "tiny.toml").points()
        with ResultsDB(tmp_path_factory.mktemp("seq") / "local.db") as db:
            summary = run_sweep(points, db, workers=1)
            assert not summary.failed, summary.failed[0].error
            rows = db.rows()
    return points, rows, cache


def _outcomes(rows) -> dict:
    return {x["key"]: (x["accuracy"], x["energy"]) for x in rows}


def test_local_pool_reproduces_the_sequential_rows(tiny_sequential, tmp_path, monkeypatch):
    """Two spawned worker processes load the cached model and must reproduce every Monte Carlo
    accuracy of the sequential run exactly. Fails if a result lands under another point's key, if
    the configuration changes on its way to the worker, or if any draw depends on the process
    (hash randomisation, a global generator) rather than on the point's seed."""
    points, rows, cache = tiny_sequential
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(cache))
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    with ResultsDB(tmp_path / "pool.db") as db:
        summary = run_sweep(points, db, workers=2)
        assert summary.inserted == len(points) == 2 and not summary.failed, summary.failed
        assert _outcomes(db.rows()) == _outcomes(rows)


def test_dask_cluster_gives_the_same_rows_as_the_local_executor(tiny_sequential, tmp_path, monkeypatch):
    """Two Dask worker processes load the cached model and must reproduce every Monte Carlo
    accuracy of the same seed exactly."""
    distributed = pytest.importorskip("distributed")
    points, local_rows, cache = tiny_sequential
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(cache))  # inherited by the workers
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    r = local_rows[0]
    assert r["sample"] is True and r["dataset"] == "mnist" and r["trials"] == 2 and r["seed"] == 3
    # the default device (synaptic) is unitless: its energy is kept in "energy", not as joules
    assert r["energy"]["total_J"] > 0 and r["energy"]["physical"] is False and r["energy_total_j"] is None
    assert r["noise"] == "gaussian" and r["noise_level"] == 0.2
    assert len(r["accuracy"]["both"]["per_trial"]) == 2 and 0.3 < r["acc_internal_mean"] <= 1
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=True) as cluster:
        with ResultsDB(tmp_path / "dask.db") as db:
            summary = run_sweep(points, db, executor="dask", scheduler=cluster.scheduler_address)
            assert summary.inserted == len(points) and not summary.failed, summary.failed
            dask_rows = _outcomes(db.rows())
            # resumable alike: a second run finds every point done
            assert run_sweep(points, db, executor="dask", scheduler=cluster.scheduler_address).ran == 0
    assert dask_rows == _outcomes(local_rows)


def test_dask_without_a_reachable_scheduler_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr("nvmkit.sweeps.sweep.DASK_CONNECT_TIMEOUT", "1s")
    points = parse_experiment(GRID, "exp.toml").points()[:1]
    with ResultsDB(tmp_path / "r.db") as db:
        with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
            run_sweep(points, db, executor="dask", scheduler="tcp://127.0.0.1:9", runner=FAKE)
        with pytest.raises(ConfigError, match="needs --scheduler"):
            run_sweep(points, db, executor="dask", runner=FAKE)


def test_unitless_energy_is_not_stored_or_shown_as_joules(tmp_path):
    """Fails if a result whose energy is ``physical: false`` (the unitless ``synaptic`` device) lands
    in energy_total_j: `results --csv` then printed it as joules and the energy and Pareto plots
    drew it beside real devices. Also covers rows stored before the fix (read back as None)."""
    from nvmkit.sweeps.plots import plot_energy, plot_pareto

    db_path, _ = _fake_rows(tmp_path)
    with ResultsDB(db_path) as db:
        base = db.rows()[0]
        unitless = {"estimator": "fake", "total_J": 7.0, "by_component_J": {"vmm": 7.0}, "physical": False}
        result = {"config": {**base["config"], "device": {"name": "synaptic"}}, "accuracy": base["accuracy"],
                  "energy": unitless, "seed": 0}
        assert db.insert("unitless-key", result, experiment="t")
        stored = db.conn.execute("SELECT energy_total_j FROM results WHERE key='unitless-key'").fetchone()[0]
        assert stored is None
        # a row written by an older nvmkit, with the unitless number in the column
        db.conn.execute("UPDATE results SET energy_total_j=7.0 WHERE key='unitless-key'")
        db.conn.commit()
        rows = db.rows()
    (row,) = [r for r in rows if r["key"] == "unitless-key"]
    assert row["energy_total_j"] is None and row["energy"]["total_J"] == 7.0
    res = CliRunner().invoke(_app(), ["results", "--db", str(db_path), "--csv"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.output)))
    (line,) = [t for t in table if t["key"] == "unitless-key"]
    assert line["energy_total_j"] == "" and {t["energy_total_j"] for t in table} - {""}  # the others keep joules
    # the plots skip the row (all other rows are physical): nothing from it in their data
    assert plot_energy([row], tmp_path / "e") == [] and plot_pareto([row], tmp_path / "p") == []
    text = CliRunner().invoke(_app(), ["results", "--db", str(db_path)], catch_exceptions=False).output
    (shown,) = [t for t in text.splitlines() if t.startswith(f"│ {row['id']} ")]
    assert "not physical" in shown and "nJ" not in shown, shown


def test_an_experiment_in_a_subfolder_reads_its_relative_model_data_and_table(tmp_path, monkeypatch):
    """The bug: an experiment's relative paths (model, dataset, a device table named in [grid])
    were read from the working folder, so `nvmkit sweep sub/exp.toml` from the parent failed, or
    read other files of the same names. Fails if any point's file is not the one beside the
    experiment, or is left relative (pool and Dask workers may run in another folder)."""
    import hashlib
    from importlib.resources import files as resource_files

    keras = pytest.importorskip("keras")
    sub = tmp_path / "sub"
    sub.mkdir()
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (20, 6)).astype(np.float32), rng.integers(0, 2, 20)
    np.savez(sub / "vec.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    inp = keras.Input((6,))
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp)).save(sub / "v.keras")
    (sub / "dev.toml").write_text((resource_files("nvmkit_plugins.devices") / "table_sonos_default.toml").read_text())
    (sub / "exp.toml").write_text('[base]\nmodel = "v.keras"\ndataset.file = "vec.npz"\ntrials = 2\n'
                                  '[grid]\ndevice = ["table:file=dev.toml", "reram"]\n')
    monkeypatch.chdir(tmp_path)
    points = load_experiment("sub/exp.toml").points()
    assert len(points) == 2
    def beside(path, name):  # absolute, and the file beside the experiment
        return Path(path).is_absolute() and Path(path).samefile(sub / name)

    for p in points:
        assert beside(p.config["model"]["file"], "v.keras") and beside(p.config["dataset"]["file"], "vec.npz")
        assert p.resolved["model"]["sha256"] == hashlib.sha256((sub / "v.keras").read_bytes()).hexdigest()
    assert beside(points[0].config["device"]["params"]["file"], "dev.toml")
    from nvmkit.cli import app

    res = CliRunner().invoke(app, ["sweep", "sub/exp.toml", "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0 and "2 to run" in res.output, res.output
    # the same files moved to another folder are the same points (identified by content, as the
    # model and data files are); fails if the table's path entered the point key
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("vec.npz", "v.keras", "dev.toml", "exp.toml"):
        (moved / name).write_bytes((sub / name).read_bytes())
    again = load_experiment(moved / "exp.toml").points()
    assert [p.key for p in again] == [p.key for p in points]
