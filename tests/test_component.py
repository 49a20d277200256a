"""Every plugin's configuration survives a round trip through a dict and through TOML."""

import pytest

from nvmkit.workflow.config import RunConfig
from nvmkit.core.errors import ConfigError
from nvmkit.core.registry import get_registry

PLUGINS = [(k, n) for k in ("device", "noise", "network", "energy") for n in get_registry().names(k)]


@pytest.mark.parametrize("kind,name", PLUGINS)
def test_plugin_config_round_trips_through_dict_and_toml(kind, name):
    cls = get_registry().get(kind, name)
    obj = cls()
    assert cls.from_config(obj.get_config()) == obj
    assert cls.from_toml(obj.to_toml()) == obj


def test_toml_of_another_plugin_is_refused():
    reg = get_registry()
    with pytest.raises(ConfigError, match="not 'reram'"):
        reg.get("device", "reram").from_toml(reg.get("device", "sonos")().to_toml())


def test_run_config_round_trips_through_toml():
    cfg = RunConfig.from_dict({"network": {"name": "rnn", "params": {"time_steps": 7}}, "trials": 3,
                               "crossbar": {"converters": {"adc_bits": 8}}, "noise": "speckle:0.2"})
    assert RunConfig.from_toml(cfg.to_toml()) == cfg
