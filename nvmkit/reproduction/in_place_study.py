"""Learning in place (issue 22, point 5): the study of ``kind = "in_place"`` sections.

Two parts, each a list of *jobs* run with :class:`nvmkit.engine.in_place.InPlaceTraining` on one
chip per seed (the seed draws the chip's programming, its device-to-device step factors, the
read and pulse noise and the mini-batch order):

(a) **from scratch**: the seed's MLP, initialised as plain training initialises it, trained in
    place for ``scratch_steps`` mini-batches on each device of ``scratch_devices`` (bundled ones
    with cited update models) and on the parametrised soft-bounds device
    (``softbounds:asymmetry=A,nonlinearity=N,symmetric_nonlinearity=S``) over the grid
    ``asymmetry x nonlinearity x symmetric`` (``nonlinearity = 0`` has no shape, so only one of
    its symmetric/asymmetric cells is run). The accuracy is the trained chip's own
    (``InPlaceTraining.evaluate``: its conductances as they are, read noise fresh at every read),
    on the seeded test subset. Does *asymmetric* non-linearity hurt most (Agarwal et al., IJCNN
    2016)? :func:`asymmetry_verdict` answers from the cells.

(b) **on-chip fine-tuning**: the plainly trained networks of ``finetune_networks`` (the model
    cache's, trained as ``nvmkit run`` trains them), programmed on each device of
    ``finetune_devices`` (one chip per seed; ``drift_time`` after programming for a device
    that drifts), then trained in place; the chip's accuracy is read after each step count of
    ``finetune_steps`` (0: the programmed chip before any update). Beside it, on the same chip
    seed: the plain model programmed with global drift compensation (issue 21) where the
    device drifts, and the device-aware model (``training.method = "device"``, issue 20;
    one trained model per network and device, from the model cache when there) programmed
    on the chip.

    A device that states no update model cannot be fine-tuned. The bundled ``sonos`` states
    none (no source gives its program/erase steps), so a ``finetune_devices`` entry
    ``"sonos+assumed"`` is SONOS (its measured programming error, read noise and drift) with an
    **assumed** update model: a constant, symmetric, noiseless step of ``assumed_step`` of the
    conductance range (:func:`device_for`). That is the most favourable update a device can
    have; the study labels every number it gives as resting on that assumption.

Results are cached in a JSON file (one record per job, keyed by the job and the data), so a
rerun computes only the missing jobs. :func:`cells` pools the records over seeds into
:class:`Cell` statistics: mean, sample std and the 95% confidence interval of the mean
(Student's t with n - 1 degrees of freedom), which :func:`render_scratch` and
:func:`render_finetune` tabulate and :func:`plot_in_place` draws.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from nvmkit.core.atomic import atomic_write
from nvmkit.core.errors import ConfigError

ASSUMED = "+assumed"  # suffix of a device given an assumed update model
SCRATCH, FINETUNE = "scratch", "finetune"
#: a difference between two cells counts when their 95% intervals do not overlap
NET_LABEL = {"mlp": "MLP", "cnn": "CNN", "rnn": "RNN"}


@dataclass
class InPlacePlan:
    """What an ``in_place`` section runs (its ``[sections.NAME.plan]`` table); every key optional."""

    seeds: int = 3  # chips (and trainings) per cell, seeds 0 .. seeds-1 offset by the study's seed
    test_size: int = 2000  # seeded subset of the test set, the same for every cell
    batch_size: int = 32
    scratch_network: str = "mlp"
    scratch_devices: list = field(default_factory=lambda: ["ideal", "ecram", "reram"])
    asymmetry: list = field(default_factory=lambda: [0.0, 0.2, 0.5])
    nonlinearity: list = field(default_factory=lambda: [0.0, 0.5, 1.0])
    symmetric: list = field(default_factory=lambda: [False, True])
    scratch_steps: int = 1000
    scratch_learning_rate: float = 0.05
    scratch_headroom: float = 4.0  # largest initial weight at g_max / headroom, so weights can grow
    finetune_networks: list = field(default_factory=lambda: ["mlp", "cnn", "rnn"])
    finetune_devices: list = field(default_factory=lambda: ["reram", "ecram", "sonos+assumed"])
    finetune_steps: list = field(default_factory=lambda: [0, 50, 200, 500])
    finetune_learning_rate: float = 0.01
    drift_time: float = 432000.0  # s after programming (5 days) for a drifting device
    assumed_step: float = 0.002  # the assumed update's step, fraction of Gmax - Gmin
    device_aware: bool = True

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "plan") -> "InPlacePlan":
        data = dict(data or {})
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(names)}")
        plan = cls(**data)
        plan.validate(where)
        return plan

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, where: str = "plan") -> None:
        def ints(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{where}: {name} must be an integer >= {lo}, got {v!r}")

        def numbers(name, lo, hi, lo_open=False, hi_open=False):
            vals = getattr(self, name)
            if not isinstance(vals, list) or not vals:
                raise ConfigError(f"{where}: {name} must be a non-empty list, got {vals!r}")
            for v in vals:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                        (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)):
                    span = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
                    raise ConfigError(f"{where}: {name} values must lie in {span}, got {v!r}")

        def names(name):
            vals = getattr(self, name)
            if not isinstance(vals, list) or not all(isinstance(v, str) and v for v in vals):
                raise ConfigError(f"{where}: {name} must be a list of names, got {vals!r}")

        ints("seeds", 2)  # a confidence interval needs two
        ints("test_size", 1)
        ints("batch_size", 1)
        ints("scratch_steps", 1)
        numbers("asymmetry", -1, 1, lo_open=True, hi_open=True)
        numbers("nonlinearity", 0, 1)
        if not isinstance(self.symmetric, list) or not self.symmetric or not all(
                isinstance(v, bool) for v in self.symmetric):
            raise ConfigError(f"{where}: symmetric must be a non-empty list of true/false, got {self.symmetric!r}")
        names("scratch_devices")
        names("finetune_networks")
        names("finetune_devices")
        if not isinstance(self.scratch_network, str) or not self.scratch_network:
            raise ConfigError(f"{where}: scratch_network must be a network name")
        steps = self.finetune_steps
        if (not isinstance(steps, list) or not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                                           for s in steps) or steps != sorted(set(steps))):
            raise ConfigError(f"{where}: finetune_steps must be increasing integers >= 0, e.g. [0, 50, 200], "
                              f"got {steps!r}")
        for name in ("scratch_learning_rate", "finetune_learning_rate", "scratch_headroom", "assumed_step"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{where}: {name} must be a number > 0, got {v!r}")
        if self.scratch_headroom < 1:
            raise ConfigError(f"{where}: scratch_headroom must be >= 1 (1: the largest weight at g_max)")
        if self.assumed_step > 1:
            raise ConfigError(f"{where}: assumed_step is a fraction of the conductance range; give one <= 1")
        if isinstance(self.drift_time, bool) or not isinstance(self.drift_time, (int, float)) or self.drift_time < 0:
            raise ConfigError(f"{where}: drift_time must be seconds >= 0, got {self.drift_time!r}")
        if not isinstance(self.device_aware, bool):
            raise ConfigError(f"{where}: device_aware must be true or false")

    # -- the jobs ---------------------------------------------------------------------------------
    def scratch_specs(self) -> list[str]:
        """The devices of part (a): the named ones, then the soft-bounds grid (a nonlinearity of 0
        has no shape to make symmetric: one cell)."""
        out = list(self.scratch_devices)
        for a in self.asymmetry:
            for nl in self.nonlinearity:
                for sym in (self.symmetric if nl > 0 else self.symmetric[:1]):
                    out.append(softbounds_spec(a, nl, sym))
        return list(dict.fromkeys(out))

    def jobs(self, base_seed: int = 0) -> list["Job"]:
        """Every job, a seed at a time (a run cut short has fewer chips per cell, not missing cells)."""
        out = []
        for s in range(base_seed, base_seed + self.seeds):
            out += [Job(SCRATCH, self.scratch_network, spec, s) for spec in self.scratch_specs()]
            out += [Job(FINETUNE, net, dev, s) for net in self.finetune_networks for dev in self.finetune_devices]
        return out


def softbounds_spec(asymmetry: float, nonlinearity: float, symmetric: bool) -> str:
    return (f"softbounds:asymmetry={asymmetry:g},nonlinearity={nonlinearity:g},"
            f"symmetric_nonlinearity={'true' if symmetric else 'false'}")


def parse_softbounds(spec: str) -> tuple[float, float, bool] | None:
    """(asymmetry, nonlinearity, symmetric) of a spec :func:`softbounds_spec` wrote, else None."""
    if not spec.startswith("softbounds:"):
        return None
    kv = dict(p.split("=", 1) for p in spec.split(":", 1)[1].split(","))
    return float(kv["asymmetry"]), float(kv["nonlinearity"]), kv["symmetric_nonlinearity"] == "true"


@dataclass(frozen=True)
class Job:
    part: str
    network: str
    device: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.part}|{self.network}|{self.device}|{self.seed}"


# -- statistics --------------------------------------------------------------------------------------
def t_quantile(n: int) -> float:
    """Two-sided 95% Student t quantile with n - 1 degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


@dataclass(frozen=True)
class Cell:
    """Accuracies (fractions) of one cell pooled over its seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values) -> "Cell | None":
        values = [float(v) for v in values if v is not None]
        if not values:
            return None
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))

    @property
    def ci95(self) -> float:
        """Half-width of the 95% confidence interval of the mean (nan with one value)."""
        return t_quantile(self.n) * self.std / math.sqrt(self.n) if self.n > 1 else float("nan")

    def pct(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f}"


# -- running -----------------------------------------------------------------------------------------
def device_for(spec: str, plan: InPlacePlan):
    """The device of a spec; ``NAME+assumed``: NAME with the plan's assumed update model (a
    constant, symmetric, noiseless step of ``assumed_step`` of the range: no source states one)."""
    from nvmkit.core.registry import create_from_spec
    from nvmkit.core.update import SoftBoundsStep

    if spec.endswith(ASSUMED):
        dev = create_from_spec("device", spec[: -len(ASSUMED)])
        if dev.pulse_updatable:
            raise ConfigError(f"device '{dev.name}' states its own update model; drop '{ASSUMED}'")
        dev._set_update(SoftBoundsStep(plan.assumed_step, 0.0, 0.0, owner=f"device '{dev.name}' (assumed update)"))
        return dev
    return create_from_spec("device", spec)


def _drifts(device, t: float) -> bool:
    import numpy as np

    g = np.linspace(device.g_min, device.g_max, 9, dtype=np.float32)
    return t > 0 and not np.allclose(device.drift(g, t), g)


def _crossbar(device, plan: InPlacePlan, compensation: str = "none"):
    from nvmkit.engine.crossbar_config import CrossbarConfig

    if not _drifts(device, plan.drift_time):
        return None if compensation == "none" else False
    return CrossbarConfig.from_dict({"nonideal": {"drift_time": float(plan.drift_time),
                                                  "drift_compensation": compensation}})


def test_subset(n_test: int, size: int, seed: int):
    """Indices of the seeded test subset (sorted; all of it when ``size >= n_test``)."""
    import numpy as np

    if size >= n_test:
        return np.arange(n_test)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(22, 5)))
    return np.sort(rng.choice(n_test, size, replace=False))


def _accuracy(model, x, y, batch: int = 256) -> float:
    import numpy as np

    correct = 0
    for s in range(0, len(x), batch):
        correct += int(np.sum(np.asarray(model(x[s:s + batch], training=False)).argmax(-1) == y[s:s + batch]))
    return correct / len(x)


def run_job(job: Job, plan: InPlacePlan, data, *, plain_model: Callable, device_aware_model: Callable,
            test_idx) -> dict:
    """One job's record (accuracies as fractions, seconds)."""
    import keras
    import numpy as np

    from nvmkit.core.registry import get_registry
    from nvmkit.engine.convert import convert
    from nvmkit.engine.in_place import InPlaceTraining
    from nvmkit.workflow.training import _ends_in_softmax

    started = time.perf_counter()
    mapper = get_registry().create("network", job.network)
    x = np.asarray(mapper.prepare(data.x_train), np.float32)
    xt = np.asarray(mapper.prepare(data.x_test[test_idx]), np.float32)
    yt = np.asarray(data.y_test[test_idx]).reshape(-1)
    device = device_for(job.device, plan)
    rec: dict = {"key": job.key, **asdict(job)}
    if job.part == SCRATCH:
        keras.utils.set_random_seed(job.seed)
        model = mapper.build(tuple(data.x_train.shape[1:]), int(np.max(data.y_train)) + 1, 0.0, job.seed)
        trainer = InPlaceTraining(model, device, None, seed=job.seed, learning_rate=plan.scratch_learning_rate,
                                  headroom=plan.scratch_headroom, calibration_data=x[:500],
                                  loss=keras.losses.SparseCategoricalCrossentropy(
                                      from_logits=not _ends_in_softmax(model)))
        history = trainer.fit(x, data.y_train, steps=plan.scratch_steps, batch_size=plan.batch_size)
        rec["accuracy"] = trainer.evaluate(xt, yt)
        rec["train_accuracy"] = history["accuracy"][-1]
        rec["pulses"] = sum(p["pulses"] for p in trainer.pulses_fired())
    else:
        plain = plain_model(job.network)
        xbar = _crossbar(device, plan)
        model = keras.models.clone_model(plain)
        model.set_weights(plain.get_weights())
        trainer = InPlaceTraining(model, device, xbar, seed=job.seed, learning_rate=plan.finetune_learning_rate,
                                  calibration_data=x[:500],
                                  loss=keras.losses.SparseCategoricalCrossentropy(
                                      from_logits=not _ends_in_softmax(model)))
        curve, done = {}, 0
        for s in plan.finetune_steps:
            if s > done:
                trainer.fit(x, data.y_train, steps=s - done, batch_size=plan.batch_size)
                done = s
            curve[str(s)] = trainer.evaluate(xt, yt)
        rec["curve"] = curve
        rec["digital"] = _accuracy(plain, xt, yt)
        if xbar is not None:  # the plain model with global drift compensation, on the same chip seed
            comp = _crossbar(device, plan, "global")
            rec["drift_compensated"] = _accuracy(convert(plain, device, comp, seed=job.seed,
                                                         calibration_data=x[:500]), xt, yt)
        if plan.device_aware:
            da = device_aware_model(job.network, job.device, device, xbar)
            if da is not None:
                rec["device_aware"] = _accuracy(convert(da, device, xbar, seed=job.seed,
                                                        calibration_data=x[:500]), xt, yt)
    rec["seconds"] = round(time.perf_counter() - started, 1)
    return rec


def data_tag(data) -> dict:
    return {"dataset": data.name, "sample": bool(data.is_sample), "n_train": int(len(data.x_train)),
            "n_test": int(len(data.x_test))}


def load_records(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def run(plan: InPlacePlan, data, path: str | Path, *, base_seed: int = 0, training_config=None,
        on_job: Callable[[Job, dict, int, int], None] | None = None) -> dict:
    """Run the plan's missing jobs, writing the records file after each (atomically); returns it.

    The file holds ``{"plan", "data", "records": {key: record}}``; records made under another
    plan or other data are dropped (the plan's figures change every number)."""
    from nvmkit.core.registry import get_registry
    from nvmkit.workflow.config import TrainingConfig
    from nvmkit.workflow.training import train

    path = Path(path)
    tag = data_tag(data)
    state = load_records(path)
    if state.get("plan") != plan.to_dict() or state.get("data") != tag or state.get("base_seed") != base_seed:
        state = {"plan": plan.to_dict(), "data": tag, "base_seed": base_seed, "records": {}}
    records = state["records"]
    test_idx = test_subset(len(data.x_test), plan.test_size, base_seed)
    cfg = TrainingConfig.coerce(training_config or {})
    plain_cache: dict = {}

    def plain_model(network):
        if network not in plain_cache:
            plain_cache[network] = train(get_registry().create("network", network), data, cfg, seed=base_seed)
        return plain_cache[network]

    def device_aware_model(network, spec, device, xbar):
        key = (network, spec)
        if key not in plain_cache:
            da_cfg = cfg.replace(method="device")
            plain_cache[key] = train(get_registry().create("network", network), data, da_cfg, seed=base_seed,
                                     device=device, crossbar=xbar)
        return plain_cache[key]

    jobs = [j for j in plan.jobs(base_seed) if j.key not in records]
    for i, job in enumerate(jobs):
        rec = run_job(job, plan, data, plain_model=plain_model, device_aware_model=device_aware_model,
                      test_idx=test_idx)
        records[job.key] = rec
        atomic_write(path, json.dumps(state, indent=1, sort_keys=True) + "\n")
        if on_job is not None:
            on_job(job, rec, i + 1, len(jobs))
    return state


# -- tables ------------------------------------------------------------------------------------------
def scratch_cells(records: dict) -> dict[str, Cell]:
    """Device spec -> the trained chips' accuracy pooled over seeds (part a)."""
    by: dict[str, list] = {}
    for r in records.values():
        if r["part"] == SCRATCH:
            by.setdefault(r["device"], []).append(r["accuracy"])
    return {k: Cell.of(v) for k, v in by.items()}


def finetune_cells(records: dict) -> dict[tuple[str, str], dict[str, Cell]]:
    """(network, device) -> {"0", "50", ... (steps), "digital", "drift_compensated",
    "device_aware"} pooled over seeds (part b)."""
    by: dict[tuple, dict[str, list]] = {}
    for r in records.values():
        if r["part"] != FINETUNE:
            continue
        d = by.setdefault((r["network"], r["device"]), {})
        for k, v in r["curve"].items():
            d.setdefault(k, []).append(v)
        for k in ("digital", "drift_compensated", "device_aware"):
            if k in r:
                d.setdefault(k, []).append(r[k])
    return {k: {n: Cell.of(v) for n, v in d.items()} for k, d in by.items()}


def device_label(spec: str) -> str:
    sb = parse_softbounds(spec)
    if sb is not None:
        a, nl, sym = sb
        return f"soft-bounds a={a:g} nl={nl:g}" + ("" if nl == 0 else (" symmetric" if sym else " asymmetric"))
    if spec.endswith(ASSUMED):
        return f"{spec[: -len(ASSUMED)]} (assumed update)"
    return spec


def render_scratch(cells_: dict[str, Cell], plan: InPlacePlan) -> str:
    """Bundled devices as rows; then the soft-bounds grid: a row per (asymmetry, kind of
    non-linearity), a column per non-linearity."""
    lines = ["| device | accuracy (%) |", "| --- | --- |"]
    for spec in plan.scratch_devices:
        c = cells_.get(spec)
        lines.append(f"| {spec} | {c.pct() if c else 'not run'} |")
    nls = list(plan.nonlinearity)
    lines += ["", "| soft-bounds asymmetry | non-linearity | " + " | ".join(f"nl = {n:g}" for n in nls) + " |",
              "| --- | --- |" + " --- |" * len(nls)]
    for a in plan.asymmetry:
        for sym in plan.symmetric:
            row = []
            for nl in nls:
                c = cells_.get(softbounds_spec(a, nl, sym if nl > 0 else plan.symmetric[0]))
                row.append(c.pct() if c else "not run")
            lines.append(f"| {a:g} | {'symmetric' if sym else 'asymmetric'} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def asymmetry_verdict(cells_: dict[str, Cell], plan: InPlacePlan) -> str:
    """Which of the soft-bounds effects costs most, each alone at its largest value, against the
    linear symmetric cell (a = 0, nl = 0): asymmetric non-linearity, symmetric non-linearity,
    asymmetry alone. A cost is the accuracy lost (percentage points) ± the 95% CI of the
    difference (the two cells' intervals in quadrature); "most" holds when the asymmetric
    non-linearity's loss exceeds each other loss by more than the two CIs combined."""
    nl, a = max(plan.nonlinearity), max(plan.asymmetry, key=abs)
    ref = cells_.get(softbounds_spec(0.0, 0.0, plan.symmetric[0]))
    asym = cells_.get(softbounds_spec(0.0, nl, False))
    sym = cells_.get(softbounds_spec(0.0, nl, True))
    alone = cells_.get(softbounds_spec(a, 0.0, plan.symmetric[0]))
    if ref is None or asym is None or nl == 0:
        return "not tested (the grid lacks the linear cell or the asymmetric non-linearity)"

    def loss(c):
        return 100 * (ref.mean - c.mean), 100 * math.hypot(ref.ci95, c.ci95)

    parts = {f"asymmetric non-linearity (nl = {nl:g})": asym}
    if sym is not None:
        parts[f"symmetric non-linearity (nl = {nl:g})"] = sym
    if alone is not None and a != 0:
        parts[f"asymmetry alone (a = {a:g})"] = alone
    losses = {k: loss(c) for k, c in parts.items()}
    text = "; ".join(f"{k}: {m:+.2f} ± {h:.2f} points" for k, (m, h) in losses.items())
    first = next(iter(losses))
    m0, h0 = losses[first]
    others = [(k, v) for k, v in losses.items() if k != first]
    if not others:
        return f"accuracy lost against the linear symmetric device: {text} (nothing to compare it with)"
    if all(m0 - m > h0 + h for _, (m, h) in others):
        verdict = "asymmetric non-linearity hurts most (beyond the 95% intervals)"
    elif all(m0 >= m for _, (m, h) in others):
        verdict = "asymmetric non-linearity costs most, but not beyond the 95% intervals"
    else:
        verdict = "asymmetric non-linearity does not hurt most here"
    pairs = "; ".join(f"{abs(m0 - m):.2f} points {'more' if m0 >= m else 'less'} than {k}, "
                      f"{'beyond' if abs(m0 - m) > h0 + h else 'within'} the intervals" for k, (m, h) in others)
    return f"{verdict}: it costs {pairs}. Accuracy lost against the linear symmetric device: {text}"


def render_finetune(cells_: dict, plan: InPlacePlan) -> str:
    steps = [str(s) for s in plan.finetune_steps]
    head = (["network", "device", "digital"] + [f"in place, {s} steps" for s in steps]
            + ["device-aware trained", "drift-compensated"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for net in plan.finetune_networks:
        for dev in plan.finetune_devices:
            d = cells_.get((net, dev))
            if d is None:
                lines.append(f"| {NET_LABEL.get(net, net)} | {device_label(dev)} |" + " not run |" * (len(head) - 2))
                continue

            def c(k, d=d):
                cell = d.get(k)
                return cell.pct() if cell else "—"
            lines.append("| " + " | ".join([NET_LABEL.get(net, net), device_label(dev), c("digital")]
                                           + [c(s) for s in steps] + [c("device_aware"), c("drift_compensated")])
                         + " |")
    return "\n".join(lines)


def finetune_gains(records: dict, plan: InPlacePlan) -> dict[tuple[str, str], dict[str, Cell]]:
    """(network, device) -> what each remedy changes against the programmed chip before any
    update (step 0), per chip, pooled over chips: ``"in place"`` (the last step count),
    ``"device-aware"`` and ``"drift-compensated"``. Paired: each difference is taken on one
    chip seed, so the chip's own programming cancels and the interval is the differences' own."""
    first, last = str(plan.finetune_steps[0]), str(plan.finetune_steps[-1])
    by: dict[tuple, dict[str, list]] = {}
    for r in records.values():
        if r["part"] != FINETUNE or first not in r["curve"]:
            continue
        d = by.setdefault((r["network"], r["device"]), {})
        base = r["curve"][first]
        for name, value in (("in place", r["curve"].get(last)), ("device-aware", r.get("device_aware")),
                            ("drift-compensated", r.get("drift_compensated"))):
            if value is not None:
                d.setdefault(name, []).append(value - base)
    return {k: {n: Cell.of(v) for n, v in d.items()} for k, d in by.items()}


def render_gains(records: dict, plan: InPlacePlan) -> str:
    """The paired changes of :func:`finetune_gains`, in points ± their 95% CI."""
    gains = finetune_gains(records, plan)
    names = ("in place", "device-aware", "drift-compensated")
    head = ["network", "device", f"in place, {plan.finetune_steps[-1]} steps", "device-aware trained",
            "drift-compensated"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for net in plan.finetune_networks:
        for dev in plan.finetune_devices:
            g = gains.get((net, dev))
            if g is None:
                continue
            cells_ = [f"{100 * g[n].mean:+.2f} ± {100 * g[n].ci95:.2f}" if g.get(n) else "—" for n in names]
            lines.append("| " + " | ".join([NET_LABEL.get(net, net), device_label(dev)] + cells_) + " |")
    return "\n".join(lines)


# -- figure ------------------------------------------------------------------------------------------
def plot_in_place(records: dict, plan: InPlacePlan, out: Path, sample: bool = False) -> list[Path]:
    from matplotlib.figure import Figure

    from nvmkit.sweeps.plots import _save

    sc, ft = scratch_cells(records), finetune_cells(records)
    if not sc and not ft:
        return []
    nets = [n for n in plan.finetune_networks if any(k[0] == n for k in ft)]
    fig = Figure(figsize=(4.4 * (1 + max(1, len(nets))), 3.9), layout="constrained")
    axes = fig.subplots(1, 1 + max(1, len(nets)), squeeze=False)[0]
    ax = axes[0]
    nls = list(plan.nonlinearity)
    for i, a in enumerate(plan.asymmetry):
        for sym, style in ((False, "-"), (True, "--")):
            if sym not in plan.symmetric:
                continue
            pts = [(nl, sc.get(softbounds_spec(a, nl, sym if nl > 0 else plan.symmetric[0]))) for nl in nls]
            pts = [(nl, c) for nl, c in pts if c is not None]
            if pts:
                ax.errorbar([p[0] for p in pts], [100 * p[1].mean for p in pts],
                            yerr=[100 * p[1].ci95 for p in pts], color=f"C{i}", ls=style, marker="o",
                            markersize=3, capsize=2,
                            label=f"a={a:g} {'symmetric' if sym else 'asymmetric'}")
    for j, spec in enumerate(plan.scratch_devices):
        c = sc.get(spec)
        if c is not None:
            ax.axhline(100 * c.mean, color="k", ls=(0, (1, 1 + j)), lw=0.8)
            ax.annotate(spec, (nls[-1], 100 * c.mean), fontsize="x-small", ha="right", va="bottom")
    ax.set_xlabel("non-linearity of the soft-bounds step")
    ax.set_ylabel("accuracy of the trained chip (%)")
    ax.set_title(f"(a) {NET_LABEL.get(plan.scratch_network, plan.scratch_network)} trained in place from scratch, "
                 f"{plan.scratch_steps} steps", fontsize="small")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3)
    steps = plan.finetune_steps
    for ax, net in zip(axes[1:], nets):
        for i, dev in enumerate(plan.finetune_devices):
            d = ft.get((net, dev))
            if not d:
                continue
            pts = [(s, d.get(str(s))) for s in steps if d.get(str(s))]
            ax.errorbar(range(len(pts)), [100 * c.mean for _, c in pts], yerr=[100 * c.ci95 for _, c in pts],
                        color=f"C{i}", marker="o", markersize=3, capsize=2, label=device_label(dev))
            for k, mk in (("device_aware", "s"), ("drift_compensated", "^")):
                if d.get(k):
                    ax.errorbar([len(steps) - 1 + 0.15], [100 * d[k].mean], yerr=[100 * d[k].ci95], color=f"C{i}",
                                marker=mk, markersize=5, capsize=2, ls="none")
        digital = next((d["digital"] for (n, _), d in ft.items() if n == net and d.get("digital")), None)
        if digital is not None:  # the plain model in Keras (the same for every device)
            ax.axhline(100 * digital.mean, color="grey", ls=":", lw=1, label="digital (Keras)")
        ax.set_xticks(range(len(steps)), [str(s) for s in steps])
        ax.set_xlabel("in-place update steps (square: device-aware, triangle: drift-compensated)",
                      fontsize="x-small")
        ax.set_ylabel("accuracy of the chip (%)")
        ax.set_title(f"(b) {NET_LABEL.get(net, net)} fine-tuned on chip", fontsize="small")
        ax.legend(fontsize="x-small")
        ax.grid(alpha=0.3)
    fig.suptitle("Learning in place" + (" (embedded sample)" if sample else "")
                 + f": mean and 95% CI over {plan.seeds} chips", fontsize="medium")
    return _save(fig, Path(out) / "in_place")
