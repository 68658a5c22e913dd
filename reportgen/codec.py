"""A frozen dataclass tree to plain JSON and back, every field kept and every value type-checked on the way in.

The result cache stores each model's ``ModelReport`` with it (``report.json``
leaves some fields out, so it cannot be read back whole). Reading back never
runs code (no pickle): a value that does not fit its field's declared type
raises ``CodecError``, so a corrupt or foreign cache entry is refused, never trusted.
No torch here.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from .errors import ReportgenError


class CodecError(ReportgenError):
    """Stored data that does not fit the dataclass it claims to be."""


def encode(value: Any, strict: bool = True) -> Any:
    """value as JSON types: a dataclass as an object of all its fields, an enum as its value, tuples as lists.

    Any other type raises CodecError, or with ``strict=False`` becomes its repr (for hashing, never for reading back).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name), strict) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return encode(value.value, strict)
    if isinstance(value, (list, tuple)):
        return [encode(item, strict) for item in value]
    if isinstance(value, dict):
        return {str(key): encode(item, strict) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if not strict:
        return f"{type(value).__name__}:{value!r}"
    raise CodecError(f"cannot encode a {type(value).__name__}")


def decode(kind: Any, data: Any, where: str = "$") -> Any:
    """data (as ``encode`` wrote it) back into a value of the type ``kind``; CodecError where it does not fit."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return _plain(data, where)
    if origin in (typing.Union, types.UnionType):
        return _union(typing.get_args(kind), data, where)
    if origin is tuple:
        return _tuple(typing.get_args(kind), data, where)
    if origin is dict:
        key_kind, value_kind = typing.get_args(kind)
        _expect(isinstance(data, dict), where, "an object")
        return {decode(key_kind, key, where): decode(value_kind, item, f"{where}.{key}") for key, item in data.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass(kind, data, where)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(data)
        except ValueError:
            raise CodecError(f"{where}: {data!r} is not a {kind.__name__}") from None
    if kind is type(None):
        _expect(data is None, where, "null")
        return None
    if kind is float:
        _expect(isinstance(data, (int, float)) and not isinstance(data, bool), where, "a number")
        return float(data)
    if kind in (int, str, bool):
        _expect(isinstance(data, kind) and (kind is bool or not isinstance(data, bool)), where, f"a {kind.__name__}")
        return data
    raise CodecError(f"{where}: cannot decode the type {kind!r}")


def _dataclass(kind: type, data: Any, where: str) -> Any:
    _expect(isinstance(data, dict), where, f"a {kind.__name__} object")
    fields = {f.name: f for f in dataclasses.fields(kind) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CodecError(f"{where}: {kind.__name__} has no field {', '.join(unknown)}")
    missing = sorted(name for name in fields if name not in data)
    if missing:
        raise CodecError(f"{where}: {kind.__name__} lacks {', '.join(missing)}")
    hints = typing.get_type_hints(kind)
    return kind(**{name: decode(hints[name], data[name], f"{where}.{name}") for name in fields})


def _tuple(args: tuple[Any, ...], data: Any, where: str) -> tuple[Any, ...]:
    _expect(isinstance(data, list), where, "a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(decode(args[0], item, f"{where}[{n}]") for n, item in enumerate(data))
    _expect(len(data) == len(args), where, f"a list of {len(args)}")
    return tuple(decode(arg, item, f"{where}[{n}]") for n, (arg, item) in enumerate(zip(args, data)))


def _union(args: tuple[Any, ...], data: Any, where: str) -> Any:
    if data is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return decode(arg, data, where)
        except CodecError:
            continue
    raise CodecError(f"{where}: {data!r} fits none of {args!r}")


def _plain(data: Any, where: str) -> Any:
    """A value typed Any: JSON types only (lists read back as tuples, as the frozen model holds them)."""
    if isinstance(data, list):
        return tuple(_plain(item, where) for item in data)
    if isinstance(data, dict):
        return {str(key): _plain(item, where) for key, item in data.items()}
    _expect(data is None or isinstance(data, (bool, int, float, str)), where, "a JSON value")
    return data


def _expect(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise CodecError(f"{where}: expected {what}")
