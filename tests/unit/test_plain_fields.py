"""The plain classes the agent reads and writes have exactly the fields of the models the CRDs come from, at every
depth: a field added to a model and not to its plain class (or the other way) fails here, before any example uses it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pydantic
import pytest

from falco_operator.api import artifacts, plain, plain_report, report

PAIRS: list[tuple[type[pydantic.BaseModel], type[Any]]] = [
    (artifacts.Rulesfile, plain.Rulesfile),
    (artifacts.Plugin, plain.Plugin),
    (artifacts.Config, plain.Config),
    (report.ArtifactReportStatus, plain_report.ArtifactReportStatus),
]


def _classes(annotation: Any) -> list[type[Any]]:
    """The classes (models or dataclasses) an annotation names, through unions, lists and dicts."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, tuple, typing.Annotated):
        return [found for argument in typing.get_args(annotation) for found in _classes(argument)]
    if isinstance(annotation, type) and (
        issubclass(annotation, pydantic.BaseModel) or dataclasses.is_dataclass(annotation)
    ):
        return [annotation]
    return []


def _model_fields(model: type[pydantic.BaseModel]) -> dict[str, list[type[Any]]]:
    return {name: _classes(info.annotation) for name, info in model.model_fields.items()}


def _plain_fields(cls: type[Any]) -> dict[str, list[type[Any]]]:
    hints = typing.get_type_hints(cls)
    return {field.name: _classes(hints[field.name]) for field in dataclasses.fields(cls)}


def _walk(model: type[pydantic.BaseModel], cls: type[Any], path: str, seen: set[tuple[type[Any], type[Any]]]) -> None:
    if (model, cls) in seen:
        return
    seen.add((model, cls))
    model_fields, plain_fields = _model_fields(model), _plain_fields(cls)
    assert set(model_fields) == set(plain_fields), (
        f"{path}: only in the model {sorted(set(model_fields) - set(plain_fields))}, "
        f"only in the plain class {sorted(set(plain_fields) - set(model_fields))}"
    )
    for name, nested_models in model_fields.items():
        nested_plain = plain_fields[name]
        assert len(nested_models) == len(nested_plain), f"{path}.{name}: {nested_models} against {nested_plain}"
        for nested_model, nested_cls in zip(nested_models, nested_plain, strict=True):
            _walk(nested_model, nested_cls, f"{path}.{name}", seen)


@pytest.mark.parametrize(("model", "cls"), PAIRS, ids=[model.__name__ for model, _ in PAIRS])
def test_every_model_field_has_its_plain_field_at_every_depth(model: type[pydantic.BaseModel], cls: type[Any]) -> None:
    _walk(model, cls, model.__name__, set())


def test_a_missing_or_extra_field_is_named() -> None:
    with pytest.raises(AssertionError, match="only in the model"):
        _walk(artifacts.RulesfileSpec, plain.ConfigSpec, "RulesfileSpec", set())
