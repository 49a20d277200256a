"""No absolute path of the machine that made them in the code, the docs or a generated report.

The forbidden prefixes come from this test's own environment (the home folder, the folder that holds
the repository, the temporary folder), so the test means the same on any machine and fails on a
path that leaked from this one."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from nvmkit.reproduction.reproduce import reproduce, shown_path

REPO = Path(__file__).resolve().parents[1]
TEXT = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".json", ".yml", ".yaml", ".svg", ".html", ".sh"}
# the same on every machine, so no leak: Keras's own fallback cache when its home is not writable
GENERIC = ("/tmp/.keras",)


def _prefixes() -> list[str]:
    found = set()
    for p in (Path.home(), REPO.parent, Path(tempfile.gettempdir())):
        for q in {p, p.resolve()}:
            if len(q.parts) > 1:  # never "/" itself
                found.add(q.as_posix().rstrip("/") + "/")
    return sorted(found)


def _repo_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split("\n")
        files = [REPO / f for f in out if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the package's own folders
        files = [p for d in ("nvmkit", "plugins", "docs", "tests", "examples") for p in (REPO / d).rglob("*")]
    return [f for f in files if f.suffix in TEXT and f.is_file()]


def _leaks(files, root: Path) -> list[str]:
    prefixes = _prefixes()
    bad = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for g in GENERIC:
                line = line.replace(g, "")
            bad += [f"{f.relative_to(root)}:{n}: {p}" for p in prefixes if p in line]
    return bad


def test_the_checker_sees_a_path_of_this_machine(tmp_path):
    """A path in the home folder and one in the temporary folder are each seen (a file apiece: the
    prefixes may nest, as a home folder under /tmp does, so a line can match several), and a
    relative path is not."""
    home, temp, clean = (tmp_path / n for n in ("home.md", "temp.md", "clean.md"))
    home.write_text(f"see {Path.home() / 'notes.txt'}\n")
    temp.write_text(f"see {tmp_path / 'x'}\n")
    clean.write_text("see docs/results.md and ../shared/datasets\n")
    assert _leaks([home], tmp_path) and _leaks([temp], tmp_path)
    assert _leaks([clean], tmp_path) == []


def test_no_machine_path_in_code_or_docs():
    files = _repo_files()
    assert any(f.name == "reproduce.py" for f in files) and any(f.suffix == ".md" for f in files)
    assert _leaks(files, REPO) == []


def test_no_machine_path_in_a_generated_report(tmp_path, monkeypatch):
    """A quick report written the usual way (a relative --out, from the folder it is run in), with
    the default model cache: its text, summary and figures name no folder of this machine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NVMKIT_CACHE_DIR", raising=False)
    result = reproduce("report", quick=True, workers=1, runner="sweep_fake:run", sections=["time_steps"])
    files = [p for p in (tmp_path / "report").rglob("*") if p.suffix in TEXT]
    assert {"report.md", "results.md", "summary.json"} <= {f.name for f in files}
    assert _leaks(files, tmp_path) == []
    assert "Model cache: `~/" in (tmp_path / "report" / "report.md").read_text()
    assert result.db == Path("report/results.db")


@pytest.mark.parametrize("inside", [True, False])
def test_report_paths_are_shown_relative_to_the_working_folder(tmp_path, monkeypatch, inside):
    monkeypatch.chdir(tmp_path)
    path = (tmp_path if inside else Path(os.sep)) / "out" / "r"
    assert shown_path(path) == ("out/r" if inside else str(path))
    assert shown_path("rel/x") == "rel/x"


def test_report_shows_a_data_folder_beside_the_working_one_relative(tmp_path, monkeypatch):
    """`--data-dir ../shared/datasets` is recorded absolute; the report's provenance must show it
    relative to the working folder (a shown absolute name fails), one line per folder however it
    was spelt (an unnormalised ``work/../shared`` would be a second line)."""
    from nvmkit.reproduction import reproduce as rep

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rows = [{"dataset": "mnist", "seed": 1,
             "dataset_info": {"name": "mnist", "sample": False, "source": src,
                              "n_train": 10, "n_test": 5}}
            for src in (str(tmp_path / "shared" / "mnist.npz"),
                        str(work / ".." / "shared" / "mnist.npz"))]
    lines = rep._provenance({"result1": rows}, {}, {}, work)
    data = [ln for ln in lines if ln.startswith("- Data:")]
    assert data == ["- Data: mnist: full data, 10 training / 5 test images, from ../shared/mnist.npz"]
    assert str(tmp_path) not in "\n".join(lines)
