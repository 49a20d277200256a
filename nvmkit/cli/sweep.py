"""``nvmkit sweep``, ``nvmkit results`` and ``nvmkit plot``: thin layers over experiment, sweep,
resultsdb and plots."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from rich.markup import escape

from nvmkit.cli.app import app, command, console, cores, data_folder, err_console, make_console, progress_bar
from nvmkit.core.formatting import duration
from nvmkit.workflow.config import SCENARIOS
from nvmkit.core.errors import ConfigError
from nvmkit.sweeps.resultsdb import DEFAULT_DB

DB_HELP = "SQLite results database (a sweep creates it if absent; read commands never write it)."
FILTER_HELP = ("Keep rows where KEY OP VALUE (=, !=, <, <=, >, >=); KEY is a column or a dotted config key; "
               "VALUE reads as in a spec (none: no value, e.g. noise=none). Repeatable.")


# -- sweep ---------------------------------------------------------------------------------------
@command(app, "sweep")
def sweep(
    experiment: Path = typer.Argument(..., help="Experiment TOML file: [base], [grid], optional [[points]]."),
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help=DB_HELP),
    executor: str = typer.Option("local", "--executor", help="local (this machine's cores) or dask."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local worker processes (default: the number of cores; 1 = in this process)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Full data folder for every point (Keras cache layout)."),
    set_: List[str] = typer.Option([], "--set", help="Override a [base] key: --set trials=10 (a path in it is read from the file's folder, as the file's own)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate, show the points and the estimate, run nothing."),
):
    """Run every point of an experiment, one database row each; a rerun skips the points already done."""
    from nvmkit.workflow import pipeline
    from nvmkit.sweeps.experiment import load_experiment
    from nvmkit.sweeps.resultsdb import ResultsDB, check_db_path
    from nvmkit.sweeps.sweep import check_executor, estimate_seconds, estimate_text, plan_sweep

    check_executor(executor, scheduler, workers)
    data_dir = data_folder(data_dir)
    if not dry_run:  # the database is the sweep's output: a place it cannot be written fails now
        check_db_path(db)
    exp = load_experiment(experiment)
    exp.check_base_overrides(set_)
    # absolute: [base] paths are read from the experiment's folder, a command line's from this one
    overrides = {"dataset.data_dir": str(data_dir.absolute()) if data_dir else None}
    if data_dir:
        overrides["dataset.source"] = "full"
    pipeline.apply_overrides(exp.base, overrides, sets=set_)

    # plan against the database opened read-only (or none yet): a dry run, and a sweep whose points
    # fail validation, write nothing and leave no empty database behind
    with contextlib.ExitStack() as stack:
        existing = stack.enter_context(ResultsDB(db, readonly=True)) if db.is_file() else None
        with console.status(f"validating the points of {escape(str(experiment))}"):
            plan = plan_sweep(exp, existing)
        history = existing.history() if existing is not None else []
    todo = plan.todo
    n_workers = 1 if executor == "dask" else (workers or cores())
    seconds, basis = estimate_seconds(todo, history, n_workers)
    if executor == "dask" and seconds is not None:
        basis += "; compute time on one worker: divide by the cluster's workers"
    console.print(
        f"[bold]{escape(exp.name)}[/]: {len(plan.points)} points, {len(plan.points) - len(todo)} already in "
        f"{escape(str(db))}, [bold]{len(todo)} to run[/] ({plan.models} trained models); "
        f"{escape(estimate_text(seconds, basis))}", highlight=False)
    if dry_run:
        _print_points(console, plan)
        return
    if not todo:
        console.print("nothing to do: every point is in the database")
        return
    with ResultsDB(db) as rdb:
        try:
            summary = _run_with_progress(console, exp, todo, rdb, executor, workers, scheduler)
        except KeyboardInterrupt:
            err_console.print(f"interrupted: {rdb.count()} rows in {escape(str(db))}; rerun the same command "
                              "to resume", highlight=False)
            raise typer.Exit(130) from None
    console.print(f"{summary.inserted} rows written to {escape(str(db))} in {duration(summary.wall_time_s)}"
                  + (f"; [red]{len(summary.failed)} points failed[/]" if summary.failed else ""), highlight=False)
    if summary.failed:
        err_console.print(f"[bold red]error:[/] {len(summary.failed)} of {len(todo)} points failed "
                          f"(first: {escape(str(summary.failed[0].error))}); fix and rerun: finished points are kept",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _run_with_progress(console, exp, todo, rdb, executor, workers, scheduler):
    from nvmkit.sweeps.sweep import run_sweep

    with progress_bar(console) as progress:
        task = progress.add_task(f"sweep {escape(exp.name)}", total=len(todo))

        def on_done(out):
            progress.console.print(outcome_line(out), highlight=False)
            progress.advance(task)

        return run_sweep(todo, rdb, executor=executor, workers=workers, scheduler=scheduler,
                         experiment=exp.name, on_done=on_done)


def outcome_line(out, wall: bool = True) -> str:
    """One rich-markup line for a finished sweep point: its accuracies, or its error."""
    label = escape(out.point.label)
    if out.error:  # error text is the user's data (e.g. "[grid] point 3"), never markup
        return f"[red]failed[/] {label}: {escape(str(out.error))}"
    acc = out.result.get("accuracy") or {}
    shown = " ".join(f"{s} {100 * acc[s]['mean']:.2f}%" for s in SCENARIOS if s in acc)
    seconds = out.result.get("wall_time_s") if wall else None
    return f"[green]done[/] {label}: {shown}" + (f" ({seconds:.1f} s)" if seconds else "")


def _print_points(console, plan) -> None:
    from rich.table import Table

    table = Table(title=f"points of {escape(plan.experiment.name)}")
    for col in ("#", "point", "status", "key"):
        table.add_column(col)
    for p in plan.points:
        table.add_row(str(p.index + 1), escape(p.label), "done" if p.key in plan.done else "to run", p.key[:12])
    console.print(table)


# -- results -------------------------------------------------------------------------------------
@command(app, "results")
def results(
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help=DB_HELP),
    filter_: List[str] = typer.Option([], "--filter", help=FILTER_HELP),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (summary columns) instead of a table."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (full rows) instead of a table."),
):
    """List the rows of a results database, optionally filtered."""
    from nvmkit.sweeps.resultsdb import ResultsDB, columns

    if as_csv and as_json:
        raise ConfigError("give --csv or --json, not both")
    with ResultsDB(db, readonly=True) as rdb:
        rows = rdb.rows(filter_)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        cols = columns()
        writer.writerow(cols)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r[c] for c in cols])
        return
    _print_table(console, rows, db)


def _print_table(console, rows, db) -> None:
    """One line per row; columns equal in every row move to the caption to keep the table narrow."""
    from rich.table import Table

    from nvmkit.sweeps.plots import varying_settings

    if not rows:  # a table of no rows is its title squeezed into the one "id" column's width
        console.print(f"0 rows in {escape(str(db))}", highlight=False)
        return
    scenarios = [s for s in SCENARIOS if any(s in r["accuracy"] for r in rows)]
    # what the other columns show; the noise column shows the level, the first noise parameter
    shown = {"network.name", "device.name", "noise.name", "training.sigma_neu", "seed"}
    shown |= {f"noise.params.{next(iter(params))}" for r in rows
              if (params := ((r["config"] or {}).get("noise") or {}).get("params"))}
    settings = varying_settings(rows, shown)
    cells = []
    for r, setting in zip(rows, settings):
        noise = (f"{r['noise']}:{r['noise_level']:g}" if r["noise"] and r["noise_level"] is not None
                 else (r["noise"] or "none"))
        cell = {
            "id": str(r["id"]), "network": r["network"] or "", "device": r["device"] or "",
            "data": f"{r['dataset']}{' (sample)' if r['sample'] else ''}", "noise": noise,
            "sigma_neu": "" if r["sigma_neu"] is None else f"{r['sigma_neu']:g}", "seed": str(r["seed"]),
        }
        if any(settings):  # what else the sweep varied (a device parameter): rows must differ visibly
            cell["settings"] = setting
        for s in scenarios:
            a = r["accuracy"].get(s)
            if not a:
                cell[f"{s} %"] = ""
            elif a.get("trials", 2) == 1:  # a single evaluation (digital) has no spread to show
                cell[f"{s} %"] = f"{100 * a['mean']:.2f}"
            else:
                cell[f"{s} %"] = f"{100 * a['mean']:.2f}±{100 * a['std']:.2f}"
        physical = (r.get("energy") or {}).get("physical", True)
        cell["energy"] = ("not physical" if not physical else "" if not r["energy_total_j"]
                          else f"{r['energy_total_j'] * 1e9:.4g} nJ")
        cell["wall s"] = "" if r["wall_time_s"] is None else f"{r['wall_time_s']:.1f}"
        cells.append(cell)
    cols = list(cells[0]) if cells else ["id"]
    fixed = {c: cells[0][c] for c in ("network", "device", "data", "noise", "sigma_neu", "seed", "energy")
             if len(cells) > 1 and len({x[c] for x in cells}) == 1}
    caption = ", ".join(f"{c}={v}" for c, v in fixed.items() if v)
    table = Table(title=f"{len(rows)} rows in {escape(str(db))}",
                  caption=f"all rows: {escape(caption)}" if caption else None)
    shown = [c for c in cols if c not in fixed]
    for c in shown:
        table.add_column(c, justify="left" if c in ("network", "device", "data", "noise", "settings") else "right")
    for cell in cells:
        table.add_row(*(escape(cell[c]) for c in shown))  # names and specs are the user's text
    # piped into a file or pager: no terminal width to respect, so do not truncate the numbers
    if not console.is_terminal:
        console = make_console(width=240, highlight=False)
    console.print(table)


# -- plot ------------------------------------------------------------------------------------------
@command(app, "plot")
def plot(
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help=DB_HELP),
    out: Path = typer.Option(Path("plots"), "--out", help="Folder for the PNG and SVG files."),
    kind: str = typer.Option("all", "--kind", help="accuracy, energy, pareto or all."),
    filter_: List[str] = typer.Option([], "--filter", help=FILTER_HELP),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Accuracy scenario to plot (default: both for accuracy, internal for pareto)."),
    x: str = typer.Option("noise_level", "--x", help="x axis of the accuracy plot: noise_level or a dotted config key, e.g. device.params.sigma_syn."),
):
    """Plot accuracy vs noise level, energy per inference and the accuracy-energy Pareto front."""
    from nvmkit.sweeps.plots import KINDS, plot_all
    from nvmkit.sweeps.resultsdb import ResultsDB

    kinds = list(KINDS) if kind == "all" else [kind]
    if scenario is not None and scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    with ResultsDB(db, readonly=True) as rdb:
        rows = rdb.rows(filter_)
    if not rows:
        raise ConfigError(f"no rows in {db}{' match the filters' if filter_ else ''}; run `nvmkit sweep` first "
                          "or loosen --filter")
    written = plot_all(rows, out, kinds, scenario=scenario, x=x)
    for p in written:
        console.print(f"wrote {escape(str(p))}", highlight=False)
    if not written:
        err_console.print(f"[yellow]warning:[/] the rows hold nothing to plot for --kind {escape(kind)} "
                          "(accuracy needs test-set noise, energy and pareto need an energy estimator)",
                          highlight=False)

