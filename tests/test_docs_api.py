"""The script in docs/api.md runs exactly as written, on the embedded sample."""

import importlib.util
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest


DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
MODULES = ("nvmkit.workflow.data", "nvmkit.engine.convert", "nvmkit.engine.evaluate", "nvmkit.workflow.pipeline", "nvmkit.workflow.training")
PLUGINS = (("network", "mlp"), ("device", "reram"), ("noise", "gaussian"), ("energy", "crossbar"))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _missing() -> list[str]:
    from nvmkit import get_registry

    missing = [m for m in MODULES if importlib.util.find_spec(m) is None]
    reg = get_registry()
    missing += [f"{kind} plugin '{name}'" for kind, name in PLUGINS if name not in reg.names(kind)]
    return missing


def test_api_doc_has_two_scripts():
    assert len(python_blocks(DOC.read_text())) == 2  # the whole path; bring your own model


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
    step = re.search(r"one training step: ([\d.e+-]+) nJ \(forward ([\d.e+-]+) nJ, backward ([\d.e+-]+) nJ, "
                     r"update ([\d.e+-]+) nJ\)", out)
    assert step, out
    total, *phases = (float(v) for v in step.groups())
    assert total == pytest.approx(sum(phases), rel=5e-3) and min(phases) > 0  # printed to 3 digits
    for scenario in ("digital", "internal", "external", "both"):
        assert re.search(rf"^\s*{scenario}: 0\.\d+$", out, flags=re.M), out
    assert "(sample data)" in out


def test_bring_your_own_model_script_runs(tmp_path, monkeypatch, capsys):
    """docs/api.md "Bring your own model": a functional ResNet on Fashion-MNIST, converted, Monte
    Carlo, energy and nvmkit.run with the model and data files, exactly as written."""
    script = tmp_path / "byom_example.py"
    script.write_text(python_blocks(DOC.read_text())[1])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    digital = float(re.search(r"digital accuracy: ([\d.]+)", out).group(1))
    assert 0.5 < digital <= 1.0, out  # 5 epochs of the tiny ResNet on the 4,000-image sample: ~0.70
    for layer in ("stem", "block_a", "block_b", "classifier"):  # on crossbars, BN folded
        assert re.search(rf"^\s*{layer}\s+Analog", out, flags=re.M), out
    assert "_bn" not in out.split("ReRAM +")[0].split("analog layers")[1]
    assert re.search(r"ReRAM \+ Gaussian test-set noise: [\d.]+% \+- [\d.]+% \(5 trials\)", out), out
    assert re.search(r"energy per inference: [\d.]+ nJ", out), out
    run_digital = float(re.search(r"^\s*digital: (0\.\d+)$", out, flags=re.M).group(1))
    assert run_digital == pytest.approx(digital, abs=1e-4)  # the file round trip changes nothing
    assert "data: fashion.npz" in out


def test_plugins_doc_device_and_its_tests_work(monkeypatch):
    """docs/plugins.md: the tutorial device passes conformance and the tutorial's own tests pass."""
    import types

    import numpy as np

    from nvmkit import check_class

    device_src, tests_src, _injector_src, _update_src, _composed_src = python_blocks((DOC.parent / "plugins.md").read_text())
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


def test_plugins_doc_validation_helpers_have_the_documented_signatures():
    # the table in docs/plugins.md is what plugin authors read: a renamed or re-ordered parameter
    # (or a new helper left out of nvmkit's exports) must fail here
    import inspect

    import nvmkit

    text = (DOC.parent / "plugins.md").read_text()
    documented = dict(re.findall(r"^\| `(check_\w+)\(([^)]*)\)` \|", text, flags=re.M))
    exported = {n for n in nvmkit.__all__ if n.startswith("check_") and n not in ("check_class", "check_plugin")}
    assert set(documented) == exported, (set(documented) ^ exported)
    for name, params in documented.items():
        real = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                         for p in inspect.signature(getattr(nvmkit, name)).parameters.values())
        assert params == real, f"{name}: documented ({params}), real ({real})"
    # the example message is the real one
    example = re.search(r"For example `(check_\w+)\(([^`]*)\)` raises\s+`([^`]*)`", text)
    fn, args, message = example.groups()
    with pytest.raises(nvmkit.ConfigError) as exc:
        eval(f"nvmkit.{fn}({args})")
    assert str(exc.value) == " ".join(message.split())


def _plugins_doc_injector():
    import types

    src = python_blocks((DOC.parent / "plugins.md").read_text())[2]
    module = types.ModuleType("plugins_md_injector")
    exec(compile(src, "plugins.md:injector", "exec"), module.__dict__)
    return src, module


def test_plugins_doc_injector_passes_and_its_mixing_variant_fails_as_quoted():
    from nvmkit import check_class

    src, module = _plugins_doc_injector()
    assert [r for r in check_class(module.DefocusBlur) if r.failed] == []
    blurred = module.DefocusBlur(1.0).apply(np.eye(28, dtype=np.float32)[None].repeat(3, 0), None)
    assert blurred.shape == (3, 28, 28) and 0 < blurred[0, 0, 1] < blurred[0, 0, 0] < 1  # it does blur
    # the text says what the check says about the same blur over every axis: quote and code agree
    text = (DOC.parent / "plugins.md").read_text()
    quoted = re.search(r"Written as `([^`]*)`.*?fails it with \"([^\"]*)\"", text, flags=re.S)
    bad_call, message = quoted.group(1), " ".join(quoted.group(2).split())
    assert "sigma=(0.0, self.sigma, self.sigma)" in src
    bad_src = src.replace("gaussian_filter(x, sigma=(0.0, self.sigma, self.sigma), mode=\"nearest\")",
                          bad_call.replace(")", ", mode=\"nearest\")"))
    assert bad_src != src
    bad = {}
    exec(compile(bad_src, "plugins.md:injector-bad", "exec"), bad)
    detail = {r.check: r for r in check_class(bad["DefocusBlur"])}["apply: each image on its own"]
    assert detail.failed and message in detail.detail, detail.detail


def test_plugins_doc_sweep_over_a_plugin_validates(tmp_path, monkeypatch):
    """The experiment in docs/plugins.md, with the tutorial device installed through an entry point,
    expands into its points and validates every one through the plugin; a refused value fails."""
    from typer.testing import CliRunner

    from nvmkit import get_registry
    from nvmkit.cli import app
    from plugin_fixtures import activate, make_distribution

    text = (DOC.parent / "plugins.md").read_text()
    device_src = python_blocks(text)[0]
    (toml,) = [b for b in re.findall(r"^```toml\n(.*?)^```", text, flags=re.S | re.M) if "[grid]" in b]
    make_distribution(tmp_path / "site", "nvmkit-pcmlite", "toy_pcmlite", device_src, "nvmkit-pcmlite-device")
    activate(tmp_path / "site", monkeypatch)
    get_registry(reload=True)
    try:
        exp = tmp_path / "pcm-lite.toml"
        exp.write_text(toml)
        res = CliRunner().invoke(app, ["sweep", str(exp), "--dry-run", "--db", str(tmp_path / "r.db")],
                                 env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "pcm-lite-error: 6 points" in res.output and "1 trained models" in res.output, res.output
        for scale in ("0.5", "1.0", "2.0"):
            assert f"device.params.error_scale={scale}" in res.output, res.output
        exp.write_text(toml.replace("[0.5, 1.0, 2.0]", "[0.5, -1]"))
        res = CliRunner().invoke(app, ["sweep", str(exp), "--dry-run", "--db", str(tmp_path / "r.db")])
        assert res.exit_code == 2 and "error_scale must be >= 0" in res.output, res.output
    finally:
        monkeypatch.undo()
        get_registry(reload=True)


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



def _plugins_doc_module(index: int, name: str):
    import types

    module = types.ModuleType(name)
    exec(compile(python_blocks((DOC.parent / "plugins.md").read_text())[index], f"plugins.md:{name}", "exec"),
         module.__dict__)
    return module


def test_plugins_doc_update_model_example_conforms_and_says_what_it_does():
    """docs/plugins.md, "The update model": the worked device passes every conformance check, its
    pulse response is the one the text states (1000 noiseless up pulses from 50 to 225 uS, the
    first step 0.222 uS, the last 0.135 uS), and one pulse's sampled step has the mean and std of
    its pulse_step and pulse_step_sigma (6 standard errors)."""
    from nvmkit import apply_pulses, check_class, draw_step_factors

    module = _plugins_doc_module(3, "plugins_md_update")
    dev = module.FittedReRAM()
    assert [r for r in check_class(module.FittedReRAM) if r.failed] == []
    text = " ".join((DOC.parent / "plugins.md").read_text().split())
    first, last = re.search(r"the first one by ([\d.]+) uS and the last by ([\d.]+) uS", text).groups()
    g, steps = np.array([50.0]), []
    for _ in range(1000):
        steps.append(float(dev.pulse_step(g, True)[0]))
        g = g + steps[-1]
    assert g[0] == pytest.approx(225.0, abs=1e-4)
    assert round(steps[0], 3) == float(first) and round(steps[-1], 3) == float(last)
    noiseless = module.FittedReRAM(sigma_c2c=0.0, pulse_step_d2d=0.0)
    assert apply_pulses(noiseless, np.array([50.0]), 1000, np.random.default_rng(0))[0] == pytest.approx(225.0, abs=1e-3)
    n = 20_000
    cells = np.full(n, 120.0)
    step = apply_pulses(dev, cells, -1, np.random.default_rng(1), np.ones(n)) - cells
    mu, sigma = float(dev.pulse_step(cells[:1], False)[0]), float(dev.pulse_step_sigma(cells[:1], False)[0])
    assert mu < 0 and abs(step.mean() - mu) <= 6 * sigma / np.sqrt(n)
    assert abs(step.std(ddof=1) - sigma) <= 6 * sigma / np.sqrt(2 * (n - 1))
    assert draw_step_factors(dev, (n,), np.random.default_rng(2)).std() == pytest.approx(0.1, rel=0.05)


def test_plugins_doc_composed_update_model_conforms():
    """docs/plugins.md: the device composed from SoftBoundsStep passes conformance, and its model
    is what its docstring says (up steps 18% smaller than down steps at mid-range, soft bounds)."""
    from nvmkit import check_class

    module = _plugins_doc_module(4, "plugins_md_composed")
    assert [r for r in check_class(module.SoftCell) if r.failed] == []
    dev = module.SoftCell()
    mid = np.array([50.0])
    assert dev.pulse_step(mid, True)[0] / -dev.pulse_step(mid, False)[0] == pytest.approx(0.9 / 1.1)
    assert "18% smaller" in module.SoftCell.__doc__ and round(100 * (1 - 0.9 / 1.1)) == 18
    assert dev.pulse_step(np.array([100.0]), True)[0] == 0 and dev.pulse_step(np.array([0.0]), False)[0] == 0
