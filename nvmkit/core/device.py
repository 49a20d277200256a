"""The device-model abstract type: what one memory cell does to a conductance.

Conductances are in the device's own ``units`` (``uS`` for ReRAM; ``nA`` of read current at the
read voltage for SONOS and ECRAM, as their measured fits are stated). The crossbar engine only
needs ratios between conductances and the device's spread, so any consistent unit works.

A device answers four questions, each as a vectorised function of the conductance: its
programming spread ``programming_sigma(g, t)``, its per-read spread ``read_sigma(g)``, where it
drifts to ``drift(g, t)``, and what a read costs (``read_voltage``, ``read_time``,
``energy_per_mac``). Whether the spread depends on the state is the device's business.

Optionally, a device states how pulses update it (on-chip learning): ``pulse_step(g, up)``,
``pulse_step_sigma(g, up)``, ``pulse_step_d2d``, ``max_pulses``, ``pulse_energy``, most simply as
an ``update_model`` composed from the step families of :mod:`nvmkit.core.update`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from nvmkit.core.component import Component, _plain, check_int, check_nonnegative, check_positive
from nvmkit.core.errors import ConfigError
from nvmkit.core.update import PulseUpdate, describe_update

#: conductance unit -> siemens; current units (read current at ``read_voltage``) are absent
_SIEMENS = {"S": 1.0, "mS": 1e-3, "uS": 1e-6, "nS": 1e-9}
_AMPERES = {"A": 1.0, "mA": 1e-3, "uA": 1e-6, "nA": 1e-9}
_DERIVED = object()


def check_flag(owner: str, name: str, value) -> bool:
    """A true/false parameter (TOML and CLI specs give real booleans)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{owner}: {name} must be true or false, got {value!r}")
    return bool(value)


class Device(Component):
    """Abstract device model. Subclasses set ``name`` and call ``_set_range`` in ``__init__``."""

    kind: ClassVar[str] = "device"
    units: ClassVar[str] = "uS"
    #: parameter name -> where its value comes from (paper, measured fit). Shown by
    #: ``nvmkit devices show NAME``; every physical parameter should have an entry.
    citations: ClassVar[dict[str, str]] = {}
    #: parameter name -> unit, for ``nvmkit devices show``
    param_units: ClassVar[dict[str, str]] = {}
    #: True when ``programming_sigma``/``read_sigma`` give the spread of a whole *weight* on the
    #: scale where the weight range Wmax - Wmin spans ``g_range`` (an abstract synaptic-noise
    #: model); the engine then splits it over the cells of the mapping so that the per-weight
    #: spread is exact for any scheme. False (physical cells): the spread of one cell.
    sigma_per_weight: ClassVar[bool] = False
    #: False for abstract devices whose "conductance" may leave [g_min, g_max] (no clipping).
    bounded: ClassVar[bool] = True
    #: False for an abstract device whose conductances are numbers without a unit behind them:
    #: ``cell_read_energy`` of such a cell is not a physical energy, and energy reports say so.
    physical_units: ClassVar[bool] = True
    #: True when ``programming_sigma(g, t)`` is the spread *measured* t after programming around
    #: the drifted mean ``drift(g, t)`` (fits per day, as SONOS): the engine then shifts the mean
    #: first and draws that day's spread around it. False (default): the spread is drawn at
    #: programming and ``drift`` acts on each programmed cell, scaling the spread with it.
    spread_measured_after_drift: ClassVar[bool] = False

    g_min: float
    g_max: float
    levels: int | None  # programmable levels between g_min and g_max; None = continuous
    read_voltage: float = 0.1  # V, used by energy estimators
    read_time: float = 10e-9  # s, used by energy estimators
    #: J per multiply-accumulate of the analog array (both cells of a pair), when the literature
    #: states one; None lets an energy estimator derive it from ``cell_read_energy``.
    energy_per_mac: float | None = None

    def _set_range(self, g_min, g_max, levels=None) -> None:
        owner = f"device '{self.name}'"
        g_min = check_nonnegative(owner, "g_min", g_min)
        g_max = check_nonnegative(owner, "g_max", g_max)
        if g_min >= g_max:
            raise ConfigError(f"{owner}: g_min ({g_min}) must be below g_max ({g_max}); raise g_max")
        if levels is not None:
            levels = check_int(owner, "levels", levels, minimum=2)
        self.g_min, self.g_max, self.levels = float(g_min), float(g_max), levels

    def _set_energy(self, read_voltage, read_time, energy_per_mac=_DERIVED) -> None:
        """Validate and store the energy parameters; a device that derives ``energy_per_mac``
        (a property) omits it, and None means "let the estimator derive it"."""
        owner = f"device '{self.name}'"
        self.read_voltage = check_positive(owner, "read_voltage", read_voltage)
        self.read_time = check_positive(owner, "read_time", read_time)
        if energy_per_mac is not _DERIVED:
            self.energy_per_mac = (None if energy_per_mac is None
                                   else check_positive(owner, "energy_per_mac", energy_per_mac))

    def _sigma(self, param: str, value) -> float:
        return check_nonnegative(f"device '{self.name}'", param, value)

    @property
    def g_range(self) -> float:
        return self.g_max - self.g_min

    @property
    def on_off_ratio(self) -> float:
        return self.g_max / self.g_min if self.g_min > 0 else float("inf")

    # -- physics: override what the device has; the defaults are an ideal cell ---------------
    def programming_sigma(self, g: np.ndarray, t: float = 0.0) -> np.ndarray:
        """Std of the programming error at target conductance ``g`` (same units as ``g``), as
        observed ``t`` seconds after programming (devices whose spread widens with time use it)."""
        return np.zeros_like(g)

    def read_sigma(self, g: np.ndarray) -> np.ndarray:
        """Std of the cycle-to-cycle read noise of a cell at conductance ``g``, per read."""
        return np.zeros_like(g)

    def drift(self, g: np.ndarray, t: float) -> np.ndarray:
        """Conductance ``t`` seconds after programming (default: no drift)."""
        return g

    # -- the update model (on-chip learning, optional) ---------------------------------------
    # The sampling rule every user shares (nvmkit/core/update.py, ``apply_pulses``): one pulse on a
    # cell at g with device-to-device factor f moves it by f pulse_step(g, up) +
    # pulse_step_sigma(g, up) xi, clipped so that it never passes g_min or g_max.
    #: relative device-to-device spread of the pulse step: each cell's mean step is scaled by its
    #: own factor ``max(1 + pulse_step_d2d * z, 0)`` (z standard normal, fixed per chip)
    pulse_step_d2d: float = 0.0
    #: pulses one update window allows a cell (per update, either sign); None: not stated
    max_pulses: int | None = None
    #: J of one programming pulse on one cell; None: not stated (training energy says so)
    pulse_energy: float | None = None
    #: a step family of nvmkit/core/update.py (``SoftBoundsStep``, ``ConstantStep``) that answers
    #: ``pulse_step`` and ``pulse_step_sigma`` on this device's range; None: the device overrides
    #: them itself, or states no update model
    update_model: PulseUpdate | None = None

    def _set_update(self, model: PulseUpdate | None = None, d2d=0.0, max_pulses=None, pulse_energy=None) -> None:
        """Validate and store the update model's figures (call after ``_set_range``)."""
        owner = f"device '{self.name}'"
        if model is not None and not isinstance(model, PulseUpdate):
            raise ConfigError(f"{owner}: update_model must be a SoftBoundsStep, ConstantStep or another "
                              f"nvmkit PulseUpdate, got {type(model).__name__}")
        self.update_model = model
        self.pulse_step_d2d = check_nonnegative(owner, "pulse_step_d2d", d2d)
        self.max_pulses = None if max_pulses is None else check_int(owner, "max_pulses", max_pulses)
        self.pulse_energy = None if pulse_energy is None else check_positive(owner, "pulse_energy", pulse_energy)

    def pulse_step(self, g: np.ndarray, up: bool) -> np.ndarray:
        """Mean conductance change of one pulse at state ``g`` (same units): positive for an up
        (potentiating) pulse, negative for a down (depressing) one, before the bounds (a pulse
        never takes a cell past g_min or g_max: ``nvmkit.apply_pulses``). A device with an
        ``update_model`` gets it from there; one that is not updated by pulses leaves both
        undefined: it still works for inference, and on-chip learning refuses it
        (:attr:`pulse_updatable`, ``nvmkit.require_pulse_update``)."""
        if self.update_model is not None:
            return self.update_model.step(g, up, self.g_min, self.g_max)
        raise NotImplementedError(f"device '{self.name}' states no update model (pulse_step)")

    def pulse_step_sigma(self, g: np.ndarray, up: bool) -> np.ndarray:
        """Cycle-to-cycle std of one pulse's step at state ``g`` (same units as ``g``)."""
        if self.update_model is not None:
            return self.update_model.sigma(g, up, self.g_min, self.g_max)
        return np.zeros_like(np.asarray(g, dtype=np.result_type(np.asarray(g).dtype, np.float32)))

    @property
    def pulse_updatable(self) -> bool:
        """True when the device states its update model (an ``update_model``, or its own
        :meth:`pulse_step`)."""
        return self.update_model is not None or type(self).pulse_step is not Device.pulse_step

    # -- recorded configuration ----------------------------------------------------------------
    #: parameters added after results were recorded: left out of ``get_config()`` while at their
    #: default, so that configurations recorded before they existed (and the keys of cached
    #: models and sweep points derived from them) stay valid; set, they are recorded as any other
    late_params: ClassVar[tuple[str, ...]] = ()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.late_params:
            import inspect

            defaults = inspect.signature(type(self).__init__).parameters
            for name in self.late_params:
                if name in config and name in defaults and config[name] == defaults[name].default:
                    del config[name]
        return config

    def cell_read_energy(self, g: np.ndarray | float) -> np.ndarray | float:
        """Energy of reading one cell once (J): V^2 G t for a conductance, V I t for a current."""
        if self.units in _SIEMENS:
            return self.read_voltage**2 * np.asarray(g) * _SIEMENS[self.units] * self.read_time
        # current-read devices state the cell as its read current at read_voltage: E = V I t
        return self.read_voltage * np.asarray(g) * _AMPERES.get(self.units, 1e-9) * self.read_time

    # -- description -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Parameters with units and sources, plus derived figures, as plain data."""
        params = [
            {"name": n, "value": v, "unit": self.param_units.get(n, ""),
             "source": self.citations.get(n, "")}
            for n, v in ((n, _plain(getattr(self, n, None))) for n in self.param_names())
        ]
        return {
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "description": self.description(),
            "units": self.units,
            "g_min": self.g_min,
            "g_max": self.g_max,
            "on_off_ratio": self.on_off_ratio,
            "levels": self.levels,
            "energy_per_mac_J": self.energy_per_mac,
            "cell_read_energy_at_g_max_J": float(self.cell_read_energy(self.g_max)),
            "params": params,
            "update": describe_update(self),
            "notes": {k: v for k, v in self.citations.items() if k not in self.param_names()},
        }
