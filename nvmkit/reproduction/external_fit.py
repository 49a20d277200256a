"""Which test-set noise the seed's Result 1 "External" column used, identified by least squares.

The seed (Bennett et al., Sandia; Result 1 slide, :data:`nvmkit.reproduction.seed_study.SEED_RESULT1`)
gives its "External" column (test-set noise sigma_te*, networks trained without noise injection, no
internal noise) but not the noise type or level behind it. For each bundled test-set noise (Gaussian,
speckle, salt-and-pepper) this module evaluates our plain models on the noisy test set over a grid of
levels, then finds the one level that best reproduces the seed's six External cells:

    level* = argmin_l  sum over (network, data set) of (acc_ours(l) - acc_seed)^2

a 1-D search: the grid point of least squared error, refined by a bounded Brent search
(:func:`scipy.optimize.minimize_scalar`) on the grid's monotone cubic (PCHIP) interpolant between its
neighbours. The models are then evaluated again at the fitted level, so the residuals reported are
measured, not interpolated.

The External scenario is the network alone with noisy inputs (the pipeline deploys it on the ``ideal``
crossbar preset, which computes what the Keras model computes); here the Keras model itself is
evaluated. Every noisy test set is drawn from one seed: the stream of a (noise, data set, trial) is
the same at every level (common random numbers, so each curve is smooth in the level) and every
network of a data set sees the same noisy images.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from nvmkit.core.errors import ConfigError
from nvmkit.reproduction.seed_study import DATASETS, NETWORKS, SEED_RESULT1

Cell = tuple[str, str]  # (network, data set)

#: The seed's six External cells (fractions), keyed by (network, data set).
SEED_EXTERNAL: dict[Cell, float] = {cell: v["external"] for cell, v in SEED_RESULT1.items()}

#: The bundled test-set noises and the range searched for each: the std of Gaussian and speckle noise,
#: the fraction of pixels salt-and-pepper noise replaces.
NOISES = ("gaussian", "speckle", "salt-and-pepper")
BOUNDS: dict[str, tuple[float, float]] = {"gaussian": (0.0, 1.0), "speckle": (0.0, 2.0),
                                          "salt-and-pepper": (0.0, 0.6)}
DEFAULT_POINTS = 13  # grid points per noise type (the ends included)


def default_levels(noise: str, points: int = DEFAULT_POINTS) -> np.ndarray:
    if noise not in BOUNDS:
        raise ConfigError(f"no search range for noise {noise!r}; choose one of: {', '.join(BOUNDS)}")
    if points < 3:
        raise ConfigError(f"the level grid needs at least 3 points, got {points}")
    return np.linspace(*BOUNDS[noise], points)


# -- the fit (pure numbers) ---------------------------------------------------------------------------
@dataclass
class LevelFit:
    """The least-squares level of one noise type against the target cells (all accuracies fractions)."""

    noise: str
    level: float
    predicted: dict[Cell, float]  # the interpolated curves at ``level``
    targets: dict[Cell, float]
    grid: list[float] = field(default_factory=list)
    curves: dict[Cell, list[float]] = field(default_factory=dict)  # mean accuracy at each grid level
    measured: dict[Cell, list[float]] = field(default_factory=dict)  # per-trial accuracies at ``level``

    def ours(self) -> dict[Cell, float]:
        """Our accuracy per cell at the fitted level: measured when evaluated, else interpolated."""
        if self.measured:
            return {c: float(np.mean(v)) for c, v in self.measured.items()}
        return dict(self.predicted)

    def residuals(self) -> dict[Cell, float]:
        """Ours minus the seed's, per cell."""
        ours = self.ours()
        return {c: ours[c] - t for c, t in self.targets.items()}

    @property
    def rms(self) -> float:
        r = list(self.residuals().values())
        return math.sqrt(sum(x * x for x in r) / len(r))

    def to_dict(self) -> dict:
        key = lambda c: f"{c[0]}/{c[1]}"  # noqa: E731
        return {"noise": self.noise, "level": self.level, "rms": self.rms,
                "residuals": {key(c): v for c, v in self.residuals().items()},
                "ours": {key(c): v for c, v in self.ours().items()},
                "predicted": {key(c): v for c, v in self.predicted.items()},
                "targets": {key(c): v for c, v in self.targets.items()},
                "measured_per_trial": {key(c): v for c, v in self.measured.items()},
                "grid": self.grid, "curves": {key(c): v for c, v in self.curves.items()}}


def fit_level(grid: Sequence[float], curves: Mapping[Cell, Sequence[float]], targets: Mapping[Cell, float],
              noise: str = "") -> LevelFit:
    """The level minimising the summed squared difference between the curves and the targets.

    ``grid``: increasing levels; ``curves[cell]``: accuracy at each grid level; ``targets[cell]``: the
    accuracy to reproduce (every target cell needs a curve). Grid search, then a bounded Brent search
    on the PCHIP interpolant between the best grid point's neighbours.
    """
    from scipy.interpolate import PchipInterpolator
    from scipy.optimize import minimize_scalar

    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or len(g) < 3 or not np.all(np.diff(g) > 0):
        raise ConfigError("fit_level: the grid must hold at least 3 strictly increasing levels")
    missing = [c for c in targets if c not in curves]
    if missing or not targets:
        raise ConfigError(f"fit_level: no curve for the target cells {missing}" if missing
                          else "fit_level: no target cells")
    cells = list(targets)
    ys = np.stack([np.asarray(curves[c], dtype=np.float64) for c in cells])
    if ys.shape[1] != len(g):
        raise ConfigError(f"fit_level: each curve needs {len(g)} values, one per grid level")
    t = np.array([targets[c] for c in cells], dtype=np.float64)
    interp = PchipInterpolator(g, ys, axis=1)

    def sse(level: float) -> float:
        return float(np.sum((interp(level) - t) ** 2))

    on_grid = np.sum((ys - t[:, None]) ** 2, axis=0)
    i = int(np.argmin(on_grid))
    lo, hi = g[max(i - 1, 0)], g[min(i + 1, len(g) - 1)]
    res = minimize_scalar(sse, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-7 * (g[-1] - g[0])})
    level = float(res.x) if sse(float(res.x)) <= on_grid[i] else float(g[i])
    pred = interp(level)
    return LevelFit(noise, level, {c: float(p) for c, p in zip(cells, pred)}, dict(targets),
                    grid=[float(x) for x in g], curves={c: [float(v) for v in curves[c]] for c in curves})


# -- the evaluation -----------------------------------------------------------------------------------
@dataclass
class PlainModel:
    """A trained Keras model and how a data set's images become its input."""

    model: object
    prepare: Callable[[np.ndarray], np.ndarray]


def _stream(seed: int, noise: str, dataset: str, trial: int) -> np.random.Generator:
    # crc32: a stable integer for a name (Python's hash() is salted per process)
    key = (zlib.crc32(noise.encode()), zlib.crc32(dataset.encode()), trial)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def noise_accuracy(models: Mapping[Cell, PlainModel], test: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   noise: str, levels: Sequence[float], *, trials: int, seed: int, registry=None,
                   batch_size: int = 1024) -> dict[Cell, np.ndarray]:
    """Accuracy of every model on its data set's test set under ``noise`` at each level:
    ``{cell: array (levels, trials)}``. ``test[dataset] = (x_test in [0, 1] as the injectors take it,
    labels)``. Each noisy test set is drawn once, whole, and fed to every model of its data set."""
    from nvmkit.core.registry import get_registry
    from nvmkit.engine.evaluate import keras_outputs

    if trials < 1:
        raise ConfigError(f"trials must be at least 1, got {trials}")
    reg = registry or get_registry()
    out = {c: np.zeros((len(levels), trials)) for c in models}
    for ds in {c[1] for c in models}:
        if ds not in test:
            raise ConfigError(f"no test set for data set {ds!r}; pass test[{ds!r}] = (x_test, y_test)")
        x, y = test[ds]
        labels = np.asarray(y).reshape(-1)
        if labels.ndim == 1 and np.asarray(y).ndim > 1:
            labels = np.asarray(y).argmax(axis=-1)
        cells = [c for c in models if c[1] == ds]
        for j, level in enumerate(levels):
            injector = reg.create("noise", noise, {_first_param(reg, noise): float(level)})
            for k in range(trials):
                noisy = injector.apply(x, _stream(seed, noise, ds, k))
                for c in cells:
                    scores = keras_outputs(models[c].model, models[c].prepare(noisy), batch_size=batch_size)
                    out[c][j, k] = float(np.mean(np.asarray(scores).argmax(axis=-1) == labels))
    return out


def _first_param(reg, noise: str) -> str:
    import inspect

    params = [p for p in inspect.signature(reg.get("noise", noise).__init__).parameters if p != "self"]
    if not params:
        raise ConfigError(f"noise {noise!r} takes no level parameter")
    return params[0]


def fit_external(models: Mapping[Cell, PlainModel], test: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                 noises: Sequence[str] = NOISES, levels: Mapping[str, Sequence[float]] | None = None,
                 trials: int = 3, seed: int = 0, targets: Mapping[Cell, float] | None = None,
                 registry=None, progress: Callable[[str], None] | None = None) -> list[LevelFit]:
    """For each noise type: the accuracy curves over its level grid, the least-squares level against
    ``targets`` (default the seed's External cells, those of ``models``), and the models evaluated again
    at that level (:attr:`LevelFit.measured`, from which the residuals are computed)."""
    targets = dict(targets) if targets is not None else {c: SEED_EXTERNAL[c] for c in models if c in SEED_EXTERNAL}
    fits = []
    for noise in noises:
        grid = np.asarray(levels[noise] if levels and noise in levels else default_levels(noise), dtype=float)
        if progress:
            progress(f"{noise}: {len(grid)} levels x {trials} trials")
        acc = noise_accuracy(models, test, noise, grid, trials=trials, seed=seed, registry=registry)
        fit = fit_level(grid, {c: a.mean(axis=1) for c, a in acc.items()}, targets, noise)
        at = noise_accuracy(models, test, noise, [fit.level], trials=trials, seed=seed, registry=registry)
        fit.measured = {c: [float(v) for v in a[0]] for c, a in at.items()}
        fits.append(fit)
        if progress:
            progress(f"{noise}: level {fit.level:.4g}, RMS {100 * fit.rms:.2f} points")
    return fits


# -- the seed's plain models --------------------------------------------------------------------------
def plain_models(data_dir=None, *, quick: bool = False, registry=None, reporter=None):
    """The plain (sigma_neu = 0) networks of the seed study's Result 1 section, trained exactly as
    ``nvmkit reproduce`` trains them (so taken from the model cache when it holds them), and the test
    sets: ``({cell: PlainModel}, {dataset: (x_test, y_test)}, {dataset: is_sample})``."""
    from nvmkit.reproduction.reproduce import plan_reproduction
    from nvmkit.workflow.config import RunConfig
    from nvmkit.workflow.data import load_dataset
    from nvmkit.workflow.pipeline import Components
    from nvmkit.workflow.training import train

    plan = plan_reproduction(quick=quick, data_dir=data_dir, sections=["result1"], registry=registry)
    models: dict[Cell, PlainModel] = {}
    test: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sample: dict[str, bool] = {}
    for _, points in plan.sections:
        for p in points:
            cfg = RunConfig.from_dict(p.config)
            if float(cfg.training.sigma_neu or 0.0) != 0.0 or cfg.training.method not in (None, "plain"):
                continue
            comps = Components(cfg, registry)
            ds = load_dataset(cfg.dataset.name, cfg.dataset.data_dir, source=cfg.dataset.source)
            seed = cfg.seed if cfg.training.seed is None else cfg.training.seed
            model = train(comps.network, ds, cfg.training, seed=seed, reporter=reporter)
            models[(comps.network.name, ds.name)] = PlainModel(model, comps.network.prepare)
            test[ds.name] = (ds.x_test, ds.y_test)
            sample[ds.name] = bool(ds.is_sample)
    order = {c: i for i, c in enumerate((n, d) for d in DATASETS for n in NETWORKS)}
    return dict(sorted(models.items(), key=lambda kv: order.get(kv[0], len(order)))), test, sample


# -- the report ---------------------------------------------------------------------------------------
def render_fits(fits: Sequence[LevelFit]) -> str:
    """One row per noise type: the fitted level, our accuracy minus the seed's per cell, the RMS."""
    from nvmkit.reproduction.seed_study import DATA_LABEL, NET_LABEL

    if not fits:
        return ""
    cells = list(fits[0].targets)
    head = ("| test-set noise | fitted level | " + " | ".join(f"{NET_LABEL[n]} {DATA_LABEL[d]}" for n, d in cells)
            + " | RMS |")
    lines = [head, "|" + " --- |" * (3 + len(cells))]
    for f in sorted(fits, key=lambda f: f.rms):
        r = f.residuals()
        ours = f.ours()
        lines.append(f"| {f.noise} | {f.level:.3f} | " + " | ".join(
            f"{100 * ours[c]:.2f} ({100 * r[c]:+.2f})" for c in cells) + f" | {100 * f.rms:.2f} |")
    lines.append("| seed | — | " + " | ".join(f"{100 * fits[0].targets[c]:.2f}" for c in cells) + " | — |")
    return "\n".join(lines)
