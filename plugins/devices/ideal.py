"""The ideal device: the reference every non-ideality is measured against."""

from __future__ import annotations

from typing import ClassVar

from nvmkit import ConstantStep, Device, hookimpl


class IdealDevice(Device):
    """Ideal cell: exact conductances, no programming error, read noise or drift.

    With ``levels`` None and the ``ideal`` crossbar preset, an analog read equals ``x @ W + b`` to
    float32 precision. The default range (0 to 100 uS) only sets the scale of the cell read
    energy; ``energy_per_mac`` is left to the energy estimator unless given.
    """

    name = "ideal"
    units = "uS"
    citations: ClassVar[dict[str, str]] = {
        "g_min": "free choice: an ideal cell has no physical range",
        "g_max": "free choice: an ideal cell has no physical range",
        "levels": "None = continuous conductance",
        "read_voltage": "assumed typical crossbar read bias",
        "read_time": "assumed typical read pulse",
        "energy_per_mac": "None = derived by the energy estimator",
        "update_step": "free choice: 1000 noiseless pulses span the range (linear, symmetric step)",
        "pulse_energy": "None: an ideal cell states no write energy",
    }
    param_units: ClassVar[dict[str, str]] = {
        "g_min": "uS", "g_max": "uS", "read_voltage": "V", "read_time": "s", "energy_per_mac": "J",
        "update_step": "fraction of Gmax - Gmin per pulse",
    }
    late_params = ("update_step",)

    def __init__(self, g_min: float = 0.0, g_max: float = 100.0, levels: int | None = None,
                 read_voltage: float = 0.1, read_time: float = 10e-9,
                 energy_per_mac: float | None = None, update_step: float = 0.001):
        self._set_range(g_min, g_max, levels)
        self._set_energy(read_voltage, read_time, energy_per_mac)
        self._set_update(ConstantStep(update_step, owner=f"device '{self.name}'", names={"step": "update_step"}))
        self.update_step = self.update_model.step_size


@hookimpl
def nvmkit_devices():
    return [IdealDevice]
