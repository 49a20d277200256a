"""The tile-size trade-off (issue 21): accuracy against wire resistance and tile size, beside each tile
size's energy per inference.

Smaller tiles have shorter wires, so less IR drop (:mod:`nvmkit.engine.wires`), but a layer cut into
more row blocks needs more converter conversions (each row block's column currents are converted on
their own) and one cut into more column blocks drives its rows more often. Rows are results-database
rows of the study's ``tile_size`` sections; points the IR-drop model refused (its first-order drop
beyond :data:`nvmkit.engine.wires.MAX_DROP`) come as :class:`Refused` entries: their accuracy is not
simulated. A tile size *wins* at a wire resistance when it has the least energy per inference among
the simulated tiles whose accuracy is within :data:`MARGIN_POINTS` of the best one's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nvmkit.reproduction import seed_study as ss

#: A tile keeps the accuracy when its mean is within this many percentage points of the best tile's
#: mean at the same wire resistance (5 trials of the seed's networks spread by ~0.1-0.5 points).
MARGIN_POINTS = 0.5

_KAPPA = re.compile(r"drops up to (\d+(?:\.\d+)?)%")


@dataclass(frozen=True)
class Refused:
    """A point the IR-drop model refused: its network, data set, tile and wire resistance."""

    network: str
    dataset: str
    tile: tuple[int, int]
    resistance: tuple[float, float]
    kappa: float | None  # the first-order drop it reported (fraction), if the message gives it


@dataclass
class TileCell:
    network: str
    dataset: str
    tile: tuple[int, int]
    resistance: tuple[float, float]
    internal: ss.Stat | None
    digital: ss.Stat | None
    energy_j: float | None
    adc: int | None  # converter conversions per inference
    dac: int | None  # row drives per inference
    sample: bool
    refused: Refused | None = None


def tile_of(config: dict) -> tuple[int, int]:
    m = (config.get("crossbar") or {}).get("mapping") or {}
    return int(m.get("tile_rows", 1152)), int(m.get("tile_cols", 256))


def resistance_of(config: dict) -> tuple[float, float]:
    w = (config.get("crossbar") or {}).get("wires") or {}
    return float(w.get("row_resistance", 0.0)), float(w.get("col_resistance", 0.0))


def refused_entry(config: dict, error: str) -> Refused:
    """A refused point from its configuration (a RunConfig dict) and its one-line error."""
    from nvmkit.workflow.config import network_label

    found = _KAPPA.search(error or "")
    ds = (config.get("dataset") or {}).get("name", "mnist")
    return Refused(network_label(config) or "?", ds, tile_of(config), resistance_of(config),
                   float(found.group(1)) / 100 if found else None)


def _count(row: dict, component: str) -> int | None:
    terms = (row.get("energy") or {}).get("terms")
    if not terms:
        return None
    return int(sum(t.get("count", 0) for t in terms if t.get("component") == component))


def cells(rows: list[dict], refused: list[Refused] = ()) -> list[TileCell]:
    """One cell per (network, data set, tile, resistance): pooled trials, energy, conversions."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        cfg = r.get("config") or {}
        groups.setdefault((r["network"], r["dataset"], tile_of(cfg), resistance_of(cfg)), []).append(r)
    out = []
    for (net, ds, tile, res), rs in groups.items():
        pool = lambda s: ss.Stat.of([v for r in rs for v in ss.trials(r, s)])  # noqa: E731
        out.append(TileCell(net, ds, tile, res, pool("internal"), pool("digital"), rs[0].get("energy_total_j"),
                            _count(rs[0], "adc"), _count(rs[0], "dac"), any(r.get("sample") for r in rs)))
    done = {(c.network, c.dataset, c.tile, c.resistance) for c in out}
    for f in refused:
        if (f.network, f.dataset, f.tile, f.resistance) not in done:
            out.append(TileCell(f.network, f.dataset, f.tile, f.resistance, None, None, None, None, None,
                                False, f))
    # a refused tile's energy does not depend on the wires: take it from a simulated twin
    for c in out:
        if c.refused is not None:
            twin = next((d for d in out if d.refused is None and (d.network, d.dataset, d.tile) ==
                         (c.network, c.dataset, c.tile)), None)
            if twin is not None:
                c.energy_j, c.adc, c.dac = twin.energy_j, twin.adc, twin.dac
    order = {n: i for i, n in enumerate(ss.NETWORKS)}
    out.sort(key=lambda c: (order.get(c.network, 9), c.network, c.dataset, c.tile, c.resistance))
    return out


def _res_label(res: tuple[float, float]) -> str:
    return f"{res[0]:g} Ω" if res[0] == res[1] else f"{res[0]:g} / {res[1]:g} Ω"


def _tile_label(tile: tuple[int, int]) -> str:
    return f"{tile[0]} × {tile[1]}"


def winners(table: list[TileCell]) -> list[tuple[str, str, tuple[float, float], TileCell | None, list[TileCell]]]:
    """Per (network, data set, resistance): the winning tile (least energy among the simulated tiles
    within :data:`MARGIN_POINTS` of the best accuracy) and the tiles the model refused."""
    keys = sorted({(c.network, c.dataset, c.resistance) for c in table},
                  key=lambda k: (ss.NETWORKS.index(k[0]) if k[0] in ss.NETWORKS else 9, k))
    out = []
    for net, ds, res in keys:
        group = [c for c in table if (c.network, c.dataset, c.resistance) == (net, ds, res)]
        sim = [c for c in group if c.internal is not None and c.energy_j is not None]
        refused = [c for c in group if c.refused is not None]
        best = max((c.internal.mean for c in sim), default=None)
        keep = [c for c in sim if best is not None and 100 * (best - c.internal.mean) <= MARGIN_POINTS]
        out.append((net, ds, res, min(keep, key=lambda c: c.energy_j) if keep else None, refused))
    return out


def render_table(table: list[TileCell]) -> str:
    """Accuracy under internal noise (% mean ± std over trials) per tile and wire resistance, with the
    tile's energy per inference and its conversions; 'beyond' where the IR-drop model refused."""
    if not table:
        return "No tile-size rows (the section was not run, or every point failed)."
    res_values = sorted({c.resistance for c in table})
    head = ["network", "tile (rows × cols)", "data set", "energy / inference", "ADC conversions", "row drives",
            "clean (digital)"] + [f"wires {_res_label(r)}" for r in res_values]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for net, ds, tile in dict.fromkeys((c.network, c.dataset, c.tile) for c in table):
        group = {c.resistance: c for c in table if (c.network, c.dataset, c.tile) == (net, ds, tile)}
        any_cell = next(iter(group.values()))
        digital = next((c.digital for c in group.values() if c.digital is not None), None)
        data = ss.DATA_LABEL.get(ds, ds) + (" (sample)" if any(c.sample for c in group.values()) else "")
        cells_ = []
        for r in res_values:
            c = group.get(r)
            if c is None:
                cells_.append("")
            elif c.refused is not None:
                k = c.refused.kappa
                cells_.append(f"beyond ({k:.0%} drop)" if k is not None else "beyond")
            else:
                cells_.append(c.internal.pct() if c.internal else "")
        energy = "" if any_cell.energy_j is None else f"{1e9 * any_cell.energy_j:.2f} nJ"
        lines.append("| " + " | ".join([ss.NET_LABEL.get(net, net), _tile_label(tile), data, energy,
                                        _int(any_cell.adc), _int(any_cell.dac),
                                        digital.pct(std=False) if digital else ""] + cells_) + " |")
    return "\n".join(lines)


def _int(v) -> str:
    return "" if v is None else f"{v:,}"


def render_winners(table: list[TileCell]) -> str:
    if not table:
        return ""
    head = ["network", "wires", "data set", "winning tile", "its energy / inference", "its accuracy",
            "tiles beyond the model (rows)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for net, ds, res, win, refused in winners(table):
        beyond = ", ".join(str(c.tile[0]) for c in sorted(refused, key=lambda c: c.tile)) or "none"
        if win is None:
            lines.append(f"| {ss.NET_LABEL.get(net, net)} | {_res_label(res)} | {ss.DATA_LABEL.get(ds, ds)} | "
                         f"none simulated | | | {beyond} |")
            continue
        lines.append(f"| {ss.NET_LABEL.get(net, net)} | {_res_label(res)} | {ss.DATA_LABEL.get(ds, ds)} | "
                     f"**{_tile_label(win.tile)}** | {1e9 * win.energy_j:.2f} nJ | {win.internal.pct()} | {beyond} |")
    return "\n".join(lines)


def plot_tile_size(table: list[TileCell], out: Path) -> list[Path]:
    """A panel per network (and data set): accuracy against tile rows, a line per wire resistance
    (refused tiles left out, marked x on the axis), and the energy per inference (black, right axis)."""
    from matplotlib.figure import Figure

    from nvmkit.sweeps.plots import _save

    panels = list(dict.fromkeys((c.network, c.dataset) for c in table))
    if not panels:
        return []
    res_values = sorted({c.resistance for c in table})
    fig = Figure(figsize=(4.6 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (net, ds) in zip(axes, panels):
        group = [c for c in table if (c.network, c.dataset) == (net, ds)]
        tiles = sorted({c.tile for c in group})
        xs = {t: i for i, t in enumerate(tiles)}
        for k, res in enumerate(res_values):
            pts = sorted((c for c in group if c.resistance == res and c.internal is not None), key=lambda c: c.tile)
            if pts:
                ax.errorbar([xs[c.tile] for c in pts], [100 * c.internal.mean for c in pts],
                            yerr=[100 * c.internal.std for c in pts], marker="o", markersize=4, capsize=3,
                            color=f"C{k}", label=f"wires {_res_label(res)}")
            gone = [c for c in group if c.resistance == res and c.refused is not None]
            if gone:  # at the foot of the panel, one height per resistance
                ax.scatter([xs[c.tile] for c in gone], [0.03 + 0.045 * k] * len(gone), marker="x", color=f"C{k}",
                           transform=ax.get_xaxis_transform(), clip_on=False)
        lo, hi = ax.get_ylim()  # at least 2 points tall, so that the trials' spread does not look like a cliff
        if hi - lo < 2.0:
            mid = (lo + hi) / 2
            ax.set_ylim(mid - 1.0, mid + 1.0)
        ax.set_xticks(range(len(tiles)), [f"{r}×{c}" for r, c in tiles], rotation=30, fontsize="small")
        ax.set_xlabel("tile (rows × columns); x: beyond the IR-drop model")
        ax.set_ylabel("accuracy under internal noise (%)")
        ax.grid(alpha=0.3)
        energy = {c.tile: c.energy_j for c in group if c.energy_j is not None}
        if energy:
            ax2 = ax.twinx()
            ax2.plot([xs[t] for t in sorted(energy)], [1e9 * energy[t] for t in sorted(energy)], "k--", marker="s",
                     markersize=3, label="energy / inference")
            ax2.set_ylabel("energy per inference (nJ, dashed)")
        sample = " (sample)" if any(c.sample for c in group) else ""
        ax.set_title(f"{ss.NET_LABEL.get(net, net)}, {ss.DATA_LABEL.get(ds, ds)}{sample}", fontsize="medium")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, len(labels)), fontsize="small")
    fig.suptitle("Tile size: accuracy against wire resistance (IR drop), and energy per inference",
                 fontsize="medium")
    return _save(fig, out / "tile_size")
