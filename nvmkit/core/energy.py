"""The energy-estimator abstract type and its report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar, Sequence

from nvmkit.core.component import Component
from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError
from nvmkit.core.footprint import LayerFootprint

#: the components every report breaks energy into
COMPONENTS = ("vmm", "neuron", "dac", "adc", "digital")
#: the components of a training step: the forward read (the inference components), the backward
#: read through the transposed crossbars, and the update by pulses
BACKWARD_COMPONENTS = ("backward_vmm", "backward_dac", "backward_adc", "backward_digital")
UPDATE_COMPONENTS = ("update_pulses", "update_drive", "update_digital")
TRAINING_COMPONENTS = COMPONENTS + BACKWARD_COMPONENTS + UPDATE_COMPONENTS
#: phase -> its components, in a training step's order
PHASES = {"forward": COMPONENTS, "backward": BACKWARD_COMPONENTS, "update": UPDATE_COMPONENTS}


@dataclass(frozen=True)
class EnergyTerm:
    """One priced count: ``energy = count * unit_energy`` joules per inference."""

    layer: str
    component: str  # one of COMPONENTS
    count: float
    unit_energy: float  # J per counted event
    what: str = ""  # the counted event, e.g. "MAC", "ADC conversion"

    @property
    def energy(self) -> float:
        return self.count * self.unit_energy


@dataclass
class EnergyReport:
    """Energy per inference, broken down by layer and component (joules)."""

    estimator: str
    device: str
    terms: list[EnergyTerm]
    #: how the unit energies were chosen (source of the per-MAC energy, converter treatment, ...)
    notes: dict = field(default_factory=dict)
    #: False when a term prices something without physical units (an abstract device's cell read:
    #: V^2 G t of a unitless G); the total is then no energy, and reports say so instead of a figure
    physical: bool = True

    @property
    def total(self) -> float:
        return float(sum(t.energy for t in self.terms))

    def by_component(self) -> dict[str, float]:
        out = {c: 0.0 for c in COMPONENTS}
        for t in self.terms:
            out[t.component] = out.get(t.component, 0.0) + t.energy
        return out

    def counts_by_component(self) -> dict[str, float]:
        """The counted events behind each component (MACs, row drives, conversions, ...)."""
        out = {c: 0.0 for c in COMPONENTS}
        for t in self.terms:
            out[t.component] = out.get(t.component, 0.0) + t.count
        return out

    def by_layer(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.terms:
            out[t.layer] = out.get(t.layer, 0.0) + t.energy
        return out

    def to_dict(self) -> dict:
        return {
            "estimator": self.estimator,
            "device": self.device,
            "total_J": self.total,
            "by_component_J": self.by_component(),
            "by_layer_J": self.by_layer(),
            "terms": [asdict(t) | {"energy": t.energy} for t in self.terms],
            "notes": dict(self.notes),
            "physical": self.physical,
        }


@dataclass
class TrainingEnergyReport(EnergyReport):
    """Energy of one training step, by layer and component (joules): the forward read (the
    inference components of :data:`COMPONENTS`, x ``batch_size``), the backward read
    (:data:`BACKWARD_COMPONENTS`) and the update (:data:`UPDATE_COMPONENTS`).

    One step is one mini-batch of ``batch_size`` samples (1: one sample, the default), each
    read forward and backward, and the weight update applied as pulses (``pulses_per_cell``: the
    mean number of pulses a cell receives in the step, stated or measured). ``unpriced`` lists
    what was counted but could not be priced (a device that states no ``pulse_energy``): the total
    then leaves it out, and reports say so instead of pricing it at 0 silently.
    """

    batch_size: int = 1
    #: the mean pulses per cell per step that priced the update: one number, or layer -> number
    pulses_per_cell: float | dict = 0.0
    #: how the pulse counts were formed: "stochastic" (row and column trains) or "deterministic"
    pulses: str = "stochastic"
    unpriced: list = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unpriced

    def by_component(self) -> dict[str, float]:
        out = {c: 0.0 for c in TRAINING_COMPONENTS}
        for t in self.terms:
            out[t.component] = out.get(t.component, 0.0) + t.energy
        return out

    def counts_by_component(self) -> dict[str, float]:
        out = {c: 0.0 for c in TRAINING_COMPONENTS}
        for t in self.terms:
            out[t.component] = out.get(t.component, 0.0) + t.count
        return out

    def by_phase(self) -> dict[str, float]:
        """forward, backward, update (J per step)."""
        comp = self.by_component()
        return {phase: sum(comp[c] for c in names) for phase, names in PHASES.items()}

    def to_dict(self) -> dict:
        return super().to_dict() | {
            "kind": "training step",
            "batch_size": self.batch_size,
            "pulses": self.pulses,
            "pulses_per_cell": (dict(self.pulses_per_cell) if isinstance(self.pulses_per_cell, dict)
                                else self.pulses_per_cell),
            "by_phase_J": self.by_phase(),
            "unpriced": list(self.unpriced),
            "complete": self.complete,
        }


class EnergyEstimator(Component):
    """Abstract energy estimator."""

    kind: ClassVar[str] = "energy"
    #: parameter name -> where its default value comes from (paper, year, value)
    citations: ClassVar[dict[str, str]] = {}

    def estimate(self, footprint: Sequence[LayerFootprint], device: Device) -> EnergyReport:
        """Energy per inference of a deployed network with the given footprint on ``device``."""
        raise NotImplementedError

    def estimate_training_step(self, footprint: Sequence[LayerFootprint], device: Device, *,
                               pulses_per_cell: float | dict, batch_size: int = 1,
                               pulse_energy: float | None = None,
                               pulses: str = "stochastic") -> TrainingEnergyReport:
        """Energy of one training step (``batch_size`` samples read forward and backward, then
        the update by pulses, ``pulses_per_cell`` per cell on average; ``pulse_energy`` J per
        pulse per cell overrides the device's; ``pulses``: how the pulse counts are formed,
        ``"stochastic"`` trains per row and column or ``"deterministic"`` counts per cell, as
        in-place learning names them). An estimator that does not price training refuses in one
        line."""
        raise ConfigError(f"energy estimator '{self.name}' does not price a training step; "
                          "use --estimator crossbar")
