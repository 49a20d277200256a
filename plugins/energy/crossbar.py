"""The bundled energy estimator: analog crossbar reads priced per MAC, plus converters and CMOS."""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

from nvmkit import ConfigError, Device, EnergyEstimator, EnergyReport, EnergyTerm, LayerFootprint, check_fraction, check_int, check_nonnegative, check_positive, hookimpl
from nvmkit import TrainingEnergyReport

#: J per MAC (one weight, both cells of its pair, one read) of a device's analog core, used when the
#: device does not carry ``energy_per_mac`` itself. Each figure is a whole-core number: array read,
#: row drivers and column read-out, amortised over the MACs of the quoting design.
DEFAULT_ENERGY_PER_MAC = {
    # Marinella et al., IEEE JETCAS 8(1), 2018: analog ReRAM crossbar block (14/16 nm periphery)
    "reram": 11e-15,
    # Agrawal et al., IEEE IMW 2020: 40 nm SONOS in-memory-computing array, 100 TOPS/W, 2 ops/MAC
    "sonos": 20e-15,
}

# 8-bit ADC: 2^8 conversion steps x 5 fJ/step, a Walden figure of merit of 8-bit SAR ADCs near
# 1 GS/s in B. Murmann, "ADC Performance Survey 1997-2023". ISAAC (Shafiee et al., ISCA 2016)
# budgets 2 mW for an 8-bit 1.28 GS/s ADC: 1.6 pJ per conversion, the same order.
ADC_ENERGY = 2**8 * 5e-15
ADC_REFERENCE_BITS = 8  # the resolution ADC_ENERGY is quoted at
# How a conversion's energy grows with the ADC's resolution b (at a fixed figure of merit):
# "walden": E = FOM_W 2^b, the Walden figure of merit P / (2^ENOB f_s) (R. H. Walden, "Analog-to-
# digital converter survey and analysis", IEEE JSAC 17(4), 1999), with FOM_W = 5 fJ/step from
# Murmann's survey as above; "fixed": every conversion costs adc_energy whatever its bits;
# "schreier": E = 10^((6.02 b + 1.76 - FOM_S) / 10) / 2, the energy P / f_s of a Nyquist converter
# (bandwidth f_s / 2) whose SNDR is the ideal b-bit 6.02 b + 1.76 dB at the Schreier figure of merit
# FOM_S = SNDR + 10 log10(BW / P) (R. Schreier and G. C. Temes, "Understanding Delta-Sigma Data
# Converters", IEEE Press / Wiley, 2005): x4 per bit, thermal noise's law. FOM_S = 186.7 dB: the
# low-frequency asymptote of the FOM_S,hf envelope of B. Murmann's ADC Performance Survey
# (github.com/bmurmann/ADC-survey, data revision 2026-08-01, plots/foms_plot.json: the mean of the
# five best designs), i.e. the best converters of the survey: a lower bound on a conversion's energy.
ADC_SCALINGS = ("walden", "fixed", "schreier")
ADC_SCHREIER_FOM = 186.7  # dB
# Row driver / DAC: ISAAC budgets 4 mW for its 8 x 128 one-bit DACs, each driving one row per
# 100 ns crossbar cycle: 4 mW x 100 ns / 1024 = 0.39 pJ per driven row and read.
DAC_ENERGY = 4e-3 * 100e-9 / 1024
# A ReLU on an 8-bit ADC code is a sign test and a select, about one 8-bit add: 0.03 pJ in 45 nm
# CMOS (M. Horowitz, "Computing's energy problem", ISSCC 2014). The seed's table implies the same
# value: 15 pJ for the 500 hidden ReLUs of a 784-500-10 MLP is 30 fJ each.
ACTIVATION_ENERGY = 0.03e-12
# A max-pool comparison or a softmax step on 8-bit codes: also about one 8-bit add (Horowitz 2014).
DIGITAL_OP_ENERGY = 0.03e-12

CONVERTER_MODES = ("auto", "included", "explicit")
_CELL_PHYSICS = "cell physics"  # the source of a per-MAC energy derived from the device's cell read
CONV_MAPPINGS = ("im2col", "unrolled")


class CrossbarEnergy(EnergyEstimator):
    """Crossbar reads per MAC, DAC per driven row, ADC per read column, CMOS neurons and digital ops.

    Energy per inference is a sum of counted events times a unit energy, per layer:

    - **vmm**: multiply-accumulates, ``n_in x n_out x reads`` (one per weight and read; a
      differential pair counts once). Unit: ``energy_per_mac`` if given here, else the device's
      own ``energy_per_mac`` attribute, else :data:`DEFAULT_ENERGY_PER_MAC` by device name
      (ReRAM 11 fJ, Marinella et al., IEEE JETCAS 2018; SONOS 20 fJ = 100 TOPS/W at 2 ops/MAC,
      Agrawal et al., IEEE IMW 2020), else the cell physics: ``devices_per_weight x
      device.cell_read_energy(G)`` (V^2 G t, or V I t for current-read devices) at the mean cell
      conductance ``G = g_min + mean_conductance (g_max - g_min)`` (differential pairs: trained
      weights cluster near zero, where both cells sit at g_min; offset mapping: mid-range).
    - **dac**: driven rows, the sum over tiles of their rows, per read. **adc**: converted
      columns, the sum over tiles of their columns, per read (a differential pair's two
      currents are subtracted before one conversion; each row block is converted on its own).
      ``converters="auto"`` counts them but prices them at 0 when the per-MAC energy is a
      literature core figure (those already contain row drive and read-out), and at
      ``dac_energy``/``adc_energy`` when it prices the array alone: the cell physics, or a device
      whose ``energy_per_mac`` is derived in a property or whose ``energy_per_mac_scope`` is
      ``"array"`` (an optional device attribute; ``"core"`` otherwise).
      ``"explicit"`` always adds them, ``"included"`` never does.
      A conversion's energy follows the ADC's resolution ``b`` (the footprint's ``adc_bits``):
      ``adc_scaling="walden"`` (default) prices it at ``adc_energy x 2^(b - adc_reference_bits)``,
      i.e. a constant Walden figure of merit ``E / 2^b`` (Walden, IEEE JSAC 1999) of
      ``adc_energy / 2^8`` = 5 fJ per conversion step (8-bit SAR ADCs near 1 GS/s in Murmann's ADC
      Performance Survey 1997-2023): each bit doubles it. An ideal converter (no bits in the
      footprint) is priced at ``adc_reference_bits``. ``"fixed"``: ``adc_energy`` per conversion.
      ``"schreier"``: the energy of a Nyquist converter at the Schreier figure of merit
      ``adc_schreier_fom`` (186.7 dB, the best converters of Murmann's survey), ``10^((6.02 b +
      1.76 - FOM_S) / 10) / 2``: 4x per bit (thermal noise), 10 fJ at 8 bits, 0.68 nJ at 16.
    - **neuron**: ReLU activations x ``activation_energy`` (30 fJ: one 8-bit add, Horowitz,
      ISSCC 2014). **digital**: max-pool comparisons and softmax steps x ``digital_op_energy``.

    ``conv_mapping="im2col"`` prices a conv layer as the engine maps it: a small kernel crossbar read
    once per output position. ``"unrolled"`` prices it as one Toeplitz crossbar of
    ``H W C_in (+1)`` rows by ``H' W' filters`` columns read once, every cell included (the
    structural zeros are programmed cells that conduct when their row is driven): the seed's
    "kernel-wise multiplication can result in massive crossbar requirements"; ``tile_rows`` x
    ``tile_cols`` tiles it for the converter counts.
    """

    name = "crossbar"
    citations: ClassVar[dict[str, str]] = {
        "energy_per_mac": "None: device attribute, else ReRAM 11 fJ (Marinella et al., IEEE JETCAS 2018), "
                          "SONOS 20 fJ (100 TOPS/W, Agrawal et al., IEEE IMW 2020), else V^2 G t cell physics",
        "activation_energy": "30 fJ, one 8-bit add in 45 nm CMOS (Horowitz, ISSCC 2014)",
        "adc_energy": "1.28 pJ = 2^8 x 5 fJ/step, 8-bit SAR near 1 GS/s (Murmann ADC survey 1997-2023); "
                      "ISAAC (Shafiee et al., ISCA 2016): 1.6 pJ",
        "adc_scaling": "walden: x2 per bit at a constant Walden figure of merit (Walden, IEEE JSAC 1999; "
                       "5 fJ/step from Murmann's ADC survey 1997-2023)",
        "adc_reference_bits": "8: the resolution adc_energy is quoted at (Murmann ADC survey 1997-2023)",
        "adc_schreier_fom": "186.7 dB: the FOM_S,hf envelope's asymptote in Murmann's ADC Performance Survey "
                            "(data revision 2026-08-01); used with adc_scaling='schreier'",
        "dac_energy": "0.39 pJ per driven row and read: ISAAC's 1-bit DACs, 4 mW / 1024 x 100 ns "
                      "(Shafiee et al., ISCA 2016)",
        "digital_op_energy": "30 fJ, one 8-bit add in 45 nm CMOS (Horowitz, ISSCC 2014)",
        "mean_conductance": "assumption: trained weights cluster near zero, where a differential pair "
                            "holds both cells at g_min",
        "tile_rows": "1152 x 256, Sandia's SONOS array (Xiao et al., IEEE TCAS-I 2022), the engine default",
    }

    def __init__(self, energy_per_mac: float | None = None, activation_energy: float = ACTIVATION_ENERGY,
                 adc_energy: float = ADC_ENERGY, dac_energy: float = DAC_ENERGY,
                 digital_op_energy: float = DIGITAL_OP_ENERGY, converters: str = "auto",
                 conv_mapping: str = "im2col", mean_conductance: float = 0.1,
                 tile_rows: int = 1152, tile_cols: int = 256, adc_scaling: str = "walden",
                 adc_reference_bits: int = ADC_REFERENCE_BITS, adc_schreier_fom: float = ADC_SCHREIER_FOM):
        owner = f"energy estimator '{self.name}'"
        self.energy_per_mac = None if energy_per_mac is None else check_positive(owner, "energy_per_mac", energy_per_mac)
        self.activation_energy = check_nonnegative(owner, "activation_energy", activation_energy)
        self.adc_energy = check_nonnegative(owner, "adc_energy", adc_energy)
        self.dac_energy = check_nonnegative(owner, "dac_energy", dac_energy)
        self.digital_op_energy = check_nonnegative(owner, "digital_op_energy", digital_op_energy)
        if converters not in CONVERTER_MODES:
            raise ConfigError(f"{owner}: converters must be one of {', '.join(CONVERTER_MODES)}, got {converters!r}")
        if conv_mapping not in CONV_MAPPINGS:
            raise ConfigError(f"{owner}: conv_mapping must be one of {', '.join(CONV_MAPPINGS)}, got {conv_mapping!r}")
        self.converters, self.conv_mapping = converters, conv_mapping
        self.mean_conductance = check_fraction(owner, "mean_conductance", mean_conductance)
        self.tile_rows = check_int(owner, "tile_rows", tile_rows)
        self.tile_cols = check_int(owner, "tile_cols", tile_cols)
        if adc_scaling not in ADC_SCALINGS:
            raise ConfigError(f"{owner}: adc_scaling must be one of {', '.join(ADC_SCALINGS)}, got {adc_scaling!r}")
        self.adc_scaling = adc_scaling
        self.adc_reference_bits = check_int(owner, "adc_reference_bits", adc_reference_bits)
        self.adc_schreier_fom = check_positive(owner, "adc_schreier_fom", adc_schreier_fom)
        if not 100.0 <= self.adc_schreier_fom <= 250.0:
            raise ConfigError(f"{owner}: adc_schreier_fom is a Schreier figure of merit in dB (surveyed "
                              f"converters: about 140 to 187); got {adc_schreier_fom}, give 100 to 250")

    # -- unit energies -------------------------------------------------------------------------
    def mac_energy(self, device: Device, devices_per_weight: int = 2) -> tuple[float, str, bool]:
        """J per MAC on ``device``, where the figure comes from, and whether it already contains
        the row drive and read-out (a literature core figure) or prices the array alone."""
        if self.energy_per_mac is not None:
            return self.energy_per_mac, "estimator parameter energy_per_mac", True
        own = getattr(device, "energy_per_mac", None)
        if own is not None:
            scope = getattr(device, "energy_per_mac_scope", None)
            if scope is None:  # a value derived in a property is the device's own cell physics
                derived = isinstance(getattr(type(device), "energy_per_mac", None), property)
                scope = "array" if derived else "core"
            return float(own), f"device '{device.name}' energy_per_mac ({scope})", scope != "array"
        if device.name in DEFAULT_ENERGY_PER_MAC:
            return DEFAULT_ENERGY_PER_MAC[device.name], f"built-in value for '{device.name}' (core)", True
        frac = self.mean_conductance if devices_per_weight >= 2 else 0.5
        g = device.g_min + frac * (device.g_max - device.g_min)
        cell = float(device.cell_read_energy(g))
        if not math.isfinite(cell) or cell < 0:
            raise ConfigError(f"device '{device.name}': cell_read_energy gave {cell!r}; set energy_per_mac")
        # the conductance in the text: `devices show` prints the cell energy at g_max, not at this G
        return (devices_per_weight * cell,
                f"{_CELL_PHYSICS} ({devices_per_weight} x cell_read_energy at G = {g:.4g} {device.units})", False)

    def conversion_energy(self, bits: int | None) -> float:
        """J per conversion of a ``bits``-bit ADC (None: an ideal converter, priced at
        ``adc_reference_bits``): ``adc_energy x 2^(bits - adc_reference_bits)`` under the Walden
        law, ``adc_energy`` when fixed, ``10^((6.02 b + 1.76 - adc_schreier_fom) / 10) / 2`` under
        the Schreier law (see :data:`ADC_SCALINGS`)."""
        if self.adc_scaling == "fixed":
            return self.adc_energy
        b = self.adc_reference_bits if bits is None else int(bits)
        if self.adc_scaling == "schreier":
            return 0.5 * 10.0 ** ((6.02 * b + 1.76 - self.adc_schreier_fom) / 10.0)
        return self.adc_energy * 2.0 ** (b - self.adc_reference_bits)

    def converters_priced(self, includes_periphery: bool) -> bool:
        if self.converters == "auto":
            return not includes_periphery
        return self.converters == "explicit"

    # -- counting ------------------------------------------------------------------------------
    def analog_counts(self, fp: LayerFootprint) -> tuple[int, int, int]:
        """(MACs, driven rows, converted columns) per inference of one crossbar layer."""
        if fp.kind == "conv" and self.conv_mapping == "unrolled":
            rows, cols = self._toeplitz(fp)
            row_blocks, col_blocks = -(-rows // self.tile_rows), -(-cols // self.tile_cols)
            return rows * cols, rows * col_blocks, cols * row_blocks
        reads = fp.reads_per_inference
        if fp.tiles:
            return (fp.macs_per_inference, reads * sum(t.rows for t in fp.tiles),
                    reads * sum(t.cols for t in fp.tiles))
        return fp.macs_per_inference, reads * fp.n_in, reads * fp.n_out

    @staticmethod
    def _toeplitz(fp: LayerFootprint) -> tuple[int, int]:
        """Rows and columns of the unrolled (Toeplitz) crossbar of a kernel-wise conv footprint."""
        ex = fp.extra
        try:
            kh, kw = ex["kernel"]
            c_in = int(ex["in_channels"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"layer '{fp.name}': conv_mapping='unrolled' needs extra['kernel'] and "
                              "extra['in_channels'] in the footprint; use conv_mapping='im2col'") from None
        if ex.get("depthwise"):  # its crossbar is one channel's kernel, not a kernel-wise one
            raise ConfigError(f"layer '{fp.name}': conv_mapping='unrolled' prices kernel-wise "
                              "convolutions; a depthwise one (a small crossbar per channel) is "
                              "priced with conv_mapping='im2col'")
        bias = fp.n_in - kh * kw * c_in
        positions = fp.reads_per_inference
        if "input_shape" in ex:
            h, w = ex["input_shape"][:2]
            pixels = int(h) * int(w)
        elif list(ex.get("strides", [1, 1])) != [1, 1]:
            raise ConfigError(f"layer '{fp.name}': a strided conv needs extra['input_shape'] for "
                              "conv_mapping='unrolled'")
        elif ex.get("padding") == "same":
            pixels = positions  # stride 1, 'same': one output position per input pixel
        else:
            side = math.isqrt(positions)
            if side * side != positions:
                raise ConfigError(f"layer '{fp.name}': cannot infer the input size of a non-square "
                                  "output for conv_mapping='unrolled'; add extra['input_shape']")
            pixels = (side + kh - 1) * (side + kw - 1)
        return pixels * c_in + bias, positions * fp.n_out

    # -- the estimate ------------------------------------------------------------------------
    def estimate(self, footprint: Sequence[LayerFootprint], device: Device) -> EnergyReport:
        terms: list[EnergyTerm] = []
        sources: dict[str, float] = {}
        physical = True
        for fp in footprint:
            analog = bool(fp.tiles) or fp.macs_per_inference > 0
            if analog:
                e_mac, source, core = self.mac_energy(device, fp.devices_per_weight)
                sources[source] = e_mac
                # the cell physics of a unitless conductance is no energy; a stated per-MAC figure is
                physical = physical and (device.physical_units or not source.startswith(_CELL_PHYSICS))
                macs, rows, cols = self.analog_counts(fp)
                priced = self.converters_priced(core)
                tag = "" if priced else " (in the MAC figure)"
                terms += [
                    EnergyTerm(fp.name, "vmm", macs, e_mac, "MAC"),
                    EnergyTerm(fp.name, "dac", rows, self.dac_energy if priced else 0.0, "row drive" + tag),
                    EnergyTerm(fp.name, "adc", cols, self.conversion_energy(fp.adc_bits) if priced else 0.0,
                               _conversion(fp.adc_bits) + tag),
                ]
            if fp.activations:
                terms.append(EnergyTerm(fp.name, "neuron", fp.activations, self.activation_energy,
                                        "ReLU activation"))
            if fp.digital_ops:
                what = {"maxpool": "max-pool comparison", "softmax": "softmax step",
                        "attention": "attention multiply-add (scores, weighted values)"}.get(fp.kind, "digital op")
                terms.append(EnergyTerm(fp.name, "digital", fp.digital_ops, self.digital_op_energy, what))
        notes = {"energy_per_mac": sources, "converters": self.converters,
                 "conv_mapping": self.conv_mapping}
        if not physical:
            notes["physical"] = (f"device '{device.name}' has abstract conductances (no unit): its cell read "
                                 "energy is not physical; use a device with units or set energy_per_mac")
        return EnergyReport(self.name, device.name, terms, notes, physical=physical)

    # -- a training step (on-chip learning) ----------------------------------------------------
    #: where the training step's unit energies come from
    training_citations: ClassVar[dict[str, str]] = {
        "backward": "the transposed read costs what the forward read costs per MAC, row drive and "
                    "conversion: Marinella et al. (IEEE JETCAS 2018) price one analog core for the "
                    "three kernels of training (VMM, transposed VMM, outer-product update)",
        "derivative": "30 fJ per ReLU derivative, max-pool routing, output error or col2im add: one "
                      "8-bit add or select in 45 nm CMOS (Horowitz, ISSCC 2014)",
        "pulse_count": "0.2 pJ per row or column signal and rank-1 update (stochastic), or per weight and "
                       "step (deterministic): one 8-bit multiply in 45 nm CMOS (Horowitz, ISSCC 2014)",
        "gradient": "deterministic counts: 0.3 pJ per digital gradient MAC, an 8-bit multiply and a 32-bit "
                    "add (Horowitz, ISSCC 2014)",
        "pulses": "the device's pulse_energy (J per pulse per cell), or the pulse_energy given",
        "pulse lines": "not priced unless pulse_line_energy is given (no cited figure)",
    }

    def estimate_training_step(self, footprint: Sequence[LayerFootprint], device: Device, *,
                               pulses_per_cell: float | dict, batch_size: int = 1,
                               pulse_energy: float | None = None, pulses: str = "stochastic",
                               pulse_line_energy: float | None = None,
                               backward_first_layer: bool = False) -> TrainingEnergyReport:
        """Energy of one training step: ``batch_size`` samples read forward and backward, and the
        weight update applied as rank-1 (outer-product) pulse updates.

        - **forward**: the inference estimate (:meth:`estimate`), every count x ``batch_size``.
        - **backward**: each analog layer read through its transposed crossbars once per forward
          read (an RNN: once per time step), except where the first analog layer's input, the
          network's, needs no error (:func:`_first_layer_reads`: a recurrent crossbar there is
          read T - 1 times, for the error through time; ``backward_first_layer=True`` prices
          every read anyway). The error is driven on each
          tile's columns and converted on its rows: ``backward_dac`` counts the sum over tiles of
          their columns, ``backward_adc`` the sum of their rows, per read (the forward read's
          counts swapped); MACs as forward; unit energies as forward (same converters, same
          ``converters`` mode). ``backward_digital``: one ReLU derivative per activation, the
          output error (one per class at a softmax), max-pool routing (one per pooled output),
          one derivative per other digital activation, and the col2im add of a conv layer's
          transposed read (one per converted row value), each ``digital_op_energy``.
        - **update**: ``update_pulses`` = cells (both cells of a differential pair counted) x
          ``pulses_per_cell`` (mean pulses per cell per step, stated or measured; a dict prices
          each analog layer with its own) x the pulse energy (``pulse_energy``, else the
          device's ``pulse_energy``; a device without one is listed in the report's ``unpriced``
          and its pulses are counted at 0 J, not silently). How the counts are formed
          (``pulses``, the names of in-place learning):

          - ``"stochastic"`` (default): Gokmen and Vlasov's pulse trains (Front. Neurosci.
            2016), one rank-1 update per forward read of every sample (``reads x batch_size``:
            per output position of a conv, per time step of an RNN); for each, every row and
            column signal is scaled to a pulse probability (``update_digital``, one 8-bit
            multiply each, 0.2 pJ, Horowitz 2014) and every tile's row and column line is driven
            by its train (``update_drive``);
          - ``"deterministic"``: each weight's count from the step's gradient, computed
            digitally: ``n_in x n_out`` multiply-accumulates per read of every sample (0.3 pJ:
            an 8-bit multiply and a 32-bit add, Horowitz 2014) and one rounding to a count per
            weight per step (0.2 pJ); every tile's lines driven once per step.

          ``update_drive`` is priced at ``pulse_line_energy`` J per line drive when given, else
          counted only.

        Conv layers must be priced as the engine maps them (``conv_mapping="im2col"``): an
        unrolled Toeplitz crossbar is not updated by outer products.
        """
        owner = f"energy estimator '{self.name}'"
        batch = check_int(owner, "batch_size", batch_size)
        if pulses not in PULSE_SCHEMES:
            raise ConfigError(f"{owner}: pulses must be one of {', '.join(PULSE_SCHEMES)}, got {pulses!r}")
        if self.conv_mapping != "im2col" and any(fp.kind == "conv" for fp in footprint):
            raise ConfigError(f"{owner}: a training step prices conv layers as the engine maps them; "
                              "use conv_mapping=im2col (an unrolled crossbar is not updated by outer products)")
        analog = [fp for fp in footprint if fp.tiles or fp.macs_per_inference > 0]
        per_cell = _pulses_by_layer(owner, pulses_per_cell, [fp.name for fp in analog])
        if pulse_energy is not None:
            e_pulse, pulse_source = check_nonnegative(owner, "pulse_energy", pulse_energy), "given pulse_energy"
        elif getattr(device, "pulse_energy", None) is not None:
            e_pulse, pulse_source = float(device.pulse_energy), f"device '{device.name}' pulse_energy"
        else:
            e_pulse, pulse_source = None, None
        e_line = None if pulse_line_energy is None else check_nonnegative(owner, "pulse_line_energy",
                                                                           pulse_line_energy)
        inference = self.estimate(footprint, device)
        terms = [EnergyTerm(t.layer, t.component, t.count * batch, t.unit_energy, t.what)
                 for t in inference.terms]
        first = analog[0].name if analog else None
        unpriced: list[str] = []
        for fp in footprint:  # the backward pass, then the update: a step's order
            terms += self._backward_terms(fp, device, batch, first, backward_first_layer)
        for fp in analog:
            terms += self._update_terms(fp, batch, per_cell[fp.name], e_pulse, e_line, device, pulses)
        if analog and e_pulse is None:
            unpriced.append(f"update_pulses: device '{device.name}' states no pulse_energy; "
                            "give pulse_energy (J per pulse per cell)")
        notes = dict(inference.notes) | {
            "per": (f"one training step: {batch} sample(s) forward and backward, " +
                    (f"{batch} rank-1 pulse-train update(s) per read" if pulses == "stochastic"
                     else "pulse counts per weight from the step's gradient")),
            "pulses": pulses,
            "pulse_energy": ({pulse_source: e_pulse} if e_pulse is not None
                             else f"NOT PRICED: device '{device.name}' states no pulse_energy"),
            "pulse_lines": (f"{e_line:g} J per line drive" if e_line is not None
                            else "counted, not priced (no cited figure): give pulse_line_energy"),
            "backward_first_layer": (f"'{first}' read backward too" if backward_first_layer
                                     else f"'{first}' not read backward (its input needs no error)"),
        }
        return TrainingEnergyReport(self.name, device.name, terms, notes, physical=inference.physical,
                                    batch_size=batch, pulses_per_cell=pulses_per_cell, pulses=pulses,
                                    unpriced=unpriced)

    def _backward_terms(self, fp: LayerFootprint, device: Device, batch: int, first: str | None,
                        backward_first_layer: bool) -> list[EnergyTerm]:
        out: list[EnergyTerm] = []
        op = self.digital_op_energy
        if fp.tiles or fp.macs_per_inference > 0:
            reads = fp.reads_per_inference
            if first is not None and not backward_first_layer:
                reads = _first_layer_reads(fp, first, reads)
            reads *= batch
            if reads:
                e_mac, _, core = self.mac_energy(device, fp.devices_per_weight)
                priced = self.converters_priced(core)
                tag = "" if priced else " (in the MAC figure)"
                rows = sum(t.rows for t in fp.tiles) if fp.tiles else fp.n_in
                cols = sum(t.cols for t in fp.tiles) if fp.tiles else fp.n_out
                out += [
                    EnergyTerm(fp.name, "backward_vmm", fp.n_in * fp.n_out * reads, e_mac, "transposed MAC"),
                    EnergyTerm(fp.name, "backward_dac", cols * reads, self.dac_energy if priced else 0.0,
                               "column drive (error)" + tag),
                    EnergyTerm(fp.name, "backward_adc", rows * reads,
                               self.conversion_energy(fp.adc_bits) if priced else 0.0,
                               "row " + _conversion(fp.adc_bits) + tag),
                ]
                if fp.kind == "conv":
                    out.append(EnergyTerm(fp.name, "backward_digital", rows * reads, op, "col2im add"))
        if fp.activations:
            out.append(EnergyTerm(fp.name, "backward_digital", fp.activations * batch, op, "ReLU derivative"))
        if fp.digital_ops:
            if fp.kind == "softmax":
                out.append(EnergyTerm(fp.name, "backward_digital", fp.digital_ops * batch, op,
                                      "output error (y - t)"))
            elif fp.kind == "attention":  # the gradients to the scores, then to queries, keys, values
                out.append(EnergyTerm(fp.name, "backward_digital", 2 * fp.digital_ops * batch, op,
                                      "attention gradients (scores; queries, keys and values)"))
            elif fp.kind == "maxpool":
                window = math.prod(fp.extra.get("pool", [2, 2]))
                outputs = fp.digital_ops // max(window - 1, 1)
                out.append(EnergyTerm(fp.name, "backward_digital", outputs * batch, op, "max-pool error routing"))
            else:
                out.append(EnergyTerm(fp.name, "backward_digital", fp.digital_ops * batch, op,
                                      "activation derivative"))
        return out

    def _update_terms(self, fp: LayerFootprint, batch: int, pulses: float, e_pulse: float | None,
                      e_line: float | None, device: Device, scheme: str) -> list[EnergyTerm]:
        reads = fp.reads_per_inference * batch  # every read of every sample
        rows = sum(t.rows for t in fp.tiles) if fp.tiles else fp.n_in
        cols = sum(t.cols for t in fp.tiles) if fp.tiles else fp.n_out
        cells = fp.cells if fp.tiles else fp.n_in * fp.n_out * fp.devices_per_weight
        pulse_what = "programming pulse" if e_pulse is not None else \
            f"programming pulse (NOT PRICED: device '{device.name}' states no pulse_energy)"
        drive_tag = "" if e_line is not None else " (not priced)"
        out = [EnergyTerm(fp.name, "update_pulses", cells * pulses, e_pulse if e_pulse is not None else 0.0,
                          pulse_what)]
        if scheme == "stochastic":  # one rank-1 update per read: its row and column trains
            out += [
                EnergyTerm(fp.name, "update_drive", (rows + cols) * reads, e_line if e_line is not None else 0.0,
                           "pulse-train line drive" + drive_tag),
                EnergyTerm(fp.name, "update_digital", (fp.n_in + fp.n_out) * reads, PULSE_COUNT_ENERGY,
                           "row/column pulse probability"),
            ]
        else:  # each weight's count from the step's gradient, computed digitally
            weights = fp.n_in * fp.n_out
            out += [
                EnergyTerm(fp.name, "update_drive", rows + cols, e_line if e_line is not None else 0.0,
                           "line drive, one pass per step" + drive_tag),
                EnergyTerm(fp.name, "update_digital", weights * reads, GRADIENT_MAC_ENERGY,
                           "gradient MAC (digital)"),
                EnergyTerm(fp.name, "update_digital", weights, PULSE_COUNT_ENERGY, "pulse count per weight"),
            ]
        return out


# One row or column signal scaled by the learning rate to a pulse count: one 8-bit multiply,
# 0.2 pJ in 45 nm CMOS (M. Horowitz, "Computing's energy problem", ISSCC 2014).
PULSE_COUNT_ENERGY = 0.2e-12
# One digital multiply-accumulate of a gradient: an 8-bit multiply (0.2 pJ) and a 32-bit add
# (0.1 pJ) in 45 nm CMOS (Horowitz, ISSCC 2014).
GRADIENT_MAC_ENERGY = 0.2e-12 + 0.1e-12
#: how the update's pulse counts are formed (the names of in-place learning's ``pulses``)
PULSE_SCHEMES = ("stochastic", "deterministic")


def _first_layer_reads(fp: LayerFootprint, first: str, reads: int) -> int:
    """Transposed reads of a crossbar of the first analog layer, whose input (the network's) needs
    no error: none for a core that reads the input alone (a dense or conv layer, each group of a
    grouped conv, a depthwise core, a GRU's input core), T - 1 for a recurrent crossbar (the error
    through time; a simple RNN's or LSTM's ``[x; h]`` crossbar, a GRU's recurrent core), every
    read for a core fed by another core of the layer (a separable conv's pointwise core)."""
    if fp.name == first:
        recurrent = fp.kind == "rnn" and fp.extra.get("cell") != "gru"
        return max(reads - 1, 0) if recurrent else 0
    if fp.name.startswith(first + "/"):
        if fp.extra.get("groups"):
            return 0
        if fp.kind == "rnn" and fp.name.endswith("/recurrent"):
            return max(reads - 1, 0)
    return reads


def _pulses_by_layer(owner: str, pulses_per_cell, names: list[str]) -> dict[str, float]:
    """Mean pulses per cell per step for every analog layer: one number for all, or a dict."""
    if isinstance(pulses_per_cell, dict):
        unknown = sorted(set(pulses_per_cell) - set(names))
        missing = [n for n in names if n not in pulses_per_cell]
        if unknown or missing:
            raise ConfigError(f"{owner}: pulses_per_cell names the analog layers {', '.join(names)}; "
                              + (f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"))
        return {n: check_nonnegative(owner, f"pulses_per_cell[{n!r}]", pulses_per_cell[n]) for n in names}
    if pulses_per_cell is None:
        raise ConfigError(f"{owner}: a training step needs pulses_per_cell, the mean pulses per cell "
                          "per step (measured by learning in place, or an assumption)")
    value = check_nonnegative(owner, "pulses_per_cell", pulses_per_cell)
    return {n: value for n in names}


def _conversion(bits: int | None) -> str:
    return "conversion" if bits is None else f"{int(bits)}-bit conversion"


@hookimpl
def nvmkit_energy_estimators():
    return [CrossbarEnergy]
