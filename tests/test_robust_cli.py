"""Inputs that cannot hurt and numbers that do not mislead (issue 10): output paths checked before any
work, nobody's file overwritten, other programs' databases refused and read commands that write
nothing, sweep workers that die with their sweep, --quick on the sample only, empty experiments
refused, time estimates from measured rates only, and no joules printed for unitless devices.

Each test names, in its docstring, the bug it catches. Sweeps run with the fake point runner of
tests/sweep_fake.py (no training)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nvmkit.core.errors import ConfigError
from nvmkit.sweeps.experiment import parse_experiment
from nvmkit.sweeps.resultsdb import APPLICATION_ID, ResultsDB
from nvmkit.sweeps.sweep import RUNNER_ENV, estimate_seconds, measured_rates, run_sweep

TESTS = Path(__file__).parent
FAKE = "sweep_fake:run"
GRID = """
[experiment]
name = "t"
[base]
trials = 3
dataset.source = "sample"
[grid]
noise = ["gaussian:0.1", "gaussian:0.3"]
"""


def _app():
    from nvmkit.cli import app

    return app


def invoke(*args):
    return CliRunner().invoke(_app(), [str(a) for a in args])


def _one_line_error(res, needle):
    text = res.output.strip()
    assert res.exit_code == 2, res.output
    assert needle in text and "Traceback" not in text and len(text.splitlines()) == 1, text


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a folder with its bytes: what a read-only command must leave as it found."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _no_work(monkeypatch):
    """Make any pipeline run fail the test: a refusal must come before the work."""
    from nvmkit.workflow import pipeline

    def run(*args, **kwargs):
        raise AssertionError("the run started although its output could not be written")

    monkeypatch.setattr(pipeline, "run", run)


@pytest.fixture
def unwritable(tmp_path):
    """A folder in which this process cannot create a file. Permission bits stop a normal user;
    root ignores them, but not sysfs, where nobody creates files."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    elif Path("/sys/kernel").is_dir():
        yield Path("/sys")
    else:  # pragma: no cover - root on a system without sysfs
        pytest.skip("running as root without sysfs: no folder here refuses root's writes")


# -- 1. output paths ---------------------------------------------------------------------------------
def test_run_refuses_to_overwrite_its_own_configuration(tmp_path, monkeypatch):
    """Bug: `nvmkit run good.toml -o good.toml` replaced the user's TOML with the result JSON."""
    _no_work(monkeypatch)
    cfg = _write(tmp_path / "good.toml", "trials = 1\n")
    before = cfg.read_bytes()
    _one_line_error(invoke("run", cfg, "-o", cfg), "is the configuration file this run reads")
    _one_line_error(invoke("run", cfg, "-o", cfg, "--dry-run"), "is the configuration file")
    assert cfg.read_bytes() == before


def test_refusing_the_input_as_output_suggests_another_name(tmp_path, monkeypatch):
    """Bug: `nvmkit run result.json -o result.json` was told to use `-o result.json`, the very
    name it had just been refused."""
    _no_work(monkeypatch)
    result = _write(tmp_path / "result.json", json.dumps({"config": {"trials": 1}, "accuracy": {},
                                                          "seed": 0, "dataset": {}}))
    res = invoke("run", result, "-o", result)
    _one_line_error(res, "is the configuration file this run reads")
    assert res.output.strip().endswith(f"e.g. -o {tmp_path / 'result-again.json'}"), res.output
    cfg = _write(tmp_path / "good.toml", "trials = 1\n")
    res = invoke("run", cfg, "-o", cfg)
    assert res.output.strip().endswith(f"e.g. -o {tmp_path / 'good-result.json'}"), res.output


def test_run_refuses_to_overwrite_a_file_that_is_not_an_nvmkit_result(tmp_path, monkeypatch):
    """Bug: any existing file given to -o (notes, another config, a database) was overwritten."""
    _no_work(monkeypatch)
    notes = _write(tmp_path / "notes.txt", "my notes\n")
    _one_line_error(invoke("run", "-o", notes), "exists and is not an nvmkit result")
    assert notes.read_text() == "my notes\n"
    # a result nvmkit wrote may be replaced: rerunning into the same file is the normal case
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"config": {}, "accuracy": {}, "seed": 0, "dataset": {}}))
    from nvmkit.workflow.report import check_output_path

    check_output_path(result)  # no error
    # with --dry-run the output check passes and only the pair is refused (dry-run writes nothing)
    res = invoke("run", "-o", result, "--dry-run")
    assert res.exit_code == 2 and "--dry-run prints the configuration" in res.output, res.output


def test_output_into_a_folder_that_cannot_be_written_fails_before_any_work(tmp_path, monkeypatch, unwritable):
    """Bug: -o into an unwritable folder ran the whole experiment, then died with a traceback."""
    _no_work(monkeypatch)
    _one_line_error(invoke("run", "-o", unwritable / "r.json"), "cannot be written")
    from nvmkit.workflow import pipeline
    from nvmkit.workflow.report import check_output_path

    with pytest.raises(ConfigError, match="cannot be written"):
        check_output_path(unwritable / "r.json")
    monkeypatch.undo()  # the real pipeline.run: it must refuse before loading data or training
    with pytest.raises(ConfigError, match="cannot be written"):
        pipeline.run({"output": str(unwritable / "r.json")})


def test_sweep_plot_and_reproduce_check_their_outputs_before_any_work(tmp_path, monkeypatch, unwritable):
    """Bug: sweep --db, plot --out and reproduce --out in an unwritable folder failed only when
    they wrote (the report after every point had run), or with SQLite's 'unable to open'."""
    log = tmp_path / "runs.log"
    monkeypatch.setenv(RUNNER_ENV, FAKE)
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(log))
    exp = _write(tmp_path / "exp.toml", GRID)
    _one_line_error(invoke("sweep", exp, "--db", unwritable / "r.db", "--workers", "1"), "cannot be written")
    _one_line_error(invoke("sweep", exp, "--db", tmp_path, "--workers", "1"), "is a folder")
    _one_line_error(invoke("reproduce", "--quick", "--section", "result1", "--out", unwritable,
                           "--db", tmp_path / "study.db", "--workers", "1"), "cannot be written")
    assert not log.exists() and not (tmp_path / "study.db").exists()  # not one point ran

    db = tmp_path / "r.db"
    with ResultsDB(db) as rdb:
        run_sweep(parse_experiment(GRID, "exp.toml").points(), rdb, workers=1, runner=FAKE)
    _one_line_error(invoke("plot", "--db", db, "--out", unwritable), "cannot be written")


# -- 2. databases: nvmkit's only, and read commands never write ----------------------------------------
def _other_db(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        conn.execute("INSERT INTO contacts VALUES ('Ada', '555')")
    return path


def test_another_programs_database_is_refused_and_left_untouched(tmp_path, monkeypatch):
    """Bug: `results --db other.db` printed '0 rows', added nvmkit's tables to the file and switched
    it to WAL; a sweep would have written its rows into it."""
    monkeypatch.setenv(RUNNER_ENV, FAKE)
    other = _other_db(tmp_path / "other.db")
    before = _files(tmp_path)
    exp = _write(tmp_path / "exp.toml", GRID)
    before["exp.toml"] = exp.read_bytes()
    for args in (["results", "--db", other], ["results", "--db", other, "--json"],
                 ["plot", "--db", other, "--out", tmp_path / "plots"],
                 ["sweep", exp, "--db", other, "--dry-run"], ["sweep", exp, "--db", other, "--workers", "1"]):
        _one_line_error(invoke(*args), "is not an nvmkit results database (its tables: contacts)")
    assert _files(tmp_path) == before  # no byte changed, no -wal/-shm file, no plot folder
    assert not (tmp_path / "plots").exists()
    with sqlite3.connect(other) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["contacts"]


def test_read_commands_leave_an_nvmkit_database_byte_for_byte_unchanged(tmp_path):
    """Bug: results, plot and sweep --dry-run opened the database for writing (journal switch,
    CREATE TABLE IF NOT EXISTS), so a read changed the file and left -wal/-shm files beside it."""
    exp = _write(tmp_path / "exp.toml", GRID)
    db = tmp_path / "r.db"
    with ResultsDB(db) as rdb:
        run_sweep(parse_experiment(GRID, "exp.toml").points(), rdb, workers=1, runner=FAKE)
        assert rdb.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # readers while it writes
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    before = _files(tmp_path)
    for args in (["results", "--db", db], ["results", "--db", db, "--csv"], ["sweep", exp, "--db", db, "--dry-run"],
                 ["plot", "--db", db, "--out", tmp_path / "plots", "--kind", "energy"]):
        res = invoke(*args)
        assert res.exit_code == 0, res.output
    assert _files(tmp_path) == before
    assert "2 already in" in " ".join(invoke("sweep", exp, "--db", db, "--dry-run").output.split())


def test_an_unmarked_database_of_an_older_nvmkit_is_read_and_upgraded_on_write(tmp_path):
    """Bug the mark must not introduce: refusing the results databases users already have."""
    from nvmkit.sweeps import resultsdb

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the schema before the mark and the timing column
        conn.executescript(resultsdb._SCHEMA.replace(" timing TEXT,", ""))
    with ResultsDB(db, readonly=True) as rdb:
        assert rdb.rows() == [] and rdb.history() == []
    with ResultsDB(db) as rdb:
        assert "timing" in rdb.columns
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_a_sweep_whose_experiment_fails_validation_leaves_no_database(tmp_path, monkeypatch):
    """Bug: the database was created before the points were validated, so a typo left an empty
    results.db behind."""
    monkeypatch.setenv(RUNNER_ENV, FAKE)
    exp = _write(tmp_path / "exp.toml", GRID + '"device.params.sigma_syn" = [-1.0]\n')
    db = tmp_path / "r.db"
    res = invoke("sweep", exp, "--db", db, "--workers", "1")
    assert res.exit_code == 2 and "sigma_syn" in res.output
    assert not db.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


# -- 3. workers die with their sweep -------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused pid of another user
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    return True  # pragma: no cover - no procfs: kill(pid, 0) is all there is


def test_killing_a_sweep_with_sigkill_ends_its_worker_processes(tmp_path):
    """Bug: after `kill -9` of `nvmkit sweep`, its pool workers kept running (3 processes, 1.5 GiB,
    still there 20 s later): the pool's task queue never closes for a worker that holds its write
    end, and a busy worker finishes a point nobody will store. SIGKILL is the hard case: the sweep
    runs no code at all, so only the workers' own watch on their parent can end them (SIGTERM, which
    Python would also obey by dying on the spot, is handled as Ctrl-C; see the next test)."""
    exp = _write(tmp_path / "exp.toml", '[base]\ntrials = 2\ndataset.source = "sample"\n[grid]\nseed = [1, 2, 3, 4]\n')
    pids_file = tmp_path / "pids"
    env = dict(os.environ, **{RUNNER_ENV: FAKE}, SWEEP_FAKE_SLEEP="300", SWEEP_FAKE_PIDS=str(pids_file),
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "nvmkit", "sweep", str(exp), "--db", str(tmp_path / "r.db"),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while len(workers) < 2:  # both workers inside a point (4 seeds: 4 models, no waiting)
            assert time.monotonic() < deadline, "the workers did not start"
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.1)
            if pids_file.exists():
                workers = [int(x) for x in pids_file.read_text().split()]
        assert proc.pid not in workers and len(set(workers)) == 2  # real worker processes
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        # the Linux death signal acts at once; the portable pid poll within PARENT_POLL_S (0.5 s)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "sweep workers outlived the sweep"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in workers:  # never leave a sleeper behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_a_pool_sweep_like_ctrl_c():
    """Bug: SIGTERM killed the sweep on the spot (Python's default), without stopping its workers
    or saying how to resume; now it raises KeyboardInterrupt where the pool waits, which terminates
    the workers and prints the resume hint (exit 130), and the old handler comes back after."""
    from nvmkit.sweeps.sweep import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with _sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this sleep at once
    assert signal.getsignal(signal.SIGTERM) is before


# -- 4. reproduce --quick and empty experiments ------------------------------------------------------
def test_reproduce_quick_refuses_a_data_dir(tmp_path, monkeypatch):
    """Bug: `reproduce --quick --data-dir DIR` ran the quick study on the full data, although the
    help says --quick is always the sample."""
    monkeypatch.setenv(RUNNER_ENV, FAKE)
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(tmp_path / "runs.log"))
    for extra in (["--dry-run"], ["--workers", "1"]):
        _one_line_error(invoke("reproduce", "--quick", "--data-dir", tmp_path, "--out", tmp_path / "r", *extra),
                        "--quick always runs on the embedded sample")
    assert not (tmp_path / "runs.log").exists() and not (tmp_path / "r").exists()
    # the small study on the full data stays possible, by name
    from nvmkit.reproduction.reproduce import plan_reproduction

    plan = plan_reproduction("seed-quick", data_dir=tmp_path, sections=["result1"])
    assert {p.resolved["dataset"]["source"] for p in plan.points} == {"full"}


@pytest.mark.parametrize("text", ["", "# nothing yet\n", '[experiment]\nname = "x"\n'])
def test_an_empty_experiment_is_an_error_not_one_default_point(tmp_path, monkeypatch, text):
    """Bug: an empty experiment file silently ran one point with every default."""
    monkeypatch.setenv(RUNNER_ENV, FAKE)
    with pytest.raises(ConfigError, match=r"no \[base\], \[grid\] or \[\[points\]\]"):
        parse_experiment(text, "exp.toml")
    exp = _write(tmp_path / "exp.toml", text)
    _one_line_error(invoke("sweep", exp, "--db", tmp_path / "r.db", "--workers", "1"), "names no point to run")
    assert not (tmp_path / "r.db").exists()
    # asking for the defaults explicitly is still one point
    assert len(parse_experiment("[base]\n", "exp.toml").points()) == 1


# -- 5. time estimates from measured rates only ------------------------------------------------------
def _timed(network: str, model_key: str, *, train_s: float, epochs: int, n_train: int, evaluate_s: float,
           images: int, wall_s: float) -> dict:
    return {"network": network, "model_key": model_key, "wall_time_s": wall_s,
            "timing": {"train_s": train_s, "train_epochs": epochs, "n_train": n_train,
                       "evaluate_s": evaluate_s, "test_images": images}}


def test_no_estimate_is_printed_before_a_network_was_ever_timed(tmp_path):
    """Bug: on a fresh database the estimate was a made-up guess (~103 min for a 17 min run)."""
    points = parse_experiment(GRID, "exp.toml").points()
    seconds, why = estimate_seconds(points, [], workers=2)
    assert seconds is None and "mlp" in why and "timed" in why
    exp = _write(tmp_path / "exp.toml", GRID)
    out = " ".join(invoke("sweep", exp, "--db", tmp_path / "r.db", "--dry-run").output.split())
    assert "no time estimate" in out and "~" not in out


def test_estimate_is_the_measured_rates_times_the_work_to_do():
    """Bug: estimates scaled a fixed guess per network by fixed factors for the full data instead
    of the rates measured per epoch and image."""
    from nvmkit.workflow.data import load_sample

    points = parse_experiment(GRID, "exp.toml").points()  # one mlp model, two test-set noises
    assert len({p.model_key for p in points}) == 1
    history = [_timed("mlp", "other-model", train_s=12.0, epochs=3, n_train=2000, evaluate_s=0.5, images=2500,
                      wall_s=13.0),
               _timed("mlp", "another", train_s=0.1, epochs=0, n_train=2000, evaluate_s=1.5, images=1500,
                      wall_s=2.0)]
    rates = measured_rates(history)
    assert rates["mlp"]["train"] == pytest.approx(12.0 / (3 * 2000))  # the cached load has no epochs
    assert rates["mlp"]["evaluate"] == pytest.approx(2.0 / 4000)
    # outside training and evaluation: 13 - 12 - 0.5 and 2 - 1.5 (the cached load is overhead)
    assert rates["mlp"]["overhead"] == pytest.approx((0.5 + 0.5) / 2)
    sample = load_sample("mnist")
    n_train, n_test = len(sample.x_train), len(sample.x_test)
    epochs = points[0].resolved["training"]["epochs"]
    # each point: digital once, then 3 trials of internal, external and both
    images = n_test * (1 + 3 * 3)
    per_point = rates["mlp"]["evaluate"] * images + rates["mlp"]["overhead"]
    expected = rates["mlp"]["train"] * epochs * n_train + 2 * per_point
    seconds, basis = estimate_seconds(points, history, workers=1)
    assert seconds == pytest.approx(expected) and "measured" in basis
    assert estimate_seconds(points, history, workers=2)[0] == pytest.approx(expected / 2)
    # once the model is in the database, only evaluation is left
    trained = history + [{"network": "mlp", "model_key": points[0].model_key, "wall_time_s": 1.0, "timing": None}]
    assert estimate_seconds(points, trained, workers=1)[0] == pytest.approx(2 * per_point)
    # a network never timed: no number at all, even when others were
    rnn = parse_experiment(GRID.replace("[grid]", '[grid]\n"network.name" = ["mlp", "rnn"]'), "e").points()
    seconds, why = estimate_seconds(rnn, history, workers=1)
    assert seconds is None and "rnn" in why and "mlp" not in why


def test_a_run_records_what_it_measured_and_the_database_keeps_it(tmp_path, monkeypatch):
    """Bug: a result held only its total wall time, so no estimate could separate training (which
    scales with epochs x training images, once per model) from evaluation (per test image)."""
    from nvmkit.workflow import pipeline

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = {"dataset": {"source": "sample"}, "network": {"name": "mlp", "params": {"hidden": [8]}},
           "training": {"epochs": 1}, "trials": 2, "scenarios": ["digital", "internal"], "noise": None,
           "energy": None}
    first = pipeline.run(cfg).to_dict()
    t = first["timing"]
    n_test = first["dataset"]["n_test"]
    assert t["train_epochs"] == 1 and t["n_train"] == first["dataset"]["n_train"]
    assert t["test_images"] == n_test * (1 + 2) and t["train_s"] > 0 and t["evaluate_s"] > 0
    again = pipeline.run(cfg).to_dict()["timing"]
    assert again["train_epochs"] == 0  # loaded from the model cache: no training rate to learn from
    with ResultsDB(tmp_path / "r.db") as rdb:
        rdb.insert("k1", first, model_key="m")
    with ResultsDB(tmp_path / "r.db", readonly=True) as rdb:
        assert rdb.history() == [{"network": "mlp", "model_key": "m", "wall_time_s": first["wall_time_s"], "timing": t}]
        assert rdb.rows()[0]["timing"] == t


# -- 6. energy only with units -------------------------------------------------------------------------
def test_energy_of_an_abstract_device_is_not_printed_as_joules():
    """Bug: the default run printed 'energy per inference (crossbar): 1.485 nJ' for the unitless
    synaptic device: V^2 G t of a conductance with no unit behind it."""
    import io

    from rich.console import Console

    from nvmkit.core.registry import get_registry
    from nvmkit.core.footprint import LayerFootprint
    from nvmkit.workflow.report import RunResult, print_result

    reg = get_registry()
    est = reg.get("energy", "crossbar")()
    fp = [LayerFootprint(name="dense", kind="dense", n_in=785, n_out=10, devices_per_weight=2,
                         reads_per_inference=1)]
    synaptic = est.estimate(fp, reg.get("device", "synaptic")())
    assert not synaptic.physical and not synaptic.to_dict()["physical"] and "no unit" in synaptic.notes["physical"]
    assert est.estimate(fp, reg.get("device", "reram")()).physical
    assert est.estimate(fp, reg.get("device", "ideal")()).physical  # uS: a free range, but siemens
    # a per-MAC energy stated for the abstract device is a physical figure again
    assert reg.get("energy", "crossbar")(energy_per_mac=1e-14).estimate(fp, reg.get("device", "synaptic")()).physical

    def printed(report) -> str:
        result = RunResult(config={"network": {"name": "mlp"}, "device": {"name": report.device}, "noise": None},
                           seed=0, dataset={"name": "mnist", "sample": True, "n_test": 1000},
                           accuracy={"digital": {"mean": 0.9, "std": 0.0, "ci95": [0.9, 0.9], "trials": 1}},
                           energy=report.to_dict(), versions={}, wall_time_s=1.0)
        buf = io.StringIO()
        print_result(Console(file=buf, width=300), result)
        return buf.getvalue()

    text = printed(synaptic)
    assert "not physical" in text and "nJ" not in text
    assert f"{est.estimate(fp, reg.get('device', 'reram')()).total * 1e9:.4g} nJ" in printed(
        est.estimate(fp, reg.get("device", "reram")()))


@pytest.mark.parametrize("raised, replayed", [("KeyboardInterrupt", False), ("ValueError", True)])
def test_keras_start_up_chatter_is_replayed_only_for_a_failed_import(raised, replayed):
    """While Keras loads, TensorFlow's chatter on file descriptor 2 is held back and replayed only if
    the import fails (it may explain the failure); a Ctrl-C during the import shows none of it. The
    bugs it catches: chatter replayed after a Ctrl-C (it was), or swallowed on a real failure."""
    import subprocess
    import sys

    probe = ("import os\n"
             "from nvmkit.core._quiet import quiet_stderr\n"
             "try:\n"
             "    with quiet_stderr():\n"
             "        os.write(2, b'oneDNN chatter')\n"
             f"        raise {raised}\n"
             f"except {raised}:\n"
             "    pass\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert ("oneDNN chatter" in out.stderr) is replayed


def test_ctrl_c_while_the_commands_load_is_one_line_and_exit_130(monkeypatch, capsys):
    """The console script enters through nvmkit.__main__, which imports the command modules inside
    main: a Ctrl-C during that import ends with "Aborted!" and exit 130 (the bug: the traceback of
    the import machinery, when the import ran at the script's top)."""
    import builtins

    import nvmkit.__main__ as entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "nvmkit.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as stop:
        entry.main()
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip() == "Aborted!"


def test_tensorflow_and_keras_imported_after_nvmkit_start_quietly():
    """`import nvmkit` no longer imports TensorFlow, so it hooks the later imports: a script's own
    `import tensorflow` / `import keras` keep TensorFlow's start-up lines (oneDNN, CUDA) off
    stderr, as they were when nvmkit imported Keras itself, and Keras gets nvmkit's classes. The
    bug it catches: the hook executing TensorFlow unquieted (it is in sys.modules while it runs).
    On a machine where TensorFlow prints nothing at start-up this cannot tell; here it does."""
    import subprocess
    import sys

    probe = ("import nvmkit\nimport tensorflow\nimport keras\n"
             "print(keras.saving.get_registered_object('nvmkit>AnalogModel').__name__)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "AnalogModel" and out.stderr == "", out.stderr
