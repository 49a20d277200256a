"""Plugin loading and lookup by kind and name.

Plugins are loaded from the ``nvmkit`` entry-point group with pluggy's
``load_setuptools_entrypoints``, so a third-party distribution and nvmkit's own bundled plugins
take the same path. Each entry point is imported once beforehand so that one that fails to import
is reported by name (and blocked) instead of taking every other plugin down with it.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

import pluggy

from nvmkit.core import hookspecs
from nvmkit.core._quiet import quiet_stderr
from nvmkit.core.errors import ConfigError, PluginError
from nvmkit.core.spec import Spec, parse_spec

ENTRY_POINT_GROUP = "nvmkit"

# kind -> the hook that provides it
KINDS = {
    "device": "nvmkit_devices",
    "noise": "nvmkit_noise_injectors",
    "network": "nvmkit_network_mappers",
    "energy": "nvmkit_energy_estimators",
}


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    cls: type
    source: str  # distribution name and version, or the registering module
    plugin: str  # the pluggy plugin (entry point) name

    @property
    def description(self) -> str:
        return self.cls.description() if hasattr(self.cls, "description") else ""


class Registry:
    """Resolves plugin classes by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, load_errors: dict[str, str] | None = None):
        self.pm = pm
        self.load_errors: dict[str, str] = dict(load_errors or {})
        self._table: dict[str, dict[str, PluginInfo]] | None = None

    # -- building the table -------------------------------------------------------------------
    def _sources(self) -> dict[int, str]:
        sources = {}
        for plugin, dist in self.pm.list_plugin_distinfo():
            sources[id(plugin)] = f"{dist.project_name} {dist.version}"
        return sources

    def _build(self) -> dict[str, dict[str, PluginInfo]]:
        table: dict[str, dict[str, PluginInfo]] = {k: {} for k in KINDS}
        sources = self._sources()
        for kind, hookname in KINDS.items():
            hook = getattr(self.pm.hook, hookname)
            for impl in hook.get_hookimpls():
                pname = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                source = sources.get(id(impl.plugin), getattr(impl.plugin, "__name__", pname))
                try:
                    classes = impl.function() or []
                except Exception as exc:  # a broken hook must not hide the others
                    self.load_errors[pname] = f"{hookname} raised {type(exc).__name__}: {exc}"
                    continue
                for cls in classes:
                    name = getattr(cls, "name", "")
                    if not name:
                        self.load_errors[pname] = f"{hookname} returned {cls!r} without a name"
                        continue
                    if name in table[kind]:
                        other = table[kind][name]
                        raise PluginError(
                            f"two {kind} plugins are named '{name}': {other.cls.__module__} "
                            f"(from {other.source}) and {cls.__module__} (from {source}); "
                            "uninstall or rename one of them"
                        )
                    table[kind][name] = PluginInfo(kind, name, cls, source, pname)
        return table

    @property
    def table(self) -> dict[str, dict[str, PluginInfo]]:
        if self._table is None:
            self._table = self._build()
        return self._table

    # -- lookups ------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self.table[kind])

    def info(self, kind: str, name: str) -> PluginInfo:
        self._check_kind(kind)
        try:
            return self.table[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "(none installed)"
            hint = ""
            broken = [p for p in self.load_errors if name in p]
            if broken:
                hint = f" (plugin {broken[0]!r} failed to load: {self.load_errors[broken[0]]})"
            raise PluginError(f"unknown {kind} '{name}'{hint}; known {kind}s: {known}") from None

    def get(self, kind: str, name: str) -> type:
        return self.info(kind, name).cls

    def create(self, kind: str, name: str, params: dict[str, Any] | None = None):
        """Instantiate plugin ``name`` of ``kind`` with validated parameters."""
        return self.get(kind, name).from_config(dict(params or {}))

    def all(self) -> list[PluginInfo]:
        return [info for kind in KINDS for _, info in sorted(self.table[kind].items())]

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown plugin kind '{kind}'; kinds: {', '.join(KINDS)}")


def make_plugin_manager() -> tuple[pluggy.PluginManager, dict[str, str]]:
    """A plugin manager with every loadable entry point of the ``nvmkit`` group registered."""
    pm = pluggy.PluginManager("nvmkit")
    pm.add_hookspecs(hookspecs)
    errors: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            with quiet_stderr():
                ep.load()
        except Exception as exc:
            dist = getattr(ep, "dist", None)
            origin = f" from {dist.name}" if dist is not None else ""
            errors[ep.name] = f"import of {ep.value}{origin} failed: {type(exc).__name__}: {exc}"
            pm.set_blocked(ep.name)
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin does not match nvmkit's hooks: {exc}") from None
    return pm, errors


_REGISTRY: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        pm, errors = make_plugin_manager()
        _REGISTRY = Registry(pm, errors)
    return _REGISTRY


def spec_params(kind: str, spec: str | Spec, registry=None) -> tuple[str, dict[str, Any]]:
    """(name, named parameters) of a spec, its bare value given to the plugin's first parameter.

    The registry is consulted only when there is a bare value (to learn that parameter's name).
    """
    s = parse_spec(spec) if isinstance(spec, str) else spec
    params = dict(s.params)
    if s.positional:
        cls = (registry or get_registry()).get(kind, s.name)
        first = cls.param_names()[:1]
        if not first:
            raise ConfigError(f"{kind} '{s.name}' takes no parameters; write just '{s.name}'")
        if first[0] in params:
            raise ConfigError(f"{kind} spec {str(s)!r} gives {first[0]} twice (as the bare value and by name); "
                              "keep one")
        params = {first[0]: s.positional[0], **params}
    return s.name, params


def create_from_spec(kind: str, spec: str | Spec, registry=None):
    """Instantiate a plugin from a spec such as ``gaussian:0.1`` or ``reram:levels=64``."""
    reg = registry or get_registry()
    name, params = spec_params(kind, spec, reg)
    return reg.create(kind, name, params)
