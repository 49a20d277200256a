"""Nested, validated parameter dataclasses (the CrossSim style) with a dict and TOML round trip.

A subclass of :class:`Params` is a plain dataclass whose fields are scalars, lists, dicts or other
``Params``. ``from_dict`` rejects unknown keys with the dotted path of the offending key and the
valid alternatives, so a typo in an experiment file is caught before anything runs.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

from nvmkit.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclasses.dataclass
class Params:
    def validate(self) -> None:
        """Raise ConfigError for bad values; called after construction from a dict."""

    def __post_init__(self) -> None:
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, Params) else _copy(v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, path: str = ""):
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{path or cls.__name__} must be a table, got {data!r}")
        data = dict(data or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            where = f"[{path}] " if path else ""
            raise ConfigError(
                f"{where}unknown key {unknown[0]!r}; valid keys: {', '.join(fields)}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in data.items():
            sub = _params_type(hints.get(name))
            if sub is not None and value is not None:
                if not isinstance(value, dict):
                    raise ConfigError(f"{_join(path, name)} must be a table, got {value!r}")
                value = sub.from_dict(value, _join(path, name))
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            msg = str(exc)
            # a message that already names where it comes from keeps its one prefix
            named = msg.startswith(("[", f"{path}:"))
            raise ConfigError(f"[{path}] {msg}" if path and not named else msg) from None
        except TypeError as exc:
            raise ConfigError(f"{path or cls.__name__}: {exc}") from None

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(drop_none(self.to_dict()))

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>"):
        return cls.from_dict(load_toml(text, source))


def load_toml(text: str, source: str = "<string>") -> dict:
    """Parse TOML; a syntax error becomes one line naming the file."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML ({exc}); fix the syntax") from None


def read_text_file(path, what: str) -> str:
    """The text of a configuration file, or a one-line ConfigError naming the path to check."""
    try:
        # UTF-8 whatever the locale (TOML is UTF-8); "-sig" drops the byte-order mark Windows editors
        # write, which TOML parsers refuse as "invalid statement"
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a UTF-8 text file"
        raise ConfigError(f"cannot read {what} file {path}: {reason}; check the path") from None


def _params_type(hint) -> type | None:
    """The Params subclass inside a hint such as ``Foo`` or ``Foo | None``."""
    for cand in (hint, *typing.get_args(hint)):
        if isinstance(cand, type) and issubclass(cand, Params):
            return cand
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_copy(x) for x in v]
    return v


def drop_none(v):
    if isinstance(v, dict):
        return {k: drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [drop_none(x) for x in v]
    return v
