"""The run configuration: one experiment point, as flags, a TOML file or a dict."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dataclasses

from nvmkit.core.component import check_fraction, check_int, check_nonnegative, check_positive, check_seed
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.errors import ConfigError
from nvmkit.core.network import NetworkMapper
from nvmkit.core.params import Params, read_text_file
from nvmkit.core.registry import spec_params
from nvmkit.core.spec import NONE_WORDS

SCENARIOS = ("digital", "internal", "external", "both")


@dataclass
class PluginRef(Params):
    """A plugin chosen by name, with its constructor parameters."""

    name: str = ""
    params: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("plugin name must be a non-empty string")
        if not isinstance(self.params, dict):
            raise ConfigError(f"params of '{self.name}' must be a table, got {self.params!r}")


@dataclass
class DataConfig(Params):
    name: str = "mnist"
    data_dir: str | None = None  # a folder in Keras's cache layout
    source: str = "auto"  # auto (full data if found locally, else the embedded sample) | full | sample
    #: a user's .npz (x_train, y_train, x_test, y_test); its stem becomes the name
    file: str | None = None
    sha256: str | None = None  # the file's recorded hash: a changed file is refused
    scaling: str = "auto"  # auto: uint8 / 255, floats must lie in [0, 1] | none: values as they are

    def validate(self) -> None:
        from nvmkit.workflow.data import SCALINGS, _canonical_name

        if self.scaling not in SCALINGS:
            raise ConfigError(f"dataset.scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        if self.file is not None:
            if not isinstance(self.file, str) or not self.file.strip():
                raise ConfigError(f"dataset.file must be the path of an .npz file, got {self.file!r}")
            if self.data_dir is not None:
                raise ConfigError("give dataset.file (an .npz) or dataset.data_dir (a Keras-cache-layout "
                                  "folder), not both")
            self.name = Path(self.file).stem
            return
        if self.sha256 is not None:
            raise ConfigError("dataset.sha256 belongs to a dataset.file; remove it")
        self.name = _canonical_name(self.name)
        if self.source not in ("auto", "full", "sample"):
            raise ConfigError(f"dataset.source must be auto, full or sample, got {self.source!r}")


@dataclass
class ModelConfig(Params):
    """A user's trained Keras model file, deployed as it is (trained further only if
    ``training.epochs`` is given)."""

    file: str = ""
    sha256: str | None = None  # the file's recorded hash: a changed file is refused

    def validate(self) -> None:
        if not isinstance(self.file, str) or not self.file.strip():
            raise ConfigError("model.file must be the path of a .keras file, e.g. model = \"my.keras\"")


OPTIMIZERS = ("adam", "adamw", "nadam", "adamax", "rmsprop", "sgd", "adagrad", "adadelta")
SCHEDULES = ("cosine", "constant")
#: training.method: "plain" (no noise), "preactivation" (the seed's Gaussian noise before every ReLU,
#: sigma_neu or sigma_syn_target), "device" (hardware-aware: through the deployment's device and
#: crossbar, the programming drawn afresh per mini-batch; nvmkit/engine/device_aware.py),
#: "in-place" (on-chip learning: the programmed conductances updated by the device's pulses;
#: nvmkit/engine/in_place.py)
TRAINING_METHODS = ("plain", "preactivation", "device", "in-place")
#: where device-aware training starts: the plainly trained model (fine-tuning) or the initialisation
DEVICE_STARTS = ("plain", "scratch")
#: the settings of device-aware training only (None unless training.method = "device")
DEVICE_FIELDS = ("device_epochs", "device_start", "device_learning_rate", "reprogram_every")
#: the settings of in-place training only (None unless training.method = "in-place")
IN_PLACE_FIELDS = ("in_place_steps", "in_place_epochs", "in_place_learning_rate", "in_place_start",
                   "pulses", "pulse_slots", "headroom")
#: the fields of each method that only it takes
_METHOD_FIELDS = {"device": DEVICE_FIELDS, "in-place": IN_PLACE_FIELDS}
#: in-place training's pulse schemes (nvmkit/engine/in_place.py)
PULSE_SCHEMES = ("deterministic", "stochastic")
#: the keys of the spec form of a method (``device:epochs=2,every=4``, ``preactivation:0.1``)
_METHOD_KEYS = {
    "device": {"epochs": "device_epochs", "start": "device_start", "learning_rate": "device_learning_rate",
               "every": "reprogram_every"},
    "in-place": {"steps": "in_place_steps", "epochs": "in_place_epochs",
                 "lr": "in_place_learning_rate", "learning_rate": "in_place_learning_rate",
                 "start": "in_place_start", "pulses": "pulses", "slots": "pulse_slots",
                 "headroom": "headroom"},
    "preactivation": {"sigma_neu": "sigma_neu", "sigma_syn_target": "sigma_syn_target"},
    "plain": {},
}


def training_identity(table: dict) -> dict:
    """A training table (``TrainingConfig.to_dict()``) without the keys that cannot change the
    model: the device-training (in-place) settings unless the method is ``device``
    (``in-place``), and the method itself unless it is one of those two (plain and pre-activation
    training are told apart by sigma_neu), so that models and results keyed before training
    methods existed keep their keys."""
    out = dict(table)
    method = out.get("method")
    if method not in _METHOD_FIELDS:
        out.pop("method", None)
    for name, fields in _METHOD_FIELDS.items():
        if method != name:
            for key in fields:
                out.pop(key, None)
    return out


@dataclass
class TrainingConfig(Params):
    """How a network is trained. ``None`` means the mapper's ``training_defaults`` (or no noise)."""

    optimizer: str | None = None
    learning_rate: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    schedule: str | None = None  # "cosine": decay the rate to 0 over the run (Loshchilov & Hutter 2017)
    sigma_neu: float | list | None = None  # pre-activation noise std: one value, or one per noise site
    sigma_syn_target: float | None = None  # derive sigma_neu per layer from this synaptic noise
    validation_split: float = 0.0  # last fraction of the training set held out to report val_accuracy
    seed: int | None = None  # None: the seed passed to train() (default 0)
    use_cache: bool = True  # False: retrain even when a cached model exists
    #: plain | preactivation | device (TRAINING_METHODS); None: preactivation when sigma_neu or
    #: sigma_syn_target is given, else plain. Also a spec: "device:epochs=2,every=4,start=plain"
    method: str | None = None
    device_epochs: int | None = None  # epochs of device-aware training (default 1)
    device_start: str | None = None  # "plain" (default): fine-tune the plain model; "scratch"
    device_learning_rate: float | None = None  # default: learning_rate
    reprogram_every: int | None = None  # mini-batches per programming draw (default 1)
    in_place_steps: int | None = None  # updates of in-place training (default: in_place_epochs)
    in_place_epochs: int | None = None  # passes of in-place training (default 1 without steps)
    in_place_learning_rate: float | None = None  # its SGD rate (default 0.01)
    in_place_start: str | None = None  # "plain" (default): fine-tune the plain model; "scratch"
    pulses: str | None = None  # "deterministic" (default) or "stochastic" (pulse trains)
    pulse_slots: int | None = None  # slots of a stochastic train (default 10)
    headroom: float | None = None  # the largest weight maps to g_max / headroom (default 1)

    def validate(self) -> None:
        self._read_method_spec()
        if self.optimizer is not None:
            self.optimizer = str(self.optimizer).lower()
            if self.optimizer not in OPTIMIZERS:
                raise ConfigError(f"training.optimizer {self.optimizer!r} is unknown; "
                                  f"choose one of: {', '.join(OPTIMIZERS)}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ConfigError(f"training.schedule {self.schedule!r} is unknown; choose one of: {', '.join(SCHEDULES)}")
        if self.learning_rate is not None:
            self.learning_rate = check_positive("training", "learning_rate", self.learning_rate)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) is not None:
                setattr(self, name, check_int("training", name, getattr(self, name), 1))
        if self.sigma_neu is not None and self.sigma_syn_target is not None:
            raise ConfigError("give training.sigma_neu or training.sigma_syn_target, not both")
        if isinstance(self.sigma_neu, (list, tuple)):
            self.sigma_neu = [check_nonnegative("training", "sigma_neu", v) for v in self.sigma_neu]
        elif self.sigma_neu is not None:
            self.sigma_neu = check_nonnegative("training", "sigma_neu", self.sigma_neu)
        if self.sigma_syn_target is not None:
            self.sigma_syn_target = check_nonnegative("training", "sigma_syn_target", self.sigma_syn_target)
        self.validation_split = check_fraction("training", "validation_split", self.validation_split)
        if self.validation_split >= 1:
            raise ConfigError("training.validation_split must be below 1, e.g. 0.1")
        if self.seed is not None:
            self.seed = check_seed("training", "seed", self.seed)
        self._check_method()

    def _read_method_spec(self) -> None:
        """``method = "device:epochs=2,every=4"``: the spec grammar's form, read into the fields."""
        if self.method is None:
            return
        if not isinstance(self.method, str) or not self.method.strip():
            raise ConfigError(f"training.method must be one of {', '.join(TRAINING_METHODS)}, "
                              f"got {self.method!r}")
        from nvmkit.core.spec import parse_spec

        spec = parse_spec(self.method)
        name = spec.name.lower()
        if name not in TRAINING_METHODS:
            raise ConfigError(f"training.method must be one of {', '.join(TRAINING_METHODS)}, "
                              f"got {spec.name!r}")
        keys = _METHOD_KEYS[name]
        params = dict(spec.params)
        if spec.positional:
            first = next(iter(keys), None)
            if first is None:
                raise ConfigError(f"training.method {self.method!r}: plain takes no value; write plain")
            if first in params:
                raise ConfigError(f"training.method {self.method!r} sets {first} twice; keep one")
            params[first] = spec.positional[0]
        for key, value in params.items():
            if key not in keys:
                raise ConfigError(f"training.method {self.method!r}: {name} has no setting {key!r}"
                                  + (f"; its settings: {', '.join(keys)}" if keys else ""))
            field_name = keys[key]
            current = getattr(self, field_name)
            if current is not None and current != value:
                raise ConfigError(f"training.method {self.method!r} and training.{field_name} give "
                                  f"{field_name} two values; keep one")
            setattr(self, field_name, value)
        self.method = name

    def _check_method(self) -> None:
        if self.device_epochs is not None:
            self.device_epochs = check_int("training", "device_epochs", self.device_epochs, 1)
        if self.reprogram_every is not None:
            self.reprogram_every = check_int("training", "reprogram_every", self.reprogram_every, 1)
        if self.device_learning_rate is not None:
            self.device_learning_rate = check_positive("training", "device_learning_rate",
                                                       self.device_learning_rate)
        if self.device_start is not None and self.device_start not in DEVICE_STARTS:
            raise ConfigError(f"training.device_start must be one of {', '.join(DEVICE_STARTS)}, "
                              f"got {self.device_start!r}")
        for name in ("in_place_steps", "in_place_epochs", "pulse_slots"):
            if getattr(self, name) is not None:
                setattr(self, name, check_int("training", name, getattr(self, name), 1))
        if self.in_place_learning_rate is not None:
            self.in_place_learning_rate = check_positive("training", "in_place_learning_rate",
                                                         self.in_place_learning_rate)
        if self.headroom is not None:
            self.headroom = check_positive("training", "headroom", self.headroom)
            if self.headroom < 1:
                raise ConfigError(f"training.headroom must be >= 1, got {self.headroom}")
        if self.in_place_start is not None and self.in_place_start not in DEVICE_STARTS:
            raise ConfigError(f"training.in_place_start must be one of {', '.join(DEVICE_STARTS)}, "
                              f"got {self.in_place_start!r}")
        if self.pulses is not None and self.pulses not in PULSE_SCHEMES:
            raise ConfigError(f"training.pulses must be one of {', '.join(PULSE_SCHEMES)}, "
                              f"got {self.pulses!r}")
        if self.in_place_steps is not None and self.in_place_epochs is not None:
            raise ConfigError("give in-place training steps or epochs, not both")
        noisy = self._noisy()
        if self.method != "device":
            given = [k for k in DEVICE_FIELDS if getattr(self, k) is not None]
            if given:
                raise ConfigError(f"training.{given[0]} belongs to device-aware training; set "
                                  "training.method = \"device\" or remove it")
        if self.method != "in-place":
            given = [k for k in IN_PLACE_FIELDS if getattr(self, k) is not None]
            if given:
                raise ConfigError(f"training.{given[0]} belongs to in-place training; set "
                                  "training.method = \"in-place\" or remove it")
        if self.method == "plain" and noisy:
            raise ConfigError("training.method plain trains without noise; remove sigma_neu / "
                              "sigma_syn_target or set training.method = \"preactivation\"")
        if self.method == "in-place" and noisy:
            raise ConfigError("training.method in-place trains by the device's pulses, without "
                              "pre-activation noise; remove sigma_neu / sigma_syn_target")
        if self.method == "device" and noisy:
            raise ConfigError("training.method device trains through the device, without "
                              "pre-activation noise; remove sigma_neu / sigma_syn_target")

    def _noisy(self) -> bool:
        sigma = self.sigma_neu
        return bool(self.sigma_syn_target) or (any(sigma) if isinstance(sigma, list) else bool(sigma))

    def with_method(self) -> "TrainingConfig":
        """A copy with the method named (inferred when None) and the device-training defaults
        filled in when it is ``device``."""
        method = self.method or ("preactivation" if self._noisy() else "plain")
        if method == "in-place":
            return self.replace(method=method, in_place_start=self.in_place_start or "plain",
                                in_place_learning_rate=self.in_place_learning_rate or 0.01,
                                in_place_epochs=None if self.in_place_steps is not None
                                else (self.in_place_epochs or 1),
                                pulses=self.pulses or "deterministic",
                                pulse_slots=self.pulse_slots or 10, headroom=self.headroom or 1.0)
        if method != "device":
            return self.replace(method=method)
        return self.replace(method=method, device_epochs=self.device_epochs or 1,
                            device_start=self.device_start or "plain",
                            reprogram_every=self.reprogram_every or 1)

    def plain_start(self) -> "TrainingConfig":
        """The plain training a device-aware fine-tuning starts from (same settings, no device)."""
        return self.replace(method="plain", **{k: None for k in (*DEVICE_FIELDS, *IN_PLACE_FIELDS)})

    def resolved(self, mapper: NetworkMapper) -> "TrainingConfig":
        """A copy with every ``None`` training setting filled from ``mapper.training_defaults``."""
        defaults = {**NetworkMapper.training_defaults, "schedule": "constant", **dict(mapper.training_defaults)}
        filled = {k: (defaults[k] if getattr(self, k) is None else getattr(self, k))
                  for k in ("optimizer", "learning_rate", "epochs", "batch_size", "schedule")}
        sigma, target = self.sigma_neu, self.sigma_syn_target
        if target == 0:  # no synaptic noise to match: the plain network, under the plain network's key
            target = None
        if sigma is None and target is None:
            sigma = 0.0
        return self.replace(**filled, sigma_neu=sigma, sigma_syn_target=target).with_method()

    @classmethod
    def coerce(cls, config) -> "TrainingConfig":
        """Accept a TrainingConfig, a dict, None, or any Params/dataclass with the same field names
        (such as the run configuration's ``[training]`` table); other fields are ignored."""
        if isinstance(config, cls):
            return config
        if config is None:
            return cls()
        if dataclasses.is_dataclass(config):
            config = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        if not isinstance(config, dict):
            raise ConfigError(f"training configuration must be a table, got {type(config).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls.from_dict({k: v for k, v in config.items() if k in names}, "training")


@dataclass
class RunConfig(Params):
    dataset: DataConfig = field(default_factory=DataConfig)
    network: PluginRef = field(default_factory=lambda: PluginRef("mlp"))
    training: TrainingConfig = field(default_factory=TrainingConfig)
    device: PluginRef = field(default_factory=lambda: PluginRef("synaptic"))
    crossbar: CrossbarConfig = field(default_factory=CrossbarConfig)
    noise: PluginRef | None = field(default_factory=lambda: PluginRef("gaussian", {"sigma": 0.1}))  # test-set noise
    energy: PluginRef | None = field(default_factory=lambda: PluginRef("crossbar"))
    trials: int = 5
    seed: int = 0
    batch_size: int = 1000  # test images per evaluation batch (all trials at once)
    scenarios: list = field(default_factory=lambda: list(SCENARIOS))
    output: str | None = None
    #: a user's .keras model instead of the network plugin (``model = "my.keras"`` or a table)
    model: ModelConfig | None = None

    def validate(self) -> None:
        self.trials = check_int("run", "trials", self.trials, 1)
        self.seed = check_seed("run", "seed", self.seed)
        self.batch_size = check_int("run", "batch_size", self.batch_size, 1)
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise ConfigError(f"scenarios must be a non-empty subset of {', '.join(SCENARIOS)}, got {bad or '[]'}")
        for key in PLUGIN_FIELDS:  # set directly (RunConfig(noise="speckle:0.2")): as from a file
            value = getattr(self, key)
            if not isinstance(value, PluginRef):
                table = plugin_table(key, value)
                setattr(self, key, None if table is None else PluginRef.from_dict(table, key))

    @classmethod
    def from_dict(cls, data, path: str = ""):
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"the run configuration must be a table, got {data!r}")
        data = dict(data or {})
        if isinstance(data.get("model"), str):  # model = "my.keras"
            data["model"] = {"file": data["model"]}
        if isinstance(data.get("dataset"), str):  # dataset = "mnist" or "my.npz"
            data["dataset"] = dataset_table(data["dataset"])
        for key in PLUGIN_FIELDS:
            if key in data:
                data[key] = plugin_table(key, data[key])
        return super().from_dict(data, path)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """A TOML configuration (``nvmkit run --dry-run`` writes one), or the ``config`` recorded in
        a result JSON (``nvmkit run -o result.json``): either re-runs the same point."""
        p = Path(path)
        text = read_text_file(p, "config")
        try:
            if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):  # no TOML file starts with {
                data = result_config(text, str(p))
            else:
                data = cls.from_toml(text, source=str(p)).to_dict()
            # the file's relative paths are read from its own folder, whatever the working folder
            return cls.from_dict(rebase_paths(data, p.parent))
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None


def rebase_paths(config: dict, source: str | Path | None = None, target: str | Path | None = None,
                 reg=None) -> dict:
    """A copy of a run configuration (``RunConfig.to_dict()``, or a resolved one) with every relative
    path in it, read from folder ``source``, written so that it names the same file from folder
    ``target`` (None: the working folder, both ways).

    The one place where paths in files are resolved: reading a configuration, experiment or result
    file (``source`` = its folder) and writing a result JSON (``target`` = its folder),
    so that a file names its data, model and tables relative to itself (as pyproject.toml does) and
    runs from any working folder. The paths: ``dataset.file``, ``dataset.data_dir``, ``model.file``,
    ``output`` and each plugin's ``path_params``. An absolute path and one starting with ``~`` are
    kept as they are, read or written; a relative one is joined to ``source`` when read, and
    written relative to ``target`` with ``/`` (or absolute when it lies on another drive, on
    Windows).
    """
    import copy

    out = copy.deepcopy(config)

    def move(table, key: str) -> None:
        if isinstance(table, dict) and isinstance(table.get(key), str) and table[key].strip():
            table[key] = _rebase_path(table[key], source, target)

    move(out.get("dataset"), "file")
    move(out.get("dataset"), "data_dir")
    move(out.get("model"), "file")
    move(out, "output")
    for params, name in plugin_path_params(out, reg):
        move(params, name)
    return out


def plugin_path_params(config: dict, reg=None) -> list[tuple[dict, str]]:
    """(the plugin's params table, the parameter's name) for every path parameter (a plugin's
    ``path_params``) of the plugins a configuration names; unknown plugins are skipped (``resolve``
    names them with the fix)."""
    from nvmkit.core.errors import NvmkitError
    from nvmkit.core.registry import get_registry

    found = []
    for key, kind in PLUGIN_FIELDS.items():
        ref = config.get(key)
        if not (isinstance(ref, dict) and isinstance(ref.get("params"), dict) and ref.get("name")):
            continue
        try:
            names = (reg or get_registry()).get(kind, str(ref["name"])).path_params
        except NvmkitError:
            continue
        found.extend((ref["params"], name) for name in names)
    return found


def _rebase_path(path: str, source: str | Path | None, target: str | Path | None) -> str:
    """``path`` as written in folder ``source``, as seen from folder ``target`` (see rebase_paths)."""
    if path.startswith("~") or Path(path).is_absolute():  # as the user wrote it: kept
        return path
    joined = Path(source) / path if source is not None else Path(path)
    if target is None:
        return str(joined)
    # from the target folder's real location (the OS resolves a file's '..' from there) to the
    # file's absolute path through its own links (so a linked data folder stays named as given)
    here, there = os.path.abspath(joined), os.path.realpath(target)
    if os.path.splitdrive(here)[0].lower() != os.path.splitdrive(there)[0].lower():
        return here  # no relative path leads to another drive (Windows): the absolute one
    return Path(os.path.relpath(here, there)).as_posix()


def is_data_file(value: str) -> bool:
    """Whether ``--dataset VALUE`` names a file (an .npz, or any existing path) rather than a set."""
    return str(value).lower().endswith(".npz") or Path(str(value)).expanduser().is_file()


def dataset_table(value: str) -> dict:
    """``--dataset`` as a table: a bundled set's name or a data file's path."""
    if Path(str(value)).expanduser().is_dir():
        raise ConfigError(f"dataset {value} is a folder: pass a Keras-cache-layout folder as "
                          "--data-dir FOLDER with --dataset mnist or fashion-mnist, or an .npz file as --dataset")
    return {"file": str(value)} if is_data_file(value) else {"name": str(value)}


def network_label(resolved: dict) -> str:
    """What ran, in a word: the network plugin's name, or the user's model file name."""
    model = resolved.get("model")
    if isinstance(model, dict) and model.get("file"):
        return Path(str(model["file"])).name
    return str((resolved.get("network") or {}).get("name") or "")


def result_config(text: str, source: str) -> dict:
    """The configuration recorded in a result JSON, ready to run again.

    Its ``output`` is dropped: re-running a result writes only where the new run is told to (-o),
    never over the result it was read from. Its data is the kind it ran on (sample or full).
    """
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON ({exc}); pass a result JSON written by "
                          "nvmkit run -o, or a TOML configuration") from None
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"{source} is not an nvmkit result (no 'config' table); pass a result JSON "
                          "written by nvmkit run -o, or a TOML configuration")
    config = dict(config)
    config.pop("output", None)
    # the run writes its seed twice (config.seed and seed, at the top, where it is seen first): a
    # hand edit of one of them would rerun under the other seed without a word
    top = data.get("seed")
    if "seed" in config and top is not None and top != config["seed"]:
        raise ConfigError(f"{source}: seed ({top!r}) and config.seed ({config['seed']!r}) differ, so "
                          "the file was edited; set both to the seed to run")
    # a result written before runs recorded the kind of data they used says source "auto", which
    # could pick other data here: take the kind its dataset record names
    table, record = config.get("dataset"), data.get("dataset")
    if isinstance(table, dict) and table.get("source") == "auto" and not table.get("file") \
            and isinstance(record, dict) and isinstance(record.get("sample"), bool):
        config["dataset"] = {**table, "source": "sample" if record["sample"] else "full"}
    return config


#: the plugin fields of a run -> their plugin kind; the optional ones are turned off by none
PLUGIN_FIELDS = {"network": "network", "device": "device", "noise": "noise", "energy": "energy"}
OPTIONAL_PLUGINS = ("noise", "energy")
_EXAMPLES = {"network": "mlp:hidden=64", "device": "synaptic:0.05", "noise": "gaussian:0.1", "energy": "crossbar"}


def plugin_table(key: str, value) -> dict | None:
    """A plugin field as a user writes it -> ``{"name": ..., "params": {...}}`` (or None: off).

    ``value`` is a spec string (the grammar of :mod:`nvmkit.core.spec`: a bare value is resolved
    to the plugin's first parameter here, so no placeholder key survives), a table (one without
    ``name`` keeps the default plugin, e.g. ``[network.params]`` alone), or none/"none" for the
    optional ``noise`` and ``energy``.
    """
    if isinstance(value, str) and value.strip().lower() in (*NONE_WORDS, ""):
        value = None
    if value is None:
        if key in OPTIONAL_PLUGINS:
            return None
        raise ConfigError(f"{key} cannot be none; name a {key}, e.g. {key} = \"{_EXAMPLES[key]}\"")
    if isinstance(value, str):
        name, params = spec_params(PLUGIN_FIELDS[key], value)
        return {"name": name, "params": params}
    if isinstance(value, PluginRef):
        return value.to_dict()
    if isinstance(value, dict):
        if "name" not in value:
            default = getattr(RunConfig(), key)
            return {"name": default.name if default else "", **value}
        return dict(value)
    raise ConfigError(f"{key} must be a table [{key}] or a spec such as \"{_EXAMPLES[key]}\", got {value!r}")


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in a nested dict, creating tables on the way."""
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"cannot set {dotted}: {k} is not a table")
    cur[keys[-1]] = value
