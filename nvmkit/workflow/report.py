"""Run results: the record a run leaves (JSON) and how the CLI shows it (rich)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from nvmkit.core.atomic import atomic_write
from nvmkit.core.errors import ConfigError


@dataclass
class RunResult:
    config: dict
    seed: int
    dataset: dict
    accuracy: dict  # scenario -> {mean, std, ci95, per_trial, trials}
    energy: dict | None
    versions: dict
    wall_time_s: float
    #: what the run measured, the basis of sweep time estimates: ``train_s`` (seconds in training,
    #: or loading the cached model), ``train_epochs`` (epochs trained now; 0 = loaded from the
    #: cache), ``n_train``, ``evaluate_s`` (deployment, Monte Carlo and energy), ``test_images``
    #: (images evaluated, all scenarios and trials)
    timing: dict | None = None

    @property
    def label(self) -> str:
        return "sample" if self.dataset.get("sample") else "full"

    def to_dict(self) -> dict:
        # JSON has no NaN: an undefined figure (the 95% CI of a single trial) is written as null
        d = _nan_to_none(asdict(self))
        d["data_label"] = self.label
        d["nvmkit_version"] = self.versions.get("nvmkit")
        return d

    def write_json(self, path: str | os.PathLike) -> None:
        from nvmkit.workflow.config import rebase_paths

        data = self.to_dict()
        # paths relative to the result's own folder: `nvmkit run result.json` works from any folder
        data["config"] = rebase_paths(data["config"], target=Path(path).parent)
        write_json_atomic(path, data)


def check_output_path(path, *, inputs=()) -> Path:
    """Refuse an output path that cannot be written, before any work is done.

    Refused: a folder; a file in a folder that does not exist or cannot be written; one of ``inputs``
    (the configuration file the run reads); an existing file that is not an nvmkit result, which
    would be a user's file overwritten with JSON. An nvmkit result is replaced (a rerun).
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"output {path} is a folder; give a file name, e.g. {path / 'result.json'}")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    for source in inputs:
        if source is not None and path.exists() and Path(source).exists() and path.samefile(source):
            # suggest a name next to the input that is not the input (and is a .json, as results are)
            other = path.with_name(f"{path.stem}-again.json" if path.suffix == ".json" else f"{path.stem}-result.json")
            raise ConfigError(f"output {path} is the configuration file this run reads; give another "
                              f"file name, e.g. -o {other}")
    if path.exists() and not _is_result_file(path):
        raise ConfigError(f"{path} exists and is not an nvmkit result; nvmkit will not overwrite it: "
                          "give another file name or delete it first")
    check_writable_folder(path.parent, f"cannot write {path}")
    return path


def check_writable_folder(folder, what: str) -> Path:
    """Refuse a folder in which a file cannot be created (read-only, no permission, full).

    The probe creates and removes a hidden temporary file: permission bits alone do not say whether
    a write will succeed (root ignores them; a read-only mount does not)."""
    folder = Path(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".nvmkit-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{what}: folder {folder} cannot be written ({exc.strerror or exc}); "
                          "choose a writable folder") from None
    return folder


#: the keys every RunResult JSON holds (see RunResult.to_dict)
_RESULT_KEYS = {"config", "accuracy", "seed", "dataset"}


def _is_result_file(path: Path) -> bool:
    """Whether ``path`` holds a result nvmkit wrote (a JSON object with a RunResult's keys)."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(64 * 1024 * 1024))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and _RESULT_KEYS <= set(data)


def _nan_to_none(v):
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nan_to_none(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v


def write_json_atomic(path, data) -> None:
    """Write JSON so that a reader never sees a half-written file (see nvmkit.core.atomic)."""
    path = check_output_path(path)
    atomic_write(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


class NullReporter:
    """Progress sink for API use: does nothing."""

    @contextlib.contextmanager
    def step(self, description: str):
        yield

    def start_task(self, description: str, total: int | None):
        return lambda advance=1, **info: None


def progress_bar(console, eta: bool = True):
    """The progress bar of every long command: spinner, description, bar, count, elapsed (and eta)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    if eta:
        columns += [TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, console=console)


class RichReporter(NullReporter):
    """Progress bars and spinners for the CLI."""

    def __init__(self, console):
        self.progress = progress_bar(console, eta=False)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    @contextlib.contextmanager
    def step(self, description: str):
        from rich.markup import escape

        # descriptions carry the user's names (a model's, a file's): text, never markup
        task = self.progress.add_task(escape(description), total=1)
        yield
        self.progress.update(task, completed=1)

    def start_task(self, description: str, total: int | None):
        from rich.markup import escape

        task = self.progress.add_task(escape(description), total=total)

        def advance(advance=1, **info):
            self.progress.update(task, advance=advance)

        return advance


def print_result(console, result: RunResult) -> None:
    """The result as a rich table. Names and specs are the user's (or a plugin's) text: escaped, so
    that brackets in them are not read as markup."""
    from rich.markup import escape
    from rich.table import Table

    cfg = result.config
    from nvmkit.workflow.config import network_label

    net = network_label(cfg)
    kind = "data file" if result.dataset.get("sha256") else f"{result.label} data"
    # a data file of feature vectors holds samples, not images
    things = "samples" if len(result.dataset.get("sample_shape") or (0, 0)) == 1 else "images"
    title = (f"{net} on {cfg['device']['name']} | {result.dataset['name']} "
             f"({kind}, {result.dataset['n_test']} test {things}) | seed {result.seed}")
    table = Table(title=escape(title))
    for col in ("scenario", "accuracy (mean ± std)", "95% CI", "trials"):
        table.add_column(col)
    noise = cfg.get("noise")
    noise_txt = f"{noise['name']}:{list(noise['params'].values())[0]}" if isinstance(noise, dict) else "none"
    labels = {"digital": "digital (Keras, clean)", "internal": "internal (device)",
              "external": f"external ({escape(noise_txt)})", "both": "both"}
    for scenario, acc in result.accuracy.items():
        lo, hi = acc["ci95"]
        label = labels.get(scenario, escape(scenario))
        if acc.get("evaluated"):  # after in-place training: the chip that learned, not a fresh one
            label += ", trained chip"
        table.add_row(label, f"{100 * acc['mean']:.2f}% ± {100 * acc['std']:.2f}",
                      f"[{100 * lo:.2f}, {100 * hi:.2f}]", str(acc["trials"]))
    console.print(table)
    if result.energy:
        e = result.energy
        if e.get("physical", True):
            parts = escape(", ".join(f"{k} {v * 1e9:.3g} nJ" for k, v in e["by_component_J"].items() if v))
            console.print(f"energy per inference ({escape(e['estimator'])}): [bold]{e['total_J'] * 1e9:.4g} nJ[/] "
                          f"({parts})")
        else:  # a figure from unitless conductances would read as joules: print none
            console.print(f"energy per inference ({escape(e['estimator'])}): not physical for device "
                          f"'{escape(str(e.get('device')))}', whose conductances have no unit; choose a device with "
                          "units (e.g. reram, sonos) or give the estimator energy_per_mac", highlight=False)
    if result.label == "sample":
        console.print("[yellow]computed on the embedded sample; pass --data-dir for the full data set[/]")
