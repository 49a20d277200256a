"""The run configuration: one experiment point, as flags, a TOML file or a dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .component import check_int
from .crossbar_config import CrossbarConfig
from .errors import ConfigError
from .params import Params

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

    def validate(self) -> None:
        from .data import _canonical_name

        self.name = _canonical_name(self.name)
        if self.source not in ("auto", "full", "sample"):
            raise ConfigError(f"dataset.source must be auto, full or sample, got {self.source!r}")


@dataclass
class TrainingParams(Params):
    """Training overrides; None means the network family's default."""

    optimizer: str | None = None
    learning_rate: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    sigma_neu: float | None = None  # std of pre-activation noise during training (the seed's levels)
    sigma_syn_target: float | None = None  # derive sigma_neu per layer from this synaptic noise
    use_cache: bool = True

    def validate(self) -> None:
        if self.sigma_neu is not None and self.sigma_syn_target is not None:
            raise ConfigError("give training.sigma_neu or training.sigma_syn_target, not both")
        for name in ("learning_rate", "sigma_neu", "sigma_syn_target"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or v < 0 or v != v):
                raise ConfigError(f"training.{name} must be a number >= 0, got {v!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, check_int("training", name, v, 1))


@dataclass
class RunConfig(Params):
    dataset: DataConfig = field(default_factory=DataConfig)
    network: PluginRef = field(default_factory=lambda: PluginRef("mlp"))
    training: TrainingParams = field(default_factory=TrainingParams)
    device: PluginRef = field(default_factory=lambda: PluginRef("synaptic"))
    crossbar: CrossbarConfig = field(default_factory=CrossbarConfig)
    noise: str | None = "gaussian:0.1"  # test-set noise spec, NAME:LEVEL
    energy: PluginRef | None = field(default_factory=lambda: PluginRef("crossbar"))
    trials: int = 5
    seed: int = 0
    batch_size: int = 1000  # test images per evaluation batch (all trials at once)
    scenarios: list = field(default_factory=lambda: list(SCENARIOS))
    output: str | None = None

    def validate(self) -> None:
        self.trials = check_int("run", "trials", self.trials, 1)
        self.seed = check_int("run", "seed", self.seed, 0)
        self.batch_size = check_int("run", "batch_size", self.batch_size, 1)
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise ConfigError(f"scenarios must be a non-empty subset of {', '.join(SCENARIOS)}, got {bad or '[]'}")
        if self.noise in ("", "none"):
            self.noise = None
        if isinstance(self.energy, str):  # TOML has no null: energy = "none" turns it off
            if self.energy.lower() != "none":
                raise ConfigError(f"energy must be a table [energy] name = ... or \"none\", got {self.energy!r}")
            self.energy = None

    @classmethod
    def from_dict(cls, data, path: str = ""):
        # a table that names only params (``[network.params]``) keeps the default plugin name
        data = dict(data or {})
        if isinstance(data.get("energy"), str) and data["energy"].lower() == "none":
            data["energy"] = None
        for key in ("network", "device", "energy"):
            if isinstance(data.get(key), dict) and "name" not in data[key]:
                default = getattr(cls(), key)
                data[key] = {"name": default.name if default else "", **data[key]}
        return super().from_dict(data, path)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror}; check the path") from None
        try:
            return cls.from_toml(text, source=str(p))
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in a nested dict, creating tables on the way."""
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"cannot set {dotted}: {k} is not a table")
    cur[keys[-1]] = value
