"""Crossbar parameters: mapping, non-idealities and converters, with named reference configurations."""

from __future__ import annotations

from dataclasses import dataclass, field

from nvmkit.core.component import check_fraction, check_int, check_nonnegative
from nvmkit.core.errors import ConfigError
from nvmkit.core.params import Params

SCHEMES = ("differential", "offset")

#: The most converter bits the float32 engine can resolve. A b-bit converter rounds
#: (v - lo) / step to an integer code in [0, 2**b - 1]; float32 holds integers exactly only up to
#: 2**24 (a 24-bit significand), so with more bits neighbouring codes merge, and from about 150
#: bits on the step itself underflows to zero in float32 (its smallest subnormal is 1.4e-45):
#: every output becomes NaN, i.e. chance accuracy.
MAX_CONVERTER_BITS = 24
BIAS_MODES = ("row", "digital")


@dataclass
class MappingConfig(Params):
    """How weights become conductances on tiles."""

    # "differential": W = (G+ - G-) Wmax / (Gmax - Gmin), zero weight = both cells at Gmin;
    # "offset": one cell per weight, W = (G - (Gmin + Gmax)/2) 2 Wmax / (Gmax - Gmin), the
    # mid-range current subtracted by an ideal reference column
    scheme: str = "differential"
    bias: str = "row"  # "row": an extra crossbar row driven at full scale; "digital": added after the ADC
    clip_percentile: float = 100.0  # map |W| up to this percentile to Gmax and clip beyond; 100 = max
    tile_rows: int = 1152  # Sandia's SONOS array size (Xiao et al., TCAS-I 2022)
    tile_cols: int = 256

    def validate(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"mapping.scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.bias not in BIAS_MODES:
            raise ConfigError(f"mapping.bias must be one of {', '.join(BIAS_MODES)}, got {self.bias!r}")
        p = check_nonnegative("mapping", "clip_percentile", self.clip_percentile)
        if not 50 <= p <= 100:
            raise ConfigError(f"mapping.clip_percentile must lie in [50, 100], got {p}")
        self.tile_rows = check_int("mapping", "tile_rows", self.tile_rows, 1)
        self.tile_cols = check_int("mapping", "tile_cols", self.tile_cols, 1)


DRIFT_MODELS = ("device", "power-law")


@dataclass
class NonIdealityConfig(Params):
    """Which device effects act; each is applied where it physically happens.

    Order of a programming: target -> programming error (at the spread the device shows
    ``drift_time`` after programming) -> clip to [Gmin, Gmax] -> drift over ``drift_time`` ->
    stuck-at faults. Read noise is drawn afresh on every read.

    ``drift_model = "power-law"`` replaces the device's own drift by
    G(t) = G(t0) (t / t0)^-nu for t > t0, nu ~ N(drift_nu, drift_nu_sigma) per cell: the
    phase-change-memory law (Ielmini et al., IEEE TED 2007; nu ~ 0.05 and a cell-to-cell spread
    of nu in Joshi et al., Nat. Commun. 2020), usable for any device as a what-if.
    """

    programming_error: bool = True  # sampled once per programming (per Monte Carlo trial)
    read_noise: bool = True  # re-sampled on every read (every VMM, every RNN time step)
    quantize: bool = True  # round targets to the device's conductance levels
    clip_conductance: bool = True  # keep programmed conductances inside [Gmin, Gmax]
    drift_time: float = 0.0  # seconds between programming and inference
    drift_model: str = "device"  # "device": the device's own model; "power-law": see above
    drift_nu: float = 0.05  # power-law exponent (drift_model = "power-law" only)
    drift_nu_sigma: float = 0.0  # cell-to-cell std of the exponent
    drift_t0: float = 1.0  # s, time after programming at which the power law starts
    stuck_at_gmin: float = 0.0  # fraction of cells stuck at Gmin
    stuck_at_gmax: float = 0.0  # fraction of cells stuck at Gmax

    def validate(self) -> None:
        for name in ("programming_error", "read_noise", "quantize", "clip_conductance"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"nonideal.{name} must be true or false, got {getattr(self, name)!r}")
        self.drift_time = check_nonnegative("nonideal", "drift_time", self.drift_time)
        if self.drift_model not in DRIFT_MODELS:
            raise ConfigError(f"nonideal.drift_model must be one of {', '.join(DRIFT_MODELS)}, "
                              f"got {self.drift_model!r}")
        self.drift_nu = check_nonnegative("nonideal", "drift_nu", self.drift_nu)
        self.drift_nu_sigma = check_nonnegative("nonideal", "drift_nu_sigma", self.drift_nu_sigma)
        if check_nonnegative("nonideal", "drift_t0", self.drift_t0) == 0:
            raise ConfigError("nonideal.drift_t0 must be > 0 seconds, e.g. 1.0")
        self.stuck_at_gmin = check_fraction("nonideal", "stuck_at_gmin", self.stuck_at_gmin)
        self.stuck_at_gmax = check_fraction("nonideal", "stuck_at_gmax", self.stuck_at_gmax)
        if self.stuck_at_gmin + self.stuck_at_gmax > 1:
            raise ConfigError("nonideal.stuck_at_gmin + stuck_at_gmax must not exceed 1")


@dataclass
class ConverterConfig(Params):
    """DAC on every driven row, ADC on every read column (per tile). None = ideal converter."""

    dac_bits: int | None = None
    adc_bits: int | None = None
    # full-scale ranges; None = calibrated on data by Crossbar.calibrate (max |input|; max
    # |ideal column output| per row tile). adc_range is in the layer's output units
    # (weight x input), i.e. the column current already divided by the mapping's gain.
    dac_range: float | None = None
    adc_range: float | None = None

    def validate(self) -> None:
        for name in ("dac_bits", "adc_bits"):
            v = getattr(self, name)
            if v is not None:
                bits = check_int("converters", name, v, 1)
                if bits > MAX_CONVERTER_BITS:
                    raise ConfigError(
                        f"converters.{name} must lie in 1..{MAX_CONVERTER_BITS} (float32 resolves at most "
                        f"{MAX_CONVERTER_BITS} bits), got {bits}; omit it for an ideal converter"
                    )
                setattr(self, name, bits)
        for name in ("dac_range", "adc_range"):
            v = getattr(self, name)
            if v is not None and check_nonnegative("converters", name, v) == 0:
                raise ConfigError(f"converters.{name} must be > 0 (or omitted to calibrate)")


@dataclass
class WireConfig(Params):
    """Resistance of the tiles' metal wires, per cell segment (ohm): the IR drop of
    :mod:`nvmkit.engine.wires`. 0 (default) = ideal wires, today's engine exactly.

    A row (input) wire is driven at one end and runs past every cell of its row, a column
    (summation) wire runs past every cell of its column to a virtual ground at its end; one
    segment is the wire between two neighbouring cells (and from the last cell to the driver
    or the ground). :data:`WIRE_22NM` is the value of a 22 nm copper wire over a 2F segment.
    """

    row_resistance: float = 0.0  # ohm per cell segment of a row (input) wire
    col_resistance: float = 0.0  # ohm per cell segment of a column (summation) wire

    def validate(self) -> None:
        self.row_resistance = check_nonnegative("wires", "row_resistance", self.row_resistance)
        self.col_resistance = check_nonnegative("wires", "col_resistance", self.col_resistance)

    @property
    def on(self) -> bool:
        return self.row_resistance > 0 or self.col_resistance > 0


#: Ohm per cell segment of a 22 nm-wide copper wire 2F = 44 nm long: resistivity 5.41e-8 ohm m and
#: height/width 2.0 (NeuroSim's interconnect table after the ITRS: Chen, Peng and Yu, "NeuroSim: a
#: circuit-level macro model for benchmarking neuro-inspired architectures in online learning",
#: IEEE TCAD 37(12), 2018): 5.41e-8 x 44e-9 / (22e-9 x 44e-9) = 2.46 ohm.
WIRE_22NM = 5.41e-8 * 44e-9 / (22e-9 * 2.0 * 22e-9)


@dataclass
class CrossbarConfig(Params):
    mapping: MappingConfig = field(default_factory=MappingConfig)
    nonideal: NonIdealityConfig = field(default_factory=NonIdealityConfig)
    converters: ConverterConfig = field(default_factory=ConverterConfig)
    wires: WireConfig = field(default_factory=WireConfig)

    @classmethod
    def preset(cls, name: str) -> "CrossbarConfig":
        try:
            return cls.from_dict(PRESETS[name])
        except KeyError:
            raise ConfigError(
                f"unknown crossbar preset {name!r}; presets: {', '.join(PRESETS)}"
            ) from None


#: Named reference configurations.
PRESETS: dict[str, dict] = {
    # every device effect on, ideal converters: isolates the device
    "default": {},
    # no device effect at all: the analog result equals the digital one to float32 precision
    "ideal": {"nonideal": {"programming_error": False, "read_noise": False, "quantize": False,
                           "clip_conductance": False}},
    # 8-bit converters, as in Sandia's SONOS inference accelerator analysis (Xiao et al., TCAS-I 2022)
    "converters-8bit": {"converters": {"dac_bits": 8, "adc_bits": 8}},
    # every device effect plus the IR drop of 22 nm copper wires (WIRE_22NM, 2.46 ohm per segment) on
    # 64 x 64 tiles, short enough for the first-order model (nvmkit/engine/wires.py) with SONOS-class
    # cells (the seed's networks drop at most ~8% there); ReRAM's 50-225 uS cells need smaller tiles
    "wires-22nm": {"mapping": {"tile_rows": 64, "tile_cols": 64},
                   "wires": {"row_resistance": round(WIRE_22NM, 2), "col_resistance": round(WIRE_22NM, 2)}},
}
