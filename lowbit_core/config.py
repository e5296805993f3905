"""Typed configuration: frozen dataclasses, built from dicts and dotted overrides with type checks.

Every family's configuration is a tree of frozen dataclasses with defaults. Sweeps state only what
differs, as dotted keys (``"multi.lr"``). This module turns dicts and ``key=value`` strings into such
trees and back into flat dicts (``flatten``), and raises :class:`ConfigError` -- one line that names
the key and what is valid -- for unknown keys, wrong types and values outside a field's
``Literal[...]`` choices. A field open to plug-ins is ``Annotated[str, OneOf(registry)]``
(:class:`lowbit_core.registry.OneOf`): its choices are the registry's names when the config is
built, so an estimator or model a user registered is as valid as a built-in. Range checks live in
each dataclass's ``__post_init__``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from typing import Annotated, Any, Literal, get_args, get_origin


class ConfigError(ValueError):
    """A configuration is invalid; the message is one line naming the key and what is valid."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@functools.cache
def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def dotted_keys(cls: type, prefix: str = "") -> dict[str, Any]:
    """All leaf keys of a config class as ``{"a.b": type}`` (cached: type hints are slow to resolve)."""
    out: dict[str, Any] = {}
    for name, tp in _hints(cls).items():
        if name not in field_names(cls):
            continue
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            out.update(dotted_keys(tp, key + "."))
        else:
            out[key] = tp
    return out


def _one_of(tp: Any):
    """The :class:`~lowbit_core.registry.OneOf` of an ``Annotated[str, OneOf(...)]`` type, else None."""
    if get_origin(tp) is Annotated:
        return next((m for m in tp.__metadata__ if hasattr(m, "choices")), None)
    return None


def _type_name(tp: Any) -> str:
    """'an int', 'a float', 'a tuple of ints', 'one of ...' -- for error messages."""
    if _one_of(tp) is not None:
        return "one of " + ", ".join(repr(a) for a in _one_of(tp).choices())
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is tuple:
        return f"a tuple of {getattr(get_args(tp)[0], '__name__', 'value')}s"
    return {int: "an int", float: "a float", str: "a string", bool: "true or false"}.get(tp, str(tp))


def check_value(key: str, tp: Any, value: Any) -> Any:
    """Return ``value`` converted to ``tp`` (int -> float, list -> tuple) or raise ConfigError."""
    origin = get_origin(tp)
    if origin is Annotated:
        one_of = _one_of(tp)
        if one_of is not None:
            if not isinstance(value, str) or value not in one_of.choices():
                raise ConfigError(f"{key}={value!r} is not valid; valid: {', '.join(map(repr, one_of.choices()))}")
            return value
        return check_value(key, get_args(tp)[0], value)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; valid: {', '.join(map(repr, choices))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
        inner = get_args(tp)[0]
        return tuple(check_value(f"{key}[{i}]", inner, v) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a float, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type for {key}: {tp}")


def parse_text(key: str, tp: Any, text: str) -> Any:
    """Parse a command-line ``value`` for a field of type ``tp`` (JSON for numbers/bools/tuples)."""
    origin = get_origin(tp)
    if tp is str or _one_of(tp) is not None or (origin is Literal and all(isinstance(a, str) for a in get_args(tp))):
        return check_value(key, tp, text)
    if tp is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key} must be true or false, got {text!r}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {text!r}") from None
    return check_value(key, tp, value)


def from_dict(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    data = dict(data or {})
    hints = _hints(cls)
    names = field_names(cls)
    unknown = sorted(set(data) - set(names))
    if unknown:
        _refuse_renamed(cls, unknown[0], prefix)
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s}; valid keys here: {', '.join(prefix + n for n in names)}"
        )
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp, value = hints[name], data[name]
        if dataclasses.is_dataclass(tp):
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name} must be a mapping, got {value!r}")
            kwargs[name] = from_dict(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = check_value(prefix + name, tp, value)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """Nested plain dict of a config (tuples kept as lists, so it is JSON-able)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of a config tree; tuples become JSON text (groupable)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        elif isinstance(value, tuple):
            out[key] = json.dumps(list(value))
        else:
            out[key] = value
    return out


def nest(flat: dict[str, Any]) -> dict:
    """Inverse of dotted keys: ``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _refuse_renamed(cls: type, name: str, prefix: str) -> None:
    """ConfigError naming the new key when ``name`` is an old key of ``cls`` (its ``RENAMED`` class
    attribute, {old field: new field})."""
    new = getattr(cls, "RENAMED", {}).get(name)
    if new is not None:
        raise ConfigError(f"key {prefix}{name} was renamed {prefix}{new}; use {prefix}{new}")


def resolve_key(cls: type, key: str) -> Any:
    """Type of the leaf ``key`` in ``cls``, or ConfigError listing the valid keys."""
    keys = dotted_keys(cls)
    if key not in keys:
        *parents, leaf = key.split(".")
        node = cls
        for p in parents:
            node = _hints(node).get(p) if p in field_names(node) else None
            if node is None or not dataclasses.is_dataclass(node):
                break
        else:
            _refuse_renamed(node, leaf, "".join(p + "." for p in parents))
        close = [k for k in keys if k.split(".")[-1] == key.split(".")[-1]]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown key {key!r}{hint}; valid keys: {', '.join(sorted(keys))}")
    return keys[key]


def with_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """A copy of ``cfg`` with dotted-key ``overrides`` applied, checked and re-validated."""
    nested = to_dict(cfg)
    for key, value in overrides.items():
        tp = resolve_key(type(cfg), key)
        value = check_value(key, tp, value)
        node = nested
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return from_dict(type(cfg), nested)
