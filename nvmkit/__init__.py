"""nvmkit: accuracy and energy of neural networks on noisy non-volatile-memory crossbars.

The public API is what this module exports (see ``__all__`` and docs/api.md); everything else is
private by convention and may change.
"""

import os as _os

# TensorFlow's C++ start-up chatter buries nvmkit's own output; users can still set it themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from nvmkit.core.version import __version__

# The public API, gathered from the levels below (core -> engine -> workflow) and imported on first
# use (PEP 562): `nvmkit --help`, `nvmkit results` and a plugin's `from nvmkit import Device` need
# no TensorFlow, which takes seconds to import (and a Ctrl-C during that import is a traceback).
# Nothing below imports this module's names back, so the order here is the order of the levels.
_EXPORTS = {
    "nvmkit.core.errors": ("ConfigError", "DataError", "NvmkitError", "PluginError"),
    "nvmkit.core.component": ("Component", "check_fraction", "check_int", "check_nonnegative", "check_positive"),
    "nvmkit.core.device": ("Device", "check_flag"),
    "nvmkit.core.energy": ("EnergyEstimator", "EnergyReport", "EnergyTerm"),
    "nvmkit.core.footprint": ("LayerFootprint", "TileShape"),
    "nvmkit.core.hookspecs": ("hookimpl",),
    "nvmkit.core.layers": ("PreActivationNoiseRNNCell", "initializer", "relu_block"),
    "nvmkit.core.network": ("NetworkMapper", "as_images", "check_sequence", "site_sigmas"),
    "nvmkit.core.noise": ("NoiseInjector",),
    "nvmkit.core.registry": ("create_from_spec", "get_registry"),
    "nvmkit.fit": ("DeviceTable", "FitResult", "Measurements", "fit_device", "load_device_table",
                   "read_measurements"),
    "nvmkit.engine.crossbar_config": ("ConverterConfig", "CrossbarConfig", "MappingConfig", "NonIdealityConfig"),
    "nvmkit.engine.crossbar": ("Crossbar", "ProgrammedCrossbar"),
    "nvmkit.engine.convert": ("analog_footprint", "analog_layers", "calibrate_converters", "convert",
                              "describe_analog", "repeat_trials", "reprogram"),
    "nvmkit.engine.evaluate": ("AccuracyResult", "digital_accuracy", "monte_carlo"),
    "nvmkit.engine.conformance": ("CheckResult", "check_class", "check_plugin"),
    "nvmkit.workflow.config": ("DataConfig", "ModelConfig", "PluginRef", "RunConfig", "TrainingConfig"),
    "nvmkit.workflow.data": ("load_data_file", "load_dataset"),
    "nvmkit.workflow.user_model": ("load_model_file",),
    "nvmkit.reproduction.energy_table": ("energy_report",),
    "nvmkit.workflow.pipeline": ("resolve", "run"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'nvmkit' has no attribute {name!r}")
    import importlib

    from nvmkit.core._quiet import quiet_stderr

    with quiet_stderr():  # the modules that import Keras print TensorFlow's start-up chatter
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOME))


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
