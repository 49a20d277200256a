"""Device models: published fits evaluated by hand, parameter validation, config round trips,
citations, registration and the ``nvmkit devices`` commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from nvmkit.core.device import Device
from nvmkit.core.errors import ConfigError
from nvmkit_plugins.devices.ecram import ECRAM
from nvmkit_plugins.devices.generic import GenericDevice, SoftBoundsDevice
from nvmkit_plugins.devices.ideal import IdealDevice
from nvmkit_plugins.devices.reram import ReRAM
from nvmkit_plugins.devices.sonos import SONOS
from nvmkit_plugins.devices.synaptic import SynapticNoise

ALL = [IdealDevice, SynapticNoise, GenericDevice, ReRAM, SONOS, ECRAM, SoftBoundsDevice]
DAY = 86400.0


@pytest.mark.parametrize("cls", ALL)
def test_config_round_trip(cls):
    d = cls()
    cfg = d.get_config()
    # parameters added after results were recorded (the update model's) are recorded once set
    assert set(cfg) == set(cls.param_names()) - set(cls.late_params)
    again = cls.from_config(cfg)
    assert again == d and again.get_config() == cfg
    json.dumps(cfg)  # plain data
    assert "name = " in d.to_toml()


@pytest.mark.parametrize("cls", ALL)
def test_every_parameter_is_cited_and_described(cls):
    assert cls.description() and cls.name
    missing = [p for p in cls.param_names() if not cls.citations.get(p)]
    assert not missing, f"{cls.name}: no citation for {missing}"
    d = cls()
    desc = d.describe()
    assert [p["name"] for p in desc["params"]] == cls.param_names()
    assert desc["g_min"] < desc["g_max"]


@pytest.mark.parametrize("cls, params", [
    (GenericDevice, {"g_min": 5.0, "g_max": 5.0}),
    (GenericDevice, {"g_min": 10.0, "g_max": 1.0}),
    (GenericDevice, {"sigma_prog": -0.1}),
    (GenericDevice, {"sigma_read": -0.01}),
    (GenericDevice, {"levels": 0}),
    (GenericDevice, {"levels": 1}),
    (GenericDevice, {"drift_t0": 0}),
    (IdealDevice, {"g_min": -1.0}),
    (ReRAM, {"sigma_read": -1.0}),
    (ReRAM, {"levels": 0}),
    (ReRAM, {"error_model": "magic"}),
    (ReRAM, {"g_min": 300.0}),
    (SONOS, {"on_off_ratio": 0.5}),
    (SONOS, {"i_max": -5}),
    (SONOS, {"extrapolate_drift": "yes"}),
    (ECRAM, {"sigma_prog": -0.005}),
    (ECRAM, {"levels": 0}),
    (ECRAM, {"temperature": 0}),
    (SynapticNoise, {"sigma_syn": -0.025}),
    (SynapticNoise, {"read_voltage": 0}),
    (SynapticNoise, {"energy_per_mac": -1e-15}),
])
def test_bad_parameters_fail_at_construction_with_one_line(cls, params):
    with pytest.raises(ConfigError) as exc:
        cls.from_config(params)
    msg = str(exc.value)
    assert "\n" not in msg and cls.name in msg


def test_unknown_parameter_is_named():
    with pytest.raises(ConfigError, match="sigma_prog"):
        ReRAM.from_config({"sigmaprog": 0.1})


# -- published fits, evaluated by hand --------------------------------------------------------
def test_reram_milo_fit():
    d = ReRAM()
    assert (d.g_min, d.g_max) == (50.0, 225.0) and d.on_off_ratio == pytest.approx(4.5)
    g = np.float32([50.0, 137.5, 225.0, 600.0])
    expected = [-0.009107 * 50 + 4.782321, -0.009107 * 137.5 + 4.782321, -0.009107 * 225 + 4.782321, 0.0]
    np.testing.assert_allclose(d.programming_sigma(g), expected, rtol=1e-5, atol=1e-6)
    assert float(d.programming_sigma(np.float32([50.0]))[0]) == pytest.approx(4.3270, abs=1e-3)
    np.testing.assert_array_equal(d.read_sigma(g), 0.0)
    flat = ReRAM(error_model="constant", sigma_prog=0.02)
    np.testing.assert_allclose(flat.programming_sigma(g), 0.02 * 175.0, rtol=1e-6)
    assert d.energy_per_mac == pytest.approx(11e-15)


def _sat(a, b, i):
    return a * (1 - math.exp(-i / b))


def test_sonos_fits():
    d = SONOS()
    assert d.units == "nA" and d.g_max == 1600.0 and d.on_off_ratio == pytest.approx(1e7)
    i = np.float32([10.0, 200.0, 800.0, 1600.0])
    for t_days, (a, b) in ((0, (19.887, 176.31)), (1, (25.59, 186.86)), (5, (34.58, 207.34))):
        np.testing.assert_allclose(d.programming_sigma(i, t_days * DAY), [_sat(a, b, v) for v in i],
                                   rtol=2e-4)
    # linear in time between the whole-day fits: 2.5 days is the mean of the 2- and 3-day fits
    a, b = (28.72753 + 31.04318) / 2, (193.56834 + 198.90332) / 2
    np.testing.assert_allclose(d.programming_sigma(i, 2.5 * DAY), [_sat(a, b, v) for v in i], rtol=1e-5)
    np.testing.assert_allclose(d.read_sigma(i), [_sat(12.580, 215.37, v) for v in i], rtol=2e-4)
    assert float(d.read_sigma(np.float32([0.0]))[0]) == 0.0
    # drift: none at t = 0; day-1 shift at 800 nA is -24.85 nA (the published polynomial)
    np.testing.assert_array_equal(d.drift(i, 0.0), i)
    assert float(d.drift(np.float32([800.0]), DAY)[0]) == pytest.approx(800 - 24.85, abs=0.01)
    assert d.energy_per_mac == pytest.approx(2 / 100e12)  # 100 TOPS/W, 2 ops per MAC


def test_sonos_drift_limit_and_extrapolation():
    with pytest.raises(ConfigError, match="extrapolate_drift"):
        SONOS().programming_sigma(np.float32([100.0]), 6 * DAY)
    d = SONOS(extrapolate_drift=True)
    s5, s6 = (float(d.programming_sigma(np.float32([100.0]), t * DAY)[0]) for t in (5, 6))
    assert s6 > s5


def test_ecram_thermal_read_noise_and_energy():
    d = ECRAM()
    assert d.levels == 500 and d.g_max == 10.0 and d.units == "nA"
    # Johnson-Nyquist: sigma_I = sqrt(4 k T (I/V) / (2 t_read)) = 0.0288 nA at 10 nA, 0.1 V, 1 us
    sigma = float(d.read_sigma(np.float32([10.0]))[0])
    assert sigma == pytest.approx(math.sqrt(2 * 1.380649e-23 * 300 * 10e-9 / (0.1 * 1e-6)) * 1e9, rel=1e-5)
    assert sigma / d.g_range < 0.005  # under the measured 0.5% cycle-to-cycle noise
    np.testing.assert_allclose(d.programming_sigma(np.float32([1.0, 10.0])), 0.005 * 9.0, rtol=1e-6)
    assert d.energy_per_mac == pytest.approx(0.1 * 10e-9 * 1e-6)  # V I t = 1 fJ
    assert ECRAM(read_time=2e-6).energy_per_mac == pytest.approx(2e-15)


def test_generic_and_ideal_and_synaptic():
    g = np.float32([1.0, 50.0, 100.0])
    d = GenericDevice(sigma_prog=0.02, sigma_prog_rel=0.1, sigma_read=0.01, drift_nu=0.1)
    np.testing.assert_allclose(d.programming_sigma(g), np.sqrt((0.02 * 99) ** 2 + (0.1 * g) ** 2), rtol=1e-6)
    np.testing.assert_allclose(d.read_sigma(g), 0.01 * 99, rtol=1e-6)
    np.testing.assert_allclose(d.drift(g, 1000.0), g * 1000.0**-0.1, rtol=1e-6)
    ideal = IdealDevice()
    for fn in (ideal.programming_sigma, ideal.read_sigma):
        np.testing.assert_array_equal(fn(g), 0.0)
    np.testing.assert_array_equal(ideal.drift(g, 1e6), g)
    s = SynapticNoise(sigma_syn=0.03)
    assert s.sigma_per_weight and not s.bounded
    np.testing.assert_allclose(s.programming_sigma(g), 0.03 * s.g_range)
    np.testing.assert_array_equal(s.read_sigma(g), 0.0)
    np.testing.assert_allclose(SynapticNoise(0.03, resample=True).read_sigma(g), 0.03 * s.g_range)


def test_cell_read_energy_units():
    assert ReRAM().cell_read_energy(100.0) == pytest.approx(0.1**2 * 100e-6 * 10e-9)  # V^2 G t
    assert SONOS().cell_read_energy(1000.0) == pytest.approx(0.1 * 1000e-9 * 10e-9)  # V I t


# -- registration and CLI ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry():
    from nvmkit.core.registry import get_registry

    return get_registry()


def test_devices_are_registered_with_their_source(registry):
    for cls in ALL:
        info = registry.info("device", cls.name)
        assert info.cls is cls and info.source.startswith("nvmkit")
        assert issubclass(info.cls, Device)
    from nvmkit.core.registry import create_from_spec

    assert create_from_spec("device", "synaptic:0.05").sigma_syn == 0.05
    assert create_from_spec("device", "reram:levels=64").levels == 64


@pytest.fixture
def cli():
    from nvmkit.cli import app

    return lambda *args: CliRunner().invoke(app, list(args))


def test_cli_devices_list_and_show(registry, cli):
    res = cli("devices", "list", "--json")
    assert res.exit_code == 0, res.output
    names = {r["name"] for r in json.loads(res.output)["devices"]}
    assert {"ideal", "synaptic", "generic", "reram", "sonos", "ecram"} <= names
    res = cli("devices", "show", "sonos", "--json")
    assert res.exit_code == 0, res.output
    desc = json.loads(res.output)
    assert desc["units"] == "nA" and desc["energy_per_mac_J"] == pytest.approx(20e-15)
    assert any("IMW 2020" in p["source"] for p in desc["params"])
    res = cli("devices", "show", "reram", "-p", "levels=8")
    assert res.exit_code == 0 and "Milo" in res.output and "JETCAS" in res.output
    res = cli("devices", "show", "reram:levels=0")
    assert res.exit_code == 2 and "levels" in res.output
    res = cli("devices", "show", "nosuchdevice")
    assert res.exit_code == 2 and "known devices" in res.output
