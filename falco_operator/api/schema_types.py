"""Annotated types that carry their Kubernetes schema into the generated CRDs."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, WithJsonSchema

from .base import Condition

IntOrString = Annotated[int | str, WithJsonSchema({"x-kubernetes-int-or-string": True})]
"""An `intstr.IntOrString` (`maxUnavailable: 1` or `"25%"`)."""

FreeForm = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]
"""Any YAML value, kept as the user wrote it."""


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


@cache
def pod_template_snapshot() -> dict[str, Any]:
    """The pinned Kubernetes version's PodTemplateSpec schema (`containers` not required)."""
    snapshot: dict[str, Any] = json.loads((Path(__file__).parent / "pod_template_schema.json").read_text())
    return snapshot


def _pod_template_schema() -> dict[str, Any]:
    schema: dict[str, Any] = pod_template_snapshot()["schema"]
    return schema


PodTemplateSpec = Annotated[dict[str, Any], WithJsonSchema(_pod_template_schema())]
"""A `PodTemplateSpec` overlay, validated by the API server with the Kubernetes pod schema."""

Conditions = Annotated[
    list[Condition],
    Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
]
