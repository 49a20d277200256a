"""The command line: help everywhere, one-line errors for user mistakes, and a real end-to-end run."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nvmkit.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("cmd", [[], ["run"], ["plugins"], ["devices"], ["energy"], ["sweep"],
                                 ["results"], ["plot"]])
def test_help_everywhere(cmd):
    res = invoke(*cmd, "--help")
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


@pytest.mark.parametrize("args,needle", [
    (["--device", "flash"], "unknown device 'flash'"),
    (["--noise", "gaussian:-0.1"], "sigma"),
    (["--trials", "0"], "trials"),
    (["--network", "rnn", "-T", "5"], "time_steps"),
    (["--set", "crossbar.mapping.tile_rows=0"], "tile_rows"),
    # regression: 256 bits ran, the float32 step underflowed and the run reported chance accuracy
    (["--set", "crossbar.converters.adc_bits=256"], "converters.adc_bits must lie in 1..24"),
    (["--set", "crossbar.converters.dac_bits=25"], "converters.dac_bits must lie in 1..24"),
    (["--set", "crossbar.mapping.colour=1"], "unknown key 'colour'"),
    (["--dataset", "cifar"], "cifar"),
])
def test_user_mistakes_exit_2_with_one_line(args, needle, tmp_path):
    out = tmp_path / "r.json"
    res = invoke("run", *args, "--dry-run", "-o", str(out))
    assert res.exit_code == 2, res.output
    text = res.output.strip()
    assert needle in text, text
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    assert not out.exists()


def test_malformed_toml_is_reported(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("trials = [1,\n")
    res = invoke("run", str(bad), "--dry-run")
    assert res.exit_code == 2 and "not valid TOML" in res.output and "bad.toml" in res.output


def test_flags_override_the_file_and_dry_run_resolves(tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('trials = 7\nseed = 3\nnoise = "speckle:0.2"\n[device]\nname = "reram"\n')
    res = invoke("run", str(cfg), "--seed", "11", "--dry-run")
    assert res.exit_code == 0, res.output
    import tomllib

    resolved = tomllib.loads(res.output)
    assert resolved["trials"] == 7 and resolved["seed"] == 11
    assert resolved["device"]["name"] == "reram" and "g_min" in resolved["device"]["params"]
    assert resolved["noise"] == {"name": "speckle", "params": {"sigma": 0.2}}
    assert resolved["training"]["epochs"] >= 1  # the network's default was filled in


def test_plugins_json_lists_bundled_plugins():
    res = invoke("plugins", "--json")
    rows = json.loads(res.output)["plugins"]
    assert {("device", "sonos"), ("noise", "speckle"), ("network", "rnn"), ("energy", "crossbar")} <= {
        (r["kind"], r["name"]) for r in rows}


def test_end_to_end_run_writes_a_complete_result(tmp_path, monkeypatch):
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    # source "auto" with no full data anywhere: the embedded sample, which the record must name
    # (bug: it recorded "auto", and a rerun where the full data lies picked the full test set)
    (tmp_path / "no-data").mkdir()
    monkeypatch.setenv("NVMKIT_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-data"))
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "nvmkit", "run", "--epochs", "2", "--trials", "2",
         "--seed", "5", "--noise", "gaussian:0.1", "-o", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "internal (device)" in proc.stdout and "sample" in proc.stdout
    r = json.loads(out.read_text())
    assert r["seed"] == 5 and r["data_label"] == "sample" and r["dataset"]["sample"] is True
    assert r["config"]["dataset"]["source"] == "sample"
    assert r["nvmkit_version"] and r["config"]["device"]["params"]["sigma_syn"] == 0.025
    for scenario in ("digital", "internal", "external", "both"):
        acc = r["accuracy"][scenario]
        assert 0.5 < acc["mean"] <= 1.0
    assert len(r["accuracy"]["both"]["per_trial"]) == 2
    # noise can only hurt on average: the clean digital network is the upper reference. The mean of
    # 2 trials on n test images strays from its expectation by a binomial standard error
    # sqrt(p (1 - p) / (2 n)) (0.007 at p = 0.9, n = 1000): allow 5 of those
    p, n = r["accuracy"]["digital"]["mean"], r["dataset"]["n_test"]
    assert r["accuracy"]["both"]["mean"] <= p + 5 * (p * (1 - p) / (2 * n)) ** 0.5
    assert r["energy"]["total_J"] > 0


def _one_line_error(res, needle):
    text = res.output.strip()
    assert res.exit_code == 2, res.output
    assert needle in text and "Traceback" not in text and len(text.splitlines()) == 1, text


def test_unwritable_output_fails_before_any_work(tmp_path):
    # regression: a folder or a missing folder as --output only failed after training, with a traceback
    _one_line_error(invoke("run", "--dry-run", "-o", str(tmp_path)), "is a folder")
    _one_line_error(invoke("run", "--dry-run", "-o", str(tmp_path / "no" / "r.json")), "does not exist")
    from nvmkit.workflow import pipeline
    from nvmkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        pipeline.run({"output": str(tmp_path / "no" / "r.json")})
    assert not list(tmp_path.iterdir())


def test_error_text_in_brackets_is_shown_verbatim():
    # regression: rich read "[training]" in a message as markup and dropped it
    res = invoke("run", "--dry-run", "--set", "crossbar.converters.adc_bits=nan")
    _one_line_error(res, "[crossbar.converters]")


@pytest.mark.parametrize("content,needle", [
    (b"\xff\xfe\x00", "not a UTF-8 text file"),  # regression: UnicodeDecodeError traceback
    (b"network = [1, 2]\n", "network must be a table"),
    (b"", None),  # an empty file is the defaults
])
def test_config_file_content_is_checked(tmp_path, content, needle):
    f = tmp_path / "exp.toml"
    f.write_bytes(content)
    res = invoke("run", str(f), "--dry-run")
    if needle is None:
        assert res.exit_code == 0, res.output
    else:
        _one_line_error(res, needle)


def test_sweep_dry_run_writes_no_database_and_checks_workers(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text('[base]\ntrials = 1\n[grid]\nseed = [1, 2]\n')
    db = tmp_path / "r.db"
    res = invoke("sweep", str(exp), "--db", str(db), "--dry-run")
    assert res.exit_code == 0, res.output
    assert not db.exists()  # regression: a dry run created the database file
    _one_line_error(invoke("sweep", str(exp), "--db", str(db), "--workers", "0"), "--workers must be >= 1")
    assert not db.exists()


def test_dry_run_refuses_an_output_file(tmp_path):
    """Fails if `run --dry-run -o x.toml` silently ignores -o (the user expects a file that never
    comes): one line naming the fix, exit 2, no file."""
    out = tmp_path / "x.toml"
    res = invoke("run", "--dry-run", "-o", str(out))
    assert res.exit_code == 2 and "drop -o/--output" in res.output and "Traceback" not in res.output, res.output
    assert not out.exists()
    assert invoke("run", "--dry-run").exit_code == 0  # alone it still prints the configuration
