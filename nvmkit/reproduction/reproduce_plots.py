"""The report's own figures (the sweeps' curves come from :mod:`nvmkit.sweeps.plots`): Result 1 beside the
seed's values, the RNN's accuracy against its time steps, and energy per inference beside the seed's.
Each function writes PNG and SVG and returns the paths (none when there is nothing to draw)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from nvmkit.reproduction import seed_study as ss
from nvmkit.sweeps.plots import _save


def plot_result1(rows: list[dict], out: Path) -> list[Path]:
    """Bars: ours (error bars = std over trials) per network and column; the seed's value as a black
    tick on the plain networks' bars. A row of panels per training (plain, then each sigma_neu)."""
    sigmas = ss.values(rows, "sigma_neu") or [0.0]
    datasets = ss.values(rows, "dataset")
    if not rows or not datasets:
        return []
    fig = Figure(figsize=(5.2 * len(datasets), 3.6 * len(sigmas)), layout="constrained")
    axes = fig.subplots(len(sigmas), len(datasets), squeeze=False)
    width = 0.26
    for i, sigma in enumerate(sigmas):
        table = ss.result1_rows(rows, sigma)
        for j, ds in enumerate(datasets):
            ax = axes[i][j]
            for k, net in enumerate(ss.NETWORKS):
                row = next((r for r in table if r.network == net and r.dataset == ds), None)
                if row is None:
                    continue
                xs = [c + (k - 1) * width for c in range(len(ss.COLUMNS))]
                stats = [row.cells[c] for c in ss.COLUMNS]
                ys = [100 * s.mean if s else 0.0 for s in stats]
                err = [100 * s.std if s else 0.0 for s in stats]
                ax.bar(xs, ys, width, yerr=err, capsize=2, color=f"C{k}", label=ss.NET_LABEL[net])
                if sigma == 0 and row.seed:
                    ax.scatter(xs, [100 * row.seed[c] for c in ss.COLUMNS], marker="_", s=260, color="k",
                               linewidths=2, zorder=3, label="seed" if k == 0 else None)
            ax.set_xticks(range(len(ss.COLUMNS)), ss.COLUMNS)
            shown = [b.get_height() for b in ax.patches if b.get_height() > 0]
            if sigma == 0:
                shown += [100 * v for r in table if r.dataset == ds and r.seed for v in r.seed.values()]
            ax.set_ylim(max(0.0, min(shown or [0.0]) - 5), 100)
            ax.set_ylabel("test accuracy (%)")
            training = "plain training" if sigma == 0 else f"noise-trained, σ_neu = {sigma:g}"
            ax.set_title(f"{ss.data_label(rows, ds)}, {training}", fontsize="medium")
            ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    fig.suptitle(f"Result 1: internal ({ss.internal_label(rows)}), external ({ss.external_label(rows)}), both",
                 fontsize="medium")
    return _save(fig, out / "result1")


def plot_regularisation(rows: list[dict], out: Path) -> list[Path]:
    """The seed's Results II: accuracy under internal noise vs sigma_syn, a line per training noise
    sigma_neu, a panel per data set and network; the clean (Keras) accuracy is drawn at sigma_syn = 0."""
    datasets, nets = ss.values(rows, "dataset"), ss.values(rows, "network")
    levels = ss.values(rows, "device__params__sigma_syn")
    sigmas = ss.values(rows, "sigma_neu")
    if not datasets or not levels:
        return []
    fig = Figure(figsize=(4.4 * len(nets), 3.6 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), len(nets), squeeze=False)
    for i, ds in enumerate(datasets):
        for j, net in enumerate(nets):
            ax = axes[i][j]
            for k, sn in enumerate(sigmas):
                match = {"dataset": ds, "network": net, "sigma_neu": sn}
                clean = ss.cell(rows, "digital", **match)
                pts = [(100 * s, ss.cell(rows, "internal", device__params__sigma_syn=s, **match)) for s in levels]
                pts = ([(0.0, clean)] if clean else []) + [(x, c) for x, c in pts if c is not None]
                if not pts:
                    continue
                ax.errorbar([x for x, _ in pts], [100 * c.mean for _, c in pts], yerr=[100 * c.std for _, c in pts],
                            capsize=3, marker="o", markersize=4, color=f"C{k}",
                            linestyle="-" if sn == 0 else "--", label=f"σ_neu = {sn:g}")
            ax.set_title(f"{ss.NET_LABEL.get(net, net)}, {ss.data_label(rows, ds)}", fontsize="medium")
            ax.set_xlabel("synaptic noise σ_syn (% of the weight range; 0: clean)")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, len(labels)), fontsize="small",
               title="training noise")
    fig.suptitle("Regularisation: accuracy under internal noise by training noise (error bars: std over trials)",
                 fontsize="medium")
    return _save(fig, out / "regularisation")


def plot_time_steps(rows: list[dict], out: Path) -> list[Path]:
    """Accuracy vs T, clean (dashed) and under internal noise (solid, error bars), one line per data set."""
    datasets = ss.values(rows, "dataset")
    if not datasets:
        return []
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for k, ds in enumerate(datasets):
        for scenario, style in (("digital", "--"), ("internal", "-")):
            pts = ss._by_t(rows, scenario, ds)
            if not pts:
                continue
            ts = sorted(pts)
            ax.errorbar(ts, [100 * pts[t].mean for t in ts], yerr=[100 * pts[t].std for t in ts], capsize=3,
                        linestyle=style, marker="o", markersize=4, color=f"C{k}",
                        label=f"{ss.data_label(rows, ds)}, {'clean' if scenario == 'digital' else 'internal noise'}")
    ax.set_xscale("log")  # before the ticks: setting the scale resets them
    steps = ss.values(rows, "network__params__time_steps")
    ax.set_xticks(steps, [f"{t:g}" for t in steps])
    ax.minorticks_off()
    ax.set_xlabel("time steps T (784 / T pixels per step)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"RNN accuracy vs time steps ({ss.internal_label(rows)})", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out / "time_steps")


def plot_energy_vs_seed(tables: dict[str, list], out: Path) -> list[Path]:
    """Energy per inference (log scale) of each network on each device: the seed's and ours under
    each set of assumptions (``tables``: assumptions name -> EnergyRow list)."""
    first = next(iter(tables.values()), [])
    if not first:
        return []
    keys = [(r.network, r.device) for r in first]
    series = [("seed", [r.seed["total"] for r in first])]
    for name, rows in tables.items():
        by = {(r.network, r.device): r.ours["total"] for r in rows}
        series.append((f"ours, {name} assumptions", [by.get(k, 0.0) for k in keys]))
    fig = Figure(figsize=(8.0, 4.4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(series)
    for j, (label, ys) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(keys))]
        ax.bar(xs, ys, width, label=label, color="k" if label == "seed" else f"C{j}",
               alpha=0.75 if label == "seed" else 1.0)
    ax.set_xticks(range(len(keys)), [f"{n}\n{d}" for n, d in keys])
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (J)")
    ax.set_title("energy per inference: the seed's table and ours", fontsize="medium")
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, out / "energy_vs_seed")
