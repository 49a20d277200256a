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
    # mid-range current subtracted by an ideal reference column: noiseless, undrifted, exact
    # (a reference column of real cells would add its own programming error, read noise and
    # drift to every output of the tile; docs/plugins.md, "Conventions")
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
#: where programming clips a cell from below: at 0 (a conductance cannot be negative) or at g_min
CLIP_FLOORS = ("zero", "g_min")
#: "global": each layer's output rescaled per trial by a reference read (see NonIdealityConfig)
DRIFT_COMPENSATIONS = ("none", "global")


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

    ``clip_floor``: programming clips each cell to [floor, Gmax]. "zero" (default since issue
    21): only a negative conductance (or read current) is impossible; a cell aimed at Gmin can
    land below it, as write-verify leaves it within its spread either side of the target.
    "g_min" (the former default): clip at Gmin. In a differential pair the idle cell of every
    nonzero weight sits at Gmin, so clipping there keeps only its upward errors: it rectifies
    them into a bias toward zero (ReRAM at 50 uS: an error e of std 4.33 uS becomes max(e, 0),
    of mean 1.73 uS and std 2.53 uS, every nonzero weight pulled toward 0 by about 1% of Wmax).
    The ceiling stays Gmax, the top of the device's programming window.

    ``drift_compensation = "global"``: global drift compensation (Joshi et al., Nat. Commun.
    2020; Le Gallo et al., IEEE TED 2018; aihwkit's GlobalDriftCompensation): each core's output
    is multiplied, per trial, after the ADC and before a digital bias, by ``a = m0 / mt``,
    where ``m0`` is the mean |output| of a reference read of the array as programmed (one-hot
    inputs on every row, the bias row included: the mean |programmed weight|) and ``mt`` that
    of the same read at ``drift_time``.
    The reference reads are taken without read noise (a chip averages them). Off by default.
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
    clip_floor: str = "zero"  # "zero" or "g_min" (see above)
    drift_compensation: str = "none"  # "none" or "global" (see above)

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
        if self.clip_floor not in CLIP_FLOORS:
            raise ConfigError(f"nonideal.clip_floor must be one of {', '.join(CLIP_FLOORS)}, "
                              f"got {self.clip_floor!r}")
        if self.drift_compensation is None:  # `--set ...drift_compensation=none` reads as None
            self.drift_compensation = "none"
        if self.drift_compensation not in DRIFT_COMPENSATIONS:
            raise ConfigError(f"nonideal.drift_compensation must be one of "
                              f"{', '.join(DRIFT_COMPENSATIONS)}, got {self.drift_compensation!r}")


DAC_SIGNS = ("data", "signed", "unsigned")


@dataclass
class ConverterConfig(Params):
    """DAC on every driven row, ADC on every read column (per tile). None = ideal converter.

    ``dac_sign``: "data" (default) makes a DAC signed when its calibration inputs hold a negative
    value, else unsigned (2^b levels on [0, R]: a negative input reads as 0). A first layer
    calibrated on clean images (pixels in [0, 1]) is therefore unsigned, and the negative pixels
    that Gaussian test-set noise makes are cut to 0 by it, as a unipolar input driver would.
    "signed" keeps them (2^b - 1 levels on [-R, R]: one bit of resolution less); "unsigned"
    forces the unipolar DAC.
    """

    dac_bits: int | None = None
    adc_bits: int | None = None
    # full-scale ranges; None = calibrated on data by Crossbar.calibrate (max |input|; max
    # |ideal column output| per row tile). adc_range is in the layer's output units
    # (weight x input), i.e. the column current already divided by the mapping's gain.
    dac_range: float | None = None
    adc_range: float | None = None
    # Errors of each column's ADC (docs/api.md, "Converter errors"), all in its own LSB. Offset and
    # gain error are fixed per chip (one draw per column of each tile, chip.trials says whether a
    # Monte Carlo trial is a new chip); the input-referred noise is drawn afresh at every conversion.
    adc_offset: float = 0.0  # std of a column ADC's offset, LSB
    adc_gain_error: float = 0.0  # std of a column ADC's relative gain error (0.01 = 1%)
    adc_noise: float = 0.0  # std of the input-referred noise of one conversion, LSB
    # calibrated ADC full scale = adc_headroom x max |ideal partial sum| (> 1 leaves room for the
    # offsets, gain errors and noise above; < 1 clips the largest sums for a finer step)
    adc_headroom: float = 1.0
    dac_sign: str = "data"  # "data", "signed" or "unsigned" (see above)

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
        if self.dac_sign not in DAC_SIGNS:
            raise ConfigError(f"converters.dac_sign must be one of {', '.join(DAC_SIGNS)}, "
                              f"got {self.dac_sign!r}")
        if self.dac_sign == "signed" and self.dac_bits == 1:
            raise ConfigError("converters.dac_sign = 'signed' needs dac_bits >= 2 (one bit is the sign)")
        self._validate_adc_errors()

    def _validate_adc_errors(self) -> None:
        for name in ("adc_offset", "adc_gain_error", "adc_noise"):
            v = check_nonnegative("converters", name, getattr(self, name))
            setattr(self, name, v)
            if v and self.adc_bits is None:
                raise ConfigError(f"converters.{name} models a real ADC; set converters.adc_bits too "
                                  "(an ideal converter has no errors)")
        if self.adc_gain_error >= 0.2:
            raise ConfigError(f"converters.adc_gain_error is a relative std (0.01 = 1%); got "
                              f"{self.adc_gain_error}, give a value below 0.2")
        if check_nonnegative("converters", "adc_headroom", self.adc_headroom) == 0:
            raise ConfigError("converters.adc_headroom must be > 0 (1.0: the calibrated peak is full scale)")
        self.adc_headroom = float(self.adc_headroom)


CHIP_TRIALS = ("new-chip", "same-chip")


@dataclass
class ChipConfig(Params):
    """What is fixed when a chip is made, and whether a Monte Carlo trial is a new chip.

    ``trials = "new-chip"`` (default): every trial is another chip, its stuck cells, variation and
    ADC offsets and gains drawn anew (chip k from the run's seed, spawn key (3, k)), as the
    engine always drew stuck cells. ``"same-chip"``: the trials reprogram one chip (spawn key
    (3, 0) for all): only the programming error and the read noise differ between trials, so
    their spread is the programming's alone. Trial 0 is the same chip in both modes.

    Cell-to-cell spread of the range (lognormal, median the device's Gmin/Gmax): ``gmin_spread`` and
    ``gmax_spread`` are the std of ln Gmin and ln Gmax over cells. Spatially correlated variation
    multiplies every conductance of a region: ``tile_spread`` the std of ln of one factor per tile,
    ``gradient`` a linear ramp across each tile whose end-to-end change along its (random) direction
    is ``gradient`` (0.1 = 10%). The model and its sources: :meth:`nvmkit.engine.crossbar.Crossbar.draw_chip`.
    """

    trials: str = "new-chip"
    gmin_spread: float = 0.0
    gmax_spread: float = 0.0
    tile_spread: float = 0.0
    gradient: float = 0.0

    def validate(self) -> None:
        if self.trials not in CHIP_TRIALS:
            raise ConfigError(f"chip.trials must be one of {', '.join(CHIP_TRIALS)}, got {self.trials!r}")
        for name in ("gmin_spread", "gmax_spread", "tile_spread"):
            v = check_nonnegative("chip", name, getattr(self, name))
            if v > 1:
                raise ConfigError(f"chip.{name} is the std of ln G (0.1 = about 10%); got {v}, give "
                                  "a value in [0, 1]")
            setattr(self, name, v)
        self.gradient = check_fraction("chip", "gradient", self.gradient)

    @property
    def varies(self) -> bool:
        """Whether any cell's range differs from the device's."""
        return bool(self.gmin_spread or self.gmax_spread or self.tile_spread or self.gradient)


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
    chip: ChipConfig = field(default_factory=ChipConfig)
    wires: WireConfig = field(default_factory=WireConfig)

    @classmethod
    def preset(cls, name: str) -> "CrossbarConfig":
        try:
            return cls.from_dict(PRESETS[name])
        except KeyError:
            raise ConfigError(
                f"unknown crossbar preset {name!r}; presets: {', '.join(PRESETS)}"
            ) from None


#: The output noise of IBM's standard analog in-memory-computing evaluation setting (Rasch et al.,
#: "Hardware-aware training for large-scale and diverse deep learning inference workloads using
#: in-memory computing-based accelerators", Nat. Commun. 14, 5282, 2023, arXiv:2302.08469; its
#: parameters as aihwkit's ``StandardHWATrainingPreset`` states them): Gaussian noise of std 0.04
#: added to every column output before an 8-bit ADC whose range is [-10, 10] in the tile's
#: normalised units (largest |weight| of a column and largest |input| both 1), quantised in 254
#: steps (aihwkit's ``UniformQuantize``: step = 2 x bound / steps). Its step, 20/254, is the step
#: of nvmkit's signed 8-bit ADC, full scale / (2^7 - 1), so the noise is 0.04 / (10/127) = 0.508
#: of one LSB, 0.2% of the ADC's full scale. It stands for all the noise that reaches the
#: converter at a conversion (the summation's and the ADC's input-referred noise), drawn afresh
#: every read, as ``adc_noise`` is. What is kept is the noise relative to the ADC's full scale:
#: the setting's range is fixed at 10 of its units (a column's largest |weight| times the largest
#: |input|), nvmkit calibrates each layer's range on data (its peak partial sum), so relative to
#: the signal the two agree only where that peak is 10 such units.
AIMC_OUTPUT_NOISE_LSB = 0.04 / (10.0 / 127.0)

#: Named reference configurations.
PRESETS: dict[str, dict] = {
    # every device effect on, ideal converters: isolates the device
    "default": {},
    # no device effect at all: the analog result equals the digital one to float32 precision
    "ideal": {"nonideal": {"programming_error": False, "read_noise": False, "quantize": False,
                           "clip_conductance": False}},
    # 8-bit converters, as in Sandia's SONOS inference accelerator analysis (Xiao et al., TCAS-I 2022)
    "converters-8bit": {"converters": {"dac_bits": 8, "adc_bits": 8}},
    # the converters of IBM's standard analog-AIMC evaluation setting (Rasch et al., Nat. Commun.
    # 2023; AIMC_OUTPUT_NOISE_LSB): 8-bit DACs and ADCs, both signed (the setting's DAC has 254
    # steps on [-1, 1] whatever the input's sign: 127 for the non-negative inputs after a ReLU),
    # 0.508 LSB of fresh noise per conversion (relative to the full scale; ranges calibrated on
    # data, see AIMC_OUTPUT_NOISE_LSB). Its columns have no static offset or gain error: the chips
    # it models correct each column's ADC by a per-column affine map after fabrication (learned
    # per-column output scales in the setting), so what is left of them is 0 there; an
    # uncalibrated study sets adc_offset and adc_gain_error itself
    "converters-aimc": {"converters": {"dac_bits": 8, "adc_bits": 8, "dac_sign": "signed",
                                       "adc_noise": round(AIMC_OUTPUT_NOISE_LSB, 3)}},
    # every device effect plus the IR drop of 22 nm copper wires (WIRE_22NM, 2.46 ohm per segment) on
    # 64 x 64 tiles, short enough for the first-order model (nvmkit/engine/wires.py) with SONOS-class
    # cells (the seed's networks drop at most ~8% there); ReRAM's 50-225 uS cells need smaller tiles
    "wires-22nm": {"mapping": {"tile_rows": 64, "tile_cols": 64},
                   "wires": {"row_resistance": round(WIRE_22NM, 2), "col_resistance": round(WIRE_22NM, 2)}},
}
