"""Plain typed classes from and to the JSON of the API, without pydantic: a reader that checks each field as the
models do, and the JSON form of a dataclass (``Wire.to_wire``, as ``KubeModel.to_wire``).

The checks are the models' own (types, required fields, defaults, lengths, patterns, bounds, enumerations), on the
JSON types the API server serves. The models also convert some values the CRD schema refuses (a number written as
a string, ``"50"``); the reader refuses those, as the API server does. Keys are the camelCase wire names only (the
models also take the Python names, which no object served by the API server carries).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, ClassVar, TypeVar, overload

T = TypeVar("T")
S = TypeVar("S", bound=str)


class Refused(ValueError):
    """An object (or one of its fields) that does not fit the kind's schema."""


class _Required:
    """The default of a field that must be given."""


REQUIRED = _Required()
_ABSENT = object()


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class Fields:
    """One JSON object being read: each method returns a field, checked, or raises ``Refused``.

    ``default`` is what an absent field reads as; ``REQUIRED`` refuses an absent field. A field given as ``null``
    reads as None when its default is None (an optional field), and is refused otherwise (as the models refuse
    ``null`` for a field typed without None).
    """

    __slots__ = ("_raw", "_where")

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise Refused(f"{where}: expected an object")
        self._raw: Mapping[str, Any] = raw
        self._where = where

    def _given(self, key: str, default: object) -> object:
        """The value given for ``key``, or ``_ABSENT`` when the field takes its default (or None)."""
        value = self._raw.get(key, _ABSENT)
        if value is _ABSENT:
            if default is REQUIRED:
                raise Refused(f"{self._where}.{key}: required")
            return _ABSENT
        if value is None:
            if default is not None:
                raise Refused(f"{self._where}.{key}: may not be null")
            return _ABSENT
        return value

    def _refuse(self, key: str, problem: str) -> Refused:
        return Refused(f"{self._where}.{key}: {problem}")

    @overload
    def text(
        self,
        key: str,
        default: None = None,
        *,
        min_length: int = 0,
        max_length: int | None = None,
        pattern: str | None = None,
    ) -> str | None: ...
    @overload
    def text(
        self,
        key: str,
        default: str | _Required,
        *,
        min_length: int = 0,
        max_length: int | None = None,
        pattern: str | None = None,
    ) -> str: ...
    def text(
        self, key: str, default: str | _Required | None = None, *, min_length: int = 0, max_length: int | None = None,
        pattern: str | None = None,
    ) -> str | None:  # fmt: skip
        value = self._given(key, default)
        if value is _ABSENT:
            return default if isinstance(default, str) else None
        if not isinstance(value, str):
            raise self._refuse(key, "expected a string")
        if len(value) < min_length or (max_length is not None and len(value) > max_length):
            raise self._refuse(key, f"length {len(value)} not within {min_length}..{max_length}")
        if pattern is not None and _compiled(pattern).fullmatch(value) is None:
            raise self._refuse(key, f"does not match {pattern}")
        return value

    @overload
    def integer(
        self, key: str, default: None = None, *, ge: int | None = None, le: int | None = None
    ) -> int | None: ...
    @overload
    def integer(self, key: str, default: int | _Required, *, ge: int | None = None, le: int | None = None) -> int: ...
    def integer(
        self, key: str, default: int | _Required | None = None, *, ge: int | None = None, le: int | None = None
    ) -> int | None:
        """An integer (a boolean, or a float without a fraction, reads as one, as the models read them)."""
        value = self._given(key, default)
        if value is _ABSENT:
            return default if isinstance(default, int) else None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise self._refuse(key, "expected an integer")
        number = int(value)
        if (ge is not None and number < ge) or (le is not None and number > le):
            raise self._refuse(key, f"{number} not within {ge}..{le}")
        return number

    def number(self, key: str, *, ge: float | None = None, le: float | None = None) -> float | None:
        """An optional number (an integer or a boolean reads as one)."""
        value = self._given(key, None)
        if value is _ABSENT:
            return None
        if not isinstance(value, (int, float)):
            raise self._refuse(key, "expected a number")
        number = float(value)
        if (ge is not None and not number >= ge) or (le is not None and not number <= le):
            raise self._refuse(key, f"{number} not within {ge}..{le}")
        return number

    def flag(self, key: str) -> bool | None:
        """An optional boolean (0 and 1 read as one, as the models read them)."""
        value = self._given(key, None)
        if value is _ABSENT:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        raise self._refuse(key, "expected a boolean")

    @overload
    def choice(self, key: str, options: tuple[S, ...], default: None = None) -> S | None: ...
    @overload
    def choice(self, key: str, options: tuple[S, ...], default: S | _Required) -> S: ...
    def choice(self, key: str, options: tuple[S, ...], default: S | _Required | None = None) -> S | None:
        """One of ``options`` (a ``Literal``)."""
        value = self._given(key, default)
        if value is _ABSENT:
            return None if isinstance(default, _Required) else default
        for option in options:
            if value == option and isinstance(value, str):
                return option
        raise self._refuse(key, f"expected one of {', '.join(options)}")

    def strings(self, key: str) -> tuple[str, ...] | None:
        """An optional list of strings."""
        value = self._given(key, None)
        if value is _ABSENT:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._refuse(key, "expected a list of strings")
        return tuple(value)

    def string_map(self, key: str) -> dict[str, str] | None:
        """An optional map of strings to strings."""
        value = self._given(key, None)
        if value is _ABSENT:
            return None
        if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
            raise self._refuse(key, "expected a map of strings")
        return dict(value)

    def anything(self, key: str) -> Any:
        """A free-form value, as given."""
        return self._raw.get(key)

    @overload
    def model(self, key: str, read: Callable[[Fields], T]) -> T | None: ...
    @overload
    def model(self, key: str, read: Callable[[Fields], T], default: Callable[[], T]) -> T: ...
    def model(self, key: str, read: Callable[[Fields], T], default: Callable[[], T] | None = None) -> T | None:
        """A nested object read by ``read``: None when absent or null, or ``default()`` when absent (and then
        ``null`` is refused)."""
        value = self._given(key, None if default is None else _ABSENT)
        if value is _ABSENT:
            return default() if default is not None else None
        return read(Fields(value, f"{self._where}.{key}"))

    def required_model(self, key: str, read: Callable[[Fields], T]) -> T:
        return read(Fields(self._given(key, REQUIRED), f"{self._where}.{key}"))

    def models(
        self, key: str, read: Callable[[Fields], T], *, min_items: int = 0, max_items: int | None = None
    ) -> tuple[T, ...] | None:
        """An optional list of nested objects."""
        value = self._given(key, None)
        return None if value is _ABSENT else self._items(key, value, read, min_items, max_items)

    def required_models(
        self, key: str, read: Callable[[Fields], T], *, min_items: int = 0, max_items: int | None = None
    ) -> tuple[T, ...]:
        return self._items(key, self._given(key, REQUIRED), read, min_items, max_items)

    def _items(
        self, key: str, value: object, read: Callable[[Fields], T], min_items: int, max_items: int | None
    ) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise self._refuse(key, "expected a list")
        if len(value) < min_items or (max_items is not None and len(value) > max_items):
            raise self._refuse(key, f"{len(value)} items, not within {min_items}..{max_items}")
        return tuple(read(Fields(item, f"{self._where}.{key}[{index}]")) for index, item in enumerate(value))


class Wire:
    """A dataclass with a JSON form: camelCase keys (``WIRE_NAMES`` for the exceptions), unset (None) fields left
    out, nested ones in their JSON form; free-form values as they are."""

    __slots__ = ()
    WIRE_NAMES: ClassVar[Mapping[str, str]] = {}

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        for attribute, name in _wire_names(type(self)):
            value = getattr(self, attribute)
            if value is not None:
                wire[name] = _json(value)
        return wire


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


_WIRE_NAMES: dict[type[Wire], tuple[tuple[str, str], ...]] = {}


def _wire_names(cls: type[Wire]) -> tuple[tuple[str, str], ...]:
    names = _WIRE_NAMES.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        names = _WIRE_NAMES[cls] = tuple((field.name, cls.WIRE_NAMES.get(field.name) or camel(field.name))
                                         for field in fields)  # fmt: skip
    return names


def _json(value: Any) -> Any:
    if isinstance(value, Wire):
        return value.to_wire()
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    return value
