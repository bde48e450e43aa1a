"""Annotated types that carry their Kubernetes schema into the generated CRDs."""

from __future__ import annotations

import copy
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


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""A Kubernetes quantity (500m, 2, 512Mi, 1e3), as the API server parses resource values."""
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
MAX_CONTAINERS = 64
"""The most containers of one kind a pod template may list (a Falco pod has two or three)."""
MAX_RESOURCES = 32
"""The most resource names in one ``limits`` or ``requests``."""


def _pod_template_schema() -> dict[str, Any]:
    """The snapshot, with what the API server would otherwise refuse only when the operator applies the pod:
    resource quantities (a 500 from the API server at apply time) and container names (DNS labels)."""
    schema: dict[str, Any] = copy.deepcopy(pod_template_snapshot()["schema"])
    pod = schema.get("properties", {}).get("spec", {}).get("properties", {})
    _check_quantities(pod.get("resources"))
    for container_list in _CONTAINER_LISTS:
        listed = pod.get(container_list)
        if not isinstance(listed, dict):
            continue
        # Bounds let the API server afford the CEL rules that say what is wrong with a name or a quantity.
        listed["maxItems"] = MAX_CONTAINERS
        properties = listed.get("items", {}).get("properties", {})
        if isinstance(properties.get("name"), dict):
            properties["name"].update({"pattern": DNS_LABEL, "maxLength": 63})
        _check_quantities(properties.get("resources"))
    return schema


def _check_quantities(resources: Any) -> None:
    """Every value of ``limits`` and ``requests`` must be a quantity."""
    if not isinstance(resources, dict):
        return
    for part in ("limits", "requests"):
        quantities = resources.get("properties", {}).get(part)
        if isinstance(quantities, dict) and isinstance(quantities.get("additionalProperties"), dict):
            quantities["maxProperties"] = MAX_RESOURCES
            quantities["additionalProperties"] = {
                "pattern": QUANTITY_PATTERN,
                "maxLength": 64,
                "x-kubernetes-int-or-string": True,
            }


PodTemplateSpec = Annotated[dict[str, Any], WithJsonSchema(_pod_template_schema())]
"""A `PodTemplateSpec` overlay, validated by the API server with the Kubernetes pod schema."""

MAX_TOLERATIONS = 64
"""The most tolerations ``spec.tolerations`` may list."""


def pod_spec_field_schema(field: str) -> dict[str, Any]:
    """The schema of one field of the pinned version's PodSpec (``tolerations``, ``affinity``...)."""
    schema: dict[str, Any] = copy.deepcopy(_pod_template_schema()["properties"]["spec"]["properties"][field])
    return schema


def _tolerations_schema() -> dict[str, Any]:
    schema = pod_spec_field_schema("tolerations")
    schema["maxItems"] = MAX_TOLERATIONS
    return schema


def _container_resources_schema() -> dict[str, Any]:
    containers = _pod_template_schema()["properties"]["spec"]["properties"]["containers"]
    schema: dict[str, Any] = copy.deepcopy(containers["items"]["properties"]["resources"])
    return schema


Tolerations = Annotated[list[dict[str, Any]], WithJsonSchema(_tolerations_schema())]
"""A pod's `tolerations`, with the Kubernetes schema."""
Affinity = Annotated[dict[str, Any], WithJsonSchema(pod_spec_field_schema("affinity"))]
"""A pod's `affinity`, with the Kubernetes schema."""
ResourceRequirements = Annotated[dict[str, Any], WithJsonSchema(_container_resources_schema())]
"""A container's `resources`, quantities checked by the API server."""

Conditions = Annotated[
    list[Condition],
    Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
]
