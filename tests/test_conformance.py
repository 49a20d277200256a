"""Conformance checks (``nvmkit plugins check``): every bundled plugin passes them, and a deliberately
broken plugin, installed through a real entry point, fails them with a report that says what to fix."""

import importlib.metadata
import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from nvmkit import ConfigError, check_class, check_plugin
from nvmkit.engine.conformance import check_all
from nvmkit.core.registry import get_registry

from plugin_fixtures import installed

# every plugin module nvmkit itself declares (pyproject.toml), by entry-point name
BUNDLED_ENTRY_POINTS = sorted(
    ep.name for ep in importlib.metadata.entry_points(group="nvmkit")
    if ep.dist is not None and ep.dist.name == "nvmkit"
)

BROKEN = '''
import numpy as np
from nvmkit import Device, NoiseInjector, hookimpl


class LeakyDevice(Device):
    name = "leaky"

    def __init__(self, sigma=0.01):
        self.sigma = sigma
        self._set_range(1.0, 10.0)

    def programming_sigma(self, g, t=0.0):
        return self.sigma

    def read_sigma(self, g):
        return -np.ones_like(g)


class GlobalNoise(NoiseInjector):
    """Noise from numpy's global generator, unclipped and float64."""

    name = "global-noise"

    def __init__(self, sigma=0.1):
        self.sigma = float(sigma)

    def apply(self, x, rng):
        return x + np.random.normal(0.0, self.sigma, x.shape)


class Unfinished(NoiseInjector):
    """An injector that forgot apply."""

    name = "unfinished"

    def __init__(self, level):
        self.level_ = level


@hookimpl
def nvmkit_devices():
    return [LeakyDevice]


@hookimpl
def nvmkit_noise_injectors():
    return [GlobalNoise, Unfinished]
'''


@pytest.fixture
def broken(tmp_path, monkeypatch):
    with installed(tmp_path, monkeypatch, "nvmkit-broken", "toy_broken_plugins", BROKEN, "broken") as reg:
        yield reg


def _by_check(results):
    return {r.check: r for r in results}


@pytest.mark.parametrize("entry_point", BUNDLED_ENTRY_POINTS)
def test_bundled_plugin_passes_every_check(entry_point):
    reg = get_registry()
    error = reg.load_errors.get(entry_point, "")
    assert not error, error  # every declared entry point's module exists now: a load error is a bug
    infos = [i for i in reg.all() if i.plugin == entry_point]
    assert infos, f"entry point {entry_point} registers no plugin"
    for info in infos:
        results = check_plugin(info.kind, info.name, reg)
        failed = [f"{r.check}: {r.detail}" for r in results if r.failed]
        assert not failed, f"{info.kind} '{info.name}': " + "; ".join(failed)
        assert any(r.passed for r in results)


def test_broken_device_report_names_each_fault(broken):
    checks = _by_check(check_plugin("device", "leaky", broken))
    assert checks["interface"].passed and checks["defaults"].passed
    assert checks["description"].failed and "docstring" in checks["description"].detail
    assert checks["parameter validation"].failed
    assert "sigma=NaN was accepted" in checks["parameter validation"].detail
    assert checks["citations"].failed and "citations = {" in checks["citations"].detail
    assert checks["sigma shapes"].failed
    assert "returned shape ()" in checks["sigma shapes"].detail
    assert "one value per cell" in checks["sigma shapes"].detail
    assert checks["conductance range"].passed and checks["drift"].passed


def test_broken_injector_report_names_each_fault(broken):
    checks = _by_check(check_plugin("noise", "global-noise", broken))
    validation = checks["parameter validation"].detail
    assert "sigma='abc' raised ValueError" in validation and "ConfigError" in validation
    assert "sigma=NaN was accepted" in validation
    assert checks["apply: shape, dtype, range"].failed
    assert "float64" in checks["apply: shape, dtype, range"].detail
    assert checks["determinism under a seed"].failed
    assert "rng argument" in checks["determinism under a seed"].detail


def test_missing_method_and_defaults_are_reported_and_dependent_checks_skipped(broken):
    checks = _by_check(check_plugin("noise", "unfinished", broken))
    assert "must override apply" in checks["interface"].detail
    assert checks["defaults"].failed and "give every constructor parameter a default" in checks["defaults"].detail
    assert checks["config round trip"].status == "skip"
    assert checks["determinism under a seed"].status == "skip"


def test_check_all_reports_plugins_that_fail_to_import(tmp_path, monkeypatch):
    with installed(tmp_path, monkeypatch, "nvmkit-crash", "toy_crash",
                   "raise RuntimeError('boom at import')\n", "crash") as reg:
        results = check_all("energy", reg)
        loads = [r for r in results if r.check == "loads" and r.name == "crash"]
        assert loads and loads[0].failed and "boom at import" in loads[0].detail


def test_check_class_needs_a_plugin_kind():
    with pytest.raises(ConfigError, match="kind must be one of"):
        check_class(int)


def test_a_well_behaved_class_passes_without_being_registered():
    from nvmkit import Device, check_nonnegative

    class Flat(Device):
        """A device with a constant programming error, for this test."""

        name = "flat"
        citations = {"sigma": "test value"}

        def __init__(self, sigma=0.1):
            self.sigma = check_nonnegative("device 'flat'", "sigma", sigma)
            self._set_range(1.0, 10.0)

        def programming_sigma(self, g, t=0.0):
            return np.full_like(np.asarray(g, dtype=np.float32), self.sigma)

    results = check_class(Flat)
    assert [r for r in results if r.failed] == []
    assert {r.check for r in results} >= {"sigma shapes", "drift", "crossbar + seed", "citations"}


BLURS = '''
import numpy as np
from scipy.ndimage import gaussian_filter
from nvmkit import NoiseInjector, check_nonnegative, hookimpl


class MixingBlur(NoiseInjector):
    """A blur written for one image, applied to the batch: it blurs across the batch axis too."""

    name = "mixing-blur"

    def __init__(self, sigma=1.0):
        self.sigma = check_nonnegative(f"noise '{self.name}'", "sigma", sigma)

    def apply(self, x, rng):
        out = gaussian_filter(np.asarray(x, dtype=np.float32), sigma=self.sigma)
        out += rng.normal(0.0, 0.01, out.shape).astype(np.float32)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


class BatchNormalised(NoiseInjector):
    """Gaussian noise, then every image rescaled by the batch's brightest noisy pixel."""

    name = "batch-normalised"

    def __init__(self, sigma=0.1):
        self.sigma = check_nonnegative(f"noise '{self.name}'", "sigma", sigma)

    def apply(self, x, rng):
        out = np.clip(x + rng.normal(0.0, self.sigma, x.shape), 0.0, None)
        return (out / out.mean()).clip(0.0, 1.0).astype(np.float32)


class ImageBlur(NoiseInjector):
    """The same blur over the image axes only, plus seeded noise: each image on its own."""

    name = "image-blur"

    def __init__(self, sigma=1.0):
        self.sigma = check_nonnegative(f"noise '{self.name}'", "sigma", sigma)

    def apply(self, x, rng):
        out = gaussian_filter(np.asarray(x, dtype=np.float32), sigma=(0.0, self.sigma, self.sigma))
        out += rng.normal(0.0, 0.01, out.shape).astype(np.float32)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


@hookimpl
def nvmkit_noise_injectors():
    return [MixingBlur, BatchNormalised, ImageBlur]
'''


@pytest.fixture
def blurs(tmp_path, monkeypatch):
    with installed(tmp_path, monkeypatch, "nvmkit-blurs", "toy_blurs", BLURS, "blurs") as reg:
        yield reg


# image 1 is all white: normalised by a mean below 1 it stays clipped at 1, the one unchanged
@pytest.mark.parametrize("name, moved", [("mixing-blur", "1, 2, 3, 4"), ("batch-normalised", "0, 2, 3, 4")])
def test_injector_that_mixes_images_of_a_batch_fails(blurs, name, moved):
    # regression: a blur across the batch axis passed every check (the shape, dtype and range ones
    # cannot see it), and results then depended on how the engine cut the test set into batches
    checks = _by_check(check_plugin("noise", name, blurs))
    per_image = checks["apply: each image on its own"]
    assert per_image.failed
    assert f"changing image 5 of a batch also changed output image(s) {moved}:" in per_image.detail
    assert checks["apply: shape, dtype, range"].passed and checks["determinism under a seed"].passed
    result = CliRunner().invoke(_app(), ["plugins", "check", name, "--json"])
    assert result.exit_code == 1, result.output


def test_injector_that_blurs_each_image_on_its_own_passes(blurs):
    results = check_plugin("noise", "image-blur", blurs)
    assert [r for r in results if r.failed] == []
    assert _by_check(results)["apply: each image on its own"].passed


# -- the command line ----------------------------------------------------------------------------

def _app():
    from nvmkit.cli import app

    return app


def test_cli_check_fails_with_exit_1_and_a_json_report(broken):
    result = CliRunner().invoke(_app(), ["plugins", "check", "leaky", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["ok"] is False and report["counts"]["fail"] >= 4
    assert {r["name"] for r in report["results"]} == {"leaky"}


def test_cli_check_table_and_kind_filter(broken):
    result = CliRunner().invoke(_app(), ["plugins", "check", "--kind", "noise"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "global-noise" in result.output and "leaky" not in result.output
    assert "failed" in result.output


def test_cli_check_passes_for_a_good_plugin_and_rejects_unknown_names():
    reg = get_registry()
    assert "ideal" in reg.names("device")
    ok = CliRunner().invoke(_app(), ["plugins", "check", "ideal"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(_app(), ["plugins", "check", "no-such-plugin"])
    assert bad.exit_code == 2 and "no plugin named 'no-such-plugin'" in bad.output


def test_real_cli_runs_the_check_command():
    from nvmkit.cli import app, plugins_app

    assert any(c.name == "check" for c in plugins_app.registered_commands)
    result = CliRunner().invoke(app, ["plugins", "check", "--kind", "energy", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True
