"""The example third-party package, examples/nvmkit-pcm, works as a real installed distribution:
its plugins appear under its distribution name, pass conformance, run in ``nvmkit run`` and in a
drift sweep, its own test suite passes, and removing it leaves no trace.

If nvmkit-pcm is not installed in this environment, it is pip-installed (offline, no dependencies)
into a temporary folder that is put on ``sys.path`` only while a test needs it, exactly what
``pip install ./examples/nvmkit-pcm`` would give, without touching the environment.
"""

import ast
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nvmkit
from nvmkit import check_plugin, get_registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "nvmkit-pcm"
DIST = "nvmkit-pcm"
PLUGINS = (("device", "pcm"), ("noise", "poisson"))


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DIST)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def pcm_site(tmp_path_factory):
    """A folder holding nvmkit-pcm as pip installs it; None when it is installed already."""
    if _installed():
        yield None
        return
    # build from a copy so that no build artefacts land in the source tree
    src = tmp_path_factory.mktemp("pcm-src") / "nvmkit-pcm"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = tmp_path_factory.mktemp("pcm-site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--no-build-isolation", "--disable-pip-version-check", "-q",
                           "--target", str(site), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:  # no setuptools to build with offline: lay out what pip would
        _install_by_hand(src, site)
    yield site


def _install_by_hand(src: Path, site: Path) -> None:
    """The package and a ``.dist-info`` with the entry points of its pyproject.toml."""
    import tomllib

    meta = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    shutil.copytree(src / "src" / "nvmkit_pcm", site / "nvmkit_pcm", dirs_exist_ok=True)
    info = site / f"nvmkit_pcm-{meta['version']}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    eps = meta["entry-points"]["nvmkit"]
    (info / "entry_points.txt").write_text("[nvmkit]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))


def _forget_modules():
    for mod in [m for m in sys.modules if m == "nvmkit_pcm" or m.startswith("nvmkit_pcm.")]:
        del sys.modules[mod]


@pytest.fixture
def pcm_registry(pcm_site, monkeypatch):
    if pcm_site is not None:
        monkeypatch.syspath_prepend(str(pcm_site))
        importlib.invalidate_caches()
    yield get_registry(reload=True)
    if pcm_site is not None:
        monkeypatch.undo()
        _forget_modules()
        importlib.invalidate_caches()
    get_registry(reload=True)  # later tests must not see the example


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """One model cache for the run and the sweep below: they train the same small MLP once."""
    return tmp_path_factory.mktemp("models")


def _env(pcm_site, tmp_path) -> dict:
    env = dict(os.environ, NVMKIT_CACHE_DIR=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="2")
    if pcm_site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pcm_site), env.get("PYTHONPATH")]))
    return env


def test_plugins_appear_under_the_distribution_name(pcm_registry):
    version = importlib.metadata.distribution(DIST).version
    for kind, name in PLUGINS:
        info = pcm_registry.info(kind, name)
        assert info.source == f"{DIST} {version}"
        assert info.description
    assert not pcm_registry.load_errors


@pytest.mark.parametrize("kind,name", PLUGINS)
def test_plugins_pass_conformance(pcm_registry, kind, name):
    results = check_plugin(kind, name, pcm_registry)
    failed = [f"{r.check}: {r.detail}" for r in results if r.failed]
    assert not failed, failed


def test_example_imports_only_the_public_api():
    bad = []
    for path in sorted((EXAMPLE / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "nvmkit":
                private = [a.name for a in node.names if node.module != "nvmkit" or a.name not in nvmkit.__all__]
                if private:
                    bad.append(f"{path.name}: from {node.module} import {', '.join(private)}")
            elif isinstance(node, ast.Import):
                bad += [f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("nvmkit.")]
    assert not bad, "the example must use only names exported by nvmkit: " + "; ".join(bad)


def test_example_test_suite_passes(pcm_site, tmp_path):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark", "tests"]
    proc = subprocess.run(cmd, cwd=EXAMPLE, env=_env(pcm_site, tmp_path), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_nvmkit_run_with_the_pcm_device_and_poisson_noise(pcm_registry, model_cache, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nvmkit.cli import app

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(model_cache))
    out = tmp_path / "run.json"
    args = ["run", "--device", "pcm", "--noise", "poisson:0.1", "--network", "mlp",
            "--epochs", "1", "--trials", "2", "--source", "sample",
            "--set", "network.params.hidden=[32]", "--set", "crossbar.nonideal.drift_time=3600.0",
            "--set", 'scenarios=["internal", "both"]', "-o", str(out)]
    proc = CliRunner().invoke(app, args)
    assert proc.exit_code == 0, proc.output
    result = json.loads(out.read_text())
    assert result["config"]["device"]["name"] == "pcm"
    assert result["config"]["noise"]["name"] == "poisson"
    assert result["config"]["crossbar"]["nonideal"]["drift_time"] == 3600.0
    for scenario in ("internal", "both"):
        assert 0.5 < result["accuracy"][scenario]["mean"] <= 1.0, result["accuracy"]
    assert result["energy"]["total_J"] > 0


def test_drift_sweep_runs(pcm_registry, model_cache, tmp_path, monkeypatch):
    from nvmkit.sweeps.experiment import load_experiment
    from nvmkit.sweeps.resultsdb import ResultsDB
    from nvmkit.sweeps.sweep import run_sweep

    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(model_cache))
    exp = load_experiment(EXAMPLE / "drift-sweep.toml")
    assert exp.grid["crossbar.nonideal.drift_time"][0] == 0.0
    exp.grid["crossbar.nonideal.drift_time"] = [0.0, 2592000.0]  # now and a month: keep it short
    exp.base.update({"trials": 2, "training": {"epochs": 1}, "energy": None})
    exp.base["network"] = {"name": "mlp", "params": {"hidden": [32]}}
    points = exp.points()
    assert [p.config["crossbar"]["nonideal"]["drift_time"] for p in points] == [0.0, 2592000.0]
    assert len({p.model_key for p in points}) == 1  # drift is test-time only: one training
    with ResultsDB(tmp_path / "results.db") as db:
        summary = run_sweep(points, db, workers=1)
        assert not summary.failed, [o.error for o in summary.failed]
        rows = db.rows()
    assert len(rows) == 2 and {r["device"] for r in rows} == {"pcm"}
    assert all(0.5 < r["acc_internal_mean"] <= 1.0 for r in rows), rows


def test_removing_the_package_removes_its_plugins_cleanly(pcm_site, monkeypatch):
    if pcm_site is None:
        pytest.skip(f"{DIST} is installed in this environment; `pip uninstall -y {DIST}` removes it")
    monkeypatch.syspath_prepend(str(pcm_site))
    importlib.invalidate_caches()
    assert "pcm" in get_registry(reload=True).names("device")
    monkeypatch.undo()  # the folder leaves sys.path: what `pip uninstall` does to the metadata
    _forget_modules()
    importlib.invalidate_caches()
    reg = get_registry(reload=True)
    assert "pcm" not in reg.names("device") and "poisson" not in reg.names("noise")
    assert not reg.load_errors
