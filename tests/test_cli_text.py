"""Text from the user (specs, names, paths) reaches the terminal verbatim: never read as rich markup
or emoji shortcodes, in errors, tables and result lines."""

from __future__ import annotations

from typer.testing import CliRunner

from nvmkit.cli import app

runner = CliRunner()
THUMBS_DOWN = "\N{THUMBS DOWN SIGN}"  # what rich makes of ":-1:" with emoji on


def invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_noise_spec_in_an_error_is_not_an_emoji(tmp_path):
    # regression: "[grid] noise = gaussian:-1: noise 'gaussian': ..." printed a thumbs-down emoji for
    # ":-1:" because the consoles had rich's emoji shortcodes on
    exp = tmp_path / "exp.toml"
    exp.write_text('[base]\ntrials = 2\n[grid]\nnoise = ["gaussian:-1"]\n')
    res = invoke("sweep", str(exp), "--db", str(tmp_path / "r.db"), "--dry-run")
    assert res.exit_code == 2, res.output
    assert "noise = gaussian:-1: noise 'gaussian'" in res.output, res.output
    assert THUMBS_DOWN not in res.output
    res = invoke("run", "--noise", "gaussian:-1", "--dry-run")
    assert res.exit_code == 2 and "sigma must be >= 0, got -1" in res.output, res.output
    assert THUMBS_DOWN not in res.output


def test_experiment_name_and_labels_are_shown_verbatim(tmp_path):
    # regression: the sweep's headline printed the experiment's name as markup ("[bold]{name}[/]"),
    # so "[red]" vanished and ":thumbs_up:" became an emoji
    name = "[red]mine[/] :thumbs_up:"
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[experiment]\nname = "{name}"\n[base]\ntrials = 2\n[grid]\nseed = [1, 2]\n')
    res = invoke("sweep", str(exp), "--db", str(tmp_path / "r.db"), "--dry-run")
    assert res.exit_code == 0, res.output
    assert f"{name}: 2 points" in res.output, res.output
    assert not (tmp_path / "r.db").exists()


def test_run_result_table_escapes_specs_and_names():
    # regression: print_result built its title and the external-scenario label from the user's
    # device and noise specs without escaping them
    from nvmkit.cli.app import make_console
    from nvmkit.workflow.report import RunResult, print_result

    acc = {"mean": 0.9, "std": 0.01, "ci95": [0.89, 0.91], "per_trial": [0.9], "trials": 2}
    result = RunResult(
        config={"network": {"name": "mlp"}, "device": {"name": "[bold]dev[/bold]"},
                "noise": {"name": "odd", "params": {"level": ":-1:"}}},
        seed=1, dataset={"name": "mnist", "n_test": 10, "sample": True},
        accuracy={"digital": acc, "external": acc},
        energy={"estimator": "[i]est[/i]", "total_J": 1e-9, "by_component_J": {"[x]": 1e-9}},
        versions={}, wall_time_s=1.0)
    console = make_console(record=True, width=300)
    print_result(console, result)
    text = console.export_text()
    for literal in ("mlp on [bold]dev[/bold]", "external (odd::-1:)", "([i]est[/i])", "[x] 1 nJ"):
        assert literal in text, text
    assert THUMBS_DOWN not in text
