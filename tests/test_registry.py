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


def test_duplicate_names_fail_naming_both_sources(tmp_path, monkeypatch, fresh_registry):
    clash = TOY_DEVICE.replace('name = "toy"', 'name = "reram"')
    root = make_distribution(tmp_path / "site", "nvmkit-clash", "toy_clash", clash, "clash")
    activate(root, monkeypatch)
    reg = get_registry(reload=True)
    with pytest.raises(PluginError) as exc:
        reg.names("device")
    msg = str(exc.value)
    assert "two device plugins are named 'reram'" in msg
    assert "nvmkit-clash 0.1" in msg and "nvmkit 0." in msg


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
