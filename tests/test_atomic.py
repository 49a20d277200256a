"""Files nvmkit writes get the normal mode and appear whole or not at all (nvmkit.core.atomic).

tempfile.mkstemp creates 0o600 files; a result, device table or figure renamed from one was
unreadable to the group and to other users (a shared cache, a web server serving plots)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from nvmkit.core.atomic import atomic_write, current_umask

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_(mask):
        os.umask(mask)

    yield set_
    os.umask(saved)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
@pytest.mark.parametrize("kind", ["bytes", "str", "callable"])
def test_mode_follows_the_umask(tmp_path, umask, mask, expected, kind):
    """Bug: the file kept mkstemp's 0o600 (or a hard-coded 0o644 whatever the umask)."""
    umask(mask)
    assert current_umask() == mask
    data = {"bytes": b"x\n", "str": "x\n", "callable": lambda tmp: tmp.write_bytes(b"x\n")}[kind]
    path = atomic_write(tmp_path / "out.txt", data)
    assert path.read_bytes() == b"x\n" and mode(path) == expected
    assert os.listdir(tmp_path) == ["out.txt"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    """Bug: a writer that fails half-way left a truncated file or a hidden .out.txt.XXXX temp."""
    old = tmp_path / "out.txt"
    old.write_text("old\n")

    def half_then_fail(tmp: Path):
        tmp.write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(old, half_then_fail)
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "new.txt", half_then_fail)
    assert old.read_text() == "old\n" and os.listdir(tmp_path) == ["out.txt"]


def test_results_tables_figures_and_plots_are_0o644_under_umask_022(tmp_path, umask):
    """Bug: results (write_json_atomic), device tables and the fit figure (fit_device), and sweep
    plots were written 0o600 through mkstemp."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nvmkit.fit import fit_device
    from nvmkit.sweeps import plots
    from nvmkit.workflow.report import write_json_atomic

    umask(0o022)
    write_json_atomic(tmp_path / "result.json", {"config": {}, "accuracy": {}, "seed": 0, "dataset": {}})
    fit_device(ROOT / "examples" / "measurements" / "sonos_cells.csv", tmp_path / "cell.toml",
               plot=tmp_path / "cell.png")
    fig = plt.figure()
    try:
        written = plots._save(fig, tmp_path / "sweep")
    finally:
        plt.close(fig)
    assert sorted(p.name for p in written) == ["sweep.png", "sweep.svg"]
    files = sorted(os.listdir(tmp_path))
    assert files == ["cell.png", "cell.toml", "result.json", "sweep.png", "sweep.svg"], files
    assert {f: mode(tmp_path / f) for f in files} == {f: 0o644 for f in files}
    assert json.loads((tmp_path / "result.json").read_text())["seed"] == 0
    assert (tmp_path / "sweep.svg").read_bytes().lstrip().startswith(b"<?xml")  # the format of the suffix


def test_a_failed_result_write_leaves_nothing(tmp_path):
    """Bug: a value JSON cannot hold (NaN) left an empty result file or a temp behind."""
    from nvmkit.workflow.report import write_json_atomic

    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "result.json", {"accuracy": float("nan")})
    assert os.listdir(tmp_path) == []
