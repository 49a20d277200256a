"""nvmkit: accuracy and energy of neural networks on noisy non-volatile-memory crossbars.

The public API is what this module exports (see ``__all__`` and docs/api.md); everything else is
private by convention and may change.
"""

import os as _os

# TensorFlow's C++ start-up chatter buries nvmkit's own output; users can still set it themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from nvmkit.core.version import __version__

# The public API, gathered from the levels below (core -> engine -> workflow); nothing below imports
# this module's names back, so the order here is the order of the levels.
from nvmkit.core.errors import ConfigError, DataError, NvmkitError, PluginError
from nvmkit.core.component import Component, check_fraction, check_int, check_nonnegative, check_positive
from nvmkit.core.device import Device, check_flag
from nvmkit.core.energy import EnergyEstimator, EnergyReport, EnergyTerm
from nvmkit.core.footprint import LayerFootprint, TileShape
from nvmkit.core.hookspecs import hookimpl
from nvmkit.core._quiet import quiet_stderr as _quiet_stderr

with _quiet_stderr():  # the network building blocks are Keras layers: importing Keras is noisy
    from nvmkit.core.layers import (PreActivationNoiseRNNCell, as_images, check_sequence, initializer,
                                    relu_block, site_sigmas)
from nvmkit.core.network import NetworkMapper
from nvmkit.core.noise import NoiseInjector
from nvmkit.core.registry import create_from_spec, get_registry
from nvmkit.fit import DeviceTable, FitResult, Measurements, fit_device, load_device_table, read_measurements
from nvmkit.engine.crossbar_config import ConverterConfig, CrossbarConfig, MappingConfig, NonIdealityConfig
from nvmkit.engine.crossbar import Crossbar, ProgrammedCrossbar
from nvmkit.engine.convert import (analog_footprint, analog_layers, calibrate_converters, convert,
                                   describe_analog, repeat_trials, reprogram)
from nvmkit.engine.evaluate import AccuracyResult, digital_accuracy, monte_carlo
from nvmkit.engine.conformance import CheckResult, check_class, check_plugin
from nvmkit.workflow.config import DataConfig, ModelConfig, PluginRef, RunConfig, TrainingConfig
from nvmkit.workflow.data import load_data_file, load_dataset
from nvmkit.workflow.user_model import load_model_file
from nvmkit.reproduction.energy_table import energy_report
from nvmkit.workflow.pipeline import resolve, run

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
    "DeviceTable",
    "FitResult",
    "Measurements",
    "fit_device",
    "load_device_table",
    "read_measurements",
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
    "convert",
    "reprogram",
    "calibrate_converters",
    "repeat_trials",
    "analog_layers",
    "describe_analog",
    "analog_footprint",
    "AccuracyResult",
    "digital_accuracy",
    "load_data_file",
    "load_dataset",
    "load_model_file",
    "energy_report",
    "ModelConfig",
    "resolve",
    "run",
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
    # building blocks for network plugins
    "PreActivationNoiseRNNCell",
    "as_images",
    "check_sequence",
    "initializer",
    "relu_block",
    "site_sigmas",
]
