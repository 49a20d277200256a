"""The learning-in-place study (issue 22, point 5): its plan, its jobs and its table arithmetic.

Fast: no training runs here (the study's runs are `nvmkit reproduce --section in_place`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nvmkit.core.errors import ConfigError
from nvmkit.reproduction import in_place_study as ips
from nvmkit.reproduction.in_place_study import Cell, InPlacePlan, softbounds_spec
from nvmkit.reproduction.study import load_study, parse_study

# two-sided 95% Student t quantiles (tables: e.g. NIST/SEMATECH e-Handbook, Table 1.3.6.7.2)
T975 = {2: 12.706, 3: 4.303, 4: 3.182, 10: 2.262}


# -- the plan ------------------------------------------------------------------------------------------
def test_default_plan_is_valid_and_round_trips():
    plan = InPlacePlan()
    plan.validate()
    assert InPlacePlan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize("bad, words", [
    ({"seedz": 3}, "unknown key 'seedz'"),
    ({"seeds": 1}, "seeds must be an integer >= 2"),
    ({"asymmetry": [0.0, 1.0]}, "asymmetry values must lie in (-1, 1)"),
    ({"nonlinearity": [1.5]}, "nonlinearity values must lie in [0, 1]"),
    ({"nonlinearity": []}, "nonlinearity must be a non-empty list"),
    ({"symmetric": ["yes"]}, "symmetric must be a non-empty list of true/false"),
    ({"finetune_steps": [0, 100, 50]}, "finetune_steps must be increasing"),
    ({"finetune_steps": [0, 0, 5]}, "finetune_steps must be increasing"),
    ({"scratch_headroom": 0.5}, "scratch_headroom must be >= 1"),
    ({"assumed_step": 2.0}, "assumed_step is a fraction"),
    ({"scratch_learning_rate": 0}, "scratch_learning_rate must be a number > 0"),
    ({"finetune_devices": ["reram", 3]}, "finetune_devices must be a list of names"),
    ({"device_aware": "yes"}, "device_aware must be true or false"),
])
def test_bad_plans_are_refused_in_one_line(bad, words):
    with pytest.raises(ConfigError) as e:
        InPlacePlan.from_dict(bad, "study.toml [sections.x] plan")
    assert words in str(e.value) and "study.toml [sections.x] plan" in str(e.value)
    assert "\n" not in str(e.value)


def test_the_softbounds_grid_runs_each_distinct_device_once():
    # nonlinearity 0 has no shape to make symmetric: one cell per asymmetry there, two elsewhere.
    # (Bug caught: the symmetric/asymmetric pair run at nl = 0 too, doubling 3 jobs per seed.)
    plan = InPlacePlan(scratch_devices=["ideal", "ecram"], asymmetry=[0.0, 0.2, 0.5],
                       nonlinearity=[0.0, 0.5, 1.0], symmetric=[False, True])
    specs = plan.scratch_specs()
    assert len(specs) == len(set(specs)) == 2 + 3 * (1 + 2 * 2)
    assert specs[:2] == ["ideal", "ecram"]
    assert softbounds_spec(0.2, 0.0, False) in specs and softbounds_spec(0.2, 0.0, True) not in specs
    assert softbounds_spec(0.5, 1.0, True) in specs and softbounds_spec(0.5, 1.0, False) in specs
    for spec in specs[2:]:
        a, nl, sym = ips.parse_softbounds(spec)
        assert a in plan.asymmetry and nl in plan.nonlinearity and sym in plan.symmetric
    assert ips.parse_softbounds("reram") is None


def test_jobs_go_a_seed_at_a_time_with_unique_keys():
    plan = InPlacePlan(seeds=3, scratch_devices=["ideal"], asymmetry=[0.0], nonlinearity=[0.0, 1.0],
                       finetune_networks=["mlp", "cnn"], finetune_devices=["reram", "sonos+assumed"])
    jobs = plan.jobs(base_seed=7)
    per_seed = len(plan.scratch_specs()) + 2 * 2
    assert len(jobs) == 3 * per_seed == len({j.key for j in jobs})
    # a run cut short leaves fewer chips per cell, never a missing cell: seeds are outermost
    assert [j.seed for j in jobs] == sorted(j.seed for j in jobs)
    assert {j.seed for j in jobs[:per_seed]} == {7} and {j.seed for j in jobs} == {7, 8, 9}


def test_the_test_subset_is_seeded_distinct_and_sorted():
    a, b = ips.test_subset(10_000, 500, 0), ips.test_subset(10_000, 500, 0)
    assert np.array_equal(a, b) and len(np.unique(a)) == 500 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, ips.test_subset(10_000, 500, 1))
    assert np.array_equal(ips.test_subset(300, 500, 0), np.arange(300))


# -- the study file ------------------------------------------------------------------------------------
STUDY = """
[study]
name = "t"
[sections.ip]
kind = "in_place"
[sections.ip.plan]
seeds = 2
finetune_steps = [0, 10]
"""


def test_an_in_place_section_carries_its_plan():
    st = parse_study(STUDY, "t.toml")
    assert st.sections[0].plan == InPlacePlan(seeds=2, finetune_steps=[0, 10])
    with pytest.raises(ConfigError, match=r"t.toml \[sections.ip\] plan: unknown key 'stepz'"):
        parse_study(STUDY + "stepz = 3\n", "t.toml")
    with pytest.raises(ConfigError, match="only an in_place section has a plan"):
        parse_study(STUDY.replace('kind = "in_place"', 'kind = "result1"'), "t.toml")


def test_the_bundled_seed_study_has_the_in_place_section_and_runs_no_sweep_point_for_it():
    from nvmkit.reproduction.reproduce import plan_reproduction

    sec = load_study("seed").by_kind("in_place")
    assert len(sec) == 1 and isinstance(sec[0].plan, InPlacePlan)
    plan = plan_reproduction("seed", sections=["in_place"])
    assert [(s.kind, pts) for s, pts in plan.sections] == [("in_place", [])]


# -- devices -------------------------------------------------------------------------------------------
def test_an_assumed_update_model_is_a_constant_step_of_the_plan_and_only_for_a_device_without_one():
    from nvmkit import create_from_spec

    plan = InPlacePlan(assumed_step=0.004)
    assert not create_from_spec("device", "sonos").pulse_updatable
    dev = ips.device_for("sonos+assumed", plan)
    assert dev.pulse_updatable and dev.name == "sonos"
    g = np.linspace(dev.g_min, dev.g_max, 5)
    np.testing.assert_allclose(dev.pulse_step(g, True), 0.004 * dev.g_range, rtol=1e-6)
    np.testing.assert_allclose(dev.pulse_step(g, False), -0.004 * dev.g_range, rtol=1e-6)
    assert np.all(dev.pulse_step_sigma(g, True) == 0)
    # the device keeps its own physics: SONOS still drifts
    assert ips._drifts(dev, plan.drift_time) and not ips._drifts(create_from_spec("device", "reram"), 1e5)
    with pytest.raises(ConfigError, match="states its own update model"):
        ips.device_for("reram+assumed", plan)


# -- statistics and tables -----------------------------------------------------------------------------
@pytest.mark.parametrize("n", sorted(T975))
def test_the_95_percent_interval_uses_students_t(n):
    # (Bug caught: a normal 1.96 or a t with n degrees of freedom instead of n - 1.)
    assert ips.t_quantile(n) == pytest.approx(T975[n], abs=6e-4)
    values = list(np.linspace(0.90, 0.94, n))
    c = Cell.of(values)
    sd = float(np.std(values, ddof=1))
    assert c.mean == pytest.approx(np.mean(values)) and c.std == pytest.approx(sd) and c.n == n
    assert c.ci95 == pytest.approx(T975[n] * sd / math.sqrt(n), rel=2e-4)
    assert c.pct() == f"{100 * c.mean:.2f} ± {100 * c.ci95:.2f}"
    assert math.isnan(Cell.of([0.9]).ci95) and Cell.of([]) is None


def _records(values: dict[str, list[float]], finetune: dict | None = None) -> dict:
    recs = {}
    for spec, accs in values.items():
        for s, a in enumerate(accs):
            recs[f"scratch|mlp|{spec}|{s}"] = {"part": "scratch", "network": "mlp", "device": spec, "seed": s,
                                               "accuracy": a}
    for (net, dev), rows in (finetune or {}).items():
        for s, row in enumerate(rows):
            recs[f"finetune|{net}|{dev}|{s}"] = {"part": "finetune", "network": net, "device": dev, "seed": s, **row}
    return recs


PLAN = InPlacePlan(scratch_devices=["ideal"], asymmetry=[0.0, 0.5], nonlinearity=[0.0, 1.0],
                   finetune_networks=["mlp"], finetune_devices=["reram", "sonos+assumed"], finetune_steps=[0, 30])
REF, ASYM = softbounds_spec(0, 0, False), softbounds_spec(0, 1, False)
SYM, ALONE = softbounds_spec(0, 1, True), softbounds_spec(0.5, 0, False)


def test_cells_pool_the_seeds_of_each_device():
    cells = ips.scratch_cells(_records({REF: [0.90, 0.92, 0.94], ASYM: [0.80, 0.81]}))
    assert cells[REF].mean == pytest.approx(0.92) and cells[REF].n == 3
    assert cells[ASYM].mean == pytest.approx(0.805) and cells[ASYM].n == 2


def test_the_verdict_follows_the_numbers():
    # asymmetric non-linearity loses 10 points, the others 1: it hurts most, beyond the intervals
    worst = {REF: [0.90, 0.91, 0.92], ASYM: [0.80, 0.81, 0.82], SYM: [0.89, 0.90, 0.91], ALONE: [0.89, 0.90, 0.91]}
    text = ips.asymmetry_verdict(ips.scratch_cells(_records(worst)), PLAN)
    assert text.startswith("asymmetric non-linearity hurts most (beyond the 95% intervals): it costs 9.00 points "
                           "more than symmetric non-linearity (nl = 1), beyond the intervals; 9.00 points more than "
                           "asymmetry alone (a = 0.5), beyond the intervals.")
    assert "asymmetric non-linearity (nl = 1): +10.00 ± " in text
    # the same losses, but the symmetric non-linearity loses most: the verdict turns
    # (Bug caught: comparing the wrong cells, or a sign slip in the loss.)
    swapped = dict(worst, **{ASYM: worst[SYM], SYM: worst[ASYM]})
    assert ips.asymmetry_verdict(ips.scratch_cells(_records(swapped)), PLAN).startswith(
        "asymmetric non-linearity does not hurt most here")
    # most, but within the intervals: said so
    close = dict(worst, **{ASYM: [0.86, 0.89, 0.92], SYM: [0.87, 0.90, 0.93]})
    assert ips.asymmetry_verdict(ips.scratch_cells(_records(close)), PLAN).startswith(
        "asymmetric non-linearity costs most, but not beyond the 95% intervals")
    assert ips.asymmetry_verdict({}, PLAN).startswith("not tested")


def test_the_tables_show_each_cell_where_it_belongs():
    recs = _records({"ideal": [0.9, 0.92], REF: [0.9, 0.92], ASYM: [0.8, 0.82]},
                    {("mlp", "sonos+assumed"): [{"curve": {"0": 0.95, "30": 0.97}, "digital": 0.98,
                                                 "drift_compensated": 0.96},
                                                {"curve": {"0": 0.93, "30": 0.95}, "digital": 0.98,
                                                 "drift_compensated": 0.94}]})
    scratch = ips.render_scratch(ips.scratch_cells(recs), PLAN).splitlines()
    assert scratch[2] == f"| ideal | {Cell.of([0.9, 0.92]).pct()} |"
    row = next(line for line in scratch if line.startswith("| 0 | asymmetric |"))
    assert row == f"| 0 | asymmetric | {Cell.of([0.9, 0.92]).pct()} | {Cell.of([0.8, 0.82]).pct()} |"
    assert any(line.startswith("| 0.5 | asymmetric | not run |") for line in scratch)
    fine = ips.render_finetune(ips.finetune_cells(recs), PLAN).splitlines()
    assert fine[0] == ("| network | device | digital | in place, 0 steps | in place, 30 steps | device-aware trained "
                       "| drift-compensated |")
    assert fine[2].startswith("| MLP | reram | not run |")
    assert fine[3] == (f"| MLP | sonos (assumed update) | {Cell.of([0.98, 0.98]).pct()} | {Cell.of([0.95, 0.93]).pct()} "
                       f"| {Cell.of([0.97, 0.95]).pct()} | — | {Cell.of([0.96, 0.94]).pct()} |")


def test_the_remedies_are_paired_differences_per_chip():
    # chip 0 gains 2 points by learning in place, chip 1 gains 1: the mean 1.5 and the CI of the two
    # differences (t, 1 degree of freedom), not of the accuracies (which spread by 3 points between chips).
    # (Bug caught: intervals of the unpaired cells in quadrature, 20x wider here; or the wrong step.)
    recs = _records({}, {("rnn", "reram"): [{"curve": {"0": 0.95, "30": 0.97}, "device_aware": 0.96},
                                            {"curve": {"0": 0.92, "30": 0.93}, "device_aware": 0.91}]})
    plan = InPlacePlan(finetune_networks=["rnn"], finetune_devices=["reram"], finetune_steps=[0, 30])
    g = ips.finetune_gains(recs, plan)[("rnn", "reram")]
    assert g["in place"].mean == pytest.approx(0.015) and g["in place"].n == 2
    assert g["in place"].ci95 == pytest.approx(T975[2] * np.std([0.02, 0.01], ddof=1) / math.sqrt(2), rel=1e-3)
    assert g["device-aware"].mean == pytest.approx(0.0) and "drift-compensated" not in g
    row = ips.render_gains(recs, plan).splitlines()[2]
    assert row == (f"| RNN | reram | +1.50 ± {100 * g['in place'].ci95:.2f} | +0.00 ± "
                   f"{100 * g['device-aware'].ci95:.2f} | — |")
