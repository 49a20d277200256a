"""Experiment files: a base run configuration and a grid, expanded into validated sweep points.

An experiment is a TOML file::

    [experiment]                      # optional
    name = "noise-sweep"
    description = "..."

    [base]                            # a RunConfig table (what ``nvmkit run`` reads)
    trials = 3
    dataset.source = "sample"

    [grid]                            # dotted key -> list of values; the points are the product
    "network.name" = ["mlp", "rnn"]
    noise = ["gaussian:0.1", "speckle:0.2"]

    [[points]]                        # optional explicit points (dotted key -> value)
    "network.name" = "cnn"
    "training.sigma_neu" = 0.1

A plugin (``network``, ``device``, ``noise``, ``energy``) is a spec string or a table, by the grammar
of :mod:`nvmkit.core.spec` (docs/plugins.md, "Spec grammar"). With both ``[grid]`` and ``[[points]]``, every point is crossed with the grid (points x grid), so the
points name variants (e.g. a network with and without noise training) and the grid the levels swept
over each. Keys are set leaf by leaf; an empty table (``device.params = {}``) clears the base's table.

Every point is validated, plugins included (:func:`nvmkit.workflow.pipeline.resolve`), before anything runs,
and an error names the file, the offending key and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvmkit.workflow.config import (PLUGIN_FIELDS, RunConfig, plugin_path_params, rebase_paths, set_path,
                                   training_identity)
from nvmkit.core.errors import ConfigError, NvmkitError
from nvmkit.core.params import _params_type, load_toml, read_text_file

SECTIONS = ("experiment", "base", "grid", "points")
META_KEYS = ("name", "description")
# Fields that do not change a point's numbers: left out of its identity.
_NOT_IDENTITY = ("output",)
_NOT_IDENTITY_TRAINING = ("use_cache",)


@dataclass
class Point:
    """One validated sweep point."""

    index: int
    assignments: dict[str, Any]  # the grid/point values that make this point (dotted key -> value)
    config: dict  # RunConfig.to_dict(): what a runner receives
    resolved: dict  # pipeline.resolve(): every plugin default filled in
    key: str  # identity of the result (hash of the resolved config, seed included)
    model_key: str  # identity of the trained model: points that share it share one training

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in self.assignments.items()) or "base"


@dataclass
class Experiment:
    path: str
    name: str
    description: str = ""
    base: dict = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    points_spec: list[dict[str, Any]] = field(default_factory=list)
    #: the folder relative paths in the file are read from (its own; None: the working folder)
    folder: str | None = None

    def check_base_overrides(self, sets) -> None:
        """Refuse a ``--set KEY=VALUE`` (a [base] override) of a key the [grid] or [[points]] set:
        each point's own value would win over it without a word."""
        varied = [(k, "[grid]") for k in self.grid] + [(k, "[[points]]") for p in self.points_spec for k in p]
        for item in sets:
            key = item.partition("=")[0].strip()
            for other, where in varied:
                if key == other or key.startswith(other + ".") or other.startswith(key + "."):
                    raise ConfigError(f"--set {item}: {self.path} sets {other} in {where}, which wins over a [base] "
                                      f"override; change it there, or drop --set")

    def assignments(self) -> list[dict[str, Any]]:
        """The (unvalidated) assignments of every point, in file order."""
        return [a for _, a in self._expand()]

    def points(self, registry=None) -> list[Point]:
        """Expand and validate every point; raise ConfigError naming the file, key and fix."""
        from nvmkit.workflow import pipeline

        out: list[Point] = []
        seen: set[str] = set()
        failures: list[str] = []
        expanded = self._expand()
        for i, (origin, assignment) in enumerate(expanded):
            try:
                cfg = self._config(assignment)
                resolved = pipeline.resolve(cfg, registry)
            except NvmkitError as exc:
                failures.append(self._explain(i, len(expanded), origin, assignment, exc, registry))
                continue
            key = point_key(resolved)
            if key in seen:  # e.g. the same configuration reached twice: one point
                continue
            seen.add(key)
            out.append(Point(len(out), assignment, cfg.to_dict(), resolved, key, model_key(resolved)))
        if failures:
            more = f" (and {len(failures) - 1} more failing points)" if len(failures) > 1 else ""
            raise ConfigError(failures[0] + more)
        return out

    # -- internals -------------------------------------------------------------------------------
    def _expand(self) -> list[tuple[int | None, dict[str, Any]]]:
        """(number of the [[points]] entry or None, assignment) for every point."""
        keys = list(self.grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]
        if not self.points_spec:
            return [(None, c) for c in combos]
        return [(n, {**p, **c}) for n, p in enumerate(self.points_spec, 1) for c in combos]

    def _config(self, assignment: dict[str, Any]) -> RunConfig:
        # from the filled-in base, so that setting device.params.x keeps the default device's name
        data = RunConfig.from_dict(with_defaults(self.base)).to_dict()
        for key, value in assignment.items():
            set_path(data, key, copy.deepcopy(value))
        # the file's paths are read from its folder, and made absolute: workers may run elsewhere
        # (another folder, a Dask node)
        folder = Path(self.folder if self.folder is not None else "").absolute()
        cfg = RunConfig.from_dict(rebase_paths(RunConfig.from_dict(data).to_dict(), folder))
        if cfg.output:
            raise ConfigError("'output' writes one run's JSON; a sweep writes rows to its database: "
                              "remove output from the experiment")
        return cfg

    def _explain(self, i: int, n: int, origin: int | None, assignment: dict, exc: NvmkitError,
                 registry) -> str:
        """Blame the base, or the one value that fails the same way alone, else the whole point."""
        from nvmkit.workflow import pipeline

        def error_of(sub: dict) -> str | None:
            try:
                pipeline.resolve(self._config(sub), registry)
            except NvmkitError as e:
                return str(e)
            return None

        base_error = error_of({})
        if base_error is not None:
            return f"{self.path}: [base] {base_error}"
        for key, value in assignment.items():
            if error_of({key: value}) == str(exc):
                where = "[grid]" if key in self.grid else f"[[points]] #{origin}"
                return f"{self.path}: {where} {key} = {_short(value)}: {exc}"
        label = ", ".join(f"{k}={_short(v)}" for k, v in assignment.items())
        where = f"[[points]] #{origin} x [grid]" if origin is not None else "[grid]"
        return f"{self.path}: {where} point {i + 1} of {n} ({label}): {exc}"


def load_experiment(path: str | Path) -> Experiment:
    """Read and check an experiment file's structure (points are validated by ``points()``)."""
    p = Path(path)
    text = read_text_file(p, "experiment")
    # absolute now: a change of working folder before the points are made must not move them
    return parse_experiment(text, str(p), default_name=p.stem, folder=p.parent.absolute())


def parse_experiment(text: str, source: str = "<string>", default_name: str = "experiment",
                     folder: str | Path | None = None) -> Experiment:
    """An experiment from TOML text; its relative paths are read from ``folder`` (None: the working
    folder)."""
    data = load_toml(text, source)
    for section in data:
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}]{_did_you_mean(section, SECTIONS)}; "
                              f"an experiment has {', '.join(f'[{s}]' for s in SECTIONS)} "
                              "(put run settings under [base])")
    meta = _table(data.get("experiment", {}), source, "experiment")
    for key in meta:
        if key not in META_KEYS:
            raise ConfigError(f"{source}: [experiment] unknown key {key!r}{_did_you_mean(key, META_KEYS)}; "
                              f"valid keys: {', '.join(META_KEYS)}")
    base = _table(data.get("base", {}), source, "base")
    try:
        RunConfig.from_dict(with_defaults(base))
    except ConfigError as exc:
        raise ConfigError(f"{source}: [base] {exc}") from None

    grid = {}
    for key, values in _flatten(_table(data.get("grid", {}), source, "grid")).items():
        _check_key(source, "[grid]", key)
        if not isinstance(values, list):
            raise ConfigError(f"{source}: [grid] {key} must be a list of values, got {_short(values)}; "
                              f"write {key} = [{_short(values)}]")
        if not values:
            raise ConfigError(f"{source}: [grid] {key} is an empty list; give at least one value or remove it")
        grid[key] = values

    raw_points = data.get("points", [])
    if not isinstance(raw_points, list) or not all(isinstance(p, dict) for p in raw_points):
        raise ConfigError(f"{source}: points must be an array of tables; write [[points]] above each point")
    points_spec = []
    for n, table in enumerate(raw_points, 1):
        flat = _flatten(table, keep_empty=True)
        if not flat:
            raise ConfigError(f"{source}: [[points]] #{n} is empty; give it at least one key = value")
        for key in flat:
            _check_key(source, f"[[points]] #{n}", key)
            if key in grid:
                raise ConfigError(f"{source}: {key} is set both in [[points]] #{n} and in [grid]; "
                                  "keep it in one of them")
        points_spec.append(flat)

    if not any(section in data for section in ("base", "grid", "points")):
        # an empty file is far more often a mistake than a request for one default point
        raise ConfigError(f"{source}: no [base], [grid] or [[points]]: the experiment names no point to run; "
                          'add e.g. [grid] noise = ["gaussian:0.1", "gaussian:0.2"] (an empty [base] table '
                          "runs one point with the defaults)")
    return Experiment(path=source, name=str(meta.get("name") or default_name),
                      description=str(meta.get("description", "")), base=base, grid=grid,
                      points_spec=points_spec, folder=None if folder is None else str(folder))


def with_defaults(base: dict) -> dict:
    """``base`` laid over RunConfig's defaults, so a partial table keeps the default plugin's name
    (``network.params.hidden = [32]`` alone still means the default network)."""
    base = copy.deepcopy(base)
    defaults = RunConfig().to_dict()
    for key in PLUGIN_FIELDS:  # a table that names its plugin replaces the default's params
        if isinstance(base.get(key), dict) and "name" in base[key]:
            defaults[key] = None
    return _merge(defaults, base)


def _merge(into: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def point_key(resolved: dict) -> str:
    """A point's identity: SHA-256 of its canonical resolved configuration (seed included)."""
    return _digest(identity(resolved))


def model_key(resolved: dict) -> str:
    """What the trained model depends on: points with equal model keys train one model."""
    ident = identity(resolved)
    keys = ("dataset", "network", "training", "seed") + (("model",) if ident.get("model") else ())
    if (ident.get("training") or {}).get("method") in ("device", "in-place"):  # through the deployment
        keys += ("device", "crossbar")
    return _digest({k: ident.get(k) for k in keys})


def identity(resolved: dict) -> dict:
    """The resolved configuration without the fields that cannot change the numbers.

    ``dataset.data_dir`` is replaced by which data a run will read (full or the sample), so moving
    the data does not redo a sweep, while adding the full data to a machine does.
    """
    ident = copy.deepcopy(resolved)
    for k in _NOT_IDENTITY:
        ident.pop(k, None)
    for k in _NOT_IDENTITY_TRAINING:
        ident.get("training", {}).pop(k, None)
    crossbar = ident.get("crossbar")
    if isinstance(crossbar, dict) and isinstance(crossbar.get("wires"), dict) and \
            not any(crossbar["wires"].values()):
        crossbar.pop("wires")  # ideal wires: the same point as before wire resistance existed (same key)
    if isinstance(ident.get("training"), dict):
        ident["training"] = training_identity(ident["training"])
    ds = ident.get("dataset", {})
    if ds.get("file") is not None:  # a user's file counts by its content (sha256), not its path
        ds.pop("file")
        ds.pop("data_dir", None)
        ds["source"] = "file"
    else:
        ds["source"] = data_kind(ds.get("name", "mnist"), ds.pop("data_dir", None), ds.get("source", "auto"))
    if isinstance(ident.get("model"), dict):
        ident["model"].pop("file", None)
    for params, name in plugin_path_params(ident):  # a plugin's file counts by its sha256 too
        if params.get("sha256"):
            params.pop(name, None)
    return ident


def data_kind(name: str, data_dir: str | None, source: str) -> str:
    """'sample' or 'full': which data a run with these settings reads (what ``load_dataset`` picks)."""
    if source != "auto":
        return source
    if data_dir is not None:
        return "full"  # load_dataset fails rather than falling back when data_dir lacks the set
    from nvmkit.workflow import data

    name = str(name).strip().lower().replace("_", "-")
    probe = "mnist.npz" if name == "mnist" else "fashion-mnist/train-images-idx3-ubyte.gz"
    return "full" if any((f / probe).is_file() for f in data._search_folders()) else "sample"


# -- helpers ---------------------------------------------------------------------------------------
def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _table(value, source: str, name: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {name} must be a table; write [{name}] followed by key = value lines")
    return value


def _flatten(table: dict, prefix: str = "", keep_empty: bool = False) -> dict[str, Any]:
    """Nested tables -> dotted keys. ``"a.b" = 1`` and ``a.b = 1`` (a table) mean the same."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and (v or not keep_empty):
            out.update(_flatten(v, key, keep_empty))
        else:
            out[key] = v
    return out


def _check_key(source: str, where: str, dotted: str) -> None:
    """Raise ConfigError if ``dotted`` is not a RunConfig key (plugin params are checked later)."""
    cls: type = RunConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = [f.name for f in dataclasses.fields(cls)]
        if part not in fields:
            parent = ".".join(parts[:i])
            close = difflib.get_close_matches(part, fields, n=1)
            fix = (f"did you mean '{'.'.join(parts[:i] + [close[0]])}'?" if close else
                   f"valid keys{' under ' + parent if parent else ''}: {', '.join(fields)}")
            raise ConfigError(f"{source}: {where} unknown key '{dotted}'; {fix}")
        hint = typing.get_type_hints(cls)[part]
        sub = _params_type(hint)
        if sub is None:
            rest = parts[i + 1:]
            if rest and not _is_dict(hint):
                raise ConfigError(f"{source}: {where} '{dotted}': {'.'.join(parts[:i + 1])} is a value, "
                                  f"not a table; write {'.'.join(parts[:i + 1])} = ...")
            return  # plugin params are free-form here; resolve() checks them against the plugin
        cls = sub


def _is_dict(hint) -> bool:
    return hint is dict or typing.get_origin(hint) is dict


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
