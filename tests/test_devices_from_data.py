"""docs/devices-from-data.md runs as written, and `nvmkit devices fit` reports bad files in one line."""

import re
import shlex
import shutil
from pathlib import Path

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
