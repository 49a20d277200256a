"""Figures from the results database (PNG and SVG, matplotlib's Agg canvas, no display needed).

* accuracy versus test-set noise level, one panel per noise type, one curve per network, solid
  without and dashed with noise-injection training, error bars = std over the Monte Carlo trials
  (the seed's Results II to IV figures);
* energy per inference by network and device (log scale: the seed's table spans 4 nJ to 2 uJ);
* accuracy versus energy with the Pareto front (lowest energy for a given accuracy) marked.

Every function takes rows as returned by :meth:`nvmkit.resultsdb.ResultsDB.rows` and returns the
paths it wrote (none when the rows hold nothing to plot).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no GUI backend

from .errors import ConfigError

KINDS = ("accuracy", "energy", "pareto")
FORMATS = ("png", "svg")
_DASHES = {False: "-", True: "--"}
_MARKERS = "osD^vP*X"


def plot_all(rows: list[dict], out_dir: str | Path, kinds: Iterable[str] = KINDS,
             scenario: str | None = None) -> list[Path]:
    out = _out_dir(out_dir)
    written: list[Path] = []
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"unknown plot kind {kind!r}; choose one of: {', '.join(KINDS)}, all")
        fn = {"accuracy": plot_accuracy, "energy": plot_energy, "pareto": plot_pareto}[kind]
        written += fn(rows, out, scenario=scenario) if kind != "energy" else fn(rows, out)
    return written


# -- accuracy versus noise level -------------------------------------------------------------------
def plot_accuracy(rows: list[dict], out_dir: str | Path, scenario: str | None = None) -> list[Path]:
    """One figure per data set: accuracy vs noise level, a panel per noise type, a curve per network."""
    out = _out_dir(out_dir)
    noisy = [r for r in rows if r.get("noise")]
    if not noisy:
        return []
    scenario = scenario or ("both" if any("both" in r["accuracy"] for r in noisy) else "external")
    # A clean point (no test-set noise) is level 0 of every noise type: what the noise degrades from.
    clean_scenario = {"both": "internal", "external": "digital"}.get(scenario, scenario)
    written = []
    for dataset, drows in _groupby(rows, lambda r: _dataset_label(r)).items():
        types = sorted({r["noise"] for r in drows if r.get("noise")})
        if not types:
            continue
        labeller = _CurveLabel(drows)
        fig = Figure(figsize=(max(6.0, 4.2 * len(types)), 4.4), layout="constrained")
        axes = fig.subplots(1, len(types), squeeze=False)[0]
        for ax, noise in zip(axes, types):
            curves: OrderedDict = OrderedDict()
            for r in drows:
                if r.get("noise") == noise and scenario in r["accuracy"]:
                    x, trials = r.get("noise_level") or 0.0, _trials(r["accuracy"][scenario])
                elif not r.get("noise") and clean_scenario in r["accuracy"]:
                    x, trials = 0.0, _trials(r["accuracy"][clean_scenario])
                else:
                    continue
                curves.setdefault(labeller.key(r), {}).setdefault(x, []).extend(trials)
            for i, (ckey, by_x) in enumerate(curves.items()):
                if len(by_x) == 1 and 0.0 in by_x and not any(
                        r.get("noise") == noise for r in drows if labeller.key(r) == ckey):
                    continue  # a clean point alone is not a curve of this noise type
                xs = sorted(by_x)
                means = [_mean(by_x[x]) for x in xs]
                stds = [_std(by_x[x]) for x in xs]
                ax.errorbar(xs, [100 * m for m in means], yerr=[100 * s for s in stds], capsize=3,
                            color=labeller.color(ckey), linestyle=_DASHES[labeller.trained(ckey)],
                            marker=labeller.marker(ckey), markersize=4, label=labeller.text(ckey))
            ax.set_title(f"{noise} noise")
            ax.set_xlabel("test-set noise level")
            ax.set_ylabel(f"accuracy, {scenario} (%)")
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=min(2, len(labels)), fontsize="small")
        fig.suptitle(f"{dataset}: accuracy under test-set noise ({scenario}; error bars: std over trials)",
                     fontsize="medium")
        written += _save(fig, out / f"accuracy_{_slug(dataset)}_{scenario}")
    return written


# -- energy per inference ------------------------------------------------------------------------------
def plot_energy(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """Grouped bars: energy per inference for each network (group) and device (bar), log scale."""
    out = _out_dir(out_dir)
    rows = [r for r in rows if r.get("energy_total_j")]
    if not rows:
        return []
    labeller = _CurveLabel(rows)
    table: OrderedDict[str, OrderedDict[str, list[float]]] = OrderedDict()
    devices: list[str] = []
    for r in rows:
        net = labeller.network_text(r)
        dev = _device_text(r, rows)
        table.setdefault(net, OrderedDict()).setdefault(dev, []).append(r["energy_total_j"])
        if dev not in devices:
            devices.append(dev)
    fig = Figure(figsize=(max(4.5, 1.3 * len(table) * max(1, len(devices)) ** 0.5 + 2), 3.8),
                 layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(devices)
    for j, dev in enumerate(devices):
        xs, ys = [], []
        for i, net in enumerate(table):
            if dev in table[net]:
                xs.append(i + (j - (len(devices) - 1) / 2) * width)
                ys.append(_mean(table[net][dev]))
        bars = ax.bar(xs, ys, width, label=dev)
        ax.bar_label(bars, labels=[_si_joules(y) for y in ys], fontsize="x-small", rotation=90, padding=2)
    ax.set_xticks(range(len(table)), list(table))
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (J)")
    ax.set_title("energy per inference by network and device")
    ax.margins(y=0.25)
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
    labeller = _CurveLabel(rows)
    points: OrderedDict = OrderedDict()
    noise_matters = scenario in ("external", "both")
    for r in rows:  # trials and seeds of one configuration pool into one point
        key = (labeller.key(r), _device_text(r, rows),
               (r.get("noise"), r.get("noise_level")) if noise_matters else None)
        p = points.setdefault(key, {"e": [], "acc": [], "row": r})
        p["e"].append(r["energy_total_j"])
        p["acc"].extend(_trials(r["accuracy"][scenario]))
    xs = [_mean(p["e"]) for p in points.values()]
    ys = [100 * _mean(p["acc"]) for p in points.values()]
    front = pareto_front(xs, ys)
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    seen = set()
    for (ckey, dev, *_), x, y in zip(points, xs, ys):
        label = f"{labeller.network_text_of(ckey)} / {dev}"
        ax.scatter([x], [y], color=labeller.color(ckey), marker=labeller.device_marker(dev, rows), s=30,
                   label=None if label in seen else label, zorder=3)
        seen.add(label)
    fx, fy = [xs[i] for i in front], [ys[i] for i in front]
    ax.step(fx, fy, where="post", color="k", linewidth=1, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, facecolors="none", edgecolors="k", s=120, linewidths=1.2, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (J)")
    ax.set_ylabel(f"accuracy, {scenario} (%)")
    ax.set_title(f"accuracy vs energy ({scenario}); circled: Pareto-optimal")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="x-small", loc="best")
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
class _CurveLabel:
    """Which curve a row belongs to: network (and its parameters where they vary), device where
    several, and whether the network was trained with noise injection."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.net_params_vary = {
            net: len({json.dumps(r["config"]["network"].get("params"), sort_keys=True) for r in g}) > 1
            for net, g in _groupby(rows, lambda r: r["network"]).items()
        }
        self.devices_vary = len({_device_id(r) for r in rows}) > 1
        self._colors: dict = {}
        self._markers: dict = {}

    def network_text(self, r: dict) -> str:
        net = r["network"]
        if self.net_params_vary.get(net):
            params = r["config"]["network"].get("params") or {}
            net += "(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")"
        return net

    def key(self, r: dict) -> tuple:
        training = _training_label(r)
        dev = _device_text(r, self.rows) if self.devices_vary else ""
        return (self.network_text(r), dev, training)

    def network_text_of(self, key: tuple) -> str:
        return key[0]

    def trained(self, key: tuple) -> bool:
        return key[2] != "no noise training"

    def text(self, key: tuple) -> str:
        net, dev, training = key
        return " / ".join(x for x in (net, dev, training) if x)

    def color(self, key: tuple):
        net = key[0]
        if net not in self._colors:
            self._colors[net] = f"C{len(self._colors) % 10}"
        return self._colors[net]

    def marker(self, key: tuple) -> str:
        if key[1] not in self._markers:
            self._markers[key[1]] = _MARKERS[len(self._markers) % len(_MARKERS)]
        return self._markers[key[1]]

    def device_marker(self, dev: str, rows) -> str:
        devs = sorted({_device_text(r, rows) for r in rows})
        return _MARKERS[devs.index(dev) % len(_MARKERS)] if dev in devs else "o"


def _training_label(r: dict) -> str:
    t = r["config"].get("training") or {}
    if t.get("sigma_syn_target"):
        return f"trained at sigma_syn={t['sigma_syn_target']:g}"
    if t.get("sigma_neu"):
        return f"trained at sigma_neu={t['sigma_neu']:g}"
    return "no noise training"


def _device_id(r: dict) -> str:
    d = r["config"].get("device") or {}
    return f"{d.get('name')}{json.dumps(d.get('params'), sort_keys=True)}"


def _device_text(r: dict, rows: list[dict]) -> str:
    """The device's name, with its parameters only where the same device appears with several."""
    name = r["device"]
    same = {_device_id(x) for x in rows if x["device"] == name}
    if len(same) <= 1:
        return name
    base = {json.dumps(x["config"]["device"].get("params"), sort_keys=True) for x in rows if x["device"] == name}
    params = r["config"]["device"].get("params") or {}
    varying = [k for k in params if len({json.dumps(json.loads(b).get(k)) for b in base}) > 1]
    return name + "(" + ",".join(f"{k}={params[k]}" for k in varying) + ")"


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
    return p


def _save(fig: Figure, stem: Path) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        # no dates in the files: the same data gives byte-identical figures
        fig.savefig(path, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    return paths
