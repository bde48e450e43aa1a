"""``record``: ``dataclasses.dataclass`` for the project's value classes, at a fraction of its memory per class.

``dataclass`` compiles each generated method (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, a frozen class's
``__setattr__`` and ``__delattr__``) from source text for each class: about 8 KiB of code objects per class, kept for
the life of the process, and ``slots=True`` keeps a second copy of the class alive through the frozen methods'
closures. The artifact agent imports some 120 such classes, so this was over a MiB of its memory.

``record`` takes the same arguments with the same meaning (the subset the project uses) and makes the same class,
with the same ``__init__``, fields (``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work as
before), ``__match_args__``, slots and pickling. Only ``__init__`` stays compiled per class, since it is what runs
per instance. Each other method is one shared code object, closed per class over its field names and one
``operator.attrgetter`` of them; they behave as ``dataclass``'s:

- ``__eq__`` compares the tuples of the ``compare`` fields of two instances of the very same class, and answers
  ``NotImplemented`` otherwise; ``order=True`` adds ``__lt__``, ``__le__``, ``__gt__`` and ``__ge__`` alike.
- ``__hash__`` (eq and frozen) hashes the tuple of the fields whose ``hash`` flag (else ``compare`` flag) is set; eq
  and not frozen sets ``__hash__`` to None; a ``__hash__`` the class defines is kept.
- ``__repr__`` is ``Qualname(field=value!r, ...)`` over the ``repr`` fields, ``...`` for an instance within its own
  repr.
- frozen: assigning or deleting a field raises ``dataclasses.FrozenInstanceError``.

A method the class body defines itself is kept, as ``dataclass`` keeps it. Two differences: ``__dataclass_params__``
reads ``repr=False, eq=False``, since ``dataclass`` did not make those methods; and assigning a name that is not a
field to a frozen slotted instance raises ``FrozenInstanceError``, where Python 3.11's ``dataclass`` fails with a
TypeError (its ``__setattr__`` checks the class that slots replaced).
"""

from __future__ import annotations

import dataclasses
import operator
from _thread import get_ident
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")

_Values = Callable[[object], tuple[Any, ...]]

_ORDER = ("__lt__", "__le__", "__gt__", "__ge__")


@overload
def record(cls: type[_T], /) -> type[_T]: ...


@overload
def record(
    *,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    frozen: bool = False,
    kw_only: bool = False,
    slots: bool = False,
) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def record(
    cls: type[_T] | None = None,
    /,
    *,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    frozen: bool = False,
    kw_only: bool = False,
    slots: bool = False,
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """The class as ``dataclass(cls, repr=..., eq=..., order=..., frozen=..., kw_only=..., slots=...)`` makes it."""

    def make(cls: type[_T]) -> type[_T]:
        return _make(cls, repr=repr, eq=eq, order=order, frozen=frozen, kw_only=kw_only, slots=slots)

    return make if cls is None else make(cls)


def _make(cls: type[_T], *, repr: bool, eq: bool, order: bool, frozen: bool, kw_only: bool, slots: bool) -> type[_T]:
    if order and not eq:
        raise ValueError("eq must be true if order is true")
    own = dict(cls.__dict__)
    if order and (defined := [name for name in _ORDER if name in own]):
        raise TypeError(f"Cannot overwrite attribute {defined[0]} in class {cls.__name__}")
    made = dataclasses.dataclass(cls, repr=False, eq=False, frozen=frozen, kw_only=kw_only, slots=slots)
    fields = dataclasses.fields(made)  # type: ignore[arg-type]
    # Most classes show, compare and hash all their fields: one tuple of names and one getter serve them all.
    names = tuple(field.name for field in fields)
    getters: dict[tuple[str, ...], _Values] = {}

    def values(selected: tuple[str, ...]) -> _Values:
        selected = names if selected == names else selected
        if selected not in getters:
            getters[selected] = _values(selected)
        return getters[selected]

    methods: dict[str, object] = {}
    if repr and "__repr__" not in own:
        shown = tuple(field.name for field in fields if field.repr)
        methods["__repr__"] = _repr(shown, values(shown))
    compared = values(tuple(field.name for field in fields if field.compare))
    if eq and "__eq__" not in own:
        methods["__eq__"] = _equality(compared)
    if order:
        for name, operation in zip(_ORDER, (operator.lt, operator.le, operator.gt, operator.ge), strict=True):
            methods[name] = _comparison(compared, operation)
    class_hash = own.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (class_hash is dataclasses.MISSING or (class_hash is None and "__eq__" in own))
    if eq and not explicit_hash:
        hashed = (field.name for field in fields if (field.compare if field.hash is None else field.hash))
        methods["__hash__"] = _hash(values(tuple(hashed))) if frozen else None
    if frozen:
        # In place of dataclass's own, compiled per class and closed over the class before slots made a new one.
        methods["__setattr__"], methods["__delattr__"] = _frozen(made, names)
    for name, method in methods.items():
        setattr(made, name, method)
    return made


def _values(names: tuple[str, ...]) -> _Values:
    """A function from an instance to the tuple of its ``names`` attributes."""
    if len(names) > 1:
        values: _Values = operator.attrgetter(*names)
        return values
    if not names:
        return _no_values
    value = operator.attrgetter(names[0])
    return lambda instance: (value(instance),)


def _no_values(instance: object) -> tuple[Any, ...]:
    return ()


def _equality(values: _Values) -> Callable[[object, object], Any]:
    def eq(self: object, other: object) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return eq


def _comparison(values: _Values, operation: Callable[[Any, Any], Any]) -> Callable[[object, object], Any]:
    def compare(self: object, other: object) -> Any:
        if other.__class__ is self.__class__:
            return operation(values(self), values(other))
        return NotImplemented

    return compare


def _hash(values: _Values) -> Callable[[object], int]:
    def hash_(self: object) -> int:
        return hash(values(self))

    return hash_


_IN_REPR: set[tuple[int, int]] = set()
"""The instances (and threads) whose repr is being made, to answer ``...`` for an instance within its own."""


def _repr(names: tuple[str, ...], values: _Values) -> Callable[[object], str]:
    template = "(" + ", ".join(f"{name}=%r" for name in names) + ")"  # %-formatting: twice as fast as str.format

    def repr_(self: object) -> str:
        key = (id(self), get_ident())
        if key in _IN_REPR:
            return "..."
        _IN_REPR.add(key)
        try:
            return self.__class__.__qualname__ + template % values(self)
        finally:
            _IN_REPR.discard(key)

    return repr_


def _frozen(
    owner: type[Any], names: tuple[str, ...]
) -> tuple[Callable[[object, str, object], None], Callable[[object, str], None]]:
    def setattr_(self: object, name: str, value: object) -> None:
        if type(self) is owner or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(owner, self).__setattr__(name, value)

    def delattr_(self: object, name: str) -> None:
        if type(self) is owner or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(owner, self).__delattr__(name)

    return setattr_, delattr_
