"""Which training survives which device (issue 20, points 3 and 4): the ``training`` section.

Rows are results-database rows of the study's ``training`` sections: each network and data set
trained ``plain``, with pre-activation noise (the seed's regulariser; ``sigma_neu`` given, or the
per-layer value its equivalence gives for a ``sigma_syn_target``) and ``device``-aware, each deployed
on several devices. A :class:`Cell` pools one (network, data set, deployment, method)'s trials.

**Share won back.** The plain network loses ``loss = acc_plain_ideal - acc_plain_on_device`` to the
device (``acc_plain_ideal``: the plain network in Keras, no device). A method wins back
``(acc_method - acc_plain_on_device) / loss`` of it: 0 is no better than plain, 1 recovers the ideal
accuracy, above 1 beats it, below 0 loses more than plain. When the loss is not told apart from 0,
the share is undefined and :func:`share_won_back` returns None (written "n/a"): when the loss is
at most the half-width of the 95% confidence interval of the plain-on-device mean (from its
trials' spread) or at most one test image (``1 / n_test``), the resolution of an accuracy.

**The seed's equivalence** (:func:`equivalence`): on a synaptic deployment of ``sigma_syn``, the
network trained with pre-activation noise at the ``sigma_neu`` the seed's formula gives for that
``sigma_syn`` (``training.sigma_syn_target``; nvmkit/workflow/training.py) against the one trained
through the device itself. It protects "as well" when the 95% (Welch) confidence interval of the
difference of their means reaches 0 or above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from nvmkit.reproduction import seed_study as ss

PLAIN, DEVICE, EQUIVALENT = "plain", "device", "equivalent"
#: how a deployment with drift is labelled: drift_time in days
_DAY = 86400.0
_DEVICE_ORDER = ("synaptic", "reram", "sonos", "ecram")
_DEVICE_LABEL = {"reram": "ReRAM", "sonos": "SONOS", "ecram": "ECRAM", "ideal": "ideal"}


@dataclass(frozen=True)
class Deployment:
    device: str
    sigma_syn: float | None  # the synaptic device's level (fraction of the weight range), else None
    drift_time: float  # seconds between programming and inference

    @property
    def label(self) -> str:
        if self.sigma_syn is not None:
            return f"σ_syn {100 * self.sigma_syn:g}%"
        text = _DEVICE_LABEL.get(self.device, self.device)
        if self.drift_time:
            days = self.drift_time / _DAY
            text += f", {days:g} day" + ("" if days == 1 else "s")
        return text

    def order(self) -> tuple:
        rank = _DEVICE_ORDER.index(self.device) if self.device in _DEVICE_ORDER else len(_DEVICE_ORDER)
        return rank, self.device, self.sigma_syn or 0.0, self.drift_time


def deployment_of(config: dict) -> Deployment:
    dev = config.get("device") or {}
    name = str(dev.get("name") or "?")
    params = dev.get("params") or {}
    sigma = params.get("sigma_syn") if name == "synaptic" else None
    drift = float(((config.get("crossbar") or {}).get("nonideal") or {}).get("drift_time") or 0.0)
    return Deployment(name, None if sigma is None else float(sigma), drift)


def method_of(config: dict, deployment: Deployment | None = None) -> str:
    """The training method of a row's configuration, as the table names it: ``plain``, ``device``,
    ``preactivation 0.1`` (a given sigma_neu), ``equivalent`` (a sigma_syn_target equal to the
    deployment's sigma_syn) or ``preactivation σ_syn 5%`` (a target of another level)."""
    t = config.get("training") or {}
    method = t.get("method")
    target = t.get("sigma_syn_target")
    sigma = t.get("sigma_neu")
    if method == DEVICE:
        return DEVICE
    if target:
        if deployment is not None and deployment.sigma_syn is not None and \
                math.isclose(float(target), deployment.sigma_syn, rel_tol=1e-9):
            return EQUIVALENT
        return f"preactivation σ_syn {100 * float(target):g}%"
    if isinstance(sigma, list):
        sigma = max(sigma) if sigma else 0.0
    if not sigma:
        return PLAIN
    return f"preactivation {float(sigma):g}"


def method_label(method: str) -> str:
    return {PLAIN: "plain", DEVICE: "device-aware", EQUIVALENT: "σ_neu ≡ σ_syn (seed's equivalence)"}.get(
        method, method.replace("preactivation ", "σ_neu "))


def _method_order(method: str) -> tuple:
    if method == PLAIN:
        return (0, 0.0, method)
    if method.startswith("preactivation "):
        try:
            return (1, float(method.split()[-1]), method)
        except ValueError:
            return (2, 0.0, method)
    return {EQUIVALENT: (3, 0.0, method), DEVICE: (4, 0.0, method)}.get(method, (5, 0.0, method))


def t_quantile(dof: int) -> float:
    """The two-sided 95% quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, 0.975))


def half_width(stat: ss.Stat | None) -> float | None:
    """Half-width of the 95% confidence interval of a cell's mean (Student's t over its trials)."""
    if stat is None or stat.n < 2:
        return None
    return t_quantile(stat.n - 1) * stat.std / math.sqrt(stat.n)


@dataclass
class Cell:
    network: str
    dataset: str
    deployment: Deployment
    method: str
    internal: ss.Stat | None  # accuracy on the device, pooled trials
    digital: ss.Stat | None  # the same model in Keras, no device
    n_test: int | None
    sample: bool
    epochs: int | None = None  # fine-tuning epochs of this method (None for plain)


def cells(rows: list[dict]) -> list[Cell]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        cfg = r.get("config") or {}
        dep = deployment_of(cfg)
        groups.setdefault((r["network"], r["dataset"], dep, method_of(cfg, dep)), []).append(r)
    out = []
    for (net, ds, dep, method), rs in groups.items():
        pool = lambda s: ss.Stat.of([v for r in rs for v in ss.trials(r, s)])  # noqa: E731
        n_test = next(((r.get("dataset_info") or {}).get("n_test") for r in rs), None)
        t = (rs[0].get("config") or {}).get("training") or {}
        epochs = t.get("device_epochs") if method == DEVICE else t.get("preactivation_epochs")
        out.append(Cell(net, ds, dep, method, pool("internal"), pool("digital"), n_test,
                        any(r.get("sample") for r in rs), epochs))
    order = {n: i for i, n in enumerate(ss.NETWORKS)}
    dorder = {n: i for i, n in enumerate(ss.DATASETS)}
    out.sort(key=lambda c: (dorder.get(c.dataset, 9), order.get(c.network, 9), c.network,
                            _method_order(c.method), c.deployment.order()))
    return out


def share_won_back(acc_method: float, acc_plain_device: float, acc_plain_ideal: float,
                   noise: float = 0.0) -> float | None:
    """The share of the accuracy the plain network lost to the device that the method wins back,
    ``(acc_method - acc_plain_device) / (acc_plain_ideal - acc_plain_device)``; None when that loss
    is at most ``noise`` (not told apart from 0: see the module docstring)."""
    loss = acc_plain_ideal - acc_plain_device
    if loss <= noise or loss <= 0:
        return None
    return (acc_method - acc_plain_device) / loss


def loss_noise(plain: Cell) -> float:
    """How small a loss cannot be told from 0 for this plain cell: the larger of its mean's 95% CI
    half-width and one test image."""
    hw = half_width(plain.internal) or 0.0
    return max(hw, 1.0 / plain.n_test if plain.n_test else 0.0)


def _find(table: list[Cell], net: str, ds: str, dep: Deployment, method: str) -> Cell | None:
    return next((c for c in table if (c.network, c.dataset, c.deployment, c.method) == (net, ds, dep, method)), None)


def share(table: list[Cell], c: Cell) -> float | None:
    plain = _find(table, c.network, c.dataset, c.deployment, PLAIN)
    if plain is None or plain.internal is None or plain.digital is None or c.internal is None:
        return None
    return share_won_back(c.internal.mean, plain.internal.mean, plain.digital.mean, loss_noise(plain))


def _pct(stat: ss.Stat | None) -> str:
    if stat is None:
        return ""
    hw = half_width(stat)
    return f"{100 * stat.mean:.2f}" + ("" if hw is None else f" ± {100 * hw:.2f}")


def _share_text(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.0f}%"


def deployments(table: list[Cell]) -> list[Deployment]:
    return sorted({c.deployment for c in table}, key=Deployment.order)


def render_table(table: list[Cell]) -> str:
    """Accuracy on each deployment (mean ± 95% CI half-width over trials, %) and, in brackets, the
    share of the plain network's loss to the device that the method wins back; the clean accuracy,
    or its range over the deployments where each trains its own network (device-aware)."""
    if not table:
        return "No training rows (the section was not run, or every point failed)."
    deps = deployments(table)
    head = ["data set", "network", "training", "clean (digital)"] + [d.label for d in deps]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for ds, net, method in dict.fromkeys((c.dataset, c.network, c.method) for c in table):
        group = {c.deployment: c for c in table if (c.dataset, c.network, c.method) == (ds, net, method)}
        clean = sorted({round(100 * c.digital.mean, 2) for c in group.values() if c.digital is not None})
        # a device-aware network is trained per deployment: each has its own clean accuracy
        clean_text = "" if not clean else f"{clean[0]:.2f}" if len(clean) == 1 else f"{clean[0]:.2f} to {clean[-1]:.2f}"
        row = [ss.DATA_LABEL.get(ds, ds) + (" (sample)" if any(c.sample for c in group.values()) else ""),
               ss.NET_LABEL.get(net, net), method_label(method), clean_text]
        for d in deps:
            c = group.get(d)
            if c is None or c.internal is None:
                row.append("")
            elif method == PLAIN:
                row.append(_pct(c.internal))
            else:
                row.append(f"{_pct(c.internal)} ({_share_text(share(table, c))})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


@dataclass
class MethodSummary:
    method: str
    cells: int  # cells with a defined share
    median_share: float | None
    beats_plain: int  # cells whose mean is above plain's by more than both CIs' half-widths combined
    below_plain: int
    best: int  # cells where this method has the highest mean of all methods (defined shares)


def _welch(a: ss.Stat, b: ss.Stat) -> tuple[float, float | None]:
    """Difference of means a - b and the half-width of its 95% Welch confidence interval."""
    if a.n < 2 or b.n < 2:
        return a.mean - b.mean, None
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se2 = va + vb
    if se2 == 0:
        return a.mean - b.mean, 0.0
    dof = se2 ** 2 / ((va ** 2 / (a.n - 1) if va else 0.0) + (vb ** 2 / (b.n - 1) if vb else 0.0))
    return a.mean - b.mean, t_quantile(max(1, int(math.floor(dof)))) * math.sqrt(se2)


def summary(table: list[Cell]) -> list[MethodSummary]:
    """Per method over every (network, data set, deployment) with a defined share: the median
    share won back, the cells it is above and below plain (Welch 95% CI of the difference off 0),
    and the cells where it has the best mean of the methods."""
    import statistics

    methods = sorted({c.method for c in table if c.method != PLAIN}, key=_method_order)
    out = []
    for m in methods:
        shares, up, down, best = [], 0, 0, 0
        for c in table:
            if c.method != m or c.internal is None:
                continue
            x = share(table, c)
            if x is None:
                continue
            shares.append(x)
            plain = _find(table, c.network, c.dataset, c.deployment, PLAIN)
            diff, hw = _welch(c.internal, plain.internal)
            if hw is not None and diff - hw > 0:
                up += 1
            if hw is not None and diff + hw < 0:
                down += 1
            rivals = [d for d in table if (d.network, d.dataset, d.deployment) ==
                      (c.network, c.dataset, c.deployment) and d.internal is not None]
            if c.internal.mean >= max(d.internal.mean for d in rivals):
                best += 1
        out.append(MethodSummary(m, len(shares), statistics.median(shares) if shares else None, up, down, best))
    return out


def render_summary(table: list[Cell]) -> str:
    rows = summary(table)
    if not rows:
        return ""
    head = ["training", "cells with a loss to win back", "median share won back", "above plain (95%)",
            "below plain (95%)", "best of all methods"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for s in rows:
        lines.append(f"| {method_label(s.method)} | {s.cells} | {_share_text(s.median_share)} | {s.beats_plain} | "
                     f"{s.below_plain} | {s.best} |")
    return "\n".join(lines)


@dataclass
class Equivalence:
    network: str
    dataset: str
    sigma_syn: float
    plain: ss.Stat | None
    equivalent: ss.Stat
    device: ss.Stat
    diff: float  # equivalent - device, fraction
    half_width: float | None  # its 95% Welch CI half-width

    @property
    def as_well(self) -> bool | None:
        """The seed's equivalence holds here: the CI of equivalent - device reaches 0 or above."""
        if self.half_width is None:
            return None
        return self.diff + self.half_width >= 0


def equivalence(table: list[Cell]) -> list[Equivalence]:
    """Per synaptic deployment: pre-activation noise at the seed's equivalent sigma_neu against
    device-aware training."""
    out = []
    for c in table:
        if c.method != EQUIVALENT or c.internal is None:
            continue
        dev = _find(table, c.network, c.dataset, c.deployment, DEVICE)
        if dev is None or dev.internal is None:
            continue
        plain = _find(table, c.network, c.dataset, c.deployment, PLAIN)
        diff, hw = _welch(c.internal, dev.internal)
        out.append(Equivalence(c.network, c.dataset, c.deployment.sigma_syn, plain.internal if plain else None,
                               c.internal, dev.internal, diff, hw))
    return out


def render_equivalence(table: list[Cell]) -> str:
    """A table per network: plain, equivalent pre-activation noise and device-aware accuracy on each
    synaptic level, their difference with its 95% CI, and whether the equivalence protects as well."""
    eq = equivalence(table)
    if not eq:
        return "No equivalence rows (no synaptic deployment with both an equivalent and a device-aware network)."
    parts = []
    for net in dict.fromkeys(e.network for e in eq):
        parts += [f"**{ss.NET_LABEL.get(net, net)}**", "",
                  "| data set | σ_syn | plain | σ_neu ≡ σ_syn | device-aware | equivalent − device-aware (95% CI) "
                  "| as well? |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for e in (e for e in eq if e.network == net):
            hw = "" if e.half_width is None else f" ± {100 * e.half_width:.2f}"
            verdict = {True: "yes", False: "**no**", None: "n/a"}[e.as_well]
            parts.append(f"| {ss.DATA_LABEL.get(e.dataset, e.dataset)} | {100 * e.sigma_syn:g}% | {_pct(e.plain)} | "
                         f"{_pct(e.equivalent)} | {_pct(e.device)} | {100 * e.diff:+.2f}{hw} | {verdict} |")
        parts.append("")
    return "\n".join(parts).rstrip()


# -- verdicts for the claims table ----------------------------------------------------------------------
def claim_regulariser_vs_device(rows: list[dict]) -> ss.Verdict:
    """The seed's answer to device noise (pre-activation noise) against device-aware training."""
    claim = ("Noise regularisation at train time is a promising method to resist internal noise "
             "(against device-aware training)")
    test = ("over every (network, data set, deployment) where the plain network loses accuracy to the "
            "device: the best pre-activation network (any σ_neu) wins back at least as much of it as "
            "device-aware training in more than half of them")
    table = cells(rows)
    wins, total, shares_pre, shares_dev = 0, 0, [], []
    for c in table:
        if c.method != DEVICE:
            continue
        sd = share(table, c)
        pre = [share(table, d) for d in table if (d.network, d.dataset, d.deployment) ==
               (c.network, c.dataset, c.deployment) and d.method not in (PLAIN, DEVICE)]
        pre = [x for x in pre if x is not None]
        if sd is None or not pre:
            continue
        total += 1
        wins += max(pre) >= sd
        shares_pre.append(max(pre))
        shares_dev.append(sd)
    if not total:
        return ss._verdict(claim, "Take-away points", test, None, "")
    import statistics

    evidence = (f"best pre-activation network at least as good as device-aware in {wins} of {total} cells; "
                f"median share won back: best pre-activation {100 * statistics.median(shares_pre):+.0f}%, "
                f"device-aware {100 * statistics.median(shares_dev):+.0f}%")
    return ss._verdict(claim, "Take-away points", test, wins * 2 > total, evidence)


def claim_equivalence(rows: list[dict]) -> ss.Verdict:
    claim = ("Pre-activation noise σ_neu = σ_syn (Wmax − Wmin) √n γ_act is equivalent to synaptic noise σ_syn "
             "(it protects as well as training on that noise)")
    test = ("on each synaptic level, the network trained with the equivalent σ_neu not below the device-aware "
            "one (95% Welch CI of the difference reaching 0) in more than half of the (network, data set, σ_syn) "
            "cells")
    eq = [e for e in equivalence(cells(rows)) if e.as_well is not None]
    if not eq:
        return ss._verdict(claim, "Methods (equivalence)", test, None, "")
    ok = sum(bool(e.as_well) for e in eq)
    by_net = ", ".join(f"{ss.NET_LABEL.get(n, n)} {sum(bool(e.as_well) for e in eq if e.network == n)}/"
                       f"{sum(1 for e in eq if e.network == n)}" for n in dict.fromkeys(e.network for e in eq))
    mean = 100 * sum(e.diff for e in eq) / len(eq)
    evidence = (f"as well in {ok} of {len(eq)} cells ({by_net}); mean difference equivalent − device-aware "
                f"{mean:+.2f} points")
    return ss._verdict(claim, "Methods (equivalence)", test, ok * 2 > len(eq), evidence)


def verdicts(rows: list[dict]) -> list[ss.Verdict]:
    return [claim_regulariser_vs_device(rows), claim_equivalence(rows)]


# -- the figure ----------------------------------------------------------------------------------------
def plot_training(table: list[Cell], out: Path) -> list[Path]:
    """A panel per network and data set: accuracy on each deployment (95% CI bars), a marker per
    training method, the plain network's clean accuracy dashed."""
    from matplotlib.figure import Figure

    from nvmkit.sweeps.plots import _save

    panels = list(dict.fromkeys((c.dataset, c.network) for c in table))
    if not panels:
        return []
    deps = deployments(table)
    methods = sorted({c.method for c in table}, key=_method_order)
    datasets = list(dict.fromkeys(ds for ds, _ in panels))
    nets = list(dict.fromkeys(n for _, n in panels))
    fig = Figure(figsize=(4.4 * len(nets), 3.4 * len(datasets) + 0.6), layout="constrained")
    axes = fig.subplots(len(datasets), len(nets), squeeze=False)
    width = 0.8 / max(1, len(methods))
    for i, ds in enumerate(datasets):
        for j, net in enumerate(nets):
            ax = axes[i][j]
            group = [c for c in table if (c.dataset, c.network) == (ds, net)]
            for k, m in enumerate(methods):
                pts = [(deps.index(c.deployment), c) for c in group if c.method == m and c.internal is not None]
                if not pts:
                    continue
                xs = [x + (k - (len(methods) - 1) / 2) * width for x, _ in pts]
                ax.errorbar(xs, [100 * c.internal.mean for _, c in pts],
                            yerr=[100 * (half_width(c.internal) or 0.0) for _, c in pts], fmt="o", markersize=3.5,
                            capsize=2, color=f"C{k}", label=method_label(m))
            clean = next((c.digital for c in group if c.method == PLAIN and c.digital is not None), None)
            if clean is not None:
                ax.axhline(100 * clean.mean, color="k", linestyle="--", linewidth=0.8, label="plain, clean")
            ax.set_xticks(range(len(deps)), [d.label for d in deps], rotation=30, fontsize="small")
            ax.set_ylabel("accuracy on the device (%)")
            ax.grid(alpha=0.3)
            sample = " (sample)" if any(c.sample for c in group) else ""
            ax.set_title(f"{ss.NET_LABEL.get(net, net)}, {ss.DATA_LABEL.get(ds, ds)}{sample}", fontsize="medium")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(6, max(1, len(labels))), fontsize="small")
    fig.suptitle("Which training survives which device (mean and 95% CI over trials)", fontsize="medium")
    return _save(fig, out / "training")
