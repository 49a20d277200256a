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
    "nvmkit.core.update": ("ConstantStep", "PulseUpdate", "SoftBoundsStep", "apply_pulses", "draw_step_factors",
                           "require_pulse_update"),
    "nvmkit.core.energy": ("EnergyEstimator", "EnergyReport", "EnergyTerm", "TrainingEnergyReport"),
    "nvmkit.core.footprint": ("LayerFootprint", "TileShape"),
    "nvmkit.core.hookspecs": ("hookimpl",),
    "nvmkit.core.layers": ("PreActivationNoiseRNNCell", "initializer", "relu_block"),
    "nvmkit.core.network": ("NetworkMapper", "as_images", "check_sequence", "site_sigmas"),
    "nvmkit.core.noise": ("NoiseInjector",),
    "nvmkit.core.registry": ("create_from_spec", "get_registry"),
    "nvmkit.fit": ("DeviceTable", "FitResult", "Measurements", "fit_device", "load_device_table",
                   "read_measurements"),
    "nvmkit.engine.crossbar_config": ("ChipConfig", "ConverterConfig", "CrossbarConfig", "MappingConfig",
                                      "NonIdealityConfig"),
    "nvmkit.engine.crossbar": ("Crossbar", "ProgrammedCrossbar"),
    "nvmkit.engine.convert": ("analog_footprint", "analog_layers", "calibrate_converters", "convert",
                              "describe_analog", "repeat_trials", "reprogram"),
    "nvmkit.engine.evaluate": ("AccuracyResult", "digital_accuracy", "monte_carlo"),
    "nvmkit.engine.device_aware": ("DeviceAwareTraining",),
    "nvmkit.engine.in_place": ("InPlaceTraining",),
    "nvmkit.engine.conformance": ("CheckResult", "check_class", "check_plugin"),
    "nvmkit.workflow.config": ("DataConfig", "ModelConfig", "PluginRef", "RunConfig", "TrainingConfig"),
    "nvmkit.workflow.data": ("load_data_file", "load_dataset"),
    "nvmkit.workflow.user_model": ("load_model_file",),
    "nvmkit.reproduction.energy_table": ("energy_report", "training_energy_report"),
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


# A converted model saved as .keras loads with keras.saving.load_model once nvmkit is imported
# (docs/api.md): Keras finds a custom class only if its module has registered it. Those modules
# import TensorFlow, so they are imported with Keras, not with nvmkit: now if Keras is loaded,
# else right after the first `import keras`; TensorFlow and Keras imported after nvmkit keep
# their start-up chatter off stderr, as nvmkit's own imports of them do.
_KERAS_CLASS_MODULES = ("nvmkit.core.layers", "nvmkit.engine.convert")


def _register_keras_classes() -> None:
    import importlib

    for module in _KERAS_CLASS_MODULES:
        importlib.import_module(module)


class _KerasImportHook:
    """An import finder (PEP 451) for ``tensorflow`` and ``keras``: it lets the normal finders
    locate them and executes them under :func:`nvmkit.core._quiet.quiet_stderr`; after ``keras``
    it runs :func:`_register_keras_classes`; once both are loaded it leaves ``sys.meta_path`` (under
    the JAX backend Keras comes without TensorFlow, which nvmkit may import later)."""

    _busy = False  # set while the normal finders run, so that this finder does not ask itself

    def find_spec(self, name, path=None, target=None):
        if name not in ("tensorflow", "keras") or self._busy:
            return None
        import importlib.util
        import sys

        self._busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        hook = self

        def exec_quietly(module):
            from nvmkit.core._quiet import quiet_stderr

            with quiet_stderr(executing_tensorflow=name == "tensorflow"):
                exec_module(module)
                if name == "keras":
                    _register_keras_classes()
            if "keras" in sys.modules and "tensorflow" in sys.modules and hook in sys.meta_path:
                sys.meta_path.remove(hook)  # both started: nothing left to do

        loader.exec_module = exec_quietly
        return spec


def _install_keras_hook() -> None:
    import sys

    if "keras" in sys.modules:
        from nvmkit.core._quiet import quiet_stderr

        with quiet_stderr():
            _register_keras_classes()
    elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


_install_keras_hook()


__all__ = [
    "__version__",
    "ChipConfig",
    "Component",
    "ConfigError",
    "ConverterConfig",
    "Crossbar",
    "CrossbarConfig",
    "DataConfig",
    "DataError",
    "Device",
    "DeviceAwareTraining",
    "DeviceTable",
    "InPlaceTraining",
    "FitResult",
    "Measurements",
    "fit_device",
    "load_device_table",
    "read_measurements",
    "EnergyEstimator",
    "EnergyReport",
    "EnergyTerm",
    "TrainingEnergyReport",
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
    "training_energy_report",
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
    # the update model of on-chip learning
    "ConstantStep",
    "PulseUpdate",
    "SoftBoundsStep",
    "apply_pulses",
    "draw_step_factors",
    "require_pulse_update",
    "hookimpl",
    # building blocks for network plugins
    "PreActivationNoiseRNNCell",
    "as_images",
    "check_sequence",
    "initializer",
    "relu_block",
    "site_sigmas",
]
