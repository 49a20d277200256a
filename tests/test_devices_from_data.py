"""docs/devices-from-data.md runs as written, and `nvmkit devices fit` reports bad files in one line."""

import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nvmkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "devices-from-data.md"
runner = CliRunner()


def walkthrough() -> list[str]:
    block = re.search(r"<!-- ci:walkthrough -->\n```bash\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    assert block, "docs/devices-from-data.md lost its ci:walkthrough block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """Fails if any of the three commands breaks: the fit, the table device's spec, or a run on it."""
    commands = walkthrough()
    assert len(commands) == 3 and all(c.startswith("nvmkit ") for c in commands), commands
    (tmp_path / "examples").mkdir()
    shutil.copytree(ROOT / "examples" / "measurements", tmp_path / "examples" / "measurements")
    monkeypatch.chdir(tmp_path)  # the doc's paths are relative to where the user stands
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "models"))  # never a developer's cache
    outputs = []
    for command in commands:
        res = invoke(*shlex.split(command)[1:])
        assert res.exit_code == 0, (command, res.output)
        outputs.append(res.output)
    fit, show, run = outputs
    assert (tmp_path / "mycell.toml").is_file() and (tmp_path / "mycell.png").stat().st_size > 10_000
    assert "programming sigma" in fit and "wrote table: mycell.toml" in fit
    assert "50 - 1200 nA" in show  # the range of the example's targets
    for scenario in ("digital", "internal", "external", "both"):
        assert re.search(rf"{scenario}\b.*\d+\.\d+%", run), run
    assert "table" in run


def test_fit_into_an_output_folder(tmp_path):
    res = invoke("devices", "fit", str(ROOT / "examples" / "measurements" / "sonos_cells.csv"), "-o", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.toml", "fit.png"]


GOOD = "# units: uS\ntarget,measured,cell,time\n60,61.2,a,0\n60,60.1,a,1\n200,198.5,b,0\n200,199.0,b,1\n"
BAD = [
    (GOOD.replace("measured", "reading"), "missing column 'measured'"),
    (GOOD.replace("60.1", "6O.1"), "line 4, column 'measured'"),
    (GOOD.replace("198.5", "-198.5"), "line 5, column 'measured'"),
    (GOOD.replace("200,", "60,"), "column 'target': only one target level"),
    (GOOD.replace("b,0", "b,2"), "line 5, column 'time'"),
]


@pytest.mark.parametrize("text,needle", BAD, ids=["missing column", "non-numeric", "negative", "single target",
                                                  "no time-0 reference"])
def test_bad_file_exits_2_with_one_line_and_writes_nothing(text, needle, tmp_path):
    """Fails if a bad file gives a traceback, a zero exit, several lines, or touches the output."""
    (tmp_path / "m.csv").write_text(text)
    out = tmp_path / "cell.toml"
    out.write_text("previous = 1\n")  # an earlier device file must survive a failed fit
    res = invoke("devices", "fit", str(tmp_path / "m.csv"), "-o", str(out), "--plot", str(tmp_path / "f.png"))
    assert res.exit_code == 2, res.output
    text_out = res.output.strip()
    assert needle in text_out and "Traceback" not in text_out and len(text_out.splitlines()) == 1, text_out
    assert out.read_text() == "previous = 1\n" and not (tmp_path / "f.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.toml", "m.csv"]  # no temp file left


def test_user_text_is_escaped(tmp_path):
    """A file name with Rich markup is printed as typed, not interpreted (or crashing)."""
    src = tmp_path / "[bold]cells[red].csv"
    shutil.copy(ROOT / "examples" / "measurements" / "sonos_cells.csv", src)
    res = invoke("devices", "fit", str(src))
    assert res.exit_code == 0, res.output
    assert "[bold]cells[red].csv" in res.output


# -- outputs: nobody's file overwritten, the figure's format checked before the fit -----------------
CSV = ROOT / "examples" / "measurements" / "sonos_cells.csv"


def _refused(res, needle):
    text = res.output.strip()
    assert res.exit_code == 2, res.output
    assert needle in text and "Traceback" not in text and len(text.splitlines()) == 1, text


@pytest.fixture
def no_fit(monkeypatch):
    """A refusal must come before the fit: any fit fails the test."""
    import nvmkit.fit.api as api

    def estimate(*args, **kwargs):
        raise AssertionError("the fit started although its output was refused")

    monkeypatch.setattr(api, "estimate", estimate)


def test_fit_refuses_to_overwrite_a_file_that_is_not_a_device_table(tmp_path, no_fit):
    """Bug: `-o keep.toml` silently replaced the user's TOML (e.g. a run configuration)."""
    keep = tmp_path / "keep.toml"
    keep.write_text("trials = 3\n")
    _refused(invoke("devices", "fit", str(CSV), "-o", str(keep)), "is not an nvmkit device table")
    assert keep.read_text() == "trials = 3\n" and sorted(os.listdir(tmp_path)) == ["keep.toml"]


def test_fit_replaces_its_own_table_and_folder(tmp_path):
    """Bug (the other way): a rerun into the same table or folder was refused."""
    table = tmp_path / "cell.toml"
    for _ in range(2):
        assert invoke("devices", "fit", str(CSV), "-o", str(table)).exit_code == 0
    assert table.read_text().startswith("# nvmkit device table")
    folder = tmp_path / "fit"
    folder.mkdir()
    for _ in range(2):
        res = invoke("devices", "fit", str(CSV), "-o", str(folder))
        assert res.exit_code == 0, res.output
    assert sorted(os.listdir(folder)) == ["device.toml", "fit.png"]


def test_fit_refuses_an_existing_figure(tmp_path, no_fit):
    """Bug: `--plot photo.png` (or `-o DIR` holding someone's fit.png) replaced the image."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG not ours")
    _refused(invoke("devices", "fit", str(CSV), "-o", str(tmp_path / "cell.toml"), "--plot", str(photo)),
             f"{photo} exists")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "fit.png").write_bytes(b"\x89PNG not ours")  # no nvmkit device.toml beside it
    _refused(invoke("devices", "fit", str(CSV), "-o", str(folder)), "fit.png exists")
    assert photo.read_bytes() == b"\x89PNG not ours" and (folder / "fit.png").read_bytes() == b"\x89PNG not ours"
    assert sorted(os.listdir(tmp_path)) == ["out", "photo.png"] and os.listdir(folder) == ["fit.png"]


def test_fit_refuses_an_unknown_figure_format_before_fitting(tmp_path, no_fit):
    """Bug: `--plot fig.pdff` fitted, then died in matplotlib with a 55-line traceback."""
    res = invoke("devices", "fit", str(CSV), "-o", str(tmp_path / "cell.toml"), "--plot", str(tmp_path / "fig.pdff"))
    _refused(res, "'.pdff' is not a figure format")
    assert ".png" in res.output and ".pdf" in res.output and os.listdir(tmp_path) == []


def test_a_failed_figure_leaves_the_table_and_no_temp(tmp_path, monkeypatch):
    """Bug: the figure was written first; a table write that then failed left an orphan figure.
    Now the table comes first and a failing figure leaves neither it nor a temp file."""
    import matplotlib.figure

    from nvmkit.fit import fit_device

    def savefig(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    with pytest.raises(OSError):
        fit_device(CSV, tmp_path / "cell.toml", plot=tmp_path / "cell.png")
    assert os.listdir(tmp_path) == ["cell.toml"]


def test_the_figure_draws_exactly_the_fit(tmp_path):
    """The measured points are read back from the figure's artists and compared with the fit.

    Fails if a panel drops, swaps or shifts a target, draws another time's values, or plots the
    smoothed table instead of the per-target estimates."""
    import matplotlib.pyplot as plt

    from nvmkit.fit import fit_device
    from nvmkit.fit.figure import draw_fit

    fit = fit_device(CSV)
    fig = draw_fit(fit)
    try:
        spread, read, drift = fig.axes[:3]

        def points(ax):
            return [tuple(np.asarray(a, float) for a in c.lines[0].get_data()) for c in ax.containers]

        assert len(fit.times) > 1 and len(points(spread)) == len(points(drift)) == len(fit.times)
        for j, ((xs, ys), (xd, yd)) in enumerate(zip(points(spread), points(drift))):
            np.testing.assert_array_equal(xs, fit.targets)
            np.testing.assert_array_equal(ys, fit.prog_direct[j])
            np.testing.assert_array_equal(xd, fit.targets)
            np.testing.assert_array_equal(yd, fit.shift[j])
        (xr, yr), = points(read)
        ok = np.isfinite(fit.read_direct)
        np.testing.assert_array_equal(xr, fit.targets[ok])
        np.testing.assert_array_equal(yr, fit.read_direct[ok])
    finally:
        plt.close(fig)


def test_show_of_a_table_file_does_not_cite_the_default_table(tmp_path):
    """Fails if `devices show table:file=...` lists the bundled SONOS default table as
    '(no file given)' while a file was given; without a file it must still be cited."""
    res = invoke("devices", "fit", str(ROOT / "examples" / "measurements" / "sonos_cells.csv"), "-o", str(tmp_path))
    assert res.exit_code == 0, res.output
    given = invoke("devices", "show", f"table:file={tmp_path / 'device.toml'}")
    assert given.exit_code == 0, given.output
    assert "no file given" not in given.output and "default_table" not in given.output, given.output
    default = invoke("devices", "show", "table")
    assert default.exit_code == 0 and "default_table" in default.output, default.output
