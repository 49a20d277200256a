"""The script in docs/api.md runs exactly as written, on the embedded sample."""

import importlib.util
import re
import runpy
import sys
from pathlib import Path


DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
MODULES = ("nvmkit.workflow.data", "nvmkit.engine.analog", "nvmkit.engine.evaluate", "nvmkit.workflow.pipeline", "nvmkit.workflow.training")
PLUGINS = (("network", "mlp"), ("device", "reram"), ("noise", "gaussian"), ("energy", "crossbar"))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _missing() -> list[str]:
    from nvmkit import get_registry

    missing = [m for m in MODULES if importlib.util.find_spec(m) is None]
    reg = get_registry()
    missing += [f"{kind} plugin '{name}'" for kind, name in PLUGINS if name not in reg.names(kind)]
    return missing


def test_api_doc_has_one_script():
    assert len(python_blocks(DOC.read_text())) == 1


def test_api_script_runs(tmp_path, monkeypatch, capsys):
    assert not _missing(), "docs/api.md uses modules or plugins that do not exist"
    script = tmp_path / "api_example.py"
    script.write_text(python_blocks(DOC.read_text())[0])
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(tmp_path / "models"))  # never a developer's cache
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    digital = float(re.search(r"digital accuracy: ([\d.]+)", out).group(1))
    assert 0.8 < digital <= 1.0, out  # 2 epochs of a 784-128-10 MLP on the 4,000-image sample: ~0.90
    assert re.search(r"ReRAM \+ Gaussian test-set noise: [\d.]+% \+- [\d.]+% \(5 trials\)", out), out
    assert re.search(r"energy per inference: [\d.e+-]+ nJ \(vmm", out), out
    for scenario in ("digital", "internal", "external", "both"):
        assert re.search(rf"^\s*{scenario}: 0\.\d+$", out, flags=re.M), out
    assert "(sample data)" in out


def test_plugins_doc_device_and_its_tests_work(monkeypatch):
    """docs/plugins.md: the tutorial device passes conformance and the tutorial's own tests pass."""
    import types

    import numpy as np

    from nvmkit import check_class

    device_src, tests_src = python_blocks((DOC.parent / "plugins.md").read_text())
    package = types.ModuleType("nvmkit_pcmlite")
    package.__path__ = []
    module = types.ModuleType("nvmkit_pcmlite.device")
    exec(compile(device_src, "plugins.md:device", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "nvmkit_pcmlite", package)
    monkeypatch.setitem(sys.modules, "nvmkit_pcmlite.device", module)

    failed = [r for r in check_class(module.PCMLite) if r.failed]
    assert not failed, failed
    assert module.PCMLite().programming_sigma(np.zeros((2, 3), np.float32)).shape == (2, 3)

    tests = {}
    exec(compile(tests_src, "plugins.md:tests", "exec"), tests)
    tests["test_conformance"]()
    for g, sigma in ((0.0, 0.2635), (25.0, 1.0554)):
        tests["test_programming_error_is_the_published_fit"](g, sigma)


def test_architecture_map_matches_the_package():
    """docs/architecture.md names real modules, and every module of nvmkit/ has a row."""
    import fnmatch

    text = (DOC.parent / "architecture.md").read_text()
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    named = {n for row in rows for n in re.findall(r"`([\w*/]+\.py)`", row)}
    package = DOC.parent.parent / "nvmkit"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py")
               if "data_sample" not in p.parts and "studies" not in p.parts}
    stale = sorted(n for n in named if not fnmatch.filter(modules, n))
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"
    unmapped = sorted(m for m in modules if not any(fnmatch.fnmatch(m, n) for n in named))
    assert not unmapped, f"add these nvmkit modules to the table in docs/architecture.md: {unmapped}"
