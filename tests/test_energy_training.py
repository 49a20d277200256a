"""Energy of one training step: forward read, backward read through the transposed crossbars, the
update by pulses; counts by hand, scaling, what is not priced, the inference report untouched, the
API and the command."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nvmkit.core.device import Device
from nvmkit.core.energy import (COMPONENTS, TRAINING_COMPONENTS, EnergyEstimator, EnergyReport,
                                TrainingEnergyReport)
from nvmkit.core.errors import ConfigError
from nvmkit.core.footprint import LayerFootprint, TileShape
from nvmkit.reproduction import energy_table as et
from nvmkit.reproduction import footprint_builders as fb
from nvmkit_plugins.energy.crossbar import GRADIENT_MAC_ENERGY, PULSE_COUNT_ENERGY, CrossbarEnergy

PJ = 1e-12


class _Cell(Device):
    """A conductance device without an update energy (1 uS .. 11 uS, 0.2 V, 5 ns)."""

    name = "test-cell"

    def __init__(self):
        self._set_range(1.0, 11.0)
        self._set_energy(0.2, 5e-9, None)


class _PulseCell(_Cell):
    """The same cell with a stated pulse energy: 2 pJ per pulse per cell (a test value)."""

    name = "test-pulse-cell"
    pulse_energy = 2 * PJ


def _explicit(**kw):
    # per-MAC 1 J, DAC 10 J, ADC 100 J, digital op 1000 J: each count is readable in the energies
    return CrossbarEnergy(converters="explicit", energy_per_mac=1.0, dac_energy=10.0, adc_energy=100.0,
                          adc_scaling="fixed", **kw)


def _count(report, comp, layer=None):
    return sum(t.count for t in report.terms if t.component == comp and (layer is None or t.layer == layer))


def _energy(report, comp, layer=None):
    return sum(t.energy for t in report.terms if t.component == comp and (layer is None or t.layer == layer))


def _two_layers(tile=(4, 3)):
    """784 -> 9 (first, read forward only) -> 7 on 4 x 3 tiles: the second layer's 10 x 7 matrix
    (bias row) is cut into row blocks 4, 4, 2 and column blocks 3, 3, 1: 9 tiles."""
    return [fb.dense_footprint("first", 784, 9), fb.dense_footprint("second", 9, 7, relu=False, tile=tile),
            fb.softmax_footprint("softmax", 7)]


# -- the backward read: transposed, converted on the rows --------------------------------------

def test_backward_drives_the_columns_and_converts_the_rows_of_every_tile():
    """Forward: each tile's rows driven, its columns converted (30 row drives, 21 conversions per
    read). Backward: the error on the columns (21 drives), converted on the rows (30). Swapping the
    sides, or counting the untiled matrix (7 drives, 10 conversions), fails here."""
    fp = _two_layers()
    second = fp[1]
    assert sum(t.rows for t in second.tiles) == 30 and sum(t.cols for t in second.tiles) == 21
    for batch in (1, 3):
        r = _explicit().estimate_training_step(fp, _PulseCell(), pulses_per_cell=1.0, batch_size=batch)
        assert _count(r, "dac", "second") == 30 * batch and _count(r, "adc", "second") == 21 * batch
        assert _count(r, "backward_dac", "second") == 21 * batch
        assert _count(r, "backward_adc", "second") == 30 * batch
        assert _count(r, "backward_vmm", "second") == 70 * batch  # 10 x 7 MACs per transposed read
        assert _energy(r, "backward_adc", "second") == 30 * batch * 100.0  # the same converters
        assert _energy(r, "backward_dac", "second") == 21 * batch * 10.0


def test_the_first_layer_is_not_read_backward_and_a_recurrent_one_is_read_t_minus_1_times():
    fp = _two_layers()
    r = _explicit().estimate_training_step(fp, _PulseCell(), pulses_per_cell=1.0)
    for comp in ("backward_vmm", "backward_dac", "backward_adc"):
        assert _count(r, comp, "first") == 0
    full = _explicit().estimate_training_step(fp, _PulseCell(), pulses_per_cell=1.0, backward_first_layer=True)
    assert _count(full, "backward_vmm", "first") == 785 * 9
    assert _count(full, "backward_adc", "first") == 785 and _count(full, "backward_dac", "first") == 9
    # the RNN's crossbar [x_t; h_t-1; 1] -> h_t, T = 4: the error through time needs T - 1 reads first,
    # T when a layer below needs the error of its inputs
    rnn = fb.rnn_footprint("rnn", 4, 16)
    rows = rnn.n_in
    r = _explicit().estimate_training_step([rnn], _PulseCell(), pulses_per_cell=1.0)
    assert _count(r, "backward_vmm", "rnn") == 3 * rows * 16 and _count(r, "backward_adc", "rnn") == 3 * rows
    r = _explicit().estimate_training_step([fb.dense_footprint("d", 784, 784), rnn], _PulseCell(),
                                           pulses_per_cell=1.0)
    assert _count(r, "backward_vmm", "rnn") == 4 * rows * 16


def _core(name, kind, rows, cols, reads, **extra):
    return LayerFootprint(name, kind, tiles=(TileShape(rows, cols),), reads_per_inference=reads,
                          n_in=rows, n_out=cols, extra=extra)


@pytest.mark.parametrize("cores, reads", [
    # a grouped conv first: every group reads the image, none is read backward
    ([_core("conv", "conv", 10, 4, 36, groups=2), _core("conv/group1", "conv", 10, 4, 36, groups=2)], [0, 0]),
    # a separable conv first: the pointwise core's input is the depthwise core's output
    ([_core("sep", "conv", 10, 4, 36, depthwise=True), _core("sep/pointwise", "conv", 4, 8, 36)], [0, 36]),
    # a GRU first: its input core reads x_t alone, its recurrent core carries the error through time
    ([_core("gru", "rnn", 8, 48, 5, cell="gru"), _core("gru/recurrent", "rnn", 17, 48, 5, cell="gru")], [0, 4]),
    # an LSTM first: one [x; h] crossbar
    ([_core("lstm", "rnn", 25, 64, 5, cell="lstm")], [4]),
])
def test_the_first_layers_cores_are_read_backward_only_where_an_error_is_needed(cores, reads):
    fp = [*cores, fb.dense_footprint("out", 8, 3, relu=False)]
    r = _explicit().estimate_training_step(fp, _PulseCell(), pulses_per_cell=1.0)
    for core, n in zip(cores, reads):
        assert _count(r, "backward_adc", core.name) == n * core.n_in, core.name
    assert _count(r, "backward_adc", "out") == 9  # not the first layer: every read


def test_backward_digital_work_by_hand():
    """ReLU derivatives (one per activation), the output error (one per class), max-pool routing
    (one per pooled output) and a conv layer's col2im adds (one per converted row value)."""
    conv = fb.conv_footprint("conv", (8, 8, 1), 4)  # 3x3 valid: 36 positions, 10 x 4 crossbar
    pool = fb.maxpool_footprint("pool", (6, 6, 4))   # 3 x 3 x 4 = 36 outputs, 3 comparisons each
    conv2 = fb.conv_footprint("conv2", (3, 3, 4), 2)  # 1 position, 37 x 2
    fp = [conv, pool, conv2, fb.softmax_footprint("softmax", 2)]
    r = _explicit(digital_op_energy=1.0).estimate_training_step(fp, _PulseCell(), pulses_per_cell=1.0)
    assert _count(r, "backward_digital", "conv") == 36 * 4  # ReLU derivatives; no read backward (first)
    assert _count(r, "backward_digital", "pool") == 36
    assert _count(r, "backward_digital", "conv2") == 37 + 2  # col2im adds + ReLU derivatives
    assert _count(r, "backward_digital", "softmax") == 2
    assert _count(r, "backward_vmm", "conv2") == 37 * 2


# -- the update --------------------------------------------------------------------------------

def test_update_energy_is_cells_times_pulses_times_pulse_energy():
    """Linear in the pulses per cell and in the pulse energy, both cells of a pair counted; a
    dict prices each layer with its own count. Ignoring the pulses or the pair fails here."""
    fp = _two_layers()
    cells = {"first": 785 * 9 * 2, "second": 10 * 7 * 2}
    assert {f.name: f.cells for f in fp if f.tiles} == cells
    for pulses in (0.0, 0.5, 3.0):
        r = _explicit().estimate_training_step(fp, _PulseCell(), pulses_per_cell=pulses)
        for name, n in cells.items():
            assert _energy(r, "update_pulses", name) == pytest.approx(n * pulses * 2 * PJ, rel=1e-12)
        given = _explicit().estimate_training_step(fp, _PulseCell(), pulses_per_cell=pulses, pulse_energy=5 * PJ)
        assert given.by_component()["update_pulses"] == pytest.approx(sum(cells.values()) * pulses * 5 * PJ)
    r = _explicit().estimate_training_step(fp, _PulseCell(), pulses_per_cell={"first": 0.1, "second": 4.0})
    assert _energy(r, "update_pulses", "first") == pytest.approx(cells["first"] * 0.1 * 2 * PJ)
    assert _energy(r, "update_pulses", "second") == pytest.approx(cells["second"] * 4.0 * 2 * PJ)
    offset = [fb.dense_footprint("d", 3, 4, devices_per_weight=1)]
    r = _explicit().estimate_training_step(offset, _PulseCell(), pulses_per_cell=1.0)
    assert _count(r, "update_pulses") == 16


def test_rank1_updates_per_step_drive_lines_and_compute_pulse_counts():
    """One rank-1 update per forward read of each sample: (n_in + n_out) pulse counts computed and
    every tile's row and column lines driven, per update."""
    conv = fb.conv_footprint("conv", (8, 8, 1), 4)  # 36 positions, 10 x 4, one tile
    for batch in (1, 2):
        r = _explicit().estimate_training_step([conv], _PulseCell(), pulses_per_cell=1.0, batch_size=batch,
                                               pulse_line_energy=7.0)
        assert _count(r, "update_digital") == 36 * batch * (10 + 4)
        assert r.by_component()["update_digital"] == pytest.approx(36 * batch * 14 * PULSE_COUNT_ENERGY)
        assert _count(r, "update_drive") == 36 * batch * (10 + 4)
        assert r.by_component()["update_drive"] == 36 * batch * 14 * 7.0
        assert _count(r, "update_pulses") == 80  # pulses per cell per step: not per sample
    r = _explicit().estimate_training_step([conv], _PulseCell(), pulses_per_cell=1.0)
    assert r.by_component()["update_drive"] == 0 and "not priced" in r.notes["pulse_lines"]


def test_deterministic_counts_compute_the_gradient_per_weight():
    """Counts per weight from the step's gradient: n_in x n_out digital MACs per read of every
    sample, one rounding per weight per step, one drive of every line per step; the pulses
    themselves cost the same as with trains."""
    conv = fb.conv_footprint("conv", (8, 8, 1), 4)  # 36 positions, 10 x 4, one tile
    for batch in (1, 2):
        r = _explicit().estimate_training_step([conv], _PulseCell(), pulses_per_cell=1.5, batch_size=batch,
                                               pulses="deterministic", pulse_line_energy=7.0)
        macs = [t for t in r.terms if t.what == "gradient MAC (digital)"]
        assert [(t.count, t.unit_energy) for t in macs] == [(36 * batch * 40, GRADIENT_MAC_ENERGY)]
        rounding = [t for t in r.terms if t.what == "pulse count per weight"]
        assert [(t.count, t.unit_energy) for t in rounding] == [(40, PULSE_COUNT_ENERGY)]
        assert _count(r, "update_drive") == 14 and r.by_component()["update_drive"] == 14 * 7.0
        stochastic = _explicit().estimate_training_step([conv], _PulseCell(), pulses_per_cell=1.5,
                                                        batch_size=batch)
        assert r.by_component()["update_pulses"] == stochastic.by_component()["update_pulses"] == 80 * 1.5 * 2 * PJ
        assert r.pulses == "deterministic" and r.to_dict()["pulses"] == "deterministic"


def test_a_device_without_pulse_energy_is_reported_unpriced_not_zero():
    fp = _two_layers()
    r = _explicit().estimate_training_step(fp, _Cell(), pulses_per_cell=2.0)
    assert not r.complete and len(r.unpriced) == 1 and "states no pulse_energy" in r.unpriced[0]
    assert _count(r, "update_pulses") == 2.0 * (785 * 9 * 2 + 10 * 7 * 2)  # still counted
    assert all("NOT PRICED" in t.what for t in r.terms if t.component == "update_pulses")
    d = r.to_dict()
    assert d["complete"] is False and d["unpriced"] == r.unpriced
    assert "NOT PRICED" in d["notes"]["pulse_energy"]
    priced = _explicit().estimate_training_step(fp, _Cell(), pulses_per_cell=2.0, pulse_energy=PJ)
    assert priced.complete and priced.total > r.total


# -- sums, the forward phase and the inference report ---------------------------------------

def test_layers_phases_and_components_each_sum_to_the_total():
    fp = _two_layers()  # unit energies of one order (fJ to pJ): a term left out of a sum shows
    r = CrossbarEnergy(converters="explicit", energy_per_mac=10e-15).estimate_training_step(
        fp, _PulseCell(), pulses_per_cell=0.7, batch_size=2, pulse_line_energy=0.5 * PJ)
    assert isinstance(r, TrainingEnergyReport)
    assert min(r.by_component().values()) > 1e-6 * r.total  # every component counts (rel. 1e-12 below)
    total = sum(t.count * t.unit_energy for t in r.terms)
    assert sum(r.by_layer().values()) == pytest.approx(total, rel=1e-12)
    assert sum(r.by_phase().values()) == pytest.approx(total, rel=1e-12)
    assert sum(r.by_component().values()) == pytest.approx(total, rel=1e-12)
    assert r.total == pytest.approx(total, rel=1e-12)
    d = json.loads(json.dumps(r.to_dict()))
    assert set(d["by_component_J"]) == set(TRAINING_COMPONENTS) and set(d["by_phase_J"]) == {"forward", "backward", "update"}
    assert all(v > 0 for v in d["by_phase_J"].values())
    assert d["batch_size"] == 2 and d["pulses_per_cell"] == 0.7 and d["kind"] == "training step"


def test_forward_phase_is_the_inference_estimate_times_the_batch():
    fp = _two_layers()
    est = _explicit()
    inference = est.estimate(fp, _PulseCell())
    for batch in (1, 5):
        r = est.estimate_training_step(fp, _PulseCell(), pulses_per_cell=1.0, batch_size=batch)
        forward = [t for t in r.terms if t.component in COMPONENTS]
        assert [(t.layer, t.component, t.count / batch, t.unit_energy) for t in forward] == \
            [(t.layer, t.component, t.count, t.unit_energy) for t in inference.terms]
        assert r.by_phase()["forward"] == pytest.approx(batch * inference.total)


def test_the_inference_report_is_unchanged():
    """The estimate per inference has the keys, components and terms it had before training was
    priced, and the MLP on reram costs what its counts say: (392,500 + 5,010) MACs x 11 fJ + 500
    ReLUs x 30 fJ + 10 softmax steps x 30 fJ (4.38791 nJ, docs/energy.md)."""
    fp = [fb.dense_footprint("dense", 784, 500), fb.dense_footprint("dense_1", 500, 10, relu=False),
          fb.softmax_footprint("softmax", 10)]
    r = CrossbarEnergy().estimate(fp, et._device("reram", et.get_registry()))
    assert type(r) is EnergyReport
    d = r.to_dict()
    assert list(d) == ["estimator", "device", "total_J", "by_component_J", "by_layer_J", "terms", "notes", "physical"]
    assert list(d["by_component_J"]) == list(COMPONENTS) == ["vmm", "neuron", "dac", "adc", "digital"]
    assert list(d["notes"]) == ["energy_per_mac", "converters", "conv_mapping"]
    assert {t["component"] for t in d["terms"]} <= set(COMPONENTS)
    assert set(d["terms"][0]) == {"layer", "component", "count", "unit_energy", "what", "energy"}
    assert r.total == pytest.approx((392_500 + 5_010) * 11e-15 + 500 * 30e-15 + 10 * 30e-15, rel=1e-12)


# -- refusals --------------------------------------------------------------------------------

class _InferenceOnly(EnergyEstimator):
    name = "inference-only"

    def estimate(self, footprint, device):
        return EnergyReport(self.name, device.name, [])


def test_an_estimator_that_does_not_price_training_refuses_in_one_line():
    with pytest.raises(ConfigError) as exc:
        _InferenceOnly().estimate_training_step(_two_layers(), _PulseCell(), pulses_per_cell=1.0)
    assert "does not price a training step" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("kw, words", [
    ({"pulses_per_cell": -1.0}, "pulses_per_cell must be >= 0"),
    ({"pulses_per_cell": None}, "needs pulses_per_cell"),
    ({"pulses_per_cell": {"first": 1.0}}, "missing second"),
    ({"pulses_per_cell": {"first": 1.0, "second": 1.0, "third": 1.0}}, "unknown third"),
    ({"pulses_per_cell": 1.0, "batch_size": 0}, "batch_size"),
    ({"pulses_per_cell": 1.0, "pulse_energy": -1.0}, "pulse_energy"),
    ({"pulses_per_cell": 1.0, "pulses": "random"}, "pulses must be one of stochastic, deterministic"),
])
def test_bad_training_parameters_fail_in_one_line(kw, words):
    with pytest.raises(ConfigError) as exc:
        _explicit().estimate_training_step(_two_layers(), _PulseCell(), **kw)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_an_unrolled_conv_is_refused_for_training():
    conv = fb.conv_footprint("conv", (8, 8, 1), 4)
    with pytest.raises(ConfigError, match="conv_mapping=im2col"):
        CrossbarEnergy(conv_mapping="unrolled").estimate_training_step([conv], _PulseCell(), pulses_per_cell=1.0)


# -- the API, the seed's networks and the command ------------------------------------------

def test_training_energy_report_prices_the_converted_graph():
    import nvmkit

    r = nvmkit.training_energy_report("mlp:hidden=16", _PulseCell(), pulses_per_cell=1.0)
    assert isinstance(r, nvmkit.TrainingEnergyReport)
    inference = nvmkit.energy_report("mlp:hidden=16", _PulseCell())
    assert r.by_phase()["forward"] == pytest.approx(inference.total)
    # 785 x 16 and 17 x 10 crossbars, differential pairs, one pulse each at 2 pJ
    assert r.by_component()["update_pulses"] == pytest.approx((785 * 16 + 17 * 10) * 2 * 2 * PJ)


def test_training_table_of_the_seed_networks():
    rows = et.training_energy_table("default", devices=[_PulseCell()], pulses_per_cell=1.0)
    assert [r.network for r in rows] == ["MLP", "RNN", "CNN"] and all(not r.unpriced for r in rows)
    for r in rows:
        assert r.by_component["update_pulses"] == pytest.approx(r.cells * 2 * PJ)
        assert r.seed_total is None  # the seed's table has no such device
        # at the break-even J per cell, the pulses cost what both reads cost
        assert r.break_even * r.cells == pytest.approx(r.by_phase["forward"] + r.by_phase["backward"])
    text = et.render_training_table(rows)
    assert text.count("| test-pulse-cell |") == 3
    unpriced = et.training_energy_table("default", devices=[_Cell()], pulses_per_cell=1.0)
    assert all(r.unpriced for r in unpriced) and "not priced" in et.render_training_table(unpriced)


@pytest.fixture(scope="module")
def cli():
    from nvmkit.cli import app

    return app


def test_cli_training_json_and_errors(cli, tmp_path):
    res = CliRunner().invoke(cli, ["energy", "-n", "mlp:hidden=16", "-d", "reram", "--training",
                                   "--pulses-per-cell", "2", "--pulse-energy", "1e-12", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["kind"] == "training step" and data["complete"] is True
    assert data["by_component_J"]["update_pulses"] == pytest.approx(2 * (785 * 16 + 17 * 10) * 2 * 1e-12)
    res = CliRunner().invoke(cli, ["energy", "-n", "mlp:hidden=16", "-d", "reram", "--training",
                                   "--pulses-per-cell", "2"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    from nvmkit.core.registry import create_from_spec

    stated = getattr(create_from_spec("device", "reram"), "pulse_energy", None)  # once its update model lands
    assert ("WITHOUT the update pulses" in res.output) == (stated is None), res.output
    import keras

    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(6, activation="relu", name="hidden"),
                              keras.layers.Dense(3, activation="softmax", name="out")])
    model.save(tmp_path / "two.keras")
    res = CliRunner().invoke(cli, ["energy", "--model", str(tmp_path / "two.keras"), "-d", "reram", "--training",
                                   "--json", "--pulses-per-cell", "hidden=0.5,out=3", "--pulse-energy", "1e-12"])
    assert res.exit_code == 0, res.output
    pulses = {t["layer"]: t["energy"] for t in json.loads(res.output)["terms"] if t["component"] == "update_pulses"}
    assert pulses == pytest.approx({"hidden": 0.5 * 13 * 6 * 2e-12, "out": 3 * 7 * 3 * 2e-12})  # pairs: 2 cells
    for args, words in ((["--training"], "--pulses-per-cell"),
                        (["--training", "--pulses-per-cell", "lots"], "is not a number"),
                        (["--model", str(tmp_path / "two.keras"), "--training", "--pulses-per-cell", "hidden=1,nope=2"],
                         "unknown nope"),
                        (["--training", "--seed-table", "--pulses-per-cell", "dense=1"], "one number"),
                        (["--pulse-energy", "1e-12"], "add --training"),
                        (["--pulses", "deterministic"], "add --training"),
                        (["--training", "--pulses-per-cell", "1", "--sensitivity"], "--sensitivity")):
        bad = CliRunner().invoke(cli, ["energy", *args])
        assert bad.exit_code == 2 and words in bad.output, bad.output
