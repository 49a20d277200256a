"""The one grammar of plugin specs and typed values, shared by every way a user writes them.

``nvmkit run --device reram:levels=64``, ``nvmkit energy --network cnn:filters=16-32``, a TOML
string such as ``noise = "gaussian:0.1"``, a sweep grid, ``--set KEY=VALUE`` and the filters of
``nvmkit results`` all read text through this module, so a value means the same everywhere
(docs/plugins.md, "Spec grammar", is the user's description of it)::

    spec   := NAME [ ":" item { "," item } ]
    item   := VALUE                 (first item only: the plugin's first parameter)
            | KEY "=" VALUE
    VALUE  := none | null           -> None (unset: the default, or off)
            | true | false          -> bool
            | integer | float       -> 3, -1, 0.05, 1e-8, inf
            | number-number...      -> a list of numbers, e.g. 16-32 -> [16, 32]
            | [a, b] | "text" | {k = v}   -> a TOML array, string or inline table
            | anything else         -> the text itself, e.g. reram or fashion-mnist

Commas inside ``[...]``, ``{...}`` or quotes do not split items, so ``cnn:filters=[16, 32]`` and
``cnn:filters=16-32`` are the same spec. Words are case-insensitive (``None``, ``TRUE``); a
string that reads like one of them is quoted (``"none"``).

A bare value is not stored under a placeholder key: :func:`nvmkit.core.registry.spec_params`
resolves it to the plugin's first constructor parameter (``gaussian:0.1`` -> ``{"sigma": 0.1}``), so a validated
configuration only ever holds named parameters.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from nvmkit.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NONE_WORDS = ("none", "null")
_INT = re.compile(r"[+-]?\d+")
_NUMBER = r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?"
_NUMBER_LIST = re.compile(rf"{_NUMBER}(?:-{_NUMBER})+")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_EXAMPLE = "e.g. gaussian:0.1 or reram:levels=64,read_time=2e-8"


def parse_value(text: str) -> Any:
    """One typed value from text, by the grammar above (``"16-32"`` -> ``[16, 32]``)."""
    if not isinstance(text, str):
        raise ConfigError(f"expected text, got {text!r}")
    raw = text.strip()
    if not raw:
        raise ConfigError("empty value; write a value (none for no value)")
    low = raw.lower()
    if low in NONE_WORDS:
        return None
    if low in ("true", "false"):
        return low == "true"
    if _INT.fullmatch(raw):
        return int(raw)
    try:
        return float(raw)
    except ValueError:
        pass
    if _NUMBER_LIST.fullmatch(raw):
        return [_number(part) for part in raw.split("-")]
    if raw[0] in "[{\"'":
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"bad value {raw!r}: write a list as [1, 2] or 1-2, quote text as \"...\", "
                              "a table as {key = 1}") from None
    return raw


def _number(text: str):
    return int(text) if _INT.fullmatch(text) else float(text)


@dataclass(frozen=True)
class Spec:
    """A parsed spec: the plugin's name, its named parameters and at most one bare value."""

    name: str
    params: dict = field(default_factory=dict)
    positional: tuple = ()  # () or (value,): the value for the plugin's first parameter

    def __str__(self) -> str:
        return format_spec(self.name, self.params, self.positional)


def parse_spec(text: str) -> Spec:
    """``NAME``, ``NAME:VALUE`` or ``NAME:[VALUE,]key=value,...`` -> :class:`Spec`."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"empty plugin spec {text!r}; write NAME or NAME:VALUE, {_EXAMPLE}")
    spec = text.strip()
    name, colon, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"plugin spec {spec!r} has no name; write NAME or NAME:VALUE, {_EXAMPLE}")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"plugin spec {spec!r}: {name!r} is not a plugin name; write NAME or NAME:VALUE, "
                          f"{_EXAMPLE}")
    if not colon:
        return Spec(name)
    if not rest.strip():
        raise ConfigError(f"plugin spec {spec!r} ends in ':'; give a value after it or write just {name!r}")
    params: dict[str, Any] = {}
    positional: tuple = ()
    for i, item in enumerate(_split_items(rest, spec)):
        key, eq, value = item.partition("=")
        if eq and _KEY.fullmatch(key.strip()):
            key = key.strip()
            if key in params:
                raise ConfigError(f"plugin spec {spec!r} sets {key} twice; keep one")
            params[key] = _spec_value(value, spec, key)
        elif i == 0:
            positional = (_spec_value(item, spec, None),)
        else:
            raise ConfigError(f"plugin spec {spec!r}: {item.strip()!r} is not key=value; only the first item "
                              f"may be a bare value, {_EXAMPLE}")
    return Spec(name, params, positional)


def _split_items(rest: str, spec: str) -> list[str]:
    """Split at commas outside brackets, braces and quotes."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(rest):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(rest[start:i])
            start = i + 1
    items.append(rest[start:])
    if quote or depth:
        raise ConfigError(f"plugin spec {spec!r}: unclosed {quote or 'bracket'}; close it")
    if any(not item.strip() for item in items):
        raise ConfigError(f"plugin spec {spec!r} has an empty item; remove the extra ','")
    return items


def _spec_value(text: str, spec: str, key: str | None):
    try:
        return parse_value(text)
    except ConfigError as exc:
        where = f" {key}:" if key else ""
        raise ConfigError(f"plugin spec {spec!r}:{where} {exc}") from None


def format_spec(name: str, params: dict | None = None, positional: tuple = ()) -> str:
    """The spec text of a name and parameters (the inverse of :func:`parse_spec` for plain values)."""
    items = [_format_value(v) for v in positional]
    items += [f"{k}={_format_value(v)}" for k, v in (params or {}).items()]
    return f"{name}:{','.join(items)}" if items else name


def _format_value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str) and v.strip() == v and v and _reads_as_itself(v):
        return v
    return _toml(v)


def _toml(v) -> str:
    """A TOML inline value (strings quoted), which :func:`parse_value` reads back."""
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(x)}" for k, x in v.items()) + "}"
    return _format_value(v)


def _reads_as_itself(text: str) -> bool:
    if any(c in text for c in ",=:"):
        return False
    try:
        return parse_value(text) == text
    except ConfigError:
        return False
