"""Pydantic models -> structural OpenAPI v3 schemas -> CustomResourceDefinitions.

Pure functions of the models: the same models always give the same CRDs, with no cluster and no network.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .kinds import VERSION, KindInfo
from .patterns import readable_pattern

_DROPPED = {"title", "$defs"}


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A structural schema for `model`: references inlined, optional-null unions collapsed."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    return _structural(raw, definitions)


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return {**target, **siblings}
    any_of = node.get("anyOf")
    if isinstance(any_of, list):
        options = [option for option in any_of if option != {"type": "null"}]
        if len(options) != 1:
            raise ValueError(f"a CRD schema cannot express the union {any_of}; give it a WithJsonSchema")
        siblings = {key: value for key, value in node.items() if key != "anyOf"}
        return _resolve({**options[0], **siblings}, definitions)
    return node


def _structural(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, definitions)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if key == "properties":
            result[key] = {name: _structural(sub, definitions) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = _structural(value, definitions)
        elif key == "const":
            result["enum"] = [value]
        else:
            result[key] = value
    if result.get("x-kubernetes-preserve-unknown-fields") or result.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
    return readable_pattern(result)


def spec_schema(info: KindInfo) -> dict[str, Any]:
    return {**openapi_schema(info.spec_model), "description": f"Desired state of the {info.kind}."}


def status_schema(info: KindInfo) -> dict[str, Any]:
    writer = "its agent" if info.kind == "ArtifactReport" else "the operator"
    return {
        **openapi_schema(info.status_model),
        "description": f"Observed state of the {info.kind}, written by {writer}.",
    }


def custom_resource_schema(info: KindInfo) -> dict[str, Any]:
    spec = spec_schema(info)
    status = status_schema(info)
    schema: dict[str, Any] = {
        "type": "object",
        "description": info.description,
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if info.spec_required:
        schema["required"] = ["spec"]
    if info.object_rules:
        schema["x-kubernetes-validations"] = [dict(rule) for rule in info.object_rules]
    return schema


def custom_resource_definition(info: KindInfo) -> dict[str, Any]:
    """The `apiextensions.k8s.io/v1` CustomResourceDefinition of one kind."""
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
        "categories": list(info.categories),
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    columns = [
        {"name": c.name, "type": c.type, "jsonPath": c.json_path, **({"priority": c.priority} if c.priority else {})}
        for c in info.columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "falco-operator", "app.kubernetes.io/part-of": "falco-operator"},
        },
        "spec": {
            "group": info.group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": custom_resource_schema(info)},
                }
            ],
        },
    }
