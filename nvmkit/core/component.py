"""The small base type shared by every pluggable object.

Following scikit-learn and Keras, a component takes explicit keyword parameters in its constructor,
validates them there (so a bad value fails before any work is done) and stores each one under an
attribute of the same name. That convention is what makes the config round trip generic:
``get_config()`` reads the constructor signature back, ``from_config()`` calls the constructor.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

from nvmkit.core.errors import ConfigError


class Component:
    """Base class of devices, noise injectors, network mappers and energy estimators.

    Subclasses set ``name`` (the registry key users type) and ``kind``; the first line of the class
    docstring is the one-line description shown by ``nvmkit plugins``.
    """

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = ""
    #: parameters that name a file or folder: a relative one written in a configuration file is read
    #: from that file's folder, and a result records it relative to the result's folder
    path_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def description(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]

    def get_config(self) -> dict[str, Any]:
        """Constructor parameters as plain data (JSON and TOML safe)."""
        return {n: _plain(getattr(self, n)) for n in self.param_names()}

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        unknown = sorted(set(config) - set(cls.param_names()))
        if unknown:
            raise ConfigError(
                f"{cls.kind} '{cls.name}' has no parameter {', '.join(map(repr, unknown))}; "
                f"valid parameters: {', '.join(cls.param_names()) or '(none)'}"
            )
        try:
            return cls(**config)
        except TypeError as exc:  # wrong types surface as TypeError from arithmetic in validation
            raise ConfigError(f"{cls.kind} '{cls.name}': {exc}") from None

    def to_toml(self) -> str:
        import tomli_w

        from nvmkit.core.params import drop_none  # TOML has no null: None means "use the default"

        return tomli_w.dumps({"name": self.name, "params": drop_none(self.get_config())})

    @classmethod
    def from_toml(cls, text: str):
        """Inverse of :meth:`to_toml` (``name`` must be this class's)."""
        from nvmkit.core.params import load_toml

        data = load_toml(text, f"{cls.kind} '{cls.name}' TOML")
        if data.get("name", cls.name) != cls.name:
            raise ConfigError(f"TOML describes {cls.kind} '{data.get('name')}', not '{cls.name}'")
        return cls.from_config(data.get("params", {}))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None  # mutable parameter holders are not hashable


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- validation helpers: each raises ConfigError with a message that names the fix ---------------

def check_nonnegative(owner: str, name: str, value) -> float:
    v = _number(owner, name, value)
    if v < 0:
        raise ConfigError(f"{owner}: {name} must be >= 0, got {value}; use a non-negative value")
    return v


def check_positive(owner: str, name: str, value) -> float:
    v = _number(owner, name, value)
    if v <= 0:
        raise ConfigError(f"{owner}: {name} must be > 0, got {value}; use a positive value")
    return v


def check_fraction(owner: str, name: str, value) -> float:
    v = _number(owner, name, value)
    if not 0 <= v <= 1:
        raise ConfigError(f"{owner}: {name} must lie in [0, 1], got {value}")
    return v


def check_int(owner: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise ConfigError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ConfigError(f"{owner}: {name} must be an integer >= {minimum}, got {value}")
    return int(value)


#: the largest seed: Keras seeds its generators (and numpy's legacy one) with 32 bits
SEED_MAX = 2**32 - 1


def check_seed(owner: str, name: str, value) -> int:
    """A seed every generator accepts: an integer in 0..2**32 - 1. A larger one would pass numpy's
    SeedSequence but stop ``keras.utils.set_random_seed`` with a traceback after the run started."""
    message = f"{owner}: {name} must be an integer in 0..{SEED_MAX} (2**32 - 1), got {value!r}"
    try:
        seed = check_int(owner, name, value, 0)
    except ConfigError:
        raise ConfigError(message) from None
    if seed > SEED_MAX:
        raise ConfigError(message)
    return seed


def _number(owner: str, name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{owner}: {name} must be finite, got {value!r}")
    return v
