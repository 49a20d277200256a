"""Update models: how one programming pulse moves a cell's conductance (on-chip learning).

A device that learns in place is updated by pulses. One pulse moves the conductance by a step that
depends on the state ``g`` and on the direction (up: potentiating, down: depressing), with a
cycle-to-cycle spread, a device-to-device spread fixed per cell, and bounds. The contract is on
:class:`nvmkit.core.device.Device` (``pulse_step``, ``pulse_step_sigma``, ``pulse_step_d2d``,
``max_pulses``, ``pulse_energy``, ``pulse_updatable``); this module holds

- the parametrised step families a device author composes a model from (:class:`ConstantStep`,
  :class:`SoftBoundsStep`), after the pulsed device models of IBM's aihwkit (its documentation of
  ``ConstantStepDevice``, ``LinearStepDevice``, ``SoftBoundsDevice``; Gokmen and Vlasov, Front.
  Neurosci. 10, 333, 2016; Frascaroli et al., Sci. Rep. 8, 7178, 2018) in the normalised form
  of Agarwal et al. (IJCNN 2016), whose "asymmetric" and "symmetric" non-linearity both have a
  parameter here;
- the one sampling rule every user of the contract shares (:func:`draw_step_factors`,
  :func:`apply_pulses`): the exact, pulse-by-pulse numpy reference;
- the one refusal of a device without an update model (:func:`require_pulse_update`).

The sampling rule of one pulse on a cell at ``g`` with device-to-device factor ``f`` (drawn once
per chip: ``f = max(1 + pulse_step_d2d * z, 0)``, ``z`` standard normal):

    step = f * pulse_step(g, up) + pulse_step_sigma(g, up) * xi        (xi standard normal)
    g'   = clip(g + step, min(g, g_min), max(g, g_max))                (bounded devices)

so the cell's factor scales its mean step and the cycle-to-cycle noise is drawn around it; a pulse
never takes a cell past ``g_min`` or ``g_max`` (and never pushes a cell that is already outside,
as programming error can leave one, further out). ``n`` pulses are ``n`` such steps, each at the
state the previous one left.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nvmkit.core.component import _number, check_fraction, check_nonnegative, check_positive
from nvmkit.core.errors import ConfigError

#: where a newcomer reads how to state an update model
UPDATE_DOC = "docs/plugins.md#the-update-model-on-chip-learning"


def _number_between(owner: str, name: str, value, low: float, high: float, *, open_ends: bool) -> float:
    v = _number(owner, name, value)  # a finite number, else ConfigError
    inside = (low < v < high) if open_ends else (low <= v <= high)
    if not inside:
        ends = f"({low:g}, {high:g})" if open_ends else f"[{low:g}, {high:g}]"
        raise ConfigError(f"{owner}: {name} must lie in {ends}, got {value}")
    return v


class PulseUpdate:
    """An update model's mean step and cycle-to-cycle spread as functions of the state.

    Subclasses implement :meth:`mean` and :meth:`spread` on the normalised state
    ``x = (g - g_min) / (g_max - g_min)``, in units of the range ``g_max - g_min``; :meth:`step`
    and :meth:`sigma` scale them to a device's range. A device holds one as ``update_model`` and
    the base :class:`~nvmkit.core.device.Device` then answers ``pulse_step`` and
    ``pulse_step_sigma`` from it.
    """

    owner = "update model"

    def mean(self, x: np.ndarray, up: bool) -> np.ndarray:
        raise NotImplementedError

    def spread(self, x: np.ndarray, up: bool, mean: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _state(g, g_min: float, g_max: float):
        g = np.asarray(g)
        dtype = np.result_type(g.dtype, np.float32)
        span = g_max - g_min
        return (g.astype(dtype) - dtype.type(g_min)) / dtype.type(span), dtype, span

    def step(self, g, up: bool, g_min: float, g_max: float) -> np.ndarray:
        """Mean conductance change of one pulse at ``g`` (same units; >= 0 up, <= 0 down)."""
        x, dtype, span = self._state(g, g_min, g_max)
        return (self.mean(x, bool(up)) * span).astype(dtype, copy=False)

    def sigma(self, g, up: bool, g_min: float, g_max: float) -> np.ndarray:
        """Cycle-to-cycle std of one pulse's step at ``g`` (same units as ``g``)."""
        x, dtype, span = self._state(g, g_min, g_max)
        return (self.spread(x, bool(up), self.mean(x, bool(up))) * span).astype(dtype, copy=False)

    def describe(self) -> dict[str, Any]:
        return {"family": type(self).__name__, "form": (type(self).__doc__ or "").strip().splitlines()[0]}


class SoftBoundsStep(PulseUpdate):
    """Linear-in-state step: constant (nonlinearity 0) to soft bounds (1), with asymmetry.

    On the normalised state x = (g - g_min) / (g_max - g_min), in units of g_max - g_min:

        up:    dx+ = step (1 + asymmetry) max(1 + nonlinearity (1 - 2x), 0)
        down:  dx- = -step (1 - asymmetry) max(1 - nonlinearity (1 - 2x), 0)

    ``step`` is the mean of the up and down step sizes at mid-range (x = 1/2), where neither
    depends on ``nonlinearity``. ``asymmetry`` in (-1, 1) makes up steps ``(1 + a) / (1 - a)``
    times the down steps (aihwkit's ``up_down``). ``nonlinearity`` in [0, 1]: 0 is the constant
    step of Gokmen and Vlasov (Front. Neurosci. 2016; aihwkit ``ConstantStepDevice``); 1 is soft
    bounds, a step proportional to the distance to the bound it moves toward, zero at that bound
    (Fusi and Abbott, Nat. Neurosci. 2007; measured in HfO2 ReRAM by Frascaroli et al., Sci. Rep.
    8, 7178, 2018; aihwkit ``SoftBoundsDevice``); in between, aihwkit's ``LinearStepDevice`` with
    slope ``gamma`` = nonlinearity, whose up steps vanish at a virtual bound x = (1 + 1/nl) / 2
    beyond g_max. Such a step gives the saturating pulse response G(p) = G_inf - (G_inf - G_0)
    (1 - c)^p of the exponential fits used for ReRAM (the ``p_max``/``alpha`` form of aihwkit's
    ``SoftBoundsPmaxDevice``).

    Up and down steps are mirror images (each shrinks toward its own bound): Agarwal et al.
    (IJCNN 2016) call this an *asymmetric* non-linearity; random up and down pulses then drift
    every cell toward the symmetry point where the two steps are equal (x = (1 + a) / 2 with
    nonlinearity 1), which acts as a weight decay. ``symmetric_nonlinearity=True`` makes the down
    step follow the up step's curve instead (dx- = -step (1 - a) max(1 + nl (1 - 2x), 0)), their
    *symmetric* non-linearity, which retraces its path and which they found harmless when moderate.

    Cycle-to-cycle spread: std = sqrt((sigma)^2 + (sigma_rel |dx|)^2), an additive part (a fraction
    of the range per pulse; aihwkit's additive ``dw_min_std``) and a multiplicative part (a
    fraction of the mean step; aihwkit's ``mult_noise``).
    """

    def __init__(self, step: float, asymmetry: float = 0.0, nonlinearity: float = 1.0,
                 symmetric_nonlinearity: bool = False, sigma: float = 0.0, sigma_rel: float = 0.0,
                 owner: str = "update model", names: dict[str, str] | None = None):
        """``owner`` starts error messages (``"device 'NAME'"``); ``names`` maps these arguments
        to the names a device's users write (``{"step": "update_step"}``), so a message names
        the parameter they set."""
        self.owner = owner
        name = {k: k for k in ("step", "asymmetry", "nonlinearity", "symmetric_nonlinearity", "sigma", "sigma_rel")}
        name.update(names or {})
        self.step_size = check_positive(owner, name["step"], step)
        if self.step_size > 1:
            raise ConfigError(f"{owner}: {name['step']} is a fraction of g_max - g_min per pulse and must be <= 1, "
                              f"got {step}")
        self.asymmetry = _number_between(owner, name["asymmetry"], asymmetry, -1.0, 1.0, open_ends=True)
        self.nonlinearity = check_fraction(owner, name["nonlinearity"], nonlinearity)
        if not isinstance(symmetric_nonlinearity, (bool, np.bool_)):
            raise ConfigError(f"{owner}: {name['symmetric_nonlinearity']} must be true or false, "
                              f"got {symmetric_nonlinearity!r}")
        self.symmetric_nonlinearity = bool(symmetric_nonlinearity)
        self.sigma_abs = check_nonnegative(owner, name["sigma"], sigma)
        self.sigma_rel = check_nonnegative(owner, name["sigma_rel"], sigma_rel)

    def _shape(self, x, up: bool):
        one = x.dtype.type(1)
        tilt = x.dtype.type(self.nonlinearity) * (one - x.dtype.type(2) * x)
        if up or self.symmetric_nonlinearity:
            return np.maximum(one + tilt, x.dtype.type(0))
        return np.maximum(one - tilt, x.dtype.type(0))

    def mean(self, x, up: bool):
        scale = self.step_size * ((1 + self.asymmetry) if up else -(1 - self.asymmetry))
        return x.dtype.type(scale) * self._shape(x, up)

    def spread(self, x, up: bool, mean):
        if not self.sigma_rel:
            return np.full_like(x, self.sigma_abs)
        return np.sqrt(x.dtype.type(self.sigma_abs) ** 2 + np.square(x.dtype.type(self.sigma_rel) * mean))

    def symmetry_point(self) -> float | None:
        """Normalised state where the mean up step equals the mean down step's size, if any."""
        a, nl = self.asymmetry, self.nonlinearity
        if self.symmetric_nonlinearity or nl == 0:
            return None  # equal everywhere (a = 0) or nowhere
        # (1 + a)(1 + nl (1 - 2x)) = (1 - a)(1 - nl (1 - 2x))  ->  1 - 2x = -a / nl
        x = 0.5 * (1 + a / nl)
        return x if 0 <= x <= 1 else None

    def pulses_across(self) -> float:
        """Mean up pulses that take a noiseless cell from g_min to g_max (inf if it never gets there)."""
        c, nl = self.step_size * (1 + self.asymmetry), self.nonlinearity
        if nl == 0:
            return 1.0 / c
        # x_{k+1} = (1 - 2 c nl) x_k + c (1 + nl): x_n = x_inf (1 - r^n), x_inf = (1 + nl) / (2 nl)
        r = 1 - 2 * c * nl
        x_inf = (1 + nl) / (2 * nl)
        if x_inf <= 1 or r <= 0:
            return math.inf if x_inf <= 1 else 1.0
        return math.log(1 - 1 / x_inf) / math.log(r)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "step": self.step_size, "asymmetry": self.asymmetry, "nonlinearity": self.nonlinearity,
            "symmetric_nonlinearity": self.symmetric_nonlinearity,
            "sigma": self.sigma_abs, "sigma_rel": self.sigma_rel,
            "symmetry_point": self.symmetry_point(),
            # None: a noiseless cell never reaches g_max (soft bound); JSON has no infinity
            "up_pulses_across_range": None if math.isinf(self.pulses_across()) else self.pulses_across(),
        }


class ConstantStep(SoftBoundsStep):
    """Constant step up to hard bounds (Gokmen and Vlasov, Front. Neurosci. 2016).

    dx+ = step (1 + asymmetry), dx- = -step (1 - asymmetry) at every state, in units of
    g_max - g_min; the bounds stop it (aihwkit ``ConstantStepDevice``). The same as
    :class:`SoftBoundsStep` with ``nonlinearity = 0``.
    """

    def __init__(self, step: float, asymmetry: float = 0.0, sigma: float = 0.0, sigma_rel: float = 0.0,
                 owner: str = "update model", names: dict[str, str] | None = None):
        super().__init__(step, asymmetry, 0.0, False, sigma, sigma_rel, owner, names)


# -- the contract's users: refusal, d2d factors, the exact reference sampler ----------------------

def require_pulse_update(device, purpose: str = "on-chip learning") -> None:
    """Refuse, in one line naming the fix, a device that states no update model."""
    if getattr(device, "pulse_updatable", False):
        return
    name = getattr(device, "name", type(device).__name__)
    raise ConfigError(
        f"device '{name}' states no update model (pulse_step), so it cannot be used for {purpose}; "
        "use a device that states one (ideal, ecram, reram, softbounds) or give yours pulse_step "
        f"({UPDATE_DOC})")


def draw_step_factors(device, shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Each cell's device-to-device factor of its mean step: max(1 + pulse_step_d2d z, 0), z ~ N(0, 1).

    Drawn once per chip (per programmed crossbar and trial). With ``pulse_step_d2d = 0`` all ones
    and no random number is consumed.
    """
    d2d = float(getattr(device, "pulse_step_d2d", 0.0) or 0.0)
    if d2d == 0:
        return np.ones(shape, dtype=dtype)
    z = rng.standard_normal(shape)
    return np.maximum(1.0 + d2d * z, 0.0).astype(dtype)


def apply_pulses(device, g, pulses, rng: np.random.Generator, factors=None) -> np.ndarray:
    """The exact reference: ``pulses`` (signed counts, + up, - down, broadcast to ``g``) applied one
    by one to cells at ``g``, each pulse at the state the previous one left (module docstring).

    Vectorised over cells; loops over the pulse index only (up to max |pulses|). ``factors``: the
    cells' device-to-device factors (:func:`draw_step_factors`), drawn here from ``rng`` when None.
    Random numbers: the factors (if drawn), then one standard normal per cell per pulse index.
    Returns the new conductances (float32 for float32 input, else float64), ``g`` unchanged.
    """
    require_pulse_update(device, "pulse updates")
    g = np.asarray(g)
    dtype = np.result_type(g.dtype, np.float32)
    g = g.astype(dtype, copy=True)
    n = np.broadcast_to(np.asarray(pulses), g.shape)
    if not np.issubdtype(n.dtype, np.integer):
        if not np.all(np.isfinite(n)) or not np.array_equal(n, np.round(n)):
            raise ConfigError("apply_pulses: pulses must be whole numbers of pulses (signed: + up, - down)")
        n = n.astype(np.int64)
    f = (draw_step_factors(device, g.shape, rng, dtype) if factors is None
         else np.broadcast_to(np.asarray(factors, dtype=dtype), g.shape))
    count, up = np.abs(n), n > 0
    lo, hi = dtype.type(device.g_min), dtype.type(device.g_max)
    bounded = getattr(device, "bounded", True)
    for k in range(int(count.max(initial=0))):
        active = count > k
        mean = np.where(up, device.pulse_step(g, True), device.pulse_step(g, False))
        sigma = np.where(up, device.pulse_step_sigma(g, True), device.pulse_step_sigma(g, False))
        step = f * mean + sigma * rng.standard_normal(g.shape).astype(dtype)
        new = g + step
        if bounded:
            new = np.clip(new, np.minimum(g, lo), np.maximum(g, hi))
        g = np.where(active, new, g).astype(dtype, copy=False)
    return g


def describe_update(device) -> dict[str, Any] | None:
    """The update model of a device as plain data (``nvmkit devices show``), None without one."""
    if not getattr(device, "pulse_updatable", False):
        return None
    g = np.array([device.g_min, 0.5 * (device.g_min + device.g_max), device.g_max], dtype=np.float64)
    up, down = np.asarray(device.pulse_step(g, True)), np.asarray(device.pulse_step(g, False))
    s_up, s_down = np.asarray(device.pulse_step_sigma(g, True)), np.asarray(device.pulse_step_sigma(g, False))
    model = getattr(device, "update_model", None)
    out = {
        "step_up": [float(v) for v in up], "step_down": [float(v) for v in down],
        "sigma_up": [float(v) for v in s_up], "sigma_down": [float(v) for v in s_down],
        "at": ["g_min", "middle", "g_max"],
        "d2d": float(device.pulse_step_d2d), "max_pulses": device.max_pulses,
        "pulse_energy_J": device.pulse_energy,
    }
    if isinstance(model, PulseUpdate):
        out["model"] = model.describe()
    return out
