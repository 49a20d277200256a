"""The energy-estimator abstract type and its report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar, Sequence

from nvmkit.core.component import Component
from nvmkit.core.device import Device
from nvmkit.core.footprint import LayerFootprint

#: the components every report breaks energy into
COMPONENTS = ("vmm", "neuron", "dac", "adc", "digital")


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


class EnergyEstimator(Component):
    """Abstract energy estimator."""

    kind: ClassVar[str] = "energy"
    #: parameter name -> where its default value comes from (paper, year, value)
    citations: ClassVar[dict[str, str]] = {}

    def estimate(self, footprint: Sequence[LayerFootprint], device: Device) -> EnergyReport:
        """Energy per inference of a deployed network with the given footprint on ``device``."""
        raise NotImplementedError
