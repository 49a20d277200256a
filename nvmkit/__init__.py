"""nvmkit: accuracy and energy of neural networks on noisy non-volatile-memory crossbars.

The public API is what this module exports (see ``__all__`` and docs/api.md); everything else is
private by convention and may change.
"""

import os as _os

# TensorFlow's C++ start-up chatter buries nvmkit's own output; users can still set it themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("nvmkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .component import Component, check_fraction, check_int, check_nonnegative, check_positive
from .config import DataConfig, PluginRef, RunConfig, TrainingConfig
from .analog import AnalogNetwork, ProgrammedNetwork, deploy
from .crossbar import Crossbar, ProgrammedCrossbar
from .crossbar_config import ConverterConfig, CrossbarConfig, MappingConfig, NonIdealityConfig
from .device import Device, check_flag
from .energy import EnergyEstimator, EnergyReport, EnergyTerm
from .errors import ConfigError, DataError, NvmkitError, PluginError
from .evaluate import AccuracyResult, digital_accuracy, monte_carlo
from .footprint import LayerFootprint, TileShape
from .hookspecs import hookimpl
from .network import NetworkMapper
from .noise import NoiseInjector
from .registry import create_from_spec, get_registry
from .conformance import CheckResult, check_class, check_plugin  # after the registry: it uses it

__all__ = [
    "__version__",
    "Component",
    "ConfigError",
    "ConverterConfig",
    "Crossbar",
    "CrossbarConfig",
    "DataConfig",
    "DataError",
    "Device",
    "EnergyEstimator",
    "EnergyReport",
    "EnergyTerm",
    "LayerFootprint",
    "MappingConfig",
    "NetworkMapper",
    "NoiseInjector",
    "NonIdealityConfig",
    "NvmkitError",
    "PluginError",
    "PluginRef",
    "ProgrammedCrossbar",
    "AnalogNetwork",
    "ProgrammedNetwork",
    "deploy",
    "AccuracyResult",
    "digital_accuracy",
    "monte_carlo",
    "RunConfig",
    "TileShape",
    "TrainingConfig",
    "CheckResult",
    "check_class",
    "check_flag",
    "check_fraction",
    "check_int",
    "check_nonnegative",
    "check_plugin",
    "check_positive",
    "create_from_spec",
    "get_registry",
    "hookimpl",
]
