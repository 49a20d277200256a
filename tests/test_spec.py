"""One spec grammar and one value grammar (nvmkit/core/spec.py) for run, energy, TOML, sweep grids and
result filters; configurations that re-run as they are recorded.

Each test names the bug it catches.
"""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from nvmkit.core.errors import ConfigError
from nvmkit.core.registry import spec_params
from nvmkit.core.spec import Spec, format_spec, parse_spec, parse_value
from nvmkit.sweeps.experiment import parse_experiment
from nvmkit.sweeps.resultsdb import ResultsDB
from nvmkit.workflow import pipeline
from nvmkit.workflow.config import RunConfig


def invoke(*args):
    from nvmkit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(res, needle):
    text = res.output.strip()
    assert res.exit_code == 2, res.output
    assert needle in text and "Traceback" not in text and len(text.splitlines()) == 1, text
    return text


def no_placeholder(obj) -> bool:
    """True when no table anywhere in ``obj`` has the old positional placeholder key "_"."""
    if isinstance(obj, dict):
        return "_" not in obj and all(no_placeholder(v) for v in obj.values())
    if isinstance(obj, list):
        return all(no_placeholder(v) for v in obj)
    return True


# -- the value grammar -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("none", None), ("None", None), ("NULL", None),  # bug: "none" read as None, "none" or an error by parser
    ("true", True), ("False", False),
    ("3", 3), ("-1", -1), ("0.05", 0.05), ("1e-8", 1e-8), ("2E3", 2000.0),  # bug: 1e-8 split as a list
    ("16-32", [16, 32]), ("32-64-128", [32, 64, 128]), ("0.1-0.2", [0.1, 0.2]),  # bug: '-' lists only in energy
    ("[16, 32]", [16, 32]), ('"none"', "none"), ("'rnn'", "rnn"), ("{}", {}),
    ("reram", "reram"), ("fashion-mnist", "fashion-mnist"), ("gaussian:0.1", "gaussian:0.1"),
])
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_value_rejects_what_it_cannot_read():
    # bug: an empty --set value or an unclosed list silently became a string
    for bad in ("", "  ", "[1, 2", '"open'):
        with pytest.raises(ConfigError):
            parse_value(bad)


# -- the spec grammar --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("mlp", Spec("mlp")),
    ("gaussian:0.1", Spec("gaussian", {}, (0.1,))),
    ("reram:levels=64,read_time=2e-8", Spec("reram", {"levels": 64, "read_time": 2e-8})),
    ("cnn:filters=16-32,padding=same", Spec("cnn", {"filters": [16, 32], "padding": "same"})),
    ("cnn:filters=[16, 32],padding=same", Spec("cnn", {"filters": [16, 32], "padding": "same"})),
    ("synaptic:0.05,resample=true", Spec("synaptic", {"resample": True}, (0.05,))),
    ("salt-and-pepper:0.05", Spec("salt-and-pepper", {}, (0.05,))),
    ("reram:levels=none", Spec("reram", {"levels": None})),
])
def test_parse_spec(text, expected):
    assert parse_spec(text) == expected
    assert parse_spec(format_spec(expected.name, expected.params, expected.positional)) == expected


def test_format_spec_quotes_what_would_read_as_something_else():
    # bug: a text parameter "none", "16-32" or "a,b" written back bare would re-read as None, a list
    # or two items
    params = {"a": "none", "b": "16-32", "c": "a,b", "d": "", "e": ["x", "y,z"], "f": {"k": 1}, "g": "reram"}
    text = format_spec("n", params)
    assert parse_spec(text) == Spec("n", params) and "g=reram" in text


@pytest.mark.parametrize("text,needle", [
    ("", "empty plugin spec"), (":", "no name"), ("gaussian:", "ends in ':'"),
    ("gaussian:0.1,0.2", "not key=value"), ("reram:levels=64,", "empty item"),
    ("reram:levels=1,levels=2", "twice"), ("cnn:filters=[16,32", "unclosed"),
    ("reram:levels=", "empty value"), ("my device", "not a plugin name"),
])
def test_malformed_specs_are_one_line_errors(text, needle):
    # bug: a trailing ',' or ':' or a repeated key was silently dropped or overwritten
    with pytest.raises(ConfigError, match=needle):
        parse_spec(text)


def test_positional_value_is_named_after_the_first_parameter():
    # bug: NAME:VALUE stored as params {"_": VALUE} in the validated configuration
    assert spec_params("noise", "gaussian:0.1") == ("gaussian", {"sigma": 0.1})
    assert spec_params("device", "synaptic:0.05") == ("synaptic", {"sigma_syn": 0.05})
    assert spec_params("network", "rnn:7") == ("rnn", {"time_steps": 7})
    with pytest.raises(ConfigError, match="twice"):
        spec_params("device", "synaptic:0.05,sigma_syn=0.1")


# -- one grammar wherever a spec is written -----------------------------------------------------------

def test_no_placeholder_key_survives_validation():
    # bug: `--device synaptic:0.05` left device.params = {'_': 0.05} in the validated configuration
    data = pipeline.apply_overrides({}, {}, device="synaptic:0.05", noise="speckle:0.2", network="rnn:7")
    cfg = RunConfig.from_dict(data)
    assert cfg.device.params == {"sigma_syn": 0.05}
    assert cfg.noise.to_dict() == {"name": "speckle", "params": {"sigma": 0.2}}
    assert cfg.network.params == {"time_steps": 7}
    assert no_placeholder(cfg.to_dict()) and no_placeholder(pipeline.resolve(cfg))
    direct = RunConfig(device="synaptic:0.05", noise="gaussian:0.3")  # the Python API, same grammar
    assert direct.device.params == {"sigma_syn": 0.05} and direct.noise.params == {"sigma": 0.3}


def test_cnn_widths_mean_the_same_in_run_energy_toml_and_grid(tmp_path):
    # bug: `cnn:filters=16-32` worked in `nvmkit energy` and failed in `nvmkit run`
    from nvmkit.reproduction.energy_table import parse_network_spec

    spec = "cnn:filters=16-32"
    res = invoke("run", "--network", spec, "--dry-run")
    assert res.exit_code == 0, res.output
    from_flag = tomllib.loads(res.output)["network"]
    toml_file = tmp_path / "cnn.toml"
    toml_file.write_text(f'network = "{spec}"\n')
    from_toml = pipeline.resolve(RunConfig.from_file(toml_file))["network"]
    points = parse_experiment(f'[grid]\nnetwork = ["{spec}", "cnn:filters=[16, 32]"]\n').points()
    assert len(points) == 1  # both spellings are one point
    from_grid = points[0].resolved["network"]
    name, energy_params = parse_network_spec(spec)
    assert from_flag == from_toml == from_grid == {"name": name, "params": energy_params}
    assert energy_params["filters"] == [16, 32]
    assert no_placeholder(points[0].config)


def test_none_means_unset_everywhere(tmp_path):
    # bug: "none" was None in result filters, the string "none" in --set and in specs
    data = pipeline.apply_overrides({}, {}, sets=["noise=none", "energy=none", "training.sigma_neu=none"])
    cfg = RunConfig.from_dict(data)
    assert cfg.noise is None and cfg.energy is None and cfg.training.sigma_neu is None
    assert RunConfig.from_toml('noise = "none"\nenergy = "None"\n').noise is None
    assert RunConfig.from_dict(pipeline.apply_overrides({}, {}, noise="NONE")).noise is None
    assert spec_params("device", "reram:levels=none") == ("reram", {"levels": None})
    with pytest.raises(ConfigError, match="device cannot be none"):
        RunConfig.from_dict({"device": "none"})

    with ResultsDB(tmp_path / "r.db") as db:
        for key, noise in (("a", None), ("b", {"name": "gaussian", "params": {"sigma": 0.1}})):
            db.insert(key, {"config": {"noise": noise, "network": {"name": "mlp"}, "trials": 3},
                            "accuracy": {}, "seed": 0})
        assert [r["key"] for r in db.rows(["noise=none"])] == ["a"]
        assert [r["key"] for r in db.rows(["noise=NULL"])] == ["a"]
        assert [r["key"] for r in db.rows(["noise!=none"])] == ["b"]
        assert [r["key"] for r in db.rows(["noise_level=0.1", "network='mlp'"])] == ["b"]
        assert [r["key"] for r in db.rows(["noise.params.sigma=0.1"])] == ["b"]
        for bad in ("trials=1-2", "trials=nan", "trials="):  # a list, nan or nothing matches no row
            with pytest.raises(ConfigError, match="filter"):
                db.rows([bad])


def test_experiment_base_plugin_table_replaces_the_default():
    # bug: [base.noise] naming another injector inherited gaussian's sigma and failed validation
    exp = parse_experiment('[base.noise]\nname = "salt-and-pepper"\nparams.amount = 0.05\n')
    assert exp.points()[0].resolved["noise"] == {"name": "salt-and-pepper", "params": {"amount": 0.05}}


def test_energy_network_error_names_the_users_parameter():
    # bug: `--network mlp:hidden=0` reported the footprint builder's internal `dense: n_out`
    text = one_line_error(invoke("energy", "--network", "mlp:hidden=0"), "hidden")
    assert "n_out" not in text and "network 'mlp'" in text
    one_line_error(invoke("energy", "--network", "cnn:filterz=16"), "filterz")


# -- round trip: what a run records runs again ------------------------------------------------------

def test_dry_run_and_result_json_rerun_to_the_same_accuracies(tmp_path, monkeypatch):
    # bug: the --dry-run TOML and a result's config failed with "empty plugin spec" (noise recorded
    # as a table); and a rerun that lost any setting (device, noise, converters, seed) or retrained
    # differently would change the per-trial accuracies compared exactly below. Non-default
    # settings make a lost one visible; an MLP with 16 hidden units, 1 epoch on the embedded
    # sample keeps each run to a few seconds.
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "cache"))
    flags = ["--source", "sample", "--network", "mlp:hidden=16", "--epochs", "1", "--trials", "2",
             "--seed", "3", "--device", "synaptic:0.05", "--noise", "speckle:0.3",
             "--set", "crossbar.converters.adc_bits=6"]
    first = tmp_path / "first.json"
    res = invoke("run", *flags, "-o", first)
    assert res.exit_code == 0, res.output
    dry = invoke("run", *flags, "--dry-run")
    assert dry.exit_code == 0, dry.output
    dry_toml = tmp_path / "dry.toml"
    dry_toml.write_text(dry.output)

    # the dry run is a fixed point: re-reading it resolves to the same text
    assert invoke("run", dry_toml, "--dry-run").output == dry.output

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "fresh-cache"))  # retrain from the record
    from_json = tmp_path / "from_json.json"
    res = invoke("run", first, "-o", from_json)
    assert res.exit_code == 0, res.output
    from_dry = tmp_path / "from_dry.json"
    res = invoke("run", dry_toml, "-o", from_dry)
    assert res.exit_code == 0, res.output

    runs = [json.loads(p.read_text()) for p in (first, from_json, from_dry)]
    configs = [{k: v for k, v in r["config"].items() if k != "output"} for r in runs]
    assert configs[0] == configs[1] == configs[2]
    assert configs[0]["device"]["params"]["sigma_syn"] == 0.05 and no_placeholder(configs[0])
    per_trial = [{s: a["per_trial"] for s, a in r["accuracy"].items()} for r in runs]
    assert set(per_trial[0]) == {"digital", "internal", "external", "both"}
    assert per_trial[0] == per_trial[1] == per_trial[2]
    assert len(set(per_trial[0]["both"])) == 2  # two trials, two different draws: a real comparison
    # energies compared by component: Keras numbers layer names per process (dense_2 after a retrain)
    assert runs[0]["energy"]["by_component_J"] == runs[1]["energy"]["by_component_J"] == \
        runs[2]["energy"]["by_component_J"]


def test_result_json_rerun_never_overwrites_the_result(tmp_path):
    # bug: the recorded `output` made `nvmkit run result.json` write over the file it re-runs
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"config": {"output": str(result), "trials": 2}, "accuracy": {}}))
    cfg = RunConfig.from_file(result)
    assert cfg.output is None and cfg.trials == 2
    bad = tmp_path / "other.json"
    bad.write_text('{"trials": 2}')
    one_line_error(invoke("run", bad, "--dry-run"), "not an nvmkit result")
    bad.write_text("{not json")
    one_line_error(invoke("run", bad, "--dry-run"), "not valid JSON")
