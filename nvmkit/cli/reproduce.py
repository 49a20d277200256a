"""``nvmkit reproduce``: a thin layer over :func:`nvmkit.reproduction.reproduce.reproduce`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from nvmkit.cli.app import app, command, console, cores, data_folder, err_console, progress_bar
from nvmkit.cli.sweep import outcome_line
from nvmkit.core.formatting import duration


@command(app, "reproduce")
def reproduce(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Full data folder (Keras cache layout); default: full data if found locally, else the embedded sample. Not with --quick, which always runs on the sample (use --study seed-quick --data-dir DIR)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: reports/seed, or reports/seed-quick with --quick)."),
    quick: bool = typer.Option(False, "--quick", help="The small study: embedded sample, 5 epochs, 3 trials, fewer levels (minutes on 2 cores)."),
    executor: str = typer.Option("local", "--executor", help="local (this machine's cores) or dask."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local worker processes (default: the number of cores; 1 = in this process)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Results database (default: OUT/results.db); points already in it are not rerun."),
    section: List[str] = typer.Option([], "--section", help="Run and report only this section (name or kind: result1, regularisation, test_noise, time_steps). Repeatable."),
    study: Optional[str] = typer.Option(None, "--study", help="Another study: a bundled name or a study .toml file (default: seed, or seed-quick with --quick)."),
    set_: List[str] = typer.Option([], "--set", help="Override a key in every section: --set trials=10."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate the study, show its sections and the estimate, run nothing."),
):
    """Run the seed's study (resumable) and write a report: Result 1 beside the seed's, the sweeps,
    the energy table, plots, and which of the seed's claims hold in our numbers."""
    from nvmkit.reproduction import reproduce as rep
    from nvmkit.sweeps.sweep import check_executor

    check_executor(executor, scheduler, workers)
    data_dir = data_folder(data_dir)
    command = rep.command_line(quick=quick, data_dir=data_dir, out=out, db=db, executor=executor, workers=workers,
                               scheduler=scheduler, study=study, sections=section, sets=set_)
    if dry_run:
        with console.status("validating the study"):
            plan = rep.plan_reproduction(study, quick=quick, data_dir=data_dir, sections=section, sets=set_)
        db_path = db or (out or Path(rep.DEFAULT_OUT) / plan.study.name) / "results.db"
        if Path(db_path).is_file():
            from nvmkit.sweeps.resultsdb import ResultsDB

            with ResultsDB(db_path, readonly=True) as rdb:
                plan.done = rdb.done_keys(p.key for p in plan.points)
        _print_plan(console, plan, db_path, executor, workers, history_db=db_path)
        return

    with progress_bar(console) as progress:
        task = None

        def on_plan(plan, db_path):
            nonlocal task
            _print_plan(progress.console, plan, db_path, executor, workers, history_db=db_path)
            task = progress.add_task(f"reproduce {escape(plan.study.name)}", total=len(plan.todo))

        def on_done(outcome):
            progress.console.print(outcome_line(outcome, wall=False), highlight=False)
            progress.advance(task)

        def on_in_place_job(job, record, done, total):
            progress.console.print(f"in place {done}/{total}: {escape(job.key)} ({record['seconds']} s)",
                                   highlight=False)

        try:
            result = rep.reproduce(out, quick=quick, data_dir=data_dir, db=db, executor=executor, workers=workers,
                                   scheduler=scheduler, study=study, sections=section, sets=set_, command=command,
                                   on_plan=on_plan, on_done=on_done, on_in_place_job=on_in_place_job)
        except KeyboardInterrupt:
            err_console.print("interrupted: finished points are saved; rerun the same command to resume",
                              highlight=False)
            raise typer.Exit(130) from None

    held = sum(v.verdict == "holds" for v in result.verdicts)
    failed_claims = sum(v.verdict == "does not hold" for v in result.verdicts)
    console.print(f"report: {escape(str(result.out / 'report.md'))} ({result.computed} points computed, {result.reused} reused, "
                  f"{duration(result.wall_time_s)}); the seed's claims: {held} hold, {failed_claims} do not, "
                  f"{len(result.verdicts) - held - failed_claims} not tested", highlight=False)
    if result.failed:
        err_console.print(f"[bold red]error:[/] {len(result.failed)} points failed (first: {escape(str(result.failed[0].error))}); "
                          "their cells are missing from the report: fix and rerun, finished points are kept",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _print_plan(console, plan, db_path, executor, workers, history_db) -> None:
    from rich.markup import escape
    from rich.table import Table

    from nvmkit.sweeps.sweep import estimate_seconds, estimate_text

    history = []
    if history_db is not None and Path(history_db).is_file():
        from nvmkit.sweeps.resultsdb import ResultsDB

        with ResultsDB(history_db, readonly=True) as rdb:
            history = rdb.history()
    todo = plan.todo
    n_workers = 1 if executor == "dask" else (workers or cores())
    seconds, basis = estimate_seconds(todo, history, n_workers)
    table = Table(title=escape(f"study {plan.study.name} ({plan.study.path})"))
    for col in ("section", "kind", "points", "to run", "trained models"):
        table.add_column(col, justify="left" if col in ("section", "kind") else "right")
    for sec, points in plan.sections:
        left = [p for p in points if p.key not in plan.done]
        table.add_row(escape(sec.name), escape(sec.kind), str(len(points)), str(len(left)), str(len({p.model_key for p in points})))
    console.print(table)
    console.print(f"{len(plan.points)} distinct points, {len(plan.points) - len(todo)} already in {escape(str(db_path))}, "
                  f"[bold]{len(todo)} to run[/] ({len({p.model_key for p in todo})} models); "
                  f"{escape(estimate_text(seconds, basis))}", highlight=False)

