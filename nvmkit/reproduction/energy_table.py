"""Energy per inference without training: one network, the seed's table, and a sensitivity table.

Footprints come from the converted graph: a network plugin's model (built untrained) or a user's
Keras model is converted onto crossbars and :func:`nvmkit.engine.convert.analog_footprint` counts
what it does per inference; devices and the estimator come from the plugin registry by name.
``nvmkit energy`` (see :mod:`nvmkit.cli.energy`) prints what these functions return.

The seed (Bennett et al., Sandia 2021, "Training energy estimates" slide) gives energy per
inference for an MLP, the time-multiplexed RNN and a CNN on ReRAM and SONOS, but neither its layer
sizes nor its unit energies. Two sets of assumptions are compared with it:

- ``default``: the bundled network mappers' default architectures and each device's own
  literature energy per MAC (ReRAM 11 fJ, SONOS 20 fJ), conv layers priced as the engine maps
  them (im2col);
- ``seed``: the assumptions that best reproduce the seed (see :data:`ASSUMPTIONS`), each stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from nvmkit.core.device import Device
from nvmkit.core.energy import EnergyReport, TrainingEnergyReport
from nvmkit.core.errors import ConfigError
from nvmkit.core.registry import Registry, create_from_spec, get_registry, spec_params

#: what an untrained network plugin is built for when priced: MNIST's 28 x 28 images, 10 classes
INPUT_SHAPE = (28, 28)
CLASSES = 10

#: the seed's table, joules per inference: (network, device) -> total, VMM, neuron activation
SEED_TABLE: dict[tuple[str, str], dict[str, float]] = {
    ("MLP", "reram"): {"total": 4.24e-9, "vmm": 4.22e-9, "neuron": 15e-12},
    ("RNN", "reram"): {"total": 35.6e-9, "vmm": 35.5e-9, "neuron": 66e-12},
    ("CNN", "reram"): {"total": 480e-9, "vmm": 479e-9, "neuron": 358e-12},
    ("MLP", "sonos"): {"total": 6.04e-9, "vmm": 6.02e-9, "neuron": 15e-12},
    ("RNN", "sonos"): {"total": 42.7e-9, "vmm": 42.7e-9, "neuron": 66e-12},
    ("CNN", "sonos"): {"total": 2084e-9, "vmm": 2084e-9, "neuron": 358e-12},
}
NETWORKS = ("MLP", "RNN", "CNN")
DEVICES = ("reram", "sonos")
COLUMNS = ("total", "vmm", "neuron")


@dataclass(frozen=True)
class Assumptions:
    """Architectures and unit energies for a table; every choice is stated in ``why``."""

    name: str
    #: table label -> (network plugin name, its parameters), built through the bundled mappers
    networks: dict[str, tuple[str, dict]]
    #: parameters of the ``crossbar`` estimator
    estimator: dict = field(default_factory=dict)
    #: device name -> energy per MAC (J) replacing the device's own value
    energy_per_mac: dict = field(default_factory=dict)
    why: dict = field(default_factory=dict)


ASSUMPTIONS: dict[str, Assumptions] = {
    "default": Assumptions(
        "default",
        {"MLP": ("mlp", {"hidden": (500,)}),
         "RNN": ("rnn", {"time_steps": 4, "units": 128}),
         "CNN": ("cnn", {"filters": (32, 64), "kernel_size": 3, "padding": "valid", "dense": (128,)})},
        why={
            "networks": "the bundled mappers' defaults: MLP 784-500-10; RNN T=4, H=128 (a 325 x 128 "
                        "crossbar read 4 times); CNN conv3x3(32)-pool-conv3x3(64)-pool-dense(128)-dense(10)",
            "energy per MAC": "each device's own: ReRAM 11 fJ (Marinella et al., JETCAS 2018), SONOS "
                              "20 fJ (100 TOPS/W, 2 ops/MAC, Agrawal et al., IMW 2020)",
            "conv mapping": "im2col, as the engine maps conv layers",
        },
    ),
    "seed": Assumptions(
        "seed",
        {"MLP": ("mlp", {"hidden": (500,)}),
         "RNN": ("rnn", {"time_steps": 2, "units": 1024}),
         "CNN": ("cnn", {"filters": (32, 64), "kernel_size": 3, "padding": "valid", "dense": ()})},
        estimator={"conv_mapping": "unrolled"},
        energy_per_mac={"sonos": 15e-15},
        why={
            "MLP": "784-500-10, as the issue reads the seed: 4.22 nJ is 10.6 fJ per MAC and 15 pJ is "
                   "30 fJ per hidden ReLU",
            "RNN": "T=2, H=1024: the neuron energy (66 pJ at 30 fJ) puts T x H near 2200 and the VMM "
                   "energy (8.4x the MLP's) needs ~3M MACs; over all valid T and H the worst of the "
                   "three cells is best at T=2, H ~ 1050 (within 7%; T=4 at best 28%, larger T worse), "
                   "rounded to H=1024",
            "CNN": "the default CNN's conv blocks without its dense(128) layer, priced unrolled (one Toeplitz crossbar per conv layer, the seed's "
                   "'massive crossbar requirements'): its worst cell (neuron, 2.46x) is within 6% of "
                   "the best worst cell (2.33x) over 2-block CNNs (filters 4-128, kernel 3 or 5, valid "
                   "or same)",
            "SONOS energy per MAC": "15 fJ: the seed's MLP row implies 15.1 fJ (6.02 nJ / 397,510 MACs), "
                                    "inside the 10-20 fJ that Agrawal et al.'s 100 TOPS/W gives for 1 or "
                                    "2 ops per MAC; ReRAM keeps Marinella's 11 fJ",
        },
    ),
}


def get_assumptions(name: str) -> Assumptions:
    try:
        return ASSUMPTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown assumptions {name!r}; choose one of {', '.join(ASSUMPTIONS)}") from None


# -- one network on one device ---------------------------------------------------------------

def parse_network_spec(spec: str, registry: Registry | None = None, **extra) -> tuple[str, dict[str, Any]]:
    """``mlp``, ``rnn:time_steps=2,units=1024``, ``cnn:filters=16-32`` -> (name, the mapper's parameters).

    The spec grammar is ``nvmkit run``'s (:mod:`nvmkit.core.spec`; widths as ``16-32`` or
    ``[16, 32]``). The network plugin itself checks the parameters, so a bad value is reported
    under the name the user wrote (``hidden``), and the footprint is built from the same
    parameters a trained run would use, defaults included.
    """
    reg = registry or get_registry()
    name, params = spec_params("network", spec, reg)
    mapper = reg.create("network", name, params | extra)
    return name, mapper.get_config()


def _device(spec: str | Device, reg: Registry) -> Device:
    if isinstance(spec, Device):
        return spec
    return create_from_spec("device", spec, reg)


def _estimator(spec: str | dict | None, reg: Registry, **overrides):
    if spec is None or isinstance(spec, dict):
        params = dict(spec or {}) | overrides
        return reg.create("energy", "crossbar", params)
    name, params = spec_params("energy", spec, reg)
    return reg.create("energy", name, params | overrides)


def energy_report(network: str = "mlp", device: str | Device = "reram",
                  estimator: str | dict | None = None, registry: Registry | None = None, *,
                  model=None, crossbar=None, input_shape=INPUT_SHAPE, classes: int = CLASSES,
                  **network_params) -> EnergyReport:
    """Energy per inference of a network on a device, without training.

    ``network`` is a spec of any network plugin such as ``"rnn:time_steps=4,units=128"`` (extra
    keyword arguments are added to its parameters), built untrained for ``input_shape`` images
    and ``classes`` classes; ``model`` instead: a Keras model or the path of a ``.keras`` file.
    Either is converted onto crossbars (``crossbar``: a :class:`CrossbarConfig`, default its
    defaults) and priced from the converted graph's footprint
    (:func:`nvmkit.engine.convert.analog_footprint`). ``device`` a device spec or instance,
    ``estimator`` an estimator spec (``"crossbar:conv_mapping=unrolled"``) or a dict of
    ``crossbar`` parameters.
    """
    reg = registry or get_registry()
    dev = _device(device, reg)
    fp = _footprint(network, dev, reg, model, crossbar, input_shape, classes, network_params)
    return _estimator(estimator, reg).estimate(fp, dev)


def training_energy_report(network: str = "mlp", device: str | Device = "reram",
                           estimator: str | dict | None = None, registry: Registry | None = None, *,
                           pulses_per_cell: float | dict, batch_size: int = 1,
                           pulse_energy: float | None = None, pulses: str = "stochastic",
                           model=None, crossbar=None,
                           input_shape=INPUT_SHAPE, classes: int = CLASSES,
                           **network_params) -> TrainingEnergyReport:
    """Energy of one training step of a network on a device, without training: the sibling of
    :func:`energy_report`, with the same network, model, device, estimator and crossbar.

    One step is ``batch_size`` samples read forward and backward (the transposed crossbars) and
    the update by pulses: ``pulses_per_cell`` is the mean number of pulses a cell receives per
    step (one number, or analog layer name -> number; measured by learning in place, or an
    assumption), priced at ``pulse_energy`` J per pulse per cell, else the device's own
    ``pulse_energy`` (a device without one: the report's ``unpriced`` says so and its total
    leaves the pulses out). ``pulses``: how the counts are formed, ``"stochastic"`` row and
    column trains per read, or ``"deterministic"`` counts per weight from the step's gradient
    (computed digitally), as in-place learning names them. An
    estimator that does not price training refuses in one line.
    """
    reg = registry or get_registry()
    dev = _device(device, reg)
    fp = _footprint(network, dev, reg, model, crossbar, input_shape, classes, network_params)
    return _estimator(estimator, reg).estimate_training_step(
        fp, dev, pulses_per_cell=pulses_per_cell, batch_size=batch_size, pulse_energy=pulse_energy,
        pulses=pulses)


def _footprint(network, dev, reg, model, crossbar, input_shape, classes, network_params) -> list:
    if model is None:
        name, params = parse_network_spec(network, reg, **network_params)
        return mapper_footprint(reg.create("network", name, params), dev, crossbar, input_shape, classes)
    return model_footprint(model, dev, crossbar)


def model_footprint(model, device: Device, crossbar=None) -> list:
    """The per-inference footprint of a Keras model (or ``.keras`` path) converted onto crossbars."""
    from nvmkit.engine.convert import analog_footprint, convert
    from nvmkit.engine.crossbar_config import CrossbarConfig

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from nvmkit.workflow.user_model import load_model_file

        model = load_model_file(model)
    config = crossbar if crossbar is not None else CrossbarConfig()
    calibration = None
    if any(b is not None for b in (config.converters.dac_bits, config.converters.adc_bits)):
        # the footprint does not depend on converter ranges; any inputs calibrate them
        import numpy as np

        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        calibration = np.random.default_rng(0).uniform(0, 1, (8, *shape)).astype(np.float32)
    return analog_footprint(convert(model, device, config, calibration_data=calibration))


def mapper_footprint(mapper, device: Device, crossbar=None, input_shape=INPUT_SHAPE,
                     classes: int = CLASSES) -> list:
    """The footprint of a network plugin's model, built untrained (weights do not change counts)."""
    return model_footprint(mapper.build(tuple(input_shape), int(classes)), device, crossbar)


def report_rows(report: EnergyReport) -> list[dict]:
    """The report as table rows: layer, component, counted event, count, unit (J), energy (J)."""
    return [{"layer": t.layer, "component": t.component, "what": t.what, "count": t.count,
             "unit_J": t.unit_energy, "energy_J": t.energy} for t in report.terms]


# -- the seed's table ------------------------------------------------------------------------

@dataclass
class EnergyRow:
    """Our energy per inference for one network on one device, beside the seed's (J)."""

    network: str
    device: str
    ours: dict[str, float]  # total, vmm, neuron, dac, adc, digital
    seed: dict[str, float]  # total, vmm, neuron
    counts: dict[str, float]  # counted events per component
    energy_per_mac: float

    def ratio(self, column: str) -> float:
        return self.ours[column] / self.seed[column]

    def to_dict(self) -> dict:
        return {"network": self.network, "device": self.device, "ours_J": dict(self.ours),
                "seed_J": dict(self.seed), "ratio": {c: self.ratio(c) for c in COLUMNS},
                "counts": dict(self.counts), "energy_per_mac_J": self.energy_per_mac}


def _row(label: str, device: Device, report: EnergyReport) -> EnergyRow:
    comp = report.by_component()
    ours = {"total": report.total, **comp}
    e_mac = next(iter(report.notes.get("energy_per_mac", {}).values()), float("nan"))
    return EnergyRow(label, device.name, ours, SEED_TABLE[(label, device.name)],
                     report.counts_by_component(), e_mac)


def seed_energy_table(assumptions: str | Assumptions = "seed",
                      devices: Sequence[str | Device] = DEVICES, estimator: dict | None = None,
                      registry: Registry | None = None) -> list[EnergyRow]:
    """Our energy per inference beside the seed's, for every network and device of its table.

    ``devices`` are names (created from the registry with their default parameters) or Device
    instances named ``reram``/``sonos`` (the seed's table has no other device); ``estimator``
    holds ``crossbar`` parameters that override the assumptions' own (e.g. converters="explicit").
    """
    a = get_assumptions(assumptions) if isinstance(assumptions, str) else assumptions
    reg = registry or get_registry()
    rows = []
    for dev_spec in devices:
        dev = _device(dev_spec, reg)
        if (NETWORKS[0], dev.name) not in SEED_TABLE:
            raise ConfigError(f"the seed's table has no device '{dev.name}'; use reram or sonos")
        extra = {"energy_per_mac": a.energy_per_mac[dev.name]} if dev.name in a.energy_per_mac else {}
        est = _estimator(a.estimator | dict(estimator or {}), reg, **extra)
        for label in NETWORKS:
            rows.append(_row(label, dev, est.estimate(_network_fp(a, label, dev, reg), dev)))
    return rows


_FOOTPRINTS: dict = {}


def _network_fp(a: Assumptions, label: str, device: Device, reg: Registry) -> list:
    """A table's network through its bundled mapper and the converted graph, built once per process
    (the footprint depends on the architecture and the mapping, not on the device's physics)."""
    name, params = a.networks[label]
    key = (name, repr(sorted(params.items())))
    if key not in _FOOTPRINTS:
        _FOOTPRINTS[key] = mapper_footprint(reg.create("network", name, params), device)
    return _FOOTPRINTS[key]


def _nj(x: float) -> str:
    return f"{x * 1e9:.4g}"


def render_seed_table(rows: Sequence[EnergyRow], title: str = "") -> str:
    """Markdown: ours, the seed's and their ratio for total, VMM and neuron energy (nJ)."""
    head = ("| network | device | total (nJ) | seed | ratio | VMM (nJ) | seed | ratio | neuron (nJ) "
            "| seed | ratio | DAC+ADC (nJ) | digital (nJ) | fJ/MAC |")
    lines = ([f"**{title}**", ""] if title else []) + [head, "|" + " --- |" * 14]
    for r in rows:
        cells = [r.network, r.device]
        for c in COLUMNS:
            cells += [_nj(r.ours[c]), _nj(r.seed[c]), f"{r.ratio(c):.2f}"]
        cells += [_nj(r.ours["dac"] + r.ours["adc"]), _nj(r.ours["digital"]),
                  f"{r.energy_per_mac * 1e15:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_assumptions(assumptions: str | Assumptions) -> str:
    a = get_assumptions(assumptions) if isinstance(assumptions, str) else assumptions
    return "\n".join(f"- {k}: {v}" for k, v in a.why.items())


# -- the seed's claims, checked with our numbers -------------------------------------------

@dataclass(frozen=True)
class Claim:
    claim: str
    holds: bool
    evidence: str


def _get(rows, net, dev) -> EnergyRow:
    return next(r for r in rows if r.network == net and r.device == dev)


def seed_claims(rows: Sequence[EnergyRow]) -> list[Claim]:
    """The seed's energy claims, each tested on our rows."""
    devs = sorted({r.device for r in rows}, key=DEVICES.index)
    out = []
    ratios = {d: _get(rows, "CNN", d).ours["total"] / _get(rows, "RNN", d).ours["total"] for d in devs}
    out.append(Claim("the RNN spends 15-40x less energy than the CNN",
                     all(15 <= v <= 40 for v in ratios.values()),
                     ", ".join(f"{d}: CNN/RNN = {v:.3g}x" for d, v in ratios.items())))
    least = {d: min(NETWORKS, key=lambda n: _get(rows, n, d).ours["total"]) for d in devs}
    out.append(Claim("the MLP is the least energy-expensive network", all(v == "MLP" for v in least.values()),
                     ", ".join(f"{d}: least is {v}" for d, v in least.items())))
    share = {(r.network, r.device): r.ours["vmm"] / r.ours["total"] for r in rows}
    out.append(Claim("the VMM (crossbar) dominates", all(v > 0.5 for v in share.values()),
                     f"VMM share {min(share.values()):.1%} to {max(share.values()):.1%} of the total"))
    dig = {(r.network, r.device): r.ours["digital"] / r.ours["total"] for r in rows}
    worst = max(dig, key=dig.get)
    out.append(Claim("max-pool and softmax are negligible", dig[worst] < 0.05,
                     f"digital share at most {dig[worst]:.2%} ({worst[0]} on {worst[1]})"))
    mlp = {d: _get(rows, "MLP", d).ours["vmm"] for d in devs}
    rnn = {d: _get(rows, "RNN", d).ours["vmm"] for d in devs}
    if {"reram", "sonos"} <= set(devs):
        ours = (rnn["sonos"] - rnn["reram"]) / (mlp["sonos"] - mlp["reram"])
        out.append(Claim("SONOS-minus-ReRAM VMM energy of the RNN is 4.00x the MLP's (seed's table)",
                         abs(ours - 4.0) < 0.2,
                         f"ours {ours:.2f}x; in a per-MAC model it equals the RNN/MLP MAC ratio"))
    return out


def render_claims(claims: Sequence[Claim]) -> str:
    lines = ["| seed's claim | holds | our numbers |", "| --- | --- | --- |"]
    lines += [f"| {c.claim} | {'yes' if c.holds else 'no'} | {c.evidence} |" for c in claims]
    return "\n".join(lines)


# -- sensitivity to the energy per MAC -----------------------------------------------------

SENSITIVITY_ENERGIES = (11e-15, 15e-15, 20e-15, 50e-15, 100e-15)


def energy_sensitivity(assumptions: str | Assumptions = "seed",
                       energies: Sequence[float] = SENSITIVITY_ENERGIES, device: str | Device = "reram",
                       estimator: dict | None = None,
                       registry: Registry | None = None) -> dict[str, dict[float, float]]:
    """Total energy per inference (J) of each network for each energy per MAC (J).

    With the per-MAC energy given, nothing left depends on the device (neurons, converters and
    digital work are CMOS).
    """
    a = get_assumptions(assumptions) if isinstance(assumptions, str) else assumptions
    reg = registry or get_registry()
    dev = _device(device, reg)
    out: dict[str, dict[float, float]] = {}
    for label in NETWORKS:
        fp = _network_fp(a, label, dev, reg)
        est_params = a.estimator | dict(estimator or {})
        out[label] = {e: _estimator(est_params, reg, energy_per_mac=e).estimate(fp, dev).total
                      for e in energies}
    return out


def render_sensitivity(table: dict[str, dict[float, float]]) -> str:
    energies = list(next(iter(table.values())))
    lines = ["| network | " + " | ".join(f"{e * 1e15:.3g} fJ/MAC" for e in energies) + " |",
             "|" + " --- |" * (len(energies) + 1)]
    for net, row in table.items():
        lines.append(f"| {net} | " + " | ".join(f"{row[e] * 1e9:.4g} nJ" for e in energies) + " |")
    return "\n".join(lines)


# -- a training step of the seed's networks ---------------------------------------------------

TRAINING_DEVICES = ("reram", "sonos", "ecram")


@dataclass
class TrainingRow:
    """One training step of one network on one device (J), beside the seed's "training energy"."""

    network: str
    device: str
    by_phase: dict[str, float]  # forward, backward, update
    by_component: dict[str, float]
    total: float
    cells: int  # programmed cells (both of a differential pair): what the update pulses
    unpriced: list
    pulse_energy: float | None  # J per pulse per cell that priced the update (None: not priced)
    seed_total: float | None  # the seed's "Total Energy/Op" for this cell of its table, if any

    @property
    def break_even(self) -> float:
        """J per cell per step (pulses per cell x pulse energy) at which the update pulses cost as
        much as the forward and backward reads together."""
        return (self.by_phase["forward"] + self.by_phase["backward"]) / self.cells

    def to_dict(self) -> dict:
        return {"network": self.network, "device": self.device, "by_phase_J": dict(self.by_phase),
                "by_component_J": dict(self.by_component), "total_J": self.total, "cells": self.cells,
                "unpriced": list(self.unpriced), "pulse_energy_J": self.pulse_energy,
                "seed_total_J": self.seed_total, "break_even_J_per_cell": self.break_even}


def training_energy_table(assumptions: str | Assumptions = "default",
                          devices: Sequence[str | Device] = TRAINING_DEVICES, *,
                          pulses_per_cell: float = 1.0, pulse_energy: float | None = None,
                          batch_size: int = 1, pulses: str = "stochastic", estimator: dict | None = None,
                          registry: Registry | None = None) -> list[TrainingRow]:
    """One training step of the seed's three networks on each device, with the seed's total.

    The networks and per-MAC energies are the assumptions' own; conv layers are priced as the
    engine maps them (im2col) whatever the assumptions say, since an unrolled crossbar is not
    updated by outer products. ``pulse_energy`` (J per pulse per cell) overrides every device's;
    without it a device that states none leaves its pulses unpriced (the row says so).
    """
    a = get_assumptions(assumptions) if isinstance(assumptions, str) else assumptions
    reg = registry or get_registry()
    rows = []
    for dev_spec in devices:
        dev = _device(dev_spec, reg)
        extra = {"energy_per_mac": a.energy_per_mac[dev.name]} if dev.name in a.energy_per_mac else {}
        est = _estimator(a.estimator | dict(estimator or {}) | {"conv_mapping": "im2col"}, reg, **extra)
        for label in NETWORKS:
            fp = _network_fp(a, label, dev, reg)
            r = est.estimate_training_step(fp, dev, pulses_per_cell=pulses_per_cell,
                                           batch_size=batch_size, pulse_energy=pulse_energy, pulses=pulses)
            priced = pulse_energy if pulse_energy is not None else getattr(dev, "pulse_energy", None)
            seed = SEED_TABLE.get((label, dev.name), {}).get("total")
            rows.append(TrainingRow(label, dev.name, r.by_phase(), r.by_component(), r.total,
                                    sum(f.cells for f in fp if f.tiles), list(r.unpriced), priced, seed))
    return rows


def render_training_table(rows: Sequence[TrainingRow]) -> str:
    """Markdown: forward, backward and update energy of one step, its total and the seed's (nJ)."""
    head = ("| network | device | forward (nJ) | backward (nJ) | update pulses (nJ) | update other (nJ) "
            "| total (nJ) | seed's \"training\" total (nJ) | total / seed | cells | pJ per pulse "
            "| reads = pulses at (fJ per cell) |")
    lines = [head, "|" + " --- |" * 12]
    for r in rows:
        pulses = r.by_component["update_pulses"]
        other = r.by_phase["update"] - pulses
        priced = not r.unpriced
        total = _nj(r.total) if priced else f"{_nj(r.total)} + pulses"
        seed = _nj(r.seed_total) if r.seed_total is not None else "-"
        ratio = f"{r.total / r.seed_total:.3g}" if (r.seed_total and priced) else "-"
        lines.append("| " + " | ".join([
            r.network, r.device, _nj(r.by_phase["forward"]), _nj(r.by_phase["backward"]),
            _nj(pulses) if priced else "not priced", _nj(other), total, seed, ratio, f"{r.cells:,}",
            f"{r.pulse_energy * 1e12:.3g}" if r.pulse_energy is not None else "none stated",
            f"{r.break_even * 1e15:.3g}"]) + " |")
    return "\n".join(lines)
