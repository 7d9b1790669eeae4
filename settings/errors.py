"""``ConfigError`` and the translation of msgspec's errors into one line naming the key.

msgspec reports ``Expected `int`, got `str` - at `$.styles[...].max_chars``: the path
hides dict keys (``[...]``) and the message names no value. ``from_validation`` walks
the schema and the parsed document along that path to name the key
(``styles.austen.max_chars: must be a number (int), got 'many'``).
"""
from __future__ import annotations

import re
import types
import typing
from typing import Any

import msgspec
from msgspec import UnsetType

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_STEP = re.compile(r"\.(\w+)|\[(\.\.\.|\d+)\]")
_FIELD = re.compile(r"^Object (?P<what>contains unknown|missing required) field `(?P<name>[^`]*)`")
# (singular, plural) names of the scalar types the schema uses.
_NOUNS = {bool: ("true or false", "true or false"), int: ("a number (int)", "numbers (int)"),
          float: ("a number (float)", "numbers (float)"), str: ("a string", "strings")}


class ConfigError(ValueError):
    """config.toml is wrong; the message starts with the offending key."""


def from_validation(exc: msgspec.ValidationError, doc: dict, schema: type) -> ConfigError:
    """``exc`` from decoding ``doc`` as ``schema``, as a ConfigError naming the key."""
    text = str(exc)
    found = _AT.search(text)
    message, path = (text[:found.start()], found["path"]) if found else (text, "")
    try:
        where, kind, value = _walk(doc, schema, path)
    except (LookupError, TypeError, AttributeError):  # a path we cannot follow: say it raw
        return ConfigError(f"{path.lstrip('.') or 'config'}: {message}")
    field = _FIELD.match(message)
    if field and field["what"] == "contains unknown":
        known = ", ".join(getattr(_plain(kind), "__struct_fields__", ()))
        return ConfigError(f"{_join(where, field['name'])}: unknown key (known: {known})")
    if field:
        return ConfigError(f"{_join(where, field['name'])}: required key missing")
    if message.startswith("Expected"):
        return ConfigError(f"{where}: must be {noun(kind)}, got {_short(value)}")
    return ConfigError(f"{where or 'config'}: {message}")


def _walk(doc: Any, schema: Any, path: str) -> tuple[str, Any, Any]:
    """(dotted key, schema type, value in ``doc``) at msgspec's ``path``."""
    where, kind, value = "", schema, doc
    for step in _STEP.finditer(path):
        name, index = step.groups()
        kind = _plain(kind)
        if name is not None:  # a Struct's field
            kind = typing.get_type_hints(kind, include_extras=True)[name]
            value = value[name]
            where = _join(where, name)
        elif index == "...":  # a dict's value: msgspec hides which key, find it
            item = typing.get_args(kind)[1]
            key = next(k for k, v in value.items() if _refused(v, item))
            kind, value, where = item, value[key], _join(where, str(key))
        else:  # a list's item
            kind, value = typing.get_args(kind)[0], value[int(index)]
            where = f"{where}[{index}]"
    return where, kind, value


def _refused(value: Any, kind: Any) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return True
    return False


def _plain(kind: Any) -> Any:
    """``kind`` without ``Annotated`` constraints and without ``UnsetType`` in a union."""
    if typing.get_origin(kind) is typing.Annotated:
        return _plain(typing.get_args(kind)[0])
    if isinstance(kind, types.UnionType):
        left = [k for k in typing.get_args(kind) if k is not UnsetType]
        return left[0] if len(left) == 1 else kind
    return kind


def noun(kind: Any, plural: bool = False) -> str:
    """What a value of schema type ``kind`` is, in words: "a list of strings"."""
    if isinstance(kind, types.UnionType):
        return " or ".join(noun(k, plural) for k in typing.get_args(kind) if k is not UnsetType)
    if typing.get_origin(kind) is typing.Annotated:
        base, *meta = typing.get_args(kind)
        if base is str and any(getattr(m, "min_length", 0) for m in meta):
            return "non-empty strings" if plural else "a non-empty string"
        return noun(base, plural)
    if kind in _NOUNS:
        return _NOUNS[kind][plural]
    if typing.get_origin(kind) in (tuple, list):
        return ("lists of " if plural else "a list of ") + noun(typing.get_args(kind)[0], True)
    return "tables" if plural else "a table"  # a Struct or a dict


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
