"""``nvmkit reproduce``: the seed's study in one command, as a report folder.

:func:`reproduce` loads a study (:mod:`nvmkit.reproduction.study`; the bundled ``seed`` or ``seed-quick``), runs
every point not yet in its results database through the sweep engine (:func:`nvmkit.sweeps.sweep.run_sweep`:
resumable, trained models from the model cache), then :func:`write_report` writes ``OUT/``:

- ``report.md``: Result 1 beside the seed's table (plain and noise-trained networks), the
  regularisation sweeps, the test-set noise sweeps, the RNN's time steps, the tile sizes, which training
  survives which device (:mod:`nvmkit.reproduction.training_study`), the energy table beside the seed's, the seed's claims with verdicts computed from the rows (:mod:`nvmkit.reproduction.seed_study`), and how
  the report was made (command, versions, seed, data, wall time, machine load);
- ``results.md``: the Result 1 tables and the verdicts, to paste into docs/results.md;
- ``summary.json``: the verdicts and the Result 1 cells, for scripts;
- ``plots/``: a PNG and an SVG per figure; ``results.db``: the rows (unless ``db`` says elsewhere).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from nvmkit.core.formatting import duration
from nvmkit.reproduction import seed_study as ss
from nvmkit.core.atomic import atomic_write
from nvmkit.core.errors import ConfigError
from nvmkit.sweeps.experiment import Point
from nvmkit.reproduction.study import KINDS, Section, Study, load_study

DEFAULT_STUDY, QUICK_STUDY = "seed", "seed-quick"
DEFAULT_OUT = "reports"  # the report goes to reports/<study name> unless --out says otherwise


# -- planning -------------------------------------------------------------------------------------------
@dataclass
class Plan:
    study: Study
    sections: list[tuple[Section, list[Point]]]
    done: set[str] = field(default_factory=set)

    @property
    def points(self) -> list[Point]:
        """Distinct points in section order (sections may share points: each runs once)."""
        seen, out = set(), []
        for _, points in self.sections:
            for p in points:
                if p.key not in seen:
                    seen.add(p.key)
                    out.append(p)
        return out

    @property
    def todo(self) -> list[Point]:
        return [p for p in self.points if p.key not in self.done]


def plan_reproduction(study: str | Path | None = None, *, quick: bool = False, data_dir: str | Path | None = None,
                      sections: Sequence[str] = (), sets: Sequence[str] = (), registry=None) -> Plan:
    """Load the study, apply ``data_dir`` and ``--set`` overrides, keep the chosen sections (names or
    kinds) and validate every point before anything runs."""
    from nvmkit.workflow import pipeline

    if quick and data_dir:
        raise ConfigError(f"--quick always runs on the embedded sample; drop --data-dir, or run the small study "
                          f"on the full data with --study {QUICK_STUDY} --data-dir DIR")
    st = load_study(study or (QUICK_STUDY if quick else DEFAULT_STUDY))
    chosen = st.sections
    if sections:
        known = {s.name for s in st.sections} | {s.kind for s in st.sections}
        bad = [s for s in sections if s not in known]
        if bad:
            raise ConfigError(f"study {st.name} has no section {bad[0]!r}; choose from: "
                              f"{', '.join(sorted(known))}")
        chosen = [s for s in st.sections if s.name in sections or s.kind in sections]
    overrides = {}
    if data_dir:
        overrides = {"dataset.data_dir": str(Path(data_dir).expanduser().absolute()), "dataset.source": "full"}
    out = []
    for sec in chosen:
        sec.experiment.check_base_overrides(sets)
        pipeline.apply_overrides(sec.experiment.base, overrides, sets=sets)
        # an in_place section runs its own jobs (nvmkit/reproduction/in_place_study.py), no sweep points
        out.append((sec, [] if sec.kind == "in_place" else sec.experiment.points(registry)))
    st.sections = chosen
    return Plan(st, out)


def command_line(*, quick: bool = False, data_dir=None, out=None, db=None, executor: str = "local",
                 workers: int | None = None, scheduler: str | None = None, study=None,
                 sections: Sequence[str] = (), sets: Sequence[str] = ()) -> str:
    """The ``nvmkit reproduce`` command that makes these choices (what the report says it ran)."""
    args = ["nvmkit", "reproduce"]
    if quick:
        args.append("--quick")
    for flag, value in (("--study", study), ("--data-dir", data_dir), ("--out", out), ("--db", db)):
        if value is not None:
            args += [flag, shown_path(value)]
    if executor != "local":
        args += ["--executor", executor]
    if scheduler:
        args += ["--scheduler", scheduler]
    if workers is not None:
        args += ["--workers", str(workers)]
    for s in sections:
        args += ["--section", s]
    for s in sets:
        args += ["--set", s]
    return shlex.join(args)


def shown_path(path: str | Path) -> str:
    """A path as a report shows it: relative to the working folder where it lies below or beside it
    (the command is run from there: ``../shared/datasets``), so that a shared report names no folder
    of this machine; a path that shares only the root with it is shown as it is."""
    p = Path(path)
    if p.is_absolute():
        # normalised first: "a/../shared" and "shared" are one folder; a folder beside the working
        # one is shown as "../shared", never by its absolute name
        p = Path(os.path.normpath(p))
        try:
            return p.relative_to(Path.cwd()).as_posix() or "."
        except ValueError:
            if os.path.commonpath([p, Path.cwd()]) != p.anchor:  # beside the working folder
                return Path(os.path.relpath(p, Path.cwd())).as_posix()
            return str(p)
    return str(path)


# -- running --------------------------------------------------------------------------------------------
@dataclass
class Reproduction:
    out: Path
    db: Path
    files: list[Path]
    verdicts: list[ss.Verdict]
    computed: int  # points run now
    reused: int  # points found in the database
    failed: list  # sweep Outcomes that raised
    wall_time_s: float
    refused: list = field(default_factory=list)  # Outcomes beyond the IR-drop model's range (not failures)


def reproduce(out: str | Path | None = None, *, quick: bool = False, data_dir: str | Path | None = None,
              db: str | Path | None = None, executor: str = "local", workers: int | None = None,
              scheduler: str | None = None, runner=None, study: str | Path | None = None,
              sections: Sequence[str] = (), sets: Sequence[str] = (), command: str | None = None,
              on_plan: Callable[[Plan, Path], None] | None = None,
              on_done: Callable | None = None, on_in_place_job: Callable | None = None) -> Reproduction:
    """Run the study's missing points and write the report folder; see the module docstring."""
    from nvmkit.sweeps.resultsdb import ResultsDB
    from nvmkit.sweeps.sweep import run_sweep

    started = time.perf_counter()
    started_at = datetime.now(timezone.utc)
    load_before = _load()
    plan = plan_reproduction(study, quick=quick, data_dir=data_dir, sections=sections, sets=sets)
    out_dir = Path(out) if out is not None else Path(DEFAULT_OUT) / plan.study.name
    _mkdir(out_dir)
    from nvmkit.sweeps.resultsdb import check_db_path
    from nvmkit.workflow.report import check_writable_folder

    # the report is written after every point has run: a folder it cannot go to fails now
    check_writable_folder(out_dir, "cannot write the report; pass another --out")
    check_report_files(out_dir)
    db_path = check_db_path(Path(db) if db is not None else out_dir / "results.db")
    command = command or command_line(quick=quick, data_dir=data_dir, out=out, db=db, executor=executor,
                                      workers=workers, scheduler=scheduler, study=study, sections=sections,
                                      sets=sets)
    with ResultsDB(db_path) as rdb:
        plan.done = rdb.done_keys(p.key for p in plan.points)
        todo = plan.todo
        if on_plan is not None:
            on_plan(plan, db_path)
        summary = run_sweep(todo, rdb, executor=executor, workers=workers, scheduler=scheduler, runner=runner,
                            experiment=plan.study.name, on_done=on_done)
        rows = {r["key"]: r for r in rdb.rows()}
    sections_rows = [(sec, [rows[p.key] for p in points if p.key in rows]) for sec, points in plan.sections]
    # a point whose wires drop more than the IR-drop model covers is refused by the model, a
    # result of the study (the tile-size table says "beyond"), not a failure to fix and rerun
    from nvmkit.engine.wires import OUT_OF_RANGE

    refused = [o for o in summary.failed if OUT_OF_RANGE in (o.error or "")]
    failed = [o for o in summary.failed if o not in refused]
    in_place = run_in_place_sections(plan, out_dir, on_job=on_in_place_job)
    meta = {
        "command": command, "quick": quick, "study": plan.study, "db": db_path,
        "started_at": started_at, "load_before": load_before, "load_after": _load(),
        "executor": executor, "workers": workers, "scheduler": scheduler,
        "computed": summary.inserted, "reused": len(plan.points) - len(todo), "points": len(plan.points),
        "failed": [(o.point.label, o.error) for o in failed],
        "refused": [(o.point.config, o.error) for o in refused],
        "wall_time_s": time.perf_counter() - started, "in_place": in_place,
    }
    files, verdicts = write_report(sections_rows, out_dir, meta)
    return Reproduction(out_dir, db_path, files, verdicts, summary.inserted, meta["reused"], failed,
                        time.perf_counter() - started, refused)


def run_in_place_sections(plan: Plan, out_dir: Path, on_job: Callable | None = None) -> list[tuple[Section, dict]]:
    """Run every ``in_place`` section's missing jobs (:func:`nvmkit.reproduction.in_place_study.run`),
    their records kept in ``OUT/in_place-NAME.json`` so that a rerun resumes; returns (section,
    records state) pairs. The data set and seed are the section's ``base`` (``--data-dir`` included)."""
    out = []
    for sec, _ in plan.sections:
        if sec.kind != "in_place":
            continue
        from nvmkit.reproduction import in_place_study as ips
        from nvmkit.workflow.data import load_dataset

        from nvmkit.workflow.config import RunConfig

        base = RunConfig.from_dict(copy.deepcopy(sec.experiment.base))
        ds = base.dataset
        data = load_dataset(ds.name, ds.data_dir, source=ds.source)
        state = ips.run(sec.plan, data, out_dir / f"in_place-{sec.name}.json", base_seed=int(base.seed or 0),
                        training_config=base.training, on_job=on_job)
        out.append((sec, state))
    return out


def _load() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        return None


#: how each report file nvmkit writes is told from a user's file of the same name
_REPORT_MARKS = {"report.md": "- Versions: report written by nvmkit ",
                 "results.md": "<!-- generated by nvmkit reproduce",
                 "summary.json": '"verdicts": ['}


def check_report_files(out_dir: Path) -> None:
    """Refuse, before any point runs, a report folder holding a report.md, results.md or
    summary.json that nvmkit did not write (``--out docs`` would replace docs/results.md); a
    report of an earlier run is replaced, as a rerun should."""
    for name, mark in _REPORT_MARKS.items():
        path = out_dir / name
        if not path.exists():
            continue
        try:
            ours = path.is_file() and mark in path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            ours = False
        if not ours:
            raise ConfigError(f"{path} exists and is not a report nvmkit wrote; nvmkit will not overwrite it: "
                              "pass another --out, or move the file")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create report folder {path} ({exc.strerror}); pass another --out") from None


# -- the report -----------------------------------------------------------------------------------------
def write_report(sections_rows: list[tuple[Section, list[dict]]], out: str | Path,
                 meta: dict | None = None) -> tuple[list[Path], list[ss.Verdict]]:
    """Write report.md, results.md, summary.json and the plots from the sections' rows.

    ``meta`` describes the run (see :func:`reproduce`); missing entries are left out of the report.
    Returns the files written and the verdicts on the seed's claims.
    """
    from nvmkit.reproduction.energy_table import render_assumptions, render_seed_table, seed_claims, seed_energy_table

    out = Path(out)
    plots = out / "plots"
    _mkdir(plots)
    meta = dict(meta or {})
    by_kind: dict[str, list[dict]] = {k: [] for k in KINDS}
    for sec, rows in sections_rows:
        seen = {r["key"] for r in by_kind[sec.kind]}
        by_kind[sec.kind] += [r for r in rows if r["key"] not in seen]
    energy = {name: seed_energy_table(name) for name in ("seed", "default")}
    from nvmkit.reproduction import training_study as tr_study

    verdicts = ss.accuracy_claims(by_kind)
    for name, rows in energy.items():
        verdicts += ss.energy_verdicts(seed_claims(rows), name)
    verdicts += tr_study.verdicts(by_kind["training"])  # after the energy claims: their numbers stay

    written: list[Path] = []
    figures: dict[str, list[Path]] = {k: [] for k in (*KINDS, "energy")}
    from nvmkit.reproduction import reproduce_plots as rp
    from nvmkit.reproduction import tile_study as ts_study
    from nvmkit.sweeps.plots import plot_accuracy

    r1, reg, tn, ts = (by_kind[k] for k in ("result1", "regularisation", "test_noise", "time_steps"))
    tiles = tile_table(by_kind["tile_size"], meta)
    figures["tile_size"] = ts_study.plot_tile_size(tiles, plots) if tiles else []
    training = tr_study.cells(by_kind["training"])
    figures["training"] = tr_study.plot_training(training, plots) if training else []
    figures["result1"] = rp.plot_result1(r1, plots) if r1 else []
    figures["regularisation"] = rp.plot_regularisation(reg, plots) if reg else []
    figures["test_noise"] = plot_accuracy(tn, plots / "test_noise", scenario="both") if tn else []
    figures["time_steps"] = rp.plot_time_steps(ts, plots) if ts else []
    figures["energy"] = rp.plot_energy_vs_seed(energy, plots)
    figures["in_place"] = _in_place_figures(meta.get("in_place") or [], plots)
    for paths in figures.values():
        written += paths

    notes = {sec.kind: [] for sec, _ in sections_rows}
    for sec, _ in sections_rows:
        if sec.note and sec.note not in notes[sec.kind]:
            notes[sec.kind].append(sec.note)
    text = _report(by_kind, notes, figures, energy, verdicts, meta, out, render_seed_table, render_assumptions)
    results_md = _results_snippet(by_kind, verdicts, meta, notes)
    summary = {
        "verdicts": [v.to_dict() for v in verdicts],
        "result1": {f"sigma_neu={s:g}": [_r1_json(r) for r in ss.result1_rows(r1, s)]
                    for s in ss.values(r1, "sigma_neu")},
        "rows": {k: len(v) for k, v in by_kind.items()},
        "tile_size": [{"network": net, "dataset": ds, "wires_ohm": list(res),
                       "winner": None if win is None else list(win.tile),
                       "beyond_model": [list(c.tile) for c in beyond]}
                      for net, ds, res, win, beyond in ts_study.winners(tiles)],
        "training": [_training_json(training, c) for c in training],
        "in_place": [_in_place_json(sec, state) for sec, state in meta.get("in_place") or []],
        "command": meta.get("command"),
        "wall_time_s": meta.get("wall_time_s"),
    }
    for name, content in (("report.md", text), ("results.md", results_md),
                          ("summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")):
        path = out / name
        atomic_write(path, content)
        written.append(path)
    return written, verdicts


def tile_table(rows: list[dict], meta: dict) -> list:
    """The tile-size cells (:mod:`nvmkit.reproduction.tile_study`): the rows, and the points the IR-drop
    model refused (``meta["refused"]``: (configuration, error) pairs)."""
    from nvmkit.reproduction import tile_study as ts_study

    refused = [ts_study.refused_entry(cfg, err) for cfg, err in meta.get("refused") or []]
    if not rows and not refused:
        return []
    return ts_study.cells(rows, refused)


def _tile_block(by_kind: dict, meta: dict, notes, figures, out, heading: str) -> list[str]:
    from nvmkit.engine.wires import MAX_DROP
    from nvmkit.reproduction import tile_study as ts_study

    lines = [heading, ""] + _notes(notes)
    tiles = tile_table(by_kind["tile_size"], meta)
    if not tiles:
        return lines + ["Not run.", ""]
    lines += [f"Accuracy in % under internal noise (mean ± std over trials) for each tile size and wire resistance "
              f"(ohm per cell segment, row and column wires); 'beyond' marks points whose first-order voltage drop "
              f"across a cell exceeds the {MAX_DROP:.0%} the IR-drop model covers (nvmkit/engine/wires.py), so their "
              "accuracy is not simulated. Energy per inference and its conversions do not depend on the wires.", "",
              ts_study.render_table(tiles), "",
              f"Which tile size wins: at each wire resistance, the tile with the least energy per inference among "
              f"the simulated ones whose accuracy is within {ts_study.MARGIN_POINTS:g} points of the best.", "",
              ts_study.render_winners(tiles), ""]
    if figures is not None:
        lines += [_images(figures.get("tile_size", []), out, "Tile size"), ""]
    return lines


def _training_json(table, c) -> dict:
    from nvmkit.reproduction import training_study as tr_study

    stat = lambda s: None if s is None else {"mean": s.mean, "std": s.std, "n": s.n,  # noqa: E731
                                             "ci95_half_width": tr_study.half_width(s)}
    return {"network": c.network, "dataset": c.dataset, "device": c.deployment.device,
            "sigma_syn": c.deployment.sigma_syn, "drift_time": c.deployment.drift_time, "method": c.method,
            "epochs": c.epochs, "internal": stat(c.internal), "digital": stat(c.digital), "n_test": c.n_test,
            "share_won_back": None if c.method == tr_study.PLAIN else tr_study.share(table, c)}


def _training_block(by_kind: dict, notes, figures, out, heading: str, sub: str = "###") -> list[str]:
    from nvmkit.reproduction import training_study as tr_study

    lines = [heading, ""] + _notes(notes)
    table = tr_study.cells(by_kind["training"])
    if not table:
        return lines + ["Not run.", ""]
    n_test = sorted({c.n_test for c in table if c.n_test})
    lines += [f"Accuracy in % on each deployment: mean ± the half-width of its 95% confidence interval over the "
              f"Monte Carlo trials ({_trials_text(by_kind['training'])}; "
              f"{', '.join(f'{n:,}' for n in n_test) or 'unknown'} test images, the same for every cell, so "
              "their own sampling error is common to all methods); in brackets, the share of the plain network's "
              "loss to the device (clean minus on the device) that the method wins back: (method − plain) / "
              "(clean − plain), 0% no better than plain, 100% back to the clean accuracy; n/a where the "
              "plain network's loss is within its own 95% CI half-width or one test image (nothing to win "
              "back). Clean: the network in Keras, without the device; device-aware training makes one "
              "network per deployment, so its row gives the range of their clean accuracies.", "", tr_study.render_table(table), "",
              f"{sub} Per method, over the cells where there is a loss to win back", "",
              "above / below plain: the 95% Welch confidence interval of the difference from plain excludes 0; "
              "best: the highest mean of all methods at that deployment.", "",
              tr_study.render_summary(table), "",
              f"{sub} The seed's equivalence, tested", "",
              "On each synaptic level σ_syn: the network fine-tuned with pre-activation noise at the per-layer "
              "σ_neu = σ_syn (Wmax − Wmin) √n γ_act the seed's formula gives (training.sigma_syn_target), against "
              "the one fine-tuned through the device; difference in points with its 95% Welch CI; 'as well' when "
              "that interval reaches 0 or above.", "", tr_study.render_equivalence(table), ""]
    if figures is not None:
        lines += [_images(figures.get("training", []), out, "Training methods"), ""]
    return lines


def _in_place_figures(sections: list, plots: Path) -> list[Path]:
    from nvmkit.reproduction import in_place_study as ips

    out = []
    for sec, state in sections:
        out += ips.plot_in_place(state["records"], sec.plan, plots / (sec.name if len(sections) > 1 else ""),
                                 sample=bool(state["data"]["sample"]))
    return out


def _in_place_json(sec: Section, state: dict) -> dict:
    from nvmkit.reproduction import in_place_study as ips

    sc, ft = ips.scratch_cells(state["records"]), ips.finetune_cells(state["records"])
    cell = lambda c: None if c is None else {"mean": c.mean, "std": c.std, "n": c.n, "ci95": c.ci95}  # noqa: E731
    return {"section": sec.name, "data": state["data"], "plan": state["plan"],
            "scratch": {k: cell(c) for k, c in sc.items()},
            "finetune": [{"network": n, "device": d, **{k: cell(c) for k, c in v.items()}} for (n, d), v in ft.items()],
            "verdict": ips.asymmetry_verdict(sc, sec.plan)}


def _in_place_block(meta: dict, figures, out, heading: str) -> list[str]:
    from nvmkit.reproduction import in_place_study as ips

    sections = meta.get("in_place") or []
    lines = [heading, ""]
    if not sections:
        return lines + ["Not run.", ""]
    for sec, state in sections:
        plan, records, data = sec.plan, state["records"], state["data"]
        lines += _notes([sec.note] if sec.note else [])
        where = (f"{data['dataset']}, {'the embedded sample' if data['sample'] else 'full data'}: trained on "
                 f"{data['n_train']:,} images, tested on a seeded subset of {min(plan.test_size, data['n_test']):,} "
                 f"of its {data['n_test']:,} test images")
        if data["sample"]:
            lines += ["> **On the embedded sample**: the networks are undertrained; the numbers say only that the "
                      "study runs.", ""]
        done = sum(1 for _ in records)
        lines += [f"Accuracy in %: mean ± the 95% confidence interval of the mean over {plan.seeds} chips "
                  f"(seeds {state['base_seed']} to {state['base_seed'] + plan.seeds - 1}; Student's t, "
                  f"{plan.seeds - 1} degrees of freedom), each chip's own accuracy ({where}); "
                  f"{done} of {len(plan.jobs(state['base_seed']))} jobs done.", "",
                  f"### (a) {ips.NET_LABEL.get(plan.scratch_network, plan.scratch_network)} trained in place "
                  f"from scratch", "",
                  f"{plan.scratch_steps} mini-batches of {plan.batch_size}, SGD rate {plan.scratch_learning_rate:g}, "
                  f"deterministic pulse counts, the largest initial weight at g_max / {plan.scratch_headroom:g}. "
                  "Soft-bounds: `nvmkit devices show softbounds` (a: asymmetry, nl: non-linearity; its default "
                  "step, no cycle-to-cycle noise).", "",
                  ips.render_scratch(ips.scratch_cells(records), plan), "",
                  "Verdict on the seed's \"most severe impact from asymmetric non-linearity\" (Agarwal et al., "
                  "IJCNN 2016): " + ips.asymmetry_verdict(ips.scratch_cells(records), plan) + ".", "",
                  "### (b) On-chip fine-tuning of plainly trained networks", "",
                  f"The plain model programmed on one chip (for a drifting device, read {plan.drift_time:g} s after "
                  f"programming), then trained in place at rate {plan.finetune_learning_rate:g}; the chip's accuracy "
                  "after each number of update steps. Beside it on the same chip seed: the device-aware trained model "
                  "(`training.method = device`, 1 epoch) programmed on it, and the plain model with global drift "
                  f"compensation. A device marked *assumed update* states no update model of its own: it was given a "
                  f"constant, symmetric, noiseless step of {plan.assumed_step:g} of its range, an assumption (no "
                  "source gives one), the most favourable update there is.", "",
                  ips.render_finetune(ips.finetune_cells(records), plan), "",
                  "What each remedy changes against the programmed chip before any update (step 0), in "
                  "percentage points: the mean over chips of each chip's own difference ± its 95% CI (paired: the "
                  "chip's programming cancels).", "",
                  ips.render_gains(records, plan), ""]
    if figures is not None:
        lines += [_images(figures.get("in_place", []), out, "Learning in place"), ""]
    return lines


def _r1_json(r: ss.Result1Row) -> dict:
    return {"network": r.network, "dataset": r.dataset, "seed": r.seed,
            "ours": {k: (None if v is None else {"mean": v.mean, "std": v.std, "n": v.n}) for k, v in r.cells.items()}}


def _images(paths: list[Path], out: Path, alt: str) -> str:
    pngs = [p for p in paths if p.suffix == ".png"]
    return "\n\n".join(f"![{alt}]({p.relative_to(out).as_posix()})" for p in pngs)


def _result1_block(r1: list[dict], heading: str = "###") -> str:
    if not r1:
        return "No Result 1 rows (the section was not run, or every point failed)."
    parts = []
    for sigma in ss.values(r1, "sigma_neu"):
        if sigma == 0:
            parts += [f"{heading} Networks trained without noise injection, beside the seed's Result 1", "",
                      ss.render_result1(r1, 0.0, r1), "",
                      f"Accuracy in %, mean ± std over the Monte Carlo trials ({_trials_text(r1)}); seed: the "
                      "seed's Result 1 slide, which marks the CNN Fashion-MNIST row with an "
                      "asterisk and gives no footnote for it."]
        else:
            parts += ["", f"{heading} Networks trained with noise injection (σ_neu = {sigma:g} before every ReLU)", "",
                      ss.render_result1(r1, sigma, r1), "",
                      "change: noise-trained minus plain, percentage points (the seed has no such table)."]
    return "\n".join(parts)


def _trials_text(rows: list[dict]) -> str:
    n = sorted({r.get("trials") for r in rows if r.get("trials")})
    return ("trials per cell: " + ", ".join(map(str, n))) if n else "trials: unknown"


def _report(by_kind, notes, figures, energy, verdicts, meta, out, render_seed_table, render_assumptions) -> str:
    r1, reg, tn, ts = (by_kind[k] for k in ("result1", "regularisation", "test_noise", "time_steps"))
    quick = meta.get("quick")
    sample = any(r.get("sample") for rows in by_kind.values() for r in rows)
    lines = ["# The seed study, reproduced with nvmkit", "",
             f"Seed: {ss.SEED_REF}.", ""]
    if quick or sample:
        lines += ["> **Not a reproduction.** " + ("This is the quick version of the study (`--quick`): "
                                                 if quick else "")
                  + ("it ran on the embedded sample (4,000 training and 1,000 test images per data set), "
                     if sample else "")
                  + "so the networks are undertrained and the verdicts below say only that the pipeline runs "
                    "end to end. Run `nvmkit reproduce --data-dir DIR` for the real numbers.", ""]
    lines += ["Contents: 1. Result 1 · 2. Regularisation sweeps · 3. Test-set noise sweeps · 4. Time steps of "
              "the RNN · 5. Tile size and wire resistance · 6. Which training survives which device · "
              "7. Learning in place · 8. Energy per inference · 9. The seed's claims · 10. How this report was made", ""]

    lines += ["## 1. Result 1: internal, external and both noise", ""]
    lines += _notes(notes.get("result1"))
    lines += [_result1_block(r1), "", _images(figures["result1"], out, "Result 1"), ""]

    lines += _sweep_section("## 2. Regularisation sweeps (Results II)", notes.get("regularisation"), reg,
                            "Accuracy in % under internal noise of each level (mean ± std over trials); clean: "
                            "the network in Keras, without noise.", ss.render_regularisation,
                            figures["regularisation"], out, "Regularisation sweep")
    lines += _sweep_section("## 3. Test-set noise sweeps (Results III and IV)", notes.get("test_noise"), tn, None,
                            ss.render_test_noise, figures["test_noise"], out, "Test-set noise sweep")
    lines += _sweep_section("## 4. Time steps of the RNN", notes.get("time_steps"), ts,
                            "Accuracy in %: clean (Keras) and under internal noise (mean ± std over trials); the "
                            "cost of internal noise is clean minus internal.", ss.render_time_steps,
                            figures["time_steps"], out, "Time steps")

    lines += _tile_block(by_kind, meta, notes.get("tile_size"), figures, out,
                         "## 5. Tile size against wire resistance (IR drop)")
    lines += _training_block(by_kind, notes.get("training"), figures, out,
                             "## 6. Which training survives which device")

    lines += _in_place_block(meta, figures, out, "## 7. Learning in place")

    lines += ["## 8. Energy per inference", "",
              "From `nvmkit.reproduction.energy_table` with the settings of docs/energy.md (`nvmkit energy --seed-table "
              "--assumptions seed|default`): energy per inference of the seed's three networks on ReRAM and "
              "SONOS, without training. docs/energy.md explains each cell's difference from the seed's.", ""]
    for name, rows in energy.items():
        lines += [f"### {name} assumptions", "", render_assumptions(name), "", render_seed_table(rows), ""]
    lines += [_images(figures["energy"], out, "Energy per inference"), ""]

    lines += ["## 9. The seed's claims, tested on these numbers", "",
              "Each verdict is computed from the rows above by the test it states; 'not tested' means the rows "
              "it needs were not run.", "", ss.render_verdicts(verdicts), ""]
    held = sum(v.verdict == ss.HOLDS for v in verdicts)
    failed = sum(v.verdict == ss.FAILS for v in verdicts)
    lines += [f"{held} hold, {failed} do not hold, {len(verdicts) - held - failed} not tested.", ""]

    lines += ["## 10. How this report was made", ""] + _provenance(by_kind, meta, figures, out)
    return "\n".join(lines).rstrip() + "\n"


def _sweep_section(heading: str, notes, rows: list[dict], intro: str | None, render, figures: list[Path],
                   out: Path, alt: str) -> list[str]:
    """A sweep's section: heading, the study's notes, an intro, the table and the figures (or 'Not run.')."""
    lines = [heading, ""] + _notes(notes)
    if not rows:
        return lines + ["Not run.", ""]
    return lines + ([intro, ""] if intro else []) + [render(rows), "", _images(figures, out, alt), ""]


def _notes(notes: list[str] | None) -> list[str]:
    return [x for n in (notes or []) for x in (n, "")]


def _provenance(by_kind, meta, figures, out) -> list[str]:
    from nvmkit.core.version import __version__

    rows = [r for rs in by_kind.values() for r in rs]
    lines = []
    if meta.get("command"):
        lines.append(f"- Command: `{meta['command']}`")
    study = meta.get("study")
    if study is not None:
        lines.append(f"- Study: `{study.path}` ({study.name}: {study.description}); sections: "
                     + ", ".join(f"{s.name} ({s.kind})" for s in study.sections))
    versions: dict[str, set] = {}
    for r in rows:
        for k, v in (r.get("versions") or {}).items():
            versions.setdefault(k, set()).add(str(v))
    shown = ", ".join(f"{k} {' / '.join(sorted(v))}" for k, v in sorted(versions.items()))
    lines.append(f"- Versions: report written by nvmkit {__version__}, Python {platform.python_version()} on "
                 f"{platform.platform()}; rows computed with {shown or 'unknown versions'}")
    seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None})
    lines.append(f"- Seed: {', '.join(map(str, seeds)) or 'unknown'} (every training, programming-noise and "
                 "test-noise draw derives from it; the same command gives the same numbers)")
    data = {}
    for r in rows:
        d = r.get("dataset_info") or {}
        source = d.get("source")
        if isinstance(source, str) and os.path.isabs(source):
            source = shown_path(source)
        key = (d.get("name") or r.get("dataset"), bool(d.get("sample")), source)
        data[key] = (d.get("n_train"), d.get("n_test"))
    for (name, sample, source), (n_train, n_test) in sorted(data.items(), key=str):
        kind = "embedded sample" if sample else "full data"
        lines.append(f"- Data: {name}: {kind}, {n_train} training / {n_test} test images, from {source}")
    training: dict[str, set] = {}
    for r in rows:
        t = (r.get("config") or {}).get("training") or {}
        training.setdefault(r.get("network"), set()).add(
            f"{t.get('optimizer')} lr {t.get('learning_rate')}, {t.get('epochs')} epochs, batch {t.get('batch_size')}")
    if training:
        lines.append("- Training (as resolved from the networks' defaults and the study): " + "; ".join(
            f"{ss.NET_LABEL.get(n, n)}: {' / '.join(sorted(v))}" for n, v in sorted(training.items(), key=str)))
    if meta.get("points") is not None:
        db = shown_path(meta["db"]) if meta.get("db") else "?"
        lines.append(f"- Points: {meta['points']} ({meta.get('computed', 0)} computed by this run, "
                     f"{meta.get('reused', 0)} reused from the results database `{db}`); "
                     f"rows per section kind: " + ", ".join(f"{k} {len(v)}" for k, v in by_kind.items()))
    compute = sum(r.get("wall_time_s") or 0.0 for r in rows)
    if meta.get("wall_time_s") is not None:
        lines.append(f"- Wall time: {duration(meta['wall_time_s'])} for this command"
                     + (f", started {meta['started_at'].isoformat(timespec='seconds')}" if meta.get("started_at") else "")
                     + f"; the rows' own run times add up to {duration(compute)} (one worker's view, "
                       "including training where a point trained its model)")
    workers = meta.get("workers")
    if meta.get("executor"):
        where = (f"Dask scheduler {meta.get('scheduler')}" if meta["executor"] == "dask" else
                 f"{workers if workers is not None else os.cpu_count()} local worker process(es)")
        lines.append(f"- Machine: {os.cpu_count()} CPU cores, {where}; load average (1, 5, 15 min) "
                     f"{_fmt_load(meta.get('load_before'))} before and {_fmt_load(meta.get('load_after'))} after "
                     "(other work on the machine slows the wall time, not the numbers)")
    lines.append(f"- Model cache: {_cache_text()}: trained models are read from it when there and written to it "
                 "otherwise")
    if meta.get("refused"):
        lines.append(f"- {len(meta['refused'])} points lie beyond the IR-drop model's range (section 5: 'beyond'); "
                     "they are refused, not failed, and are tried again by a rerun (cheaply: their models are cached)")
    if meta.get("failed"):
        lines.append(f"- **{len(meta['failed'])} points failed** (their cells are missing; rerun the command to "
                     "retry them): " + "; ".join(f"{label}: {err}" for label, err in meta["failed"][:5]))
    files = sorted(p.relative_to(out).as_posix() for paths in figures.values() for p in paths)
    if files:
        lines.append("- Figures (PNG and SVG): " + ", ".join(f"`{f}`" for f in files if f.endswith(".png")))
    lines.append("- Files: `report.md` (this), `results.md` (Result 1 and the verdicts for docs/results.md), "
                 "`summary.json`")
    return lines


def _results_snippet(by_kind, verdicts, meta, section_notes=None) -> str:
    r1 = by_kind["result1"]
    lines = ["<!-- generated by nvmkit reproduce: paste into docs/results.md -->",
             "## Result 1, regenerated", ""]
    if meta.get("command"):
        lines += [f"Regenerated with `{meta['command']}`"
                  + (f" in {duration(meta['wall_time_s'])}" if meta.get("wall_time_s") is not None else "")
                  + "; the full report (sweeps, plots, energy, provenance) is `report.md` beside this file.", ""]
    notes = []
    for r in r1[:1]:
        notes.append(f"External noise: {ss.external_label(r1)} (see the report for why this stands for the seed's "
                     f"\"External\" column); internal noise: {ss.internal_label(r1)}.")
    lines += notes + ([""] if notes else [])
    lines += [_result1_block(r1), "", "## The seed's claims in our numbers", "", ss.render_verdicts(verdicts), ""]
    if by_kind.get("tile_size") or meta.get("refused"):
        lines += _tile_block(by_kind, meta, (section_notes or {}).get("tile_size"), None, None,
                             "## Tile size against wire resistance (IR drop)")
    if by_kind.get("training"):
        lines += _training_block(by_kind, (section_notes or {}).get("training"), None, None,
                                 "## Which training survives which device", sub="###")
    if meta.get("in_place"):
        lines += _in_place_block(meta, None, None, "## Learning in place")
    return "\n".join(lines).rstrip() + "\n"


def _cache_text() -> str:
    """Where the model cache is, without an absolute path of this machine (a report is shared)."""
    from nvmkit.workflow.training import CACHE_ENV, default_cache_dir

    if os.environ.get(CACHE_ENV, "").strip():
        return f"the folder named by `${CACHE_ENV}`"
    try:
        where = "~/" + default_cache_dir().relative_to(Path.home()).as_posix()
    except ValueError:  # pragma: no cover - the default lies under the home folder
        where = "the default folder"
    return f"`{where}` (the default; `{CACHE_ENV}` moves it)"


def _fmt_load(load) -> str:
    return "unknown" if not load else ", ".join(f"{x:.2f}" for x in load)


__all__ = ["Plan", "Reproduction", "command_line", "plan_reproduction", "reproduce", "write_report"]
