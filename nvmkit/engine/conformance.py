"""Conformance checks: does a registered plugin keep the promises of its interface?

``nvmkit plugins check`` runs these so that a plugin author learns what is wrong before publishing:
the class subclasses the right abstract type and overrides what it must, it has a description,
its constructor defaults work, its configuration round-trips, bad numbers are refused with a
:class:`ConfigError` (not a ``TypeError`` from deep inside), its arrays have the shapes, dtypes and
ranges the engine relies on, and its randomness comes only from the ``Generator`` it is given.

Every check is small (a few cells, a few images, one 28x28 model) so checking every installed
plugin takes seconds. A check that raises is reported as a failure with the exception and the line
that raised it; it never stops the other checks.
"""

from __future__ import annotations

import json
import math
import random
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.device import Device
from nvmkit.core.energy import COMPONENTS, EnergyEstimator, EnergyReport
from nvmkit.core.errors import ConfigError
from nvmkit.core.footprint import LayerFootprint, TileShape
from nvmkit.core.network import NetworkMapper
from nvmkit.core.noise import NoiseInjector
from nvmkit.core.registry import KINDS, Registry, get_registry

PASS, FAIL, SKIP = "pass", "fail", "skip"

BASES: dict[str, type] = {
    "device": Device,
    "noise": NoiseInjector,
    "network": NetworkMapper,
    "energy": EnergyEstimator,
}
#: methods whose base-class version only raises NotImplementedError
REQUIRED: dict[str, tuple[str, ...]] = {
    "device": (),  # the base device is an ideal cell; every physics method has a working default
    "noise": ("apply",),
    "network": ("build", "noise_sites"),
    "energy": ("estimate",),
}
_DRIFT_TIMES = (1.0, 3600.0, 86400.0 * 30)  # s: a second, an hour, a month


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check of one plugin."""

    kind: str
    name: str
    check: str
    status: str  # "pass", "fail" or "skip"
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_dict(self) -> dict:
        return asdict(self)


class _Fail(Exception):
    """A broken promise, stated for the plugin author."""


class _Skip(Exception):
    """The check does not apply (or depends on something absent)."""


def _require(condition, message: str) -> None:
    if not condition:
        raise _Fail(message)


# -- entry points ------------------------------------------------------------------------------

def check_plugin(kind: str, name: str, registry: Registry | None = None) -> list[CheckResult]:
    """Run every check for the plugin ``name`` of ``kind`` registered in ``registry``."""
    reg = registry or get_registry()
    return check_class(reg.get(kind, name), kind, registry=reg)


def check_all(kind: str | None = None, registry: Registry | None = None) -> list[CheckResult]:
    """Check every registered plugin (of ``kind``, if given); plugins that failed to load fail."""
    reg = registry or get_registry()
    if kind is not None:
        reg._check_kind(kind)
    infos = [i for i in reg.all() if kind is None or i.kind == kind]
    results = [CheckResult("-", plugin, "loads", FAIL, message)
               for plugin, message in sorted(reg.load_errors.items())]
    for info in infos:
        results += check_class(info.cls, info.kind, registry=reg)
    return results


def check_class(cls: type, kind: str | None = None, registry: Registry | None = None) -> list[CheckResult]:
    """Check a plugin class directly, registered or not (useful in a plugin's own tests).

    With a ``registry``, a device is also priced by every energy estimator registered there.
    """
    kind = kind or getattr(cls, "kind", None)
    if kind not in BASES:
        raise ConfigError(f"cannot check {cls!r}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    run = _Runner(kind, getattr(cls, "name", "") or cls.__name__)
    run("interface", _check_interface, cls, kind)
    run("description", _check_description, cls)
    inst = run("defaults", _construct_default, cls)
    needs = inst is not None
    run("config round trip", _check_round_trip, cls, inst, needs=needs)
    run("parameter validation", _check_validation, cls, inst, needs=needs)
    for check_name, fn in _KIND_CHECKS[kind]:
        run(check_name, fn, inst, registry, needs=needs)
    return run.results


class _Runner:
    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name
        self.results: list[CheckResult] = []

    def __call__(self, check: str, fn: Callable, *args, needs: bool = True) -> Any:
        if not needs:
            self._add(check, SKIP, "needs a default instance (see 'defaults')")
            return None
        try:
            out = fn(*args)
        except _Fail as exc:
            self._add(check, FAIL, str(exc))
        except _Skip as exc:
            self._add(check, SKIP, str(exc))
        except Exception as exc:  # a crash inside the plugin is a failure, not a crash of the tool
            self._add(check, FAIL, _describe(exc))
        else:
            detail = out if isinstance(out, str) else ""
            self._add(check, PASS, detail)
            return out
        return None

    def _add(self, check, status, detail):
        self.results.append(CheckResult(self.kind, self.name, check, status, detail))


def _describe(exc: BaseException) -> str:
    """``TypeError: message (at file.py:12 in fn)``: the innermost frame is where to look."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}{where}"


# -- checks shared by every kind ---------------------------------------------------------------

def _check_interface(cls, kind):
    base = BASES[kind]
    _require(isinstance(cls, type) and issubclass(cls, base),
             f"{cls!r} must subclass nvmkit.{base.__name__}")
    _require(getattr(cls, "kind", None) == kind, f"kind is {getattr(cls, 'kind', None)!r}, expected {kind!r}")
    name = getattr(cls, "name", "")
    _require(isinstance(name, str) and name and name == name.strip() and ":" not in name and "," not in name,
             f"name {name!r} must be a non-empty string without ':' or ',' (users type it in specs)")
    missing = [m for m in REQUIRED[kind] if getattr(cls, m) is getattr(base, m)]
    _require(not missing, f"must override {', '.join(missing)} (the base version raises NotImplementedError)")
    return f"subclasses {base.__name__}" + (f"; overrides {', '.join(REQUIRED[kind])}" if REQUIRED[kind] else "")


def _check_description(cls):
    own = (cls.__dict__.get("__doc__") or "").strip()  # inspect.getdoc would inherit the base's
    _require(own, "the class needs a docstring: its first line is what `nvmkit plugins` shows")
    text = own.splitlines()[0].strip()
    _require(len(text) <= 120, f"first docstring line is {len(text)} characters; keep it under 120")
    return text


def _construct_default(cls):
    try:
        return cls()
    except TypeError as exc:
        raise _Fail(f"{cls.__name__}() failed ({exc}); give every constructor parameter a default") from None


def _check_round_trip(cls, inst):
    params = cls.param_names()
    missing = [p for p in params if not hasattr(inst, p)]
    _require(not missing, f"store each constructor parameter under the same attribute name; missing: {', '.join(missing)}")
    cfg = inst.get_config()
    try:
        json.dumps(cfg, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _Fail(f"get_config() is not plain JSON data ({exc}): store numbers, strings, lists, dicts") from None
    again = cls.from_config(cfg)
    _require(again.get_config() == cfg, f"from_config(get_config()) changed the config: {cfg} -> {again.get_config()}")
    inst.to_toml()
    return f"{len(params)} parameter(s)"


def _numeric_params(cls, inst) -> list[tuple[str, Any]]:
    out = []
    for p in cls.param_names():
        v = getattr(inst, p, None)
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)):
            out.append((p, v))
        elif isinstance(v, (list, tuple)) and v and all(
                isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
            out.append((p, list(v)))
    return out


def _check_validation(cls, inst):
    numeric = _numeric_params(cls, inst)
    if not numeric:
        raise _Skip("no numeric parameters")
    problems, accepted_negative = [], []
    for p, default in numeric:
        seq = isinstance(default, list)
        nan = [math.nan] * len(default) if seq else math.nan
        neg = [-abs(e) - 1 for e in default] if seq else -abs(default) - 1
        for label, value, must_reject in (("NaN", nan, True), ("'abc'", "abc", True), ("negative", neg, False)):
            try:
                cls.from_config({p: value})
            except ConfigError:
                continue
            except Exception as exc:
                problems.append(f"{p}={label} raised {_describe(exc)}; validate it with nvmkit's "
                                "check_positive/check_int/... helpers so it raises ConfigError")
                continue
            if must_reject:
                problems.append(f"{p}={label} was accepted; it must raise ConfigError")
            else:
                accepted_negative.append(p)
    _require(not problems, "; ".join(problems))
    note = f"{len(numeric)} numeric parameter(s) checked"
    return note + (f"; negative values accepted for {', '.join(accepted_negative)}" if accepted_negative else "")


# -- devices -----------------------------------------------------------------------------------

def _device_grid(dev: Device, outside: bool = False) -> np.ndarray:
    """Conductances over the device's range, with a leading trials axis as the engine passes them.
    ``outside`` extends 10% past both ends: programmed states land there before clipping."""
    pad = 0.1 * dev.g_range if outside else 0.0
    g = np.linspace(dev.g_min - pad, dev.g_max + pad, 24, dtype=np.float32)
    return g.reshape(2, 3, 4)


def _check_array(label: str, out, g: np.ndarray, nonnegative: bool = True) -> None:
    out = np.asarray(out)
    _require(out.shape == g.shape, f"{label} returned shape {out.shape} for input shape {g.shape}; "
                                   "return one value per cell (np.full_like, not a scalar)")
    _require(np.issubdtype(out.dtype, np.floating), f"{label} returned dtype {out.dtype}; return floats")
    _require(np.all(np.isfinite(out)), f"{label} returned NaN or inf")
    if nonnegative:
        _require(np.all(out >= 0), f"{label} returned negative values (min {out.min():.3g})")


def _check_device_range(dev, _reg):
    _require(np.isfinite(dev.g_min) and np.isfinite(dev.g_max) and 0 <= dev.g_min < dev.g_max,
             f"need 0 <= g_min < g_max, got g_min={dev.g_min}, g_max={dev.g_max}; call self._set_range")
    _require(dev.levels is None or (isinstance(dev.levels, int) and dev.levels >= 2),
             f"levels must be None or an integer >= 2, got {dev.levels!r}")
    _require(isinstance(dev.units, str) and dev.units, "set units (e.g. 'uS', or 'nA' for read currents)")
    return f"[{dev.g_min:g}, {dev.g_max:g}] {dev.units}, levels={dev.levels}"


def _check_device_citations(dev, _reg):
    cites = type(dev).citations
    physics = [m for m in ("programming_sigma", "read_sigma", "drift")
               if getattr(type(dev), m) is not getattr(Device, m)]
    if not cites and not physics and not type(dev).param_names():
        return "ideal device: nothing to cite"
    _require(isinstance(cites, dict) and cites,
             "set the class attribute citations = {parameter: 'Author et al., Venue Year: value'}")
    empty = [k for k, v in cites.items() if not isinstance(v, str) or not v.strip()]
    _require(not empty, f"empty citation for {', '.join(map(str, empty))}")
    unknown = [k for k in cites if not hasattr(dev, k)]
    _require(not unknown, f"citations name {', '.join(unknown)}, which the device does not have; "
                          "key each citation by a parameter or attribute name")
    uncited = [p for p, _ in _numeric_params(type(dev), dev) if p not in cites]
    return f"{len(cites)} cited" + (f"; uncited numeric parameters: {', '.join(uncited)}" if uncited else "")


def _at_times(fn, refused: set) -> list:
    """``fn(t)`` for each drift time; a ConfigError is the device refusing a time outside its
    fitted range (a user error it reports clearly), not a fault: that time is noted and skipped."""
    out = []
    for t in _DRIFT_TIMES:
        try:
            out.append((t, fn(t)))
        except ConfigError:
            refused.add(t)
    return out


def _refused_note(refused: set) -> str:
    return f"; refuses t = {', '.join(f'{t:g} s' for t in sorted(refused))} with ConfigError" if refused else ""


def _check_device_sigmas(dev, _reg):
    refused: set = set()
    for g in (_device_grid(dev), _device_grid(dev, outside=True), _device_grid(dev)[0]):
        before = g.copy()
        _check_array("programming_sigma(g, t=0)", dev.programming_sigma(g, 0.0), g)
        for t, out in _at_times(lambda t: dev.programming_sigma(g, t), refused):
            _check_array(f"programming_sigma(g, t={t:g})", out, g)
        _check_array("read_sigma(g)", dev.read_sigma(g), g)
        _require(np.array_equal(g, before), "a sigma function modified its input array in place")
    return "shapes, float dtype, finite, >= 0 (also 10% outside [g_min, g_max])" + _refused_note(refused)


def _check_device_drift(dev, _reg):
    g = _device_grid(dev)
    before = g.copy()
    g0 = np.asarray(dev.drift(g, 0.0))
    _check_array("drift(g, 0)", g0, g)
    _require(np.allclose(g0, g, rtol=1e-6, atol=1e-6 * dev.g_range), "drift(g, 0) must return g unchanged")
    refused: set = set()
    for t, out in _at_times(lambda t: dev.drift(g, t), refused):
        _check_array(f"drift(g, t={t:g})", out, g)
    wide = _device_grid(dev, outside=True)
    for t, out in _at_times(lambda t: dev.drift(wide, t), refused):
        _check_array(f"drift(g outside [g_min, g_max], t={t:g})", out, wide, nonnegative=False)
    _require(np.array_equal(g, before), "drift modified its input array in place")
    return "drift(g, 0) == g; shapes, finite, >= 0" + _refused_note(refused)


def _check_device_engine(dev, _reg):
    """Programs a 6x3 Dense layer through the real engine (``nvmkit.convert``: the device's numpy
    functions at programming, the Keras-ops read with read noise) at t = 0 and 1 h."""
    import keras

    from nvmkit.engine.convert import convert

    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    x = rng.random((5, 6), dtype=np.float32)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    model.set_weights([w, b])
    for drift_time in (0.0, 3600.0):
        cfg = CrossbarConfig.from_dict({"nonideal": {"drift_time": drift_time}})
        pair = [np.asarray(convert(model, dev, cfg, trials=2, seed=7)(np.repeat(x, 2, axis=0)))
                for _ in range(2)]
        for y in pair:
            _require(y.shape == (10, 3) and y.dtype == np.float32,
                     f"crossbar output has shape {y.shape} dtype {y.dtype}, expected (10, 3) float32")
            _require(np.all(np.isfinite(y)), f"crossbar output is not finite (drift_time={drift_time:g})")
        _require(np.array_equal(pair[0], pair[1]), "two programmings with the same seed differ: "
                                                   "draw every random number from the Generator given")
    return "programs and reads a 6x3 crossbar (t = 0 and 1 h), same seed -> same output"


def _check_device_update(dev, _reg):
    """The update model (on-chip learning), when the device states one: shapes, dtypes, signs
    (up >= 0, down <= 0), finite, a step no larger than the range, sigma >= 0, the figures'
    types, and a pulse through the reference sampler keeps cells within [g_min, g_max]."""
    from nvmkit.core.update import apply_pulses, draw_step_factors

    if not dev.pulse_updatable:
        raise _Skip("states no update model (inference only; on-chip learning refuses it in one line)")
    for g in (_device_grid(dev), _device_grid(dev, outside=True), _device_grid(dev)[0]):
        before = g.copy()
        for up, label in ((True, "up"), (False, "down")):
            step = np.asarray(dev.pulse_step(g, up))
            _check_array(f"pulse_step(g, up={up})", step, g, nonnegative=False)
            if up:
                _require(np.all(step >= 0), f"pulse_step(g, up=True) returned negative steps (min {step.min():.3g}); "
                                            "an up pulse's mean step is >= 0")
            else:
                _require(np.all(step <= 0), f"pulse_step(g, up=False) returned positive steps (max {step.max():.3g}); "
                                            "a down pulse's mean step is <= 0 (return the signed change)")
            _require(np.all(np.abs(step) <= dev.g_range),
                     f"pulse_step(g, up={up}) returned a step of {np.abs(step).max():.3g}, larger than the range "
                     f"g_max - g_min = {dev.g_range:g}; return the change of one pulse, not the new state")
            _check_array(f"pulse_step_sigma(g, up={up})", dev.pulse_step_sigma(g, up), g)
        _require(np.array_equal(g, before), "an update-model function modified its input array in place")
    inside = _device_grid(dev)
    _require(np.any(np.asarray(dev.pulse_step(inside, True)) > 0) and np.any(np.asarray(dev.pulse_step(inside, False)) < 0),
             "pulse_step is 0 everywhere in one direction: a cell could never be moved that way")
    d2d = dev.pulse_step_d2d
    _require(isinstance(d2d, (int, float, np.floating)) and math.isfinite(d2d) and d2d >= 0,
             f"pulse_step_d2d = {d2d!r}; must be a finite number >= 0")
    _require(dev.max_pulses is None or (isinstance(dev.max_pulses, (int, np.integer)) and dev.max_pulses >= 1),
             f"max_pulses = {dev.max_pulses!r}; must be None or an integer >= 1")
    _require(dev.pulse_energy is None or (isinstance(dev.pulse_energy, (int, float)) and math.isfinite(dev.pulse_energy)
                                          and dev.pulse_energy > 0),
             f"pulse_energy = {dev.pulse_energy!r}; must be None or a number > 0 (J per pulse per cell)")
    rng = np.random.default_rng(5)
    pulses = np.where(np.arange(inside.size).reshape(inside.shape) % 2 == 0, 3, -3)
    after = apply_pulses(dev, inside, pulses, rng, draw_step_factors(dev, inside.shape, rng))
    _check_array("the state after 3 pulses", after, inside, nonnegative=False)
    if dev.bounded:
        _require(np.all((after >= dev.g_min) & (after <= dev.g_max)),
                 f"3 pulses took cells outside [g_min, g_max] (range {after.min():.3g} to {after.max():.3g})")
    return "up >= 0, down <= 0, sigma >= 0, finite, |step| <= range; 3 pulses stay within [g_min, g_max]"


def _check_device_energy(dev, reg):
    cell = np.asarray(dev.cell_read_energy(np.float32(dev.g_max)))
    _require(np.all(np.isfinite(cell)) and np.all(cell >= 0), f"cell_read_energy(g_max) = {cell}; must be >= 0")
    for attr in ("read_voltage", "read_time", "energy_per_mac"):
        v = getattr(dev, attr, None)
        if v is not None:
            _require(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f"{attr} = {v!r}; must be > 0")
    priced = []
    for name in (reg.names("energy") if reg is not None else []):
        try:
            est = reg.create("energy", name)
        except Exception:
            continue  # the estimator's own checks report that
        report = est.estimate(list(_FOOTPRINT), dev)
        _check_report(report, f"energy estimator '{name}' on this device")
        priced.append(name)
    return f"cell read energy {float(cell):.3g} J" + (f"; priced by {', '.join(priced)}" if priced else "")


# -- noise injectors ---------------------------------------------------------------------------

def _images(shape=(6, 28, 28)) -> np.ndarray:
    x = np.random.default_rng(3).random(shape, dtype=np.float32)
    x[0] = 0.0  # all-black and all-white images are where clipping bugs show
    if len(x) > 1:
        x[1] = 1.0
    return x


def _check_noise_output(inj, _reg):
    for shape in ((6, 28, 28), (1, 28, 28)):  # what the engine passes: images (N, H, W); N may be 1
        x = _images(shape)
        before = x.copy()
        y = inj.apply(x, np.random.default_rng(0))
        _require(isinstance(y, np.ndarray), f"apply returned {type(y).__name__}; return a numpy array")
        _require(y.shape == x.shape, f"apply changed the shape {x.shape} -> {y.shape}")
        _require(y.dtype == np.float32, f"apply returned dtype {y.dtype}; return float32")
        _require(np.all(np.isfinite(y)), "apply returned NaN or inf")
        _require(y.min() >= 0 and y.max() <= 1, f"apply returned values in [{y.min():.3g}, {y.max():.3g}]; clip to [0, 1]")
        _require(np.array_equal(x, before), "apply modified its input in place; return a noisy copy")
    _require(isinstance(inj.level, float) and math.isfinite(inj.level),
             f"level (the first parameter) must be a number, got {inj.level!r}")
    return f"(N, 28, 28), N = 6 and 1: shape kept, float32, in [0, 1]; level {inj.level:g}"


def _check_noise_per_image(inj, _reg):
    """Image i of the output depends on image i of the input only (and on the random draws).

    Only the LAST image of the batch is changed, with the same seed: an injector whose draws depend
    on pixel values (Poisson shot noise) consumes the same draws for every image before it, so
    those must come out bit for bit the same. A filter, normalisation or shuffle across the batch
    axis changes them.
    """
    x = _images()
    changed = x.copy()
    changed[-1] = 1.0 - changed[-1]
    a = np.asarray(inj.apply(x, np.random.default_rng(21)))
    b = np.asarray(inj.apply(changed, np.random.default_rng(21)))
    moved = [i for i in range(len(x) - 1) if not np.array_equal(a[i], b[i])]
    _require(not moved, f"changing image {len(x) - 1} of a batch also changed output image(s) "
                        f"{', '.join(map(str, moved))}: apply must treat each image (axis 0 of (N, H, W)) on its "
                        "own; do not filter, normalise or mix across the batch axis")
    return "each image perturbed on its own (changing one image leaves the others' outputs alone)"


def _check_noise_seed(inj, _reg):
    x = _images()
    outs = []
    saved = np.random.get_state(), random.getstate()
    try:
        for global_seed in (1, 2):  # scramble the global generators: a plugin using them is caught
            np.random.seed(global_seed)
            random.seed(global_seed)
            outs.append(inj.apply(x, np.random.default_rng(11)))
    finally:  # the host process's global generators are not ours to change
        np.random.set_state(saved[0])
        random.setstate(saved[1])
    _require(np.array_equal(outs[0], outs[1]), "same Generator seed gave different outputs: draw every "
                                               "random number from the rng argument, not np.random/random")
    other = inj.apply(x, np.random.default_rng(12))
    varies = not np.array_equal(outs[0], other)
    return "same seed -> same output" + ("; another seed differs" if varies else "; output does not depend on the seed")


# -- network mappers ---------------------------------------------------------------------------

def _check_network_build(net, _reg):
    import keras

    sites = net.noise_sites()
    _require(isinstance(sites, (int, np.integer)) and sites >= 0, f"noise_sites() returned {sites!r}; return an int >= 0")
    model = net.build((28, 28), 10, sigma_neu=0.0, seed=0)
    _require(isinstance(model, keras.Model), f"build returned {type(model).__name__}; return a keras.Model")
    x = net.prepare(_images((4, 28, 28)))
    y = np.asarray(model(x, training=False))
    _require(y.shape == (4, 10), f"model output shape {y.shape}; expected (4, 10) for 4 images and 10 classes")
    _require(np.all(np.isfinite(y)), "model output is not finite")
    if sites:
        net.build((28, 28), 10, sigma_neu=[0.1] * int(sites), seed=0)
    net.build((28, 28), 10, sigma_neu=0.1, seed=0)
    defaults = net.training_defaults
    _require(isinstance(defaults, dict) and {"epochs", "batch_size"} <= set(defaults),
             "training_defaults must be a dict with at least epochs and batch_size")
    return f"{model.count_params()} weights, {sites} noise site(s), input {tuple(np.shape(x)[1:])}"


def _check_network_seed(net, _reg):
    a, b, c = (net.build((28, 28), 10, sigma_neu=0.0, seed=s).get_weights() for s in (0, 0, 1))
    _require(len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b)),
             "two builds with the same seed have different initial weights; seed every initializer")
    same = all(np.array_equal(u, v) for u, v in zip(a, c))
    _require(not same, "builds with seeds 0 and 1 have identical weights; the seed is ignored")
    return "same seed -> same weights; another seed differs"


def _check_network_deploy(net, _reg):
    """The network's model converts (nvmkit.convert) and, on an ideal crossbar, equals Keras."""
    from nvmkit.engine.convert import analog_footprint, convert

    model = net.build((28, 28), 10, sigma_neu=0.0, seed=0)
    x = net.prepare(_images((4, 28, 28)))
    analog = convert(model, _ProbeDevice(), CrossbarConfig.preset("ideal"))
    y = np.asarray(analog(x, training=False))
    ref = np.asarray(model(x, training=False))
    err = float(np.max(np.abs(y - ref)))
    _require(err <= 1e-4 * max(1.0, float(np.max(np.abs(ref)))),
             f"on an ideal crossbar the converted network differs from Keras by {err:.3g}; "
             "report the layer it uses as a bug")
    footprint = analog_footprint(analog)
    _require(footprint and all(isinstance(f, LayerFootprint) for f in footprint),
             "the converted network's footprint must be a list of LayerFootprint")
    return f"ideal crossbar matches Keras (max error {err:.1e}); {len(footprint)} layer(s) in the footprint"


# -- energy estimators -------------------------------------------------------------------------

class _ProbeDevice(Device):
    """An ideal device with only the base attributes (what any third-party device has)."""

    name = "conformance-probe"

    def __init__(self):
        self._set_range(1.0, 10.0)


#: a small hand-made network: 16-8 dense ReLU, a max-pool, 8-10 dense readout, softmax
_FOOTPRINT = (
    LayerFootprint("dense_0", "dense", tiles=(TileShape(17, 8),), reads_per_inference=1,
                   n_in=17, n_out=8, activations=8),
    LayerFootprint("pool", "maxpool", digital_ops=12),
    LayerFootprint("dense_1", "dense", tiles=(TileShape(9, 10),), reads_per_inference=1,
                   n_in=9, n_out=10, activations=0),
    LayerFootprint("softmax", "softmax", digital_ops=10),
)


def _check_report(report, label: str) -> None:
    _require(isinstance(report, EnergyReport), f"{label}: estimate returned {type(report).__name__}, not EnergyReport")
    _require(report.terms, f"{label}: the report has no terms")
    for t in report.terms:
        _require(t.component in COMPONENTS, f"{label}: term component {t.component!r} is not one of {', '.join(COMPONENTS)}")
        for field in ("count", "unit_energy"):
            v = getattr(t, field)
            _require(isinstance(v, (int, float, np.number)) and math.isfinite(v) and v >= 0,
                     f"{label}: term {t.layer}/{t.component} has {field} {v!r}; must be finite and >= 0")
    _require(math.isfinite(report.total) and report.total > 0, f"{label}: total energy {report.total!r} must be > 0")


def _check_energy_estimate(est, reg):
    probe = _ProbeDevice()
    report = est.estimate(list(_FOOTPRINT), probe)
    _check_report(report, "on a base-attribute device")
    layers = set(report.by_layer())
    unknown = layers - {f.name for f in _FOOTPRINT}
    _require(not unknown, f"report names layers not in the footprint: {', '.join(sorted(unknown))}")
    json.dumps(report.to_dict(), allow_nan=False)
    again = est.estimate(list(_FOOTPRINT), probe)
    _require(again.to_dict() == report.to_dict(), "two estimates of the same footprint differ")
    return f"{len(report.terms)} terms, {report.total:.3g} J for a 16-8-10 network"


_KIND_CHECKS: dict[str, list[tuple[str, Callable]]] = {
    "device": [
        ("conductance range", _check_device_range),
        ("citations", _check_device_citations),
        ("sigma shapes", _check_device_sigmas),
        ("drift", _check_device_drift),
        ("crossbar + seed", _check_device_engine),
        ("update model", _check_device_update),
        ("energy parameters", _check_device_energy),
    ],
    "noise": [
        ("apply: shape, dtype, range", _check_noise_output),
        ("apply: each image on its own", _check_noise_per_image),
        ("determinism under a seed", _check_noise_seed),
    ],
    "network": [
        ("build", _check_network_build),
        ("determinism under a seed", _check_network_seed),
        ("deploy", _check_network_deploy),
    ],
    "energy": [
        ("estimate", _check_energy_estimate),
    ],
}
