import json
import os
import subprocess
import sys

import pytest

from nvmkit.core.errors import ConfigError, PluginError
from nvmkit.core.registry import KINDS, get_registry, spec_params

from plugin_fixtures import TOY_DEVICE, activate, make_distribution


@pytest.fixture
def fresh_registry():
    yield
    get_registry(reload=True)  # later tests must not see this test's plugins


BUNDLED = {
    "device": {"ideal", "synaptic", "generic", "reram", "sonos", "ecram"},
    "noise": {"gaussian", "speckle", "salt-and-pepper"},
    "network": {"mlp", "cnn", "rnn"},
    "energy": {"crossbar"},
}


def test_every_bundled_plugin_is_registered_with_its_distribution():
    reg = get_registry(reload=True)
    assert reg.load_errors == {}
    for kind, names in BUNDLED.items():
        assert names <= set(reg.names(kind)), kind
        for name in names:
            info = reg.info(kind, name)
            assert info.source.startswith("nvmkit "), info.source
            assert info.description, f"{kind} {name} has no docstring"


def test_unknown_name_lists_the_known_ones():
    reg = get_registry()
    with pytest.raises(PluginError) as exc:
        reg.get("device", "flash")
    msg = str(exc.value)
    assert "unknown device 'flash'" in msg and "reram" in msg and "sonos" in msg
    with pytest.raises(ConfigError):
        reg.get("gadget", "x")
    assert set(KINDS) == {"device", "noise", "network", "energy"}


def test_third_party_plugin_arrives_through_its_entry_point(tmp_path, monkeypatch, fresh_registry):
    root = make_distribution(tmp_path / "site", "nvmkit-toy", "toy_device", TOY_DEVICE, "toy")
    activate(root, monkeypatch)
    reg = get_registry(reload=True)
    info = reg.info("device", "toy")
    assert info.source == "nvmkit-toy 0.1"
    dev = reg.create("device", "toy", {"sigma": 0.02})
    assert dev.sigma == 0.02 and dev.g_range == 9.0
    assert "reram" in reg.names("device")  # bundled ones still there


TOY_EXTRA = """
import numpy as np
from nvmkit import Device, NoiseInjector, hookimpl


class Extra(Device):
    \"\"\"A second toy device that must survive its sibling's problem.\"\"\"

    name = "NAME"

    def __init__(self, sigma=0.01):
        self.sigma = sigma
        self._set_range(1.0, 10.0)

    def programming_sigma(self, g, t=0.0):
        return np.full_like(g, self.sigma * self.g_range)
"""


def _toy(tmp_path, dist, module, entry, body):
    """A distribution whose module holds the Extra device named ``module`` plus ``body``."""
    return make_distribution(tmp_path / "site", dist, module, TOY_EXTRA.replace("NAME", module) + body, entry)


def test_name_clash_keeps_the_bundled_plugin_and_reports_the_other(tmp_path, monkeypatch, fresh_registry):
    # regression: a third-party device named like a bundled one raised PluginError on every lookup,
    # taking down every command
    clash = TOY_DEVICE.replace('name = "toy"', 'name = "reram"').replace("return [ToyDevice]",
                                                                          "return [ToyDevice, Extra]")
    root = make_distribution(tmp_path / "site", "nvmkit-clash", "toy_clash",
                             clash + TOY_EXTRA.replace("NAME", "toy_clash_extra").replace(
                                 "import numpy as np\nfrom nvmkit import Device, NoiseInjector, hookimpl\n", ""),
                             "clash")
    activate(root, monkeypatch)
    reg = get_registry(reload=True)
    assert reg.info("device", "reram").source.startswith("nvmkit ")  # the bundled one kept
    assert reg.info("device", "toy_clash_extra").source == "nvmkit-clash 0.1"  # its sibling kept
    msg = reg.load_errors["clash"]
    assert "device 'reram' (toy_clash.ToyDevice) is left out" in msg and "bundled" in msg
    assert set(reg.load_errors) == {"clash"}


def test_two_third_party_plugins_with_one_name_are_both_left_out(tmp_path, monkeypatch, fresh_registry):
    for dist, module in (("nvmkit-one", "toy_one"), ("nvmkit-two", "toy_two")):
        make_distribution(tmp_path / "site", dist, module, TOY_DEVICE, module)
    activate(tmp_path / "site", monkeypatch)
    reg = get_registry(reload=True)
    assert "toy" not in reg.names("device") and "reram" in reg.names("device")
    assert set(reg.load_errors) == {"toy_one", "toy_two"}
    assert "toy_two (from nvmkit-two 0.1) has the same name" in reg.load_errors["toy_one"]
    with pytest.raises(PluginError, match="unknown device 'toy' .*has the same name"):
        reg.get("device", "toy")  # the unknown-name error points at the clash


@pytest.mark.parametrize("body, needle", [
    # regression: `for cls in classes` iterated the class and raised TypeError in every command
    ("@hookimpl\ndef nvmkit_noise_injectors():\n    return Extra\n",
     "nvmkit_noise_injectors() returned Extra, not a list of classes"),
    ("@hookimpl\ndef nvmkit_noise_injectors():\n    return [Extra]\n",
     "not a subclass of nvmkit.NoiseInjector"),
    ("@hookimpl\ndef nvmkit_noise_injectors():\n    raise RuntimeError('hook boom')\n",
     "nvmkit_noise_injectors() raised RuntimeError: hook boom"),
])
def test_hook_returning_the_wrong_thing_is_reported_and_isolated(body, needle, tmp_path, monkeypatch,
                                                                 fresh_registry):
    good = "@hookimpl\ndef nvmkit_devices():\n    return [Extra]\n"
    _toy(tmp_path, "nvmkit-bad", "toy_bad", "bad", good + body)
    make_distribution(tmp_path / "site", "nvmkit-toy", "toy_device", TOY_DEVICE, "toy")
    activate(tmp_path / "site", monkeypatch)
    reg = get_registry(reload=True)
    assert needle in reg.load_errors["bad"], reg.load_errors
    assert {"toy", "toy_bad", "reram"} <= set(reg.names("device"))  # its good hook and the others
    assert "gaussian" in reg.names("noise")


@pytest.mark.parametrize("body, needle", [
    # regression: pluggy's PluginValidationError escaped load_setuptools_entrypoints, every command died
    ("@hookimpl\ndef nvmkit_devices(config):\n    return [Extra]\n", "'config'"),
    ("@hookimpl\ndef nvmkit_device():\n    return [Extra]\n", "nvmkit_device"),  # misspelt hook
])
def test_hookimpl_that_does_not_match_the_hooks_is_blocked(body, needle, tmp_path, monkeypatch, fresh_registry):
    _toy(tmp_path, "nvmkit-bad", "toy_bad", "bad", body)
    make_distribution(tmp_path / "site", "nvmkit-toy", "toy_device", TOY_DEVICE, "toy")
    activate(tmp_path / "site", monkeypatch)
    reg = get_registry(reload=True)
    msg = reg.load_errors["bad"]
    assert msg.startswith("not loaded: toy_bad from nvmkit-bad does not match nvmkit's hooks") and needle in msg
    assert "\n" not in msg
    assert {"toy", "reram"} <= set(reg.names("device")) and "toy_bad" not in reg.names("device")


def test_cli_keeps_working_beside_broken_plugins(tmp_path, monkeypatch, fresh_registry):
    from typer.testing import CliRunner

    from nvmkit.cli import app

    site = tmp_path / "site"
    _toy(tmp_path, "nvmkit-bad", "toy_bad", "bad", "@hookimpl\ndef nvmkit_devices():\n    return Extra\n")
    _toy(tmp_path, "nvmkit-sig", "toy_sig", "sig", "@hookimpl\ndef nvmkit_devices(x):\n    return [Extra]\n")
    make_distribution(site, "nvmkit-clash", "toy_clash", TOY_DEVICE.replace('name = "toy"', 'name = "sonos"'),
                      "clash")
    make_distribution(site, "nvmkit-toy", "toy_device", TOY_DEVICE, "toy")
    activate(site, monkeypatch)
    get_registry(reload=True)
    out = CliRunner().invoke(app, ["plugins"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "toy" in out.output and "reram" in out.output
    warnings = [line for line in out.output.splitlines() if line.startswith("warning:")]
    assert sorted(w.split("'")[1] for w in warnings) == ["bad", "clash", "sig"], out.output
    out = CliRunner().invoke(app, ["run", "--device", "toy", "--dry-run"], catch_exceptions=False)
    assert out.exit_code == 0 and 'name = "toy"' in out.output, out.output


def test_plugin_that_raises_on_import_is_reported_and_isolated(tmp_path, monkeypatch, fresh_registry):
    root = make_distribution(tmp_path / "site", "nvmkit-broken", "toy_broken",
                             "raise RuntimeError('boom at import')\n", "broken")
    activate(root, monkeypatch)
    reg = get_registry(reload=True)
    assert "broken" in reg.load_errors and "boom at import" in reg.load_errors["broken"]
    assert "reram" in reg.names("device")


def test_cli_lists_third_party_plugin_in_json(tmp_path):
    root = make_distribution(tmp_path / "site", "nvmkit-toy", "toy_device", TOY_DEVICE, "toy")
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-m", "nvmkit", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)["plugins"]
    toy = [r for r in rows if r["name"] == "toy"]
    assert toy and toy[0]["kind"] == "device" and toy[0]["source"] == "nvmkit-toy 0.1"
    assert toy[0]["description"] == "A toy device for tests: constant programming error."


@pytest.mark.parametrize("spec,expected", [
    ("gaussian", ("gaussian", {})),
    ("gaussian:0.1", ("gaussian", {"sigma": 0.1})),  # the bare value named, never a "_" key
    ("reram:levels=64,generic=true", ("reram", {"levels": 64, "generic": True})),
])
def test_spec_params(spec, expected):
    assert spec_params("noise" if spec.startswith("gaussian") else "device", spec) == expected


@pytest.mark.parametrize("spec", ["", ":", "gaussian:0.1,0.2"])
def test_spec_params_rejects_malformed(spec):
    with pytest.raises(ConfigError):
        spec_params("noise", spec)
