"""`nvmkit reproduce`: the bundled studies, the report written from (fake) rows, verdicts computed from
rows, and the CLI. The sweeps run with the fake point runner of test_sweep (no training)."""

from __future__ import annotations

import json
import re
import statistics
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nvmkit.reproduction import reproduce_plots
from nvmkit.reproduction import seed_study as ss
from nvmkit.sweeps import plots
from nvmkit.sweeps.resultsdb import ResultsDB
from nvmkit.core.errors import ConfigError
from nvmkit.reproduction.reproduce import command_line, plan_reproduction, reproduce
from nvmkit.reproduction.study import KINDS, load_study, parse_study
from nvmkit.sweeps.sweep import RUNNER_ENV

from test_sweep import _capture_figures

FAKE = "sweep_fake:run"
SECTION_HEADINGS = ("## 1. Result 1", "## 2. Regularisation sweeps", "## 3. Test-set noise sweeps",
                    "## 4. Time steps of the RNN", "## 5. Tile size against wire resistance",
                    "## 6. Which training survives which device", "## 7. Learning in place",
                    "## 8. Energy per inference", "## 9. The seed's claims", "## 10. How this report was made")
PLOTS = ("result1", "regularisation", "time_steps", "energy_vs_seed", "test_noise/accuracy_fashion-mnist__sample_both",
         "tile_size", "training")


# -- the bundled studies -----------------------------------------------------------------------------
def _grid_values(points, key):
    return sorted({json.dumps(_get(p.resolved, key)) for p in points})


def _get(d, dotted):
    for part in dotted.split("."):
        d = d[part]
    return d


def test_bundled_studies_cover_the_seed_and_validate():
    full = plan_reproduction("seed")
    quick = plan_reproduction(quick=True)
    # the quick study (the CI smoke test, run with a fake runner) leaves out the in-place study: its
    # jobs train for real (tests/test_in_place_study.py covers its plan and tables)
    for plan, kinds in ((full, set(KINDS)), (quick, set(KINDS) - {"in_place"})):
        assert {s.kind for s in plan.study.sections} == kinds
        r1 = [p for s, pts in plan.sections if s.kind == "result1" for p in pts]
        assert len(r1) == 12  # 3 networks x 2 data sets x (plain, sigma_neu 0.1): one point gives a whole row
        assert _grid_values(r1, "network.name") == ['"cnn"', '"mlp"', '"rnn"']
        assert _grid_values(r1, "training.sigma_neu") == ["0.0", "0.1"]
        assert {p.resolved["noise"]["name"] for p in r1} == {"gaussian"}
        assert {p.resolved["device"]["params"]["sigma_syn"] for p in r1} == {0.025}
        ts = [p for s, pts in plan.sections if s.kind == "time_steps" for p in pts]
        assert _grid_values(ts, "network.params.time_steps") == ["14", "28", "4", "7"]
        reg = [p for s, pts in plan.sections if s.kind == "regularisation" for p in pts]
        assert _grid_values(reg, "training.sigma_neu") == ["0.0", "0.1", "0.2"]
        assert {p.resolved["network"]["name"] for p in reg} == {"cnn", "rnn"}
    # the full study: at least 5 trials, the networks' default epochs, both data sets everywhere but
    # the test-set noise sweeps (Fashion-MNIST, as the seed's figures)
    assert {p.resolved["trials"] for p in full.points if p not in training_points(full)} == {5}
    # the training section: 10 trials on 1,000 test images; its plain networks are Result 1's models
    assert {p.resolved["trials"] for p in training_points(full)} == {10}
    assert {p.resolved["dataset"]["test_size"] for p in training_points(full)} == {1000}
    r1_models = {p.model_key for s, pts in full.sections if s.kind == "result1" for p in pts}
    plain = [p for p in training_points(full) if p.resolved["training"]["method"] == "plain"]
    assert len(plain) == 36 and {p.model_key for p in plain} <= r1_models
    assert {p.config["training"]["epochs"] for p in full.points} == {None}
    reg = [p for s, pts in full.sections if s.kind == "regularisation" for p in pts]
    assert {p.resolved["dataset"]["name"] for p in reg} == {"mnist", "fashion-mnist"}
    # the quick one: the embedded sample and few epochs, trials and levels
    assert {p.resolved["dataset"]["source"] for p in quick.points} == {"sample"}
    assert {p.resolved["training"]["epochs"] for p in quick.points} == {5}
    assert len(quick.points) < len(full.points)
    assert len({p.model_key for p in quick.points}) == 24  # the training section adds 4 fine-tuned MLPs


def training_points(plan):
    return [p for s, pts in plan.sections if s.kind == "training" for p in pts]


def test_data_dir_overrides_every_section(tmp_path):
    # by name: --quick itself is always the sample (tests/test_robust_cli.py)
    plan = plan_reproduction("seed-quick", data_dir=tmp_path, sections=["result1"])
    assert [s.name for s in plan.study.sections] == ["result1"]
    assert {p.resolved["dataset"]["source"] for p in plan.points} == {"full"}
    assert {p.resolved["dataset"]["data_dir"] for p in plan.points} == {str(tmp_path.absolute())}


@pytest.mark.parametrize("text, expected", [
    ('[sections.a]\nkind = "result2"\n[sections.a.grid]\ntrials = [1]\n', ["[sections.a]", "result2", "result1"]),
    ('[sections.a]\nkind = "result1"\ngird = 1\n', ["[sections.a]", "'gird'", "did you mean 'grid'"]),
    ('[sections.a]\nkind = "result1"\n[sections.a.grid]\n"training.epoch" = [1]\n',
     ["[sections.a]", "training.epoch", "training.epochs"]),
    ('[base]\ntrails = 3\n[sections.a]\nkind = "result1"\n', ["[sections.a]", "trails"]),
    ('[study]\nname = "x"\n', ["no sections"]),
    ('[stuff]\n', ["unknown section [stuff]"]),
])
def test_bad_study_names_the_file_section_and_fix(text, expected):
    with pytest.raises(ConfigError) as exc:
        parse_study(text, "my.toml")
    msg = str(exc.value)
    assert msg.startswith("my.toml") and "\n" not in msg
    for part in expected:
        assert part in msg, (part, msg)


def test_unknown_study_and_section_are_user_errors():
    with pytest.raises(ConfigError, match="bundled studies: seed, seed-quick"):
        load_study("sead")
    with pytest.raises(ConfigError, match="no section 'nope'"):
        plan_reproduction(quick=True, sections=["nope"])


def test_seed_table_is_transcribed_from_the_seed():
    """SEED_RESULT1 against the seed's Result 1 slide, kept verbatim in tests/data: fails on a
    mistyped, swapped or missing cell."""
    text = (Path(__file__).parent / "data" / "seed_result1_slide.txt").read_text(encoding="utf-8")
    names = {"MLP": "mlp", "RNN": "rnn", "CNN": "cnn"}
    found = {}
    for m in re.finditer(r"^(MLP|RNN|CNN)\s*-\s*(f-)?MNIST\*?\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%", text, re.M):
        ds = "fashion-mnist" if m.group(2) else "mnist"
        found[(names[m.group(1)], ds)] = {c: float(v) / 100 for c, v in zip(ss.COLUMNS, m.group(3, 4, 5))}
    assert set(found) == set(ss.SEED_RESULT1)  # all six rows
    for key, cells in ss.SEED_RESULT1.items():
        assert found[key] == pytest.approx(cells, abs=1e-9), key


# -- the report, from the fake runner ----------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        figures = _capture_figures(mp, reproduce_plots, plots)
        result = reproduce(out, quick=True, workers=1, runner=FAKE)
    FIGURES.update(figures)
    return out, result


FIGURES: dict = {}  # the quick report's figures by file stem, read back by the tests below


def _rows_by_kind(db_path: Path) -> dict[str, list[dict]]:
    """The database rows of each section kind of the quick study (independently of the report)."""
    with ResultsDB(db_path) as db:
        rows = {r["key"]: r for r in db.rows()}
    out: dict[str, dict] = {}
    for sec, points in plan_reproduction(quick=True).sections:
        out.setdefault(sec.kind, {}).update({p.key: rows[p.key] for p in points})
    return {kind: list(found.values()) for kind, found in out.items()}


def _pooled(rows: list[dict], scenario: str) -> tuple[float, float]:
    """100 x (mean, sample std) of the per-trial accuracies of ``scenario`` over ``rows``."""
    per = [v for r in rows for v in (r["accuracy"].get(scenario) or {}).get("per_trial", [])]
    assert per, scenario
    return 100 * statistics.fmean(per), 100 * (statistics.stdev(per) if len(per) > 1 else 0.0)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _number(text: str) -> tuple[float, ...]:
    """'94.00 ± 0.50' -> (94.0, 0.5); '+1.25' -> (1.25,)."""
    return tuple(float(part) for part in text.split("±"))


def _assert_cell(text: str, expected: tuple[float, ...], where) -> None:
    got = _number(text)
    assert len(got) == len(expected), (where, text)
    assert got == pytest.approx(expected, abs=0.005 + 1e-9), (where, text)  # printed to 2 decimals


def test_report_has_every_section_plot_and_file(quick_report):
    out, result = quick_report
    assert result.computed == 80 and result.reused == 0 and not result.failed
    report = (out / "report.md").read_text()
    for heading in SECTION_HEADINGS:
        assert heading in report, heading
    # bug: report, results and figures written 0o600 (mkstemp), unreadable to anyone else
    import os
    import stat

    from nvmkit.core.atomic import current_umask

    kept = [out / n for n in ("report.md", "results.md", "summary.json")] + sorted((out / "plots").rglob("*.png"))
    assert len(kept) > 3 and {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in kept} == \
        {p.name: 0o666 & ~current_umask() for p in kept}
    for stem in PLOTS:
        for ext in ("png", "svg"):
            path = out / "plots" / f"{stem}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
            if ext == "png":
                assert f"]({path.relative_to(out).as_posix()})" in report  # embedded in the report
    # Result 1: six rows per training, the seed's value beside each cell, the external noise named
    rows = [line for line in report.splitlines() if re.match(r"\| (MLP|RNN|CNN) \| (MNIST|Fashion-MNIST)", line)]
    assert len(rows) == 12
    assert "| CNN | Fashion-MNIST (sample) |" in report and "| 42.35 |" in report
    assert "external (gaussian 0.1)" in report and "Gaussian test-set noise of std 0.1" in report
    assert "σ_neu = 0.1 before every ReLU" in report
    # energy beside the seed's, provenance
    assert "| RNN | reram |" in report and "| 35.6 |" in report
    assert "nvmkit reproduce --quick" in report and "Seed: 0" in report and "embedded sample" in report
    assert "Not a reproduction" in report
    snippet = (out / "results.md").read_text()
    assert "Result 1" in snippet and "| 96.80 |" in snippet and "## The seed's claims in our numbers" in snippet
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["result1"]["sigma_neu=0"]) == 6 and summary["rows"]["result1"] == 12


DATASET_OF = {"MNIST (sample)": "mnist", "Fashion-MNIST (sample)": "fashion-mnist"}
NETWORK_OF = {v: k for k, v in ss.NET_LABEL.items()}


def test_report_tables_hold_the_rows_they_come_from(quick_report):
    """Every number of the Result 1, regularisation, test-set noise and time-step tables is recomputed from the
    database rows (pooled per-trial accuracies). Fails if a cell shows another row, scenario,
    training or statistic than its heading says, or the seed's value is mistranscribed in the table."""
    out, _ = quick_report
    kinds = _rows_by_kind(out / "results.db")
    report = (out / "report.md").read_text()
    lines = report.splitlines()

    r1 = kinds["result1"]
    table = [_cells(x) for x in lines if re.match(r"\| (MLP|RNN|CNN) \| (MNIST|Fashion-MNIST)", x)]
    assert len(table) == 12  # 6 plain rows, then 6 noise-trained rows
    for i, cells in enumerate(table):
        net, ds, sigma = NETWORK_OF[cells[0]], DATASET_OF[cells[1]], 0.0 if i < 6 else 0.1
        mine = [r for r in r1 if (r["network"], r["dataset"], r["sigma_neu"]) == (net, ds, sigma)]
        plain = [r for r in r1 if (r["network"], r["dataset"], r["sigma_neu"]) == (net, ds, 0.0)]
        assert len(mine) == 1, (net, ds, sigma)
        _assert_cell(cells[2], _pooled(mine, "digital")[:1], cells[:2])
        for j, column in enumerate(ss.COLUMNS):
            _assert_cell(cells[3 + 2 * j], _pooled(mine, column), (cells[:2], column))
            beside = cells[4 + 2 * j]
            if sigma == 0:  # the seed's value
                _assert_cell(beside, (100 * ss.SEED_RESULT1[net, ds][column],), (cells[:2], column, "seed"))
            else:  # the change from plain training
                _assert_cell(beside, (_pooled(mine, column)[0] - _pooled(plain, column)[0],), (cells[:2], column))

    reg = kinds["regularisation"]
    levels = sorted({r["config"]["device"]["params"]["sigma_syn"] for r in reg})
    table = [_cells(x) for x in lines if re.match(r"\| Fashion-MNIST \(sample\) \| (CNN|RNN) \|", x)]
    assert len(table) == 6  # 2 networks x 3 trainings
    for cells in table:
        net, sigma = NETWORK_OF[cells[1]], float(cells[2])
        mine = [r for r in reg if (r["network"], r["sigma_neu"]) == (net, sigma)]
        _assert_cell(cells[3], _pooled(mine, "digital")[:1], cells[:3])
        for cell_text, level in zip(cells[4:], levels, strict=True):
            at = [r for r in mine if r["config"]["device"]["params"]["sigma_syn"] == level]
            _assert_cell(cell_text, _pooled(at, "internal"), (cells[:3], level))

    tn = kinds["test_noise"]
    head = next(_cells(x) for x in lines if x.startswith("| test-set noise |"))
    curves = [(NETWORK_OF[c.split(", ")[0]], 0.0 if c.endswith("plain") else float(c.split()[-1])) for c in head[1:]]
    assert sorted(curves) == sorted((n, s) for n in ("cnn", "rnn") for s in (0.0, 0.1))
    start = lines.index("| " + " | ".join(head) + " |")
    table = [_cells(x) for x in lines[start + 2:start + 2 + 7]]  # internal only, then 3 noises x 2 levels
    assert [c[0] for c in table] == ["none (internal only)"] + [f"{n} {lv:g}" for n, lv in ss.test_noise_settings(tn)]
    for cells in table:
        name, _, level = cells[0].rpartition(" ")
        setting = (None, None) if cells[0].startswith("none") else (name, float(level))
        scenario = "internal" if setting[0] is None else "both"  # the clean reference: internal noise only
        for text, (net, sigma) in zip(cells[1:], curves, strict=True):
            mine = [r for r in tn
                    if (r["noise"], r["noise_level"], r["network"], r["sigma_neu"]) == (*setting, net, sigma)]
            assert len(mine) == 1, (cells[0], net, sigma)
            _assert_cell(text, _pooled(mine, scenario), (cells[0], net, sigma))

    ts = kinds["time_steps"]
    table = [_cells(x) for x in lines if re.match(r"\| (Fashion-)?MNIST \(sample\) \| \d+ \| \d+ \|", x)]
    assert len(table) == 8  # 2 data sets x 4 time steps
    for cells in table:
        ds, t = DATASET_OF[cells[0]], int(cells[1])
        mine = [r for r in ts if r["dataset"] == ds and r["config"]["network"]["params"]["time_steps"] == t]
        assert len(mine) == 1 and int(cells[2]) == 784 // t
        clean, noisy = _pooled(mine, "digital")[0], _pooled(mine, "internal")
        _assert_cell(cells[3], (clean,), cells[:2])
        _assert_cell(cells[4], noisy, cells[:2])
        _assert_cell(cells[5], (clean - noisy[0],), cells[:2])


def test_report_figures_draw_the_rows(quick_report):
    """The Result 1 bars and the time-step curves, read back from the figures, are the rows'
    pooled accuracies. Fails if a figure shows other numbers than the tables (the files alone
    would still look fine)."""
    out, _ = quick_report
    kinds = _rows_by_kind(out / "results.db")
    r1 = kinds["result1"]
    fig = FIGURES["result1"]
    assert len(fig.axes) == 4  # (plain, noise-trained) x (MNIST, Fashion-MNIST)
    for ax in fig.axes:
        label, training = ax.get_title().split(", ", 1)
        ds, sigma = DATASET_OF[label], 0.0 if training == "plain training" else 0.1
        expected = [_pooled([r for r in r1 if (r["network"], r["dataset"], r["sigma_neu"]) == (net, ds, sigma)],
                            column)[0]
                    for net in ss.NETWORKS for column in ss.COLUMNS]
        heights = [p.get_height() for p in ax.patches]
        assert heights == pytest.approx(expected, rel=1e-12), ax.get_title()
    ts = kinds["time_steps"]
    (ax,) = FIGURES["time_steps"].axes
    assert len(ax.containers) == 4  # (MNIST, Fashion-MNIST) x (clean, internal noise)
    for curve in ax.containers:
        label, what = curve.get_label().split(", ")
        scenario = {"clean": "digital", "internal noise": "internal"}[what]
        line = curve.lines[0]
        mine = {r["config"]["network"]["params"]["time_steps"]: r for r in ts if r["dataset"] == DATASET_OF[label]}
        assert list(line.get_xdata()) == sorted(mine)
        assert list(line.get_ydata()) == pytest.approx([_pooled([mine[t]], scenario)[0] for t in sorted(mine)],
                                                       rel=1e-12), curve.get_label()


def test_report_verdicts_follow_the_rows(quick_report):
    out, result = quick_report
    by_claim = {v.claim: v for v in result.verdicts}
    # the fake runner's numbers are arbitrary: recompute the first claim from the report's own rows
    summary = json.loads((out / "summary.json").read_text())
    plain = summary["result1"]["sigma_neu=0"]
    for ds in ("mnist", "fashion-mnist"):
        m = {r["network"]: r["ours"]["internal"]["mean"] for r in plain if r["dataset"] == ds}
        if not m["cnn"] > max(m["mlp"], m["rnn"]):
            expected = ss.FAILS
            break
    else:
        expected = ss.HOLDS
    assert by_claim[ss.claim_cnn_best_internal([]).claim].verdict == expected
    # quick runs regularisation on Fashion-MNIST only: the MNIST-vs-Fashion claim cannot be tested
    assert by_claim[ss.claim_rnn_regularisation_fashion([]).claim].verdict == ss.UNTESTED
    energy = [v for v in result.verdicts if v.source == "Training energy estimates"]
    assert any("15-40x" in v.claim and v.verdict == ss.HOLDS for v in energy)
    report = (out / "report.md").read_text()
    assert all(f"| {v.verdict if v.verdict == ss.UNTESTED else '**' + v.verdict + '**'} |" in report
               for v in result.verdicts)


def test_rerun_resumes_from_the_database(quick_report, tmp_path):
    out, _ = quick_report
    again = reproduce(tmp_path / "again", quick=True, workers=1, runner=FAKE, db=out / "results.db")
    assert again.computed == 0 and again.reused == 80
    assert (tmp_path / "again" / "report.md").is_file()


# -- verdicts from made-up rows ------------------------------------------------------------------------
def _row(net, ds, acc: dict, sigma=0.0, noise=None, level=None, **config):
    cfg = {"network": {"name": net, "params": {}}, "device": {"name": "synaptic", "params": {"sigma_syn": 0.025}},
           "training": {"sigma_neu": sigma}}
    for key, value in config.items():
        d = cfg
        *head, last = key.split("__")
        for part in head:
            d = d.setdefault(part, {})
        d[last] = value
    accuracy = {s: {"mean": sum(v) / len(v), "per_trial": list(v)} for s, v in acc.items()}
    return {"key": f"{net}{ds}{sigma}{noise}{level}{sorted(config.items())}", "network": net, "dataset": ds,
            "sigma_neu": sigma, "noise": noise, "noise_level": level, "config": cfg, "accuracy": accuracy,
            "sample": False, "trials": 3}


def _result1(internal: dict, external: dict, both: dict) -> list[dict]:
    return [_row(n, ds, {"internal": [internal[n, ds]] * 3, "external": [external[n, ds]] * 3,
                         "both": [both[n, ds]] * 3}, noise="gaussian", level=0.1)
            for n in ss.NETWORKS for ds in ss.DATASETS]


def _table(values: dict[str, float]) -> dict:
    return {(n, ds): values[n] - (0.1 if ds == "fashion-mnist" else 0.0) for n in ss.NETWORKS for ds in ss.DATASETS}


def test_result1_claims_hold_or_fail_with_the_rows():
    seed_like = _result1(_table({"mlp": 0.96, "rnn": 0.97, "cnn": 0.98}),
                         _table({"mlp": 0.94, "rnn": 0.955, "cnn": 0.96}),
                         {**_table({"mlp": 0.93, "rnn": 0.95, "cnn": 0.96}), ("mlp", "fashion-mnist"): 0.62,
                          ("rnn", "fashion-mnist"): 0.81, ("cnn", "fashion-mnist"): 0.42})
    assert ss.claim_cnn_best_internal(seed_like).verdict == ss.HOLDS
    assert ss.claim_rnn_parity_external(seed_like).verdict == ss.HOLDS
    assert ss.claim_rnn_beats_cnn_fashion_both(seed_like).verdict == ss.HOLDS
    assert ss.claim_rnn_beats_mlp(seed_like).verdict == ss.HOLDS
    assert "CNN 98.00 vs RNN 97.00, MLP 96.00" in ss.claim_cnn_best_internal(seed_like).evidence

    # the MLP ahead of the CNN under internal noise on one data set; the RNN 3 points behind under
    # external noise; the CNN ahead when both act
    contrary = _result1({**_table({"mlp": 0.96, "rnn": 0.97, "cnn": 0.98}), ("mlp", "mnist"): 0.99},
                        _table({"mlp": 0.94, "rnn": 0.93, "cnn": 0.96}),
                        _table({"mlp": 0.93, "rnn": 0.94, "cnn": 0.96}))
    for claim in (ss.claim_cnn_best_internal, ss.claim_rnn_parity_external, ss.claim_rnn_beats_cnn_fashion_both,
                  ss.claim_rnn_beats_mlp):
        assert claim(contrary).verdict == ss.FAILS, claim.__name__
    assert "(-3.00)" in ss.claim_rnn_parity_external(contrary).evidence
    assert ss.claim_cnn_best_internal([]).verdict == ss.UNTESTED


def test_noise_training_claims_follow_the_rows():
    def rows(gain):
        out = []
        for n in ss.NETWORKS:
            for ds in ss.DATASETS:
                for sigma, acc in ((0.0, 0.9), (0.1, 0.9 + gain)):
                    out.append(_row(n, ds, {c: [acc] * 2 for c in ss.COLUMNS}, sigma=sigma, noise="gaussian", level=0.1))
        return out

    assert ss.claim_noise_training_result1(rows(+0.01)).verdict == ss.HOLDS
    assert ss.claim_noise_training_result1(rows(-0.01)).verdict == ss.FAILS

    def reg(gain_cnn, gain_rnn_mnist, gain_rnn_fashion):
        out = []
        for n in ("cnn", "rnn"):
            for ds in ss.DATASETS:
                gain = gain_cnn if n == "cnn" else (gain_rnn_mnist if ds == "mnist" else gain_rnn_fashion)
                for s in (0.025, 0.05):
                    for sigma in (0.0, 0.1, 0.2):
                        acc = 0.9 - s + (gain if sigma == 0.1 else 0.0)
                        out.append(_row(n, ds, {"internal": [acc] * 2, "digital": [0.95]}, sigma=sigma,
                                        device__params__sigma_syn=s))
        return out

    assert ss.claim_regularisation_helps(reg(0.01, 0.001, 0.02)).verdict == ss.HOLDS
    assert ss.claim_rnn_regularisation_fashion(reg(0.01, 0.001, 0.02)).verdict == ss.HOLDS
    assert ss.claim_regularisation_helps(reg(-0.01, 0.001, 0.02)).verdict == ss.FAILS  # the CNN does not gain
    assert ss.claim_rnn_regularisation_fashion(reg(0.01, 0.02, 0.001)).verdict == ss.FAILS

    def test_noise(gain_gaussian):
        out = []
        for n in ("rnn", "cnn"):
            for sigma in (0.0, 0.1):
                out.append(_row(n, "fashion-mnist", {"internal": [0.85] * 2}, sigma=sigma))
                for name, levels in (("gaussian", (0.1, 0.3)), ("speckle", (0.1, 0.3))):
                    for lv in levels:
                        gain = (gain_gaussian if name == "gaussian" else 0.02) if sigma else 0.0
                        out.append(_row(n, "fashion-mnist", {"both": [0.8 - lv + gain] * 2}, sigma=sigma,
                                        noise=name, level=lv))
        return out

    assert ss.claim_rnn_test_noise(test_noise(0.02)).verdict == ss.HOLDS
    assert ss.claim_rnn_test_noise(test_noise(-0.02)).verdict == ss.FAILS  # speckle helps, Gaussian does not
    assert ss.claim_cnn_test_noise(test_noise(0.02)).verdict == ss.HOLDS
    assert ss.claim_cnn_test_noise(test_noise(-0.05)).verdict == ss.FAILS
    assert "gaussian 0.3: 50.00" in ss.claim_rnn_test_noise(test_noise(0.02)).evidence
    # the reference cell is internal noise without test-set noise (0.85), which is not the clean network
    assert "internal noise only 85.00; at the highest level" in ss.claim_rnn_test_noise(test_noise(0.02)).evidence


def test_time_step_claims_follow_the_rows():
    def rows(internal: dict[int, float], digital: float = 0.95):
        return [_row("rnn", ds, {"internal": [acc] * 2, "digital": [digital]}, network__params__time_steps=t)
                for ds in ss.DATASETS for t, acc in internal.items()]

    fewer_better = rows({4: 0.94, 7: 0.93, 14: 0.92, 28: 0.90})
    assert ss.claim_fewer_time_steps(fewer_better).verdict == ss.HOLDS
    assert ss.claim_noise_sublinear_in_t(fewer_better).verdict == ss.HOLDS  # cost 1 -> 5 points, T 4 -> 28
    more_better = rows({4: 0.90, 7: 0.92, 14: 0.93, 28: 0.94})
    assert ss.claim_fewer_time_steps(more_better).verdict == ss.FAILS
    assert ss.claim_noise_sublinear_in_t(more_better).verdict == ss.FAILS
    superlinear = rows({4: 0.949, 7: 0.94, 14: 0.92, 28: 0.90})  # cost 0.1 -> 5 points: 50x over 7x the steps
    assert ss.claim_noise_sublinear_in_t(superlinear).verdict == ss.FAILS
    assert "T=4 94.00" in ss.claim_fewer_time_steps(fewer_better).evidence


# -- the command line ----------------------------------------------------------------------------------
def _app() -> typer.Typer:
    from nvmkit.cli import app

    return app


def test_cli_runs_the_study_and_writes_the_report(tmp_path, monkeypatch, quick_report):
    monkeypatch.setenv(RUNNER_ENV, FAKE)
    out, _ = quick_report
    res = CliRunner().invoke(_app(), ["reproduce", "--quick", "--out", str(tmp_path / "r"), "--workers", "1",
                                      "--db", str(out / "results.db")])
    assert res.exit_code == 0, res.output
    output = " ".join(res.output.split())  # rich wraps lines at the terminal width
    assert "report:" in output and "0 points computed, 80 reused" in output
    assert "seed-quick" in output and "test_noise_clean" in output  # the plan table
    text = (tmp_path / "r" / "report.md").read_text()
    assert f"`{command_line(quick=True, out=tmp_path / 'r', db=out / 'results.db', workers=1)}`" in text


def test_cli_dry_run_and_user_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["reproduce", "--quick", "--dry-run", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    output = " ".join(res.output.split())
    assert "80 distinct points" in output and "80 to run" in output
    assert not (tmp_path / "report.md").exists()
    res = runner.invoke(_app(), ["reproduce", "--quick", "--section", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no section 'nope'" in res.output
    res = runner.invoke(_app(), ["reproduce", "--executor", "dask", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--scheduler" in res.output


def test_main_cli_has_reproduce():
    from nvmkit.cli import app

    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert "reproduce" in names


def test_study_file_with_a_custom_section(tmp_path, monkeypatch):
    path = tmp_path / "mine.toml"
    path.write_text(textwrap.dedent("""
        [study]
        name = "mine"
        [base]
        trials = 2
        dataset.source = "sample"
        [sections.t]
        kind = "time_steps"
        note = "only the RNN"
        [sections.t.base]
        network.name = "rnn"
        noise = "none"
        scenarios = ["digital", "internal"]
        [sections.t.grid]
        "network.params.time_steps" = [4, 28]
    """))
    result = reproduce(tmp_path / "out", study=str(path), workers=1, runner=FAKE)
    assert result.computed == 2
    report = (tmp_path / "out" / "report.md").read_text()
    assert "only the RNN" in report and "| 28 | 28 |" in report
    assert "No Result 1 rows" in report and "Not run." in report
    by_claim = {v.claim: v.verdict for v in result.verdicts}
    assert by_claim[ss.claim_cnn_best_internal([]).claim] == ss.UNTESTED
