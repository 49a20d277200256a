"""Plugin loading and lookup by kind and name.

Plugins are loaded from the ``nvmkit`` entry-point group with pluggy's
``load_setuptools_entrypoints``, so a third-party distribution and nvmkit's own bundled plugins
take the same path. A broken plugin is reported by its entry-point name in
``Registry.load_errors`` (shown by ``nvmkit plugins`` and failed by ``nvmkit plugins check``) and
every other plugin keeps working:

- an entry point that fails to import, or whose hook functions do not match nvmkit's hooks (a
  wrong signature, a misspelt hook name), is checked on a scratch plugin manager first and blocked;
- a hook that raises or returns something other than a list of classes of its kind is skipped;
- a name used twice: nvmkit's own bundled plugin keeps it and the third-party one is left out;
  between two third-party plugins neither is used, since either choice would be silent.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

import pluggy

from nvmkit.core import hookspecs
from nvmkit.core._quiet import quiet_stderr
from nvmkit.core.device import Device
from nvmkit.core.energy import EnergyEstimator
from nvmkit.core.errors import ConfigError, PluginError
from nvmkit.core.network import NetworkMapper
from nvmkit.core.noise import NoiseInjector
from nvmkit.core.spec import Spec, parse_spec

ENTRY_POINT_GROUP = "nvmkit"

# kind -> the hook that provides it
KINDS = {
    "device": "nvmkit_devices",
    "noise": "nvmkit_noise_injectors",
    "network": "nvmkit_network_mappers",
    "energy": "nvmkit_energy_estimators",
}
# kind -> the abstract type every class of that kind subclasses
BASES = {"device": Device, "noise": NoiseInjector, "network": NetworkMapper, "energy": EnergyEstimator}
#: the distribution whose plugins are nvmkit's own (they win a name clash)
BUNDLED_DISTRIBUTION = "nvmkit"


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
        self._load_errors: dict[str, str] = dict(load_errors or {})
        self._table: dict[str, dict[str, PluginInfo]] | None = None

    @property
    def load_errors(self) -> dict[str, str]:
        """Entry-point name -> what is wrong with it (complete once the plugins' hooks have run)."""
        self.table  # a hook's own problems are found when the table is built
        return self._load_errors

    # -- building the table -------------------------------------------------------------------
    def _sources(self) -> dict[int, tuple[str, str]]:
        """id(plugin) -> (distribution name, "name version")."""
        sources = {}
        for plugin, dist in self.pm.list_plugin_distinfo():
            sources[id(plugin)] = (dist.project_name, f"{dist.project_name} {dist.version}")
        return sources

    def _report(self, plugin: str, message: str) -> None:
        """Record a problem of entry point ``plugin``; several problems are joined."""
        old = self._load_errors.get(plugin)
        self._load_errors[plugin] = f"{old}; {message}" if old else message

    def _build(self) -> dict[str, dict[str, PluginInfo]]:
        sources = self._sources()
        candidates: dict[str, dict[str, list[tuple[PluginInfo, str]]]] = {k: {} for k in KINDS}
        for kind, hookname in KINDS.items():
            hook = getattr(self.pm.hook, hookname)
            for impl in hook.get_hookimpls():
                pname = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                dist, source = sources.get(id(impl.plugin), ("", getattr(impl.plugin, "__name__", pname)))
                for cls in self._classes(kind, hookname, impl, pname):
                    candidates[kind].setdefault(cls.name, []).append((PluginInfo(kind, cls.name, cls, source, pname),
                                                                      dist))
        table: dict[str, dict[str, PluginInfo]] = {k: {} for k in KINDS}
        for kind, by_name in candidates.items():
            for name, found in by_name.items():
                keep = self._resolve_clash(kind, name, found)
                if keep is not None:
                    table[kind][name] = keep
        return table

    def _classes(self, kind: str, hookname: str, impl, pname: str) -> list[type]:
        """The classes one hook implementation returns; anything else is reported and dropped."""
        try:
            returned = impl.function()
        except Exception as exc:  # a broken hook must not hide the others
            self._report(pname, f"{hookname}() raised {type(exc).__name__}: {exc}")
            return []
        if returned is None:
            return []
        if not isinstance(returned, (list, tuple)):
            what = returned.__name__ if isinstance(returned, type) else type(returned).__name__
            self._report(pname, f"{hookname}() returned {what}, not a list of classes; "
                                f"return [{what}] (a list, even for one class)")
            return []
        base = BASES[kind]
        classes = []
        for cls in returned:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                self._report(pname, f"{hookname}() returned {cls!r}, not a subclass of nvmkit.{base.__name__}")
            elif not isinstance(getattr(cls, "name", None), str) or not cls.name:
                self._report(pname, f"{hookname}() returned {cls.__name__} without a name; set name = \"...\"")
            else:
                classes.append(cls)
        return classes

    def _resolve_clash(self, kind: str, name: str, found: list[tuple[PluginInfo, str]]) -> PluginInfo | None:
        """One plugin per name: nvmkit's own wins over a third party; two third parties both lose."""
        if len(found) == 1:
            return found[0][0]
        bundled = [info for info, dist in found if dist == BUNDLED_DISTRIBUTION]
        keep = bundled[0] if len(bundled) == 1 else None
        for info, _ in found:
            if info is keep:
                continue
            if keep is not None:
                self._report(info.plugin, f"{kind} '{name}' ({info.cls.__module__}.{info.cls.__name__}) is left "
                                          f"out: nvmkit's bundled {kind} has that name; rename yours")
            else:
                others = ", ".join(f"{o.cls.__module__} (from {o.source})" for o, _ in found if o is not info)
                self._report(info.plugin, f"{kind} '{name}' ({info.cls.__module__}, from {info.source}) is left "
                                          f"out: {others} has the same name; uninstall or rename one of them")
        return keep

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
            broken = [p for p, msg in self.load_errors.items() if name in p or f"{kind} '{name}'" in msg]
            if broken:
                hint = f" (plugin {broken[0]!r} failed to load: {self.load_errors[broken[0]]})"
            plural = "energy estimators" if kind == "energy" else f"{kind}s"
            raise PluginError(f"unknown {kind} '{name}'{hint}; known {plural}: {known}") from None

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
    loaded: dict[int, str] = {}  # id(plugin object) -> entry point name
    named: dict[str, str] = {}  # entry point name -> what it points to
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        origin = f" from {dist.name}" if dist is not None else ""
        if ep.name in named:
            if named[ep.name] != f"{ep.value}{origin}":  # pluggy silently loads only the first
                errors[ep.name] = (f"entry point name {ep.name!r} is used by {named[ep.name]} and by "
                                   f"{ep.value}{origin}; only the first is loaded: rename one")
            continue
        named[ep.name] = f"{ep.value}{origin}"
        try:
            with quiet_stderr():
                plugin = ep.load()
        except Exception as exc:
            errors[ep.name] = f"not loaded: import of {ep.value}{origin} failed: {type(exc).__name__}: {exc}"
            pm.set_blocked(ep.name)
            continue
        if id(plugin) in loaded and loaded[id(plugin)] != ep.name:
            # pluggy refuses one object under two names, and would take every plugin down with it
            errors[ep.name] = (f"not loaded: {ep.value}{origin} is already registered as entry point "
                               f"{loaded[id(plugin)]!r}")
            pm.set_blocked(ep.name)
            continue
        problem = _hook_mismatch(plugin, ep.name)
        if problem:
            errors[ep.name] = f"not loaded: {ep.value}{origin} does not match nvmkit's hooks: {problem}"
            pm.set_blocked(ep.name)
            continue
        loaded[id(plugin)] = ep.name
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm, errors


def _hook_mismatch(plugin, name: str) -> str | None:
    """Why pluggy would refuse ``plugin`` (a hookimpl's arguments not in the hookspec, a hook name
    nvmkit does not define), found on a scratch manager so that the real one never sees it."""
    scratch = pluggy.PluginManager("nvmkit")
    scratch.add_hookspecs(hookspecs)
    try:
        scratch.register(plugin, name=name)
        scratch.check_pending()
    except pluggy.PluginValidationError as exc:
        return " ".join(str(exc).split())
    except ValueError as exc:
        return str(exc)
    return None


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
