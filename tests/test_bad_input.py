"""Mistakes a user makes at the command line, found by an adversarial audit of the CLI: each is
refused in one line that names the fix, before any work, or no longer misleads.

Each test names, in its docstring, the bug it catches. Nothing here trains a network."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nvmkit.core.errors import DataError


def invoke(*args):
    from nvmkit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(res, needle):
    text = res.output.strip()
    assert res.exit_code == 2, res.output
    assert needle in text and "Traceback" not in text and len(text.splitlines()) == 1, text


# -- seeds -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--seed", 2**32], ["--set", f"seed={2**32}"],
                                  ["--set", f"training.seed={2**40}"]])
def test_a_seed_keras_cannot_take_is_refused_before_any_work(args):
    """Bug: a seed of 2**32 or more passed validation (and --dry-run), then stopped the run after
    loading the data with keras.utils.set_random_seed's traceback ("Seed must be between 0 and
    2**32 - 1")."""
    _one_line_error(invoke("run", *args, "--dry-run"), "must be an integer in 0..4294967295")


def test_the_largest_seed_keras_takes_is_accepted():
    """Bug the bound would bring: an off-by-one refusing 2**32 - 1, a seed Keras takes."""
    res = invoke("run", "--seed", 2**32 - 1, "--dry-run")
    assert res.exit_code == 0, res.output
    assert f"seed = {2**32 - 1}" in res.output


# -- data files ----------------------------------------------------------------------------------------
def test_nan_in_float_data_is_named_without_a_warning_or_a_useless_fix(tmp_path):
    """Bug: float inputs holding NaN under scaling "auto" printed numpy's 'All-NaN slice' warning
    above the error, called the values 'span nan..nan' and proposed scaling = "none", which then
    refused the same file for its NaN."""
    path = tmp_path / "nan.npz"
    x = np.full((10, 4), np.nan, dtype=np.float32)
    np.savez(path, x_train=x, y_train=np.arange(10) % 2, x_test=np.zeros((5, 4), np.float32),
             y_test=np.arange(5) % 2)
    from nvmkit.workflow.data import load_data_file

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would now fail the test
        with pytest.raises(DataError) as err:
            load_data_file(path)
    assert "x_train holds NaN or infinite values" in str(err.value)
    assert "scaling" not in str(err.value)


def test_float_data_outside_the_unit_range_is_still_refused_with_its_span(tmp_path):
    """Bug the NaN check could bring: finite floats outside [0, 1] let through under "auto"."""
    path = tmp_path / "big.npz"
    np.savez(path, x_train=np.full((4, 3), 2.0, np.float32), y_train=np.arange(4) % 2,
             x_test=np.zeros((2, 3), np.float32), y_test=np.arange(2))
    from nvmkit.workflow.data import load_data_file

    with pytest.raises(DataError, match=r"values span 2\.\.2, outside \[0, 1\]"):
        load_data_file(path)


# -- a recorded result runs again on the same data -----------------------------------------------------
@pytest.mark.parametrize("sample,source", [(True, "sample"), (False, "full")])
def test_rerunning_an_auto_source_result_uses_the_kind_of_data_it_ran_on(tmp_path, sample, source):
    """Bug: a result recorded dataset.source = "auto", so `nvmkit run result.json` on a machine with
    the full data in NVMKIT_DATA_DIR (or Keras's cache) evaluated a sample run on the full test
    set (or the reverse): other images, other accuracies, from a 'recorded configuration'."""
    from nvmkit.workflow.config import RunConfig

    path = tmp_path / "result.json"
    path.write_text(json.dumps({
        "config": {"dataset": {"name": "mnist", "data_dir": None, "source": "auto"}, "trials": 2, "seed": 3},
        "seed": 3, "accuracy": {}, "dataset": {"name": "mnist", "sample": sample}}))
    cfg = RunConfig.from_file(path)
    assert cfg.dataset.source == source and cfg.seed == 3 and cfg.trials == 2


# -- plot ----------------------------------------------------------------------------------------------
def test_plot_with_an_x_key_no_row_holds_is_an_error_and_makes_no_folder(tmp_path, monkeypatch):
    """Bug: `plot --x device.params.sigma` (a typo of sigma_syn) skipped the accuracy figure without
    a word and wrote the others; with --kind accuracy it blamed the rows for lacking test-set noise."""
    from nvmkit.sweeps.resultsdb import ResultsDB
    from nvmkit.sweeps.experiment import parse_experiment
    from nvmkit.sweeps.sweep import run_sweep

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    grid = ('[experiment]\nname = "t"\n[base]\ntrials = 2\ndataset.source = "sample"\n'
            '[grid]\n"device.params.sigma_syn" = [0.01, 0.05]\n')
    db = tmp_path / "r.db"
    with ResultsDB(db) as rdb:
        run_sweep(parse_experiment(grid, "exp.toml").points(), rdb, workers=1, runner="sweep_fake:run")
    out = tmp_path / "plots"
    for kind in ("all", "accuracy"):
        res = invoke("plot", "--db", db, "--out", out, "--kind", kind, "--x", "device.params.sigma")
        _one_line_error(res, "--x device.params.sigma: no row has a number at that configuration key")
        assert "device.params.sigma_syn" in res.output  # the key that does vary is named
    assert not out.exists()
    res = invoke("plot", "--db", db, "--out", out, "--kind", "accuracy", "--x", "device.params.sigma_syn")
    assert res.exit_code == 0, res.output
    assert sorted(p.suffix for p in out.iterdir()) == [".png", ".svg"]


# -- devices show ------------------------------------------------------------------------------------
def test_devices_show_param_without_equals_is_refused(tmp_path):
    """Bug: `devices show sonos -p 64` (key forgotten) was read as the device's first parameter
    and failed with 'levels must be an integer >= 2, got ...' for `-p foo`, or silently set levels
    for `-p 64`."""
    for bad in ("64", "=64"):
        _one_line_error(invoke("devices", "show", "sonos", "-p", bad), "write key=value")
    res = invoke("devices", "show", "sonos", "-p", "levels=64", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["levels"] == 64, res.output


# -- unknown plugins -----------------------------------------------------------------------------------
def test_an_unknown_energy_estimator_lists_the_known_ones_in_words():
    """Bug: the list of known estimators was headed 'known energys'."""
    _one_line_error(invoke("energy", "--estimator", "nope"), "known energy estimators: crossbar")


# -- executor options ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["sweep", "reproduce"])
@pytest.mark.parametrize("args,needle", [
    (["--scheduler", "tcp://127.0.0.1:9"], "add --executor dask, or drop --scheduler"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--workers", "4"], "drop --workers"),
])
def test_an_option_of_the_other_executor_is_refused(tmp_path, command, args, needle):
    """Bug: `sweep --scheduler ADDR` without --executor dask ran every point on this machine, and
    `--executor dask --workers 4` ignored the 4, both without a word."""
    exp = tmp_path / "exp.toml"
    exp.write_text('[base]\ntrials = 2\ndataset.source = "sample"\n[grid]\nseed = [1, 2]\n')
    first = [command, exp, "--db", tmp_path / "r.db"] if command == "sweep" else \
        [command, "--quick", "--out", tmp_path / "out"]
    _one_line_error(invoke(*first, *args, "--dry-run"), needle)
    assert list(tmp_path.iterdir()) == [exp]


def test_a_result_whose_two_seeds_were_edited_apart_is_refused(tmp_path):
    """Bug: editing a result's top-level "seed" (the one seen first) reran it under config.seed,
    the other one, without a word."""
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"config": {"seed": 0, "trials": 2}, "seed": 7, "accuracy": {},
                                "dataset": {"name": "mnist", "sample": True}}))
    _one_line_error(invoke("run", path, "--dry-run"), "seed (7) and config.seed (0) differ")
    path.write_text(json.dumps({"config": {"seed": 7, "trials": 2}, "seed": 7, "accuracy": {},
                                "dataset": {"name": "mnist", "sample": True}}))
    res = invoke("run", path, "--dry-run")
    assert res.exit_code == 0 and "seed = 7" in res.output, res.output


# -- reproduce's report folder -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["report.md", "results.md", "summary.json"])
def test_reproduce_refuses_a_folder_holding_a_users_report_file(tmp_path, monkeypatch, name):
    """Bug: `nvmkit reproduce --out docs` ran every point, then replaced docs/results.md (or any
    report.md, summary.json of the user's) with its own."""
    from nvmkit.sweeps.sweep import RUNNER_ENV

    monkeypatch.setenv(RUNNER_ENV, "sweep_fake:run")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    out = tmp_path / "docs"
    out.mkdir()
    mine = out / name
    mine.write_text("# my notes\n")
    res = invoke("reproduce", "--quick", "--out", out, "--workers", 1)
    _one_line_error(res, f"{mine} exists and is not a report nvmkit wrote")
    assert mine.read_text() == "# my notes\n" and sorted(p.name for p in out.iterdir()) == [name]


def test_a_report_nvmkit_wrote_is_recognised_as_its_own(tmp_path):
    """Bug the refusal could bring: a rerun into the same --out refused its own earlier report."""
    from nvmkit.reproduction.reproduce import check_report_files, write_report

    files, _ = write_report([], tmp_path, {})
    assert {"report.md", "results.md", "summary.json"} <= {p.name for p in files}
    check_report_files(tmp_path)  # raises ConfigError if any of them is taken for a user's file


# -- results filters -----------------------------------------------------------------------------------
def test_a_filter_on_a_configuration_key_no_row_holds_is_an_error(tmp_path, monkeypatch):
    """Bug: `results --filter training.epoch=2` (for training.epochs) printed an empty table, as if
    no such run had been made, and `plot` blamed the filters' values."""
    from nvmkit.sweeps.resultsdb import ResultsDB
    from nvmkit.sweeps.experiment import parse_experiment
    from nvmkit.sweeps.sweep import run_sweep

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    grid = '[base]\ntrials = 2\ndataset.source = "sample"\ntraining.epochs = 2\n[grid]\nseed = [1, 2]\n'
    db = tmp_path / "r.db"
    with ResultsDB(db) as rdb:
        run_sweep(parse_experiment(grid, "exp.toml").points(), rdb, workers=1, runner="sweep_fake:run")
    for command in (["results"], ["results", "--csv"], ["plot", "--out", tmp_path / "plots"]):
        _one_line_error(invoke(*command, "--db", db, "--filter", "training.epoch=2"),
                        "no row's configuration has the key training.epoch; did you mean training.epochs")
    res = invoke("results", "--db", db, "--csv", "--filter", "training.epochs=2")
    assert res.exit_code == 0 and len(res.output.splitlines()) == 3, res.output  # header + 2 rows
    # an absent key compared with none is a real question (rows without it): still answered
    res = invoke("results", "--db", db, "--csv", "--filter", "training.nothing=none")
    assert res.exit_code == 0 and len(res.output.splitlines()) == 3, res.output
    # a key recorded as null (training.seed: the run's seed applies) exists: no error, no match
    res = invoke("results", "--db", db, "--csv", "--filter", "training.seed=1")
    assert res.exit_code == 0 and len(res.output.splitlines()) == 1, res.output


# -- a user's model ------------------------------------------------------------------------------------
def test_a_model_named_with_a_space_or_brackets_runs(tmp_path):
    """Bug: a model saved as keras.Sequential(..., name="my model [v2]") loaded, then `nvmkit run
    --model` stopped with TensorFlow's traceback "'my model [v2]' is not a valid root scope name"
    at its first prediction (deployed as it is, or trained further)."""
    import keras

    from nvmkit.workflow.user_model import load_model_file

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="my model [v2]")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load_model_file(path)
    assert loaded.name == "my_model__v2_"
    x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model(x).numpy(), rtol=1e-6)


# -- Rich markup in the user's names -------------------------------------------------------------------
def test_a_study_named_with_markup_reproduces(tmp_path, monkeypatch):
    """Bug: a study .toml named "my [/] study" stopped `nvmkit reproduce` with rich's MarkupError
    traceback (its progress bar read the name as markup), after the database was created."""
    from importlib import resources

    from nvmkit.sweeps.sweep import RUNNER_ENV

    monkeypatch.setenv(RUNNER_ENV, "sweep_fake:run")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    text = resources.files("nvmkit.reproduction.studies").joinpath("seed-quick.toml").read_text()
    study = tmp_path / "study.toml"
    study.write_text(text.replace('name = "seed-quick"', 'name = "my [/] study [bold]"', 1))
    res = invoke("reproduce", "--study", study, "--section", "result1", "--out", tmp_path / "out",
                 "--workers", 1)
    assert res.exit_code == 0, res.output
    assert "reproduce my [/] study [bold]" in res.output


def test_progress_steps_show_names_as_text(tmp_path):
    """Bug: a run's progress steps (e.g. 'training NAME', NAME from the user's model) were rich
    markup: '[/]' raised MarkupError, '[bold]' vanished."""
    from rich.console import Console

    from nvmkit.workflow.report import RichReporter

    console = Console(file=open(tmp_path / "out.txt", "w"), width=200, force_terminal=False)
    with RichReporter(console) as reporter:
        with reporter.step("loading [/] model [bold]"):
            pass
        reporter.start_task("training net[red] (1 epochs)", 1)(1)
    console.file.close()
    text = (tmp_path / "out.txt").read_text()
    assert "loading [/] model [bold]" in text and "training net[red] (1 epochs)" in text


# -- two options for one key ---------------------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--network", "rnn:time_steps=7", "-T", "4"],
     "--time-steps 4 and --network rnn:time_steps=7 give network.params.time_steps two values"),
    (["--seed", "3", "--set", "seed=4"], "--set seed=4 and --seed give seed two values"),
    (["--set", "trials=3", "--set", "trials=4"], "--set trials=4 and --set trials=3 give trials two values"),
    (["--device", "reram:levels=8", "--set", "device.params.levels=16"],
     "--set device.params.levels=16 and --device reram:levels=8 give device.params.levels two values"),
])
def test_two_options_giving_one_key_two_values_are_refused(args, needle):
    """Bug: `run --network rnn:time_steps=7 -T 4` ran T = 4 (and --seed 3 --set seed=4 ran seed 4):
    whichever option was applied last won without a word."""
    _one_line_error(invoke("run", *args, "--dry-run"), needle)


def test_two_options_giving_one_key_the_same_value_are_accepted():
    """Bug the refusal could bring: a repeated, agreeing option refused."""
    res = invoke("run", "--network", "rnn:time_steps=7", "-T", "7", "--seed", "3", "--set", "seed=3", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "time_steps = 7" in res.output and "\nseed = 3\n" in res.output


# -- files from other editors and mixed-up paths -------------------------------------------------------
def test_a_configuration_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Bug: a TOML file saved by a Windows editor (UTF-8 with BOM) was refused as 'not valid TOML
    (Invalid statement at line 1, column 1)', a syntax error the user cannot see."""
    cfg = tmp_path / "run.toml"
    cfg.write_bytes("\ufefftrials = 2\n".encode("utf-8"))
    res = invoke("run", cfg, "--dry-run")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("trials = 2\n"), res.output


def test_a_data_file_given_as_data_dir_is_named_as_a_file(tmp_path):
    """Bug: `--data-dir mnist.npz` said 'data directory mnist.npz does not exist' of a file that
    exists."""
    from nvmkit.workflow.data import load_dataset

    path = tmp_path / "mnist.npz"
    path.write_bytes(b"PK")
    with pytest.raises(DataError, match=r"mnist\.npz is a file; pass the folder that holds it"):
        load_dataset("mnist", path)


# -- SIGTERM -------------------------------------------------------------------------------------------
def test_sigterm_stops_an_in_process_sweep_like_ctrl_c(tmp_path):
    """Bug: SIGTERM stopped a pool sweep like Ctrl-C (exit 130, resume hint), but a --workers 1 sweep
    died on the spot (killed by the signal, no hint, its -wal/-shm files left beside the database).
    The test stands in its own SIGTERM handler for Python's default, so that without the fix the
    signal is a failing point the sweep carries on past, not the death of pytest."""
    import signal

    from nvmkit.sweeps.experiment import parse_experiment
    from nvmkit.sweeps.resultsdb import ResultsDB
    from nvmkit.sweeps.sweep import run_sweep

    class Died(Exception):
        pass

    def die(signum, frame):
        raise Died

    ran = []

    def runner(config):
        ran.append(config["seed"])
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not stop the point")

    points = parse_experiment('[base]\ntrials = 2\n[grid]\nseed = [1, 2, 3]\n', "exp.toml").points()
    before = signal.signal(signal.SIGTERM, die)
    try:
        with ResultsDB(tmp_path / "r.db") as db, pytest.raises(KeyboardInterrupt):
            run_sweep(points, db, workers=1, runner=runner)
        assert signal.getsignal(signal.SIGTERM) is die  # the handler before the sweep is back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert len(ran) == 1  # stopped at the first point, not carried on


@pytest.mark.parametrize("command", [["run", "--dry-run"], ["sweep", "EXP", "--workers", "1"],
                                     ["reproduce", "--study", "seed-quick", "--section", "result1", "--out", "OUT"]])
def test_a_missing_data_dir_is_refused_before_any_point(tmp_path, monkeypatch, command):
    """Bug: `sweep --data-dir /typo` created the database and failed every point on the missing
    folder one by one ('10 of 10 points failed'); `run --dry-run` and `reproduce` said nothing."""
    from nvmkit.sweeps.sweep import RUNNER_ENV

    monkeypatch.setenv(RUNNER_ENV, "no_such_module:run")  # a point that ran would fail otherwise
    exp = tmp_path / "exp.toml"
    exp.write_text('[base]\ntrials = 2\n[grid]\nseed = [1, 2]\n')
    args = [str(exp) if a == "EXP" else str(tmp_path / "out") if a == "OUT" else a for a in command]
    _one_line_error(invoke(*args, "--db", tmp_path / "r.db", "--data-dir", tmp_path / "typo")
                    if command[0] != "run" else invoke(*args, "--data-dir", tmp_path / "typo"),
                    f"data directory {tmp_path / 'typo'} does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


def test_a_set_of_a_key_the_grid_varies_is_refused(tmp_path):
    """Bug: `sweep exp.toml --set seed=9` over [grid] seed = [1, 2] ran seeds 1 and 2 (the grid's
    value wins over a [base] override) without a word; `reproduce --set training.sigma_neu=0.2`
    was ignored in the sections that vary it."""
    exp = tmp_path / "exp.toml"
    exp.write_text('[base]\ntrials = 2\n[grid]\nseed = [1, 2]\n[[points]]\n"network.name" = "mlp"\n')
    db = tmp_path / "r.db"
    _one_line_error(invoke("sweep", exp, "--db", db, "--dry-run", "--set", "seed=9"),
                    f"--set seed=9: {exp} sets seed in [grid], which wins over a [base] override")
    _one_line_error(invoke("sweep", exp, "--db", db, "--dry-run", "--set", "network.name=cnn"),
                    "sets network.name in [[points]]")
    _one_line_error(invoke("reproduce", "--quick", "--dry-run", "--set", "training.sigma_neu=0.2"),
                    "sets training.sigma_neu in [grid]")
    res = invoke("sweep", exp, "--db", db, "--dry-run", "--set", "trials=3")  # a key no point sets
    assert res.exit_code == 0, res.output


# -- memory ------------------------------------------------------------------------------------------
def test_trials_beyond_the_machines_memory_are_one_line_and_no_result(tmp_path):
    """Bug: --trials 10**9 passed validation, trained the network, then died of memory (or swapped)
    making a billion programmed copies. Now one line (after the bundled network's training: convert
    refuses before any copy is made) and no result file."""
    out = tmp_path / "r.json"
    res = invoke("run", "--trials", 10**9, "--epochs", 1, "--no-cache", "-o", out)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "use fewer trials" in errors[0], res.output  # after the progress lines
    assert not out.exists()
