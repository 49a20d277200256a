"""Figures from the results database (PNG and SVG, matplotlib's Agg canvas, no display needed).

* accuracy versus test-set noise level, one panel per noise type, one curve per network, solid
  without and dashed with noise-injection training, error bars = std over the Monte Carlo trials
  (the seed's Results III and IV figures); or versus any configuration key, such as the device's
  synaptic noise (its Results II regularisation sweeps);
* energy per inference by network and device (log scale: the seed's table spans 4 nJ to 2 uJ);
* accuracy versus energy with the Pareto front (lowest energy for a given accuracy) marked.

Curves are told apart by the configuration entries that vary among the plotted rows (seeds and
trials pool into one curve). Every function takes rows as returned by :meth:`nvmkit.sweeps.resultsdb.ResultsDB.rows` and returns the
paths it wrote (none when the rows hold nothing to plot).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no GUI backend

from nvmkit.core.atomic import atomic_write
from nvmkit.core.errors import ConfigError

KINDS = ("accuracy", "energy", "pareto")
FORMATS = ("png", "svg")
_DASHES = {False: "-", True: "--"}
_MARKERS = "osD^vP*X"


def plot_all(rows: list[dict], out_dir: str | Path, kinds: Iterable[str] = KINDS,
             scenario: str | None = None, x: str = "noise_level") -> list[Path]:
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"unknown plot kind {kind!r}; choose one of: {', '.join(KINDS)}, all")
    if "accuracy" in kinds:  # before the folder is made: a mistyped key leaves nothing behind
        _check_x(rows, x)
    out = _out_dir(out_dir)
    written: list[Path] = []
    for kind in kinds:
        if kind == "accuracy":
            written += plot_accuracy(rows, out, scenario=scenario, x=x)
        elif kind == "energy":
            written += plot_energy(rows, out)
        else:
            written += plot_pareto(rows, out, scenario=scenario)
    return written


# -- accuracy versus noise level (or any other parameter) -----------------------------------------------
def plot_accuracy(rows: list[dict], out_dir: str | Path, scenario: str | None = None,
                  x: str = "noise_level") -> list[Path]:
    """One figure per data set, one curve per configuration, error bars = std over the trials.

    ``x="noise_level"``: accuracy vs test-set noise level, a panel per noise type; a row without
    test-set noise is level 0 of every panel. Any other ``x`` is a dotted configuration key (e.g.
    ``device.params.sigma_syn`` for the seed's regularisation sweeps), with a panel per test-set
    noise setting.
    """
    _check_x(rows, x)
    out = _out_dir(out_dir)
    by_level = x == "noise_level"
    if by_level and not any(r.get("noise") for r in rows):
        return []
    has_noise = any(r.get("noise") for r in rows)
    scenario = scenario or ("both" if has_noise else "internal")
    # what a clean row (no test-set noise) shows at level 0: the same run without the noise
    clean = {"both": "internal", "external": "digital"}.get(scenario, scenario)
    written = []
    for dataset, drows in _groupby(rows, _dataset_label).items():
        if by_level:
            panel_of = lambda r: r.get("noise")  # noqa: E731
            x_of = lambda r: r.get("noise_level") or 0.0  # noqa: E731
            labels = _Labels(drows, exclude=("noise",))
        else:
            panel_of = _noise_text
            x_of = lambda r: _lookup(r["config"], x)  # noqa: E731
            labels = _Labels(drows, exclude=("noise", x))
        panels = [p for p in _groupby(drows, panel_of) if p is not None or not by_level]
        if not panels or all(x_of(r) is None for r in drows):
            continue
        fig = Figure(figsize=(max(6.0, 4.2 * len(panels)), 4.6), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, panel in zip(axes, panels):
            curves: OrderedDict = OrderedDict()
            for r in drows:
                if panel_of(r) == panel and scenario in r["accuracy"]:
                    acc = r["accuracy"][scenario]
                elif by_level and r.get("noise") is None and clean in r["accuracy"]:
                    acc = r["accuracy"][clean]
                else:
                    continue
                xv = x_of(r)
                if _is_number(xv):
                    curves.setdefault(labels.key(r), {}).setdefault(float(xv), []).extend(_trials(acc))
            for ckey, by_x in curves.items():
                xs = sorted(by_x)
                ax.errorbar(xs, [100 * _mean(by_x[v]) for v in xs], yerr=[100 * _std(by_x[v]) for v in xs],
                            capsize=3, color=labels.color(ckey), linestyle=_DASHES[labels.trained(ckey)],
                            marker=labels.marker(ckey), markersize=4, label=labels.text(ckey))
            ax.set_title(f"{panel} noise" if by_level else f"test-set noise: {panel}")
            ax.set_xlabel("test-set noise level" if by_level else x)
            ax.set_ylabel(f"accuracy, {scenario} (%)")
            ax.grid(alpha=0.3)
        _figure_legend(fig, axes)
        what = "under test-set noise" if by_level else f"vs {x}"
        fig.suptitle(f"{dataset}: accuracy {what} ({scenario}; error bars: std over trials)", fontsize="medium")
        stem = f"accuracy_{_slug(dataset)}_{scenario}" + ("" if by_level else f"_vs_{_slug(x)}")
        written += _save(fig, out / stem)
    return written


# -- energy per inference ------------------------------------------------------------------------------
def plot_energy(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """Grouped bars: energy per inference for each network (group) and device (bar), log scale."""
    out = _out_dir(out_dir)
    rows = [r for r in rows if r.get("energy_total_j")]
    if not rows:
        return []
    # energy depends on the network, the device, the crossbar and the estimator: not on training or noise
    nets = _Labels(rows, only=("network",))
    devs = _Labels(rows, only=("device", "crossbar", "energy"), always="device.name")
    table: OrderedDict[str, OrderedDict[str, list[float]]] = OrderedDict()
    bars: list[str] = []
    for r in rows:
        group, bar = nets.text(nets.key(r)), devs.text(devs.key(r), name_key="device.name")
        table.setdefault(group, OrderedDict()).setdefault(bar, []).append(r["energy_total_j"])
        if bar not in bars:
            bars.append(bar)
    fig = Figure(figsize=(max(5.0, 1.2 * len(table) * len(bars) ** 0.5 + 3), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(bars)
    for j, bar in enumerate(bars):
        xs, ys = [], []
        for i, group in enumerate(table):
            if bar in table[group]:
                xs.append(i + (j - (len(bars) - 1) / 2) * width)
                ys.append(_mean(table[group][bar]))
        drawn = ax.bar(xs, ys, width, label=bar)
        ax.bar_label(drawn, labels=[_si_joules(y) for y in ys], fontsize="x-small", rotation=90, padding=2)
    ax.set_xticks(range(len(table)), list(table))
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (J)")
    ax.set_title("energy per inference by network and device")
    ax.margins(y=0.3)
    ax.legend(title="device", fontsize="small")
    ax.grid(axis="y", alpha=0.3, which="both")
    return _save(fig, out / "energy")


# -- accuracy versus energy ------------------------------------------------------------------------------
def plot_pareto(rows: list[dict], out_dir: str | Path, scenario: str | None = None) -> list[Path]:
    """Accuracy vs energy per inference, one point per configuration, Pareto front marked."""
    out = _out_dir(out_dir)
    scenario = scenario or "internal"
    rows = [r for r in rows if r.get("energy_total_j") and scenario in r["accuracy"]]
    if not rows:
        return []
    # without test-set noise in the scenario, rows that differ only in it are one configuration
    labels = _Labels(rows, exclude=() if scenario in ("external", "both") else ("noise",))
    points: OrderedDict = OrderedDict()
    for r in rows:  # trials and seeds of one configuration pool into one point
        p = points.setdefault(labels.key(r), {"e": [], "acc": []})
        p["e"].append(r["energy_total_j"])
        p["acc"].extend(_trials(r["accuracy"][scenario]))
    keys = list(points)
    xs = [_mean(points[k]["e"]) for k in keys]
    ys = [100 * _mean(points[k]["acc"]) for k in keys]
    front = pareto_front(xs, ys)
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for k, xv, yv in zip(keys, xs, ys):
        # hollow: trained with noise injection
        face = "none" if labels.trained(k) else labels.color(k)
        ax.scatter([xv], [yv], facecolors=face, edgecolors=labels.color(k), marker=labels.marker(k), s=30,
                   label=labels.text(k), zorder=3)
    fx, fy = [xs[i] for i in front], [ys[i] for i in front]
    ax.step(fx, fy, where="post", color="k", linewidth=1, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, facecolors="none", edgecolors="k", s=120, linewidths=1.2, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (J)")
    ax.set_ylabel(f"accuracy, {scenario} (%)")
    ax.set_title(f"accuracy vs energy ({scenario}); circled: Pareto-optimal; hollow: noise-trained",
                 fontsize="medium")
    ax.grid(alpha=0.3, which="both")
    if len(keys) <= 24:
        fig.legend(loc="outside right upper", fontsize="x-small")
    return _save(fig, out / f"pareto_{scenario}")


def pareto_front(energy: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (less or equal energy and higher accuracy), by energy."""
    order = sorted(range(len(energy)), key=lambda i: (energy[i], -accuracy[i]))
    front, best = [], -math.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


# -- helpers ----------------------------------------------------------------------------------------
# configuration entries that never tell two curves apart (they do not change the numbers, or are
# pooled: seeds and trials), and the data set (one figure each)
_NEVER = ("seed", "output", "trials", "batch_size", "scenarios", "training.use_cache", "dataset")


class _Labels:
    """Names curves (bars, points) by the configuration entries that vary among the rows."""

    def __init__(self, rows: list[dict], exclude: Sequence[str] = (), only: Sequence[str] = (),
                 always: str = "network.name"):
        flats = [_flat(r["config"]) for r in rows]
        keys = list(OrderedDict.fromkeys(k for f in flats for k in f))

        def wanted(k: str) -> bool:
            if any(_under(k, p) for p in (*_NEVER, *exclude)):
                return False
            return not only or any(_under(k, p) for p in only)

        self.varying = [k for k in keys if wanted(k) and _varies(k, flats)]
        if always not in self.varying:
            self.varying.insert(0, always)  # curves always say which network (bars: which device)
        self._colors: dict = {}
        self._markers: dict = {}

    def key(self, r: dict) -> tuple:
        flat = _flat(r["config"])
        trained = bool((r["config"].get("training") or {}).get("sigma_neu")
                       or (r["config"].get("training") or {}).get("sigma_syn_target"))
        return tuple((k, flat.get(k)) for k in self.varying) + (("_trained", trained),)

    def text(self, key: tuple, name_key: str = "network.name") -> str:
        items = [(k, v) for k, v in key if k != "_trained" and v is not None]  # None: not this plugin's
        names = [json.loads(v) for k, v in items if k == name_key]
        parts = [f"{_short_key(k, self.varying)}={_plain(v)}" for k, v in items if k != name_key]
        text = " ".join(str(n) for n in names)
        return f"{text} ({', '.join(parts)})" if parts and text else text or ", ".join(parts) or "all"

    def trained(self, key: tuple) -> bool:
        return dict(key).get("_trained", False)

    def color(self, key: tuple):
        net = tuple((k, v) for k, v in key if k.startswith("network."))
        if net not in self._colors:
            self._colors[net] = f"C{len(self._colors) % 10}"
        return self._colors[net]

    def marker(self, key: tuple) -> str:
        dev = tuple((k, v) for k, v in key if k.startswith("device."))
        if dev not in self._markers:
            self._markers[dev] = _MARKERS[len(self._markers) % len(_MARKERS)]
        return self._markers[dev]


def varying_settings(rows: list[dict], shown: Sequence[str] = ()) -> list[str]:
    """For each row, ``key=value`` text of the configuration entries that vary among ``rows``
    (a swept device parameter, a drift time), leaving out the keys in ``shown`` (exact keys, which
    the caller shows in columns of their own) and those that never tell rows apart (``_NEVER``)."""
    flats = [_flat(r["config"]) for r in rows]
    keys = list(OrderedDict.fromkeys(k for f in flats for k in f))
    # "null" = absent: a row without test-set noise records noise = null, not a missing noise.name
    varying = [k for k in keys if k not in shown and not any(_under(k, p) for p in _NEVER)
               and _varies(k, flats, missing="null")]
    return [", ".join(f"{_short_key(k, varying)}={_plain(f[k])}" for k in varying if k in f) for f in flats]


def _varies(key: str, flats: list[dict[str, str]], missing: str | None = None) -> bool:
    """Whether ``key`` takes several values (``missing`` where a row lacks it); a plugin parameter
    only among rows of the same plugin (an MLP has no time_steps: that does not make time_steps
    tell RNN curves apart)."""
    head, sep, _ = key.partition(".params.")
    groups = _groupby(flats, lambda f: f.get(f"{head}.name")) if sep else {None: flats}
    return any(len({f.get(key, missing) for f in g}) > 1 for g in groups.values())


def _flat(config: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (config or {}).items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(_flat(v, key))
        else:
            out[key] = json.dumps(v, sort_keys=True)
    return out


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _short_key(key: str, all_keys: Sequence[str]) -> str:
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in all_keys) == 1 else key


def _plain(v: str) -> str:
    value = json.loads(v)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_x(rows: list[dict], x: str) -> None:
    """Refuse an x axis that no row holds a number at: a mistyped key would otherwise drop the
    accuracy figure without a word."""
    if x == "noise_level" or any(_is_number(_lookup(r["config"], x)) for r in rows):
        return
    values: dict[str, set] = {}
    for r in rows:
        for key, text in _flat(r["config"]).items():
            values.setdefault(key, set()).add(text)
    numeric = [k for k, v in values.items()
               if len(v) > 1 and all(_is_number(json.loads(t)) for t in v if t != "null")]
    hint = ", ".join(numeric[:8]) if numeric else "e.g. device.params.sigma_syn"
    raise ConfigError(f"--x {x}: no row has a number at that configuration key; use noise_level or a "
                      f"dotted key whose value varies among the rows ({hint})")


def _lookup(config: dict, dotted: str):
    cur = config
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _noise_text(r: dict) -> str:
    if not r.get("noise"):
        return "none"
    return f"{r['noise']}:{r['noise_level']:g}" if r.get("noise_level") is not None else r["noise"]


def _figure_legend(fig: Figure, axes) -> None:
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(2, len(labels)), fontsize="small")


def _dataset_label(r: dict) -> str:
    return r["dataset"] + (" (sample)" if r.get("sample") else "")


def _trials(acc: dict) -> list[float]:
    per = acc.get("per_trial")
    return list(per) if per else [acc["mean"]]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _groupby(rows, key) -> OrderedDict:
    out: OrderedDict = OrderedDict()
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def _si_joules(j: float) -> str:
    for scale, unit in ((1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if j >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j:.2g} J"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_")


def _out_dir(path: str | Path) -> Path:
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create plot folder {p} ({exc.strerror}); pass another --out") from None
    from nvmkit.workflow.report import check_writable_folder

    return check_writable_folder(p, "cannot write the plots; pass another --out")


def _save(fig: Figure, stem: Path) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        # no dates in the files: the same data gives byte-identical figures
        atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150,
                                                             metadata={"Date": None} if fmt == "svg" else None))
        paths.append(path)
    return paths
