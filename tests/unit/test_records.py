"""``records.record`` makes the class ``dataclasses.dataclass`` makes, at less memory per class.

Each case defines one class body twice, once under ``dataclass(...)`` and once under ``record(...)`` with the same
arguments, and holds the two to the same behaviour on the same values: constructor signature, repr, equality (and
``NotImplemented`` across classes), hash (which fields it covers), ordering, frozen assignment and deletion, fields,
``replace``, ``asdict``, ``__match_args__``, slots, pickling and copying.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import inspect
import json
import operator
import pickle
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import FrozenInstanceError, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from falco_operator.records import record

Decorate = Callable[[type[Any]], type[Any]]

OPTIONS: list[dict[str, bool]] = [
    {},
    {"frozen": True},
    {"frozen": True, "slots": True},
    {"frozen": True, "slots": True, "kw_only": True},
    {"frozen": True, "order": True},
    {"order": True},
    {"eq": False},
    {"repr": False, "frozen": True},
    {"slots": True},
]


def _point(decorate: Decorate) -> type[Any]:
    @decorate
    class Point:
        x: int
        label: str = "origin"
        tags: tuple[str, ...] = field(default_factory=tuple)
        note: str = field(default="", compare=False)
        secret: str = field(default="", repr=False)
        weight: float = field(default=0.0, hash=False)

    return Point


def _twins(options: dict[str, bool]) -> tuple[type[Any], type[Any]]:
    make_dataclass: Decorate = dataclass(**options)
    make_record: Decorate = record(**options)
    return _point(make_dataclass), _point(make_record)


def _args(kw_only: bool, *values: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    names = ("x", "label", "tags", "note", "secret", "weight")
    return ((), dict(zip(names, values, strict=False))) if kw_only else (values, {})


SAMPLES = [
    (1,),
    (1, "a", ("t",), "n", "s", 0.5),
    (1, "a", ("t",), "other note", "other secret", 2.5),
    (1, "a", ["t"], "n", "s", 0.5),
    (2, "a"),
    (1, "b"),
    (0, "origin", [], "", "", 0.0),
]


def _instances(cls: type[Any], kw_only: bool) -> Iterator[Any]:
    for values in SAMPLES:
        args, kwargs = _args(kw_only, *values)
        yield cls(*args, **kwargs)


def _outcome(action: Callable[[], Any]) -> Any:
    """What ``action`` returns, or its exception's type and message."""
    try:
        return action()
    except Exception as error:
        return type(error), str(error)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: ",".join(options) or "default")
def test_record_behaves_as_dataclass(options: dict[str, bool]) -> None:
    made, recorded = _twins(options)
    kw_only = options.get("kw_only", False)
    assert inspect.signature(recorded) == inspect.signature(made)
    assert recorded.__doc__ == made.__doc__
    assert getattr(recorded, "__match_args__", None) == getattr(made, "__match_args__", None)
    assert getattr(recorded, "__slots__", None) == getattr(made, "__slots__", None)
    assert [(f.name, f.compare, f.hash, f.repr) for f in dataclasses.fields(recorded)] == [
        (f.name, f.compare, f.hash, f.repr) for f in dataclasses.fields(made)
    ]
    assert dataclasses.is_dataclass(recorded)
    pairs = list(zip(_instances(made, kw_only), _instances(recorded, kw_only), strict=True))
    for mine, theirs in pairs:
        if options.get("repr", True):
            assert repr(theirs) == repr(mine)
        assert dataclasses.asdict(theirs) == dataclasses.asdict(mine)
        assert dataclasses.astuple(theirs) == dataclasses.astuple(mine)
        if options.get("eq", True):  # else both hash by identity
            assert _outcome(partial(hash, theirs)) == _outcome(partial(hash, mine))
    assert (recorded.__hash__ is None) == (made.__hash__ is None)
    for mine, theirs in pairs:
        for other_mine, other_theirs in pairs:
            assert (theirs == other_theirs) == (mine == other_mine)
            assert (theirs != other_theirs) == (mine != other_mine)
            for compare in ("__lt__", "__le__", "__gt__", "__ge__"):
                assert _outcome(partial(getattr(theirs, compare), other_theirs)) == _outcome(
                    partial(getattr(mine, compare), other_mine)
                )
        assert theirs.__eq__(mine) is mine.__eq__(theirs)
        assert _outcome(partial(operator.lt, theirs, mine)) == _outcome(partial(operator.lt, mine, theirs))
    args, kwargs = _args(kw_only, *SAMPLES[1])
    for name in ("x", "note", "undeclared"):
        mine, theirs = made(*args, **kwargs), recorded(*args, **kwargs)
        assigned = _outcome(partial(setattr, mine, name, 7))
        assert _outcome(partial(setattr, theirs, name, 7)) == _frozen_fixed(assigned, "assign to")
        assert dataclasses.asdict(theirs) == dataclasses.asdict(mine)
        deleted = _outcome(partial(delattr, mine, name))
        assert _outcome(partial(delattr, theirs, name)) == _frozen_fixed(deleted, "delete")


def _frozen_fixed(outcome: Any, verb: str) -> Any:
    """dataclass's frozen ``__setattr__`` and ``__delattr__`` with ``slots=True`` (Python 3.11) check the class that
    slots replaced, so for a name that is not a field they fail in ``super()`` with a TypeError; a record says what
    any frozen class says."""
    if isinstance(outcome, tuple) and outcome[0] is TypeError and "super(type, obj)" in outcome[1]:
        return FrozenInstanceError, f"cannot {verb} field 'undeclared'"
    return outcome


@pytest.mark.parametrize("options", [{}, {"frozen": True}, {"frozen": True, "slots": True}])
def test_replace_copy_and_pickle_keep_the_values(options: dict[str, bool]) -> None:
    _, recorded = _twins(options)
    original = recorded(3, "three", ["a"], "n", "s", 1.5)
    changed = dataclasses.replace(original, label="changed")
    assert (changed.x, changed.label, changed.tags) == (3, "changed", ["a"])
    assert type(changed) is recorded
    assert copy.copy(original) == original
    assert copy.deepcopy(original) == original
    assert copy.deepcopy(original) is not original


@record(frozen=True, slots=True, kw_only=True)
class Pickled:
    name: str
    values: tuple[int, ...] = ()


@record(frozen=True)
class PickledPlain:
    name: str


def test_frozen_records_pickle() -> None:
    for original in (Pickled(name="a", values=(1, 2)), PickledPlain("b")):
        restored = pickle.loads(pickle.dumps(original))
        assert restored == original
        assert hash(restored) == hash(original)


def test_frozen_error_messages() -> None:
    item = Pickled(name="a")
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'name'"):
        item.name = "b"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError, match="cannot delete field 'values'"):
        del item.values
    assert item.name == "a"


@record(frozen=True)
class Capped:
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", self.message[:3])


def test_post_init_may_set_a_frozen_field() -> None:
    assert Capped("abcdef") == Capped("abc")
    assert repr(Capped("abcdef")) == "Capped(message='abc')"


@record(frozen=True)
class Shape:
    name: str


@record(frozen=True)
class Circle(Shape):
    radius: float = 1.0


class Labelled(Circle):
    """Not a record: it may set attributes that are not fields, as a dataclass's plain subclass may."""


def test_inheritance() -> None:
    assert [f.name for f in dataclasses.fields(Circle)] == ["name", "radius"]
    assert Circle("c", 2.0) == Circle("c", 2.0)
    assert Circle("c", 2.0) != Circle("c", 3.0)
    assert Shape("c") != Circle("c")
    assert Shape("c").__eq__(Circle("c")) is NotImplemented
    assert hash(Circle("c", 2.0)) == hash(("c", 2.0))
    assert repr(Circle("c")) == "Circle(name='c', radius=1.0)"
    with pytest.raises(FrozenInstanceError):
        Circle("c").radius = 2.0  # type: ignore[misc]
    labelled = Labelled("l")
    labelled.extra = 1  # type: ignore[attr-defined]
    assert labelled.extra == 1  # type: ignore[attr-defined]
    with pytest.raises(FrozenInstanceError):
        labelled.name = "m"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        labelled.radius = 2.0  # type: ignore[misc]
    assert repr(labelled) == "Labelled(name='l', radius=1.0)"
    with pytest.raises(TypeError, match="cannot inherit non-frozen dataclass from a frozen one"):

        @record
        class Thawed(Shape):  # type: ignore[misc]
            size: int = 0


@record(frozen=True)
class Own:
    key: str
    shown: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Own) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Own<{self.key}>"


def test_methods_the_class_defines_are_kept() -> None:
    assert Own("a", "x") == Own("a", "y")
    assert hash(Own("a", "x")) == hash("a")
    assert repr(Own("a")) == "Own<a>"


def test_order_and_eq_errors_as_dataclass() -> None:
    with pytest.raises(ValueError, match="eq must be true if order is true"):
        record(order=True, eq=False)(type("Bad", (), {"__annotations__": {"x": "int"}}))
    with pytest.raises(TypeError, match="Cannot overwrite attribute __lt__"):
        record(order=True)(type("Bad", (), {"__annotations__": {"x": "int"}, "__lt__": lambda self, other: True}))
    with pytest.raises(TypeError, match="Cannot overwrite attribute __setattr__"):
        record(frozen=True)(type("Bad", (), {"__annotations__": {"x": "int"}, "__setattr__": object.__setattr__}))


@record
class Tree:
    name: str
    children: list[Tree] = field(default_factory=list)


def test_repr_of_an_instance_within_itself() -> None:
    tree = Tree("root")
    tree.children.append(tree)
    assert repr(tree) == "Tree(name='root', children=[...])"
    assert Tree.__hash__ is None
    tree.name = "renamed"
    assert tree.name == "renamed"


def test_match_uses_the_positional_fields() -> None:
    match Circle("c", 2.5):
        case Circle(name, radius):
            assert (name, radius) == ("c", 2.5)
        case _:
            pytest.fail("Circle did not match its own pattern")


def test_no_fields() -> None:
    @record(frozen=True)
    class Empty:
        pass

    assert Empty() == Empty()
    assert hash(Empty()) == hash(())
    assert repr(Empty()) == "test_no_fields.<locals>.Empty()"


def _per_class(decorate: Decorate, count: int = 40) -> float:
    def make() -> type[Any]:
        class Sample:
            a: int
            b: str = "b"
            c: tuple[int, ...] = ()
            d: dict[str, str] = field(default_factory=dict)
            e: int | None = None

        return decorate(Sample)

    make()
    gc.collect()
    tracemalloc.start()
    try:
        kept = [make() for _ in range(count)]
        gc.collect()
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == count
    return size / count


def test_a_record_class_costs_less_memory_than_a_dataclass() -> None:
    options = {"frozen": True, "slots": True, "kw_only": True}
    as_dataclass = _per_class(dataclass(**options))
    as_record = _per_class(record(**options))
    assert as_record < 0.7 * as_dataclass, (as_record, as_dataclass)


# Modules another change converts; until then their dataclasses are dataclass's.
NOT_YET_RECORDS: tuple[str, ...] = ()

# In a process of its own: the test session imports the operator's modules too.
AGENT_DATACLASSES = """
import dataclasses, json, sys
import artifact_agent.cli, artifact_agent.agent
print(json.dumps([[name, value.__qualname__, value.__dataclass_params__.repr]
                  for name, module in list(sys.modules.items())
                  if name.split(".")[0] in ("artifact_agent", "falco_operator")
                  for value in vars(module).values()
                  if isinstance(value, type) and value.__module__ == name and dataclasses.is_dataclass(value)]))
"""


def test_the_agents_value_classes_are_records() -> None:
    """Every dataclass of the project the agent imports is a record (``dataclass`` made no ``__repr__`` for it)."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", AGENT_DATACLASSES], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
    classes = json.loads(result.stdout)
    assert len(classes) > 100
    assert [(module, name) for module, name, made_repr in classes if made_repr and module not in NOT_YET_RECORDS] == []
    assert {module for module, _, made_repr in classes if made_repr} <= set(NOT_YET_RECORDS)
